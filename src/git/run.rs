//! The one way pocketdev runs git: as the account, inside its cgroups and Landlock ruleset
//! (the same [`Confinement`] every tmux client of the account takes on), with a cleared
//! environment, a timeout, and its output bounded.
//!
//! A repository in a workspace is the account's: its hooks, `core.fsmonitor`,
//! `core.sshCommand`, filters and aliases are code the account's agent may have written. They
//! run — the agent's own commits rely on hooks — but only with the account's rights, where its
//! agents may go. Git run as root against such a repository would hand the agent root.
//! Without isolation (pocketdev not running as root) git runs as the server's user, like the
//! agents themselves.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::isolation::confine::Confinement;

/// How long an ordinary git command may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a command that talks to a remote (clone, push, pull) may take.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(120);
/// The most standard output kept from one command.
pub const OUTPUT_MAX: usize = 8 * 1024 * 1024;
/// The most standard error kept (enough for git's messages).
const STDERR_MAX: usize = 64 * 1024;

/// The transports git may use, for remotes, submodules and clones alike: `ext::` (which runs
/// a command), `fd::` and the other helpers are refused by git itself.
pub const ALLOWED_PROTOCOLS: &str = "https:http:ssh:file";

/// Why a git command did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git is not installed on the server")]
    Missing,
    #[error("git did not finish within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("git's answer is larger than {} MiB", .0 / (1024 * 1024))]
    TooLarge(usize),
    /// git ran and failed: its exit code and what it said.
    #[error("git {command} failed: {stderr}")]
    Failed {
        command: String,
        code: Option<i32>,
        stderr: String,
    },
    #[error("cannot run git: {0}")]
    Start(#[source] anyhow::Error),
}

/// What a finished git command printed.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Standard output as text (lossy), trimmed of the final newline.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout)
            .trim_end_matches('\n')
            .to_owned()
    }
}

/// One git command to run.
pub struct Call<'a> {
    /// The repository or worktree it works in (`git -C`, resolved as the account).
    pub dir: &'a Path,
    pub args: Vec<String>,
    pub timeout: Duration,
    /// Extra environment variables this call needs (a token for a credential helper).
    pub env: Vec<(String, String)>,
    /// Written to git's standard input (a commit message, a patch); never on a command line.
    pub input: Option<Vec<u8>>,
    /// Another program of git's world run the same way (`ssh-keygen`); it starts in `/`.
    pub program: Option<&'static str>,
}

impl<'a> Call<'a> {
    pub fn new<S: AsRef<str>>(dir: &'a Path, args: &[S]) -> Self {
        Self {
            dir,
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            timeout: TIMEOUT,
            env: Vec::new(),
            input: None,
            program: None,
        }
    }

    /// `program <args>` instead of git, as the account, with git's clean environment.
    pub fn tool(program: &'static str, args: &[&str]) -> Call<'static> {
        Call {
            program: Some(program),
            ..Call::new(Path::new("/"), args)
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn input(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.input = Some(input.into());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Runs git for one account.
#[derive(Clone, Debug)]
pub struct Runner {
    /// `None`: no isolation, git runs as the server's user.
    confinement: Option<Arc<Confinement>>,
    /// The account's home, git's `HOME` (its `~/.gitconfig` is the account's).
    home: PathBuf,
}

impl Runner {
    pub fn new(confinement: Option<Arc<Confinement>>, home: PathBuf) -> Self {
        Self { confinement, home }
    }

    /// The account's home, as its processes see it.
    pub fn home(&self) -> &std::path::Path {
        &self.home
    }

    /// The uid git runs as; `None`: the server's own.
    pub fn uid(&self) -> Option<u32> {
        self.confinement.as_ref().map(|c| c.identity.uid)
    }

    /// The command, before its arguments: confined, in a clean environment, `-C` the folder.
    fn command(&self, call: &Call<'_>) -> Result<Command, GitError> {
        let mut command = Command::new(call.program.unwrap_or("git"));
        command
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", crate::instances::profiles::search_path())
            .env("LANG", "C.UTF-8")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            // Paths from clients are file names, never patterns.
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_ALLOW_PROTOCOL", ALLOWED_PROTOCOLS)
            // ssh may not ask (there is no one to answer); a host key it does not know fails.
            .env("SSH_ASKPASS_REQUIRE", "never")
            // A forge met for the first time is trusted and remembered in the account's
            // known_hosts (as a first `ssh` would after a yes); a changed key still fails.
            .env(
                "GIT_SSH_COMMAND",
                "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
            )
            .envs(call.env.iter().map(|(k, v)| (k, v)))
            // The folder is entered by git (`-C`), as the account, not by the server as root.
            .current_dir("/");
        if call.program.is_none() {
            command.arg("-C").arg(call.dir);
        }
        command
            .args(&call.args)
            .stdin(if call.input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(confinement) = &self.confinement {
            confinement.apply(&mut command).map_err(GitError::Start)?;
        }
        Ok(command)
    }

    /// Runs `call`; a non-zero exit is an answer too (see [`Runner::run`] for an error).
    pub async fn output(&self, call: Call<'_>) -> Result<Output, GitError> {
        let mut command = self.command(&call)?;
        let work = async {
            let mut child = command.spawn().map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => GitError::Missing,
                _ => GitError::Start(e.into()),
            })?;
            let stdin = child.stdin.take();
            let input = call.input.clone();
            let feed = async move {
                if let (Some(mut stdin), Some(input)) = (stdin, input) {
                    // git may stop reading early (a refused patch); that is its answer.
                    let _ = stdin.write_all(&input).await;
                    let _ = stdin.shutdown().await;
                }
            };
            let stdout = child.stdout.take().expect("piped");
            let stderr = child.stderr.take().expect("piped");
            let (_, stdout, stderr) = tokio::join!(
                feed,
                read_bounded(stdout, OUTPUT_MAX),
                read_bounded(stderr, STDERR_MAX)
            );
            let (stdout, over) = stdout.map_err(|e| GitError::Start(e.into()))?;
            if over {
                // Dropping the child kills it.
                return Err(GitError::TooLarge(OUTPUT_MAX));
            }
            let (stderr, _) = stderr.map_err(|e| GitError::Start(e.into()))?;
            let status = child.wait().await.map_err(|e| GitError::Start(e.into()))?;
            Ok(Output {
                code: status.code(),
                stdout,
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            })
        };
        tokio::time::timeout(call.timeout, work)
            .await
            .map_err(|_| GitError::Timeout(call.timeout))?
    }

    /// Runs `call` and answers its output, or [`GitError::Failed`] unless it exits 0.
    pub async fn run(&self, call: Call<'_>) -> Result<Output, GitError> {
        let command = call.args.first().cloned().unwrap_or_default();
        let output = self.output(call).await?;
        if output.success() {
            Ok(output)
        } else {
            Err(GitError::Failed {
                command,
                code: output.code,
                stderr: output.stderr,
            })
        }
    }
}

/// Reads at most `max` bytes; answers them and whether there was more.
async fn read_bounded(
    reader: impl AsyncRead + Unpin,
    max: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_to_end(&mut out).await?;
    let over = out.len() > max;
    out.truncate(max);
    Ok((out, over))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_environment_is_clean_and_output_bounded() {
        // SAFETY-free: a variable set in this test process must not reach git.
        let dir = tempfile::tempdir().unwrap();
        let runner = Runner::new(None, dir.path().to_path_buf());
        let init = runner
            .run(Call::new(dir.path(), &["init", "-q", "-b", "main"]))
            .await
            .unwrap();
        assert!(init.success());
        // `git var` shows what git would use; the server's GIT_* never leak (`env` is cleared,
        // so only what the runner sets is there): ask git for its editor, which falls back.
        let out = runner
            .run(Call::new(dir.path(), &["config", "--get", "core.bare"]))
            .await
            .unwrap();
        assert_eq!(out.text(), "false");
        let failed = runner
            .run(Call::new(dir.path(), &["rev-parse", "--verify", "nope"]))
            .await;
        assert!(
            matches!(
                failed,
                Err(GitError::Failed {
                    code: Some(128),
                    ..
                })
            ),
            "{failed:?}"
        );
        let (bytes, over) = read_bounded(&b"0123456789"[..], 4).await.unwrap();
        assert_eq!((bytes.as_slice(), over), (&b"0123"[..], true));
        let (bytes, over) = read_bounded(&b"0123"[..], 4).await.unwrap();
        assert_eq!((bytes.as_slice(), over), (&b"0123"[..], false));
    }
}
