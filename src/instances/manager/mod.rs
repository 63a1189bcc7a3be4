//! The instance manager: the one owner of every instance's lifecycle. This file holds the
//! `Manager` itself, its events and small accessors; the work is split by job:
//! [`admission`] (limits and memory), [`launch`] (the pure launch plan), [`lifecycle`] (create,
//! start, stop, restart, delete), [`reconcile`] (agreeing with tmux) and [`input`] (keys in,
//! screens out).

mod admission;
mod input;
pub mod launch;
mod lifecycle;
mod reconcile;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;

use super::observe::Observers;
use super::profiles::{Profile, ProfileKind};
use super::store::{self, Instance};
use super::tmux::{Tmux, TmuxError, TmuxServers};
use crate::config::Config;
use crate::db::Db;
use crate::error::AppError;
use crate::isolation::Isolation;
use crate::layout::Layout;
use crate::secrets::SecretBox;

pub use admission::ModelInfo;
pub use input::{Input, Sent};
pub use launch::Launcher;
pub use lifecycle::{Created, GitRequest, check_name};

/// Lines of history kept with an ended instance's last screen.
const LAST_SCREEN_LINES: u32 = 2000;
const DEFAULT_COLS: u16 = 120;
const DEFAULT_ROWS: u16 = 40;

pub struct Manager {
    db: Db,
    layout: Arc<Layout>,
    config: Arc<Config>,
    secrets: Arc<SecretBox>,
    tmux: TmuxServers,
    isolation: Arc<Isolation>,
    /// Worktrees for instances started on a branch.
    git: crate::git::Git,
    /// The launcher program and where agents report hook events.
    launcher: Launcher,
    /// Held while counting and inserting, so concurrent creates cannot overshoot a limit.
    admission: tokio::sync::Mutex<()>,
    /// Instances an operation is working on; the reconciler leaves them alone meanwhile.
    busy: Mutex<HashSet<String>>,
    /// Orphan sessions already reported, so the log says it once.
    reported_orphans: Mutex<HashSet<String>>,
    /// Dead panes whose exit status tmux has not collected yet, with the passes seen so.
    awaiting_status: Mutex<HashMap<String, u8>>,
    /// Live instances that listings which began after they started did not show, and how many
    /// such listings in a row: two make one lost.
    missed: Mutex<HashMap<String, u8>>,
    /// State changes, for live terminals and event streams.
    events: tokio::sync::broadcast::Sender<InstanceEvent>,
    /// Who watches the instances (the monitor): measured memory, noted input, alerts.
    observers: Observers,
    /// Permission dialogs on screens, and how each profile draws them.
    pub(super) approvals: super::approvals::Registry,
    /// Resumed instances whose queued input waits for the agent to be ready; input for them
    /// queues behind it (held across the queue's reads and writes, so none is skipped).
    delivering: tokio::sync::Mutex<HashSet<String>>,
    /// Instances resumed by the reconciler after their session went, and when: one that goes
    /// again soon after is left suspended rather than resumed in a loop.
    auto_resumed: Mutex<HashMap<String, std::time::Instant>>,
}

/// A change of an instance's state, as live terminals learn of it.
// Most events are whole instances; boxing them would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum InstanceEvent {
    Changed(Instance),
    Deleted(String),
    /// A running agent's status changed (`working`, `waiting`, `needs_permission`).
    Activity {
        id: String,
        status: String,
        reason: Option<String>,
    },
    /// A permission dialog appeared, changed, or went (`None`) on a running agent's screen.
    Approval {
        id: String,
        approval: Option<super::approvals::PendingApproval>,
    },
}

impl InstanceEvent {
    pub fn id(&self) -> &str {
        match self {
            Self::Changed(instance) => &instance.id,
            Self::Deleted(id) | Self::Activity { id, .. } | Self::Approval { id, .. } => id,
        }
    }
}

/// Marks an instance busy until dropped.
struct BusyGuard<'a> {
    manager: &'a Manager,
    id: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.manager.busy.lock().remove(&self.id);
    }
}

impl Manager {
    pub fn new(
        db: Db,
        layout: Arc<Layout>,
        config: Arc<Config>,
        secrets: Arc<SecretBox>,
        isolation: Arc<Isolation>,
        launcher: Launcher,
        observers: Observers,
    ) -> anyhow::Result<Self> {
        let socket = config
            .tmux
            .socket
            .clone()
            .unwrap_or_else(|| layout.server_dir().join("tmux.sock"));
        // Isolated accounts' servers read a root-owned config they can reach, never their own.
        let tmux_config = if isolation.enabled() {
            isolation.run_dir().join("tmux.conf")
        } else {
            layout.server_dir().join("tmux.conf")
        };
        let tmux = TmuxServers::new(
            socket,
            tmux_config,
            Duration::from_secs(config.tmux.command_timeout_secs.max(1)),
            isolation.clone(),
            layout.clone(),
        );
        tmux.write_config(config.tmux.history_limit)?;
        let run_dir = layout.server_dir().join("run");
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        let approvals = super::approvals::Registry::new(&config.profiles)?;
        Ok(Self {
            db,
            layout: layout.clone(),
            config,
            secrets,
            tmux,
            git: crate::git::Git::new(isolation.clone(), layout),
            isolation,
            launcher,
            admission: tokio::sync::Mutex::new(()),
            busy: Mutex::new(HashSet::new()),
            reported_orphans: Mutex::new(HashSet::new()),
            awaiting_status: Mutex::new(HashMap::new()),
            missed: Mutex::new(HashMap::new()),
            events: tokio::sync::broadcast::channel(256).0,
            observers,
            approvals,
            delivering: tokio::sync::Mutex::new(HashSet::new()),
            auto_resumed: Mutex::new(HashMap::new()),
        })
    }

    /// Tells listeners (terminal viewers) that a running agent's status changed.
    pub fn publish_activity(&self, id: &str, status: &str, reason: Option<&str>) {
        let _ = self.events.send(InstanceEvent::Activity {
            id: id.to_owned(),
            status: status.to_owned(),
            reason: reason.map(str::to_owned),
        });
    }

    /// What an idle timeout does to agents of `profile`.
    pub fn idle_policy(&self, profile: &str) -> super::profiles::IdlePolicy {
        self.config
            .profiles
            .get(profile)
            .map_or(super::profiles::IdlePolicy::Stop, Profile::idle_policy)
    }

    pub fn profile_kind(&self, profile: &str) -> ProfileKind {
        self.config
            .profiles
            .get(profile)
            .map_or(ProfileKind::Generic, |p| p.kind)
    }

    /// Records that someone typed into the instance (it is not idle); the monitor keeps it.
    pub fn note_input(&self, id: &str) {
        self.observers.input.note_input(id);
    }

    /// How long `profile` may sit without input or output before it is stopped.
    pub fn idle_timeout(&self, profile: &str) -> Option<Duration> {
        let minutes = self
            .config
            .profiles
            .get(profile)
            .and_then(|p| p.idle_timeout_minutes)
            .unwrap_or(self.config.limits.idle_timeout_minutes);
        Duration::try_from_secs_f64(minutes * 60.0)
            .ok()
            .filter(|d| !d.is_zero())
    }

    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    pub(super) fn events(&self) -> &tokio::sync::broadcast::Sender<InstanceEvent> {
        &self.events
    }

    /// State changes of every instance from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<InstanceEvent> {
        self.events.subscribe()
    }

    /// Tells listeners the instance's current record.
    pub async fn publish(&self, id: &str) -> Result<(), AppError> {
        if self.events.receiver_count() > 0 {
            let event = match store::get(&self.db, id).await? {
                Some(instance) => InstanceEvent::Changed(instance),
                None => InstanceEvent::Deleted(id.to_owned()),
            };
            let _ = self.events.send(event);
        }
        Ok(())
    }

    pub fn tmux(&self) -> &TmuxServers {
        &self.tmux
    }

    /// The folders of every configured agent's program, which an account's bubblewrap sandbox
    /// shows; nothing without one.
    /// The tmux server of `user_id`, giving the account its Unix user first if it has none.
    pub async fn tmux_for(&self, user_id: i64) -> Result<Tmux, AppError> {
        self.isolation.ensure(user_id).await?;
        self.tmux.for_account(user_id).ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("account {user_id} has no tmux server"))
        })
    }

    fn busy(&self, id: &str) -> Result<BusyGuard<'_>, AppError> {
        if !self.busy.lock().insert(id.to_owned()) {
            return Err(AppError::Conflict(
                "another operation on this instance is in progress; try again".into(),
            ));
        }
        Ok(BusyGuard {
            manager: self,
            id: id.to_owned(),
        })
    }

    fn profile(&self, id: &str) -> Option<&Profile> {
        self.config.profiles.get(id).filter(|p| p.enabled)
    }

    async fn secrets_of(&self, user_id: i64) -> Result<BTreeMap<String, String>, AppError> {
        let mut out = BTreeMap::new();
        for row in crate::secrets::store::sealed(&self.db, user_id).await? {
            out.insert(
                row.name.clone(),
                self.secrets
                    .open(user_id, &row.name, &row.nonce, &row.ciphertext)?,
            );
        }
        Ok(out)
    }
}

pub(super) fn tmux_error(err: TmuxError) -> AppError {
    match err {
        TmuxError::Missing => AppError::Unavailable("tmux is not installed on the server".into()),
        TmuxError::Timeout { .. } => AppError::Unavailable(
            "this account's tmux server does not answer (were its processes stopped?); what was asked may still happen once it answers again".into(),
        ),
        TmuxError::Failed { stderr, .. } if super::tmux::server_gone(&stderr) => {
            AppError::Unavailable(
                "this account's tmux server stopped while it was asked (its agents went with it); \
                 try again: it starts anew"
                    .into(),
            )
        }
        other => AppError::Internal(other.into()),
    }
}
