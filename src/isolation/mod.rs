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
pub mod fsid;
pub mod sandbox;
pub mod server;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::{IsolationConfig, IsolationMode};
use crate::db::Db;
use crate::error::AppError;
use crate::layout::Layout;

pub use fsid::run_as;

/// Runs blocking `work` on the blocking pool, as `identity` when there is one (see
/// [`run_as`]); the one way file work for an account leaves the async handlers.
pub async fn blocking_as<T: Send + 'static>(
    identity: Option<Identity>,
    work: impl FnOnce() -> T + Send + 'static,
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
    /// bubblewrap's arguments (before `--`), in `bwrap` mode.
    pub bwrap: Option<Vec<String>>,
}

/// The Unix identity an account's processes and file accesses run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// The isolation in force, as found at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    None,
    Users,
    Landlock,
    Bwrap,
}

/// What `doctor` and admins are shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    pub mode: Mode,
    /// Why this mode, in words.
    pub reason: String,
    pub running_as_root: bool,
    /// The kernel's Landlock ABI; 0 when it has none.
    pub landlock_abi: u32,
    /// How each account's memory, process and CPU limits are enforced.
    pub cgroups: cgroups::Backend,
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
    known: Mutex<HashMap<i64, Identity>>,
    creating: tokio::sync::Mutex<()>,
}

impl Isolation {
    /// Finds the mode and prepares the runtime directory; refuses what cannot be enforced.
    pub fn start(config: &IsolationConfig, layout: Arc<Layout>, db: Db) -> anyhow::Result<Self> {
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
        let isolation = Self {
            report,
            cgroups,
            config: config.clone(),
            layout,
            db,
            known: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
        };
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

    pub fn report(&self) -> &Report {
        &self.report
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
        self.known
            .lock()
            .expect("known accounts")
            .get(&user_id)
            .copied()
    }

    /// Accounts with a Unix user, for reconciliation across their tmux servers.
    pub fn known(&self) -> Vec<(i64, Identity)> {
        let mut all: Vec<_> = self
            .known
            .lock()
            .expect("known accounts")
            .iter()
            .map(|(&id, &identity)| (id, identity))
            .collect();
        all.sort_unstable_by_key(|&(id, _)| id);
        all
    }

    fn prepare_run_dir(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for dir in [
            self.config.run_dir.clone(),
            self.config.run_dir.join("tmux"),
        ] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::os::unix::fs::lchown(&dir, Some(0), Some(0))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        }
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
        let (identity, created) = tokio::task::spawn_blocking(move || {
            provision(&layout, user_id, &name, wanted, next, max, &socket_dir)
        })
        .await
        .map_err(anyhow::Error::from)??;
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
        self.known
            .lock()
            .expect("known accounts")
            .insert(user_id, identity);
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
        for id in ids {
            self.ensure(id)
                .await
                .map_err(AppError::into_anyhow)
                .with_context(|| format!("cannot isolate account {id}"))?;
        }
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
        }
    }

    /// How an account's tmux server is started: in its cgroup (joined before it execs, so
    /// nothing of it ever runs outside), with its process limit where there are no cgroups,
    /// and inside its bubblewrap sandbox in `bwrap` mode.
    pub fn server_start(&self, user_id: i64, programs: &[PathBuf]) -> anyhow::Result<ServerStart> {
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
        if self.bwrap() {
            start.bwrap = Some(sandbox::bwrap_args(&sandbox::Account {
                socket_dir: self.socket_dir(user_id),
                workspace: self.layout.workspace(user_id),
                home: self.layout.home(user_id),
                run_dir: self.config.run_dir.clone(),
                programs: programs.to_vec(),
            }));
        }
        Ok(start)
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
        self.known.lock().expect("known accounts").remove(&user_id);
        tracing::info!(user_id, uid, "removed the account's Unix user");
        Ok(())
    }
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
fn provision(
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
            accounts::create_user(name, uid, &layout.home(user_id))?;
            (Identity { uid, gid: uid }, true)
        }
    };
    layout.prepare_user(user_id)?;
    for dir in [layout.workspace(user_id), layout.home(user_id)] {
        if created {
            accounts::chown_tree(&dir, identity)?;
        } else {
            std::os::unix::fs::lchown(&dir, Some(identity.uid), Some(identity.gid))?;
        }
    }
    // The agent's own temporary folder (TMPDIR), private to it.
    let tmp = layout.home(user_id).join("tmp");
    if !tmp.exists() {
        std::fs::create_dir(&tmp)?;
        std::os::unix::fs::lchown(&tmp, Some(identity.uid), Some(identity.gid))?;
    }
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
