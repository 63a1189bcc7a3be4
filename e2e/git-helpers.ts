// Shared by the git specs (changes.spec.ts, git-walkthrough.spec.ts): git itself, to make and
// read repositories as the server's user would, and the phone's no-sideways-scrolling check.
import type { Page } from '@playwright/test';
import { spawnSync } from 'node:child_process';

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

/** Whether the page scrolls sideways (it must not, on a phone). */
export const noSideways = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth <= innerWidth);
