// Files: browse the workspace, upload, download, new folder, rename, delete, and the editor
// (CodeMirror, loaded only when a file is opened) with conflict-aware saving.
import { api, ApiError, q, upload, url, refreshSession, requestBlob, type Entry, type FileContent, type Listing } from '../api';
import { h, clear, bytes, icon, confirmDialog, promptDialog, showError, toast, errorText, act } from '../ui';
import { guardLeaving, type Ctx } from '../main';
import { reposPanel } from '../git/repos';

const join = (dir: string, name: string) => (dir ? `${dir}/${name}` : name);
const parent = (path: string) => path.split('/').slice(0, -1).join('/');
const filesHash = (path: string) => `#/files${path ? '/' + path.split('/').map(encodeURIComponent).join('/') : ''}`;
const editHash = (path: string) => `#/edit/${path.split('/').map(encodeURIComponent).join('/')}`;

function crumbs(path: string, last: 'link' | 'text' = 'text') {
  const parts = path ? path.split('/') : [];
  const nav = h('nav', { class: 'crumbs', 'aria-label': 'Folder' }, h('a', { href: filesHash('') }, 'workspace'));
  parts.forEach((part, i) => {
    const sub = parts.slice(0, i + 1).join('/');
    nav.append(' / ', i === parts.length - 1 && last === 'text' ? h('span', { 'aria-current': 'page' }, part) : h('a', { href: filesHash(sub) }, part));
  });
  return nav;
}

const IMAGE_TYPES: Record<string, string> = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  avif: 'image/avif', bmp: 'image/bmp', ico: 'image/x-icon', svg: 'image/svg+xml',
};
const imageType = (name: string): string | undefined => IMAGE_TYPES[name.toLowerCase().split('.').pop() ?? ''];
const isImage = (name: string) => imageType(name) !== undefined;

/**
 * When a file changed: "just now", "3 min ago" or "2 h ago" today, else the date and time
 * (with the year when it is not this one), in a <time> with the full timestamp as its title.
 */
export function fileTime(epochSecs: number, now = new Date()): HTMLTimeElement {
  const at = new Date(epochSecs * 1000);
  const ago = Math.max(0, Math.floor((now.getTime() - at.getTime()) / 1000));
  const today = at.toDateString() === now.toDateString();
  const text = today && ago < 60 ? 'just now'
    : today && ago < 3600 ? `${Math.floor(ago / 60)} min ago`
      : today ? `${Math.floor(ago / 3600)} h ago`
        : at.toLocaleString(undefined, { day: 'numeric', month: 'short', year: at.getFullYear() === now.getFullYear() ? undefined : 'numeric', hour: '2-digit', minute: '2-digit' });
  return h('time', { datetime: at.toISOString(), title: at.toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'long' }) }, text);
}

/** Puts an open row menu under its ⋯ button (above it when there is no room below). */
function placeMenu(menu: HTMLElement, button: HTMLElement): void {
  const b = button.getBoundingClientRect();
  const height = menu.offsetHeight;
  const room = (window.visualViewport?.height ?? window.innerHeight) - b.bottom;
  menu.style.top = `${Math.max(4, room >= height + 8 ? b.bottom + 4 : b.top - height - 4)}px`;
  menu.style.right = `${Math.max(4, document.documentElement.clientWidth - b.right)}px`;
}

/** A download through a plain link, after making sure the session cookie is fresh. */
export async function download(path: string): Promise<void> {
  try {
    await api.get('api/auth/me');
  } catch {
    await refreshSession();
  }
  const a = h('a', { href: url(`api/files/download${q({ path })}`), download: path.split('/').pop() ?? 'download', hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  toast(`Downloading ${path.split('/').pop()}…`, 'info');
}

export async function filesView(ctx: Ctx): Promise<() => void> {
  const path = ctx.params.join('/');
  const hidden = localStorage.getItem('pd.hidden') === '1';
  const list = h('ul', { class: 'file-list', 'aria-label': 'Files and folders' }, h('li', { class: 'muted' }, 'Loading…'));
  const uploadInput = h('input', { type: 'file', multiple: true, hidden: true, id: 'upload-input' });
  const uploadButton = h('button', { type: 'button', class: 'primary' }, 'Upload');
  const mkdirButton = h('button', { type: 'button', class: 'secondary' }, 'New folder');
  const newFileButton = h('button', { type: 'button', class: 'secondary' }, 'New file');
  const hiddenToggle = h('input', { type: 'checkbox', id: 'show-hidden', checked: hidden });
  // At the workspace's top: its git repositories, each with its changes, and cloning one.
  const repos = path ? null : reposPanel(() => void refresh());
  clear(ctx.root,
    h('div', { class: 'page-head' }, h('h1', null, 'Files')),
    repos?.el,
    crumbs(path),
    h('div', { class: 'toolbar' }, uploadButton, uploadInput, mkdirButton, newFileButton,
      h('label', { class: 'check', for: 'show-hidden' }, hiddenToggle, ' Hidden files')),
    list);

  const refresh = async () => {
    let listing: Listing;
    try {
      listing = await api.get<Listing>(`api/files${q({ path: path || undefined, hidden: hiddenToggle.checked || undefined })}`);
    } catch (e) {
      clear(list, h('li', { class: 'form-error', role: 'alert' }, e instanceof Error ? e.message : String(e)));
      return;
    }
    const rows: HTMLElement[] = [];
    if (path) rows.push(h('li', { class: 'file-row file-up' }, h('a', { href: filesHash(parent(path)), class: 'file-name', 'aria-label': 'Up to the parent folder' }, icon('up', 18), ' ..')));
    for (const entry of listing.entries) rows.push(row(entry));
    if (!listing.entries.length) rows.push(h('li', { class: 'muted empty' }, 'This folder is empty.'));
    if (listing.truncated) rows.push(h('li', { class: 'muted' }, 'Only the first entries are shown.'));
    clear(list, rows);
  };

  let rowCount = 0;
  const row = (entry: Entry) => {
    const full = join(path, entry.name);
    const isDir = entry.kind === 'dir' || (entry.kind === 'symlink' && entry.target_kind === 'dir');
    // The whole name, wrapped if it must be: never cut to nothing on a narrow screen.
    const link = h('a', { href: isDir ? filesHash(full) : editHash(full), class: 'file-name' },
      icon(isDir ? 'folder' : isImage(entry.name) ? 'image' : 'file', 18), ' ', h('span', { class: 'file-label' }, entry.name));
    const meta = h('span', { class: 'muted file-meta' }, isDir ? null : `${bytes(entry.size)} · `, fileTime(entry.modified));
    // A native popover, as the terminal's menu: it closes on a tap outside, on Escape and after
    // a choice, and sits in the top layer above the rows below it.
    const menuId = `row-menu-${++rowCount}`;
    const menu = h('div', { class: 'row-popover', id: menuId, popover: 'auto', role: 'menu', 'aria-label': `Actions for ${entry.name}` });
    const more = h('button', { type: 'button', class: 'icon-button row-more', 'aria-label': `Actions for ${entry.name}`, popovertarget: menuId }, '⋯');
    const item = (label: string, run: () => void, danger = false) =>
      h('button', { type: 'button', role: 'menuitem', class: danger ? 'danger-text' : '', onclick: () => { menu.hidePopover(); run(); } }, label);
    menu.append(
      ...(isDir ? [] : [item('Download', () => void download(full))]),
      item('Rename', () => void rename(entry.name)),
      item('Delete', () => void remove(entry.name, isDir), true));
    menu.addEventListener('toggle', (e) => {
      if ((e as ToggleEvent).newState === 'open') placeMenu(menu, more);
    });
    return h('li', { class: 'file-row', 'data-name': entry.name }, link, meta, more, menu);
  };

  const rename = async (name: string) => {
    const next = await promptDialog(`Rename ${name}`, 'New name', name, 'Rename', 'text',
      (to) => (!to || to === name ? Promise.resolve() : api.post('api/files/move', { from: join(path, name), to: join(path, to) })));
    if (!next || next === name) return;
    toast(`Renamed to ${next}.`);
    void refresh();
  };
  const remove = async (name: string, isDir: boolean) => {
    if (!(await confirmDialog(`Delete ${name}?`, isDir ? 'The folder and everything in it will be deleted. This cannot be undone.' : 'The file will be deleted. This cannot be undone.'))) return;
    const ok = await act(null, () => api.del(`api/files${q({ path: join(path, name) })}`).then(() => true), `Deleted ${name}.`);
    if (ok) void refresh();
  };

  uploadButton.addEventListener('click', () => uploadInput.click());
  uploadInput.addEventListener('change', async () => {
    const files = [...(uploadInput.files ?? [])];
    uploadInput.value = '';
    if (!files.length) return;
    uploadButton.textContent = 'Uploading…';
    const done = await act(uploadButton, async () => {
      try {
        return await upload(path, files);
      } catch (e) {
        if (e instanceof ApiError && e.status === 409 && (await confirmDialog('Replace files?', `${e.message} Replace the existing files?`, 'Replace'))) {
          return upload(path, files, true);
        }
        throw e;
      }
    });
    uploadButton.textContent = 'Upload';
    if (done) {
      toast(`Uploaded ${done.length === 1 ? done[0]!.path : `${done.length} files`}.`);
      void refresh();
    }
  });
  mkdirButton.addEventListener('click', async () => {
    const name = await promptDialog('New folder', 'Folder name', '', 'Create', 'text',
      (folder) => (folder ? api.post('api/files/mkdir', { path: join(path, folder) }) : Promise.resolve()));
    if (!name) return;
    toast(`Created ${name}.`);
    void refresh();
  });
  newFileButton.addEventListener('click', async () => {
    const name = await promptDialog('New file', 'File name', '', 'Create', 'text',
      (file) => (file ? api.post('api/files/save', { path: join(path, file), content: '', if_absent: true }) : Promise.resolve()));
    if (!name) return;
    toast(`Created ${name}.`);
    location.hash = editHash(join(path, name));
  });
  hiddenToggle.addEventListener('change', () => {
    localStorage.setItem('pd.hidden', hiddenToggle.checked ? '1' : '0');
    void refresh();
  });

  await Promise.all([refresh(), repos?.load()]);
  return () => undefined;
}

export async function editView(ctx: Ctx): Promise<() => void> {
  const path = ctx.params.join('/');
  const name = path.split('/').pop() ?? path;
  const status = h('span', { class: 'muted save-state', 'aria-live': 'polite' }, '');
  const saveButton = h('button', { type: 'button', class: 'primary', disabled: true }, 'Save');
  const conflict = h('div', { class: 'conflict', role: 'alert', hidden: true });
  const holder = h('div', { class: 'editor', 'aria-label': `Editing ${name}` }, h('p', { class: 'muted' }, 'Opening…'));
  clear(ctx.root,
    h('div', { class: 'page-head editor-head' }, h('h1', { class: 'file-title' }, name),
      h('div', { class: 'toolbar' }, status,
        h('button', { type: 'button', class: 'secondary', onclick: () => void download(path) }, 'Download'), saveButton)),
    crumbs(path, 'text'),
    conflict,
    holder);

  const type = imageType(name);
  if (type) {
    saveButton.hidden = true;
    await showImage(holder, path, name, type);
    return () => {
      const img = holder.querySelector('img');
      if (img?.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
    };
  }
  let file: FileContent;
  try {
    file = await api.get<FileContent>(`api/files/content${q({ path })}`);
  } catch (e) {
    const why = e instanceof ApiError && e.status === 415 ? 'This file is not text, so it cannot be edited here. You can download it.'
      : e instanceof ApiError && e.status === 413 ? 'This file is too large to edit here. You can download it.'
        : e instanceof Error ? e.message : String(e);
    clear(holder, h('p', { class: 'form-error', role: 'alert' }, why),
      h('p', null, h('button', { type: 'button', class: 'secondary', onclick: () => void download(path) }, 'Download'), ' ', h('a', { href: filesHash(parent(path)) }, 'Back to the folder')));
    return () => undefined;
  }
  const { createEditor } = await import('../editor');
  clear(holder);
  let etag = file.etag;
  let dirty = false;
  const editor = createEditor(holder, file.content, name, () => {
    if (!dirty) {
      dirty = true;
      saveButton.disabled = false;
      status.textContent = 'Unsaved changes';
    }
  }, () => void save());

  const save = async (overwrite = false) => {
    saveButton.textContent = 'Saving…';
    saveButton.disabled = true;
    try {
      const sent = editor.text();
      const saved = await api.post<{ etag: string; size: number }>('api/files/save', { path, content: sent, expected_etag: overwrite ? null : etag });
      etag = saved.etag;
      // Typing while the save was on its way is not saved yet.
      dirty = editor.text() !== sent;
      conflict.hidden = true;
      status.textContent = dirty ? 'Unsaved changes' : `Saved ${new Date().toLocaleTimeString()}`;
      toast(`Saved ${name}.`);
    } catch (e) {
      saveButton.disabled = false;
      if (e instanceof ApiError && e.status === 409) {
        showConflict();
      } else {
        showError(e);
      }
    } finally {
      saveButton.textContent = 'Save';
      if (dirty) saveButton.disabled = false;
    }
  };

  const showConflict = () => {
    const reload = h('button', { type: 'button', class: 'secondary' }, 'Reload theirs (lose my changes)');
    const overwrite = h('button', { type: 'button', class: 'danger' }, 'Overwrite with mine');
    reload.addEventListener('click', async () => {
      const fresh = await act(reload, () => api.get<FileContent>(`api/files/content${q({ path })}`));
      if (!fresh) return;
      editor.setText(fresh.content);
      etag = fresh.etag;
      dirty = false;
      saveButton.disabled = true;
      conflict.hidden = true;
      status.textContent = 'Reloaded from disk';
      toast('Reloaded the version on disk.');
    });
    overwrite.addEventListener('click', () => void save(true));
    clear(conflict,
      h('strong', null, 'Not saved: this file changed on the server since you opened it. '),
      h('span', null, 'The agent (or another device) may have edited it. Keep their version or replace it with yours.'),
      h('div', { class: 'conflict-actions' }, reload, overwrite));
    conflict.hidden = false;
    status.textContent = 'Conflict';
  };

  saveButton.addEventListener('click', () => void save());
  const beforeUnload = (e: BeforeUnloadEvent) => {
    if (dirty) e.preventDefault();
  };
  window.addEventListener('beforeunload', beforeUnload);
  // Every way out inside the app (tabs, the folder path, back) asks first.
  guardLeaving(() => !dirty || confirmDialog('Leave without saving?', `Your changes to ${name} are not saved.`, 'Leave'));
  return () => {
    window.removeEventListener('beforeunload', beforeUnload);
    editor.destroy();
  };
}


/**
 * An image, shown rather than edited. Its bytes come through the API helper, which refreshes an
 * expired session (an <img> pointed at the download URL would send the cookie but could not
 * recover from a 401), and are shown from a blob typed by the file's extension: the server sends
 * every download as application/octet-stream, which a browser will not draw as SVG.
 */
async function showImage(holder: HTMLElement, path: string, name: string, type: string): Promise<void> {
  holder.classList.add('image-preview');
  try {
    const data = await requestBlob(`api/files/download${q({ path })}`);
    const src = URL.createObjectURL(new Blob([data], { type }));
    const img = h('img', { src, alt: name, class: 'preview-image' });
    img.addEventListener('error', () => {
      URL.revokeObjectURL(src);
      clear(holder, h('p', { class: 'form-error', role: 'alert' }, 'This image cannot be shown here. You can download it.'));
    });
    clear(holder, img);
  } catch (e) {
    clear(holder, h('p', { class: 'form-error', role: 'alert' }, errorText(e)),
      h('p', null, h('a', { href: filesHash(parent(path)) }, 'Back to the folder')));
  }
}
