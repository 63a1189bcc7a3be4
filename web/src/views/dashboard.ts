// The agents dashboard: a card per instance with its live status, and creating new ones.
import { api, type Instance, type Model } from '../api';
import { h, clear, act, bytes, duration, statusBadge, confirmDialog, promptDialog, showError, toast, inlineError, icon } from '../ui';
import { onInstances } from '../events';
import { money, tokenCount, type AccountSpending } from './usage';
import type { Ctx } from '../main';
import { approvalPanel, outcomeWords } from '../approvals';
import { cloneDialog, listRepos } from '../git/repos';
import type { GitStatus } from '../git/types';

export async function dashboardView(ctx: Ctx): Promise<() => void> {
  const list = h('div', { class: 'cards', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading agents…'));
  const createBox = h('section', { class: 'panel', 'aria-labelledby': 'new-agent' });
  clear(ctx.root,
    h('div', { class: 'page-head' }, h('h1', null, 'Agents')),
    list,
    createBox,
  );

  let models: Model[] = [];
  let instances: Instance[] = [];
  // The limit is shown before a start is tried: "1 of 2 running", and Start disabled, saying
  // why, at the limit. The server still decides (its own total, memory).
  const max = ctx.user.max_instances ?? null;
  const limitLine = h('p', { id: 'agent-limit', class: 'muted agent-limit' });
  let updateLimit = () => undefined as void;

  const renderCreate = () => {
    const select = h('select', { id: 'profile', name: 'profile', 'aria-describedby': 'profile-why' },
      models.map((m) => h('option', { value: m.id, disabled: !m.usable }, m.usable ? m.name : `${m.name} — unavailable`)));
    const firstUsable = models.find((m) => m.usable);
    if (firstUsable) select.value = firstUsable.id;
    const name = h('input', { id: 'agent-name', name: 'name', placeholder: 'optional', autocomplete: 'off', maxLength: 64 });
    // A branch of a repository in the workspace: the agent starts in a worktree of its own.
    const text = (id: string, placeholder: string) => {
      const input = h('input', { id, name: id, placeholder, autocomplete: 'off', autocapitalize: 'off', maxLength: 200 });
      input.spellcheck = false;
      return input;
    };
    const repo = text('agent-repo', 'a folder in your workspace');
    // The workspace's repositories as choices; any folder may still be typed.
    repo.setAttribute('list', 'agent-repos');
    const repoChoices = h('datalist', { id: 'agent-repos' });
    const loadChoices = () => listRepos().then((repos) => clear(repoChoices, repos.map((r) => h('option', { value: r.folder }, r.branch ? `${r.folder} (${r.branch})` : r.folder))), () => undefined);
    void loadChoices();
    const cloneButton = h('button', { type: 'button', class: 'secondary small' }, 'Clone a repository');
    cloneButton.addEventListener('click', async () => {
      const cloned = await cloneDialog();
      if (!cloned) return;
      repo.value = cloned.folder;
      if (cloned.branch && !baseBranch.value.trim()) baseBranch.value = cloned.branch;
      await loadChoices();
      branch.focus();
    });
    const branch = text('agent-branch', 'e.g. feature-x');
    const baseBranch = text('agent-base', 'optional, e.g. main');
    const onBranch = h('details', { class: 'branch-fold' },
      h('summary', null, 'Work on a branch'),
      h('div', { class: 'branch-fields' },
        h('label', { class: 'field', for: 'agent-repo' }, h('span', null, 'Repository'), repo, repoChoices),
        h('div', null, cloneButton),
        h('label', { class: 'field', for: 'agent-branch' }, h('span', null, 'Branch'), branch),
        h('label', { class: 'field', for: 'agent-base' }, h('span', null, 'Base'), baseBranch),
        h('p', { class: 'muted small-print' }, 'The agent works in a worktree of its own for this branch, made from the base (or the current branch) when it is new.')));
    const submit = h('button', { type: 'submit', class: 'primary', disabled: !firstUsable, 'aria-describedby': 'agent-limit' }, 'Start agent');
    const createError = inlineError(submit, 'create-error');
    const unusable = models.filter((m) => !m.usable);
    // The server names programs in backticks; people read them as plain words.
    const why = h('ul', { id: 'profile-why', class: 'unusable' }, unusable.map((m) => h('li', null,
      h('strong', null, m.name), `: ${(m.reason ?? 'not available').replace(/`/g, '')}`,
      /secret|key|token/i.test(m.reason ?? '')
        ? [' — ', h('a', { href: `#/settings?secret=${encodeURIComponent(m.required_secrets[0] ?? '')}` }, 'add it in Settings')]
        : null)));
    const form = h('form', { class: 'create-form' },
      h('div', { class: 'field' }, h('label', { for: 'profile' }, h('span', null, 'Agent')), select),
      h('label', { class: 'field', for: 'agent-name' }, h('span', null, 'Name'), name),
      onBranch,
      submit);
    updateLimit = () => {
      const live = instances.filter((i) => i.state === 'running' || i.state === 'starting').length;
      const full = max !== null && live >= max;
      limitLine.hidden = max === null;
      limitLine.classList.toggle('at-limit', full);
      limitLine.textContent = max === null ? ''
        : full ? `${live} of ${max} running: that is your limit. Stop an agent to start another.`
          : `${live} of ${max} running.`;
      if (submit.getAttribute('aria-busy') !== 'true') submit.disabled = !firstUsable || full;
    };
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body: Record<string, string> = { profile: select.value };
      if (name.value.trim()) body.name = name.value.trim();
      // Filled in is meant, also when the fold was closed again afterwards.
      if (repo.value.trim()) body.repo = repo.value.trim().replace(/^\/+|\/+$/g, '');
      if (branch.value.trim()) body.branch = branch.value.trim();
      if (baseBranch.value.trim()) body.base = baseBranch.value.trim();
      submit.textContent = 'Starting…';
      const created = await act(submit, () => api.post<Instance>('api/instances', body), undefined, createError);
      submit.textContent = 'Start agent';
      updateLimit();
      // The terminal opening is the confirmation: a toast there would sit over its prompt.
      if (created) location.hash = `#/t/${created.id}`;
    });
    clear(createBox, h('h2', { id: 'new-agent' }, 'New agent'), limitLine, form, createError.el, unusable.length ? why : null);
    updateLimit();
  };

  // Compact: the card opens the terminal; stop, rename and delete are in its menu. Six fit on
  // a phone's screen.
  const card = (i: Instance) => {
    const live = i.state === 'running' || i.state === 'starting';
    const menuId = `card-menu-${i.id}`;
    const menu = h('div', { class: 'card-menu', id: menuId, popover: 'auto', role: 'menu', 'aria-label': `Actions for ${i.name}` });
    const item = (label: string, run: () => Promise<void>, danger = false) => {
      const b = h('button', { type: 'button', role: 'menuitem', class: danger ? 'danger-text' : '' }, label);
      b.addEventListener('click', () => {
        menu.hidePopover();
        void run();
      });
      return b;
    };
    const suspended = i.state === 'suspended';
    const resumable = models.find((m) => m.id === i.profile)?.can_resume ?? false;
    menu.append(...[
      i.git_branch ? item('Changes', async () => {
        location.hash = `#/changes/${i.id}`;
      }) : null,
      live && resumable ? item('Suspend', async () => {
        await act(null, () => api.post<Instance>(`api/instances/${i.id}/suspend`), `Suspended ${i.name}: it resumes when you open it.`);
      }) : null,
      suspended ? item('Resume', async () => {
        await act(null, () => api.post<Instance>(`api/instances/${i.id}/resume`), `Resumed ${i.name}.`);
      }) : null,
      item(live || suspended ? 'Stop' : 'Restart', async () => {
        const stop = live || suspended;
        await act(null, () => api.post<Instance>(`api/instances/${i.id}/${stop ? 'stop' : 'restart'}`), stop ? `Stopped ${i.name}.` : `Restarted ${i.name}.`);
      }),
      item('Rename', async () => {
        const next = await promptDialog(`Rename ${i.name}`, 'New name', i.name, 'Rename', 'text',
          (to) => (!to.trim() || to.trim() === i.name ? Promise.resolve() : api.patch<Instance>(`api/instances/${i.id}`, { name: to.trim() })));
        if (next === null || !next.trim() || next.trim() === i.name) return;
        toast('Renamed.');
      }),
      item('Delete', () => deleteInstance(i, live), true),
    ].filter((b): b is HTMLButtonElement => b !== null));
    const model = models.find((m) => m.id === i.profile);
    const meta = live ? `${model?.name ?? i.profile} · ${bytes(i.memory_bytes)} · up ${duration(i.started_at)}`
      : suspended ? `${model?.name ?? i.profile} · ${suspendedWhy(i)}${i.suspended_at ? ` ${duration(i.suspended_at)} ago` : ''}${i.freed_bytes ? ` · freed ${bytes(i.freed_bytes)}` : ''} · opens where it was`
        : `${model?.name ?? i.profile} · ${ended(i)}${i.ended_at ? ` ${duration(i.ended_at)} ago` : ''}`;
    // A question with its buttons says more than the status line.
    const preview = live && !i.pending_approval ? i.status_reason ?? i.preview : null;
    const today = spend.get(i.id);
    return h('article', { class: `card status-${i.status ?? i.state}`, 'data-instance': i.id, 'aria-label': i.name },
      h('a', { href: `#/t/${i.id}`, class: 'card-main' },
        h('span', { class: 'card-head' }, h('span', { class: 'card-name' }, i.name), statusBadge(i.state, i.status)),
        h('span', { class: 'muted card-meta' }, meta, i.git_branch ? [' · ', h('span', { class: 'card-branch' }, icon('branch', 13), h('span', { class: 'sr-only' }, 'branch '), i.git_branch)] : null, today && today.tokens > 0 ? ` · ${currency ? money(today.cost, currency) : `${tokenCount(today.tokens)} tokens`} today` : ''),
        preview ? h('span', { class: 'card-preview' }, preview) : null),
      // The event stream brings the card's next state; the toast says what the tap did.
      live && i.pending_approval ? approvalPanel(i.id, i.pending_approval, (reply) => {
        if (reply) toast(`${i.name}: ${outcomeWords(reply.outcome)}`, reply.outcome === 'done' ? 'ok' : 'info');
      }, true) : null,
      h('button', { type: 'button', class: 'icon-button card-more', 'aria-label': `More for ${i.name}`, popovertarget: menuId }, '⋯'),
      menu);
  };

  const budgetNote = h('div', { class: 'budget-note' });
  list.before(budgetNote);
  // What each agent spent today, refreshed at most every 30 s as the list changes.
  let spend = new Map<string, { tokens: number; cost: number }>();
  let currency = '';
  let spendAt = 0;
  const loadSpend = async () => {
    if (Date.now() - spendAt < 30_000) return;
    spendAt = Date.now();
    try {
      const u = await api.get<AccountSpending>('api/usage');
      currency = u.currency;
      spend = new Map(u.today_by_instance.map((t) => [t.instance_id, t]));
      // A budget nearly or wholly spent is said at the top, in words.
      const pressing = u.budgets.filter((b) => b.state === 'warning' || b.state === 'exceeded');
      clear(budgetNote, pressing.map((b) => h('p', { class: `budget budget-${b.state}`, role: b.state === 'exceeded' ? 'alert' : 'status' },
        b.message ?? `${b.used_percent.toFixed(0)} % of the ${b.period === 'day' ? 'daily' : 'monthly'} budget is spent. `, h('a', { href: '#/settings' }, 'See usage'))));
      shown = '';
      render();
    } catch {
      // Spending is a detail of the card; the list works without it.
    }
  };

  let shown = '';
  let renderWhenClosed = false;
  list.addEventListener('toggle', (e) => {
    if ((e as ToggleEvent).newState === 'closed' && renderWhenClosed) {
      renderWhenClosed = false;
      // After the tapped item's own work has begun.
      setTimeout(render, 0);
    }
  }, true);
  const render = () => {
    // Keep the focus of someone using the keyboard or a screen reader: no re-render under it
    // unless the set of agents changed.
    const ids = instances.map((i) => `${i.id}:${i.state}:${i.name}:${i.pending_approval?.id ?? ''}:${i.git_branch ?? ''}`).join();
    updateLimit();
    // Never under an open menu: the item a finger is on would vanish. It renders once closed.
    if (list.querySelector(':popover-open')) {
      renderWhenClosed = true;
      return;
    }
    if (list.contains(document.activeElement) && ids === shown) return;
    shown = ids;
    if (!instances.length) {
      clear(list, h('p', { class: 'empty' }, 'No agents yet. Start one below.'));
      return;
    }
    clear(list, instances.map(card));
  };

  try {
    models = await api.get<Model[]>('api/models');
  } catch (e) {
    showError(e);
  }
  renderCreate();
  // The live event stream brings the list and every change to it (src/events.ts).
  return onInstances((list) => {
    instances = list;
    render();
    void loadSpend();
  });
}

/**
 * Deletes an agent after asking. One on a branch is asked about its worktree too: kept (the
 * default) or removed; removing one with uncommitted files names them first. The branch stays.
 */
async function deleteInstance(i: Instance, live: boolean): Promise<void> {
  const what = live ? 'The agent will be stopped and its record deleted.' : 'Its record and last screen will be deleted.';
  if (!i.git_branch) {
    if (!(await confirmDialog(`Delete ${i.name}?`, `${what} Files in your workspace stay.`))) return;
    await act(null, () => api.del(`api/instances/${i.id}`).then(() => true), `Deleted ${i.name}.`);
    return;
  }
  const choice = await worktreeChoice(i, what);
  if (!choice) return;
  if (choice === 'remove') {
    const status = await api.get<GitStatus>(`api/instances/${i.id}/git/status`).catch(() => null);
    const dirty = status?.files ?? [];
    if (dirty.length) {
      const names = dirty.slice(0, 5).map((f) => f.path).join(', ') + (dirty.length > 5 ? `, and ${dirty.length - 5} more` : '');
      if (!(await confirmDialog(`Remove the worktree of ${i.name}?`,
        `${dirty.length} ${dirty.length === 1 ? 'file has' : 'files have'} uncommitted changes that will be lost: ${names}. The branch ${i.git_branch} keeps what was committed.`,
        'Delete and remove'))) return;
    }
  }
  const query = choice === 'remove' ? '?remove_worktree=true&force=true' : '';
  await act(null, () => api.del(`api/instances/${i.id}${query}`).then(() => true),
    choice === 'remove' ? `Deleted ${i.name} and removed its worktree; the branch ${i.git_branch} stays.` : `Deleted ${i.name}; its worktree and branch stay.`);
}

/** Delete, keeping or removing the agent's worktree; null when cancelled. */
function worktreeChoice(i: Instance, what: string): Promise<'keep' | 'remove' | null> {
  return new Promise((resolve) => {
    const d = h('dialog', { class: 'dialog', 'aria-labelledby': 'delete-title', 'aria-describedby': 'delete-what' });
    const button = (label: string, value: string, kind: string) => h('button', { type: 'submit', value, class: kind }, label);
    d.append(h('form', { method: 'dialog' },
      h('h2', { id: 'delete-title' }, `Delete ${i.name}?`),
      h('p', { id: 'delete-what' }, `${what} It works on the branch ${i.git_branch} in its own worktree${i.workdir ? ` (${i.workdir})` : ''}. The branch is kept either way; the worktree too, unless you remove it.`),
      h('div', { class: 'delete-choice' },
        button('Delete, keep the worktree', 'keep', 'danger'),
        button('Delete and remove the worktree', 'remove', 'danger'),
        button('Cancel', 'cancel', 'secondary'))));
    // Nothing is deleted by an Enter pressed out of habit.
    d.querySelector<HTMLButtonElement>('button[value="cancel"]')!.autofocus = true;
    document.body.append(d);
    d.addEventListener('close', () => {
      d.remove();
      resolve(d.returnValue === 'keep' || d.returnValue === 'remove' ? d.returnValue : null);
    });
    d.showModal();
  });
}

/** Why an instance was suspended, in words. */
function suspendedWhy(i: Instance): string {
  switch (i.suspend_reason) {
    case 'user': return 'suspended by you';
    case 'idle': return 'suspended when idle';
    case 'memory': return 'suspended to make room';
    case 'budget': return 'suspended: its budget is spent';
    case 'lost': case 'server_gone': return 'suspended when its session went';
    case 'crash': return 'suspended after its process was killed';
    default: return 'suspended';
  }
}

/** Why an instance ended, in words. */
function ended(i: Instance): string {
  switch (i.end_reason) {
    case 'user': return 'stopped by you';
    case 'admin': return 'stopped by an admin';
    case 'idle': return 'stopped when idle';
    case 'budget': return 'stopped: its budget is spent';
    case 'restart': return 'restarting';
    case 'lost': return 'its session vanished';
    case 'server_gone': return 'its tmux server stopped';
    case 'start_failed': return 'failed to start';
    case 'exit': return i.exit_code !== null && i.exit_code !== undefined ? `exited with status ${i.exit_code}` : 'exited';
    default: return i.state;
  }
}
