// Accessibility: axe-core's WCAG 2 A/AA rules (contrast, labels, names, landmarks) on each screen,
// in the light and the dark theme.
import { test, expect, signIn, expectTerminal } from '../fixtures';
import type { Page } from '@playwright/test';
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// Evaluated through the DevTools protocol: the app's CSP (rightly) refuses injected script tags.
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

async function audit(page: Page, screen: string): Promise<string[]> {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    // @ts-expect-error axe is injected above
    const result = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return (result.violations as { id: string; impact: string; nodes: { target: string[]; failureSummary: string }[] }[])
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => `${n.target.join(' ')} — ${n.failureSummary.split('\n').slice(1, 2).join(' ').trim()}`).join('; ')}`);
  });
  return violations.map((v) => `${screen}: ${v}`);
}

for (const scheme of ['light', 'dark'] as const) {
  test(`every screen passes axe's WCAG AA rules (${scheme})`, async ({ page, server }, info) => {
    test.skip(info.project.name !== 'phone', 'once is enough; the phone layout is the tighter one');
    await page.emulateMedia({ colorScheme: scheme });
    const found: string[] = [];
    await page.goto(server.url + '/');
    await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
    found.push(...(await audit(page, 'sign-in')));
    await signIn(page, server);
    found.push(...(await audit(page, 'dashboard')));
    await page.locator('#profile').selectOption('fake');
    await page.getByLabel('Name').fill(`a11y-${scheme}`);
    await page.getByRole('button', { name: 'Start agent' }).click();
    await expectTerminal(page, 'agent> ');
    found.push(...(await audit(page, 'terminal')));
    // The terminal's own layers: a selection's menu, a key's alternates, the key chooser, the
    // history sheet.
    const corner = (await page.locator('.xterm-screen').boundingBox())!;
    // What a long press raises on a phone: the context menu event.
    await page.mouse.click(corner.x + 10, corner.y + 8, { button: 'right' });
    found.push(...(await audit(page, 'terminal, selecting')));
    await page.getByRole('button', { name: 'Done selecting' }).click();
    await page.getByRole('button', { name: 'Control-C', exact: true }).dispatchEvent('contextmenu');
    await expect(page.getByRole('menu', { name: 'More keys' })).toBeVisible();
    found.push(...(await audit(page, 'terminal, alternates')));
    await page.keyboard.press('Escape');
    await page.getByRole('button', { name: 'More' }).click();
    await page.getByRole('menuitem', { name: 'Customize keys' }).click();
    found.push(...(await audit(page, 'customize keys')));
    await page.getByRole('dialog', { name: 'Customize keys' }).getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('button', { name: 'More' }).click();
    await page.getByRole('menuitem', { name: 'History and search' }).click();
    await expect(page.getByRole('dialog')).toContainText('agent>');
    found.push(...(await audit(page, 'history')));
    await page.getByRole('dialog').getByRole('button', { name: 'Close' }).click();
    await page.getByRole('link', { name: 'Back to agents' }).click();
    await expect(page.getByRole('article', { name: `a11y-${scheme}` })).toBeVisible();
    found.push(...(await audit(page, 'dashboard with an agent')));
    // A suspended agent's card: its badge and what it freed.
    const { token } = await server.token('admin', server.adminPassword);
    const sleeper = (await (await server.api('POST', 'api/instances', token, { profile: 'fake-resumable', name: `a11y-suspended-${scheme}` })).json()) as { id: string };
    await expect(page.getByRole('article', { name: `a11y-suspended-${scheme}` })).toBeVisible();
    expect((await server.api('POST', `api/instances/${sleeper.id}/suspend`, token, {})).status).toBe(200);
    await expect(page.getByRole('article', { name: `a11y-suspended-${scheme}` }).locator('.badge')).toHaveText('suspended');
    found.push(...(await audit(page, 'dashboard with a suspended agent')));
    await page.getByRole('link', { name: 'Files', exact: true }).click();
    await page.getByRole('button', { name: 'New file' }).click();
    await page.getByRole('dialog').getByLabel('File name').fill(`a11y-${scheme}.md`);
    await page.getByRole('dialog').getByRole('button', { name: 'Create' }).click();
    await expect(page.locator('.cm-content')).toBeVisible();
    found.push(...(await audit(page, 'editor')));
    await page.getByRole('link', { name: 'Files', exact: true }).click();
    await expect(page.getByRole('link', { name: new RegExp(`a11y-${scheme}`) })).toBeVisible();
    found.push(...(await audit(page, 'files')));
    await page.getByRole('link', { name: 'Settings', exact: true }).click();
    await expect(page.getByRole('heading', { name: 'Appearance' })).toBeVisible();
    found.push(...(await audit(page, 'settings')));
    await page.getByRole('link', { name: 'Admin', exact: true }).click();
    await expect(page.getByRole('heading', { name: 'Audit log' })).toBeVisible();
    found.push(...(await audit(page, 'admin')));
    if (found.length) {
      mkdirSync(join(import.meta.dirname, '../artifacts'), { recursive: true });
      writeFileSync(join(import.meta.dirname, `../artifacts/axe-${scheme}.txt`), found.join('\n'));
    }
    expect(found).toEqual([]);
  });
}
