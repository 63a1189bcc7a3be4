//! What can be done in an instance's worktree: status, diff, stage and unstage (files or
//! hunks), discard, commit, push, pull, and merging the branch back into its base.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::diff::{self, DiffFile};
use super::run::{Call, NETWORK_TIMEOUT};
use super::status::{self, Counts, StatusFile};
use super::{Place, compare_url, with_token};
use crate::error::AppError;
use crate::files::jail::RelPath;

#[derive(Debug, Serialize, ToSchema)]
pub struct GitStatus {
    /// The repository's folder in the workspace.
    pub repo: String,
    pub branch: String,
    pub base: Option<String>,
    /// The commit checked out (none before the first).
    pub head: Option<String>,
    /// Commits on the branch that the base does not have.
    pub ahead: u64,
    /// Commits on the base that the branch does not have.
    pub behind: u64,
    pub files: Vec<StatusFile>,
    pub counts: Counts,
}

/// What a diff compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Against {
    /// Working tree against the index (`staged`: index against the last commit). Untracked
    /// files come as added ones, after the tracked.
    #[default]
    Worktree,
    /// Everything uncommitted: working tree (`staged`: index) against the last commit.
    /// Untracked files come as added ones, after the tracked.
    Head,
    /// What the last commit itself changed, against its first parent (`staged` is ignored).
    LastCommit,
    /// Working tree (`staged`: index) against where the branch left its base.
    Base,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Diff {
    pub files: Vec<DiffFile>,
    /// This page (from 0).
    pub page: usize,
    /// How many pages the whole diff has (at least 1).
    pub pages: usize,
    /// With `against=last_commit`: the commit shown (none before the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommitInfo {
    pub id: String,
    /// The message's first line.
    pub summary: String,
    pub author: String,
    /// When it was committed, in seconds since 1970.
    pub date: i64,
}

/// Untracked files beyond this many, or past this many bytes of their diffs together, come
/// in a diff without their content: one request never holds more than a diff's worth.
const UNTRACKED_WITH_CONTENT: usize = 200;
const UNTRACKED_BYTES: usize = super::run::OUTPUT_MAX;

#[derive(Debug, Serialize, ToSchema)]
pub struct Committed {
    pub commit: String,
    /// The message's first line.
    pub summary: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pushed {
    pub remote: String,
    pub branch: String,
    /// A forge's page comparing the branch with its base (GitHub/GitLab-style remotes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pulled {
    /// The commit checked out after the pull.
    pub head: Option<String>,
    /// Whether the pull brought new commits.
    pub updated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeOutcome {
    Merged,
    UpToDate,
    /// The merge stopped on conflicts and was aborted: nothing changed.
    Conflicts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Merged {
    pub outcome: MergeOutcome,
    /// The files that conflicted (outcome `conflicts`).
    pub conflicts: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Discarded {
    /// The files whose working-tree changes went (untracked ones removed).
    pub discarded: Vec<String>,
}

/// Client paths checked: relative, inside the worktree, not in `.git`.
pub fn check_paths(paths: &[String]) -> Result<Vec<String>, AppError> {
    if paths.len() > 1000 {
        return Err(AppError::Unprocessable("at most 1000 paths at once".into()));
    }
    paths
        .iter()
        .map(|raw| {
            let path = RelPath::parse(raw).map_err(super::unprocessable)?;
            let shown = path.display();
            if path.is_root() || shown.split('/').next() == Some(".git") {
                return Err(AppError::Unprocessable(format!(
                    "`{}` is not a file of the worktree",
                    raw.escape_debug()
                )));
            }
            Ok(shown)
        })
        .collect()
}

fn with_paths(mut args: Vec<String>, paths: &[String]) -> Vec<String> {
    args.push("--".into());
    args.extend(paths.iter().cloned());
    args
}

impl Place {
    async fn head(&self) -> Result<Option<String>, AppError> {
        self.git
            .maybe(&self.worktree, &["rev-parse", "--verify", "-q", "HEAD"])
            .await
    }

    pub async fn status(&self) -> Result<GitStatus, AppError> {
        let out = self
            .git
            .run(Call::new(&self.worktree, &status::PORCELAIN))
            .await?;
        let parsed = status::parse(&out.stdout);
        let (mut ahead, mut behind) = (0, 0);
        if let (Some(base), Some(_)) = (&self.base, &parsed.head) {
            let range = format!("{base}...HEAD");
            if let Some(counts) = self
                .git
                .maybe(
                    &self.worktree,
                    &["rev-list", "--left-right", "--count", &range, "--"],
                )
                .await?
            {
                let mut numbers = counts.split_whitespace().map(|n| n.parse().unwrap_or(0));
                behind = numbers.next().unwrap_or(0);
                ahead = numbers.next().unwrap_or(0);
            }
        }
        let counts = status::count(&parsed.files);
        Ok(GitStatus {
            repo: self.repo_rel.clone(),
            branch: parsed.branch.unwrap_or_else(|| self.branch.clone()),
            base: self.base.clone(),
            head: parsed.head,
            ahead,
            behind,
            files: parsed.files,
            counts,
        })
    }

    /// The raw diff: `staged` compares the index, else the working tree.
    async fn raw_diff(
        &self,
        against: Against,
        staged: bool,
        paths: &[String],
    ) -> Result<Vec<diff::RawFile>, AppError> {
        let mut args: Vec<String> = [
            "-c",
            "core.quotePath=false",
            "diff",
            "--patch",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "-M",
            "--unified=3",
            "--src-prefix=a/",
            "--dst-prefix=b/",
        ]
        .map(String::from)
        .to_vec();
        if staged && against != Against::LastCommit {
            args.push("--cached".into());
        }
        match against {
            Against::Worktree if !staged => {}
            Against::LastCommit => {
                if self.head().await?.is_none() {
                    return Ok(Vec::new());
                }
                let parent = self
                    .git
                    .maybe(&self.worktree, &["rev-parse", "--verify", "-q", "HEAD^"])
                    .await?;
                args.push(parent.unwrap_or_else(|| EMPTY_TREE.into()));
                args.push("HEAD".into());
            }
            Against::Worktree | Against::Head => {
                if self.head().await?.is_some() {
                    args.push("HEAD".into());
                } else if !staged {
                    // Before the first commit: against the empty tree.
                    args.push(EMPTY_TREE.into());
                }
            }
            Against::Base => {
                let base = self.base.clone().ok_or_else(|| {
                    AppError::Conflict("this instance's branch has no base".into())
                })?;
                let merge_base = self
                    .git
                    .maybe(&self.worktree, &["merge-base", &base, "HEAD"])
                    .await?
                    .ok_or_else(|| {
                        AppError::Conflict(format!(
                            "the branch has nothing in common with `{base}` (or it is gone)"
                        ))
                    })?;
                args.push(merge_base);
            }
        }
        let args = with_paths(args, paths);
        let out = self.git.run(Call::new(&self.worktree, &args)).await?;
        Ok(diff::parse(&out.stdout))
    }

    pub async fn diff(
        &self,
        path: Option<&str>,
        staged: bool,
        against: Against,
        page: usize,
    ) -> Result<Diff, AppError> {
        let paths = match path {
            Some(p) if !p.is_empty() => check_paths(&[p.to_owned()])?,
            _ => Vec::new(),
        };
        let mut files = self.raw_diff(against, staged, &paths).await?;
        if !staged && matches!(against, Against::Worktree | Against::Head) {
            files.extend(self.untracked(&paths).await?);
        }
        let commit = match against {
            Against::LastCommit => self.last_commit().await?,
            _ => None,
        };
        let (files, pages) = diff::page(&files, page);
        Ok(Diff {
            files,
            page,
            pages,
            commit,
        })
    }

    /// Untracked files (not ignored) as added ones, content and all: git's diff leaves them
    /// out, yet they are most of what an agent writes.
    async fn untracked(&self, paths: &[String]) -> Result<Vec<diff::RawFile>, AppError> {
        let args = with_paths(
            ["ls-files", "--others", "--exclude-standard", "-z"]
                .map(String::from)
                .to_vec(),
            paths,
        );
        let out = self.git.run(Call::new(&self.worktree, &args)).await?;
        let names: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        let mut files = Vec::with_capacity(names.len());
        let mut bytes = 0;
        for (i, name) in names.into_iter().enumerate() {
            let content = if i < UNTRACKED_WITH_CONTENT && bytes < UNTRACKED_BYTES {
                self.untracked_content(&name, &mut bytes).await?
            } else {
                None
            };
            files.push(content.unwrap_or_else(|| diff::RawFile::without_content(name)));
        }
        Ok(files)
    }

    /// One untracked file against nothing, its diff's size added to `bytes`; `None` when git
    /// cannot show it (too large, a nested repository, a name that is not UTF-8).
    async fn untracked_content(
        &self,
        name: &str,
        bytes: &mut usize,
    ) -> Result<Option<diff::RawFile>, AppError> {
        let call = Call::new(
            &self.worktree,
            &[
                "-c",
                "core.quotePath=false",
                "diff",
                "--no-index",
                "--patch",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--unified=3",
                "--src-prefix=a/",
                "--dst-prefix=b/",
                "--",
                "/dev/null",
                name,
            ],
        );
        let out = match self.git.runner.output(call).await {
            Ok(out) => out,
            Err(super::run::GitError::TooLarge(limit)) => {
                *bytes += limit;
                return Ok(None);
            }
            Err(err) => return Err(super::say(&self.git, err)),
        };
        // `--no-index` exits 1 when the files differ, which they do.
        if !matches!(out.code, Some(0 | 1)) {
            return Ok(None);
        }
        *bytes += out.stdout.len();
        Ok(diff::parse(&out.stdout).into_iter().next().map(|mut file| {
            file.status = status::FileStatus::Untracked;
            file.path = name.to_owned();
            file.old_path = None;
            file
        }))
    }

    /// The commit HEAD names, for the last commit's diff.
    async fn last_commit(&self) -> Result<Option<CommitInfo>, AppError> {
        let Some(line) = self
            .git
            .maybe(
                &self.worktree,
                &[
                    "log",
                    "-1",
                    "--no-show-signature",
                    "--format=%H%x00%s%x00%an%x00%ct",
                    "HEAD",
                    "--",
                ],
            )
            .await?
        else {
            return Ok(None);
        };
        let mut parts = line.trim_end_matches('\n').split('\0');
        let (Some(id), Some(summary), Some(author), Some(date)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        Ok(Some(CommitInfo {
            id: id.to_owned(),
            summary: summary.to_owned(),
            author: author.to_owned(),
            date: date.trim().parse().unwrap_or(0),
        }))
    }

    /// Stages whole files, or the chosen hunks of the working tree's diff.
    pub async fn stage(&self, paths: &[String], hunks: Option<&[String]>) -> Result<(), AppError> {
        let paths = check_paths(paths)?;
        match hunks {
            Some(ids) if !ids.is_empty() => self.apply_hunks(&paths, ids, false).await,
            _ => {
                need_paths(&paths)?;
                let args = with_paths(vec!["add".into()], &paths);
                self.git.run(Call::new(&self.worktree, &args)).await?;
                Ok(())
            }
        }
    }

    /// Unstages whole files, or the chosen hunks of the index's diff.
    pub async fn unstage(
        &self,
        paths: &[String],
        hunks: Option<&[String]>,
    ) -> Result<(), AppError> {
        let paths = check_paths(paths)?;
        match hunks {
            Some(ids) if !ids.is_empty() => self.apply_hunks(&paths, ids, true).await,
            _ => {
                need_paths(&paths)?;
                let args = if self.head().await?.is_some() {
                    vec!["restore".into(), "--staged".into()]
                } else {
                    // Before the first commit there is nothing to restore from.
                    ["rm", "--cached", "-r", "-q"].map(String::from).to_vec()
                };
                let args = with_paths(args, &paths);
                self.git.run(Call::new(&self.worktree, &args)).await?;
                Ok(())
            }
        }
    }

    async fn apply_hunks(
        &self,
        paths: &[String],
        ids: &[String],
        reverse: bool,
    ) -> Result<(), AppError> {
        if ids.len() > 1000 {
            return Err(AppError::Unprocessable("at most 1000 hunks at once".into()));
        }
        let against = if reverse {
            Against::Head
        } else {
            Against::Worktree
        };
        let files = self.raw_diff(against, reverse, paths).await?;
        let (patch, missing) = diff::patch_of(&files, ids);
        if !missing.is_empty() {
            return Err(AppError::Conflict(format!(
                "these hunks are not in the {} diff any more (reload it): {}",
                if reverse { "staged" } else { "unstaged" },
                missing.join(", ")
            )));
        }
        let mut args = vec!["apply", "--cached", "--whitespace=nowarn"];
        if reverse {
            args.push("--reverse");
        }
        args.push("-");
        self.git
            .run(Call::new(&self.worktree, &args).input(patch))
            .await?;
        Ok(())
    }

    /// Throws away the working-tree changes of `paths` (staged changes stay); untracked files
    /// are removed.
    pub async fn discard(&self, paths: &[String]) -> Result<Discarded, AppError> {
        let paths = check_paths(paths)?;
        need_paths(&paths)?;
        let args = with_paths(
            ["status", "--porcelain=v2", "-z", "--untracked-files=all"]
                .map(String::from)
                .to_vec(),
            &paths,
        );
        let out = self.git.run(Call::new(&self.worktree, &args)).await?;
        let files = status::parse(&out.stdout).files;
        let untracked: Vec<String> = files
            .iter()
            .filter(|f| f.status == status::FileStatus::Untracked)
            .map(|f| f.path.clone())
            .collect();
        let tracked: Vec<String> = files
            .iter()
            .filter(|f| f.status != status::FileStatus::Untracked && f.unstaged)
            .map(|f| f.path.clone())
            .collect();
        if !untracked.is_empty() {
            let args = with_paths(["clean", "-f", "-q"].map(String::from).to_vec(), &untracked);
            self.git.run(Call::new(&self.worktree, &args)).await?;
        }
        if !tracked.is_empty() {
            let args = with_paths(
                ["restore", "--worktree"].map(String::from).to_vec(),
                &tracked,
            );
            self.git.run(Call::new(&self.worktree, &args)).await?;
        }
        Ok(Discarded {
            discarded: untracked.into_iter().chain(tracked).collect(),
        })
    }

    pub async fn commit(&self, message: &str, username: &str) -> Result<Committed, AppError> {
        if message.trim().is_empty() {
            return Err(AppError::Unprocessable(
                "the commit message is empty".into(),
            ));
        }
        if message.len() > 64 * 1024 {
            return Err(AppError::Unprocessable(
                "the commit message is over 64 KiB".into(),
            ));
        }
        let staged = self
            .git
            .output(Call::new(&self.worktree, &["diff", "--cached", "--quiet"]))
            .await?;
        if staged.success() {
            return Err(AppError::Conflict(
                "nothing is staged; stage files or hunks first".into(),
            ));
        }
        let mut args = self.git.identity_args(&self.worktree, username).await?;
        args.extend(["commit", "--quiet", "-F", "-"].map(String::from));
        self.git
            .run(Call::new(&self.worktree, &args).input(message.as_bytes()))
            .await?;
        let commit = self
            .git
            .text(&self.worktree, &["rev-parse", "HEAD"])
            .await?;
        let summary = self
            .git
            .text(&self.worktree, &["log", "-1", "--format=%s", "HEAD"])
            .await?;
        Ok(Committed { commit, summary })
    }

    /// The branch's upstream remote and branch, if it has one.
    async fn upstream(&self, branch: &str) -> Result<Option<(String, String)>, AppError> {
        let remote = self
            .git
            .maybe(
                &self.worktree,
                &["config", &format!("branch.{branch}.remote")],
            )
            .await?;
        let merge = self
            .git
            .maybe(
                &self.worktree,
                &["config", &format!("branch.{branch}.merge")],
            )
            .await?;
        Ok(match (remote, merge) {
            (Some(remote), Some(merge)) if remote != "." => Some((
                remote,
                merge
                    .strip_prefix("refs/heads/")
                    .unwrap_or(&merge)
                    .to_owned(),
            )),
            _ => None,
        })
    }

    async fn checked_out_branch(&self) -> Result<String, AppError> {
        self.git
            .current_branch(&self.worktree)
            .await?
            .ok_or_else(|| {
                AppError::Conflict("the worktree is not on a branch (detached HEAD)".into())
            })
    }

    async fn remote_url(&self, remote: &str) -> Result<String, AppError> {
        self.git
            .maybe(&self.worktree, &["remote", "get-url", remote])
            .await?
            .ok_or_else(|| AppError::Conflict(format!("the repository has no remote `{remote}`")))
    }

    pub async fn push(&self, token: Option<&str>) -> Result<Pushed, AppError> {
        let branch = self.checked_out_branch().await?;
        let (remote, target, set_upstream) = match self.upstream(&branch).await? {
            Some((remote, target)) => (remote, target, false),
            None => ("origin".to_owned(), branch.clone(), true),
        };
        let url = self.remote_url(&remote).await?;
        let mut args = vec!["push".to_owned(), "--quiet".to_owned()];
        if set_upstream {
            args.push("-u".into());
        }
        args.extend([remote.clone(), format!("HEAD:refs/heads/{target}")]);
        let mut call = Call::new(&self.worktree, &args).timeout(NETWORK_TIMEOUT);
        if url.starts_with("https://") {
            call = with_token(call, token);
        }
        self.git.run(call).await?;
        if set_upstream {
            // `-u` with `HEAD:` sets no upstream in every git version; say it plainly.
            self.git
                .run(Call::new(
                    &self.worktree,
                    &[
                        "branch",
                        &format!("--set-upstream-to={remote}/{target}"),
                        &branch,
                    ],
                ))
                .await
                .ok();
        }
        let compare = self
            .base
            .as_deref()
            .and_then(|base| compare_url(&url, base, &target));
        Ok(Pushed {
            remote,
            branch: target,
            compare_url: compare,
        })
    }

    pub async fn pull(&self, token: Option<&str>) -> Result<Pulled, AppError> {
        let branch = self.checked_out_branch().await?;
        let before = self.head().await?;
        let (remote, source) = match self.upstream(&branch).await? {
            Some(upstream) => upstream,
            None => ("origin".to_owned(), branch.clone()),
        };
        let url = self.remote_url(&remote).await?;
        let args = [
            "pull".to_owned(),
            "--ff-only".into(),
            "--no-rebase".into(),
            "--quiet".into(),
            remote,
            source,
        ];
        let mut call = Call::new(&self.worktree, &args).timeout(NETWORK_TIMEOUT);
        if url.starts_with("https://") {
            call = with_token(call, token);
        }
        self.git.run(call).await?;
        let head = self.head().await?;
        Ok(Pulled {
            updated: head != before,
            head,
        })
    }

    /// Merges the branch into its base in the repository's main checkout, if that has the
    /// base checked out and no uncommitted changes to tracked files. Conflicts are never
    /// resolved by guess: the merge is aborted and the conflicting files named.
    pub async fn merge(&self, username: &str) -> Result<Merged, AppError> {
        let base = self.base.clone().ok_or_else(|| {
            AppError::Conflict("this instance's branch has no base to merge into".into())
        })?;
        let checked_out = self.git.current_branch(&self.repo).await?;
        if checked_out.as_deref() != Some(base.as_str()) {
            return Err(AppError::Conflict(format!(
                "`{}` has `{}` checked out, not the base `{base}`; check out `{base}` there first",
                self.repo_rel,
                checked_out.as_deref().unwrap_or("a detached HEAD")
            )));
        }
        let out = self
            .git
            .run(Call::new(
                &self.repo,
                &["status", "--porcelain=v2", "-z", "--untracked-files=no"],
            ))
            .await?;
        let dirty: Vec<String> = status::parse(&out.stdout)
            .files
            .into_iter()
            .map(|f| f.path)
            .collect();
        if !dirty.is_empty() {
            return Err(AppError::Conflict(format!(
                "`{}` has uncommitted changes: {}; commit or discard them first",
                self.repo_rel,
                dirty.join(", ")
            )));
        }
        let before = self
            .git
            .maybe(&self.repo, &["rev-parse", "--verify", "-q", "HEAD"])
            .await?;
        let mut args = self.git.identity_args(&self.repo, username).await?;
        args.extend(["merge", "--no-edit", "--quiet", &self.branch].map(String::from));
        let merged = self.git.output(Call::new(&self.repo, &args)).await?;
        if merged.success() {
            let after = self
                .git
                .maybe(&self.repo, &["rev-parse", "--verify", "-q", "HEAD"])
                .await?;
            let outcome = if after == before {
                MergeOutcome::UpToDate
            } else {
                MergeOutcome::Merged
            };
            return Ok(Merged {
                outcome,
                conflicts: Vec::new(),
            });
        }
        let conflicted = self
            .git
            .run(Call::new(
                &self.repo,
                &["diff", "--name-only", "--diff-filter=U", "-z"],
            ))
            .await?;
        let conflicts: Vec<String> = conflicted
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        // Whatever stopped it, the main checkout goes back to how it was.
        let aborted = self
            .git
            .output(Call::new(&self.repo, &["merge", "--abort"]))
            .await;
        if conflicts.is_empty() {
            return Err(AppError::Conflict(self.git.clean(&merged.stderr)));
        }
        if !aborted.is_ok_and(|a| a.success()) {
            tracing::warn!(repo = %self.repo_rel, "a conflicted merge could not be aborted");
        }
        Ok(Merged {
            outcome: MergeOutcome::Conflicts,
            conflicts,
        })
    }
}

/// git's empty tree, to compare with before the first commit.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

fn need_paths(paths: &[String]) -> Result<(), AppError> {
    if paths.is_empty() {
        Err(AppError::Unprocessable("name at least one path".into()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_worktree() {
        assert_eq!(
            check_paths(&["a/b.txt".into(), "./c".into()]).unwrap(),
            vec!["a/b.txt".to_owned(), "c".to_owned()]
        );
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "",
            ".git/config",
            "a\0b",
            ".",
        ] {
            assert!(check_paths(&[bad.into()]).is_err(), "{bad:?}");
        }
    }
}
