// Checks of the built app (run after `npm run build`): precompressed files match their source,
// the icons are PNGs of the promised sizes, the first load stays in budget, the index has no
// inline script (the CSP forbids it) and uses relative URLs (base paths), and the service worker
// leaves the API and the terminal sockets alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const walk = (dir) => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? walk(join(dir, n)) : [join(dir, n)]));

test('every .br and .gz decompresses to its source', () => {
  const files = walk(dist);
  const compressed = files.filter((f) => f.endsWith('.br') || f.endsWith('.gz'));
  assert.ok(compressed.length > 4, 'precompressed files exist');
  for (const file of compressed) {
    const source = readFileSync(file.slice(0, -3));
    const data = readFileSync(file);
    const out = file.endsWith('.br') ? zlib.brotliDecompressSync(data) : zlib.gunzipSync(data);
    assert.ok(out.equals(source), `${file} matches its source`);
  }
});

test('icons are PNGs of their sizes', () => {
  for (const [name, size] of [['icon-192.png', 192], ['icon-512.png', 512], ['apple-touch-icon.png', 180]]) {
    const png = readFileSync(join(dist, name));
    assert.equal(png.subarray(1, 4).toString(), 'PNG', name);
    assert.equal(png.readUInt32BE(16), size, `${name} width`);
    assert.equal(png.readUInt32BE(20), size, `${name} height`);
  }
  const manifest = JSON.parse(readFileSync(join(dist, 'manifest.webmanifest'), 'utf8'));
  for (const icon of manifest.icons) assert.ok(statSync(join(dist, icon.src)).size > 0, icon.src);
});

test('the first load is under 300 KB gzipped', () => {
  const size = JSON.parse(readFileSync(join(dist, 'size.json'), 'utf8'));
  assert.ok(size.first_load_gzip_bytes < 300 * 1024, `${size.first_load_gzip_bytes} bytes`);
});

test('the index has no inline script and only relative URLs', () => {
  const index = readFileSync(join(dist, 'index.html'), 'utf8');
  assert.doesNotMatch(index, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline <script>');
  assert.doesNotMatch(index, /(?:src|href)="\//, 'no absolute URLs');
});

test('the service worker never handles the API or the sockets', () => {
  const sw = readFileSync(join(dist, 'sw.js'), 'utf8');
  assert.match(sw, /rel\.startsWith\('api\/'\)/);
  assert.match(sw, /rel\.startsWith\('ws\/'\)/);
  assert.match(sw, /request\.method !== 'GET'/);
});
