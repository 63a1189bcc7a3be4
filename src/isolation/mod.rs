//! Keeps accounts apart from each other and from the server.
//!
//! When pocketdev runs as root, each account has its own Unix user (created with the account,
//! its uid never given out again), its own tmux server running as that user, and its files are
//! touched only with its identity (`fsid`). Root reads and writes only pocketdev's own data
//! (`<data>/server/`, 0700). Not as root, there is no OS isolation: accounts stay apart at the
//! API, but their agents run as the server's user — said loudly at start, by `doctor` and to
//! admins.

pub mod accounts;
pub mod cgroups;
pub mod confine;
pub mod fsid;
pub mod quota;
pub mod sandbox;
pub mod server;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::{IsolationConfig, IsolationMode};
use crate::db::Db;
use crate::error::AppError;
use crate::layout::Layout;

pub use fsid::{Acting, run_as};

/// Runs blocking `work` on the blocking pool, as `identity` when there is one (see
/// [`run_as`]); the one way file work for an account leaves the async handlers.
pub async fn blocking_as<T: Send + 'static>(
    identity: Option<Identity>,
    work: impl FnOnce(&Acting) -> T + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(move || run_as(identity, work)).await??)
}

/// What starting an account's tmux server needs besides tmux itself.
#[derive(Debug, Clone, Default)]
pub struct ServerStart {
    /// `cgroup.procs` files the starting process writes its pid to before it execs.
    pub procs: Vec<PathBuf>,
    /// RLIMIT_NPROC for the account, where there are no cgroups.
    pub nproc: Option<u32>,
    /// Its own /dev/shm, IPC and a /proc of its own processes (`server::enter_private_namespaces`).
    pub private_namespaces: bool,
    /// bubblewrap's arguments (before `--`), in `bwrap` mode.
    pub bwrap: Option<Vec<String>>,
    /// The Landlock ruleset the server applies to itself (outside bubblewrap).
    pub landlock: Option<sandbox::Allowed>,
}

/// The Unix identity an account's processes and file accesses run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// The isolation in force, as found at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    None,
    Users,
    Landlock,
    Bwrap,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Users => "users",
            Self::Landlock => "landlock",
            Self::Bwrap => "bwrap",
        }
    }
}

/// What `doctor` and admins are shown.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Report {
    pub mode: Mode,
    /// Why this mode, in words.
    pub reason: String,
    pub running_as_root: bool,
    /// The kernel's Landlock ABI; 0 when it has none.
    pub landlock_abi: u32,
    /// How each account's memory, process and CPU limits are enforced.
    pub cgroups: cgroups::Backend,
    /// Whether each account's tmux server gets its own /dev/shm, IPC and a /proc that shows
    /// only its processes (bubblewrap gives its own in `bwrap` mode).
    #[serde(default)]
    pub private_namespaces: bool,
    /// Why not, when not.
    #[serde(default)]
    pub namespaces_reason: Option<String>,
    /// Whether the data dir's file system enforces user quotas, so `isolation.disk_mb` holds.
    #[serde(default)]
    pub disk_quotas: bool,
    /// The per-account disk limit in force, or why there is none, in words.
    #[serde(default)]
    pub disk_quota: Option<String>,
    /// Accounts that cannot be used until an admin repairs them.
    #[serde(default)]
    pub unavailable: Vec<UnavailableAccount>,
}

/// An account whose Unix user or folders could not be prepared.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct UnavailableAccount {
    pub user_id: i64,
    pub reason: String,
}

impl Report {
    fn file(layout: &Layout) -> PathBuf {
        layout.server_dir().join("isolation.json")
    }

    /// Kept at every start, so `doctor` can tell what the running server decided.
    fn keep(&self, layout: &Layout) {
        let saved = serde_json::to_vec_pretty(self)
            .map_err(anyhow::Error::from)
            .and_then(|json| {
                crate::layout::write_file_atomically(&Self::file(layout), &json, 0o600)
            });
        if let Err(err) = saved {
            tracing::warn!(error = %format!("{err:#}"), "cannot keep the isolation report");
        }
    }

    /// What the server decided when it last started, if it ever did.
    pub fn last_decided(layout: &Layout) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(Self::file(layout)).ok()?).ok()
    }
}

/// Runs `launcher start-account-server --private-namespaces -- true`.
#[allow(clippy::disallowed_methods)] // once, at start-up, before the server serves
fn probe_private_namespaces(launcher: &Path) -> anyhow::Result<()> {
    let output = std::process::Command::new(launcher)
        .args(["start-account-server", "--private-namespaces", "--", "true"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", launcher.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        anyhow::bail!("{}", String::from_utf8_lossy(&output.stderr).trim())
    }
}

/// The newest Landlock ABI the kernel offers, 0 without Landlock.
#[allow(unsafe_code)]
pub fn landlock_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute, size 0 and the VERSION flag, the call only answers the ABI.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(abi).unwrap_or(0)
}

/// Decides the mode from the configuration and the host; a mode asked for explicitly that the
/// host cannot give is an error naming why.
pub fn decide(
    config: &IsolationConfig,
    root: bool,
    abi: u32,
    limits: cgroups::Backend,
) -> anyhow::Result<Report> {
    let report = |mode, reason: String| Report {
        mode,
        reason,
        running_as_root: root,
        landlock_abi: abi,
        cgroups: limits,
        private_namespaces: false,
        namespaces_reason: None,
        disk_quotas: false,
        disk_quota: None,
        unavailable: Vec::new(),
    };
    let needs_root = |mode: &str| {
        anyhow::anyhow!(
            "isolation.mode = \"{mode}\" needs pocketdev to run as root (it creates a Unix user per account); \
             run it as root, or set isolation.mode = \"none\" on a single-user machine"
        )
    };
    Ok(match config.mode {
        IsolationMode::None => report(
            Mode::None,
            "isolation.mode is \"none\": every agent runs as the server's user".into(),
        ),
        IsolationMode::Auto if !root => report(
            Mode::None,
            "pocketdev is not running as root, so every agent runs as the server's user and \
             could read other accounts' files; run it as root to isolate accounts"
                .into(),
        ),
        IsolationMode::Auto if abi >= 2 => report(
            Mode::Landlock,
            format!("running as root with Landlock ABI {abi}"),
        ),
        IsolationMode::Auto => report(
            Mode::Users,
            if abi == 1 {
                "Landlock ABI 1 only (it breaks renames across folders): Unix users without Landlock".into()
            } else {
                "the kernel has no Landlock: Unix users without Landlock".into()
            },
        ),
        IsolationMode::Users if !root => return Err(needs_root("users")),
        IsolationMode::Users => report(Mode::Users, "isolation.mode is \"users\"".into()),
        IsolationMode::Landlock if !root => return Err(needs_root("landlock")),
        IsolationMode::Landlock if abi < 2 => anyhow::bail!(
            "isolation.mode = \"landlock\" needs Landlock ABI 2 or later, and this kernel offers {abi}; \
             use a newer kernel or isolation.mode = \"users\""
        ),
        IsolationMode::Landlock => report(
            Mode::Landlock,
            format!("isolation.mode is \"landlock\" (ABI {abi})"),
        ),
        IsolationMode::Bwrap if !root => return Err(needs_root("bwrap")),
        IsolationMode::Bwrap => report(
            Mode::Bwrap,
            if abi >= 2 {
                format!(
                    "isolation.mode is \"bwrap\": a bubblewrap sandbox per account, Landlock ABI {abi} inside"
                )
            } else {
                "isolation.mode is \"bwrap\": a bubblewrap sandbox per account (no Landlock ABI 2 inside)".into()
            },
        ),
    })
}

pub struct Isolation {
    report: Report,
    cgroups: cgroups::Cgroups,
    config: IsolationConfig,
    layout: Arc<Layout>,
    db: Db,
    /// Accounts with a Unix user, and how their processes are confined.
    known: Mutex<HashMap<i64, Arc<confine::Confinement>>>,
    /// The agents' program folders, which accounts' sandboxes let them read and run.
    programs: Vec<PathBuf>,
    /// This install's id, marking the Unix users and the runtime folder it owns.
    install: String,
    creating: tokio::sync::Mutex<()>,
    machine_memory_bytes: u64,
    /// Accounts that could not be provisioned, with why.
    unavailable: Mutex<std::collections::BTreeMap<i64, String>>,
}

impl Isolation {
    /// Finds the mode and prepares the runtime directory; refuses what cannot be enforced.
    pub fn start(
        config: &IsolationConfig,
        layout: Arc<Layout>,
        db: Db,
        programs: Vec<PathBuf>,
    ) -> anyhow::Result<Self> {
        let root = rustix::process::geteuid().is_root();
        let cgroups = cgroups::Cgroups::detect(&config.cgroup);
        let mut report = decide(config, root, landlock_abi(), cgroups.backend())?;
        if report.mode != Mode::None {
            let reachable = reachable_by_accounts(layout.root()).and_then(|()| {
                reachable_by_accounts(config.run_dir.parent().unwrap_or(Path::new("/")))
            });
            match reachable {
                Ok(()) => {}
                // `auto` takes what works here, and says so; a mode asked for is refused.
                Err(err) if config.mode == IsolationMode::Auto => {
                    report.mode = Mode::None;
                    report.reason = format!("{err:#}; every agent runs as the server's user");
                }
                Err(err) => return Err(err),
            }
        }
        if report.mode != Mode::None {
            let megabytes = config.disk_mb;
            match quota::enforced(layout.root()) {
                Ok(()) => {
                    report.disk_quotas = true;
                    report.disk_quota = Some(if megabytes > 0 {
                        format!("each account may store {megabytes} MB (a user quota)")
                    } else {
                        "user quotas are on, but isolation.disk_mb is 0: no limit".into()
                    });
                }
                Err(why) if megabytes > 0 => {
                    tracing::warn!(reason = %why, "isolation.disk_mb cannot be enforced");
                    report.disk_quota = Some(format!(
                        "isolation.disk_mb is {megabytes}, but the data dir's file system cannot \
                         enforce it: {why}"
                    ));
                }
                Err(why) => report.disk_quota = Some(format!("no per-account disk limit: {why}")),
            }
        }
        let install = install_id(&layout)?;
        let isolation = Self {
            report,
            cgroups,
            config: config.clone(),
            layout,
            db,
            known: Mutex::new(HashMap::new()),
            programs,
            install,
            creating: tokio::sync::Mutex::new(()),
            unavailable: Mutex::new(std::collections::BTreeMap::new()),
            machine_memory_bytes: {
                let mut system = sysinfo::System::new();
                system.refresh_memory();
                system.total_memory()
            },
        };
        if let Some(why) = isolation.cgroups.unusable() {
            tracing::warn!(reason = why, "no cgroup limits for accounts");
        }
        isolation.report.keep(&isolation.layout);
        if isolation.bwrap() {
            sandbox::probe_bwrap()?;
        }
        if isolation.enabled() {
            isolation.prepare_run_dir()?;
            tracing::info!(mode = ?isolation.report.mode, reason = %isolation.report.reason, "accounts are isolated");
        } else {
            tracing::warn!(reason = %isolation.report.reason, "NO ISOLATION between accounts");
        }
        Ok(isolation)
    }

    /// The mode in force and the accounts that cannot be used, with why.
    pub fn report(&self) -> Report {
        let mut report = self.report.clone();
        report.unavailable = self
            .unavailable
            .lock()
            .iter()
            .map(|(&user_id, reason)| UnavailableAccount {
                user_id,
                reason: reason.clone(),
            })
            .collect();
        report
    }

    pub fn enabled(&self) -> bool {
        self.report.mode != Mode::None
    }

    /// Whether agents are confined by Landlock (also inside bubblewrap when the kernel can).
    pub fn landlock(&self) -> bool {
        self.report.mode == Mode::Landlock
            || (self.report.mode == Mode::Bwrap && self.report.landlock_abi >= 2)
    }

    pub fn bwrap(&self) -> bool {
        self.report.mode == Mode::Bwrap
    }

    pub fn run_dir(&self) -> &Path {
        &self.config.run_dir
    }

    /// The folder holding an account's tmux socket.
    pub fn socket_dir(&self, user_id: i64) -> PathBuf {
        self.config.run_dir.join("tmux").join(user_id.to_string())
    }

    /// The account's identity if it has one already (no database access).
    pub fn identity(&self, user_id: i64) -> Option<Identity> {
        self.confinement(user_id).map(|c| c.identity)
    }

    /// How the account's processes are confined, once it has its Unix user.
    pub fn confinement(&self, user_id: i64) -> Option<Arc<confine::Confinement>> {
        self.known.lock().get(&user_id).cloned()
    }

    /// Accounts with a Unix user, for reconciliation across their tmux servers.
    pub fn known(&self) -> Vec<(i64, Arc<confine::Confinement>)> {
        let mut all: Vec<_> = self
            .known
            .lock()
            .iter()
            .map(|(&id, confinement)| (id, confinement.clone()))
            .collect();
        all.sort_unstable_by_key(|&(id, _)| id);
        all
    }

    /// What an account's tmux server, its clients and so its agents may reach: its workspace,
    /// home and socket folder to write; the system, the launcher and the agents' programs to
    /// read and run.
    /// The account's workspace and home, as its own processes (the tmux server, its sandbox's
    /// rules and binds) are given them.
    #[allow(clippy::disallowed_methods)] // for the account's own processes only
    fn folders_for_account_processes(&self, user_id: i64) -> (PathBuf, PathBuf) {
        (
            self.layout
                .workspace(user_id)
                .for_account_process()
                .to_path_buf(),
            self.layout
                .home(user_id)
                .for_account_process()
                .to_path_buf(),
        )
    }

    fn account_allowed(&self, user_id: i64) -> sandbox::Allowed {
        let (workspace, home) = self.folders_for_account_processes(user_id);
        sandbox::Allowed {
            write: vec![workspace, home, self.socket_dir(user_id)],
            read: [self.layout.bin_dir(), self.config.run_dir.join("tmux.conf")]
                .into_iter()
                .chain(self.programs.iter().cloned())
                .collect(),
        }
    }

    /// The account's cgroups (created with its limits) and Landlock ruleset.
    fn confine(&self, user_id: i64, identity: Identity) -> anyhow::Result<confine::Confinement> {
        let procs = if self.cgroups.backend() == cgroups::Backend::Rlimit {
            Vec::new()
        } else {
            self.cgroups
                .prepare(&self.unix_name(user_id), self.limits())
                .context("cannot set up the account's cgroups")?
                .dirs()
                .iter()
                .map(|d| d.join("cgroup.procs"))
                .collect()
        };
        let ruleset = if self.landlock() {
            Some(sandbox::ruleset(&self.account_allowed(user_id))?)
        } else {
            None
        };
        Ok(confine::Confinement::new(identity, procs, ruleset))
    }

    fn prepare_run_dir(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        // Two servers sharing a runtime folder would share the accounts' tmux sockets.
        let marker = self.config.run_dir.join("install-id");
        match std::fs::read_to_string(&marker) {
            Ok(owner) if owner.trim() != self.install => anyhow::bail!(
                "isolation.run_dir {} belongs to another pocketdev server on this host (install {}); \
                 give this server a runtime folder of its own",
                self.config.run_dir.display(),
                owner.trim()
            ),
            _ => {}
        }
        for dir in [
            self.config.run_dir.clone(),
            self.config.run_dir.join("tmux"),
        ] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::os::unix::fs::lchown(&dir, Some(0), Some(0))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        }
        crate::layout::write_file_atomically(&marker, self.install.as_bytes(), 0o644)?;
        Ok(())
    }

    /// Makes sure the account has its Unix user and owns its folders; answers its identity, or
    /// `None` without isolation.
    pub async fn ensure(&self, user_id: i64) -> Result<Option<Identity>, AppError> {
        if !self.enabled() {
            return Ok(None);
        }
        if let Some(identity) = self.identity(user_id) {
            return Ok(Some(identity));
        }
        let _one_at_a_time = self.creating.lock().await;
        if let Some(identity) = self.identity(user_id) {
            return Ok(Some(identity));
        }
        let recorded = accounts::live(&self.db, user_id).await?;
        let next = accounts::next_free_uid(&self.db, self.config.uid_min).await?;
        let name = recorded
            .as_ref()
            .map_or_else(|| self.unix_name(user_id), |a| a.name.clone());
        let layout = self.layout.clone();
        let socket_dir = self.socket_dir(user_id);
        let max = self.config.uid_max;
        let wanted = recorded.as_ref().map(|a| a.identity.uid);
        let install = self.install.clone();
        let provisioned = tokio::task::spawn_blocking(move || {
            provision(
                &install,
                &layout,
                user_id,
                &name,
                wanted,
                next,
                max,
                &socket_dir,
            )
        })
        .await
        .map_err(anyhow::Error::from)?;
        let (identity, created) = match provisioned {
            Ok(done) => {
                self.unavailable.lock().remove(&user_id);
                done
            }
            Err(err) => {
                let reason = format!("{err:#}");
                self.unavailable.lock().insert(user_id, reason.clone());
                tracing::error!(user_id, error = %reason, "cannot provision the account");
                return Err(AppError::Unavailable(
                    "this account cannot be used right now: the server could not prepare its \
                     Unix user or folders; an admin finds the reason in the admin stats and \
                     with `pocketdev doctor`"
                        .into(),
                ));
            }
        };
        if recorded.is_none() {
            let name = self.unix_name(user_id);
            accounts::record(&self.db, user_id, &accounts::UnixAccount { name, identity }).await?;
        }
        if created {
            tracing::info!(
                user_id,
                uid = identity.uid,
                "created the account's Unix user"
            );
        }
        let confinement = match self.confine(user_id, identity) {
            Ok(confinement) => confinement,
            Err(err) => {
                let reason = format!("{err:#}");
                tracing::error!(user_id, error = %reason, "cannot confine the account");
                self.unavailable.lock().insert(user_id, reason);
                return Err(AppError::Unavailable(
                    "this account cannot be used right now: the server could not set up its \
                     limits and sandbox; an admin finds the reason in the admin stats and with \
                     `pocketdev doctor`"
                        .into(),
                ));
            }
        };
        if self.report.disk_quotas {
            // Set at every start, so a changed isolation.disk_mb (0 included) holds.
            let (root, megabytes) = (self.layout.root().to_path_buf(), self.config.disk_mb);
            let set =
                tokio::task::spawn_blocking(move || quota::limit(&root, identity.uid, megabytes))
                    .await
                    .map_err(anyhow::Error::from)?;
            if let Err(err) = set {
                tracing::warn!(user_id, error = %err, "cannot set the account's disk quota");
            }
        }
        self.known.lock().insert(user_id, Arc::new(confinement));
        Ok(Some(identity))
    }

    /// Gives every existing account its Unix user (at start-up).
    pub async fn ensure_all(&self) -> anyhow::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM users ORDER BY id")
            .fetch_all(&self.db)
            .await?;
        // One account's broken folders or user must not keep the server (and everyone else)
        // down: that account is unavailable, with the reason, until it can be provisioned.
        for id in ids {
            if let Err(err) = self.ensure(id).await {
                tracing::error!(user_id = id, error = %err.logged(), "account unavailable: cannot isolate it");
            }
        }
        self.report().keep(&self.layout);
        Ok(())
    }

    fn unix_name(&self, user_id: i64) -> String {
        format!("{}{user_id}", self.config.user_prefix)
    }

    fn limits(&self) -> cgroups::Limits {
        cgroups::Limits {
            memory_bytes: self.config.memory_mb * 1024 * 1024,
            tasks: self.config.tasks_max,
            cpu_percent: self.config.cpu_percent,
            all_accounts_memory_bytes: self.machine_memory_bytes / 100
                * u64::from(self.config.all_accounts_memory_percent),
        }
    }

    /// How an account's tmux server is started: in its cgroup (joined before it execs, so
    /// nothing of it ever runs outside), with its process limit where there are no cgroups,
    /// and inside its bubblewrap sandbox in `bwrap` mode.
    pub fn server_start(&self, user_id: i64) -> anyhow::Result<ServerStart> {
        let mut start = ServerStart::default();
        if self.cgroups.backend() == cgroups::Backend::Rlimit {
            start.nproc = (self.config.tasks_max > 0).then_some(self.config.tasks_max);
        } else {
            let group = self
                .cgroups
                .prepare(&self.unix_name(user_id), self.limits())?;
            start.procs = group
                .dirs()
                .iter()
                .map(|d| d.join("cgroup.procs"))
                .collect();
        }
        if self.landlock() && !self.bwrap() {
            start.landlock = Some(self.account_allowed(user_id));
        }
        start.private_namespaces = self.report.private_namespaces && !self.bwrap();
        if self.bwrap() {
            let (workspace, home) = self.folders_for_account_processes(user_id);
            start.bwrap = Some(sandbox::bwrap_args(&sandbox::Account {
                socket_dir: self.socket_dir(user_id),
                workspace,
                home,
                launcher_dir: self.layout.bin_dir(),
                tmux_config: self.config.run_dir.join("tmux.conf"),
                programs: self.programs.clone(),
            }));
        }
        Ok(start)
    }

    /// An instance's own group (created empty) and its path as processes see it, so that its
    /// agent and everything the agent starts (`nohup`, `setsid`, a dev server) are stopped
    /// together. `None` without isolation or where the host has no cgroup v2 hierarchy.
    pub fn instance_group(&self, user_id: i64, instance_id: &str) -> Option<(PathBuf, String)> {
        if !self.enabled() {
            return None;
        }
        let dir = self
            .cgroups
            .instance_dir(&self.unix_name(user_id), instance_id)?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot create an instance's cgroup");
                return None;
            }
        }
        let seen = self.cgroups.as_seen_by_processes(&dir)?;
        Some((dir, seen))
    }

    /// An instance's group, if it has one now.
    pub fn existing_instance_group(&self, user_id: i64, instance_id: &str) -> Option<PathBuf> {
        self.instance_group_dir(user_id, instance_id)
            .filter(|dir| dir.exists())
    }

    /// Where an instance's group is, or would be, where the host has cgroup v2.
    pub fn instance_group_dir(&self, user_id: i64, instance_id: &str) -> Option<PathBuf> {
        self.cgroups
            .instance_dir(&self.unix_name(user_id), instance_id)
    }

    /// Moves an instance's launcher into the instance's group. The launcher is found by the
    /// kernel, not by what the account's tmux server says (which could name any pid, and in a
    /// bubblewrap sandbox names pids of another namespace): the account's process whose
    /// command line carries this start's environment file, waiting in the pane.
    pub async fn move_into(
        &self,
        group: &Path,
        env_file: &Path,
        user_id: i64,
    ) -> anyhow::Result<()> {
        let identity = self
            .identity(user_id)
            .context("the account has no Unix user")?;
        let wanted = env_file.as_os_str().as_encoded_bytes().to_vec();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let wanted = wanted.clone();
            let found = tokio::task::spawn_blocking(move || {
                accounts::processes_of(identity.uid)
                    .into_iter()
                    .find(|pid| {
                        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                            let mut args = cmdline.split(|&b| b == 0);
                            args.any(|a| a == b"launch") && args.any(|a| a == wanted.as_slice())
                        })
                    })
            })
            .await?;
            if let Some(pid) = found {
                return std::fs::write(group.join("cgroup.procs"), pid.to_string())
                    .with_context(|| format!("cannot move {pid} into {}", group.display()));
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the agent's launcher never showed up");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether `pid` is one of the account's processes (checked with the kernel).
    pub fn owns_process(&self, user_id: i64, pid: u32) -> bool {
        match self.identity(user_id) {
            Some(identity) => accounts::process_is_of(pid, identity.uid),
            // Without isolation every agent runs as the server's user.
            None => !self.enabled(),
        }
    }

    /// Finds whether each account's tmux server can have its own namespaces here, by running
    /// the real start-up code once with the launcher accounts will run (a container or the
    /// service's sandbox may forbid it); without them accounts still run, and admins and
    /// `doctor` are told.
    pub fn check_private_namespaces(&mut self, launcher: &Path) {
        if self.bwrap() {
            self.report.private_namespaces = true;
        } else if self.enabled() {
            match probe_private_namespaces(launcher) {
                Ok(()) => self.report.private_namespaces = true,
                Err(err) => {
                    let why = format!("{err:#}");
                    tracing::warn!(reason = %why, "accounts share /dev/shm, IPC and the process list");
                    self.report.namespaces_reason = Some(why);
                }
            }
        }
        self.report.keep(&self.layout);
    }

    /// Sends `signal` to `pid` only if the kernel says it is the account's process. The process
    /// is pinned by a pidfd before the check, so a pid reused in between is never hit.
    pub fn signal_owned(&self, user_id: i64, pid: u32, signal: rustix::process::Signal) -> bool {
        use rustix::process::{Pid, PidfdFlags, pidfd_open, pidfd_send_signal};
        let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            return false;
        };
        let Ok(pinned) = pidfd_open(raw, PidfdFlags::empty()) else {
            return false;
        };
        self.owns_process(user_id, pid) && pidfd_send_signal(&pinned, signal).is_ok()
    }

    /// Copies the launcher where every account can run it (`<data>/bin`, root-owned, 0755):
    /// the server's own binary may sit in a folder accounts cannot reach. Refuses a folder on a
    /// file system mounted `noexec` (Debian's and Ubuntu's /run), where no account could start
    /// anything.
    pub fn install_launcher(&self, source: &Path) -> anyhow::Result<PathBuf> {
        install_launcher(source, &self.layout.bin_dir())
    }

    /// Ends every process of the account at once, its tmux server included.
    pub async fn kill_everything(&self, user_id: i64) -> anyhow::Result<usize> {
        let Some(identity) = self.identity(user_id) else {
            return Ok(0);
        };
        cgroups::kill(&self.config.cgroup, &self.unix_name(user_id));
        let left = tokio::task::spawn_blocking(move || {
            accounts::kill_all(identity.uid, std::time::Duration::from_secs(5))
        })
        .await?;
        Ok(left)
    }

    /// Removes the account's Unix user after killing its processes; its uid stays recorded so
    /// no one else ever gets it.
    pub async fn remove(&self, user_id: i64) -> anyhow::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let Some(account) = accounts::live(&self.db, user_id).await? else {
            return Ok(());
        };
        let uid = account.identity.uid;
        let socket_dir = self.socket_dir(user_id);
        cgroups::kill(&self.config.cgroup, &account.name);
        let groups = self.cgroups.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let left = accounts::kill_all(uid, std::time::Duration::from_secs(5));
            groups.remove(&account.name);
            if left > 0 {
                anyhow::bail!("{left} processes of uid {uid} would not die");
            }
            let _lock = accounts::AccountsLock::acquire()?;
            accounts::remove_user(&account.name)?;
            let _ = std::fs::remove_dir_all(&socket_dir);
            Ok(())
        })
        .await??;
        accounts::mark_removed(&self.db, uid).await?;
        self.known.lock().remove(&user_id);
        tracing::info!(user_id, uid, "removed the account's Unix user");
        Ok(())
    }
}

fn install_launcher(source: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let installed = dir.join("pocketdev");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    executable_here(dir)?;
    let bytes = std::fs::read(source)
        .with_context(|| format!("cannot read the launcher {}", source.display()))?;
    let current = std::fs::read(&installed).ok();
    if current.as_deref() != Some(bytes.as_slice()) {
        crate::layout::write_file_atomically(&installed, &bytes, 0o755)?;
    }
    Ok(installed)
}

/// Fails, naming the cause and the fix, when programs in `dir` cannot be run because its file
/// system is mounted `noexec`.
pub fn executable_here(dir: &Path) -> anyhow::Result<()> {
    let stat =
        rustix::fs::statvfs(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    if stat.f_flag.contains(rustix::fs::StatVfsMountFlags::NOEXEC) {
        anyhow::bail!(
            "{} is on a file system mounted noexec, so no account could run the agent launcher \
             there; put the data dir on a file system that allows programs (such as /var/lib/pocketdev)",
            dir.display()
        );
    }
    Ok(())
}

/// This install's id (`<data>/server/install-id`), made at its first start.
fn install_id(layout: &Layout) -> anyhow::Result<String> {
    let file = layout.server_dir().join("install-id");
    if let Ok(id) = std::fs::read_to_string(&file)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_owned());
    }
    let id = crate::auth::tokens::random_token(16)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect::<String>();
    crate::layout::write_private_file(&file, id.as_bytes())?;
    Ok(id)
}

/// Accounts reach their own folders by path, so every folder above `dir` must let others pass
/// (o+x): a data dir under a private home would leave agents outside their workspace.
pub fn reachable_by_accounts(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for folder in dir.ancestors() {
        let mode = std::fs::metadata(folder)
            .with_context(|| format!("cannot read {}", folder.display()))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            anyhow::bail!(
                "accounts cannot reach {} because {} (mode {:o}) does not let them pass; put it \
                 elsewhere (such as /var/lib/pocketdev), run `chmod o+x {}`, or set \
                 isolation.mode = \"none\" on a single-user machine",
                dir.display(),
                folder.display(),
                mode & 0o777,
                folder.display()
            );
        }
    }
    Ok(())
}

/// Creates (or re-creates, after a restore on a new machine) the Unix user and hands the
/// account its folders. Answers the identity and whether the user was created now.
#[allow(clippy::too_many_arguments)]
fn provision(
    install: &str,
    layout: &Layout,
    user_id: i64,
    name: &str,
    wanted: Option<u32>,
    next: u32,
    max: u32,
    socket_dir: &Path,
) -> anyhow::Result<(Identity, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let _lock = accounts::AccountsLock::acquire()?;
    let system = accounts::SystemIds::read()?;
    let (identity, created) = match system.user(name) {
        // A user this server never recorded is adopted only when this install made it (its
        // record lost with a restore of an older backup); another install's is refused.
        Some(_)
            if wanted.is_none() && system.comment(name) != Some(&accounts::comment(install)) =>
        {
            anyhow::bail!(
                "the Unix user {name} exists but this pocketdev server did not create it (another \
                 install on this host?); give this server its own isolation.user_prefix and uid range"
            )
        }
        Some(identity) if wanted.is_none_or(|uid| uid == identity.uid) => (identity, false),
        Some(identity) => anyhow::bail!(
            "the Unix user {name} exists with uid {} but the account was given uid {}",
            identity.uid,
            wanted.unwrap_or_default()
        ),
        None => {
            let uid = match wanted {
                Some(uid) => uid,
                None => system.free_id(next, max).with_context(|| {
                    format!("no free uid left in isolation.uid_min..uid_max ({next}..{max})")
                })?,
            };
            #[allow(clippy::disallowed_methods)] // useradd records it as the account's home
            let home = layout.home(user_id).for_account_process().to_path_buf();
            accounts::create_user(name, uid, &home, install)?;
            (Identity { uid, gid: uid }, true)
        }
    };
    layout.prepare_user(user_id)?;
    layout.hand_over(user_id, identity, created)?;
    // The agent's own temporary folder (TMPDIR), made as the account in the home it owns:
    // whatever the account put there instead (a link, a file) is its own business, and root
    // never follows it.
    let home = layout.home(user_id);
    run_as(Some(identity), move |acting| {
        use std::os::unix::fs::DirBuilderExt;
        let tmp = home.path(acting).join("tmp");
        match std::fs::DirBuilder::new().mode(0o700).create(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                tracing::warn!(user_id, error = %e, "cannot create the account's TMPDIR");
            }
            _ => {}
        }
    })?;
    std::fs::create_dir_all(socket_dir)?;
    std::os::unix::fs::lchown(socket_dir, Some(identity.uid), Some(identity.gid))?;
    std::fs::set_permissions(socket_dir, std::fs::Permissions::from_mode(0o700))?;
    Ok((identity, created))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: IsolationMode) -> IsolationConfig {
        IsolationConfig {
            mode,
            ..IsolationConfig::default()
        }
    }

    #[test]
    fn the_mode_follows_root_and_the_kernel() {
        use IsolationMode as M;
        let cases = [
            (M::Auto, false, 7, Some(Mode::None)),
            (M::Auto, true, 7, Some(Mode::Landlock)),
            (M::Auto, true, 2, Some(Mode::Landlock)),
            (M::Auto, true, 1, Some(Mode::Users)),
            (M::Auto, true, 0, Some(Mode::Users)),
            (M::None, true, 7, Some(Mode::None)),
            (M::Users, true, 0, Some(Mode::Users)),
            (M::Users, false, 7, None),
            (M::Landlock, true, 1, None),
            (M::Landlock, false, 7, None),
            (M::Landlock, true, 4, Some(Mode::Landlock)),
            (M::Bwrap, false, 7, None),
            (M::Bwrap, true, 7, Some(Mode::Bwrap)),
            (M::Bwrap, true, 0, Some(Mode::Bwrap)),
        ];
        for (asked, root, abi, expected) in cases {
            let decided = decide(&config(asked), root, abi, cgroups::Backend::V1);
            match expected {
                Some(mode) => assert_eq!(
                    decided.unwrap().mode,
                    mode,
                    "{asked:?} root={root} abi={abi}"
                ),
                None => {
                    let err = decided.unwrap_err().to_string();
                    assert!(err.contains("isolation.mode"), "{err}");
                }
            }
        }
    }

    #[test]
    fn folders_accounts_cannot_pass_are_named() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = reachable_by_accounts(&data).unwrap_err().to_string();
        assert!(
            err.contains(&tmp.path().display().to_string()) && err.contains("700"),
            "{err}"
        );
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        // The rest of the path (/tmp) lets everyone pass.
        reachable_by_accounts(&data).unwrap();
    }

    #[test]
    fn this_kernel_answers_its_landlock_abi() {
        // Any answer is fine; the probe must not fail or panic.
        let abi = landlock_abi();
        assert!(abi < 100, "{abi}");
    }
}
