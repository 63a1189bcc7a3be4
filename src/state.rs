//! Shared application state, cheap to clone into every handler.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::auth::tokens::TokenKeys;
use crate::config::Config;
use crate::db::Db;
use crate::http::rate_limit::RateLimits;
use crate::instances::Manager;
use crate::layout::Layout;
use crate::secrets::SecretBox;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub layout: Arc<Layout>,
    pub tokens: Arc<TokenKeys>,
    pub rate_limits: Arc<RateLimits>,
    pub secrets: Arc<SecretBox>,
    pub instances: Arc<Manager>,
    pub isolation: Arc<crate::isolation::Isolation>,
    pub terminals: Arc<crate::terminal::Terminals>,
    pub monitor: Arc<crate::monitor::Monitor>,
    pub metrics: Arc<crate::monitor::metrics::Metrics>,
    pub usage: Arc<crate::usage::Usage>,
    pub push: Arc<crate::push::Push>,
    /// tmux's version as found at start-up; `None` when tmux is missing.
    pub tmux_version: Option<Arc<str>>,
    pub started_at: Instant,
    /// Sessions as they end, for the sockets opened with them.
    pub signouts: crate::auth::signouts::SignOuts,
    /// Open live event streams, per user.
    pub events: Arc<crate::events::Streams>,
    /// Cancelled on shutdown; long-lived tasks and sockets watch it.
    pub shutdown: CancellationToken,
}

// Each feature's routes take only what they need, cut from the whole here.

impl axum::extract::FromRef<AppState> for crate::instances::routes::InstancesState {
    fn from_ref(state: &AppState) -> Self {
        Self {
            db: state.db.clone(),
            manager: state.instances.clone(),
            observer: state.monitor.clone(),
            rate_limits: state.rate_limits.clone(),
        }
    }
}

impl axum::extract::FromRef<AppState> for crate::monitor::routes::MonitorState {
    fn from_ref(state: &AppState) -> Self {
        Self {
            monitor: state.monitor.clone(),
            db: state.db.clone(),
            isolation: state.isolation.clone(),
        }
    }
}

impl axum::extract::FromRef<AppState> for crate::terminal::routes::TerminalState {
    fn from_ref(state: &AppState) -> Self {
        Self {
            db: state.db.clone(),
            terminals: state.terminals.clone(),
        }
    }
}
