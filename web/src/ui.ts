// Small DOM helpers: element builder, toasts (visible feedback for every action), accessible
// dialogs for confirm and prompt, and formatting.
import { ApiError, sentence } from './api';

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, unknown> & { class?: string; style?: string };

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs | null = null, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on') && typeof value === 'function') {
        el.addEventListener(key.slice(2).toLowerCase(), value as EventListener);
      } else if (key === 'class') {
        el.className = String(value);
      } else if (key in el && !key.includes('-') && key !== 'list' && key !== 'form') {
        (el as unknown as Record<string, unknown>)[key] = value;
      } else {
        el.setAttribute(key, value === true ? '' : String(value));
      }
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

let toastBox: HTMLElement | null = null;
export function toast(message: string, kind: 'ok' | 'error' | 'info' = 'ok', ms = 4000): void {
  // Inside an open dialog, which sits in the top layer: anywhere else the message would be
  // drawn under it.
  const host = document.querySelector<HTMLDialogElement>('dialog[open]') ?? document.body;
  if (!toastBox || toastBox.parentElement !== host) {
    toastBox?.remove();
    toastBox = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    host.append(toastBox);
  }
  const item = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : undefined }, message);
  // One message at a time: a newer one replaces the last, so "Saved" never stays beside "Not saved".
  toastBox.replaceChildren(item);
  setTimeout(() => item.remove(), kind === 'error' ? Math.max(ms, 7000) : ms);
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return sentence(e.message);
  return sentence(String(e));
}

/** An error shown where it happened: next to its field, or in its form or dialog. */
export interface InlineError {
  el: HTMLElement;
  show(e: unknown): void;
  hide(): void;
}

/**
 * A message element for `field` (an input, or the button of a form): hidden until `show`,
 * then an alert that screen readers announce, which the field names in `aria-describedby`
 * (and marks `aria-invalid` when it is an input).
 */
export function inlineError(field: HTMLElement, id: string): InlineError {
  const el = h('p', { class: 'form-error inline-error', id, role: 'alert', hidden: true });
  const described = () => (field.getAttribute('aria-describedby') ?? '').split(/\s+/).filter(Boolean);
  const isInput = field instanceof HTMLInputElement || field instanceof HTMLSelectElement || field instanceof HTMLTextAreaElement;
  return {
    el,
    show(e: unknown) {
      if (e instanceof ApiError && e.code === 'signed_out') return;
      el.textContent = errorText(e);
      el.hidden = false;
      if (!described().includes(id)) field.setAttribute('aria-describedby', [...described(), id].join(' '));
      if (isInput) field.setAttribute('aria-invalid', 'true');
    },
    hide() {
      el.hidden = true;
      el.textContent = '';
      const rest = described().filter((d) => d !== id);
      if (rest.length) field.setAttribute('aria-describedby', rest.join(' '));
      else field.removeAttribute('aria-describedby');
      field.removeAttribute('aria-invalid');
    },
  };
}

export function showError(e: unknown): void {
  if (e instanceof ApiError && e.code === 'signed_out') return;
  toast(errorText(e), 'error');
}

/**
 * Runs an action with a busy button and a toast for a success; a failure shows in `inline`
 * (next to the form it concerns) when given, else as a toast.
 */
export async function act<T>(button: HTMLButtonElement | null, work: () => Promise<T>, done?: string, inline?: InlineError): Promise<T | undefined> {
  const label = button?.textContent;
  if (button) {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
  }
  inline?.hide();
  try {
    const result = await work();
    if (done) toast(done);
    return result;
  } catch (e) {
    if (inline) inline.show(e);
    else showError(e);
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute('aria-busy');
      if (label !== null && label !== undefined && button.textContent !== label) button.textContent = label;
    }
  }
}

/**
 * A modal form. With `apply`, choosing `applyOn` runs it first and the dialog stays open with
 * its error shown inside (next to `errorFor`) until it succeeds or is cancelled.
 */
function dialog(title: string, body: Node[], buttons: { label: string; value: string; kind?: string }[],
  apply?: { on: string; run: () => Promise<unknown>; errorFor: HTMLElement }): Promise<{ value: string; form: HTMLFormElement }> {
  return new Promise((resolve) => {
    const d = h('dialog', { class: 'dialog', 'aria-labelledby': 'dialog-title' });
    const error = apply ? inlineError(apply.errorFor, 'dialog-error') : null;
    const form = h('form', { method: 'dialog' },
      h('h2', { id: 'dialog-title' }, title),
      ...body,
      error?.el,
      h('div', { class: 'dialog-buttons' },
        buttons.map((b) => h('button', { value: b.value, class: b.kind ?? '', type: 'submit' }, b.label))),
    );
    if (apply) {
      form.addEventListener('submit', async (e) => {
        const submitter = (e as SubmitEvent).submitter as HTMLButtonElement | null;
        if (submitter?.value !== apply.on) return;
        e.preventDefault();
        const done = await act(submitter, apply.run, undefined, error!);
        if (done !== undefined) d.close(apply.on);
      });
    }
    d.append(form);
    document.body.append(d);
    d.addEventListener('close', () => {
      resolve({ value: d.returnValue || 'cancel', form });
      d.remove();
    });
    d.showModal();
    const first = form.querySelector<HTMLElement>('input, textarea, select');
    first?.focus();
  });
}

export async function confirmDialog(title: string, message: string, yes = 'Delete', kind = 'danger'): Promise<boolean> {
  const { value } = await dialog(title, [h('p', null, message)], [
    { label: 'Cancel', value: 'cancel', kind: 'secondary' },
    { label: yes, value: 'yes', kind },
  ]);
  return value === 'yes';
}

/**
 * Asks for one value. With `apply`, the dialog runs it with the value and stays open showing
 * its error until it succeeds (then the value is returned) or is cancelled (null).
 */
export async function promptDialog(title: string, label: string, initial = '', ok = 'Save', type = 'text',
  apply?: (value: string) => Promise<unknown>): Promise<string | null> {
  const input = h('input', { name: 'value', value: initial, type, 'aria-label': label, autocomplete: 'off', autocapitalize: 'off' });
  const { value } = await dialog(title, [h('label', { class: 'field' }, h('span', null, label), input)], [
    { label: 'Cancel', value: 'cancel', kind: 'secondary' },
    { label: ok, value: 'ok', kind: 'primary' },
  ], apply ? { on: 'ok', errorFor: input, run: async () => (await apply(input.value)) ?? true } : undefined);
  return value === 'ok' ? input.value : null;
}

export async function infoDialog(title: string, ...body: Node[]): Promise<void> {
  await dialog(title, body, [{ label: 'Close', value: 'ok', kind: 'primary' }]);
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function duration(fromIso: string | null, to = Date.now()): string {
  if (!fromIso) return '—';
  let s = Math.max(0, Math.floor((to - Date.parse(fromIso)) / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hr = Math.floor(s / 3600);
  s -= hr * 3600;
  const m = Math.floor(s / 60);
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m`;
  return `${s}s`;
}

export function when(iso: string | number | null | undefined): string {
  if (iso === null || iso === undefined) return '—';
  const date = typeof iso === 'number' ? new Date(iso * 1000) : new Date(iso);
  return date.toLocaleString();
}

export function statusBadge(state: string, status?: string | null): HTMLElement {
  // The instance's state first; a running one shows what the monitor sees on its screen.
  const key = state === 'exited' || state === 'stopped' ? 'exited'
    : state === 'starting' ? 'starting'
    : state === 'suspended' ? 'suspended'
    : status === 'needs_permission' || status === 'waiting' || status === 'working' || status === 'idle' ? status
    : 'running';
  const text = key === 'exited' ? state : key.replace('_', ' ');
  return h('span', { class: `badge badge-${key}`, 'data-status': key }, text);
}

const ICONS: Record<string, string> = {
  next: 'M5 5l9 7-9 7z M18 5v14',
  switch: 'M4 7h15 M15 3l4 4-4 4 M20 17H5 M9 13l-4 4 4 4',
  folder: 'M3 6h6l2 2h10v11H3z',
  file: 'M6 3h8l4 4v14H6z M14 3v4h4',
  image: 'M3 5h18v14H3z M3 16l5-5 4 4 3-3 6 6 M15.5 9.5h.01',
  back: 'M15 5l-7 7 7 7',
  up: 'M12 19V5 M6 11l6-6 6 6',
  branch: 'M6 3v12 M15 6a3 3 0 1 0 6 0a3 3 0 1 0-6 0 M3 18a3 3 0 1 0 6 0a3 3 0 1 0-6 0 M18 9a9 9 0 0 1-9 9',
};

/** A small stroked SVG icon (no emoji: not every device has an emoji font). */
export function icon(name: keyof typeof ICONS | string, size = 20): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name] ?? '');
  path.setAttribute('fill', 'none');
  path.setAttribute('stroke', 'currentColor');
  path.setAttribute('stroke-width', '2');
  path.setAttribute('stroke-linecap', 'round');
  path.setAttribute('stroke-linejoin', 'round');
  svg.append(path);
  return svg;
}
