// Scrolling the terminal on glass: a swipe scrolls and a flick carries on with momentum, a thumb
// on the right can be dragged through the whole scrollback, and a pill brings back the latest
// output (counting the lines that came meanwhile). A long press hands over to selection.
import type { Terminal } from '@xterm/xterm';
import { h } from '../ui';

export interface ScrollOptions {
  term: Terminal;
  screen: HTMLElement;
  /** Full-screen programs (the alternate screen, mouse modes) scroll themselves: ask them. */
  scrollRemote(lines: number, col: number, row: number): void;
  /** A finger held still on the screen. */
  onLongPress(x: number, y: number): void;
}

const LONG_PRESS_MS = 550;
/** Time constant of the momentum's decay, as on iOS. */
const MOMENTUM_DECAY_MS = 325;
/** Slower flicks than this (px/ms) just stop. */
const MOMENTUM_MIN_SPEED = 0.25;

export function mountScrolling({ term, screen, scrollRemote, onLongPress }: ScrollOptions): { toBottom(): void; dispose(): void } {
  const cellHeight = () => Math.max(8, screen.clientHeight / Math.max(1, term.rows));
  const remote = () => term.buffer.active.type === 'alternate' || term.modes.mouseTrackingMode !== 'none';

  // Pixels are turned into whole lines; what is left over carries to the next move.
  let carry = 0;
  let lastPoint = { x: 0, y: 0 };
  const scrollPixels = (dy: number) => {
    carry += dy;
    const lines = Math.trunc(carry / cellHeight());
    if (!lines) return;
    carry -= lines * cellHeight();
    if (remote()) {
      // Finger down = back (up) in the program's history.
      const rect = screen.getBoundingClientRect();
      const col = Math.max(1, Math.min(term.cols, Math.floor(((lastPoint.x - rect.left) / rect.width) * term.cols) + 1));
      const row = Math.max(1, Math.min(term.rows, Math.floor(((lastPoint.y - rect.top) / rect.height) * term.rows) + 1));
      scrollRemote(Math.max(-100, Math.min(100, -lines)), col, row);
    } else {
      term.scrollLines(-lines);
    }
  };

  // --- swipe, flick and long press ----------------------------------------------------------
  let touchY: number | null = null;
  let touchX = 0;
  let pressTimer: ReturnType<typeof setTimeout> | undefined;
  let held = false;
  let moved = false;
  let pressedAt = 0;
  let samples: { t: number; y: number }[] = [];
  let glide = 0;
  const stopGlide = () => {
    cancelAnimationFrame(glide);
    glide = 0;
  };
  const onTouchStart = (e: TouchEvent) => {
    stopGlide();
    if (e.touches.length !== 1) return;
    const t = e.touches[0]!;
    touchY = t.clientY;
    touchX = t.clientX;
    lastPoint = { x: t.clientX, y: t.clientY };
    carry = 0;
    samples = [{ t: e.timeStamp, y: t.clientY }];
    clearTimeout(pressTimer);
    held = false;
    moved = false;
    pressedAt = e.timeStamp;
    pressTimer = setTimeout(() => {
      touchY = null;
      held = true;
      onLongPress(touchX, lastPoint.y);
    }, LONG_PRESS_MS);
  };
  const onTouchMove = (e: TouchEvent) => {
    if (touchY === null || e.touches.length !== 1) return;
    const t = e.touches[0]!;
    if (Math.abs(t.clientY - touchY) > 8 || Math.abs(t.clientX - touchX) > 8) {
      moved = true;
      clearTimeout(pressTimer);
    }
    e.preventDefault();
    const dy = t.clientY - touchY;
    touchY = t.clientY;
    lastPoint = { x: t.clientX, y: t.clientY };
    samples.push({ t: e.timeStamp, y: t.clientY });
    if (samples.length > 8) samples.shift();
    scrollPixels(dy);
  };
  const onTouchEnd = (e: TouchEvent) => {
    clearTimeout(pressTimer);
    // A busy page may see the finger lift before the timer's turn: the hold still counts.
    if (!held && !moved && touchY !== null && e.timeStamp - pressedAt >= LONG_PRESS_MS) {
      touchY = null;
      held = true;
      onLongPress(touchX, lastPoint.y);
    }
    // After a long press, no mouse clicks made up from the touch: xterm would drop the selection.
    if (held && e.cancelable) e.preventDefault();
    held = false;
    if (touchY === null) return;
    touchY = null;
    // The speed over the last 100 ms of the swipe carries on, slowing down.
    const recent = samples.filter((s) => e.timeStamp - s.t < 100);
    if (recent.length < 2) return;
    const first = recent[0]!;
    const last = recent[recent.length - 1]!;
    let speed = (last.y - first.y) / Math.max(1, last.t - first.t);
    if (Math.abs(speed) < MOMENTUM_MIN_SPEED) return;
    let before = performance.now();
    const step = (now: number) => {
      const dt = Math.min(64, now - before);
      before = now;
      scrollPixels(speed * dt);
      speed *= Math.exp(-dt / MOMENTUM_DECAY_MS);
      const buffer = term.buffer.active;
      const atEdge = !remote() && ((speed > 0 && buffer.viewportY === 0) || (speed < 0 && buffer.viewportY >= buffer.baseY));
      glide = Math.abs(speed) < 0.02 || atEdge ? 0 : requestAnimationFrame(step);
    };
    glide = requestAnimationFrame(step);
  };
  // A browser that starts its own long-press gesture cancels the touch: let the timer run.
  const onTouchCancel = () => {
    touchY = null;
  };
  screen.addEventListener('touchstart', onTouchStart, { passive: true });
  screen.addEventListener('touchmove', onTouchMove, { passive: false });
  screen.addEventListener('touchend', onTouchEnd);
  screen.addEventListener('touchcancel', onTouchCancel);

  // --- the thumb and the pill ----------------------------------------------------------------
  // Pointer affordances: keyboards have PgUp/PgDn and the wheel, screen readers the buffer.
  const thumb = h('div', { class: 'term-thumb' });
  const track = h('div', { class: 'term-track', 'aria-hidden': 'true' }, thumb);
  const pill = h('button', { type: 'button', class: 'term-latest', hidden: true }, '↓ Latest');
  screen.append(track, pill);
  let newLines = 0;
  let drawn = 0;
  const draw = () => {
    drawn = 0;
    const buffer = term.buffer.active;
    const scrolledBack = buffer.type === 'normal' && buffer.viewportY < buffer.baseY;
    if (!scrolledBack) newLines = 0;
    pill.hidden = !scrolledBack;
    const label = newLines > 0 ? `↓ ${newLines} new line${newLines === 1 ? '' : 's'}` : '↓ Latest';
    if (pill.textContent !== label) pill.textContent = label;
    const hasHistory = buffer.type === 'normal' && buffer.baseY > 0;
    track.classList.toggle('shown', hasHistory);
    track.classList.toggle('away', scrolledBack);
    if (!hasHistory) return;
    const height = track.clientHeight;
    const size = Math.max(44, height * (term.rows / (buffer.baseY + term.rows)));
    thumb.style.height = `${size}px`;
    thumb.style.transform = `translateY(${(height - size) * (buffer.viewportY / buffer.baseY)}px)`;
  };
  const redraw = () => {
    if (!drawn) drawn = requestAnimationFrame(draw);
  };
  const subscriptions = [
    term.onScroll(redraw),
    term.onWriteParsed(redraw),
    term.onResize(redraw),
    term.buffer.onBufferChange(redraw),
    term.onLineFeed(() => {
      const buffer = term.buffer.active;
      if (buffer.type === 'normal' && buffer.viewportY < buffer.baseY) newLines++;
    }),
  ];
  pill.addEventListener('pointerdown', (e) => e.preventDefault());
  pill.addEventListener('click', () => {
    stopGlide();
    term.scrollToBottom();
    redraw();
  });

  // Dragging the thumb (or touching the track) moves through the whole scrollback.
  let grab: number | null = null;
  const scrollToPointer = (clientY: number) => {
    const buffer = term.buffer.active;
    const rect = track.getBoundingClientRect();
    const size = thumb.offsetHeight;
    const fraction = (clientY - rect.top - (grab ?? size / 2)) / Math.max(1, rect.height - size);
    term.scrollToLine(Math.round(Math.max(0, Math.min(1, fraction)) * buffer.baseY));
  };
  track.addEventListener('pointerdown', (e) => {
    e.preventDefault();
    e.stopPropagation();
    stopGlide();
    track.setPointerCapture(e.pointerId);
    const t = thumb.getBoundingClientRect();
    grab = e.clientY >= t.top && e.clientY <= t.bottom ? e.clientY - t.top : thumb.offsetHeight / 2;
    track.classList.add('dragging');
    scrollToPointer(e.clientY);
  });
  track.addEventListener('pointermove', (e) => {
    if (grab !== null) scrollToPointer(e.clientY);
  });
  const release = () => {
    grab = null;
    track.classList.remove('dragging');
  };
  track.addEventListener('pointerup', release);
  track.addEventListener('pointercancel', release);
  // The thumb's own touches are not swipes of the screen beneath it.
  for (const el of [track, pill]) for (const type of ['touchstart', 'touchmove'] as const) el.addEventListener(type, (e) => e.stopPropagation(), { passive: true });
  redraw();

  return {
    toBottom() {
      // A flick still gliding would carry the view back up past the prompt.
      stopGlide();
      term.scrollToBottom();
      redraw();
    },
    dispose() {
      stopGlide();
      clearTimeout(pressTimer);
      cancelAnimationFrame(drawn);
      for (const s of subscriptions) s.dispose();
      screen.removeEventListener('touchstart', onTouchStart);
      screen.removeEventListener('touchmove', onTouchMove);
      screen.removeEventListener('touchend', onTouchEnd);
      screen.removeEventListener('touchcancel', onTouchCancel);
    },
  };
}
