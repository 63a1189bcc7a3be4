// One-tap approvals: an agent's permission dialog as the server read it (what is asked, a
// preview, its choices in the dialog's words) with a big button per choice, and the answer's
// outcome in words. Shown on the dashboard's cards and as a sheet over the terminal.
import { api } from './api';
import { onInstances } from './events';
import { h, clear, errorText } from './ui';
import './approvals.css';

/** Mirrors `PendingApproval` in src/instances/approvals.rs. */
export interface PendingApproval {
  id: string;
  tool: string;
  detail: string;
  question?: string | null;
  preview?: string | null;
  choices: { id: string; label: string; kind: 'allow' | 'always' | 'deny' }[];
  /** The tool's own name, from the agent's permission hook (Claude Code: Write, Edit, Bash). */
  tool_name?: string | null;
}
export type Outcome = 'done' | 'gone' | 'changed' | 'still_open';
export interface Answered {
  outcome: Outcome;
  pending_approval: PendingApproval | null;
}

/** What an outcome means to the person who tapped. */
export function outcomeWords(outcome: Outcome): string {
  switch (outcome) {
    case 'done': return 'Answered.';
    case 'gone': return 'Already answered.';
    case 'changed': return 'The question changed: look again.';
    case 'still_open': return 'Sent, but the question is still open: look at the terminal.';
  }
}

/** Lines of preview shown before "more". */
const PREVIEW_LINES = 8;

/**
 * The question and its buttons. `answered` runs after each answer (or failure) with the
 * server's reply, for the caller to show what is up now.
 */
export function approvalPanel(instanceId: string, approval: PendingApproval, answered: (reply: Answered | null) => void, compact = false): HTMLElement {
  const status = h('p', { class: 'approval-outcome', role: 'status', 'aria-live': 'polite' });
  const lines = (approval.preview ?? '').split('\n');
  const shown = compact ? lines.slice(0, 3) : lines.slice(0, PREVIEW_LINES);
  const more = lines.length - shown.length;
  const preview = approval.preview
    ? h('pre', { class: `approval-preview${/^\s*\d+\s+[-+]/m.test(approval.preview) ? ' approval-diff' : ''}` },
      shown.map((line) => h('span', { class: /^\s*\d+\s+-/.test(line) ? 'del' : /^\s*\d+\s+\+/.test(line) ? 'add' : '' }, `${line}\n`)),
      more > 0 ? h('span', { class: 'muted' }, `… ${more} more line${more === 1 ? '' : 's'}`) : null)
    : null;
  const buttons = approval.choices.map((choice, index) => {
    const b = h('button', {
      type: 'button',
      class: `approval-choice approval-${choice.kind}${index === 0 ? ' primary' : ''}`,
      'data-choice': choice.id,
      title: choice.label,
    }, h('span', { class: 'approval-word' }, choice.kind === 'deny' ? 'Deny' : choice.kind === 'always' ? 'Always' : 'Allow'),
    h('span', { class: 'approval-label' }, choice.label));
    b.addEventListener('click', async () => {
      for (const other of buttons) other.disabled = true;
      b.setAttribute('aria-busy', 'true');
      clear(status, 'Sending…');
      try {
        const reply = await api.post<Answered>(`api/instances/${encodeURIComponent(instanceId)}/approvals/${encodeURIComponent(approval.id)}`, { choice: choice.id });
        clear(status, outcomeWords(reply.outcome));
        status.dataset.outcome = reply.outcome;
        answered(reply);
      } catch (e) {
        clear(status, errorText(e));
        status.dataset.outcome = 'error';
        for (const other of buttons) other.disabled = false;
        answered(null);
      } finally {
        b.removeAttribute('aria-busy');
      }
    });
    return b;
  });
  const what = approval.question ?? approval.tool;
  return h('section', { class: `approval${compact ? ' approval-compact' : ''}`, 'data-approval': approval.id, 'aria-label': `Permission: ${what}` },
    h('p', { class: 'approval-question' }, h('strong', null, approval.tool), approval.question ? ` · ${approval.question}` : null),
    approval.detail ? h('code', { class: 'approval-detail' }, approval.detail) : null,
    preview,
    h('div', { class: 'approval-choices' }, buttons),
    status);
}

export interface ApprovalSheet {
  el: HTMLElement;
  /** Shows `approval`, or hides the sheet for `null`. */
  show(approval: PendingApproval | null | undefined): void;
  /** The agent's status changed: fetch the question when it asks permission, hide it after. */
  statusChanged(status: string | null | undefined): void;
}

/** The sheet over the terminal: the question and its buttons, above the message box. */
export function approvalSheet(instanceId: string): ApprovalSheet {
  const body = h('div', { class: 'approval-sheet-body' });
  const hide = h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Hide the question' }, '✕');
  const el = h('section', { class: 'approval-sheet', hidden: true, role: 'region', 'aria-labelledby': `approval-title-${instanceId}` },
    h('div', { class: 'approval-sheet-head' }, h('h2', { id: `approval-title-${instanceId}` }, 'Permission needed'), hide),
    body);
  let current: string | null = null;
  // Hidden by hand: stays hidden until another question comes.
  let dismissed: string | null = null;
  let hideTimer = 0;
  hide.addEventListener('click', () => {
    dismissed = current;
    el.hidden = true;
  });
  let noting = false;
  const show = (approval: PendingApproval | null | undefined, note?: string) => {
    if (!approval) {
      current = null;
      if (note) {
        // Say what happened, then step aside.
        clearTimeout(hideTimer);
        clear(body, h('p', { class: 'approval-outcome', role: 'status' }, note));
        el.hidden = false;
        noting = true;
        hideTimer = window.setTimeout(() => {
          noting = false;
          if (!current) el.hidden = true;
        }, 2500);
      } else if (!noting) {
        el.hidden = true;
      }
      return;
    }
    clearTimeout(hideTimer);
    noting = false;
    if (approval.id === current && !note) return;
    current = approval.id;
    const panel = approvalPanel(instanceId, approval, (reply) => {
      if (!reply) return;
      const words = outcomeWords(reply.outcome);
      if (reply.outcome === 'still_open') return;
      show(reply.pending_approval, reply.pending_approval ? undefined : words);
      if (reply.pending_approval) {
        // A newer question: say why the buttons changed.
        body.prepend(h('p', { class: 'approval-outcome', role: 'status' }, words));
      }
    });
    clear(body, panel);
    el.hidden = dismissed === approval.id;
  };
  // The live event stream brings every change of the question (src/events.ts), until the
  // terminal is left.
  let attached = false;
  const stop = onInstances((list) => {
    if (el.isConnected) attached = true;
    else if (attached) {
      stop();
      return;
    }
    const me = list.find((i) => i.id === instanceId);
    if (me) show(me.state === 'running' ? me.pending_approval : null);
  });
  let asking = 0;
  const statusChanged = (status: string | null | undefined) => {
    if (status !== 'needs_permission') {
      if (current) show(null);
      return;
    }
    // The socket may say so before the stream does.
    const ask = ++asking;
    void api.get<{ pending_approval?: PendingApproval | null }>(`api/instances/${encodeURIComponent(instanceId)}`)
      .then((instance) => { if (ask === asking) show(instance.pending_approval); })
      .catch(() => undefined);
  };
  return { el, show: (approval) => show(approval), statusChanged };
}
