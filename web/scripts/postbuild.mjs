// After `vite build`: draws the PNG icons, names the service worker's cache after the build, writes .br and .gz beside every compressible file in
// dist/ (the server picks one by Accept-Encoding; it never compresses at run time), reports the
// first-load size, and touches src/http/assets.rs so cargo re-embeds the new file names.
import { readFileSync, writeFileSync, readdirSync, statSync, utimesSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { createHash } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '..', 'dist');

// --- icons: a dark rounded square with a green ">" and a light "_" (the SVG's shapes) ---------
function crc32(buf) {
  let c, crc = 0xffffffff;
  for (let n = 0; n < buf.length; n++) {
    c = (crc ^ buf[n]) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function distToSegment(px, py, ax, ay, bx, by) {
  const dx = bx - ax, dy = by - ay;
  const t = Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}
function icon(size, { rounded }) {
  const s = size / 64;
  const raw = Buffer.alloc((size * 4 + 1) * size);
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0;
    for (let x = 0; x < size; x++) {
      const u = (x + 0.5) / s, v = (y + 0.5) / s;
      let rgba = [0x0f, 0x17, 0x2a, 255];
      if (rounded) {
        const r = 14, cx = Math.min(Math.max(u, r), 64 - r), cy = Math.min(Math.max(v, r), 64 - r);
        if (Math.hypot(u - cx, v - cy) > r) rgba = [0, 0, 0, 0];
      }
      if (rgba[3] && Math.min(distToSegment(u, v, 16, 20, 28, 32), distToSegment(u, v, 28, 32, 16, 44)) <= 3) rgba = [0x22, 0xc5, 0x5e, 255];
      if (rgba[3] && u >= 32 && u <= 50 && v >= 40 && v <= 46) rgba = [0xe2, 0xe8, 0xf0, 255];
      raw.set(rgba, y * (size * 4 + 1) + 1 + x * 4);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0); ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 6; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0)),
  ]);
}
writeFileSync(join(dist, 'icon-192.png'), icon(192, { rounded: true }));
// Maskable and Apple icons are full-bleed: the platform rounds them itself.
writeFileSync(join(dist, 'icon-512.png'), icon(512, { rounded: false }));
writeFileSync(join(dist, 'apple-touch-icon.png'), icon(180, { rounded: false }));

// --- the service worker's cache, named after this build's assets -----------------------------
// A deploy's new worker then deletes the previous deploy's cache instead of keeping every
// build's hashed files for ever.
const assetNames = readdirSync(join(dist, 'assets')).sort().join('\n');
const build = createHash('sha256').update(assetNames).digest('hex').slice(0, 12);
const swPath = join(dist, 'sw.js');
writeFileSync(swPath, readFileSync(swPath, 'utf8').replace("'pocketdev-shell-v1'", `'pocketdev-shell-${build}'`));

// --- precompression --------------------------------------------------------------------------
const compressible = /\.(html|js|mjs|css|svg|json|webmanifest|txt|map)$/;
function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}
const gzSize = {};
for (const file of walk(dist)) {
  if (!compressible.test(file)) continue;
  const data = readFileSync(file);
  const gz = zlib.gzipSync(data, { level: 9 });
  const br = zlib.brotliCompressSync(data, {
    params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length },
  });
  writeFileSync(file + '.gz', gz);
  writeFileSync(file + '.br', br);
  gzSize[file.slice(dist.length + 1)] = gz.length;
}

// --- first-load size: index.html's own scripts and styles, and what they preload ---------------
const index = readFileSync(join(dist, 'index.html'), 'utf8');
const refs = [...index.matchAll(/(?:src|href)="\.\/(assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
// And whatever those scripts import statically (dynamic import() chunks stay lazy).
for (let i = 0; i < refs.length; i++) {
  if (!refs[i].endsWith('.js')) continue;
  const code = readFileSync(join(dist, refs[i]), 'utf8');
  for (const m of code.matchAll(/(?:\bfrom|\bimport)\s*["']\.\/([^"']+\.js)["']/g)) {
    const dep = `assets/${m[1]}`;
    if (!refs.includes(dep)) refs.push(dep);
  }
}
const first = refs.reduce((sum, ref) => sum + (gzSize[ref] ?? 0), 0);
const lazy = Object.entries(gzSize).filter(([name]) => name.startsWith('assets/') && !refs.includes(name));
const kb = (n) => (n / 1024).toFixed(1) + ' KB';
console.log(`first load (JS+CSS, gzipped): ${kb(first)} — ${refs.join(', ')}`);
for (const [name, size] of lazy) console.log(`  lazy: ${name} ${kb(size)} gzipped`);
writeFileSync(join(dist, 'size.json'), JSON.stringify({ first_load_gzip_bytes: first, first_load: refs, lazy: Object.fromEntries(lazy) }, null, 2));
if (first > 300 * 1024) {
  console.error('first load is over the 300 KB budget');
  process.exit(1);
}

// rust-embed lists web/dist when the crate compiles; a touched source makes cargo re-embed it.
const assetsRs = join(here, '..', '..', 'src', 'http', 'assets.rs');
if (existsSync(assetsRs)) {
  const now = new Date();
  utimesSync(assetsRs, now, now);
}
