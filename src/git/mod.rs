//! Git on the phone: worktrees for instances started on a branch, their status and diffs,
//! staging (files or hunks), commits, push and pull, merging back, and clones. Every git
//! command runs through [`run::Runner`], as the account and inside its sandbox; this module
//! decides what to run and reads the answers, [`routes`] serves them.

pub mod diff;
pub mod ops;
pub mod routes;
pub mod run;
pub mod status;
pub mod workspace;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::error::AppError;
use crate::files::jail::RelPath;
use crate::isolation::Isolation;
use crate::layout::Layout;
use run::{Call, GitError, NETWORK_TIMEOUT, Runner};

pub use routes::router;

/// Where worktrees of instances go, under the workspace.
pub const WORKTREES: &str = "worktrees";

/// Runs git for accounts.
#[derive(Clone)]
pub struct Git {
    isolation: Arc<Isolation>,
    layout: Arc<Layout>,
}

/// A worktree made for a new instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    /// Relative to the workspace: the instance's `workdir`.
    pub workdir: String,
    pub branch: String,
    /// What the branch is compared with and merged into.
    pub base: String,
    /// The branch was made for it (and goes again if the instance cannot be created).
    pub new_branch: bool,
}

/// One account's git, with its workspace's real path (to keep it out of messages).
#[derive(Clone)]
pub struct AccountGit {
    pub runner: Runner,
    workspace: PathBuf,
}

/// Where an instance's git work happens.
pub struct Place {
    pub git: AccountGit,
    /// The instance's worktree (real path).
    pub worktree: PathBuf,
    /// The repository's main checkout (real path).
    pub repo: PathBuf,
    pub repo_rel: String,
    pub branch: String,
    pub base: Option<String>,
}

/// A failed git command in words for the client: the workspace's path taken out.
fn say(account: &AccountGit, err: GitError) -> AppError {
    match err {
        GitError::Failed { stderr, .. } => AppError::Conflict(account.clean(&stderr)),
        GitError::Timeout(_) | GitError::Missing => AppError::Unavailable(err.to_string()),
        GitError::TooLarge(_) => {
            AppError::Unprocessable(format!("{err}; ask for less (one file with `path`)"))
        }
        GitError::Start(cause) => AppError::Internal(cause.context("cannot run git")),
    }
}

impl AccountGit {
    /// `text` with the workspace's real path removed, shortened.
    pub fn clean(&self, text: &str) -> String {
        let workspace = self.workspace.to_string_lossy();
        let mut text = text
            .replace(&format!("{workspace}/"), "")
            .replace(workspace.as_ref(), ".");
        if text.len() > 2000 {
            let mut end = 2000;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        if text.is_empty() {
            "git failed without saying why".into()
        } else {
            text
        }
    }

    async fn run(&self, call: Call<'_>) -> Result<run::Output, AppError> {
        self.runner.run(call).await.map_err(|e| say(self, e))
    }

    async fn output(&self, call: Call<'_>) -> Result<run::Output, AppError> {
        self.runner.output(call).await.map_err(|e| say(self, e))
    }

    /// `git <args>` in `dir`, its output as text; a failure is a 409 in git's words.
    async fn text<S: AsRef<str>>(&self, dir: &Path, args: &[S]) -> Result<String, AppError> {
        Ok(self.run(Call::new(dir, args)).await?.text())
    }

    /// `git <args>` in `dir`, its output when it succeeds, `None` when it fails.
    async fn maybe<S: AsRef<str>>(
        &self,
        dir: &Path,
        args: &[S],
    ) -> Result<Option<String>, AppError> {
        let out = self.output(Call::new(dir, args)).await?;
        Ok(out.success().then(|| out.text()))
    }

    async fn current_branch(&self, dir: &Path) -> Result<Option<String>, AppError> {
        self.maybe(dir, &["symbolic-ref", "--short", "-q", "HEAD"])
            .await
    }

    /// `-c user.name=… -c user.email=…` for what the repository's (or the account's) config
    /// does not set, so commits carry the account's name.
    async fn identity_args(&self, dir: &Path, username: &str) -> Result<Vec<String>, AppError> {
        let mut args = Vec::new();
        if self.maybe(dir, &["config", "user.name"]).await?.is_none() {
            args.extend(["-c".to_owned(), format!("user.name={username}")]);
        }
        if self.maybe(dir, &["config", "user.email"]).await?.is_none() {
            args.extend([
                "-c".to_owned(),
                format!("user.email={username}@pocketdev.local"),
            ]);
        }
        Ok(args)
    }
}

impl Git {
    pub fn new(isolation: Arc<Isolation>, layout: Arc<Layout>) -> Self {
        Self { isolation, layout }
    }

    /// The account's git runner and its workspace's real path (made if need be).
    pub async fn account(&self, user_id: i64) -> Result<AccountGit, AppError> {
        let identity = self.isolation.ensure(user_id).await?;
        self.layout.prepare_user(user_id)?;
        let confinement = if self.isolation.enabled() {
            Some(self.isolation.confinement(user_id).ok_or_else(|| {
                AppError::Unavailable("the account's Unix user is not ready".into())
            })?)
        } else {
            None
        };
        // git's HOME: a process that runs as the account.
        #[allow(clippy::disallowed_methods)]
        let home = self
            .layout
            .home(user_id)
            .for_account_process()
            .to_path_buf();
        let workspace = self.layout.workspace(user_id);
        let real = crate::isolation::blocking_as(identity, move |acting| {
            workspace.path(acting).canonicalize()
        })
        .await?
        .map_err(|e| AppError::Internal(anyhow::Error::from(e).context("the workspace")))?;
        Ok(AccountGit {
            runner: Runner::new(confinement, home),
            workspace: real,
        })
    }

    /// The real path of a folder of the workspace, checked by the kernel as the account; `None`
    /// when it is missing or not a folder beneath the workspace.
    pub async fn folder(&self, user_id: i64, relative: &str) -> Result<Option<PathBuf>, AppError> {
        let identity = self.isolation.ensure(user_id).await?;
        let workspace = self.layout.workspace(user_id);
        let relative = relative.to_owned();
        Ok(crate::isolation::blocking_as(identity, move |acting| {
            let workspace = workspace.path(acting);
            let path = RelPath::parse(&relative).ok()?;
            crate::files::jail::Jail::open(workspace)
                .ok()?
                .check_dir(&path)
                .ok()?;
            let real = workspace.join(path.display()).canonicalize().ok()?;
            real.starts_with(workspace.canonicalize().ok()?)
                .then_some(real)
        })
        .await?)
    }

    /// Whether anything (even a dangling link) is at `relative` in the workspace, as the account.
    async fn exists(&self, user_id: i64, relative: &str) -> Result<bool, AppError> {
        let identity = self.isolation.ensure(user_id).await?;
        let workspace = self.layout.workspace(user_id);
        let relative = relative.to_owned();
        Ok(crate::isolation::blocking_as(identity, move |acting| {
            workspace
                .path(acting)
                .join(relative)
                .symlink_metadata()
                .is_ok()
        })
        .await?)
    }

    /// The real path of a repository's top folder in the workspace, and the account's git;
    /// `None` when `relative` is not one.
    async fn repo_top(
        &self,
        user_id: i64,
        relative: &str,
    ) -> Result<Option<(PathBuf, AccountGit)>, AppError> {
        let Some(dir) = self.folder(user_id, relative).await? else {
            return Ok(None);
        };
        let git = self.account(user_id).await?;
        let top = git.maybe(&dir, &["rev-parse", "--show-toplevel"]).await?;
        Ok((top.as_deref().map(Path::new) == Some(dir.as_path())).then_some((dir, git)))
    }

    /// Makes the worktree a new instance on `branch` of `repo` works in:
    /// `worktrees/<repo folder>/<branch, / as ->`, on a new branch from `base` (default: what the
    /// repository has checked out) or on an existing one.
    pub async fn add_worktree(
        &self,
        user_id: i64,
        repo: &str,
        branch: &str,
        base: Option<&str>,
    ) -> Result<Worktree, AppError> {
        let repo_path = RelPath::parse(repo).map_err(unprocessable)?;
        if repo_path.is_root() {
            return Err(AppError::Unprocessable(
                "`repo` names a folder of your workspace that holds a git repository".into(),
            ));
        }
        let repo_rel = repo_path.display();
        let (dir, git) = self
            .repo_top(user_id, &repo_rel)
            .await?
            .ok_or_else(|| AppError::Unprocessable(not_a_repo(&repo_rel)))?;
        check_branch_name(&git, &dir, branch).await?;
        let repo_name = repo_rel.rsplit('/').next().unwrap_or(&repo_rel);
        let workdir = format!("{WORKTREES}/{repo_name}/{}", branch.replace('/', "-"));
        let existing = git
            .maybe(
                &dir,
                &[
                    "rev-parse",
                    "--verify",
                    "-q",
                    &format!("refs/heads/{branch}"),
                ],
            )
            .await?
            .is_some();
        if existing {
            let listing = git
                .text(&dir, &["worktree", "list", "--porcelain", "-z"])
                .await?;
            let wanted = format!("branch refs/heads/{branch}");
            let mut at = None;
            for field in listing.split('\0') {
                if let Some(path) = field.strip_prefix("worktree ") {
                    at = Some(path.to_owned());
                } else if field == wanted {
                    return Err(AppError::Conflict(format!(
                        "the branch `{branch}` is checked out already in `{}`; a branch can be \
                         checked out in one place at a time",
                        git.clean(at.as_deref().unwrap_or("another worktree"))
                    )));
                }
            }
        }
        if self.exists(user_id, &workdir).await? {
            return Err(AppError::Conflict(format!(
                "`{workdir}` exists already; remove it or choose another branch name"
            )));
        }
        let base = match base {
            Some(base) => {
                check_revision(&git, &dir, base).await?;
                base.to_owned()
            }
            None => match git.current_branch(&dir).await? {
                Some(current) => current,
                None => git
                    .maybe(&dir, &["rev-parse", "--verify", "-q", "HEAD"])
                    .await?
                    .ok_or_else(|| {
                        AppError::Unprocessable(format!(
                            "`{repo_rel}` has no commits yet; commit something first"
                        ))
                    })?,
            },
        };
        if !existing && base == branch {
            return Err(AppError::Unprocessable(
                "the new branch cannot be its own base".into(),
            ));
        }
        let target = git.workspace.join(&workdir);
        let target = target.to_string_lossy();
        let args: Vec<&str> = if existing {
            vec!["worktree", "add", "--quiet", &target, branch]
        } else {
            vec!["worktree", "add", "--quiet", "-b", branch, &target, &base]
        };
        match git.runner.run(Call::new(&dir, &args)).await {
            Ok(_) => Ok(Worktree {
                workdir,
                branch: branch.to_owned(),
                base,
                new_branch: !existing,
            }),
            Err(GitError::Failed { stderr, .. })
                if stderr.contains("already checked out")
                    || stderr.contains("already used by worktree") =>
            {
                Err(AppError::Conflict(format!(
                    "the branch `{branch}` is checked out already elsewhere ({}); a branch can be \
                     checked out in one place at a time",
                    git.clean(&stderr)
                )))
            }
            Err(err) => Err(say(&git, err)),
        }
    }

    /// Undoes [`Git::add_worktree`] for an instance that could not be created.
    pub async fn undo_worktree(&self, user_id: i64, repo: &str, made: &Worktree) {
        let undo = async {
            let dir = self
                .folder(user_id, repo)
                .await?
                .ok_or_else(|| AppError::Conflict("the repository is gone".into()))?;
            let git = self.account(user_id).await?;
            let target = git.workspace.join(&made.workdir);
            git.run(Call::new(
                &dir,
                &["worktree", "remove", "--force", &target.to_string_lossy()],
            ))
            .await?;
            if made.new_branch {
                git.run(Call::new(&dir, &["branch", "-D", &made.branch]))
                    .await?;
            }
            Ok::<_, AppError>(())
        };
        if let Err(err) = undo.await {
            tracing::warn!(user_id, error = %err.logged(), "cannot remove the worktree of an instance that was not created");
        }
    }

    /// An instance's git place; `None` when it was not started on a branch.
    pub async fn place(
        &self,
        owner: i64,
        workdir: &str,
        repo: Option<&str>,
        branch: Option<&str>,
        base: Option<&str>,
    ) -> Result<Place, AppError> {
        let (Some(repo), Some(branch)) = (repo, branch) else {
            return Err(AppError::Conflict(
                "this instance was not started on a git branch (create it with `repo` and `branch`)"
                    .into(),
            ));
        };
        let worktree = self
            .folder(owner, workdir)
            .await?
            .ok_or_else(|| AppError::Conflict(format!("the worktree `{workdir}` is gone")))?;
        let repo_dir = self
            .folder(owner, repo)
            .await?
            .ok_or_else(|| AppError::Conflict(format!("the repository `{repo}` is gone")))?;
        Ok(Place {
            git: self.account(owner).await?,
            worktree,
            repo: repo_dir,
            repo_rel: repo.to_owned(),
            branch: branch.to_owned(),
            base: base.map(str::to_owned),
        })
    }

    /// Files with uncommitted changes (untracked ones too) in an instance's worktree.
    pub async fn uncommitted(place: &Place) -> Result<Vec<String>, AppError> {
        let out = place
            .git
            .run(Call::new(
                &place.worktree,
                &["status", "--porcelain=v2", "-z", "--untracked-files=all"],
            ))
            .await?;
        Ok(status::parse(&out.stdout)
            .files
            .into_iter()
            .map(|f| f.path)
            .collect())
    }

    /// Removes an instance's worktree (the branch stays).
    pub async fn remove_worktree(place: &Place) -> Result<(), AppError> {
        place
            .git
            .run(Call::new(
                &place.repo,
                &[
                    "worktree",
                    "remove",
                    "--force",
                    &place.worktree.to_string_lossy(),
                ],
            ))
            .await?;
        Ok(())
    }

    /// Clones `url` into the new folder `folder` of the workspace.
    pub async fn clone_into(
        &self,
        user_id: i64,
        url: &str,
        folder: &str,
        token: Option<&str>,
    ) -> Result<Cloned, AppError> {
        check_url(url)?;
        let path = RelPath::parse(folder).map_err(unprocessable)?;
        let folder = path.display();
        if path.is_root() || folder.split('/').any(|p| p == ".git") {
            return Err(AppError::Unprocessable(
                "`folder` names a new folder inside your workspace".into(),
            ));
        }
        let (parent, name) = match folder.rsplit_once('/') {
            Some((parent, name)) => (parent.to_owned(), name.to_owned()),
            None => (String::new(), folder.clone()),
        };
        let parent_dir = self.folder(user_id, &parent).await?.ok_or_else(|| {
            AppError::Unprocessable(format!("`{parent}` is not a folder in your workspace"))
        })?;
        if self.exists(user_id, &folder).await? {
            return Err(AppError::Conflict(format!("`{folder}` exists already")));
        }
        let git = self.account(user_id).await?;
        let mut call = Call::new(&parent_dir, &["clone", "--quiet", "--", url, &name])
            .timeout(NETWORK_TIMEOUT);
        if url.starts_with("https://") {
            call = with_token(call, token);
        }
        git.run(call).await?;
        let dir = parent_dir.join(&name);
        let branch = git.current_branch(&dir).await?;
        Ok(Cloned { folder, branch })
    }
}

fn not_a_repo(folder: &str) -> String {
    format!("`{folder}` is not a git repository in your workspace (its top folder)")
}

/// A refused path from a request body: 422, like the body's other values.
pub(crate) fn unprocessable(err: crate::files::jail::FileError) -> AppError {
    AppError::Unprocessable(err.to_string())
}

/// A finished clone.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cloned {
    /// The new folder, relative to the workspace.
    pub folder: String,
    /// The branch checked out (none for a repository without one).
    pub branch: Option<String>,
}

/// The token reaches git through a credential helper set in the environment (never a command
/// line or a config file): `credential.helper` from `GIT_CONFIG_*`, answering only `get`.
fn with_token<'a>(call: Call<'a>, token: Option<&str>) -> Call<'a> {
    let Some(token) = token else {
        return call;
    };
    call.env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "credential.helper")
        .env(
            "GIT_CONFIG_VALUE_0",
            "!f() { test \"$1\" = get && printf 'username=x-access-token\\npassword=%s\\n' \"$POCKETDEV_GIT_TOKEN\"; }; f",
        )
        .env("POCKETDEV_GIT_TOKEN", token)
}

/// Clones from `https://`, `http://`, `ssh://`, `user@host:path`, `file://` or an absolute
/// local path; never through a transport helper (`ext::`, `fd::`, `<helper>::`), never an
/// option.
pub fn check_url(url: &str) -> Result<(), AppError> {
    let refuse = |why: &str| {
        Err(AppError::Unprocessable(format!(
            "this URL cannot be cloned: {why}"
        )))
    };
    if url.is_empty() || url.len() > 2048 {
        return refuse("it is empty or too long");
    }
    if url.chars().any(char::is_control) || url.contains(' ') {
        return refuse("it contains spaces or control characters");
    }
    if url.starts_with('-') {
        return refuse("it starts with `-`");
    }
    if url.contains("::") {
        return refuse("transport helpers (`ext::`, `fd::`) are not allowed");
    }
    let lower = url.to_ascii_lowercase();
    let allowed = ["https://", "http://", "ssh://", "file://", "/"]
        .iter()
        .any(|p| lower.starts_with(p));
    // scp-like `user@host:path`: a colon before any slash.
    let scp = match url.split_once(':') {
        Some((host, _)) => !host.contains('/') && host.contains('@') && !host.is_empty(),
        None => false,
    };
    if !allowed && !scp {
        return refuse("use https://, ssh://, user@host:path, file:// or an absolute path");
    }
    Ok(())
}

/// Refuses what git refuses as a branch name (and what looks like an option).
async fn check_branch_name(git: &AccountGit, dir: &Path, branch: &str) -> Result<(), AppError> {
    let bad =
        |why: &str| AppError::Unprocessable(format!("`{branch}` is not a branch name: {why}"));
    if branch.is_empty() || branch.len() > 200 {
        return Err(bad("empty or too long"));
    }
    if branch.starts_with('-') || branch.contains("@{") || branch.chars().any(char::is_control) {
        return Err(bad("git refuses it"));
    }
    let ok = git
        .output(Call::new(dir, &["check-ref-format", "--branch", branch]))
        .await?;
    if !ok.success() {
        return Err(bad("git refuses it"));
    }
    Ok(())
}

/// Refuses a base that is not a commit of the repository.
async fn check_revision(git: &AccountGit, dir: &Path, base: &str) -> Result<(), AppError> {
    let bad = || {
        AppError::Unprocessable(format!(
            "`{base}` is not a branch or commit of the repository"
        ))
    };
    if base.is_empty()
        || base.starts_with('-')
        || base.len() > 200
        || base.chars().any(char::is_control)
    {
        return Err(bad());
    }
    git.maybe(
        dir,
        &["rev-parse", "--verify", "-q", &format!("{base}^{{commit}}")],
    )
    .await?
    .ok_or_else(bad)?;
    Ok(())
}

/// The web page comparing `branch` with `base`, for GitHub/GitLab-style remotes.
pub fn compare_url(remote_url: &str, base: &str, branch: &str) -> Option<String> {
    let trimmed = remote_url.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let (host, path) = if let Some(rest) = trimmed.strip_prefix("https://") {
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        rest.split_once('/')?
    } else if let Some(rest) = trimmed.strip_prefix("ssh://") {
        let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
        let (host, path) = rest.split_once('/')?;
        (host.split(':').next()?, path)
    } else if !trimmed.contains("://") && trimmed.contains('@') {
        let (_, rest) = trimmed.split_once('@')?;
        rest.split_once(':')?
    } else {
        return None;
    };
    if host.is_empty() || path.split('/').filter(|p| !p.is_empty()).count() < 2 {
        return None;
    }
    Some(format!("https://{host}/{path}/compare/{base}...{branch}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for good in [
            "https://github.com/a/b.git",
            "http://host/x",
            "ssh://git@host/a/b",
            "git@github.com:a/b.git",
            "file:///srv/repo.git",
            "/srv/repo.git",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in [
            "ext::sh -c touch% /tmp/pwned",
            "fd::3",
            "--upload-pack=touch /tmp/x",
            "-u",
            "relative/path",
            "ftp://host/x",
            "",
            "https://host/a\nb",
            "transport::https://host",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compare_urls_for_forges() {
        for (remote, expected) in [
            (
                "https://github.com/o/r.git",
                Some("https://github.com/o/r/compare/main...feat/x"),
            ),
            (
                "git@gitlab.com:group/sub/r.git",
                Some("https://gitlab.com/group/sub/r/compare/main...feat/x"),
            ),
            (
                "ssh://git@github.com:22/o/r",
                Some("https://github.com/o/r/compare/main...feat/x"),
            ),
            (
                "https://user:tok@github.com/o/r",
                Some("https://github.com/o/r/compare/main...feat/x"),
            ),
            ("/srv/remote.git", None),
            ("file:///srv/r.git", None),
        ] {
            assert_eq!(
                compare_url(remote, "main", "feat/x").as_deref(),
                expected,
                "{remote}"
            );
        }
    }
}
