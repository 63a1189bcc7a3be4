// Starts the real `pocketdev serve` for a test: a temp data dir, a temp TOML config with the fake
// agent (tests/fixtures/fake-agent.sh, plain and resumable), generous rate limits, and a port chosen up front so the
// server can be restarted on it. Stops it (and its tmux server) afterwards.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..');
export const BINARY = process.env.POCKETDEV_BIN ?? join(ROOT, 'target/debug/pocketdev');

/** The test's environment for the server, less POCKETDEV_BIN, which the server would read as configuration. */
function serverEnvironment(): NodeJS.ProcessEnv {
  const { POCKETDEV_BIN: _binary, ...env } = process.env;
  return env;
}

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

let isolationKnown: boolean | undefined;
/** Whether this build has the `isolation` config section (per-account Unix users). */
function hasIsolation(): boolean {
  if (isolationKnown === undefined) {
    const out = spawnSync(BINARY, ['config'], { encoding: 'utf8', env: { ...serverEnvironment(), POCKETDEV_CONFIG: '/dev/null' } });
    isolationKnown = /isolation/.test(`${out.stdout}${out.stderr}`);
  }
  return isolationKnown;
}

export interface ServerOptions {
  /** Extra TOML appended to the config. */
  extraToml?: string;
  basePath?: string;
  /** Extra environment for the server, such as `POCKETDEV_LIMITS__MAX_PER_USER` (it beats the file). */
  env?: Record<string, string>;
}

export class Server {
  url = '';
  adminPassword = '';
  private child: ChildProcess | null = null;
  private log: string[] = [];
  constructor(readonly dir: string, readonly configPath: string, readonly port: number, readonly env: Record<string, string> = {}) {}

  get dataDir(): string {
    return join(this.dir, 'data');
  }
  workspace(userId: number): string {
    return join(this.dataDir, 'users', String(userId), 'workspace');
  }
  logs(): string {
    return this.log.join('');
  }

  static async start(options: ServerOptions = {}): Promise<Server> {
    if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: build it with cargo build (after npm run build in web/)`);
    const dir = mkdtempSync(join(tmpdir(), 'pd-e2e-'));
    const port = await freePort();
    const config = join(dir, 'pocketdev.toml');
    writeFileSync(config, [
      `listen = "127.0.0.1:${port}"`,
      `data_dir = "${join(dir, 'data')}"`,
      options.basePath ? `base_path = "${options.basePath}"` : '',
      '[rate_limits]', 'login_per_minute = 1000', 'api_per_minute = 100000',
      '[limits]', 'max_per_user = 20', 'max_total = 40', 'memory_reserve_mb = 0', 'idle_timeout_minutes = 0',
      '[tmux]', 'stop_grace_secs = 1',
      '[profiles.fake]', 'name = "Fake agent"', `command = "${join(ROOT, 'tests/fixtures/fake-agent.sh')}"`, 'memory_mb = 10',
      // The same agent with a conversation that outlives its process (as Claude Code's does), for suspend and resume.
      '[profiles.fake-resumable]', 'name = "Resumable fake agent"', `command = "${join(ROOT, 'tests/fixtures/fake-agent.sh')}"`, 'memory_mb = 10',
      'session_args = ["--session-id", "{session}"]', 'resume_args = ["--resume", "{session}"]',
      // A plain bash with a fixed prompt, for the key bar tests.
      '[profiles.bash]', 'name = "Bash"', 'command = "bash"', 'args = ["--noprofile", "--norc", "-i"]', 'memory_mb = 10', '[profiles.bash.env]', 'PS1 = "pd$ "',
      // The web app does not depend on OS isolation; parallel test servers must not share
      // per-account users or tmux sockets, so it stays off here.
      hasIsolation() ? '[isolation]\nmode = "none"' : '',
      options.extraToml ?? '',
    ].join('\n'));
    const server = new Server(dir, config, port, options.env);
    await server.spawn();
    const pw = readFileSync(join(dir, 'data/server/initial-admin-password'), 'utf8').match(/password:\s*(\S+)/);
    server.adminPassword = pw?.[1] ?? '';
    return server;
  }

  async spawn(): Promise<void> {
    const child = spawn(BINARY, ['--config', this.configPath, 'serve'], {
      env: { ...serverEnvironment(), ...this.env, NO_COLOR: '1', RUST_LOG: process.env.E2E_SERVER_LOG ?? 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`pocketdev did not start:\n${this.logs()}`)), 20_000);
      const onData = (chunk: Buffer) => {
        const text = chunk.toString();
        this.log.push(text);
        const m = this.logs().match(/pocketdev is running at (http:\/\/\S+?)\/?\s/) ?? this.logs().match(/listening\s+url=(http:\/\/\S+?)\/?\s/);
        if (m && !this.url) this.url = m[1]!.replace(/\/$/, '');
        if (m) {
          clearTimeout(timer);
          ok();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        fail(new Error(`pocketdev exited with ${code}:\n${this.logs()}`));
      });
    });
    this.child.removeAllListeners('exit');
    if (!this.url) this.url = `http://127.0.0.1:${this.port}`;
  }

  /** Stops the server gracefully (the agents' tmux server keeps running). */
  async stopProcess(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    this.child = null;
  }

  /** Runs a tmux client against the agents' tmux server; its output. */
  tmux(...args: string[]): string {
    const socket = join(this.dataDir, 'server/tmux.sock');
    const out = spawnSync('tmux', ['-S', socket, ...args], { encoding: 'utf8' });
    if (out.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${out.stderr}`);
    return out.stdout;
  }

  async restart(): Promise<void> {
    await this.stopProcess();
    this.log.push('--- restart ---\n');
    this.url = '';
    await this.spawn();
  }

  async stop(): Promise<void> {
    await this.stopProcess();
    const socket = join(this.dataDir, 'server/tmux.sock');
    if (existsSync(socket)) spawnSync('tmux', ['-S', socket, 'kill-server'], { stdio: 'ignore' });
    try {
      rmSync(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    } catch {
      // An agent may still be writing as it dies; a temp dir left behind is harmless.
    }
  }

  /** An API call with a bearer token, outside the browser. */
  async api(method: string, path: string, token?: string, body?: unknown): Promise<Response> {
    return fetch(`${this.url}/${path.replace(/^\//, '')}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  }

  async token(username: string, password: string): Promise<{ token: string; id: number }> {
    const response = await this.api('POST', 'api/auth/login', undefined, { username, password });
    if (!response.ok) throw new Error(`sign-in of ${username}: ${response.status} ${await response.text()}`);
    const body = (await response.json()) as { access_token: string; user: { id: number } };
    return { token: body.access_token, id: body.user.id };
  }

  async createUser(username: string, password: string): Promise<number> {
    const admin = await this.token('admin', this.adminPassword);
    const response = await this.api('POST', 'api/admin/users', admin.token, { username, password });
    if (response.status !== 201) throw new Error(`creating ${username}: ${response.status} ${await response.text()}`);
    return ((await response.json()) as { user: { id: number } }).user.id;
  }
}
