//! Git beyond one instance: the repositories of an account's workspace (listed, and read as a
//! [`Place`] of their own), and the account's SSH key for forges.

use serde::Serialize;
use utoipa::ToSchema;

use super::run::{Call, GitError};
use super::{Git, Place, WORKTREES, status};
use crate::error::AppError;
use crate::files::jail::RelPath;

/// The most repositories a listing reads.
const REPOS_MAX: usize = 50;

#[derive(Debug, Serialize, ToSchema)]
pub struct Repo {
    /// Its folder, relative to the workspace.
    pub folder: String,
    /// The branch checked out (none when detached).
    pub branch: Option<String>,
    /// The commit checked out (none before the first).
    pub head: Option<String>,
    /// Files with uncommitted changes, untracked ones included.
    pub changed: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Repos {
    pub repos: Vec<Repo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SshKey {
    /// `~/.ssh/id_ed25519.pub` of the account, to copy into a forge; none until made.
    pub public_key: Option<String>,
    /// As `ssh-keygen -l` prints it (`SHA256:…`).
    pub fingerprint: Option<String>,
}

/// Where the key lives in the account's home.
const KEY_FILE: &str = ".ssh/id_ed25519";

impl Git {
    /// The workspace's folders that hold a repository (with its own `.git` folder, so not an
    /// agent's worktree): at the top and one level down, `worktrees/` left out.
    pub async fn repos(&self, user_id: i64) -> Result<Repos, AppError> {
        let identity = self.isolation.ensure(user_id).await?;
        let workspace = self.layout.workspace(user_id);
        let folders = crate::isolation::blocking_as(identity, move |acting| {
            let root = workspace.path(acting);
            let is_repo = |dir: &std::path::Path| dir.join(".git").is_dir();
            let subfolders = |dir: &std::path::Path| -> Vec<String> {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    return Vec::new();
                };
                let mut names: Vec<String> = entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| !name.starts_with('.'))
                    .collect();
                names.sort();
                names
            };
            let mut found = Vec::new();
            for top in subfolders(root) {
                if top == WORKTREES {
                    continue;
                }
                let dir = root.join(&top);
                if is_repo(&dir) {
                    found.push(top);
                    continue;
                }
                for inner in subfolders(&dir) {
                    if is_repo(&dir.join(&inner)) {
                        found.push(format!("{top}/{inner}"));
                    }
                }
                if found.len() >= REPOS_MAX {
                    break;
                }
            }
            found.truncate(REPOS_MAX);
            found
        })
        .await?;
        let git = self.account(user_id).await?;
        let mut repos = Vec::with_capacity(folders.len());
        for folder in folders {
            let dir = git.workspace.join(&folder);
            let out = git.output(Call::new(&dir, &status::PORCELAIN)).await?;
            // A repository git cannot read (a broken one) is left out rather than failing all.
            if !out.success() {
                continue;
            }
            let parsed = status::parse(&out.stdout);
            repos.push(Repo {
                folder,
                branch: parsed.branch,
                head: parsed.head,
                changed: parsed.files.len(),
            });
        }
        Ok(Repos { repos })
    }

    /// A repository of the workspace as a place to read, on whatever it has checked out.
    pub async fn repo_place(&self, user_id: i64, folder: &str) -> Result<Place, AppError> {
        let path = RelPath::parse(folder).map_err(super::unprocessable)?;
        let folder = path.display();
        let not_found = || AppError::NotFound(super::not_a_repo(&folder));
        if path.is_root() {
            return Err(not_found());
        }
        let (dir, git) = self
            .repo_top(user_id, &folder)
            .await?
            .ok_or_else(not_found)?;
        let branch = git
            .current_branch(&dir)
            .await?
            .unwrap_or_else(|| "HEAD".into());
        Ok(Place {
            git,
            worktree: dir.clone(),
            repo: dir,
            repo_rel: folder,
            branch,
            base: None,
        })
    }

    /// The account's SSH key, if it has one.
    pub async fn ssh_key(&self, user_id: i64) -> Result<SshKey, AppError> {
        let git = self.account(user_id).await?;
        let public = git.runner.home().join(format!("{KEY_FILE}.pub"));
        let public = public.to_string_lossy();
        let read = git
            .runner
            .output(Call::tool("cat", &["--", &public]))
            .await
            .map_err(tool_error(git.runner.home()))?;
        if !read.success() {
            return Ok(SshKey {
                public_key: None,
                fingerprint: None,
            });
        }
        let fingerprint = git
            .runner
            .output(Call::tool("ssh-keygen", &["-l", "-f", &public]))
            .await
            .ok()
            .filter(|out| out.success())
            .and_then(|out| out.text().split_whitespace().nth(1).map(str::to_owned));
        Ok(SshKey {
            public_key: Some(read.text().trim().to_owned()),
            fingerprint,
        })
    }

    /// Makes the account's ed25519 key (no passphrase: nobody is there to type one); 409 when
    /// it has one already.
    pub async fn make_ssh_key(&self, user_id: i64, username: &str) -> Result<SshKey, AppError> {
        let git = self.account(user_id).await?;
        let home = git.runner.home().to_path_buf();
        let private = home.join(KEY_FILE);
        let private = private.to_string_lossy();
        let exists = git
            .runner
            .output(Call::tool("test", &["-e", &private]))
            .await
            .map_err(tool_error(&home))?;
        if exists.success() {
            return Err(AppError::Conflict(
                "this account has an SSH key already; it is shown in Settings".into(),
            ));
        }
        let ssh_dir = home.join(".ssh");
        git.runner
            .run(Call::tool(
                "mkdir",
                &["-p", "-m", "700", "--", &ssh_dir.to_string_lossy()],
            ))
            .await
            .map_err(tool_error(&home))?;
        let comment = format!("pocketdev {username}");
        git.runner
            .run(Call::tool(
                "ssh-keygen",
                &[
                    "-q", "-t", "ed25519", "-N", "", "-C", &comment, "-f", &private,
                ],
            ))
            .await
            .map_err(tool_error(&home))?;
        self.ssh_key(user_id).await
    }
}

/// A helper program's failure in words (its name, not git's; the home's path as `~`).
fn tool_error(home: &std::path::Path) -> impl Fn(GitError) -> AppError {
    let home = home.to_string_lossy().into_owned();
    move |err| tool_error_in(&home, err)
}

fn tool_error_in(home: &str, err: GitError) -> AppError {
    match err {
        GitError::Missing => AppError::Unavailable(
            "ssh-keygen is not installed on the server (Debian: apt-get install openssh-client)"
                .into(),
        ),
        GitError::Failed { stderr, .. } => AppError::Conflict(stderr.replace(home, "~")),
        GitError::Timeout(_) => AppError::Unavailable(err.to_string()),
        other => AppError::Internal(anyhow::anyhow!(other.to_string())),
    }
}
