// One fetch wrapper for the API: JSON in and out, `{"error":{"code","message"}}` turned into an
// ApiError with words a person understands, and one refresh of the session on a 401. The
// browser holds only HttpOnly cookies (pd_access, pd_refresh); no token is ever kept in JS.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: unknown = null,
  ) {
    super(message);
  }
}

export interface User {
  id: number;
  username: string;
  role: 'admin' | 'user';
  disabled: boolean;
  created_at: string;
  last_login_at: string | null;
  /** How many agents this user may run at once; null when no per-user limit applies. */
  max_instances?: number | null;
}
export interface AuthConfig {
  registration: 'closed' | 'invite' | 'open';
  min_password_length: number;
  version: string;
}
export interface Model {
  id: string;
  name: string;
  kind: string;
  memory_mb: number;
  usable: boolean;
  reason: string | null;
  required_secrets: string[];
  /** Whether its agents can be suspended and resumed where they were. */
  can_resume: boolean;
}
export interface Instance {
  id: string;
  name: string;
  profile: string;
  owner: number;
  workdir: string;
  state: 'starting' | 'running' | 'suspended' | 'exited' | 'stopped';
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  exit_code: number | null;
  end_reason: string | null;
  /** When its process went to free memory (state `suspended`), why, and how much it freed. */
  suspended_at?: string | null;
  suspend_reason?: string | null;
  freed_bytes?: number | null;
  /** What the last resume lost: a turn cut mid-way or a tool call that never finished. */
  interrupted?: { kind: 'turn' | 'tool'; text: string; prompt: string | null } | null;
  memory_bytes?: number | null;
  cpu_percent?: number | null;
  status?: 'working' | 'waiting' | 'needs_permission' | 'idle' | null;
  status_reason?: string | null;
  last_activity_at?: string | null;
  /** The last line of text on a running agent's screen. */
  preview?: string | null;
  /** The permission dialog on its screen, parsed (see approvals.ts). */
  pending_approval?: import('./approvals').PendingApproval | null;
  /** The repository (a folder in the workspace), branch and base of an agent started on a branch. */
  git_repo?: string | null;
  git_branch?: string | null;
  git_base?: string | null;
}
export interface Entry {
  name: string;
  kind: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  modified: number;
  utf8: boolean;
  target?: string | null;
  target_kind?: 'file' | 'dir' | 'symlink' | 'other' | null;
}
export interface Listing {
  path: string;
  entries: Entry[];
  truncated: boolean;
}
export interface FileContent {
  path: string;
  content: string;
  encoding: string;
  etag: string;
  size: number;
  modified: number;
}
export interface Secret {
  name: string;
  hint: string;
  updated_at: string;
}

let onSignedOut: (why: string) => void = () => undefined;
export function setSignedOutHandler(handler: (why: string) => void): void {
  onSignedOut = handler;
}

/** Hands the app over to sign-in (the live event stream says the session ended). */
export function signedOut(why: string): void {
  onSignedOut(why);
}

/** The base every relative API URL resolves against (works under any base path). */
export function url(path: string): string {
  return new URL(path, document.baseURI).href;
}

let refreshing: Promise<boolean> | null = null;

/**
 * Refreshes the session once for everyone waiting: one request per tab, and across tabs through
 * a Web Lock, since two refreshes with the same token look like theft and end the session.
 */
export function refreshSession(): Promise<boolean> {
  if (!refreshing) {
    const run = async (): Promise<boolean> => {
      // Another tab may have refreshed while this one waited for the lock.
      const me = await fetch(url('api/auth/me'), { credentials: 'same-origin' }).catch(() => null);
      if (me?.ok) return true;
      const response = await fetch(url('api/auth/refresh'), {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      }).catch(() => null);
      return !!response?.ok;
    };
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    const attempt: Promise<boolean> = locks ? locks.request('pocketdev-refresh', run).then((ok) => ok) : run();
    refreshing = attempt.finally(() => {
      refreshing = null;
    });
    return refreshing;
  }
  return refreshing;
}

const NO_REFRESH = ['api/auth/login', 'api/auth/register', 'api/auth/refresh', 'api/auth/logout', 'api/auth/config'];

/** The server's words as a sentence: a capital first letter and a full stop. */
export function sentence(message: string): string {
  const text = message.trim();
  if (!text) return text;
  const first = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}

function plainWords(status: number, code: string, message: string): string {
  if (status === 429) return `${sentence(message || 'too many requests')} Wait a moment and try again.`;
  if (status >= 500 && !message) return 'The server had a problem. Try again in a moment.';
  if (code === 'unauthorized' && message === 'sign in first') return 'Your session has ended. Sign in again.';
  if (code === 'no_session') return 'Sign in first.';
  return sentence(message) || `The server answered ${status}.`;
}

async function isNoSession(response: Response): Promise<boolean> {
  const body = (await response.clone().json().catch(() => null)) as { error?: { code?: string } } | null;
  return body?.error?.code === 'no_session';
}

/** A GET of raw bytes (a file to show), with the same errors and session refresh as `request`. */
export function requestBlob(path: string): Promise<Blob> {
  return request<Blob>('GET', path, undefined, true, true);
}

export async function request<T>(method: string, path: string, body?: unknown, retry = true, blob = false): Promise<T> {
  const init: RequestInit = { method, credentials: 'same-origin', headers: {} };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  } else if (method !== 'GET' && method !== 'DELETE') {
    init.body = '{}';
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  let response: Response;
  try {
    response = await fetch(url(path), init);
  } catch {
    window.dispatchEvent(new Event('pd-unreachable'));
    throw new ApiError(0, 'offline', navigator.onLine
      ? 'Cannot reach the server. Check your connection and try again.'
      : 'You are offline. Reconnect to the internet and try again.');
  }
  window.dispatchEvent(new Event('pd-reachable'));
  // `no_session`: neither an access nor a refresh cookie was sent, so a refresh cannot help
  // (a signed-out cold start makes this one call, not three).
  if (response.status === 401 && retry && !NO_REFRESH.some((p) => path.startsWith(p)) && !(await isNoSession(response))) {
    if (await refreshSession()) return request<T>(method, path, body, false, blob);
    onSignedOut('Your session has ended. Sign in again.');
    // The sign-in page says it; no toast on top.
    throw new ApiError(401, 'signed_out', 'Your session has ended. Sign in again.');
  }
  if (response.status === 204) return undefined as T;
  if (blob && response.ok) return (await response.blob()) as T;
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) {
    const error = (data as { error?: { code?: string; message?: string } } | null)?.error;
    const code = error?.code ?? 'error';
    throw new ApiError(response.status, code, plainWords(response.status, code, error?.message ?? ''), data);
  }
  return data as T;
}

export const api = {
  get: <T>(path: string) => request<T>('GET', path),
  post: <T>(path: string, body?: unknown) => request<T>('POST', path, body),
  put: <T>(path: string, body?: unknown) => request<T>('PUT', path, body),
  patch: <T>(path: string, body?: unknown) => request<T>('PATCH', path, body),
  del: <T>(path: string) => request<T>('DELETE', path),
};

export function q(params: Record<string, string | number | boolean | undefined>): string {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) search.set(k, String(v));
  const s = search.toString();
  return s ? `?${s}` : '';
}

/** Uploads files into a workspace folder; returns the paths written. */
export async function upload(folder: string, files: File[], replace = false): Promise<{ path: string; size: number }[]> {
  const form = new FormData();
  for (const file of files) form.append('file', file, file.name);
  return request('POST', `api/files/upload${q({ path: folder || undefined, replace: replace || undefined })}`, form);
}

/** Makes each folder of `path` that is missing. */
export async function mkdirp(path: string): Promise<void> {
  let sofar = '';
  for (const part of path.split('/').filter(Boolean)) {
    sofar = sofar ? `${sofar}/${part}` : part;
    try {
      await api.post('api/files/mkdir', { path: sofar });
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 409)) throw e;
    }
  }
}
