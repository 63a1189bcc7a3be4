// Sign in, and register or redeem an invite when the server's policy allows it.
import { api, ApiError, type AuthConfig, type User } from '../api';
import { h, clear } from '../ui';
import { session } from '../main';

export async function loginView(app: HTMLElement, mode: 'login' | 'register', query: URLSearchParams, done: (user: User) => void): Promise<void> {
  document.body.classList.remove('is-full');
  // The sign-in form does not wait for the server's policy: it shows at once, and the link to
  // register and the version follow when the policy arrives. Registering needs the policy first.
  const configured = api.get<AuthConfig>('api/auth/config').catch(() => null);
  const config: AuthConfig | null = mode === 'register' ? await configured : null;
  // An invite link opens the form whatever the policy: an invite is an admin's decision.
  const invited = Boolean(query.get('invite'));
  const canRegister = config && config.registration !== 'closed';
  if (mode === 'register' && !canRegister && !invited) mode = 'login';
  const needsInvite = config?.registration === 'invite' || (config?.registration === 'closed' && invited);

  const message = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const notice = session.notice;
  session.notice = null;
  const username = h('input', { name: 'username', id: 'username', autocomplete: 'username', autocapitalize: 'off', spellcheck: false, required: true });
  const password = h('input', {
    name: 'password', id: 'password', type: 'password', required: true,
    autocomplete: mode === 'login' ? 'current-password' : 'new-password',
    minLength: mode === 'register' ? config?.min_password_length ?? 10 : undefined,
  });
  const invite = h('input', { name: 'invite', id: 'invite', autocomplete: 'off', autocapitalize: 'off', value: query.get('invite') ?? '', required: needsInvite });
  const submit = h('button', { type: 'submit', class: 'primary wide' }, mode === 'login' ? 'Sign in' : 'Create account');

  const form = h('form', { class: 'stack', novalidate: false },
    h('label', { class: 'field', for: 'username' }, h('span', null, 'Username'), username),
    h('label', { class: 'field', for: 'password' }, h('span', null, 'Password'), password,
      mode === 'register' ? h('small', { class: 'muted' }, `At least ${config?.min_password_length ?? 10} characters.`) : null),
    mode === 'register' && needsInvite ? h('label', { class: 'field', for: 'invite' }, h('span', null, 'Invite code'), invite) : null,
    message,
    submit,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    message.hidden = true;
    submit.disabled = true;
    submit.textContent = mode === 'login' ? 'Signing in…' : 'Creating account…';
    try {
      const body: Record<string, string> = { username: username.value.trim(), password: password.value };
      if (mode === 'register' && invite.value.trim()) body.invite = invite.value.trim();
      const response = await api.post<{ user: User }>(mode === 'login' ? 'api/auth/login' : 'api/auth/register', body);
      done(response.user);
    } catch (err) {
      message.textContent = err instanceof ApiError && err.status === 401 ? 'Wrong username or password.' : err instanceof Error ? err.message : String(err);
      message.hidden = false;
      submit.disabled = false;
      submit.textContent = mode === 'login' ? 'Sign in' : 'Create account';
      password.select();
    }
  });

  const footer = (policy: AuthConfig | null) => [
    policy && policy.registration !== 'closed'
      ? mode === 'login'
        ? h('p', { class: 'muted center' }, 'New here? ', h('a', { href: '#/register' }, policy.registration === 'invite' ? 'Redeem an invite' : 'Create an account'))
        : h('p', { class: 'muted center' }, 'Have an account? ', h('a', { href: '#/login' }, 'Sign in'))
      : null,
    policy ? h('p', { class: 'muted center small-print' }, `pocketdev ${policy.version}`) : null,
  ];
  const below = h('div', { class: 'login-footer' }, footer(config));

  const page = h('main', { class: 'center-card' },
    h('div', { class: 'brand-big' }, h('img', { src: './icon.svg', alt: '', width: 56, height: 56 }), h('h1', null, 'pocketdev')),
    h('h2', { class: 'sub' }, mode === 'login' ? 'Sign in' : needsInvite ? 'Redeem an invite' : 'Create an account'),
    notice ? h('p', { class: 'notice', role: 'status' }, notice) : null,
    form,
    below,
  );
  clear(app, page);
  username.focus();
  if (mode === 'login') {
    const policy = await configured;
    // Still this page (not signed in meanwhile, nor gone to register).
    if (page.isConnected) clear(below, footer(policy));
  }
}
