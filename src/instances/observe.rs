//! What the instances need from whoever watches them (the monitor), as traits that watcher
//! implements, so that this feature never depends on the monitor: measured memory for
//! admission, a log of input for idleness, alerts for a vanished tmux server, and what is
//! known of a live instance (usage, status, preview) for the views and hook reports.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;

use super::store::Instance;

/// Resident memory of each live instance's process tree, as last measured; admission counts it.
pub trait MemoryView: Send + Sync {
    /// Bytes per instance id.
    fn measured(&self) -> HashMap<String, u64>;
    /// Running instances at rest at the last look (quiet, not asking, no process of theirs
    /// at work), each with when it was last active (seconds since the epoch): those a start
    /// that does not fit may suspend.
    fn resting(&self) -> HashMap<String, i64>;
}

/// Where input to an instance is noted (API commands, terminal keystrokes): it is not idle.
pub trait InputLog: Send + Sync {
    fn note_input(&self, id: &str);
}

/// Alerts the instances raise.
pub trait Alerts: Send + Sync {
    /// The tmux server of account `owner` stopped, taking `agents` running agents with it.
    fn server_gone(&self, owner: i64, agents: u32) -> BoxFuture<'_, ()>;
}

/// Who watches the instances, as the manager sees them.
#[derive(Clone)]
pub struct Observers {
    pub memory: Arc<dyn MemoryView>,
    pub input: Arc<dyn InputLog>,
    pub alerts: Arc<dyn Alerts>,
}

/// What a running agent is doing, as its watcher last judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Working,
    /// Waiting for its user: only where pocketdev can tell (Claude Code's prompt or hooks).
    Waiting,
    NeedsPermission,
    /// Quiet, and not known to wait for anyone: a shell at its prompt, or any program that
    /// is neither printing nor asking.
    Idle,
}

impl Status {
    /// The name clients see (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Working => "working",
            Status::Waiting => "waiting",
            Status::NeedsPermission => "needs_permission",
            Status::Idle => "idle",
        }
    }
}

/// What one instance used at the last sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub memory_bytes: u64,
    /// Of one core.
    pub cpu_percent: f32,
    /// Last output or input, seconds since the epoch.
    pub last_activity_at: Option<i64>,
}

/// What the watcher knows of each instance, and where agents' hook reports go.
pub trait Observer: Send + Sync {
    /// The instance's usage at the last sample, if it was sampled.
    fn usage(&self, id: &str) -> Option<Usage>;
    /// The published status of a running instance (`None` otherwise), with its reason.
    fn status(&self, instance: &Instance) -> Option<(Status, Option<String>)>;
    /// The last line of text on a live instance's screen at the last look, if any.
    fn preview(&self, id: &str) -> Option<String>;
    /// A hook report from the agent, already authenticated as this instance's.
    fn hook_event<'a>(
        self: Arc<Self>,
        instance: &'a Instance,
        event: &'a serde_json::Value,
    ) -> BoxFuture<'a, ()>;
}
