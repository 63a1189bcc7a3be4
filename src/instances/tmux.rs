//! The only place that runs tmux.
//!
//! pocketdev never uses anyone's default tmux server. Without isolation, one server on its own
//! socket holds every account's sessions. With isolation, each account has its own server,
//! running as the account, with its socket in a 0700 folder of the account's, and **every**
//! client (new-session, capture-pane, send-keys, list-panes, the control client) runs as the
//! account too: a tmux client running as root against a server an agent controls would give
//! that agent root (`detach-client -E`, hooks writing files through the client). Clients start
//! with a cleared environment and arguments passed as a list, never through a shell.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::process::Command;

use crate::isolation::{Identity, Isolation};
use crate::layout::Layout;

/// Why a tmux command failed.
#[derive(Debug, thiserror::Error)]
pub enum TmuxError {
    #[error("tmux is not installed")]
    Missing,
    #[error("tmux {command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    /// The server did not answer in time: stopped (an agent can `kill -STOP` its own account's
    /// server) or overloaded.
    #[error("tmux {command}: the server did not answer within {} s", .after.as_secs())]
    Timeout { command: String, after: Duration },
}

/// One pane of a pocketdev session, as `list-panes` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneInfo {
    pub session: String,
    pub dead: bool,
    pub exit_status: Option<i32>,
    /// The signal that killed the agent, if one did.
    pub exit_signal: Option<i32>,
    pub pid: Option<u32>,
    /// When the pane last printed, in seconds since the epoch.
    pub last_output: Option<i64>,
}

impl PaneInfo {
    /// The exit code as a shell reports it: the status, or 128 + the signal.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_status
            .or(self.exit_signal.map(|signal| 128 + signal))
    }
}

/// What a new session runs, where, and at which size.
pub struct SessionSpec<'a> {
    pub name: &'a str,
    pub cwd: &'a Path,
    pub cols: u16,
    pub rows: u16,
    pub argv: &'a [String],
}

#[derive(Clone)]
pub struct TmuxServers {
    shared: Tmux,
    isolation: Arc<Isolation>,
    layout: Arc<Layout>,
    /// Each account server's [`Tmux::calm`] lock.
    calm: Arc<parking_lot::Mutex<std::collections::HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>,
}

impl TmuxServers {
    pub fn new(
        socket: PathBuf,
        config_file: PathBuf,
        timeout: Duration,
        isolation: Arc<Isolation>,
        layout: Arc<Layout>,
    ) -> Self {
        Self {
            shared: Tmux {
                socket,
                config_file,
                timeout,
                account: None,
                calm: Arc::default(),
            },
            isolation,
            layout,
            calm: Arc::default(),
        }
    }

    /// The tmux server holding `user_id`'s sessions; `None` while an isolated account has no
    /// Unix user yet (so it has no server either).
    pub fn for_account(&self, user_id: i64) -> Option<Tmux> {
        if !self.isolation.enabled() {
            return Some(self.shared.clone());
        }
        let confinement = self.isolation.confinement(user_id)?;
        Some(self.account_server(user_id, confinement))
    }

    fn account_server(
        &self,
        user_id: i64,
        confinement: Arc<crate::isolation::confine::Confinement>,
    ) -> Tmux {
        Tmux {
            socket: self.isolation.socket_dir(user_id).join("tmux.sock"),
            config_file: self.shared.config_file.clone(),
            timeout: self.shared.timeout,
            calm: self.calm.lock().entry(user_id).or_default().clone(),
            account: Some(AccountClient {
                identity: confinement.identity,
                // HOME of the account's tmux clients, which run as the account.
                #[allow(clippy::disallowed_methods)]
                home: self
                    .layout
                    .home(user_id)
                    .for_account_process()
                    .to_path_buf(),
                confinement,
            }),
        }
    }

    /// Every server with the account it belongs to (`None`: the shared one), for
    /// reconciliation and sampling.
    pub fn all(&self) -> Vec<(Option<i64>, Tmux)> {
        if !self.isolation.enabled() {
            return vec![(None, self.shared.clone())];
        }
        self.isolation
            .known()
            .into_iter()
            .map(|(user_id, confinement)| {
                (Some(user_id), self.account_server(user_id, confinement))
            })
            .collect()
    }

    /// Every server's panes, asked all at once. A server that has not answered within
    /// `LISTING_WAIT` (or the command timeout, if shorter) counts as silent this time, so one
    /// account's server delays no one else's reconciliation or sampling by more than that.
    pub async fn list_all_panes(&self) -> Listing {
        let within = LISTING_WAIT.min(self.shared.timeout);
        let mut asking = tokio::task::JoinSet::new();
        let mut pending = HashMap::new();
        for (owner, server) in self.all() {
            let asked = server.clone();
            let task = asking.spawn(async move { asked.panes_if_running().await });
            pending.insert(task.id(), (owner, server));
        }
        let mut listing = Listing::default();
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(Some(joined)) =
            tokio::time::timeout_at(deadline, asking.join_next_with_id()).await
        {
            let (id, answer) = match joined {
                Ok((id, answer)) => (id, answer),
                Err(err) => (
                    err.id(),
                    Err(TmuxError::Failed {
                        command: "list-panes".into(),
                        stderr: format!("the listing task failed: {err}"),
                    }),
                ),
            };
            if let Some((owner, server)) = pending.remove(&id) {
                listing.add(owner, server, answer);
            }
        }
        // Dropping the set stops the clients still waiting.
        for (owner, server) in pending.into_values() {
            let silent = Err(TmuxError::Timeout {
                command: "list-panes".into(),
                after: within,
            });
            listing.add(owner, server, silent);
        }
        listing
    }

    /// Writes the servers' configuration file (root-owned; servers read it when they start).
    pub fn write_config(&self, history_limit: u32) -> anyhow::Result<()> {
        self.shared.write_config(history_limit)
    }
}

/// Every server's panes at one moment, and which servers did not answer.
#[derive(Default)]
pub struct Listing {
    /// Each pane with its server and the account the server belongs to (`None`: the shared one).
    pub panes: Vec<(Option<i64>, Tmux, PaneInfo)>,
    silent: HashSet<Option<i64>>,
    /// Servers that are not running (stopped, or crashed).
    stopped: HashSet<Option<i64>>,
    /// tmux itself is not installed.
    pub tmux_missing: bool,
}

impl Listing {
    fn add(
        &mut self,
        owner: Option<i64>,
        server: Tmux,
        answer: Result<Option<Vec<PaneInfo>>, TmuxError>,
    ) {
        match answer {
            Ok(None) => {
                self.stopped.insert(owner);
            }
            Ok(Some(panes)) => self
                .panes
                .extend(panes.into_iter().map(|pane| (owner, server.clone(), pane))),
            Err(err) => {
                if matches!(err, TmuxError::Missing) {
                    self.tmux_missing = true;
                } else {
                    tracing::warn!(account = ?owner, error = %err, "a tmux server did not list its panes; its instances are left as they are this time");
                }
                self.silent.insert(owner);
            }
        }
    }

    /// Whether the server holding `owner`'s sessions answered.
    pub fn answered(&self, owner: i64) -> bool {
        !self.silent.contains(&None) && !self.silent.contains(&Some(owner))
    }

    /// Whether the server holding `owner`'s sessions is not running at all.
    pub fn server_stopped(&self, owner: i64) -> bool {
        self.stopped.contains(&None) || self.stopped.contains(&Some(owner))
    }
}

/// Who an account's tmux clients run as.
#[derive(Clone, Debug)]
struct AccountClient {
    identity: Identity,
    home: PathBuf,
    /// Its cgroups, identity and Landlock ruleset, which every client of its server takes on.
    confinement: Arc<crate::isolation::confine::Confinement>,
}

#[derive(Clone, Debug)]
pub struct Tmux {
    socket: PathBuf,
    config_file: PathBuf,
    /// How long one client command may take before it is killed.
    timeout: Duration,
    account: Option<AccountClient>,
    /// See [`Tmux::calm`].
    calm: Arc<tokio::sync::Mutex<()>>,
}

/// How long reconciliation and sampling wait for every server's list of panes.
const LISTING_WAIT: Duration = Duration::from_secs(3);

impl Tmux {
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Held while a control client connects (until it is attached) or goes (until it has
    /// exited), and around every change tmux tells all control clients of (a session made or
    /// killed, a paste buffer used). tmux up to 3.5a at least crashes, taking every agent of the
    /// server with it, when such news reaches a control client that has said it is one but has
    /// not finished connecting (a NULL control state; tmux/tmux#4980, not in any release yet).
    pub async fn calm(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.calm.clone().lock_owned().await
    }

    /// [`Tmux::calm`], if no one holds it now.
    pub fn try_calm(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.calm.clone().try_lock_owned().ok()
    }

    /// The Unix user this server and its clients run as; `None`: the server's own.
    pub fn uid(&self) -> Option<u32> {
        self.account.as_ref().map(|a| a.identity.uid)
    }

    /// A tmux client of this server: for an account, inside its cgroups, as the account and
    /// within its Landlock ruleset (a hook on the account's server may make a client write
    /// files; it writes where the account's agents may, nowhere else).
    fn command(&self) -> Result<Command, TmuxError> {
        let mut command = Command::new("tmux");
        command
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        clean_environment(&mut command, self.account.as_ref());
        if let Some(account) = &self.account {
            account
                .confinement
                .apply(&mut command)
                .map_err(|e| TmuxError::Failed {
                    command: "(confining a client)".into(),
                    stderr: format!("{e:#}"),
                })?;
        }
        Ok(command)
    }

    async fn run(&self, args: &[&str]) -> Result<String, TmuxError> {
        self.run_with_input(args, None).await
    }

    /// Runs a client with `input` on its standard input (text that must never travel in a
    /// command line, which every local user can read in /proc).
    async fn run_with_input(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<String, TmuxError> {
        let command = || args.first().unwrap_or(&"").to_string();
        let run = async {
            let mut command = self.command()?;
            command.args(args).kill_on_drop(true);
            let Some(input) = input else {
                return Ok(command.output().await);
            };
            let mut child = match command.stdin(Stdio::piped()).spawn() {
                Ok(child) => child,
                Err(err) => return Ok(Err(err)),
            };
            if let Some(mut stdin) = child.stdin.take() {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(input).await;
            }
            Ok(child.wait_with_output().await)
        };
        // A client of a stopped server waits forever; dropping the future kills it.
        let output = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| TmuxError::Timeout {
                command: command(),
                after: self.timeout,
            })??
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => TmuxError::Missing,
                _ => TmuxError::Failed {
                    command: command(),
                    stderr: e.to_string(),
                },
            })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(TmuxError::Failed {
                command: command(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// For an account's server: starts it, unless it runs already, through `launcher
    /// start-account-server` (which joins the account's cgroups, then drops to the account or
    /// enters its bubblewrap sandbox) in tmux's foreground mode (`-D`), in its own process
    /// group; answers its pid once it listens. `None`: it was running already, or the server is the shared one.
    pub async fn start_server(
        &self,
        launcher: &Path,
        start: &crate::isolation::ServerStart,
    ) -> Result<Option<u32>, TmuxError> {
        let Some(account) = &self.account else {
            return Ok(None);
        };
        if self.listening().await? {
            return Ok(None);
        }
        // A dead server's socket would make tmux refuse to start.
        let _ = std::fs::remove_file(&self.socket);
        let (uid, gid) = (
            account.identity.uid.to_string(),
            account.identity.gid.to_string(),
        );
        let socket = self.socket.to_string_lossy().into_owned();
        let config = self.config_file.to_string_lossy().into_owned();
        let server = ["tmux", "-S", &socket, "-f", &config, "-D"].map(String::from);
        let mut args = vec!["start-account-server".to_owned()];
        for procs in &start.procs {
            args.extend(["--procs".into(), procs.to_string_lossy().into_owned()]);
        }
        if let Some(nproc) = start.nproc {
            args.extend(["--nproc".into(), nproc.to_string()]);
        }
        if start.private_namespaces {
            args.push("--private-namespaces".into());
        }
        if let Some(allowed) = &start.landlock {
            args.extend(allowed.to_args());
        }
        match &start.bwrap {
            None => args.extend(["--uid".into(), uid, "--gid".into(), gid, "--".into()]),
            Some(bwrap) => {
                args.extend(["--".into(), "bwrap".into()]);
                args.extend(bwrap.iter().cloned());
                args.extend(
                    [
                        "--",
                        "setpriv",
                        "--reuid",
                        &uid,
                        "--regid",
                        &gid,
                        "--clear-groups",
                        "--",
                    ]
                    .map(String::from),
                );
            }
        }
        args.extend(server);
        let mut command = Command::new(launcher);
        clean_environment(&mut command, Some(account));
        let child = command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| TmuxError::Failed {
                command: "start-account-server".into(),
                stderr: format!("cannot run the launcher {}: {e}", launcher.display()),
            })?;
        let pid = child.id().unwrap_or_default();
        // Never waited on: it outlives pocketdev, and the runtime reaps it if it ends first.
        drop(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.listening().await.unwrap_or(false) {
            if tokio::time::Instant::now() > deadline {
                return Err(TmuxError::Failed {
                    command: "start-account-server".into(),
                    stderr: "the account's tmux server did not start listening".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Some(pid))
    }

    /// Whether a server listens on the socket. One that is there but does not take the
    /// connection (stopped, its queue full) is an error: it must not be replaced.
    async fn listening(&self) -> Result<bool, TmuxError> {
        let silent = || TmuxError::Timeout {
            command: "connect".into(),
            after: self.timeout,
        };
        match tokio::time::timeout(self.timeout, tokio::net::UnixStream::connect(&self.socket))
            .await
            .map_err(|_| silent())?
        {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(false)
            }
            Err(_) => Err(silent()),
        }
    }

    /// Starts a detached session running `argv` directly (no shell in between).
    pub async fn new_session(&self, spec: &SessionSpec<'_>) -> Result<(), TmuxError> {
        let cwd = spec.cwd.to_string_lossy();
        let (cols, rows) = (spec.cols.to_string(), spec.rows.to_string());
        let mut args = vec![
            "new-session",
            "-d",
            "-s",
            spec.name,
            "-c",
            &cwd,
            "-x",
            &cols,
            "-y",
            &rows,
            "--",
        ];
        args.extend(spec.argv.iter().map(String::as_str));
        let _calm = self.calm().await;
        match self.run(&args).await {
            // The last session just went and the server is exiting; the next try starts a new one.
            Err(TmuxError::Failed { stderr, .. }) if server_exiting(&stderr) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                self.run(&args).await.map(drop)
            }
            other => other.map(drop),
        }
    }

    /// All panes of this server; empty when the server is not running.
    pub async fn list_panes(&self) -> Result<Vec<PaneInfo>, TmuxError> {
        Ok(self.panes_if_running().await?.unwrap_or_default())
    }

    /// All panes of this server; `None` when the server is not running.
    pub async fn panes_if_running(&self) -> Result<Option<Vec<PaneInfo>>, TmuxError> {
        let format = "#{session_name}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_pid}\t#{pane_dead_signal}\t#{window_activity}";
        match self.run(&["list-panes", "-a", "-F", format]).await {
            Ok(out) => Ok(Some(
                out.lines()
                    .filter_map(parse_pane)
                    .map(with_zombie_status)
                    .collect(),
            )),
            Err(TmuxError::Failed { stderr, .. }) if no_server(&stderr) => Ok(None),
            // A running server without sessions (exit-empty is off) has no current target.
            Err(TmuxError::Failed { stderr, .. }) if stderr.contains("no current target") => {
                Ok(Some(Vec::new()))
            }
            Err(e) => Err(e),
        }
    }

    /// The pane's screen and up to `history` lines above it, as text (with escapes if `ansi`).
    pub async fn capture(
        &self,
        session: &str,
        history: u32,
        ansi: bool,
    ) -> Result<String, TmuxError> {
        let start = format!("-{history}");
        let target = format!("={session}:");
        let mut args = vec!["capture-pane", "-p", "-J", "-S", &start, "-t", &target];
        if ansi {
            args.push("-e");
        }
        let text = self.run(&args).await?;
        Ok(trim_trailing_blank_lines(&text))
    }

    /// The visible screen of each of `sessions` (as `capture` with no history), through one
    /// client for all: at a few hundred agents, one process a pass instead of one each. A
    /// session gone meanwhile makes tmux stop the sequence; then each is captured alone.
    pub async fn capture_screens(
        &self,
        sessions: &[String],
    ) -> Result<HashMap<String, String>, TmuxError> {
        // tmux takes a command of at most 16 KiB, so at most so many screens each time.
        const AT_ONCE: usize = 40;
        let mut screens = HashMap::new();
        for batch in sessions.chunks(AT_ONCE) {
            self.capture_batch(batch, &mut screens).await?;
        }
        Ok(screens)
    }

    async fn capture_batch(
        &self,
        sessions: &[String],
        screens: &mut HashMap<String, String>,
    ) -> Result<(), TmuxError> {
        // After each screen, a line no pane can print (it cannot know this pass's token).
        let end = format!(
            "pocketdev-screen-end-{}",
            crate::auth::tokens::random_token(12)
        );
        let targets: Vec<String> = sessions.iter().map(|s| format!("={s}:")).collect();
        let mut args = Vec::with_capacity(sessions.len() * 12);
        for target in &targets {
            if !args.is_empty() {
                args.push(";");
            }
            args.extend(["capture-pane", "-p", "-J", "-S", "-0", "-t", target]);
            args.extend([";", "display-message", "-p", &end]);
        }
        match self.run(&args).await {
            Ok(out) => {
                let end = format!("{end}\n");
                let ended = out
                    .split_inclusive(&end)
                    .filter_map(|piece| piece.strip_suffix(&end));
                for (session, screen) in sessions.iter().zip(ended) {
                    screens.insert(session.clone(), trim_trailing_blank_lines(screen));
                }
            }
            Err(TmuxError::Failed { .. }) => {
                for session in sessions {
                    if let Ok(screen) = self.capture(session, 0, false).await {
                        screens.insert(session.clone(), screen);
                    }
                }
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// The pane's columns and rows now.
    pub async fn pane_size(&self, session: &str) -> Result<(u16, u16), TmuxError> {
        let target = format!("={session}:");
        let out = self
            .run(&[
                "display-message",
                "-p",
                "-t",
                &target,
                "#{pane_width} #{pane_height}",
            ])
            .await?;
        let mut words = out.split_whitespace().map(str::parse::<u16>);
        match (words.next(), words.next()) {
            (Some(Ok(cols)), Some(Ok(rows))) => Ok((cols, rows)),
            _ => Err(TmuxError::Failed {
                command: "display-message".into(),
                stderr: format!("unexpected answer {:?}", out.trim()),
            }),
        }
    }

    /// The pane's history and screen rows now.
    pub async fn pane_rows(&self, session: &str) -> Result<PaneRows, TmuxError> {
        let target = format!("={session}:");
        let out = self
            .run(&[
                "display-message",
                "-p",
                "-t",
                &target,
                "#{history_size} #{pane_height}",
            ])
            .await?;
        parse_rows(&out).ok_or_else(|| TmuxError::Failed {
            command: "display-message".into(),
            stderr: format!("unexpected answer {:?}", out.trim()),
        })
    }

    /// The pane's lines as `capture-pane -J` joins them, oldest first, from tmux row `rows.0` to
    /// `rows.1` (tmux's numbering: 0 is the screen's top row, history rows are negative; tmux
    /// clamps to what exists), or the whole history and screen when `rows` is `None`; each goes
    /// to `each` as it is read, so a whole history is never held at once. Answers the pane's
    /// size at the moment of the capture.
    ///
    /// tmux says nothing of which rows a joined line took, so one client captures the range
    /// twice at one moment (tmux runs a command sequence without handling pane output between
    /// its commands): once row by row (`-N`, spaces kept, as `-J` keeps them), once joined; a
    /// joined line is then the concatenation of the next rows, which its length tells.
    pub async fn joined_lines(
        &self,
        session: &str,
        rows: Option<(i64, i64)>,
        mut each: impl FnMut(JoinedLine) + Send,
    ) -> Result<PaneRows, TmuxError> {
        let target = format!("={session}:");
        // A line no pane can print (it cannot know this capture's token).
        let mark = format!(
            "pocketdev-history-{}",
            crate::auth::tokens::random_token(12)
        );
        let (start, end) = match rows {
            Some((start, end)) => (start.to_string(), end.to_string()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let capture = |how| {
            [
                "capture-pane",
                "-p",
                how,
                "-S",
                start.as_str(),
                "-E",
                end.as_str(),
                "-t",
                target.as_str(),
                ";",
            ]
        };
        let mut args = vec![
            "display-message",
            "-p",
            "-t",
            &target,
            "#{history_size} #{pane_height}",
            ";",
        ];
        args.extend(capture("-N"));
        args.extend(["display-message", "-p", &mark, ";"]);
        args.extend(capture("-J"));
        // An empty line ends a last joined line that wraps on past the range (it has no line
        // feed of its own); otherwise it stands alone before the mark.
        args.extend(["display-message", "-p", "", ";"]);
        args.extend(["display-message", "-p", &mark]);

        let name = || "capture-pane".to_owned();
        let run = async {
            let mut child = self
                .command()?
                .args(&args)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => TmuxError::Missing,
                    _ => TmuxError::Failed {
                        command: name(),
                        stderr: e.to_string(),
                    },
                })?;
            let stdout = child.stdout.take().ok_or_else(|| TmuxError::Failed {
                command: name(),
                stderr: "no standard output".into(),
            })?;
            let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, stdout);
            let read = read_joined(&mut reader, mark.as_bytes(), rows, &mut each).await;
            // Whatever is left unread (after an error) must not keep the client waiting.
            drop(reader);
            let output = child
                .wait_with_output()
                .await
                .map_err(|e| TmuxError::Failed {
                    command: name(),
                    stderr: e.to_string(),
                })?;
            let failed = |stderr: String| TmuxError::Failed {
                command: name(),
                stderr,
            };
            if !output.status.success() {
                return Err(failed(
                    String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                ));
            }
            match read {
                Ok(Some(size)) => Ok(size),
                Ok(None) => Err(failed("the capture ended early".into())),
                Err(e) => Err(failed(e.to_string())),
            }
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| TmuxError::Timeout {
                command: name(),
                after: self.timeout,
            })?
    }

    /// Types `text` into the session: through a paste buffer loaded from the client's standard
    /// input, so what people type (prompts, passwords for a login) never sits in a command line.
    pub async fn send_text(&self, session: &str, text: &str) -> Result<(), TmuxError> {
        if text.is_empty() {
            return Ok(());
        }
        let target = format!("={session}:");
        let buffer = format!("pd-input-{}", crate::auth::tokens::random_token(8));
        // tmux 3.4 and later tell control clients of buffers made and deleted.
        let _calm = self.calm().await;
        self.run_with_input(&["load-buffer", "-b", &buffer, "-"], Some(text.as_bytes()))
            .await?;
        // -r: line feeds as typed; -d: the buffer goes once pasted.
        self.run(&["paste-buffer", "-d", "-r", "-b", &buffer, "-t", &target])
            .await
            .map(drop)
    }

    /// Sends named keys (`Enter`, `C-c`, `Escape`, `BTab`…).
    pub async fn send_keys(&self, session: &str, keys: &[&str]) -> Result<(), TmuxError> {
        let target = format!("={session}:");
        let mut args = vec!["send-keys", "-t", &target, "--"];
        args.extend_from_slice(keys);
        self.run(&args).await.map(drop)
    }

    /// Makes a session that holds nothing but an idle placeholder, unless it exists: what the
    /// terminal's control client attaches to (see `terminal::connection`).
    pub async fn ensure_session(&self, name: &str) -> Result<(), TmuxError> {
        let _calm = self.calm().await;
        let args = [
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "80",
            "-y",
            "24",
            "--",
            "cat",
        ];
        match self.run(&args).await {
            Err(TmuxError::Failed { stderr, .. }) if stderr.contains("duplicate session") => Ok(()),
            other => other.map(drop),
        }
    }

    /// A control-mode client (`tmux -C`) attached to `session`: commands are written to its
    /// stdin, the pane's output and command replies are read from its stdout, in order.
    pub fn control_client(&self, session: &str) -> Result<tokio::process::Child, TmuxError> {
        let target = format!("={session}");
        self.command()?
            .args(["-C", "attach-session", "-t", &target])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => TmuxError::Missing,
                _ => TmuxError::Failed {
                    command: "attach-session".into(),
                    stderr: e.to_string(),
                },
            })
    }

    pub async fn kill_session(&self, session: &str) -> Result<(), TmuxError> {
        let target = format!("={session}");
        let window = format!("={session}:");
        let _calm = self.calm().await;
        // The window first: a watched one is linked into the terminals' session too, where
        // killing this session alone would leave it (and its agent) running.
        let args = [
            "kill-window",
            "-t",
            &window,
            ";",
            "kill-session",
            "-t",
            &target,
        ];
        match self.run(&args).await {
            Err(TmuxError::Failed { stderr, .. })
                if stderr.contains("can't find")
                    || stderr.contains("no current target")
                    || no_server(&stderr) =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// Writes the server's configuration file; it applies when the server starts.
    pub fn write_config(&self, history_limit: u32) -> anyhow::Result<()> {
        // `exit-empty off`: a server stays up once started, so a new agent never meets one on
        // its way out (a session made while the server exits goes down with it).
        let config = format!(
            "# Written by pocketdev at start-up; edits are overwritten.\n\
             set -g history-limit {history_limit}\n\
             set -g remain-on-exit on\n\
             set -g status off\n\
             set -g escape-time 0\n\
             set -g focus-events on\n\
             set -g allow-rename off\n\
             set -g window-size latest\n\
             set -g default-terminal tmux-256color\n\
             set -g default-shell /bin/bash\n\
             set -g exit-empty off\n"
        );
        crate::layout::write_file_atomically(&self.config_file, config.as_bytes(), 0o644)
            .with_context(|| format!("cannot write {}", self.config_file.display()))
    }
}

/// A pane's rows at one moment: its history and its screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaneRows {
    pub history: u64,
    pub height: u64,
}

impl PaneRows {
    /// History and screen together.
    pub fn total(self) -> u64 {
        self.history + self.height
    }
}

/// `#{history_size} #{pane_height}`.
fn parse_rows(text: &str) -> Option<PaneRows> {
    let mut numbers = text.trim().split(' ').map(str::parse::<u64>);
    match (numbers.next(), numbers.next(), numbers.next()) {
        (Some(Ok(history)), Some(Ok(height)), None) => Some(PaneRows { history, height }),
        _ => None,
    }
}

/// One line as `capture-pane -J` joins the rows a long line wrapped into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedLine {
    /// Its text, cut at [`JOINED_LINE_MAX`] bytes (spaces at its end kept).
    pub text: String,
    /// Its length in bytes before any cut.
    pub len: usize,
    /// The row it starts on, in tmux's numbering (0: the screen's top row; history rows are
    /// negative).
    pub row: i64,
    /// How many rows it takes.
    pub rows: u64,
    /// It wraps on past the end of the captured rows.
    pub continues: bool,
    /// The bytes of its first row (to leave them out when the line began above the range).
    pub first_row_len: usize,
}

/// The most of one joined line kept: a minified file printed whole is one line of megabytes.
pub const JOINED_LINE_MAX: usize = 64 * 1024;

/// One line of a capture, cut at `cap` bytes.
struct CappedLine {
    head: Vec<u8>,
    len: usize,
}

/// Reads up to the next line feed (or the end), keeping at most `cap` bytes; `None` at the end.
async fn read_capped<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    cap: usize,
) -> std::io::Result<Option<CappedLine>> {
    use tokio::io::AsyncBufReadExt;
    let mut line = CappedLine {
        head: Vec::new(),
        len: 0,
    };
    let mut any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(any.then_some(line));
        }
        any = true;
        let (take, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(at) => (at, true),
            None => (buf.len(), false),
        };
        let room = cap.saturating_sub(line.head.len()).min(take);
        line.head.extend_from_slice(&buf[..room]);
        line.len += take;
        reader.consume(take + usize::from(found));
        if found {
            return Ok(Some(line));
        }
    }
}

/// Parses what [`Tmux::joined_lines`] asked for: the size line, the rows to the mark, the
/// joined lines to the mark. `None`: the output ended before it was whole.
async fn read_joined<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    mark: &[u8],
    rows: Option<(i64, i64)>,
    each: &mut (impl FnMut(JoinedLine) + Send),
) -> std::io::Result<Option<PaneRows>> {
    let is_mark = |line: &CappedLine| line.len == mark.len() && line.head == mark;
    let Some(size) = read_capped(reader, 64).await? else {
        return Ok(None);
    };
    let Some(size) = parse_rows(&String::from_utf8_lossy(&size.head)) else {
        return Ok(None);
    };
    let history = size.history;
    // The rows tmux captured: the asked range within what exists.
    let top = -i64::try_from(history).unwrap_or(i64::MAX);
    let first_row = rows.map_or(top, |(start, _)| start.max(top));

    let mut lens = Vec::new();
    loop {
        let Some(line) = read_capped(reader, mark.len()).await? else {
            return Ok(None);
        };
        if is_mark(&line) {
            break;
        }
        lens.push(line.len);
    }
    let mut next = 0usize;
    let mut misaligned = false;
    let mut emit = |line: CappedLine, continues: bool| {
        let start = next.min(lens.len());
        let mut taken = 0usize;
        while next < lens.len() && (next == start || taken < line.len) {
            taken += lens[next];
            next += 1;
        }
        misaligned |= taken != line.len;
        each(JoinedLine {
            text: String::from_utf8_lossy(&line.head).into_owned(),
            len: line.len,
            row: first_row + i64::try_from(start).unwrap_or(i64::MAX),
            rows: (next - start) as u64,
            continues,
            first_row_len: lens.get(start).copied().unwrap_or(0),
        });
    };
    let mut pending: Option<CappedLine> = None;
    loop {
        let Some(line) = read_capped(reader, JOINED_LINE_MAX).await? else {
            return Ok(None);
        };
        if is_mark(&line) {
            // The last line read is the empty one printed after the capture, unless the
            // capture's last line wrapped on and that empty line ended it.
            if let Some(last) = pending.filter(|l| l.len > 0) {
                emit(last, true);
            }
            break;
        }
        if let Some(previous) = pending.replace(line) {
            emit(previous, false);
        }
    }
    if misaligned {
        tracing::debug!(
            "a capture's joined lines did not line up with its rows; positions are approximate"
        );
    }
    Ok(Some(size))
}

/// Starts `command` with only what tmux needs: a server a client starts inherits it, so there
/// are no user bus variables with which a systemd-linked tmux could move panes out of the
/// account's limits.
fn clean_environment(command: &mut Command, account: Option<&AccountClient>) {
    command
        .env_clear()
        .env("PATH", super::profiles::search_path())
        .env("LANG", "C.UTF-8");
    if let Some(account) = account {
        command
            .env("HOME", &account.home)
            .env("SHELL", "/bin/bash")
            .current_dir("/");
    }
}

fn no_server(stderr: &str) -> bool {
    stderr.contains("no server running")
        || stderr.contains("error connecting")
        || stderr.contains("No such file")
}

/// The server went away while a client talked to it, or there is none any more.
pub fn server_gone(stderr: &str) -> bool {
    server_exiting(stderr) || no_server(stderr)
}

fn server_exiting(stderr: &str) -> bool {
    stderr.contains("server exited unexpectedly") || stderr.contains("lost server")
}

fn parse_pane(line: &str) -> Option<PaneInfo> {
    let mut fields = line.split('\t');
    let session = fields.next()?.to_owned();
    let dead = fields.next()? == "1";
    let exit_status = fields.next().and_then(|s| s.parse().ok());
    let pid = fields.next().and_then(|s| s.parse().ok());
    let exit_signal = fields.next().and_then(|s| s.parse().ok());
    let last_output = fields.next().and_then(|s| s.parse().ok());
    Some(PaneInfo {
        session,
        dead,
        exit_status,
        exit_signal,
        pid,
        last_output,
    })
}

/// Under load tmux sometimes leaves a dead pane's process unreaped and so never learns its
/// exit status; the kernel still shows a zombie's wait status in `/proc/<pid>/stat`.
fn with_zombie_status(mut pane: PaneInfo) -> PaneInfo {
    if pane.dead
        && pane.exit_code().is_none()
        && let Some(status) = pane
            .pid
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        && let Some(wait_status) = zombie_wait_status(&status)
    {
        let (signal, code) = (wait_status & 0x7f, (wait_status >> 8) & 0xff);
        if signal == 0 {
            pane.exit_status = Some(code);
        } else {
            pane.exit_signal = Some(signal);
        }
    }
    pane
}

/// The wait status (field 52) of a zombie's `/proc/<pid>/stat` line.
fn zombie_wait_status(stat: &str) -> Option<i32> {
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    (fields.first() == Some(&"Z")).then(|| fields.get(49)?.parse().ok())?
}

fn trim_trailing_blank_lines(text: &str) -> String {
    let trimmed = text.trim_end_matches(['\n', ' ']);
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}\n")
    }
}

/// tmux's version (`3.3a`), or `None` when tmux is not installed.
pub async fn version() -> Option<String> {
    let output = Command::new("tmux").arg("-V").output().await.ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().strip_prefix("tmux ").map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panes_parse() {
        assert_eq!(
            parse_pane("pd-k\t1\t\t5\t9").unwrap().exit_code(),
            Some(137)
        );
        let pane = parse_pane("pd-abc\t1\t3\t1234\t").unwrap();
        assert_eq!(
            pane,
            PaneInfo {
                session: "pd-abc".into(),
                dead: true,
                exit_status: Some(3),
                exit_signal: None,
                pid: Some(1234),
                last_output: None,
            }
        );
        let live = parse_pane("pd-x\t0\t\t99").unwrap();
        assert!(!live.dead);
        assert_eq!(live.exit_status, None);
    }

    #[test]
    fn zombie_exit_status_is_read_from_proc() {
        let zombie = "30585 (ba sh)) Z 30584 30585 30585 0 -1 4227084 653 62 0 0 0 0 0 0 20 0 1 0 553259 0 0 \
            18446744073709551615 0 0 0 0 0 0 0 3145732 65536 1 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 768";
        assert_eq!(zombie_wait_status(zombie), Some(768));
        assert_eq!(
            zombie_wait_status(&zombie.replace(" Z ", " S ")),
            None,
            "only zombies have one"
        );
        let pane = PaneInfo {
            session: "s".into(),
            dead: true,
            exit_status: None,
            exit_signal: None,
            pid: None,
            last_output: None,
        };
        assert_eq!(
            with_zombie_status(pane).exit_code(),
            None,
            "no pid, nothing to read"
        );
    }

    #[tokio::test]
    async fn pages_of_history_join_wrapped_lines_without_gaps_or_repeats() {
        if version().await.is_none() {
            return eprintln!("skipped: tmux is not installed");
        }
        let dir = tempfile::tempdir().unwrap();
        let tmux = Tmux {
            socket: dir.path().join("tmux.sock"),
            config_file: PathBuf::from("/dev/null"),
            timeout: Duration::from_secs(10),
            account: None,
            calm: Arc::default(),
        };
        // 20 columns: the long lines wrap into three and two rows.
        let long = format!("L{}", "x".repeat(44));
        let script = format!(
            "for i in $(seq 1 30); do echo \"n $i\"; [ $i = 7 ] && echo {long}; [ $i = 20 ] && echo {long}-2-{long}; done; echo end; exec sleep 60"
        );
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "pd-pages",
            "-x",
            "20",
            "-y",
            "5",
            "sh",
            "-c",
            &script,
        ])
        .await
        .unwrap();
        let wait = tokio::time::Instant::now() + Duration::from_secs(5);
        while !tmux
            .capture("pd-pages", 0, false)
            .await
            .unwrap()
            .contains("end")
            && tokio::time::Instant::now() < wait
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut expected: Vec<String> = Vec::new();
        for i in 1..=30 {
            expected.push(format!("n {i}"));
            if i == 7 {
                expected.push(long.clone());
            }
            if i == 20 {
                expected.push(format!("{long}-2-{long}"));
            }
        }
        expected.push("end".into());
        // Pages of one row read the long lines whole too.
        for size in [1, 2, 3, 7, 50] {
            let mut got: Vec<String> = Vec::new();
            let mut before = 0;
            let mut total = None;
            loop {
                let page = crate::instances::history::page(&tmux, "pd-pages", before, size)
                    .await
                    .unwrap();
                assert_eq!(*total.get_or_insert(page.total), page.total);
                let Some(first) = page.first else { break };
                assert!(first >= page.last.unwrap() && first >= before);
                got.splice(0..0, page.lines);
                before = first + 1;
            }
            assert_eq!(got, expected, "pages of {size} rows");
        }
        let found = crate::instances::history::search(&tmux, "pd-pages", "N 2")
            .await
            .unwrap();
        let texts: Vec<&str> = found.matches.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts[0], "n 29", "newest first: {texts:?}");
        assert_eq!(texts.last(), Some(&"n 2"));
        assert_eq!(
            texts.len(),
            11,
            "n 2, n 20 to n 29 and none else: {texts:?}"
        );
        // A match's position is where its page starts.
        let n20 = &found.matches.iter().find(|m| m.text == "n 20").unwrap();
        let page = crate::instances::history::page(&tmux, "pd-pages", n20.position - 2, 3)
            .await
            .unwrap();
        assert_eq!(page.lines.first().map(String::as_str), Some("n 20"));
        assert_eq!(page.first, Some(n20.position));
        let joined = crate::instances::history::search(&tmux, "pd-pages", "x-2-L")
            .await
            .unwrap();
        assert_eq!(joined.matches.len(), 1, "a wrapped line is searched whole");
        let _ = tmux.run(&["kill-server"]).await;
    }

    #[tokio::test]
    async fn many_screens_are_read_by_one_client_and_a_missing_session_costs_nothing() {
        if version().await.is_none() {
            return eprintln!("skipped: tmux is not installed");
        }
        let dir = tempfile::tempdir().unwrap();
        let tmux = Tmux {
            socket: dir.path().join("tmux.sock"),
            config_file: PathBuf::from("/dev/null"),
            timeout: Duration::from_secs(10),
            account: None,
            calm: Arc::default(),
        };
        let mut sessions = Vec::new();
        for n in 0..45 {
            let name = format!("pd-screens-{n}");
            let shown = format!("printf 'screen %s\\n' {n}; exec sleep 60");
            tmux.run(&[
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "80",
                "-y",
                "5",
                "sh",
                "-c",
                &shown,
            ])
            .await
            .unwrap();
            sessions.push(name);
        }
        let wait = tokio::time::Instant::now() + Duration::from_secs(5);
        let screens = loop {
            let screens = tmux.capture_screens(&sessions).await.unwrap();
            if screens.values().all(|s| s.starts_with("screen"))
                || tokio::time::Instant::now() > wait
            {
                break screens;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for (n, session) in sessions.iter().enumerate() {
            assert_eq!(screens[session], format!("screen {n}\n"), "{session}");
        }
        // One gone meanwhile: the others are still read.
        let mut asked = sessions.clone();
        asked.insert(3, "pd-screens-gone".to_owned());
        let screens = tmux.capture_screens(&asked).await.unwrap();
        assert_eq!(screens.len(), sessions.len());
        assert_eq!(screens["pd-screens-44"], "screen 44\n");
        let _ = tmux.run(&["kill-server"]).await;
    }
}
