// What agents spend: your own in Settings (today, this week, this month by model and by agent,
// 30 days), every account's in Admin (side by side, the server's days, a CSV export).
import { api, url } from '../api';
import { h, clear, act, inlineError } from '../ui';

export interface SpendTotals {
  input_tokens: number;
  output_tokens: number;
  cache_write_tokens: number;
  cache_read_tokens: number;
  tokens: number;
  cost: number;
  unpriced_tokens: number;
}
interface DayTotals extends SpendTotals { day: string }
export interface Standing {
  id: number;
  user_id: number | null;
  username: string | null;
  period: 'day' | 'month';
  cost_limit: number | null;
  tokens_limit: number | null;
  spent_cost: number;
  spent_tokens: number;
  used_percent: number;
  state: 'ok' | 'warning' | 'exceeded' | 'lifted';
  resets_at: string;
  message: string | null;
}
export interface AccountSpending {
  currency: string;
  today_by_instance: (SpendTotals & { instance_id: string; name: string })[];
  budgets: Standing[];
  today: SpendTotals;
  week: SpendTotals;
  month: SpendTotals;
  by_model: (SpendTotals & { model: string; priced: boolean })[];
  by_instance: (SpendTotals & { instance_id: string; name: string })[];
  days: DayTotals[];
}
interface ServerSpending {
  currency: string;
  accounts: { user_id: number; username: string; today: SpendTotals; month: SpendTotals }[];
  days: DayTotals[];
}

/** 1234 → "1.2k", 2500000 → "2.5M". */
export function tokenCount(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(n < 10_000_000 ? 1 : 0)}M`;
}

/** A cost in its currency: cents for most, more digits for tiny sums so they are not 0. */
export function money(value: number, currency: string): string {
  const digits = value > 0 && value < 0.01 ? 4 : 2;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency, minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value);
  } catch {
    return `${value.toFixed(digits)} ${currency}`;
  }
}

/** "1.2k tokens · $0.05", saying when some tokens have no price. */
export function spent(t: SpendTotals, currency: string): string {
  const unpriced = t.unpriced_tokens ? ` (${tokenCount(t.unpriced_tokens)} without a price)` : '';
  return `${tokenCount(t.tokens)} tokens · ${money(t.cost, currency)}${unpriced}`;
}

/** Thirty days as bars, tallest = the dearest day; the figure's name says the same in words. */
function dayBars(days: DayTotals[], currency: string): HTMLElement {
  const costly = days.some((d) => d.cost > 0);
  const value = (d: DayTotals) => (costly ? d.cost : d.tokens);
  const max = Math.max(...days.map(value), 0);
  const peak = days.find((d) => value(d) === max);
  const total = days.reduce((sum, d) => sum + value(d), 0);
  const say = (v: number) => (costly ? money(v, currency) : `${tokenCount(v)} tokens`);
  const label = max > 0
    ? `Spending per day, last 30 days: ${say(total)} in all, the most ${say(max)} on ${peak?.day}.`
    : 'Nothing spent in the last 30 days.';
  return h('figure', { class: 'day-bars', role: 'img', 'aria-label': label },
    h('div', { class: 'day-bars-plot', 'aria-hidden': 'true' },
      days.map((d) => h('span', { class: 'day-bar', title: `${d.day}: ${say(value(d))}`, style: `height:${max ? Math.max(2, (value(d) / max) * 100) : 0}%` }))),
    h('figcaption', { class: 'day-bars-axis', 'aria-hidden': 'true' }, h('span', null, days[0]?.day.slice(5) ?? ''), h('span', null, `max ${say(max)}`), h('span', null, 'today')));
}

/** A budget in words: "Daily budget: $0.40 of $1.00 (40 %), starts again …". */
export function budgetLine(b: Standing, currency: string): string {
  const limit = [b.cost_limit !== null ? `${money(b.spent_cost, currency)} of ${money(b.cost_limit, currency)}` : '',
    b.tokens_limit !== null ? `${tokenCount(b.spent_tokens)} of ${tokenCount(b.tokens_limit)} tokens` : ''].filter(Boolean).join(', ');
  const whose = b.user_id === null ? 'Server' : b.username ?? 'Account';
  const state = b.state === 'exceeded' ? ' — spent' : b.state === 'warning' ? ' — nearly spent' : b.state === 'lifted' ? ' — lifted for today' : '';
  return `${whose}, ${b.period === 'day' ? 'daily' : 'monthly'}: ${limit} (${b.used_percent.toFixed(0)} %)${state}; starts again ${new Date(b.resets_at).toLocaleString()}`;
}

/** Settings: your own spending. */
export function usagePanel(): HTMLElement {
  const box = h('section', { class: 'panel', 'aria-labelledby': 'usage-h' }, h('h2', { id: 'usage-h' }, 'Usage'), h('p', { class: 'muted' }, 'Loading…'));
  void (async () => {
    try {
      const u = await api.get<AccountSpending>('api/usage');
      const c = u.currency;
      clear(box, h('h2', { id: 'usage-h' }, 'Usage'),
        h('p', { class: 'muted' }, 'Tokens your agents used, read from their own records, and what they cost at the server\'s prices. Agents other than Claude Code are not measured.'),
        u.budgets.map((b) => h('p', { class: `budget budget-${b.state}`, role: b.state === 'exceeded' ? 'alert' : undefined }, b.message ?? budgetLine(b, c))),
        h('dl', { class: 'usage-totals' },
          h('dt', null, 'Today'), h('dd', null, spent(u.today, c)),
          h('dt', null, 'Last 7 days'), h('dd', null, spent(u.week, c)),
          h('dt', null, 'This month'), h('dd', null, spent(u.month, c))),
        dayBars(u.days, c),
        u.by_model.length ? h('div', null, h('h3', null, 'This month by model'),
          h('ul', { class: 'usage-list' }, u.by_model.map((m) => h('li', null, h('code', null, m.model), h('span', null, m.priced ? spent(m, c) : `${tokenCount(m.tokens)} tokens (no price set)`))))) : null,
        u.by_instance.length ? h('div', null, h('h3', null, 'This month by agent'),
          h('ul', { class: 'usage-list' }, u.by_instance.map((i) => h('li', null, h('span', null, i.name), h('span', null, spent(i, c)))))) : null);
    } catch (e) {
      clear(box, h('h2', { id: 'usage-h' }, 'Usage'), h('p', { class: 'form-error', role: 'alert' }, e instanceof Error ? e.message : String(e)));
    }
  })();
  return box;
}

/** Admin: the budgets, each with Lift and Remove, and a form to set one. */
async function budgetsBox(currency: string): Promise<HTMLElement> {
  const box = h('div', { class: 'budgets' });
  const users = await api.get<{ id: number; username: string }[]>('api/admin/users');
  const render = async () => {
    const all = await api.get<Standing[]>('api/admin/budgets');
    const scope = h('select', { id: 'budget-scope' }, h('option', { value: '' }, 'The whole server'), users.map((u) => h('option', { value: String(u.id) }, u.username)));
    const period = h('select', { id: 'budget-period' }, h('option', { value: 'day' }, 'Per day'), h('option', { value: 'month' }, 'Per month'));
    const cost = h('input', { id: 'budget-cost', type: 'number', min: '0.01', step: '0.01', inputMode: 'decimal' });
    const tokens = h('input', { id: 'budget-tokens', type: 'number', min: '1', step: '1', inputMode: 'numeric' });
    const save = h('button', { type: 'submit', class: 'primary' }, 'Set budget');
    const error = inlineError(save, 'budget-error');
    const form = h('form', { class: 'stack budget-form' },
      h('label', { class: 'field', for: 'budget-scope' }, h('span', null, 'For'), scope),
      h('label', { class: 'field', for: 'budget-period' }, h('span', null, 'Period'), period),
      h('label', { class: 'field', for: 'budget-cost' }, h('span', null, `At most (${currency})`), cost),
      h('label', { class: 'field', for: 'budget-tokens' }, h('span', null, 'Or at most (tokens)'), tokens),
      save, error.el);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = { user_id: scope.value ? Number(scope.value) : null, period: period.value, cost: cost.value ? Number(cost.value) : undefined, tokens: tokens.value ? Number(tokens.value) : undefined };
      if (await act(save, () => api.put('api/admin/budgets', body), 'Budget set.', error)) void render();
    });
    clear(box, h('h3', null, 'Budgets'),
      all.length ? h('ul', { class: 'usage-list' }, all.map((b) => {
        const lift = h('button', { type: 'button', class: 'secondary small', 'aria-label': `Lift for today: ${budgetLine(b, currency)}` }, 'Lift for today');
        lift.addEventListener('click', async () => {
          if (await act(lift, () => api.post(`api/admin/budgets/${b.id}/lift`), 'Lifted for today.')) void render();
        });
        const remove = h('button', { type: 'button', class: 'danger small', 'aria-label': `Remove: ${budgetLine(b, currency)}` }, 'Remove');
        remove.addEventListener('click', async () => {
          if (await act(remove, () => api.del(`api/admin/budgets/${b.id}`).then(() => true), 'Budget removed.')) void render();
        });
        return h('li', { class: `budget-${b.state}` }, h('span', null, budgetLine(b, currency)), h('span', { class: 'row-actions' }, b.state === 'exceeded' ? lift : null, remove));
      })) : h('p', { class: 'muted' }, 'No budget: agents may spend without limit.'),
      h('p', { class: 'muted' }, 'At 80 % the account is told; when spent, its quiet agents stop, new ones are refused, and admins are alerted.'),
      form);
  };
  await render();
  return box;
}

/** Admin: every account side by side, the server's days, and the export. */
export function adminUsagePanel(): HTMLElement {
  const box = h('section', { class: 'panel', 'aria-labelledby': 'spend-h' }, h('h2', { id: 'spend-h' }, 'Usage'), h('p', { class: 'muted' }, 'Loading…'));
  void (async () => {
    try {
      const u = await api.get<ServerSpending>('api/admin/usage');
      const c = u.currency;
      const rows = u.accounts.map((a) => h('tr', null, h('th', { scope: 'row' }, a.username), h('td', null, spent(a.today, c)), h('td', null, spent(a.month, c))));
      clear(box, h('h2', { id: 'spend-h' }, 'Usage'),
        dayBars(u.days, c),
        u.accounts.length
          ? h('table', { class: 'usage-table' }, h('caption', null, 'Accounts, the costliest this month first'),
            h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Account'), h('th', { scope: 'col' }, 'Today'), h('th', { scope: 'col' }, 'This month'))),
            h('tbody', null, rows))
          : h('p', { class: 'muted' }, 'No agent has spent anything in the last 30 days.'),
        h('p', null, h('a', { href: url('api/admin/usage?format=csv'), download: 'pocketdev-usage.csv', class: 'button secondary small' }, 'Export 30 days as CSV')),
        await budgetsBox(c));
    } catch (e) {
      clear(box, h('h2', { id: 'spend-h' }, 'Usage'), h('p', { class: 'form-error', role: 'alert' }, e instanceof Error ? e.message : String(e)));
    }
  })();
  return box;
}
