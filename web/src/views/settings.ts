// Settings: secrets (API keys, masked), notifications, password, theme.
import { api, ApiError, type Secret } from '../api';
import { h, clear, act, confirmDialog, when, toast, inlineError } from '../ui';
import { applyTheme, getTheme, session, type Ctx, type Theme } from '../main';
import { notificationsPanel } from '../push';
import { usagePanel } from './usage';
import type { SshKey } from '../git/types';

export async function settingsView(ctx: Ctx): Promise<() => void> {
  const secretList = h('ul', { class: 'secret-list', 'aria-label': 'Your secrets' }, h('li', { class: 'muted' }, 'Loading…'));
  const wanted = ctx.query.get('secret') ?? '';
  const nameInput = h('input', { id: 'secret-name', name: 'name', value: wanted, placeholder: 'ANTHROPIC_API_KEY', autocapitalize: 'characters', autocomplete: 'off', spellcheck: false, required: true, pattern: '[A-Za-z_][A-Za-z0-9_]*' });
  const valueInput = h('input', { id: 'secret-value', name: 'value', type: 'password', autocomplete: 'off', required: true });
  const saveSecret = h('button', { type: 'submit', class: 'primary' }, 'Save secret');
  const secretError = inlineError(nameInput, 'secret-error');
  const secretForm = h('form', { class: 'stack' },
    h('label', { class: 'field', for: 'secret-name' }, h('span', null, 'Name'), nameInput, secretError.el),
    h('label', { class: 'field', for: 'secret-value' }, h('span', null, 'Value'), valueInput, h('small', { class: 'muted' }, 'Stored encrypted. It is never shown again, only its last characters.')),
    saveSecret);

  const current = h('input', { id: 'pw-current', type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { id: 'pw-new', type: 'password', autocomplete: 'new-password', required: true, minLength: 10 });
  const pwButton = h('button', { type: 'submit', class: 'primary' }, 'Change password');
  // A wrong current password is said under that field; any other refusal (the new one too
  // short) under the new one.
  const currentError = inlineError(current, 'pw-current-error');
  const nextError = inlineError(next, 'pw-new-error');
  const pwForm = h('form', { class: 'stack' },
    h('label', { class: 'field', for: 'pw-current' }, h('span', null, 'Current password'), current, currentError.el),
    h('label', { class: 'field', for: 'pw-new' }, h('span', null, 'New password'), next, h('small', { class: 'muted' }, 'Your other devices will be signed out.'), nextError.el),
    pwButton);

  const themeBox = h('fieldset', { class: 'theme-choice' }, h('legend', null, 'Theme'),
    (['system', 'light', 'dark'] as Theme[]).map((t) => h('label', { class: 'check' },
      h('input', { type: 'radio', name: 'theme', value: t, checked: getTheme() === t, onchange: () => { applyTheme(t); toast(`Theme: ${t === 'system' ? 'follow the system' : t}.`, 'ok', 1500); } }),
      ` ${t === 'system' ? 'Follow the system' : t === 'light' ? 'Light' : 'Dark'}`)));

  const notifications = notificationsPanel();
  const ssh = sshKeyPanel();
  clear(ctx.root,
    h('div', { class: 'page-head' }, h('h1', null, 'Settings')),
    h('section', { class: 'panel', 'aria-labelledby': 'secrets-h' }, h('h2', { id: 'secrets-h' }, 'API keys and secrets'),
      h('p', { class: 'muted' }, 'Agents get these as environment variables, for example ANTHROPIC_API_KEY for Claude Code or GLM_API_KEY for GLM.'),
      secretList, secretForm),
    notifications.el,
    ssh.el,
    usagePanel(),
    h('section', { class: 'panel', 'aria-labelledby': 'pw-h' }, h('h2', { id: 'pw-h' }, 'Password'), pwForm),
    h('section', { class: 'panel', 'aria-labelledby': 'look-h' }, h('h2', { id: 'look-h' }, 'Appearance'), themeBox),
    h('p', { class: 'muted' }, `Signed in as ${session.user?.username ?? ''}.`));

  const refresh = async () => {
    const secrets = await act(null, () => api.get<Secret[]>('api/secrets'));
    if (!secrets) return;
    clear(secretList, secrets.length ? secrets.map((s) => {
      const del = h('button', { type: 'button', class: 'danger small', 'aria-label': `Delete ${s.name}` }, 'Delete');
      del.addEventListener('click', async () => {
        if (!(await confirmDialog(`Delete ${s.name}?`, 'Agents started after this will not get it.'))) return;
        if (await act(del, () => api.del(`api/secrets/${encodeURIComponent(s.name)}`).then(() => true), `Deleted ${s.name}.`)) void refresh();
      });
      return h('li', { class: 'secret-row' }, h('code', null, s.name), h('span', { class: 'muted' }, s.hint), h('span', { class: 'muted small-print' }, when(s.updated_at)), del);
    }) : h('li', { class: 'muted' }, 'No secrets yet.'));
  };

  secretForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = nameInput.value.trim();
    const ok = await act(saveSecret, () => api.put(`api/secrets/${encodeURIComponent(name)}`, { value: valueInput.value }).then(() => true), `Saved ${name}.`, secretError);
    if (ok) {
      valueInput.value = '';
      nameInput.value = '';
      void refresh();
    }
  });
  pwForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    currentError.hide();
    nextError.hide();
    let failure: unknown = null;
    const ok = await act(pwButton, () => api.post('api/auth/password', { current_password: current.value, new_password: next.value }).then(() => true), 'Password changed. Your other devices were signed out.',
      { el: nextError.el, hide: () => undefined, show: (e) => { failure = e; } });
    if (failure) {
      // 403: the current password is wrong; anything else concerns the new one.
      const wrongCurrent = failure instanceof ApiError && failure.status === 403;
      (wrongCurrent ? currentError : nextError).show(failure);
      (wrongCurrent ? current : next).focus();
    }
    if (ok) {
      current.value = '';
      next.value = '';
    }
  });
  if (wanted) valueInput.focus();
  await Promise.all([refresh(), notifications.load(), ssh.load()]);
  return () => undefined;
}

/**
 * Git SSH key: the account's public key (~/.ssh/id_ed25519.pub), to copy into a forge, or a
 * button that makes one. Clones and pushes over SSH use it.
 */
function sshKeyPanel(): { el: HTMLElement; load: () => Promise<void> } {
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  const show = (key: SshKey) => {
    if (!key.public_key) {
      const create = h('button', { type: 'button', class: 'primary' }, 'Create a key');
      create.addEventListener('click', async () => {
        const made = await act(create, () => api.post<SshKey>('api/git/ssh-key', {}), 'Created an SSH key.');
        if (made) show(made);
        else void load();
      });
      clear(body, h('p', null, 'This account has no SSH key yet. Git over SSH needs one.'), create);
      return;
    }
    const publicKey = key.public_key.trim();
    const copy = h('button', { type: 'button', class: 'secondary small', 'aria-label': 'Copy the public key' }, 'Copy');
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(publicKey);
        toast('Copied the public key.');
      } catch {
        // No clipboard (an insecure origin): the key is selected to copy by hand.
        const range = document.createRange();
        range.selectNodeContents(keyText);
        getSelection()?.removeAllRanges();
        getSelection()?.addRange(range);
        toast('Selected the key: copy it from the menu.', 'info');
      }
    });
    const keyText = h('p', { class: 'ssh-key', id: 'ssh-public-key' }, publicKey);
    clear(body,
      keyText,
      h('div', { class: 'toolbar' }, copy, key.fingerprint ? h('span', { class: 'muted small-print ssh-fingerprint' }, `Fingerprint ${key.fingerprint}`) : null));
  };
  const load = async () => {
    try {
      show(await api.get<SshKey>('api/git/ssh-key'));
    } catch (e) {
      clear(body, h('p', { class: 'form-error', role: 'alert' }, e instanceof Error ? e.message : String(e)));
    }
  };
  const el = h('section', { class: 'panel', 'aria-labelledby': 'ssh-h' },
    h('h2', { id: 'ssh-h' }, 'Git SSH key'),
    h('p', { class: 'muted' }, 'Add this public key to your forge\'s deploy keys or account SSH keys to clone and push over SSH.'),
    body);
  return { el, load };
}
