// The workspace's git repositories: a list of them (GET /api/git/repos), each leading to its
// read-only Changes page (#/repo/<folder>), and cloning one (POST /api/git/clone). Shown at the
// top of the Files view; the clone dialog is also in the dashboard's "Work on a branch".
import { api, ApiError } from '../api';
import { h, clear, act, errorText, icon, inlineError, toast } from '../ui';
import { cloneErrorField, cloneFolder } from './layout';
import type { CloneResult, RepoEntry } from './types';

export const repoHash = (folder: string) => `#/repo/${folder.split('/').map(encodeURIComponent).join('/')}`;

export function listRepos(): Promise<RepoEntry[]> {
  return api.get<{ repos: RepoEntry[] }>('api/git/repos').then((r) => r.repos);
}

/** The "Repositories" panel: each with its branch and how many files changed, and Clone. */
export function reposPanel(onCloned?: () => void): { el: HTMLElement; load: () => Promise<void> } {
  const list = h('ul', { class: 'repo-list', 'aria-label': 'Repositories' }, h('li', { class: 'muted' }, 'Loading…'));
  const cloneButton = h('button', { type: 'button', class: 'secondary small' }, 'Clone a repository');
  const load = async () => {
    try {
      const repos = await listRepos();
      clear(list, repos.length ? repos.map(repoRow) : h('li', { class: 'muted' }, 'No git repository in your workspace yet.'));
    } catch (e) {
      clear(list, h('li', { class: 'form-error', role: 'alert' }, errorText(e)));
    }
  };
  cloneButton.addEventListener('click', async () => {
    if (!(await cloneDialog())) return;
    onCloned?.();
    await load();
  });
  const el = h('section', { class: 'panel repos', 'aria-labelledby': 'repos-h' },
    h('div', { class: 'repos-head' }, h('h2', { id: 'repos-h' }, 'Repositories'), cloneButton),
    list);
  return { el, load };
}

function repoRow(r: RepoEntry): HTMLElement {
  const state = r.changed ? `${r.changed} changed` : 'no changes';
  return h('li', null, h('a', { href: repoHash(r.folder), class: 'repo-row' },
    h('span', { class: 'repo-name' }, r.folder),
    h('span', { class: 'muted repo-meta' }, icon('branch', 13), h('span', { class: 'sr-only' }, 'branch '), r.branch ?? 'detached', ` · ${state}`)));
}

/**
 * The clone dialog: URL and folder (the folder follows the URL until it is edited). A refusal
 * is said under the field it concerns: the folder's (taken, or not a valid name), else the
 * URL's, in git's own words. Resolves with the clone, or null when cancelled.
 */
export function cloneDialog(): Promise<CloneResult | null> {
  return new Promise((resolve) => {
    const d = h('dialog', { class: 'dialog clone-dialog', 'aria-labelledby': 'clone-title' });
    const url = h('input', { id: 'clone-url', name: 'url', required: true, autocomplete: 'off', autocapitalize: 'off', inputMode: 'url', placeholder: 'https://github.com/you/project.git' });
    const folder = h('input', { id: 'clone-folder', name: 'folder', required: true, autocomplete: 'off', autocapitalize: 'off', maxLength: 200 });
    url.spellcheck = false;
    folder.spellcheck = false;
    const urlError = inlineError(url, 'clone-url-error');
    const folderError = inlineError(folder, 'clone-folder-error');
    let folderEdited = false;
    url.addEventListener('input', () => {
      if (!folderEdited) folder.value = cloneFolder(url.value);
    });
    folder.addEventListener('input', () => {
      folderEdited = folder.value !== '';
    });
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Clone');
    let result: CloneResult | null = null;
    const form = h('form', { class: 'stack' },
      h('h2', { id: 'clone-title' }, 'Clone a repository'),
      h('label', { class: 'field', for: 'clone-url' }, h('span', null, 'URL'), url, urlError.el),
      h('p', { class: 'muted small-print', id: 'clone-how' }, 'HTTPS uses your GIT_TOKEN secret as the password; SSH uses this account\'s key (Settings → Git SSH key).'),
      h('label', { class: 'field', for: 'clone-folder' }, h('span', null, 'Folder in your workspace'), folder, folderError.el),
      h('div', { class: 'dialog-buttons' }, h('button', { type: 'button', class: 'secondary', onclick: () => d.close() }, 'Cancel'), submit));
    url.setAttribute('aria-describedby', 'clone-how');
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      urlError.hide();
      folderError.hide();
      url.setAttribute('aria-describedby', 'clone-how');
      let failure: unknown = null;
      submit.textContent = 'Cloning…';
      const done = await act(submit, () => api.post<CloneResult>('api/git/clone', { url: url.value.trim(), folder: folder.value.trim().replace(/^\/+|\/+$/g, '') }),
        undefined, { el: urlError.el, hide: () => undefined, show: (err) => { failure = err; } });
      submit.textContent = 'Clone';
      if (failure) {
        const onFolder = failure instanceof ApiError && cloneErrorField(failure.message) === 'folder';
        (onFolder ? folderError : urlError).show(failure);
        (onFolder ? folder : url).focus();
        return;
      }
      if (!done) return;
      result = done;
      // Closed first: a toast shown in the dialog would go with it.
      d.close();
      toast(`Cloned into ${done.folder}${done.branch ? ` (${done.branch})` : ''}.`);
    });
    d.append(form);
    document.body.append(d);
    d.addEventListener('close', () => {
      d.remove();
      resolve(result);
    });
    d.showModal();
    url.focus();
  });
}
