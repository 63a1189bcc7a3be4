// Page-latency benchmark (a benchmark, not a test: it reports figures and fails only when a
// path breaks or the first load is over its budget). Against the real `pocketdev serve`
// (../server.ts) and Debian's Chromium, in one run:
//
// 1. key-to-echo latency in the page: a key typed into the terminal page (phone profile), from
//    its keydown event to the glyph in xterm's buffer (and to the next animation frame, when it
//    is painted), measured inside the page so Playwright's round trips are left out; and, to tell
//    Chromium's input pipeline from the app, the same with the key fed to xterm from a timer;
// 2. the same keystrokes through a bare WebSocket client in Node on the same instance, from send
//    to the echoed byte; keystrokes alternate with 1., so noise hits both alike;
// 3. the bytes on the wire (counted on the TCP socket) for the snapshot on connect and for one
//    screenful of output, with and without permessage-deflate, and whether the server took it;
// 4. the first load (index.html's JS and CSS, gzipped as the server sends them) against the
//    budget of web/scripts/postbuild.mjs; over it, the exit status is 1.
//
// Run (in e2e/): node --import ./bench/register.mjs bench/page.ts [--smoke]
// POCKETDEV_BIN picks the binary (default target/debug/pocketdev); CHROMIUM_PATH the browser.
import { chromium, devices, type Page } from '@playwright/test';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect as tcpConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { constants as zlib, gunzipSync, inflateRawSync } from 'node:zlib';
import { Server, ROOT, BINARY } from '../server';

const SMOKE = process.argv.includes('--smoke');
const KEYSTROKES = SMOKE ? 20 : 200;
const HISTORY_LINES = SMOKE ? 200 : 2000;
const SCREENS = SMOKE ? 1 : 3;
// Letters no escape sequence of a redraw contains (as in benches/terminal.rs); the page and the
// bare client type disjoint halves, so one's echo is never taken for the other's.
const PAGE_KEYS = 'abcdefgijk';
const BARE_KEYS = 'nopsuvwxyz';
const WAIT = 15_000;

// --- a bare WebSocket client on a raw TCP socket, counting the bytes it receives -----------------

interface Message {
  text: boolean;
  data: Buffer;
}

class RawSocket {
  /** Bytes read from the TCP socket, HTTP response included. */
  received = 0;
  /** Binary payload bytes after inflating. */
  payload = 0;
  extensions = '';
  /** Binary output (latin1) since the last mark(). */
  out = '';
  snapshot: { wire: number; raw: number } | null = null;
  private buffer: Buffer = Buffer.alloc(0);
  private open = false;
  private fragments: { text: boolean; compressed: boolean; parts: Buffer[] } | null = null;
  private snapshotNext = false;
  private waiters: Array<() => void> = [];
  private failure: Error | null = null;

  private constructor(private readonly socket: Socket) {}

  static async connect(server: Server, path: string, deflate: boolean): Promise<RawSocket> {
    const url = new URL(server.url);
    const socket = tcpConnect(Number(url.port), url.hostname);
    socket.setNoDelay(true);
    const ws = new RawSocket(socket);
    const opened = new Promise<void>((ok, fail) => {
      socket.on('data', (chunk: Buffer) => {
        ws.received += chunk.length;
        try {
          ws.feed(chunk, ok);
        } catch (e) {
          ws.fail(e as Error);
          fail(e);
        }
      });
      socket.once('error', (e) => {
        ws.fail(e);
        fail(e);
      });
      socket.once('close', () => ws.fail(new Error('the socket closed')));
    });
    await new Promise<void>((ok, fail) => {
      socket.once('connect', ok);
      socket.once('error', fail);
    });
    socket.write([
      `GET ${path} HTTP/1.1`, `Host: ${url.host}`, 'Upgrade: websocket', 'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`, 'Sec-WebSocket-Version: 13',
      ...(deflate ? ['Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits'] : []), '', '',
    ].join('\r\n'));
    await opened;
    return ws;
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private feed(chunk: Buffer, opened: () => void): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    if (!this.open) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buffer.subarray(0, end).toString('latin1');
      if (!/^HTTP\/1\.1 101/.test(head)) throw new Error(`no upgrade: ${head.split('\r\n')[0]}`);
      this.extensions = head.match(/^sec-websocket-extensions:\s*(.*)$/im)?.[1]?.trim() ?? '';
      this.buffer = this.buffer.subarray(end + 4);
      this.open = true;
      opened();
    }
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) return;
      let length = b[1]! & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (b.length < 4) return;
        length = b.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (b.length < 10) return;
        length = Number(b.readBigUInt64BE(2));
        offset = 10;
      }
      if (b[1]! & 0x80) throw new Error('a masked frame from the server');
      if (b.length < offset + length) return;
      const fin = (b[0]! & 0x80) !== 0;
      const compressed = (b[0]! & 0x40) !== 0;
      const opcode = b[0]! & 0x0f;
      const data = Buffer.from(b.subarray(offset, offset + length));
      this.buffer = b.subarray(offset + length);
      if (opcode === 0x9) this.send(0xa, data);
      else if (opcode === 0x8) this.fail(new Error(`closed by the server: ${data.subarray(2).toString()}`));
      else if (opcode === 0x1 || opcode === 0x2 || opcode === 0x0) {
        const f = opcode === 0 ? this.fragments : { text: opcode === 1, compressed, parts: [] as Buffer[] };
        if (!f) throw new Error('a continuation frame with no message');
        f.parts.push(data);
        this.fragments = fin ? null : f;
        if (fin) {
          const joined = Buffer.concat(f.parts);
          // No context takeover (docs/terminal-protocol.md): each message inflates alone.
          this.deliver({ text: f.text, data: f.compressed ? inflateRawSync(Buffer.concat([joined, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: zlib.Z_SYNC_FLUSH }) : joined });
        }
      }
    }
  }

  private deliver(m: Message): void {
    if (m.text) {
      if ((JSON.parse(m.data.toString()) as { type: string }).type === 'snapshot') this.snapshotNext = true;
    } else {
      this.payload += m.data.length;
      this.out += m.data.toString('latin1');
      if (this.snapshotNext && !this.snapshot) this.snapshot = { wire: this.received, raw: m.data.length };
      this.snapshotNext = false;
    }
    this.wake();
  }


  private send(opcode: number, data: Buffer): void {
    const mask = randomBytes(4);
    const header = data.length < 126 ? Buffer.from([0x80 | opcode, 0x80 | data.length])
      : Buffer.from([0x80 | opcode, 0x80 | 126, data.length >> 8, data.length & 0xff]);
    const masked = Buffer.from(data.map((byte, i) => byte ^ mask[i % 4]!));
    this.socket.write(Buffer.concat([header, mask, masked]));
  }

  sendBytes(data: string | Buffer): void {
    this.send(0x2, typeof data === 'string' ? Buffer.from(data) : data);
  }

  mark(): { received: number; payload: number } {
    this.out = '';
    return { received: this.received, payload: this.payload };
  }

  /** Waits until `done()` holds, checked after each message. */
  async until(what: string, done: () => boolean, timeout = WAIT): Promise<void> {
    const deadline = Date.now() + timeout;
    while (!done()) {
      if (this.failure) throw new Error(`${what}: ${this.failure.message}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((ok) => {
        const timer = setTimeout(ok, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          ok();
        });
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

// --- helpers ----------------------------------------------------------------------------------

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}
const median = (xs: number[]) => percentile(xs, 0.5);
const ms = (x: number) => `${x.toFixed(2)} ms`;
const signed = (x: number) => `${x < 0 ? '−' : '+'}${ms(Math.abs(x))}`;
const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;

/** A GET with the body as sent (not decoded). */
function getRaw(url: string, acceptEncoding: string): Promise<{ status: number; encoding: string; body: Buffer }> {
  return new Promise((ok, fail) => {
    const req = request(url, { headers: { 'accept-encoding': acceptEncoding } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => ok({ status: res.statusCode ?? 0, encoding: String(res.headers['content-encoding'] ?? 'identity'), body: Buffer.concat(parts) }));
      res.on('error', fail);
    });
    req.on('error', fail);
    req.end();
  });
}

/** Deterministic prose-like lines (a seeded choice of words), each shorter than `cols`. */
function prose(lines: number, cols: number, seed: number): string {
  const words = ('the agent reads src/main.rs and finds that the handler returns early when the request has no body ' +
    'so it writes a patch adds a test and runs cargo test again; 42 passed 0 failed in 3.1s while the build ' +
    'of the web app finished and the terminal kept printing its output line by line').split(' ');
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) % 2147483648);
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    let line = '';
    for (;;) {
      const word = words[next() % words.length]!;
      if (line.length + word.length + 1 >= cols) break;
      line += (line ? ' ' : '') + word;
    }
    out.push(line);
  }
  return out.join('\n') + '\n';
}

async function ticket(server: Server, token: string, id: string): Promise<string> {
  const r = await server.api('POST', `api/instances/${id}/ticket`, token);
  if (r.status !== 201) throw new Error(`ticket: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { ticket: string }).ticket;
}

async function createInstance(server: Server, token: string, name: string): Promise<string> {
  const r = await server.api('POST', 'api/instances', token, { profile: 'bash', name });
  if (!r.ok) throw new Error(`creating ${name}: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { id: string }).id;
}

// --- 4. first load ------------------------------------------------------------------------------

/** The budget web/scripts/postbuild.mjs enforces at build time, in bytes. */
function budget(): number {
  const source = readFileSync(join(ROOT, 'web/scripts/postbuild.mjs'), 'utf8');
  const kib = source.match(/first > (\d+) \* 1024/)?.[1];
  if (!kib) throw new Error('no first-load budget found in web/scripts/postbuild.mjs');
  return Number(kib) * 1024;
}

async function firstLoad(server: Server): Promise<{ index: number; assets: number; files: string[] }> {
  const index = await getRaw(`${server.url}/`, 'gzip');
  if (index.status !== 200) throw new Error(`GET /: ${index.status}`);
  const html = (index.encoding === 'gzip' ? gunzipSync(index.body) : index.body).toString();
  // As postbuild.mjs counts it: index.html's scripts and styles, and what they import statically.
  const refs = [...html.matchAll(/(?:src|href)="\.\/(assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]!);
  if (!refs.length) throw new Error('index.html names no assets (was the binary built without web/dist?)');
  let assets = 0;
  for (let i = 0; i < refs.length; i++) {
    const r = await getRaw(`${server.url}/${refs[i]}`, 'gzip');
    if (r.status !== 200 || r.encoding !== 'gzip') throw new Error(`GET ${refs[i]}: ${r.status}, ${r.encoding}`);
    assets += r.body.length;
    if (!refs[i]!.endsWith('.js')) continue;
    for (const m of gunzipSync(r.body).toString().matchAll(/(?:\bfrom|\bimport)\s*["']\.\/([^"']+\.js)["']/g)) {
      if (!refs.includes(`assets/${m[1]}`)) refs.push(`assets/${m[1]}`);
    }
  }
  return { index: index.body.length, assets, files: refs };
}

// --- 1. and 2. key-to-echo latency ----------------------------------------------------------------

interface Series {
  /** From the stamp to the glyph in xterm's buffer, and to the next animation frame. */
  samples: number[];
  painted: number[];
  /** From the stamp to the page's WebSocket send, and to the echo's message event. */
  sent: number[];
  arrived: number[];
}
interface PageBench {
  /** Keys typed (Playwright's keyboard: Chromium's input pipeline), stamped at keydown. */
  key: Series;
  /** Keys fed to xterm from a timer task (term.input), with no input event: the app and xterm alone. */
  timer: Series;
  feed(key: string): void;
}

/** Hooks the page's terminal: a keydown stamps the time and the cursor cell; the write that puts the glyph there ends it. */
async function instrument(page: Page): Promise<void> {
  await page.evaluate(() => {
    type Cell = { getChars(): string };
    type Line = { getCell(x: number): Cell | undefined };
    type Buf = { baseY: number; cursorX: number; cursorY: number; getLine(y: number): Line | undefined };
    type Term = { cols: number; buffer: { active: Buf }; onWriteParsed(listener: () => void): unknown; input(data: string, wasUserInput?: boolean): void };
    const term = (document.querySelector('.term-screen') as Element & { terminal: Term }).terminal;
    const series = () => ({ samples: [] as number[], painted: [] as number[], sent: [] as number[], arrived: [] as number[] });
    let pending: { into: Series; key: string; t0: number; x: number; y: number; sent?: number; arrived?: number } | null = null;
    const stamp = (into: Series, key: string) => {
      const buffer = term.buffer.active;
      pending = { into, key, t0: performance.now(), x: buffer.cursorX, y: buffer.baseY + buffer.cursorY };
    };
    const bench: PageBench = {
      key: series(),
      timer: series(),
      feed: (key) => setTimeout(() => {
        stamp(bench.timer, key);
        term.input(key, true);
      }, 0),
    };
    const watched = new WeakSet<WebSocket>();
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (this: WebSocket, data) {
      if (pending && pending.sent === undefined && typeof data !== 'string') pending.sent = performance.now();
      if (!watched.has(this)) {
        watched.add(this);
        // Ahead of the app's handler, which writes to xterm (parsed at once after typing).
        const handler = this.onmessage;
        this.onmessage = function (this: WebSocket, e: MessageEvent) {
          if (pending && pending.sent !== undefined && pending.arrived === undefined && typeof e.data !== 'string') pending.arrived = performance.now();
          return handler?.call(this, e);
        };
      }
      return send.call(this, data);
    };
    document.addEventListener('keydown', (e) => {
      if (e.key.length === 1) stamp(bench.key, e.key);
    }, { capture: true });
    term.onWriteParsed(() => {
      const p = pending;
      if (!p) return;
      const line = term.buffer.active.getLine(p.y);
      let found = false;
      for (let x = p.x; x < term.cols && !found; x++) found = line?.getCell(x)?.getChars() === p.key;
      if (!found) return;
      const t1 = performance.now();
      pending = null;
      const s = p.into;
      const i = s.samples.length;
      s.samples.push(t1 - p.t0);
      s.sent.push((p.sent ?? NaN) - p.t0);
      s.arrived.push((p.arrived ?? NaN) - p.t0);
      // xterm renders in its own animation frame callback, asked for before this one.
      requestAnimationFrame(() => { s.painted[i] = performance.now() - p.t0; });
    });
    (window as unknown as { pdBench: PageBench }).pdBench = bench;
  });
}

/** The page's cursor cell after `key` has been echoed at the cursor's left. */
async function pageShows(page: Page, key: string): Promise<{ x: number; cols: number }> {
  const handle = await page.waitForFunction((k) => {
    type Buf = { baseY: number; cursorX: number; cursorY: number; getLine(y: number): { getCell(x: number): { getChars(): string } | undefined } | undefined };
    const term = (document.querySelector('.term-screen') as Element & { terminal: { cols: number; buffer: { active: Buf } } }).terminal;
    const b = term.buffer.active;
    if (k && b.getLine(b.baseY + b.cursorY)?.getCell(b.cursorX - 1)?.getChars() !== k) return false;
    if (!k && b.cursorX !== 0) return false;
    return { x: b.cursorX, cols: term.cols };
  }, key, { timeout: WAIT });
  return (await handle.jsonValue()) as { x: number; cols: number };
}

/** Waits until the page has timed `n` keys of a series. */
async function pageTimed(page: Page, which: 'key' | 'timer', n: number): Promise<void> {
  await page.waitForFunction(([w, count]) => {
    const s = (window as unknown as { pdBench: PageBench }).pdBench[w as 'key' | 'timer'];
    return s.samples.length >= (count as number) && s.painted.length >= (count as number);
  }, [which, n] as const, { timeout: WAIT });
}

async function echoLatency(page: Page, bare: RawSocket): Promise<{ key: Series; timer: Series; bare: number[] }> {
  await instrument(page);
  const bareSamples: number[] = [];
  for (let i = 0; i < KEYSTROKES; i++) {
    // The page: one key typed into xterm's textarea; the page times it.
    const pageKey = PAGE_KEYS[i % PAGE_KEYS.length]!;
    bare.mark();
    await page.keyboard.type(pageKey);
    await pageTimed(page, 'key', i + 1);
    await bare.until('the page key reaching the bare client', () => bare.out.includes(pageKey));

    // The page again, the key fed to xterm from a timer (no input event).
    const fedKey = PAGE_KEYS[(i + 5) % PAGE_KEYS.length]!;
    bare.mark();
    await page.evaluate((k) => (window as unknown as { pdBench: PageBench }).pdBench.feed(k), fedKey);
    await pageTimed(page, 'timer', i + 1);
    await bare.until('the fed key reaching the bare client', () => bare.out.includes(fedKey));

    // The bare client: one key sent, timed to its echo.
    const bareKey = BARE_KEYS[i % BARE_KEYS.length]!;
    const byte = bareKey.charCodeAt(0);
    bare.mark();
    const t0 = performance.now();
    bare.sendBytes(Buffer.from([byte]));
    await bare.until(`the echo of ${bareKey}`, () => bare.out.includes(bareKey));
    bareSamples.push(performance.now() - t0);

    // Both see both echoes before the next round; a new line before the right margin.
    const at = await pageShows(page, bareKey);
    if (at.x >= at.cols - 4) {
      await page.keyboard.press('Enter');
      await pageShows(page, '');
    }
  }
  const bench = await page.evaluate(() => {
    const b = (window as unknown as { pdBench: PageBench }).pdBench;
    return { key: b.key, timer: b.timer };
  });
  return { ...bench, bare: bareSamples };
}

// --- 3. bytes on connect and per screenful -----------------------------------------------------

interface Bytes {
  deflate: string;
  connect: { wire: number; raw: number }[];
  screen: { wire: number; raw: number }[];
}

async function bytesOnTheWire(server: Server, token: string, id: string, cols: number, rows: number): Promise<Bytes[]> {
  const history = join(server.dir, 'bench-history.txt');
  const screen = join(server.dir, 'bench-screen.txt');
  writeFileSync(history, prose(HISTORY_LINES, cols, 1));
  writeFileSync(screen, prose(rows, cols, 2));
  const size = `cols=${cols}&rows=${rows}`;

  // History for the snapshot: the shell prints it, at the page's size.
  const setup = await RawSocket.connect(server, `/ws/instance/${id}?ticket=${await ticket(server, token, id)}&${size}`, false);
  await setup.until('the prompt', () => setup.out.includes('pd$'));
  setup.sendBytes(`cat ${history}; echo HI""ST-DONE\r`);
  await setup.until('the history', () => setup.out.includes('HIST-DONE'));
  setup.close();
  await new Promise((ok) => setTimeout(ok, 300));

  const plain = await RawSocket.connect(server, `/ws/instance/${id}?ticket=${await ticket(server, token, id)}&${size}`, false);
  const packed = await RawSocket.connect(server, `/ws/instance/${id}?ticket=${await ticket(server, token, id)}&${size}`, true);
  try {
    for (const s of [plain, packed]) await s.until('the connect snapshot', () => s.snapshot !== null);
    const result: Bytes[] = [plain, packed].map((s) => ({ deflate: s.extensions, connect: [s.snapshot!], screen: [] }));
    for (let n = 0; n < SCREENS; n++) {
      await new Promise((ok) => setTimeout(ok, 200));
      // The command's own echo comes first and is not counted: the output starts after the sleep.
      plain.sendBytes(`sleep 0.6; cat ${screen}\r`);
      await new Promise((ok) => setTimeout(ok, 300));
      const marks = [plain.mark(), packed.mark()];
      for (const [i, s] of [plain, packed].entries()) {
        await s.until('a screenful and the prompt', () => s.out.includes('pd$ '));
        result[i]!.screen.push({ wire: s.received - marks[i]!.received, raw: s.payload - marks[i]!.payload });
      }
    }
    return result;
  } finally {
    plain.close();
    packed.close();
  }
}

// --- the run ------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const started = Date.now();
  const server = await Server.start();
  const sockets: RawSocket[] = [];
  let browser: Awaited<ReturnType<typeof chromium.launch>> | null = null;
  try {
    const load = await firstLoad(server);
    const limit = budget();

    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
    });
    // The phone profile of playwright.config.ts.
    const { defaultBrowserType: _, ...phone } = devices['iPhone 13'];
    const context = await browser.newContext({
      ...phone, viewport: { width: 390, height: 664 }, screen: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true,
    });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    let browserExtensions: string | null = null;
    cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
      const headers = e.response.headers as Record<string, string>;
      const key = Object.keys(headers).find((k) => k.toLowerCase() === 'sec-websocket-extensions');
      browserExtensions = key ? headers[key]! : '';
    });

    const admin = await server.token('admin', server.adminPassword);
    const echoId = await createInstance(server, admin.token, 'bench-echo');
    const bytesId = await createInstance(server, admin.token, 'bench-bytes');

    await page.goto(`${server.url}/`);
    await page.getByLabel('Username').fill('admin');
    await page.getByLabel('Password').fill(server.adminPassword);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Agents' }).waitFor();
    await page.evaluate((id) => { location.hash = `#/t/${id}`; }, echoId);
    await page.locator('.term-page[data-connected="true"]').waitFor({ timeout: WAIT });
    await page.locator('.xterm-helper-textarea').focus();
    const size = await page.evaluate(() => {
      const term = (document.querySelector('.term-screen') as Element & { terminal: { cols: number; rows: number } }).terminal;
      return { cols: term.cols, rows: term.rows };
    });

    // The bare client on the same instance, offering deflate as browsers do, without a size (it
    // never resizes the page's pane). It turns the shell into an echoing `cat`, as benches/terminal.rs.
    const bare = await RawSocket.connect(server, `/ws/instance/${echoId}?ticket=${await ticket(server, admin.token, echoId)}`, true);
    sockets.push(bare);
    await bare.until('the prompt', () => bare.out.includes('pd$'));
    bare.sendBytes('stty -icanon; echo EC$((1+1))HO; exec cat >/dev/null\r');
    await bare.until('the echo mode', () => bare.out.includes('EC2HO'));
    await page.waitForFunction(() => (document.querySelector('.xterm-rows') as HTMLElement | null)?.innerText.includes('EC2HO'), null, { timeout: WAIT });
    await pageShows(page, '');

    const echo = await echoLatency(page, bare);
    if (pageErrors.length) throw new Error(`errors in the page: ${pageErrors.join('; ')}`);
    const [plain, packed] = await bytesOnTheWire(server, admin.token, bytesId, size.cols, size.rows);

    // --- report ---
    const q = (xs: number[]) => ({ p50: median(xs), p99: percentile(xs, 0.99) });
    const p = q(echo.key.samples);
    const b = q(echo.bare);
    const pick = (xs: { wire: number; raw: number }[]) => ({ wire: median(xs.map((x) => x.wire)), raw: median(xs.map((x) => x.raw)) });
    const [pc, kc, ps, ks] = [pick(plain!.connect), pick(packed!.connect), pick(plain!.screen), pick(packed!.screen)];
    const line = (label: string, xs: number[]): [string, string, string] => [label, `p50 ${ms(q(xs).p50)}`, `p99 ${ms(q(xs).p99)}`];
    const rows: [string, string, string][] = [
      line(`key to glyph in xterm's buffer, page (${KEYSTROKES} keys)`, echo.key.samples),
      line('  keydown to WebSocket send', echo.key.sent),
      line("  keydown to the echo's message event (parsed in it)", echo.key.arrived),
      line('key to the next animation frame (painted), page', echo.key.painted),
      line('same, key fed to xterm from a timer (no input event)', echo.timer.samples),
      line('  and to the next animation frame', echo.timer.painted),
      [`key to echo, bare WebSocket client in Node (${KEYSTROKES} keys)`, `p50 ${ms(b.p50)}`, `p99 ${ms(b.p99)}`],
      ['page (buffer) / bare', `p50 ${(p.p50 / b.p50).toFixed(1)}× (${signed(p.p50 - b.p50)})`, `p99 ${(p.p99 / b.p99).toFixed(1)}× (${signed(p.p99 - b.p99)})`],
      [`connect, ${HISTORY_LINES} lines of history at ${size.cols}×${size.rows} (snapshot ${kb(pc.raw)})`, `${kb(pc.wire)} plain`, `${kb(kc.wire)} deflate`],
      [`one screenful, ${size.rows} lines of text (${ps.raw} B of output)`, `${ps.wire} B plain`, `${ks.wire} B deflate`],
      ['first load, JS+CSS gzipped (index.html apart)', kb(load.assets), `budget ${kb(limit)} (index.html ${kb(load.index)})`],
    ];
    const w0 = Math.max(...rows.map((r) => r[0].length));
    const w1 = Math.max(...rows.map((r) => r[1].length));
    console.log(`\npage-latency benchmark${SMOKE ? ' (smoke)' : ''}: ${BINARY}, Chromium, phone profile, ${((Date.now() - started) / 1000).toFixed(1)} s`);
    for (const [a, c, d] of rows) console.log(`  ${a.padEnd(w0)}  ${c.padEnd(w1)}  ${d}`);
    console.log(`  permessage-deflate: the server ${packed!.deflate ? `accepts it (${packed!.deflate})` : 'refused the offer'}; Chromium got ${browserExtensions || 'none'}; without the offer, ${plain!.deflate ? `the server still answered ${plain!.deflate}` : 'none'}`);
    console.log(`  first load: ${load.files.join(', ')}`);
    if (load.assets > limit) {
      console.error(`first load ${kb(load.assets)} is over the ${kb(limit)} budget`);
      return 1;
    }
    return 0;
  } finally {
    for (const s of sockets) s.close();
    await browser?.close();
    await server.stop();
  }
}

main().then((code) => process.exit(code), (e: unknown) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exit(1);
});
