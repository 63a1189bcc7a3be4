import { test, expect, signIn, shot } from '../fixtures';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

test('opens a file, edits and saves it, and handles a conflict', async ({ page, server }, info) => {
  const user = `ed${info.project.name}`;
  const id = await server.createUser(user, 'editor-password-1');
  const ws = server.workspace(id);
  mkdirSync(join(ws, 'src'), { recursive: true });
  writeFileSync(join(ws, 'src', 'notes.md'), '# Notes\n\nfirst line\n');
  await signIn(page, server, user, 'editor-password-1');

  await page.getByRole('link', { name: 'Files', exact: true }).click();
  await page.getByRole('link', { name: /src/ }).click();
  await expect(page.getByRole('link', { name: /notes\.md/ })).toBeVisible();
  await shot(page, info, '05-files');
  await page.getByRole('link', { name: /notes\.md/ }).click();
  const editor = page.locator('.cm-content');
  await expect(editor).toContainText('first line');
  await editor.click();
  await page.keyboard.press('ControlOrMeta+End');
  await page.keyboard.type('added in the browser');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await expect(page.getByText('Saved notes.md.')).toBeVisible();
  expect(readFileSync(join(ws, 'src', 'notes.md'), 'utf8')).toBe('# Notes\n\nfirst line\nadded in the browser');
  await shot(page, info, '06-editor');

  // The agent changes the file meanwhile: saving says so and offers both ways out.
  writeFileSync(join(ws, 'src', 'notes.md'), 'the agent rewrote this\n');
  await editor.click();
  await page.keyboard.press('ControlOrMeta+End');
  await page.keyboard.type(' and more');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  const conflict = page.locator('.conflict');
  await expect(conflict).toContainText('changed on the server since you opened it');
  await shot(page, info, '07-conflict');
  expect(readFileSync(join(ws, 'src', 'notes.md'), 'utf8')).toBe('the agent rewrote this\n');
  await conflict.getByRole('button', { name: 'Overwrite with mine' }).click();
  await expect(conflict).toBeHidden();
  expect(readFileSync(join(ws, 'src', 'notes.md'), 'utf8')).toBe('# Notes\n\nfirst line\nadded in the browser and more');

  // And the other way: reload theirs.
  writeFileSync(join(ws, 'src', 'notes.md'), 'theirs again\n');
  await editor.click();
  await page.keyboard.type('!');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await conflict.getByRole('button', { name: /Reload theirs/ }).click();
  await expect(editor).toHaveText('theirs again');
  expect(readFileSync(join(ws, 'src', 'notes.md'), 'utf8')).toBe('theirs again\n');
});

test('uploads, downloads, makes a folder, renames and deletes', async ({ page, server }, info) => {
  const user = `up${info.project.name}`;
  const id = await server.createUser(user, 'upload-password-1');
  const ws = server.workspace(id);
  await signIn(page, server, user, 'upload-password-1');
  await page.getByRole('link', { name: 'Files', exact: true }).click();
  await expect(page.getByText('This folder is empty.')).toBeVisible();

  await page.locator('#upload-input').setInputFiles({ name: 'photo.txt', mimeType: 'text/plain', buffer: Buffer.from('uploaded bytes\n') });
  await expect(page.getByText('Uploaded photo.txt.')).toBeVisible();
  await expect(page.getByRole('link', { name: /photo\.txt/ })).toBeVisible();
  expect(readFileSync(join(ws, 'photo.txt'), 'utf8')).toBe('uploaded bytes\n');

  const row = page.locator('.file-row[data-name="photo.txt"]');
  await row.getByRole('button', { name: 'Actions for photo.txt' }).click();
  const downloading = page.waitForEvent('download');
  await row.getByRole('menuitem', { name: 'Download' }).click();
  const download = await downloading;
  expect(download.suggestedFilename()).toBe('photo.txt');
  const path = await download.path();
  expect(readFileSync(path, 'utf8')).toBe('uploaded bytes\n');

  await page.getByRole('button', { name: 'New folder' }).click();
  await page.getByRole('dialog').getByLabel('Folder name').fill('pics');
  await page.getByRole('dialog').getByRole('button', { name: 'Create' }).click();
  await expect(page.getByRole('link', { name: /pics/ })).toBeVisible();
  expect(existsSync(join(ws, 'pics'))).toBe(true);

  await row.getByRole('button', { name: 'Actions for photo.txt' }).click();
  await row.getByRole('menuitem', { name: 'Rename' }).click();
  await page.getByRole('dialog').getByLabel('New name').fill('renamed.txt');
  await page.getByRole('dialog').getByRole('button', { name: 'Rename' }).click();
  await expect(page.getByRole('link', { name: /renamed\.txt/ })).toBeVisible();
  expect(existsSync(join(ws, 'renamed.txt'))).toBe(true);

  const renamed = page.locator('.file-row[data-name="renamed.txt"]');
  await renamed.getByRole('button', { name: 'Actions for renamed.txt' }).click();
  await renamed.getByRole('menuitem', { name: 'Delete' }).click();
  await expect(page.getByRole('dialog')).toContainText('cannot be undone');
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await expect(page.getByText('Deleted renamed.txt.')).toBeVisible();
  expect(existsSync(join(ws, 'renamed.txt'))).toBe(false);
});

test('"New file" with a name that is taken leaves that file as it was', async ({ page, server }, info) => {
  const user = `nf${info.project.name}`;
  const id = await server.createUser(user, 'newfile-password-1');
  const ws = server.workspace(id);
  writeFileSync(join(ws, 'plan.md'), "the agent's plan\n");
  await signIn(page, server, user, 'newfile-password-1');
  await page.getByRole('link', { name: 'Files', exact: true }).click();
  await expect(page.getByRole('link', { name: /plan\.md/ })).toBeVisible();
  await page.getByRole('button', { name: 'New file' }).click();
  await page.getByRole('dialog').getByLabel('File name').fill('plan.md');
  await page.getByRole('dialog').getByRole('button', { name: 'Create' }).click();
  await expect(page.getByText('already exists')).toBeVisible();
  expect(readFileSync(join(ws, 'plan.md'), 'utf8')).toBe("the agent's plan\n");
});

test('leaving the editor with unsaved changes asks first, from anywhere in the app', async ({ page, server }, info) => {
  const user = `lv${info.project.name}`;
  const id = await server.createUser(user, 'leaving-password-1');
  writeFileSync(join(server.workspace(id), 'draft.md'), 'first\n');
  await signIn(page, server, user, 'leaving-password-1');
  await page.goto(`${server.url}/#/edit/draft.md`);
  const editor = page.locator('.cm-content');
  await expect(editor).toContainText('first');
  await editor.click();
  await page.keyboard.press('ControlOrMeta+End');
  await page.keyboard.type('unsaved words');

  await page.getByRole('link', { name: 'Agents', exact: true }).first().click();
  const ask = page.getByRole('dialog');
  await expect(ask).toContainText('Leave without saving?');
  await ask.getByRole('button', { name: 'Cancel' }).click();
  await expect(editor).toContainText('unsaved words');
  expect(page.url()).toContain('#/edit/draft.md');

  await page.getByRole('link', { name: 'Agents', exact: true }).first().click();
  await page.getByRole('dialog').getByRole('button', { name: 'Leave' }).click();
  await expect(page.getByRole('heading', { name: 'Agents' })).toBeVisible();
  expect(readFileSync(join(server.workspace(id), 'draft.md'), 'utf8')).toBe('first\n');
});
