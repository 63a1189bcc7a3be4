// Admin: accounts (create, disable, reset password, delete), invites (create, list, revoke),
// live host stats with
// charts of the last hour, each instance's memory, alerts and the audit log.
import { api, type User } from '../api';
import { h, clear, act, bytes, when, confirmDialog, promptDialog, infoDialog, inlineError, toast } from '../ui';
import type { Ctx } from '../main';
import { adminUsagePanel } from './usage';

interface Host { cpu_percent: number; cpus: number; memory_total: number; memory_used: number; memory_available: number; swap_total: number; swap_used: number; load: number[]; disk_total: number; disk_used: number }
interface Stats {
  host: Host;
  instances: { id: string; name: string; profile: string; owner_name: string; state: string; status: string | null; usage: { memory_bytes: number; cpu_percent: number; processes: number } | null }[];
  users: { username: string; instances: number; memory_bytes: number; cpu_percent: number }[];
  alerts: Alert[];
}
interface Alert { id: number; kind: string; value: number; threshold: number; raised_at: string; cleared_at: string | null }
interface Point { at: number; cpu_percent: number; memory_used: number; memory_available: number; disk_used: number; instances: [string, number, number][] }
interface Invite { id: number; role: 'admin' | 'user'; state: 'pending' | 'used' | 'expired'; created_by: string | null; created_at: string; expires_at: string; used_by: string | null; used_at: string | null }
interface Audit { id: number; at: string; username: string | null; action: string; target: string | null; ip: string | null; detail: string | null }

const SVG = 'http://www.w3.org/2000/svg';
/**
 * A line chart of `values` sampled at `times` (seconds since the epoch), with its scale in
 * words: the maximum at the top, 0 at the bottom, and how long ago the first sample was … now.
 * The drawing stretches to its box (the line keeps its width).
 */
function chart(label: string, values: number[], times: number[], max: number, format: (v: number) => string, formatMax = format): HTMLElement {
  const w = 300;
  const hgt = 60;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  const last = values.length ? values[values.length - 1]! : 0;
  const span = times.length > 1 ? Math.max(1, times[times.length - 1]! - times[0]!) : 0;
  const ago = (secs: number) => (secs < 120 ? `${Math.round(secs)} s` : `${Math.round(secs / 60)} min`);
  svg.setAttribute('aria-label', `${label}: now ${format(last)}, ${span ? `over the last ${ago(span)}` : 'just started'}, at most ${formatMax(max)}`);
  if (values.length > 1) {
    const step = w / (values.length - 1);
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - (Math.min(v, max) / (max || 1)) * (hgt - 4) - 2).toFixed(1)}`);
    const area = document.createElementNS(SVG, 'polygon');
    area.setAttribute('points', `0,${hgt} ${pts.join(' ')} ${w},${hgt}`);
    area.setAttribute('class', 'chart-area');
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', pts.join(' '));
    line.setAttribute('class', 'chart-line');
    svg.append(area, line);
  }
  // The scale, for the eye (the chart's label says it for screen readers).
  const yAxis = h('div', { class: 'chart-y', 'aria-hidden': 'true' }, h('span', null, formatMax(max)), h('span', null, '0'));
  const xAxis = h('div', { class: 'chart-x', 'aria-hidden': 'true' },
    h('span', null, span ? `\u2212${ago(span)}` : ''), span ? h('span', null, `\u2212${ago(span / 2)}`) : null, h('span', null, 'now'));
  return h('figure', { class: 'chart-box' }, h('figcaption', null, h('span', null, label), h('strong', null, format(last))),
    h('div', { class: 'chart-plot' }, yAxis, svg, h('span'), xAxis));
}

export async function adminView(ctx: Ctx): Promise<() => void> {
  const statsBox = h('section', { class: 'panel', 'aria-labelledby': 'stats-h' }, h('h2', { id: 'stats-h' }, 'System'), h('p', { class: 'muted' }, 'Loading…'));
  const usersBox = h('section', { class: 'panel', 'aria-labelledby': 'users-h' });
  const alertsBox = h('section', { class: 'panel', 'aria-labelledby': 'alerts-h' });
  const auditBox = h('section', { class: 'panel', 'aria-labelledby': 'audit-h' });
  clear(ctx.root, h('div', { class: 'page-head' }, h('h1', null, 'Admin')), statsBox, adminUsagePanel(), usersBox, alertsBox, auditBox);

  const loadStats = async () => {
    try {
      const [stats, history] = await Promise.all([api.get<Stats>('api/system/stats'), api.get<Point[]>('api/system/history?minutes=60')]);
      const host = stats.host;
      const total = host.memory_total || 1;
      clear(statsBox, h('h2', { id: 'stats-h' }, 'System'),
        h('div', { class: 'charts' },
          chart('CPU', history.map((p) => p.cpu_percent), history.map((p) => p.at), 100, (v) => `${v.toFixed(0)} %`),
          chart('Memory', history.map((p) => p.memory_used), history.map((p) => p.at), total, (v) => `${bytes(v)} of ${bytes(total)}`, (v) => bytes(v))),
        h('p', { class: 'muted' }, `${host.cpus} CPUs · load ${host.load.map((l) => l.toFixed(2)).join(' ')} · disk ${bytes(host.disk_used)} of ${bytes(host.disk_total)}${host.swap_total ? ` · swap ${bytes(host.swap_used)}` : ''}`),
        h('h3', null, 'Instances'),
        stats.instances.length ? h('ul', { class: 'bars' }, stats.instances.map((i) => {
          const mem = i.usage?.memory_bytes ?? 0;
          return h('li', null, h('span', { class: 'bar-label' }, `${i.name} (${i.owner_name})`),
            h('span', { class: 'bar' }, h('span', { class: 'bar-fill', style: `width:${Math.min(100, (mem / total) * 100 * 10).toFixed(1)}%` })),
            h('span', { class: 'bar-value' }, `${bytes(mem)} · ${(i.usage?.cpu_percent ?? 0).toFixed(0)} %`));
        })) : h('p', { class: 'muted' }, 'No instance is running.'));
      renderAlerts(stats.alerts);
    } catch (e) {
      clear(statsBox, h('h2', { id: 'stats-h' }, 'System'), h('p', { class: 'form-error', role: 'alert' }, e instanceof Error ? e.message : String(e)));
    }
  };

  const renderAlerts = async (active: Alert[]) => {
    let recent: Alert[] = [];
    try {
      recent = await api.get<Alert[]>('api/system/alerts');
    } catch {
      recent = active;
    }
    clear(alertsBox, h('h2', { id: 'alerts-h' }, 'Alerts'),
      recent.length ? h('ul', { class: 'alert-list' }, recent.slice(0, 20).map((a) => h('li', { class: a.cleared_at ? 'muted' : 'alert-active' },
        a.kind === 'tmux_server'
          // An event, not a level: an account's tmux server stopped under its agents.
          ? `an account's tmux server stopped, taking ${a.value.toFixed(0)} agent(s) with it — ${when(a.raised_at)}`
          : `${a.kind}: ${a.value.toFixed(0)} % (threshold ${a.threshold.toFixed(0)} %) — raised ${when(a.raised_at)}${a.cleared_at ? `, cleared ${when(a.cleared_at)}` : ', active'}`)))
        : h('p', { class: 'muted' }, 'No alerts.'));
  };

  const loadUsers = async () => {
    const users = await act(null, () => api.get<User[]>('api/admin/users'));
    if (!users) return;
    const username = h('input', { id: 'new-username', required: true, autocomplete: 'off', autocapitalize: 'off' });
    const password = h('input', { id: 'new-password', type: 'password', autocomplete: 'new-password', placeholder: 'leave empty to generate' });
    const isAdmin = h('input', { id: 'new-admin', type: 'checkbox' });
    const create = h('button', { type: 'submit', class: 'primary' }, 'Create account');
    const createError = inlineError(create, 'create-account-error');
    const form = h('form', { class: 'create-form' },
      h('label', { class: 'field', for: 'new-username' }, h('span', null, 'Username'), username),
      h('label', { class: 'field', for: 'new-password' }, h('span', null, 'Password'), password),
      h('label', { class: 'check', for: 'new-admin' }, isAdmin, ' Admin'),
      create, createError.el);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body: Record<string, unknown> = { username: username.value.trim(), role: isAdmin.checked ? 'admin' : 'user' };
      if (password.value) body.password = password.value;
      const created = await act(create, () => api.post<{ user: User; password: string | null }>('api/admin/users', body), `Created ${body.username as string}.`, createError);
      if (created) {
        if (created.password) await infoDialog('Account created', h('p', null, `The password of ${created.user.username} is shown only now:`), h('code', { class: 'secret-code' }, created.password));
        void loadUsers();
      }
    });
    const invite = h('button', { type: 'button', class: 'secondary' }, 'Create invite code');
    invite.addEventListener('click', async () => {
      const made = await act(invite, () => api.post<{ id: number; code: string; expires_at: string }>('api/admin/invites', {}));
      if (made) {
        newestInvite = made.id;
        void loadAudit();
        void loadInvites();
      }
      if (made) {
        const link = new URL(`#/register?invite=${encodeURIComponent(made.code)}`, document.baseURI).href;
        await infoDialog('Invite code', h('p', null, `Single use, valid until ${when(made.expires_at)}:`), h('code', { class: 'secret-code' }, made.code),
          h('p', null, 'Link: ', h('code', null, link)), inviteActions(link));
      }
    });
    clear(usersBox, h('h2', { id: 'users-h' }, 'Accounts'),
      h('ul', { class: 'user-list' }, users.map((u) => userRow(u))),
      h('h3', null, 'New account'), form, h('p', null, invite), invitesBox);
    void loadInvites();
    void loadAudit();
  };

  const invitesBox = h('div', { class: 'invites' });
  // The one created last in this view is marked, so it can be told from the others.
  let newestInvite = 0;
  const loadInvites = async () => {
    const invites = await act(null, () => api.get<Invite[]>('api/admin/invites'));
    if (!invites) return;
    clear(invitesBox, h('h3', null, 'Invites'),
      invites.length ? h('ul', { class: 'user-list' }, invites.map((i) => inviteRow(i))) : h('p', { class: 'muted' }, 'No invites.'));
  };

  const inviteRow = (i: Invite) => {
    const what = `${i.role === 'admin' ? 'Admin' : 'User'} invite`;
    const detail = i.state === 'used'
      ? `used ${when(i.used_at)}${i.used_by ? ` by ${i.used_by}` : ''}`
      : i.state === 'expired' ? `expired ${when(i.expires_at)}` : `valid until ${when(i.expires_at)}`;
    let revoke: HTMLElement | null = null;
    if (i.state === 'pending') {
      const button = h('button', { type: 'button', class: 'danger small', 'aria-label': `Revoke ${what.toLowerCase()} created ${when(i.created_at)}` }, 'Revoke');
      button.addEventListener('click', async () => {
        if (!(await confirmDialog('Revoke this invite?', 'Its code stops working at once.', 'Revoke'))) return;
        if (await act(button, () => api.del(`api/admin/invites/${i.id}`).then(() => true), 'Invite revoked.')) {
          void loadInvites();
          void loadAudit();
        }
      });
      revoke = button;
    }
    return h('li', { class: i.id === newestInvite ? 'user-row invite-new' : 'user-row', 'data-invite': String(i.id) },
      h('div', null, h('strong', null, what), ' ', h('span', { class: `badge ${i.state === 'pending' ? 'badge-running' : 'badge-exited'}` }, i.state),
        i.id === newestInvite ? h('span', { class: 'badge' }, 'just created') : null,
        h('div', { class: 'muted small-print' }, `created ${when(i.created_at)}${i.created_by ? ` by ${i.created_by}` : ''} · ${detail}`)),
      revoke ? h('div', { class: 'row-actions' }, revoke) : null);
  };

  const userRow = (u: User) => {
    // The server refuses to disable or delete the account you are signed in with; so are the buttons.
    const self = u.id === ctx.user.id;
    const toggle = h('button', { type: 'button', class: u.disabled ? 'secondary small' : 'danger small' }, u.disabled ? 'Enable' : 'Disable');
    toggle.addEventListener('click', async () => {
      if (!u.disabled && !(await confirmDialog(`Disable ${u.username}?`, 'They are signed out at once and cannot sign in until enabled again. Their agents keep running.', 'Disable'))) return;
      if (await act(toggle, () => api.patch(`api/admin/users/${u.id}`, { disabled: !u.disabled }).then(() => true), `${u.disabled ? 'Enabled' : 'Disabled'} ${u.username}.`)) void loadUsers();
    });
    const reset = h('button', { type: 'button', class: 'secondary small' }, 'Reset password');
    reset.addEventListener('click', async () => {
      const pw = await promptDialog(`New password for ${u.username}`, 'New password', '', 'Set password', 'password',
        (next) => api.patch(`api/admin/users/${u.id}`, { password: next }));
      if (!pw) return;
      toast(`Password of ${u.username} changed; they were signed out everywhere.`);
    });
    const del = h('button', { type: 'button', class: 'danger small' }, 'Delete');
    del.addEventListener('click', async () => {
      if (!(await confirmDialog(`Delete ${u.username}?`, 'Their agents are stopped and their files moved to the archive.'))) return;
      if (await act(del, () => api.del(`api/admin/users/${u.id}`).then(() => true), `Deleted ${u.username}.`)) void loadUsers();
    });
    return h('li', { class: 'user-row', 'data-user': u.username },
      h('div', null, h('strong', null, u.username), ' ', u.role === 'admin' ? h('span', { class: 'badge badge-running' }, 'admin') : null,
        self ? [' ', h('span', { class: 'badge' }, 'you')] : null,
        u.disabled ? h('span', { class: 'badge badge-exited' }, 'disabled') : null,
        h('div', { class: 'muted small-print' }, `last sign-in ${when(u.last_login_at)}`)),
      h('div', { class: 'row-actions' }, self ? null : toggle, reset, self ? null : del));
  };

  const loadAudit = async () => {
    const entries = await act(null, () => api.get<Audit[]>('api/admin/audit?limit=50'));
    if (!entries) return;
    clear(auditBox, h('h2', { id: 'audit-h' }, 'Audit log'),
      h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Audit log entries' }, h('table', { class: 'audit' },
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Who'), h('th', { scope: 'col' }, 'What'), h('th', { scope: 'col' }, 'Target'))),
        h('tbody', null, entries.map((e) => h('tr', null, h('td', null, when(e.at)), h('td', null, e.username ?? '—'), h('td', null, e.action), h('td', null, e.target ?? '')))))));
  };

  await Promise.all([loadStats(), loadUsers()]);
  const timer = setInterval(() => {
    if (document.visibilityState === 'visible') void loadStats();
  }, 5000);
  return () => clearInterval(timer);
}

/** Copy and Share for an invite link; the answer shows on the button itself, inside the dialog. */
function inviteActions(link: string): HTMLElement {
  const copy = h('button', { type: 'button', class: 'secondary small' }, 'Copy link');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(link);
      copy.textContent = 'Copied';
    } catch {
      copy.textContent = 'Copy failed: select the link above';
    }
  });
  const share = h('button', { type: 'button', class: 'secondary small' }, 'Share…');
  share.addEventListener('click', () => {
    navigator.share({ title: 'Your pocketdev invite', text: 'An account on pocketdev is waiting for you:', url: link })
      .catch(() => undefined);
  });
  return h('p', { class: 'row-actions' }, copy, 'share' in navigator ? share : null);
}
