//! The git API of issue 17 ("Git on the phone"), as the web app uses it. It mirrors the
//! backend's JSON (the instance's git routes, the read-only per-repository ones, clone and the SSH key); keep the two in step.

export type FileStatus = 'modified' | 'added' | 'deleted' | 'renamed' | 'untracked' | 'conflicted' | 'typechange';

/** GET /api/instances/{id}/git/status */
export interface GitStatus {
  repo: string;
  branch: string | null;
  base: string | null;
  head: string | null;
  ahead: number;
  behind: number;
  files: StatusFile[];
  counts: { changed: number; added: number; deleted: number; untracked: number };
}
export interface StatusFile {
  path: string;
  old_path?: string | null;
  status: FileStatus;
  staged: boolean;
  unstaged: boolean;
}

/** GET /api/instances/{id}/git/diff and GET /api/git/repo/diff */
export interface GitDiff {
  files: DiffFile[];
  page: number;
  pages: number;
  /** With `against=last_commit`: the commit shown (null before the first commit). */
  commit?: CommitInfo | null;
}
export interface CommitInfo {
  id: string;
  summary: string;
  author: string;
  /** Unix seconds. */
  date: number;
}

/** GET /api/git/repos: the repositories in the workspace (top-level folders and one level down). */
export interface RepoEntry {
  folder: string;
  branch: string | null;
  head: string | null;
  changed: number;
}

/** GET and POST /api/git/ssh-key: the account's ~/.ssh/id_ed25519.pub. */
export interface SshKey {
  public_key: string | null;
  fingerprint: string | null;
}

/** POST /api/git/clone */
export interface CloneResult {
  folder: string;
  branch: string | null;
}
export interface DiffFile {
  path: string;
  old_path?: string | null;
  status: FileStatus;
  binary: boolean;
  additions: number;
  deletions: number;
  hunks: Hunk[];
}
export interface Hunk {
  id: string;
  header: string;
  old_start: number;
  old_lines: number;
  new_start: number;
  new_lines: number;
  lines: DiffLine[];
}
export interface DiffLine {
  kind: 'context' | 'add' | 'del';
  text: string;
  old?: number | null;
  new?: number | null;
  /** The file ends here without a newline. */
  no_newline?: boolean;
}

export interface CommitResult {
  commit: string;
  summary: string;
}
export interface PushResult {
  remote: string;
  branch: string;
  compare_url?: string | null;
}
export interface MergeResult {
  outcome: 'merged' | 'up_to_date' | 'conflicts';
  conflicts: string[];
}
