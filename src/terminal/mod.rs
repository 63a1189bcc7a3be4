//! Live terminals: the WebSocket bridge between an instance's tmux pane and its viewers.
//! `protocol` is the wire format, `control` speaks tmux's control mode, `screen` rebuilds what
//! a newcomer needs to see, `connection` is the one control client of each tmux server, `hub`
//! fans one pane out to many viewers, `viewer` is one socket.

pub mod connection;
pub mod control;
pub mod hub;
pub mod protocol;
pub mod routes;
pub mod screen;
pub mod tickets;
mod viewer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use tokio::sync::{mpsc, oneshot};

use crate::config::TerminalConfig;
use crate::db::Db;
use crate::instances::Manager;
use crate::instances::store::Instance;
use hub::{Command, Hub, Settings, Viewer};

pub use routes::router;

/// Commands a hub has queued before viewers wait to send more (each at most one message of a
/// viewer, 64 KiB of input: a few MiB per watched instance at worst).
const HUB_QUEUE: usize = 64;

/// The hubs of the instances being watched, and the tickets that open sockets.
pub struct Terminals {
    manager: Arc<Manager>,
    db: Db,
    config: TerminalConfig,
    hubs: Arc<Mutex<HashMap<String, Registered>>>,
    next_id: AtomicU64,
    pub tickets: tickets::Tickets,
    /// Deflate state for sockets while they compress or inflate a message.
    pub deflate: yawc::DeflatePool,
    /// The control client of each tmux server with a watched instance.
    connections: Arc<connection::Connections>,
}

struct Registered {
    generation: u64,
    commands: mpsc::Sender<Command>,
    viewers: Arc<std::sync::atomic::AtomicUsize>,
}

/// A viewer's link to the hub of its instance.
pub struct Membership {
    pub commands: mpsc::Sender<Command>,
    viewers: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("this instance already has {0} viewers")]
    Full(usize),
    #[error("the terminal could not be opened")]
    Unavailable,
}

impl Terminals {
    pub fn new(manager: Arc<Manager>, db: Db, config: TerminalConfig) -> Self {
        Self {
            tickets: tickets::Tickets::new(std::time::Duration::from_secs(config.ticket_ttl_secs)),
            manager,
            db,
            config,
            hubs: Arc::default(),
            next_id: AtomicU64::new(1),
            // About as many as messages compressed at once: one per runtime worker, and some.
            deflate: yawc::DeflatePool::new(8),
            connections: Arc::default(),
        }
    }

    pub fn config(&self) -> &TerminalConfig {
        &self.config
    }

    pub fn new_viewer_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Joins `viewer` to the hub of `instance`, starting the hub if none runs.
    pub async fn join(
        &self,
        instance: &Instance,
        viewer: Viewer,
        size: Option<(u16, u16)>,
    ) -> Result<Membership, JoinError> {
        // A hub that is stopping as we join drops the request; a fresh one takes it then.
        for _ in 0..3 {
            let (commands, viewers) = self.hub_for(instance)?;
            let (joined, done) = oneshot::channel();
            let command = Command::Join {
                viewer: viewer.clone(),
                size,
                joined,
            };
            if commands.send(command).await.is_ok() && done.await.is_ok() {
                return Ok(Membership { commands, viewers });
            }
            viewers.fetch_sub(1, Ordering::Relaxed);
        }
        Err(JoinError::Unavailable)
    }

    /// The hub's queue and viewer count, with this viewer counted.
    fn hub_for(
        &self,
        instance: &Instance,
    ) -> Result<(mpsc::Sender<Command>, Arc<std::sync::atomic::AtomicUsize>), JoinError> {
        // A running instance's account always has its server; without one there is nothing to show.
        let tmux = self
            .manager
            .tmux()
            .for_account(instance.owner)
            .ok_or(JoinError::Unavailable)?;
        let mut hubs = self.hubs.lock();
        if let Some(hub) = hubs.get(&instance.id)
            && !hub.commands.is_closed()
        {
            let max = self.config.max_viewers_per_instance;
            if hub.viewers.load(Ordering::Relaxed) >= max {
                return Err(JoinError::Full(max));
            }
            hub.viewers.fetch_add(1, Ordering::Relaxed);
            return Ok((hub.commands.clone(), hub.viewers.clone()));
        }
        let generation = self.new_viewer_id();
        let (commands, queue) = mpsc::channel(HUB_QUEUE);
        let viewers = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        hubs.insert(
            instance.id.clone(),
            Registered {
                generation,
                commands: commands.clone(),
                viewers: viewers.clone(),
            },
        );
        let registry = self.hubs.clone();
        let id = instance.id.clone();
        let may_stop = move |queue: &mpsc::Receiver<Command>| {
            let mut hubs = registry.lock();
            if !queue.is_empty() {
                return false;
            }
            if hubs.get(&id).is_some_and(|h| h.generation == generation) {
                hubs.remove(&id);
            }
            true
        };
        let settings = Settings {
            replay_lines: self.config.replay_lines,
            viewer_buffer: self.config.viewer_buffer_kb * 1024,
            activity: self.manager.clone(),
        };
        let events = self.manager.subscribe();
        let registry = self.hubs.clone();
        let (instance, db) = (instance.clone(), self.db.clone());
        let connections = self.connections.clone();
        tokio::spawn(async move {
            let id = instance.id.clone();
            Hub::run(
                instance,
                tmux,
                connections,
                settings,
                queue,
                events,
                may_stop,
                db,
            )
            .await;
            let mut hubs = registry.lock();
            if hubs.get(&id).is_some_and(|h| h.generation == generation) {
                hubs.remove(&id);
            }
        });
        Ok((commands, viewers))
    }

    /// Instances with a hub running now.
    pub fn watched(&self) -> usize {
        self.hubs.lock().len()
    }

    /// Open terminal sockets on every instance.
    pub fn viewers(&self) -> usize {
        self.hubs
            .lock()
            .values()
            .map(|h| h.viewers.load(Ordering::Relaxed))
            .sum()
    }
}
