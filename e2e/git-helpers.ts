// Shared by the git specs (changes.spec.ts, git-walkthrough.spec.ts): git itself, to make and
// read repositories as the server's user would, and axe-core's WCAG check in both themes.
import { expect, type Page } from '@playwright/test';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** git in `dir` with a clean environment and a fixed identity; its output, or the test fails. */
export function git(dir: string, ...args: string[]): string {
  const out = spawnSync('git', ['-c', 'user.name=Test', '-c', 'user.email=test@example.org', '-c', 'init.defaultBranch=main', ...args], {
    cwd: dir,
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', LANG: 'C.UTF-8' },
  });
  if (out.status !== 0) throw new Error(`git ${args.join(' ')} in ${dir}: ${out.stderr}`);
  return out.stdout.trim();
}

// As in suspend.spec.ts: axe-core's WCAG 2 A/AA rules, through the DevTools protocol, in both themes.
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
export async function expectAccessible(page: Page, screen: string, within = 'html'): Promise<void> {
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.evaluate(axeSource);
    const violations = await page.evaluate(async (selector) => {
      // @ts-expect-error axe is injected above
      const result = await window.axe.run(document.querySelector(selector), { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
      return (result.violations as { id: string; nodes: { target: string[] }[] }[]).map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join('; ')}`);
    }, within);
    expect(violations, `${screen} (${scheme})`).toEqual([]);
  }
  await page.emulateMedia({ colorScheme: null });
}

/** Whether the page scrolls sideways (it must not, on a phone). */
export const noSideways = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth <= innerWidth);
