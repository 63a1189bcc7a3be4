// Selecting in place on a touch screen: a long press selects the word under the finger, two
// handles stretch the selection, and a small menu copies it, pastes, or opens the link in it.
// The selection is xterm's own, so a tap on a button cannot clear it before Copy reads it.
import type { Terminal } from '@xterm/xterm';
import { h } from '../ui';

export interface SelectOptions {
  term: Terminal;
  screen: HTMLElement;
  copy(text: string): void;
  paste(): void;
  /** The sheet with the whole buffer as text, for long selections. */
  more(): void;
}

interface Cell {
  col: number;
  /** A line of the buffer (scrollback included), not of the viewport. */
  row: number;
}

const LINK = /https?:\/\/[^\s"'<>]+/;
/** A finger covers what it touches: a dragged handle points a little above it. */
const FINGER_OFFSET_PX = 18;

export function mountSelection({ term, screen, copy, paste, more }: SelectOptions): { selectAt(x: number, y: number): void; dispose(): void } {
  const startHandle = h('div', { class: 'sel-handle sel-start', 'aria-hidden': 'true' });
  const endHandle = h('div', { class: 'sel-handle sel-end', 'aria-hidden': 'true' });
  // A finger lifted on a button acts at once (a tap's click can be swallowed by the gestures
  // around it); a mouse or a keyboard acts on the click.
  const button = (label: string, action: () => void, aria?: string) => {
    const b = h('button', { type: 'button', 'aria-label': aria }, label);
    let tapped = false;
    b.addEventListener('pointerup', (e) => {
      if (e.pointerType !== 'touch') return;
      tapped = true;
      setTimeout(() => (tapped = false), 600);
      action();
    });
    b.addEventListener('click', () => {
      if (!tapped) action();
      tapped = false;
    });
    return b;
  };
  const openLink = button('Open link', () => {
    const link = LINK.exec(term.getSelection().replace(/\n/g, ''))?.[0];
    if (link) window.open(link, '_blank', 'noopener,noreferrer');
  });
  const menu = h('div', { class: 'sel-menu', role: 'toolbar', 'aria-label': 'Selection' },
    button('Copy', () => copy(term.getSelection())),
    button('Paste', () => {
      clearSelection();
      paste();
    }),
    openLink,
    button('More…', () => {
      clearSelection();
      more();
    }),
    button('✕', () => clearSelection(), 'Done selecting'));
  const layer = h('div', { class: 'sel-layer', hidden: true }, startHandle, endHandle, menu);
  screen.append(layer);
  for (const el of [startHandle, endHandle, menu]) {
    // Touches on the handles and the menu are not swipes or long presses of the screen.
    for (const type of ['touchstart', 'touchmove'] as const) el.addEventListener(type, (e) => e.stopPropagation(), { passive: true });
    el.addEventListener('pointerdown', (e) => {
      if (el === menu) e.preventDefault();
    });
  }

  let anchor: Cell | null = null;
  let focus: Cell | null = null;

  const grid = () => {
    const el = term.element?.querySelector('.xterm-screen') ?? screen;
    const rect = el.getBoundingClientRect();
    return { rect, width: rect.width / term.cols, height: rect.height / term.rows };
  };
  const cellAt = (x: number, y: number): Cell => {
    const { rect, width, height } = grid();
    return {
      col: Math.max(0, Math.min(term.cols - 1, Math.floor((x - rect.left) / width))),
      row: Math.max(0, Math.min(term.buffer.active.length - 1, Math.floor((y - rect.top) / height) + term.buffer.active.viewportY)),
    };
  };
  const ordered = (): [Cell, Cell] | null => {
    if (!anchor || !focus) return null;
    const before = anchor.row < focus.row || (anchor.row === focus.row && anchor.col <= focus.col);
    return before ? [anchor, focus] : [focus, anchor];
  };
  const apply = () => {
    const range = ordered();
    if (!range) return;
    const [from, to] = range;
    term.select(from.col, from.row, (to.row - from.row) * term.cols + (to.col - from.col) + 1);
    place();
  };

  // The handles sit under the selection's two ends; the menu above it (below near the top).
  const place = () => {
    const range = ordered();
    if (!range) return;
    const [from, to] = range;
    const { rect, width, height } = grid();
    const host = screen.getBoundingClientRect();
    const top = term.buffer.active.viewportY;
    const at = (c: Cell, right: boolean) => ({
      x: rect.left - host.left + (c.col + (right ? 1 : 0)) * width,
      y: rect.top - host.top + (c.row - top + 1) * height,
      visible: c.row >= top && c.row < top + term.rows,
    });
    const a = at(from, false);
    const b = at(to, true);
    startHandle.hidden = !a.visible;
    endHandle.hidden = !b.visible;
    startHandle.style.transform = `translate(${a.x}px, ${a.y}px)`;
    endHandle.style.transform = `translate(${b.x}px, ${b.y}px)`;
    openLink.hidden = !LINK.test(term.getSelection().replace(/\n/g, ''));
    const menuWidth = menu.offsetWidth;
    const menuHeight = menu.offsetHeight;
    const x = Math.max(4, Math.min(screen.clientWidth - menuWidth - 4, a.x));
    const above = a.y - height - menuHeight - 8;
    const y = above >= 0 ? above : Math.min(screen.clientHeight - menuHeight - 4, b.y + 28);
    menu.style.transform = `translate(${x}px, ${y}px)`;
  };

  function selectAt(x: number, y: number) {
    if (!Number.isFinite(x) || !Number.isFinite(y)) return;
    const cell = cellAt(x, y);
    const line = term.buffer.active.getLine(cell.row);
    // The word under the finger: what is between blanks (a path or a link stays whole).
    const blank = (col: number) => !(line?.getCell(col)?.getChars().trim());
    let from = cell.col;
    let to = cell.col;
    if (!blank(cell.col)) {
      while (from > 0 && !blank(from - 1)) from--;
      while (to < term.cols - 1 && !blank(to + 1)) to++;
    }
    anchor = { col: from, row: cell.row };
    focus = { col: to, row: cell.row };
    layer.hidden = false;
    apply();
    navigator.vibrate?.(10);
  }

  function clearSelection() {
    anchor = focus = null;
    layer.hidden = true;
    term.clearSelection();
  }

  // Dragging a handle moves its end; the other end stays.
  const drag = (handle: HTMLElement, isStart: boolean) => {
    handle.addEventListener('pointerdown', (e) => {
      e.preventDefault();
      handle.setPointerCapture(e.pointerId);
      const range = ordered();
      if (!range) return;
      anchor = isStart ? range[1] : range[0];
      focus = isStart ? range[0] : range[1];
      handle.classList.add('dragging');
    });
    handle.addEventListener('pointermove', (e) => {
      if (!handle.hasPointerCapture(e.pointerId)) return;
      focus = cellAt(e.clientX, e.clientY - FINGER_OFFSET_PX);
      apply();
    });
    const end = (e: PointerEvent) => {
      if (handle.hasPointerCapture(e.pointerId)) handle.releasePointerCapture(e.pointerId);
      handle.classList.remove('dragging');
    };
    handle.addEventListener('pointerup', end);
    handle.addEventListener('pointercancel', end);
  };
  drag(startHandle, true);
  drag(endHandle, false);

  // A tap elsewhere on the screen ends the selection, as on a phone's own text.
  const onTouch = (e: TouchEvent) => {
    if (!layer.hidden && !layer.contains(e.target as Node)) clearSelection();
  };
  screen.addEventListener('touchstart', onTouch, { passive: true });
  const subscriptions = [
    term.onScroll(() => place()),
    term.onResize(() => clearSelection()),
    // xterm drops the selection when its lines are rewritten.
    term.onSelectionChange(() => {
      if (!layer.hidden && !term.hasSelection()) clearSelection();
    }),
  ];

  return {
    selectAt,
    dispose() {
      for (const s of subscriptions) s.dispose();
      screen.removeEventListener('touchstart', onTouch);
    },
  };
}
