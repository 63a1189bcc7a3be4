//! One tmux control client per tmux server, shared by every hub watching an instance there.
//!
//! The client attaches to a session of its own ([`SESSION`], an idle placeholder); each hub
//! links its instance's window into that session while it has viewers, and tmux then reports
//! the pane's output to this one client. A tmux server walks all its clients for every pane on
//! every turn of its loop, so a client per watched instance made each turn cost panes ×
//! clients: with 200 busy agents watched, keystrokes took several times longer to echo than
//! with one client. One client also means one attach per server rather than one per terminal
//! opened, and attaching is when tmux 3.3 and 3.5 could crash (see `Tmux::calm`).
//!
//! Everything arrives in one ordered stream: output is routed to hubs by pane, size changes by
//! window, and replies by the order their commands were written in, which the writer records
//! as it writes.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::mpsc;

use super::control::{self, Event};
use crate::instances::tmux::Tmux;

/// The session the shared client is attached to; watched windows are linked into it. Not an
/// instance's (`pd-…`), so reconciliation leaves it alone.
pub const SESSION: &str = "pocketdev-terminals";
/// How long tmux gets to attach the client.
const ATTACH_WAIT: Duration = Duration::from_secs(10);
/// How long a client whose input has ended gets to go by itself.
const DETACH_WAIT: Duration = Duration::from_millis(100);
/// Writes (each a hub's commands) queued for tmux across the server's hubs.
const WRITE_QUEUE: usize = 1024;
/// Events queued for one hub before the reader waits for it.
const HUB_EVENTS: usize = 1024;

/// What the connection passes to a hub.
#[derive(Debug)]
pub enum HubEvent {
    Output(Vec<u8>),
    /// The reply to the hub's next command, in the order it sent them.
    Reply {
        ok: bool,
        lines: Vec<Vec<u8>>,
    },
    Resized {
        cols: u16,
        rows: u16,
    },
    /// The window went, or the client did.
    Closed,
}

struct Write {
    hub: u64,
    commands: String,
    lines: usize,
    /// The hub's count of bytes waiting to be written, which the writer lowers.
    queued: Arc<AtomicUsize>,
    /// Written only if this window is not another hub's by then: a hub letting go of its
    /// window must not undo the link of the hub that took over from it.
    unless_taken: Option<u32>,
}

#[derive(Default)]
struct Routes {
    hubs: HashMap<u64, mpsc::Sender<HubEvent>>,
    panes: HashMap<u32, u64>,
    windows: HashMap<u32, u64>,
    /// The hub each outstanding reply belongs to, in the order the commands were written.
    replies: VecDeque<u64>,
}

pub struct Connection {
    writes: mpsc::Sender<Write>,
    routes: Arc<Mutex<Routes>>,
    closed: Arc<AtomicBool>,
    next_hub: AtomicU64,
}

impl Connection {
    /// A hub's own stream of events.
    pub fn register(&self) -> (u64, mpsc::Receiver<HubEvent>) {
        let hub = self.next_hub.fetch_add(1, Ordering::Relaxed);
        let (events, receiver) = mpsc::channel(HUB_EVENTS);
        self.routes.lock().hubs.insert(hub, events);
        (hub, receiver)
    }

    /// Output of `pane` and news of `window` go to `hub` from now on.
    pub fn route(&self, hub: u64, pane: u32, window: u32) {
        let mut routes = self.routes.lock();
        routes.panes.insert(pane, hub);
        routes.windows.insert(window, hub);
    }

    /// The hub hears nothing more; replies still due to it are dropped.
    pub fn deregister(&self, hub: u64) {
        let mut routes = self.routes.lock();
        routes.hubs.remove(&hub);
        routes.panes.retain(|_, h| *h != hub);
        routes.windows.retain(|_, h| *h != hub);
    }

    /// Queues `commands` for tmux; false when the queue is full or the client is gone.
    /// `queued` was already raised by their length; the writer lowers it. With `unless_taken`,
    /// the commands are dropped if by the time they would be written another hub has routed
    /// that window to itself.
    pub fn send(
        &self,
        hub: u64,
        commands: String,
        queued: &Arc<AtomicUsize>,
        unless_taken: Option<u32>,
    ) -> bool {
        let write = Write {
            hub,
            lines: commands.lines().count(),
            commands,
            queued: queued.clone(),
            unless_taken,
        };
        self.writes.try_send(write).is_ok()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.writes.is_closed()
    }

    /// Attaches a control client to the server's terminal session (made if missing).
    async fn open(tmux: &Tmux) -> Result<Arc<Connection>, String> {
        tmux.ensure_session(SESSION)
            .await
            .map_err(|err| err.to_string())?;
        // A control client half connected must hear no news: see `Tmux::calm`.
        let calm = tmux.calm().await;
        let mut child = tmux
            .control_client(SESSION)
            .map_err(|err| err.to_string())?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err("the control client has no pipes".into());
        };
        let mut reader = BufReader::with_capacity(64 * 1024, stdout);
        let mut parser = control::Reader::default();
        // tmux reads commands before the attach is complete, and runs them against no session.
        if !attached(&mut reader, &mut parser).await {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err("the tmux control client did not attach".into());
        }
        drop(calm);
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let routes = Arc::new(Mutex::new(Routes::default()));
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(read_events(reader, parser, routes.clone(), closed.clone()));
        tokio::spawn(write_commands(
            stdin,
            child,
            queue,
            routes.clone(),
            tmux.clone(),
        ));
        Ok(Arc::new(Connection {
            writes,
            routes,
            closed,
            next_hub: AtomicU64::new(1),
        }))
    }
}

/// The open connection of each tmux server, by socket. A connection lives while a hub holds it.
#[derive(Default)]
pub struct Connections {
    slots: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<Weak<Connection>>>>>,
}

impl Connections {
    /// The server's connection, opened if none is.
    pub async fn get(&self, tmux: &Tmux) -> Result<Arc<Connection>, String> {
        let slot = self
            .slots
            .lock()
            .entry(tmux.socket().to_path_buf())
            .or_default()
            .clone();
        // One opening at a time per server; other servers are not held up.
        let mut slot = slot.lock().await;
        if let Some(connection) = slot.upgrade()
            && !connection.is_closed()
        {
            return Ok(connection);
        }
        let connection = Connection::open(tmux).await?;
        *slot = Arc::downgrade(&connection);
        Ok(connection)
    }
}

/// Whose an event from tmux is.
enum To {
    Pane(u32),
    Window(u32),
    /// The hub whose command is the oldest still unanswered.
    NextReply,
}

/// Routes what tmux says to the hubs, until the client ends; then every hub hears `Closed`.
async fn read_events(
    mut reader: BufReader<ChildStdout>,
    mut parser: control::Reader,
    routes: Arc<Mutex<Routes>>,
    closed: Arc<AtomicBool>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match next_line(&mut reader, &mut line).await {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        let (to, event) = match parser.feed(&line) {
            Ok(Some(Event::Output { pane, bytes })) => (To::Pane(pane), HubEvent::Output(bytes)),
            Ok(Some(Event::Reply { ok, lines })) => (To::NextReply, HubEvent::Reply { ok, lines }),
            Ok(Some(Event::Resized { window, cols, rows })) => {
                (To::Window(window), HubEvent::Resized { cols, rows })
            }
            Ok(Some(Event::WindowClosed { window })) => (To::Window(window), HubEvent::Closed),
            Ok(Some(Event::Exit)) | Err(control::TooLarge) => break,
            Ok(Some(Event::Attached) | None) => continue,
        };
        // One look at the routes per event, on the path every byte of output takes.
        let events = {
            let mut routes = routes.lock();
            let hub = match to {
                To::Pane(pane) => routes.panes.get(&pane).copied(),
                To::Window(window) => routes.windows.get(&window).copied(),
                To::NextReply => routes.replies.pop_front(),
            };
            hub.and_then(|hub| routes.hubs.get(&hub).cloned())
        };
        if let Some(events) = events {
            let _ = events.send(event).await;
        }
    }
    closed.store(true, Ordering::Relaxed);
    let hubs: Vec<_> = routes.lock().hubs.values().cloned().collect();
    for events in hubs {
        let _ = events.send(HubEvent::Closed).await;
    }
}

/// Writes the hubs' commands in order, noting whose replies are due. Once every hub has let go
/// of the connection, ends the client.
async fn write_commands(
    mut stdin: ChildStdin,
    mut child: Child,
    mut queue: mpsc::Receiver<Write>,
    routes: Arc<Mutex<Routes>>,
    tmux: Tmux,
) {
    while let Some(write) = queue.recv().await {
        {
            let mut routes = routes.lock();
            let taken = write.unless_taken.is_some_and(|window| {
                routes
                    .windows
                    .get(&window)
                    .is_some_and(|&hub| hub != write.hub)
            });
            if taken {
                write
                    .queued
                    .fetch_sub(write.commands.len(), Ordering::Relaxed);
                continue;
            }
            routes
                .replies
                .extend(std::iter::repeat_n(write.hub, write.lines));
        }
        let written = stdin.write_all(write.commands.as_bytes()).await;
        write
            .queued
            .fetch_sub(write.commands.len(), Ordering::Relaxed);
        if written.is_err() {
            break;
        }
    }
    // The client going is news for every other control client: calm until it is gone. (It is
    // ended rather than waited for: while calm is held, a closed client lingers.)
    let calm = tmux.calm().await;
    drop(stdin);
    if tokio::time::timeout(DETACH_WAIT, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    drop(calm);
}

/// Reads one line (without its newline) into `line`, which keeps partial input between calls.
/// False at the end of the stream.
async fn next_line(
    reader: &mut BufReader<ChildStdout>,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(false);
        }
        if let Some(end) = available.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&available[..end]);
            reader.consume(end + 1);
            return Ok(true);
        }
        let taken = available.len();
        line.extend_from_slice(available);
        reader.consume(taken);
        if line.len() > control::MAX_REPLY {
            return Err(std::io::Error::other("a line from tmux is too long"));
        }
    }
}

/// Waits for the control client to report its attachment.
async fn attached(reader: &mut BufReader<ChildStdout>, parser: &mut control::Reader) -> bool {
    let mut line = Vec::new();
    let wait = async {
        loop {
            line.clear();
            if !next_line(reader, &mut line).await.unwrap_or(false) {
                return false;
            }
            match parser.feed(&line) {
                Ok(Some(Event::Attached)) => return true,
                Ok(Some(Event::Exit)) | Err(_) => return false,
                _ => {}
            }
        }
    };
    tokio::time::timeout(ATTACH_WAIT, wait)
        .await
        .unwrap_or(false)
}
