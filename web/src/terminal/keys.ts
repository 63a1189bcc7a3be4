// The terminal's key bar: the keys a phone keyboard lacks. Every key is in reach (the bar wraps
// into rows), a drag key moves the cursor like a joystick, a long press offers alternates, and
// the user picks and orders the keys (kept on this device).
import { h, toast } from '../ui';

/** What the keys do, supplied by the terminal view. */
export interface KeyActions {
  send(data: string): void;
  /** An arrow's sequence in the program's current cursor-key mode. */
  arrow(direction: 'A' | 'B' | 'C' | 'D'): string;
  paste(): void;
  select(): void;
  typeDirectly(): void;
}

interface KeyDef {
  label: string;
  /** The accessible name; it contains the label's own words where the label has any. */
  aria: string;
  /** Bytes to send, or a function of the actions. */
  press: string | ((a: KeyActions) => void);
  /** Keys offered on a long press. */
  alternates?: string[];
}

const arrowKey = (d: 'A' | 'B' | 'C' | 'D') => (a: KeyActions) => a.send(a.arrow(d));

/** Every key the bar can hold, by id. */
const CATALOG: Record<string, KeyDef> = {
  esc: { label: 'Esc', aria: 'Esc (Escape)', press: '\x1b', alternates: ['pipe', 'tilde', 'slash', 'dash', 'underscore', 'backslash', 'backtick'] },
  tab: { label: 'Tab', aria: 'Tab', press: '\t', alternates: ['stab'] },
  stab: { label: '⇧Tab', aria: 'Shift-Tab', press: '\x1b[Z' },
  ctrl: { label: 'Ctrl', aria: 'Ctrl (sticky: applies to the next key)', press: () => undefined },
  ctrlc: { label: '^C', aria: 'Control-C', press: '\x03', alternates: ['ctrld', 'ctrlz', 'ctrlr', 'ctrll', 'ctrla', 'ctrle', 'ctrlu', 'ctrlw'] },
  ctrld: { label: '^D', aria: 'Control-D', press: '\x04' },
  ctrlz: { label: '^Z', aria: 'Control-Z', press: '\x1a' },
  ctrlr: { label: '^R', aria: 'Control-R', press: '\x12' },
  ctrll: { label: '^L', aria: 'Control-L', press: '\x0c' },
  ctrla: { label: '^A', aria: 'Control-A', press: '\x01' },
  ctrle: { label: '^E', aria: 'Control-E', press: '\x05' },
  ctrlu: { label: '^U', aria: 'Control-U', press: '\x15' },
  ctrlw: { label: '^W', aria: 'Control-W', press: '\x17' },
  joystick: { label: '✥', aria: 'Arrows: drag in any direction', press: () => toast('Drag this key to move the cursor.', 'info', 2000) },
  left: { label: '←', aria: 'Left arrow', press: arrowKey('D'), alternates: ['home', 'end'] },
  up: { label: '↑', aria: 'Up arrow', press: arrowKey('A'), alternates: ['pgup', 'pgdn'] },
  down: { label: '↓', aria: 'Down arrow', press: arrowKey('B'), alternates: ['pgdn', 'pgup'] },
  right: { label: '→', aria: 'Right arrow', press: arrowKey('C'), alternates: ['end', 'home'] },
  home: { label: 'Home', aria: 'Home', press: '\x1b[H' },
  end: { label: 'End', aria: 'End', press: '\x1b[F' },
  pgup: { label: 'PgUp', aria: 'PgUp (Page up)', press: '\x1b[5~' },
  pgdn: { label: 'PgDn', aria: 'PgDn (Page down)', press: '\x1b[6~' },
  enter: { label: '⏎', aria: 'Enter', press: '\r' },
  pipe: { label: '|', aria: '| (pipe)', press: '|' },
  tilde: { label: '~', aria: '~ (tilde)', press: '~' },
  slash: { label: '/', aria: '/ (slash)', press: '/' },
  dash: { label: '-', aria: '- (dash)', press: '-' },
  underscore: { label: '_', aria: '_ (underscore)', press: '_' },
  backslash: { label: '\\', aria: '\\ (backslash)', press: '\\' },
  backtick: { label: '`', aria: '` (backtick)', press: '`' },
  paste: { label: 'Paste', aria: 'Paste from the clipboard', press: (a) => a.paste() },
  select: { label: 'Select', aria: 'Select and copy text', press: (a) => a.select() },
  type: { label: '⌨', aria: 'Type directly into the terminal', press: (a) => a.typeDirectly() },
};

export const DEFAULT_KEYS = ['esc', 'tab', 'stab', 'ctrl', 'ctrlc', 'joystick', 'left', 'up', 'down', 'right', 'enter', 'paste', 'select', 'type'];
const KEYS_KEY = 'pd.keys';
const LONG_PRESS_MS = 450;
/** How far a finger travels on the drag key for one arrow press. */
const JOYSTICK_STEP_PX = 18;

/** The keys chosen on this device, in their order. */
export function chosenKeys(): string[] {
  try {
    const saved = JSON.parse(localStorage.getItem(KEYS_KEY) ?? 'null') as unknown;
    if (Array.isArray(saved)) {
      const ids = saved.filter((k): k is string => typeof k === 'string' && k in CATALOG);
      if (ids.length) return [...new Set(ids)];
    }
  } catch {
    // A damaged setting falls back to the defaults.
  }
  return [...DEFAULT_KEYS];
}

function saveKeys(ids: string[]) {
  if (ids.join() === DEFAULT_KEYS.join()) localStorage.removeItem(KEYS_KEY);
  else localStorage.setItem(KEYS_KEY, JSON.stringify(ids));
}

export interface KeyBar {
  /** Clears the sticky Ctrl and says whether it was on. */
  takeCtrl(): boolean;
  /** Builds the keys again from the saved choice. */
  rebuild(): void;
  dispose(): void;
}

/** Fills `bar` with the chosen keys; `leading` (the compose key) stays first. */
export function mountKeyBar(bar: HTMLElement, leading: HTMLElement, actions: KeyActions): KeyBar {
  let ctrl = false;
  let ctrlButton: HTMLButtonElement | null = null;
  const setCtrl = (on: boolean) => {
    ctrl = on;
    ctrlButton?.classList.toggle('on', on);
    ctrlButton?.setAttribute('aria-pressed', String(on));
  };
  const flash = (b: HTMLElement) => {
    b.classList.add('pressed');
    setTimeout(() => b.classList.remove('pressed'), 120);
  };
  const run = (def: KeyDef) => {
    if (typeof def.press !== 'string') {
      def.press(actions);
      return;
    }
    let data = def.press;
    if (ctrl && data.length === 1) {
      data = ctrlOf(data);
      setCtrl(false);
    }
    actions.send(data);
  };

  // A manual popover: an automatic one would close as the finger that opened it lifts.
  const alternates = h('div', { class: 'key-alts', popover: 'manual', role: 'menu', 'aria-label': 'More keys' });
  const isOpen = () => alternates.matches(':popover-open');
  const closeAlternates = () => {
    if (isOpen()) alternates.hidePopover();
  };
  const onOutside = (e: PointerEvent) => {
    if (isOpen() && !alternates.contains(e.target as Node)) closeAlternates();
  };
  const onEscape = (e: KeyboardEvent) => {
    if (e.key === 'Escape' && isOpen()) closeAlternates();
  };
  document.addEventListener('pointerdown', onOutside, true);
  document.addEventListener('keydown', onEscape);
  const showAlternates = (key: HTMLElement, ids: string[]) => {
    alternates.replaceChildren(...ids.map((altId) => {
      const alt = CATALOG[altId]!;
      return h('button', { type: 'button', role: 'menuitem', class: 'key', 'aria-label': alt.aria, onclick: () => {
        closeAlternates();
        run(alt);
      } }, alt.label);
    }));
    alternates.showPopover();
    // Above the key, kept on the screen.
    const k = key.getBoundingClientRect();
    const width = alternates.offsetWidth;
    alternates.style.left = `${Math.max(4, Math.min(window.innerWidth - width - 4, k.left + k.width / 2 - width / 2))}px`;
    alternates.style.top = `${Math.max(4, k.top - alternates.offsetHeight - 6)}px`;
    (alternates.firstElementChild as HTMLElement | null)?.focus();
  };

  const makeKey = (keyId: string): HTMLButtonElement => {
    const def = CATALOG[keyId]!;
    // Words in a smaller type so they fit a key; the thin glyphs larger so they show.
    const look = def.label.length > 4 ? ' key-word' : /^[⏎⌨✥]$/.test(def.label) ? ' key-glyph' : '';
    const b = h('button', { type: 'button', class: `key${look}`, 'aria-label': def.aria, 'data-key': keyId }, def.label);
    if (def.alternates) {
      b.classList.add('has-alts');
      b.title = `Hold for ${def.alternates.map((a) => CATALOG[a]!.label).join(' ')}`;
    }
    // Keep the focus (and the phone keyboard) where it is.
    b.addEventListener('pointerdown', (e) => e.preventDefault());
    if (keyId === 'joystick') {
      joystick(b);
    } else if (def.alternates) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      let held = false;
      const hold = () => {
        held = true;
        showAlternates(b, def.alternates!);
      };
      b.addEventListener('pointerdown', () => {
        held = false;
        clearTimeout(timer);
        timer = setTimeout(hold, LONG_PRESS_MS);
      });
      for (const end of ['pointerup', 'pointercancel', 'pointerleave']) b.addEventListener(end, () => clearTimeout(timer));
      // A phone's own long press (and a right click) opens the alternates too.
      b.addEventListener('contextmenu', (e) => {
        e.preventDefault();
        clearTimeout(timer);
        if (!isOpen()) hold();
      });
      b.addEventListener('click', (e) => {
        if (held) {
          held = false;
          e.preventDefault();
          return;
        }
        run(def);
        flash(b);
      });
    } else {
      b.addEventListener('click', () => {
        if (keyId === 'ctrl') setCtrl(!ctrl);
        else run(def);
        flash(b);
      });
    }
    if (keyId === 'ctrl') {
      ctrlButton = b;
      b.setAttribute('aria-pressed', String(ctrl));
    }
    return b;
  };

  // Dragging sends one arrow per step travelled, in the direction of travel.
  const joystick = (b: HTMLButtonElement) => {
    let origin: { x: number; y: number } | null = null;
    let moved = false;
    b.addEventListener('pointerdown', (e) => {
      b.setPointerCapture(e.pointerId);
      origin = { x: e.clientX, y: e.clientY };
      moved = false;
      b.classList.add('on');
    });
    b.addEventListener('pointermove', (e) => {
      if (!origin) return;
      for (;;) {
        const dx = e.clientX - origin.x;
        const dy = e.clientY - origin.y;
        if (Math.max(Math.abs(dx), Math.abs(dy)) < JOYSTICK_STEP_PX) break;
        moved = true;
        if (Math.abs(dx) >= Math.abs(dy)) {
          actions.send(actions.arrow(dx > 0 ? 'C' : 'D'));
          origin.x += Math.sign(dx) * JOYSTICK_STEP_PX;
        } else {
          actions.send(actions.arrow(dy > 0 ? 'B' : 'A'));
          origin.y += Math.sign(dy) * JOYSTICK_STEP_PX;
        }
      }
    });
    const end = () => {
      origin = null;
      b.classList.remove('on');
    };
    b.addEventListener('pointerup', end);
    b.addEventListener('pointercancel', end);
    b.addEventListener('click', () => {
      if (!moved) run(CATALOG.joystick!);
    });
    // Keyboard users move with the arrow keys while the key has the focus.
    b.addEventListener('keydown', (e) => {
      const d = ({ ArrowLeft: 'D', ArrowUp: 'A', ArrowDown: 'B', ArrowRight: 'C' } as const)[e.key as 'ArrowLeft'];
      if (!d) return;
      e.preventDefault();
      actions.send(actions.arrow(d));
    });
  };

  const rebuild = () => {
    ctrlButton = null;
    bar.replaceChildren(leading, ...chosenKeys().map(makeKey), alternates);
  };
  rebuild();
  return {
    takeCtrl() {
      if (!ctrl) return false;
      setCtrl(false);
      return true;
    },
    rebuild,
    dispose() {
      closeAlternates();
      document.removeEventListener('pointerdown', onOutside, true);
      document.removeEventListener('keydown', onEscape);
    },
  };
}

export function ctrlOf(ch: string): string {
  const c = ch.toUpperCase().charCodeAt(0);
  if (c >= 64 && c <= 95) return String.fromCharCode(c - 64);
  if (ch === ' ') return '\x00';
  if (ch === '?') return '\x7f';
  return ch;
}

/** A dialog to choose which keys the bar shows and in what order; `done` runs after a save. */
export function customizeKeys(done: () => void): void {
  let chosen = chosenKeys();
  const list = h('ul', { class: 'key-choices', 'aria-label': 'Keys' });
  const render = () => {
    const ids = [...chosen, ...Object.keys(CATALOG).filter((k) => !chosen.includes(k))];
    list.replaceChildren(...ids.map((keyId) => {
      const def = CATALOG[keyId]!;
      const at = chosen.indexOf(keyId);
      const box = h('input', { type: 'checkbox', checked: at >= 0, 'aria-label': `Show ${def.aria}` });
      box.addEventListener('change', () => {
        chosen = box.checked ? [...chosen, keyId] : chosen.filter((k) => k !== keyId);
        render();
        (list.querySelector(`[data-key="${keyId}"] input`) as HTMLElement | null)?.focus();
      });
      const move = (by: number) => {
        const to = at + by;
        if (at < 0 || to < 0 || to >= chosen.length) return;
        [chosen[at], chosen[to]] = [chosen[to]!, chosen[at]!];
        render();
        (list.querySelector(`[data-key="${keyId}"] [data-move="${by}"]`) as HTMLElement | null)?.focus();
      };
      return h('li', { 'data-key': keyId, class: at >= 0 ? 'chosen' : '' },
        h('label', null, box, h('span', { class: 'key-sample' }, def.label), h('span', { class: 'key-name' }, def.aria)),
        h('button', { type: 'button', class: 'icon-button', 'data-move': -1, 'aria-label': `Move ${def.aria} earlier`, disabled: at <= 0, onclick: () => move(-1) }, '↑'),
        h('button', { type: 'button', class: 'icon-button', 'data-move': 1, 'aria-label': `Move ${def.aria} later`, disabled: at < 0 || at >= chosen.length - 1, onclick: () => move(1) }, '↓'));
    }));
  };
  render();
  const d = h('dialog', { class: 'dialog keys-dialog', 'aria-label': 'Customize keys' });
  const save = h('button', { type: 'button', class: 'primary' }, 'Save');
  save.addEventListener('click', () => {
    if (!chosen.length) {
      toast('Choose at least one key.', 'error');
      return;
    }
    saveKeys(chosen);
    d.close();
    done();
    toast('Keys saved on this device.');
  });
  const reset = h('button', { type: 'button', class: 'secondary', onclick: () => {
    chosen = [...DEFAULT_KEYS];
    render();
  } }, 'Defaults');
  d.append(h('h2', null, 'Customize keys'), h('p', { class: 'muted' }, 'Tick the keys to show and put them in order. Kept on this device.'), list,
    h('div', { class: 'dialog-buttons' }, h('button', { type: 'button', class: 'secondary', onclick: () => d.close() }, 'Cancel'), reset, save));
  document.body.append(d);
  d.addEventListener('close', () => d.remove());
  d.showModal();
}
