//! One hub per watched instance: the instance's pane, seen through its tmux server's shared
//! control client (see `connection`), fanned out to every viewer, each through a bounded queue. The hub never waits on a viewer: one that falls behind
//! stops receiving output and later gets a fresh snapshot instead (or is dropped if it never
//! catches up), so a slow phone can neither grow the server's memory nor slow the agent or the
//! other viewers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::connection::{self, Connection, Connections, HubEvent};
use super::control;
use super::protocol::ServerMessage;
use super::screen::{self, Modes};
use crate::instances::manager::InstanceEvent;
use crate::instances::store::{Instance, State};
use crate::instances::tmux::Tmux;

/// Output gathered from tmux before it is passed on, at most.
const BATCH: usize = 32 * 1024;
/// How often lagging viewers are looked at.
const LAG_CHECK: Duration = Duration::from_millis(100);
/// A viewer that cannot take a snapshot's worth of output for this long is dropped.
const LAG_LIMIT: Duration = Duration::from_secs(20);
/// How long tmux gets to say which window and pane the instance's session shows.
const ATTACH_WAIT: Duration = Duration::from_secs(10);
/// How long a newcomer's snapshot waits for the pane to take the newcomer's size.
const RESIZE_WAIT: Duration = Duration::from_millis(500);
/// After tmux detaches, how long the hub waits to learn why before closing viewers.
const END_WAIT: Duration = Duration::from_secs(3);
/// Bytes of a hub's commands queued for tmux before its input is refused: a client typing
/// faster than tmux reads costs the server this much, not a queue's worth of 64 KiB messages.
const STDIN_BYTES: usize = 1024 * 1024;
/// Output beyond this much within [`FLOOD_WINDOW`] is a flood: nobody reads 2.5 MB a second,
/// so viewers get the screen every [`LAG_CHECK`] instead of every byte (see [`Flood`]).
const FLOOD_BYTES: usize = 256 * 1024;
const FLOOD_WINDOW: Duration = Duration::from_millis(100);
/// Captures of an unchanged screen after which a flood is taken to be over.
const FLOOD_CALM: u32 = 2;
/// A flood that comes back this soon after its end doubles the calm the next one needs.
const FLOOD_RELAPSE: Duration = Duration::from_secs(1);
const FLOOD_MAX_STRIKES: u32 = 3;

/// Close codes (WebSocket) the hub and viewers use.
pub mod close {
    pub const ENDED: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const UNAVAILABLE: u16 = 1011;
    pub const TOO_SLOW: u16 = 4001;
}

/// What a viewer's connection sends out, in order.
#[derive(Debug)]
pub enum Outgoing {
    Text(String),
    Binary(Bytes),
    /// The snapshot message and its bytes, which must travel together.
    Snapshot(String, Bytes),
    Ping,
}

/// The hub's end of one viewer.
#[derive(Clone)]
pub struct Viewer {
    pub id: u64,
    pub outbox: mpsc::Sender<Outgoing>,
    /// How the socket must close; apart from the outbox, so a full queue cannot lose it.
    pub close: mpsc::Sender<(u16, String)>,
    /// Bytes of output queued for this viewer and not yet written to its socket.
    pub queued: Arc<AtomicUsize>,
}

pub enum Command {
    Join {
        viewer: Viewer,
        size: Option<(u16, u16)>,
        joined: oneshot::Sender<()>,
    },
    Leave(u64),
    Input {
        viewer: u64,
        bytes: Bytes,
    },
    Resize {
        viewer: u64,
        cols: u16,
        rows: u16,
    },
    Scroll {
        viewer: u64,
        lines: i32,
        col: u16,
        row: u16,
    },
    Paste {
        viewer: u64,
        text: String,
    },
}

pub struct Settings {
    pub replay_lines: u32,
    pub viewer_buffer: usize,
    /// Told of every keystroke, so a watched agent that is typed into is not idle.
    pub activity: Arc<crate::instances::Manager>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Waits (until the deadline) for the pane to take its size, then asks for its snapshot.
    AwaitingResize(Instant),
    /// Skips output until its snapshot arrives.
    AwaitingSnapshot(&'static str),
    Live,
    Lagging(Instant),
}

struct Slot {
    viewer: Viewer,
    size: Option<(u16, u16)>,
    flow: Flow,
}

/// What the next reply from tmux answers (replies come in the order commands were sent).
enum Pending {
    Ignore,
    SnapshotModes(Vec<(u64, &'static str)>),
    SnapshotPane,
    SnapshotSaved,
    ScrollModes {
        lines: i32,
        col: u16,
        row: u16,
    },
    /// `<cols>x<rows>` of the window, asked right after a resize.
    Size,
    /// `@<window> %<pane> <cols>x<rows>` of the session's window, asked first.
    Ids,
    /// Linking the window into the connection's session: if that fails, the window is gone.
    Link,
    /// The pane's modes and visible screen while its output is paused.
    FloodModes,
    FloodScreen,
    /// The end of commands that tmux tells every control client of (a paste buffer): the
    /// server's calm lock is held until tmux has run them.
    Release {
        _calm: tokio::sync::OwnedMutexGuard<()>,
    },
}

struct PartialSnapshot {
    viewers: Vec<(u64, &'static str)>,
    modes: Option<Modes>,
    pane: Vec<Vec<u8>>,
}

pub struct Hub {
    instance: Instance,
    /// The instance's tmux server, for its calm lock (see `Tmux::calm`).
    tmux: Tmux,
    connection: Arc<Connection>,
    /// This hub's id on the connection.
    id: u64,
    target: String,
    settings: Settings,
    slots: Vec<Slot>,
    pending: VecDeque<Pending>,
    partial: Option<PartialSnapshot>,
    /// Bytes of this hub's commands not yet written to tmux.
    queued: Arc<AtomicUsize>,
    /// The viewer whose size the pane follows.
    active: Option<u64>,
    /// The pane's size as tmux last reported it.
    size: Option<(u16, u16)>,
    /// The size last asked of tmux.
    requested: Option<(u16, u16)>,
    /// The size tmux last laid the pane out at.
    laid_out: Option<(u16, u16)>,
    batch: Vec<u8>,
    /// The pane's and window's ids (`%<pane>`, `@<window>`), once tmux has said them.
    pane: Option<u32>,
    window: Option<u32>,
    /// The window went (or could not be linked): the hub stops reading.
    detached: bool,
    flood: Flood,
}

/// Flow control for output faster than anyone reads. tmux spends most of a flood escaping
/// every byte for its control client, and the hub then passes each one on; a terminal in a
/// PTY gets tmux's redraws instead, a few a second. So once output passes [`FLOOD_BYTES`] in
/// [`FLOOD_WINDOW`], the hub pauses the pane for its control client (`refresh-client -A
/// %<pane>:pause`, tmux 3.2 and later: tmux keeps reading the pane, so the program is never
/// slowed, but sends this client nothing) and sends viewers the visible screen every tick.
/// Once the screen has stayed the same for [`FLOOD_CALM`] ticks, the pane is continued and
/// every live viewer gets a fresh snapshot (history included) in the same breath, after which
/// output flows byte for byte again.
#[derive(Default)]
struct Flood {
    window: Option<Instant>,
    bytes: usize,
    paused: bool,
    /// A screen capture is on its way.
    asked: bool,
    modes: Option<Modes>,
    last: Option<(Modes, Vec<Vec<u8>>)>,
    unchanged: u32,
    /// Floods that came back soon after the last one ended.
    strikes: u32,
    resumed: Option<Instant>,
}

impl Flood {
    /// Counts output; true when it has become a flood.
    fn count(&mut self, len: usize, now: Instant) -> bool {
        if self.paused {
            return false;
        }
        match self.window {
            Some(start) if now.duration_since(start) < FLOOD_WINDOW => self.bytes += len,
            _ => {
                self.window = Some(now);
                self.bytes = len;
            }
        }
        self.bytes > FLOOD_BYTES
    }

    fn pause(&mut self, now: Instant) {
        let relapse = self
            .resumed
            .is_some_and(|at| now.duration_since(at) < FLOOD_RELAPSE);
        self.strikes = if relapse {
            (self.strikes + 1).min(FLOOD_MAX_STRIKES)
        } else {
            0
        };
        self.paused = true;
        self.asked = false;
        self.modes = None;
        self.last = None;
        self.unchanged = 0;
    }

    /// A capture of the screen while paused; true when the flood has settled.
    fn settled(&mut self, modes: Modes, screen: Vec<Vec<u8>>) -> bool {
        let same = self
            .last
            .as_ref()
            .is_some_and(|(m, s)| *m == modes && *s == screen);
        self.unchanged = if same { self.unchanged + 1 } else { 0 };
        self.last = Some((modes, screen));
        self.unchanged >= FLOOD_CALM << self.strikes
    }

    fn resume(&mut self, now: Instant) {
        self.paused = false;
        self.window = None;
        self.last = None;
        self.resumed = Some(now);
    }
}

/// Why the hub stopped.
pub enum End {
    /// No viewers left.
    Idle,
    /// The instance ended (or went away); viewers were told.
    Ended,
}

impl Hub {
    /// Links the instance's window into its server's shared control client and serves
    /// viewers until none is left or the instance ends. `may_stop` is asked, once no viewer is
    /// left, whether the hub may stop; it deregisters the hub when it says yes.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        instance: Instance,
        tmux: Tmux,
        connections: Arc<Connections>,
        settings: Settings,
        mut commands: mpsc::Receiver<Command>,
        mut events: broadcast::Receiver<InstanceEvent>,
        may_stop: impl Fn(&mpsc::Receiver<Command>) -> bool,
        db: crate::db::Db,
    ) -> End {
        let connection = match connections.get(&tmux).await {
            Ok(connection) => connection,
            Err(err) => {
                tracing::warn!(instance = %instance.id, error = %err, "cannot attach to the instance's tmux server");
                reject_all(&mut commands, "the terminal is not available; try again").await;
                return End::Ended;
            }
        };
        let (id, mut tmux_events) = connection.register();
        let mut hub = Hub {
            target: format!("={}:", instance.tmux_session()),
            tmux,
            connection: connection.clone(),
            id,
            instance,
            settings,
            slots: Vec::new(),
            pending: VecDeque::new(),
            partial: None,
            queued: Arc::new(AtomicUsize::new(0)),
            active: None,
            size: None,
            requested: None,
            laid_out: None,
            batch: Vec::with_capacity(BATCH),
            pane: None,
            window: None,
            detached: false,
            flood: Flood::default(),
        };
        if !hub.link(&mut tmux_events).await {
            tracing::warn!(instance = %hub.instance.id, "cannot show the instance's tmux window");
            connection.deregister(id);
            reject_all(&mut commands, "the terminal is not available; try again").await;
            return End::Ended;
        }
        let end = hub
            .serve(tmux_events, &mut commands, &mut events, may_stop, &db)
            .await;
        // Whoever joins from now on starts a fresh hub at once, rather than waiting out this
        // one's last seconds: the queue closes, and joins already in it are turned away.
        commands.close();
        while commands.try_recv().is_ok() {}
        // Input typed just before the last viewer left still reaches the agent: it was queued
        // before the unlinking.
        hub.unlink();
        connection.deregister(id);
        end
    }

    /// Asks which window and pane the session shows, then links that window into the
    /// connection's session at its current size; false if tmux cannot.
    async fn link(&mut self, tmux_events: &mut mpsc::Receiver<HubEvent>) -> bool {
        let ask = format!(
            "display-message -p -t {} '#{{window_id}} #{{pane_id}} #{{window_width}}x#{{window_height}}'\n",
            self.target
        );
        if !self.send_commands(ask, vec![Pending::Ids]) {
            return false;
        }
        let reply = tokio::time::timeout(ATTACH_WAIT, async {
            loop {
                match tmux_events.recv().await {
                    Some(HubEvent::Reply { ok, lines }) => return ok.then_some(lines),
                    Some(HubEvent::Closed) | None => return None,
                    Some(_) => {}
                }
            }
        })
        .await;
        self.pending.pop_front();
        let Some((window, pane, (cols, rows))) = reply
            .ok()
            .flatten()
            .and_then(|lines| lines.first().and_then(|l| parse_ids(l)))
        else {
            return false;
        };
        self.connection.route(self.id, pane, window);
        (self.pane, self.window) = (Some(pane), Some(window));
        // Unlinked first in case an earlier hub left it linked; sized at once, since a window
        // without a size of its own takes the client's; continued in case it was left paused.
        let session = connection::SESSION;
        let commands = format!(
            "unlink-window -t ={session}:@{window}\nlink-window -d -s {target} -t ={session}:\nrefresh-client -C @{window}:{cols}x{rows}\nrefresh-client -A '%{pane}:continue'\n",
            target = self.target
        );
        if !self.send_commands(
            commands,
            vec![
                Pending::Ignore,
                Pending::Link,
                Pending::Ignore,
                Pending::Ignore,
            ],
        ) {
            return false;
        }
        self.size_known(cols, rows, false);
        true
    }

    /// Gives the window back: unlinked from the connection's session (and destroyed if that
    /// was the only session left holding it), its output continued if it was paused.
    fn unlink(&mut self) {
        let (Some(pane), Some(window)) = (self.pane, self.window) else {
            return;
        };
        let mut commands = String::new();
        if self.flood.paused {
            commands.push_str(&format!("refresh-client -A '%{pane}:continue'\n"));
        }
        commands.push_str(&format!(
            "unlink-window -k -t ={}:@{window}\n",
            connection::SESSION
        ));
        self.try_send(commands, Some(window));
    }

    async fn serve(
        &mut self,
        mut tmux_events: mpsc::Receiver<HubEvent>,
        commands: &mut mpsc::Receiver<Command>,
        events: &mut broadcast::Receiver<InstanceEvent>,
        may_stop: impl Fn(&mpsc::Receiver<Command>) -> bool,
        db: &crate::db::Db,
    ) -> End {
        let mut tick = tokio::time::interval(LAG_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = tmux_events.recv() => {
                    match event {
                        Some(HubEvent::Closed) | None => break,
                        Some(event) => self.on_event(event),
                    }
                    if self.detached {
                        break;
                    }
                    if self.batch.len() >= BATCH || tmux_events.is_empty() {
                        self.flush();
                    }
                }
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return End::Idle,
                },
                event = events.recv() => {
                    let changed = match event {
                        Ok(event) if event.id() == self.instance.id => Some(event),
                        Ok(_) => None,
                        // Missed some: look the instance up again.
                        Err(broadcast::error::RecvError::Lagged(_)) => Some(current(db, &self.instance.id).await),
                        Err(broadcast::error::RecvError::Closed) => return End::Ended,
                    };
                    if let Some(event) = changed && self.on_instance(event) {
                        return End::Ended;
                    }
                }
                _ = tick.tick() => self.check_lagging(),
            }
            if self.slots.is_empty() && may_stop(commands) {
                return End::Idle;
            }
        }
        // The window went (or tmux did): the session ended or was killed. The reconciler
        // will say how.
        self.flush();
        let deadline = tokio::time::sleep(END_WAIT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                event = events.recv() => match event {
                    Ok(event) if event.id() == self.instance.id => {
                        if self.on_instance(event) { return End::Ended; }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
                command = commands.recv() => match command {
                    Some(Command::Join { joined, viewer, size }) => {
                        self.slots.push(Slot { viewer, size, flow: Flow::Live });
                        let _ = joined.send(());
                    }
                    Some(Command::Leave(id)) => self.remove(id),
                    Some(_) => {}
                    None => break,
                },
            }
        }
        if !self.on_instance(current(db, &self.instance.id).await) {
            self.close_all(
                close::UNAVAILABLE,
                "the terminal went away; reconnect to see the agent",
            );
        }
        End::Ended
    }

    fn on_event(&mut self, event: HubEvent) {
        match event {
            HubEvent::Output(bytes) => {
                self.batch.extend_from_slice(&bytes);
                if self.flood.count(bytes.len(), Instant::now()) {
                    self.pause_output();
                }
            }
            HubEvent::Reply { ok, lines } => {
                // Output before this reply belongs before any snapshot it completes.
                self.flush();
                let pending = self.pending.pop_front().unwrap_or(Pending::Ignore);
                self.on_reply(pending, ok, lines);
            }
            HubEvent::Resized { cols, rows } => self.size_known(cols, rows, true),
            HubEvent::Closed => self.detached = true,
        }
    }

    /// What tmux says the pane's size is: viewers learn of a change. Newcomers waiting for
    /// their size get their snapshot once the pane has been laid out anew (tmux redraws the
    /// pane's grid a moment after it answers), or at once when nothing changed.
    ///
    /// Once the pane has been laid out at a new size, every live viewer gets a fresh snapshot:
    /// tmux and a viewer's emulator each re-flow their screen and history on a resize, and do
    /// not always agree on where lines and the cursor end up (tmux redraws its own clients'
    /// screens after a resize for the same reason).
    fn size_known(&mut self, cols: u16, rows: u16, laid_out: bool) {
        let changed = self.size != Some((cols, rows));
        if changed {
            // The first size tmux reports is news to nobody: snapshots carry it.
            if self.size.replace((cols, rows)).is_some() {
                self.broadcast_text(&ServerMessage::Size { cols, rows });
            }
        }
        if laid_out {
            let before = self.laid_out.replace((cols, rows));
            if before.is_some_and(|size| size != (cols, rows)) {
                self.resync_live();
            }
        }
        if laid_out || !changed {
            self.snapshot_resized(|_| true);
        }
    }

    /// Every live viewer gets a fresh snapshot, and output from that point on.
    fn resync_live(&mut self) {
        let mut viewers = Vec::new();
        for slot in &mut self.slots {
            if slot.flow == Flow::Live {
                slot.flow = Flow::AwaitingSnapshot("resync");
                viewers.push((slot.viewer.id, "resync"));
            }
        }
        if !viewers.is_empty() {
            self.request_snapshot(viewers);
        }
    }

    fn on_reply(&mut self, pending: Pending, ok: bool, mut lines: Vec<Vec<u8>>) {
        match pending {
            Pending::Ignore | Pending::Release { .. } => {}
            Pending::Ids => {}
            Pending::Link => self.detached |= !ok,
            Pending::FloodModes => {
                self.flood.modes = ok
                    .then(|| lines.first().and_then(|l| Modes::parse(l)))
                    .flatten();
            }
            Pending::FloodScreen => {
                self.flood.asked = false;
                if let Some(modes) = self.flood.modes.take()
                    && ok
                    && self.flood.paused
                {
                    self.flood_screen(modes, lines);
                }
            }
            Pending::Size => {
                if let Some((cols, rows)) = lines.first().filter(|_| ok).and_then(|l| parse_size(l))
                {
                    self.size_known(cols, rows, false);
                }
            }
            Pending::SnapshotModes(viewers) => {
                let modes = if ok {
                    lines.first().and_then(|l| Modes::parse(l))
                } else {
                    None
                };
                self.partial = Some(PartialSnapshot {
                    viewers,
                    modes,
                    pane: Vec::new(),
                });
            }
            Pending::SnapshotPane => {
                if let Some(partial) = &mut self.partial {
                    partial.pane = if ok { lines } else { Vec::new() };
                }
            }
            Pending::SnapshotSaved => {
                let Some(partial) = self.partial.take() else {
                    return;
                };
                if !ok {
                    lines.clear();
                }
                self.deliver_snapshot(partial, &lines);
            }
            Pending::ScrollModes {
                lines: count,
                col,
                row,
            } => {
                if let Some(modes) = ok
                    .then(|| lines.first().and_then(|l| Modes::parse(l)))
                    .flatten()
                {
                    let input = screen::scroll_input(&modes, count, col, row);
                    if !input.is_empty() {
                        self.send_to_tmux(control::send_bytes(&self.target, &input));
                    }
                }
            }
        }
    }

    fn deliver_snapshot(&mut self, partial: PartialSnapshot, saved: &[Vec<u8>]) {
        let mut modes = partial.modes.unwrap_or_default();
        if modes.cols == 0
            && let Some((cols, rows)) = self.size
        {
            (modes.cols, modes.rows) = (cols, rows);
        }
        let bytes = Bytes::from(screen::snapshot(&modes, &partial.pane, saved));
        for (id, reason) in partial.viewers {
            let Some(slot) = self.slots.iter_mut().find(|s| s.viewer.id == id) else {
                continue;
            };
            if slot.flow != Flow::AwaitingSnapshot(reason) {
                continue;
            }
            let header = ServerMessage::Snapshot {
                reason,
                cols: modes.cols,
                rows: modes.rows,
                alternate_screen: modes.alternate,
            };
            let sent = slot
                .viewer
                .outbox
                .try_send(Outgoing::Snapshot(header.to_json(), bytes.clone()));
            if sent.is_ok() {
                slot.viewer.queued.fetch_add(bytes.len(), Ordering::Relaxed);
                slot.flow = Flow::Live;
            } else {
                slot.flow = Flow::Lagging(Instant::now());
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Join {
                viewer,
                size,
                joined,
            } => {
                let state = self.instance.state.as_str().to_owned();
                let _ = viewer.outbox.try_send(Outgoing::Text(
                    ServerMessage::Hello {
                        instance: self.instance.id.clone(),
                        state,
                    }
                    .to_json(),
                ));
                let id = viewer.id;
                // The newcomer is the most recent active viewer: the pane takes its size first,
                // so the snapshot is drawn at the size it will be shown at.
                let resize = size.filter(|&size| self.size != Some(size));
                let flow = if resize.is_some() {
                    Flow::AwaitingResize(Instant::now() + RESIZE_WAIT)
                } else {
                    Flow::AwaitingSnapshot("connect")
                };
                self.slots.push(Slot { viewer, size, flow });
                if let Some((cols, rows)) = size {
                    self.activate(id, cols, rows);
                }
                if resize.is_none() {
                    self.request_snapshot(vec![(id, "connect")]);
                }
                let _ = joined.send(());
            }
            Command::Leave(id) => self.remove(id),
            Command::Input { viewer, bytes } => {
                self.settings.activity.note_input(&self.instance.id);
                self.touch(viewer);
                self.send_to_tmux(control::send_bytes(&self.target, &bytes));
            }
            Command::Resize { viewer, cols, rows } => {
                if let Some(slot) = self.slots.iter_mut().find(|s| s.viewer.id == viewer) {
                    slot.size = Some((cols, rows));
                }
                self.activate(viewer, cols, rows);
            }
            Command::Scroll {
                viewer,
                lines,
                col,
                row,
            } => {
                self.touch(viewer);
                let command = format!(
                    "display-message -p -t {} '{}'\n",
                    self.target,
                    screen::MODES_FORMAT
                );
                self.send_commands(command, vec![Pending::ScrollModes { lines, col, row }]);
            }
            Command::Paste { viewer, text } => {
                self.settings.activity.note_input(&self.instance.id);
                self.touch(viewer);
                // tmux 3.4 and later tell every control client of paste buffers: not while
                // one is still connecting. When one is, the text is typed instead (the same
                // bytes, without the program's bracketed-paste markers).
                match self.tmux.try_calm() {
                    Some(calm) => {
                        let commands = control::paste(&self.target, &text);
                        let lines = commands.lines().count();
                        let mut replies: Vec<Pending> =
                            (1..lines).map(|_| Pending::Ignore).collect();
                        replies.push(Pending::Release { _calm: calm });
                        self.send_commands(commands, replies);
                    }
                    None => {
                        let typed = text.replace("\r\n", "\r").replace('\n', "\r");
                        self.send_to_tmux(control::send_bytes(&self.target, typed.as_bytes()));
                    }
                }
            }
        }
    }

    /// Input or a scroll makes a viewer the active one: the pane follows its size.
    fn touch(&mut self, viewer: u64) {
        if self.active != Some(viewer)
            && let Some((cols, rows)) = self
                .slots
                .iter()
                .find(|s| s.viewer.id == viewer)
                .and_then(|s| s.size)
        {
            self.activate(viewer, cols, rows);
        }
    }

    /// Makes `viewer` the one the pane follows; tmux reports the new size when it applies it.
    fn activate(&mut self, viewer: u64, cols: u16, rows: u16) {
        self.active = Some(viewer);
        if self.requested != Some((cols, rows)) || self.size != Some((cols, rows)) {
            self.requested = Some((cols, rows));
            // tmux resizes the window at once; its notification may come later or, when
            // another resize undoes it, never: ask for the size in the same breath.
            let Some(window) = self.window else { return };
            let commands = format!(
                "refresh-client -C @{window}:{cols}x{rows}\ndisplay-message -p -t {} '{SIZE_FORMAT}'\n",
                self.target
            );
            self.send_commands(commands, vec![Pending::Ignore, Pending::Size]);
        }
    }

    /// Newcomers waiting for the pane's size get their snapshot now, if `due` says so.
    fn snapshot_resized(&mut self, due: impl Fn(Instant) -> bool) {
        let mut ready = Vec::new();
        for slot in &mut self.slots {
            if let Flow::AwaitingResize(deadline) = slot.flow
                && due(deadline)
            {
                slot.flow = Flow::AwaitingSnapshot("connect");
                ready.push((slot.viewer.id, "connect"));
            }
        }
        if !ready.is_empty() {
            self.request_snapshot(ready);
        }
    }

    fn remove(&mut self, id: u64) {
        self.slots.retain(|s| s.viewer.id != id);
        if self.active == Some(id) {
            self.active = None;
            // The pane follows the most recent viewer still watching.
            if let Some((viewer, (cols, rows))) = self
                .slots
                .iter()
                .rev()
                .find_map(|s| s.size.map(|size| (s.viewer.id, size)))
            {
                self.activate(viewer, cols, rows);
            }
        }
    }

    /// Asks tmux for the pane's modes, history and screen; the replies complete the snapshot.
    fn request_snapshot(&mut self, viewers: Vec<(u64, &'static str)>) {
        let target = &self.target;
        let commands = format!(
            "display-message -p -t {target} '{}'\ncapture-pane -p -e -S -{} -t {target}\ncapture-pane -p -e -a -q -t {target}\n",
            screen::MODES_FORMAT,
            self.settings.replay_lines,
        );
        let replies = vec![
            Pending::SnapshotModes(viewers.clone()),
            Pending::SnapshotPane,
            Pending::SnapshotSaved,
        ];
        // One write, so tmux runs the three commands with no output in between.
        if !self.send_commands(commands, replies) {
            // Retried by the lag check.
            for slot in &mut self.slots {
                if viewers.iter().any(|(id, _)| *id == slot.viewer.id) {
                    slot.flow = Flow::Lagging(Instant::now());
                }
            }
        }
    }

    fn send_to_tmux(&mut self, commands: String) {
        self.send_commands(commands, Vec::new());
    }

    /// Queues command lines for tmux with what their replies answer (the rest are ignored).
    /// When tmux is not keeping up they are dropped; false then.
    fn send_commands(&mut self, commands: String, mut replies: Vec<Pending>) -> bool {
        let lines = commands.lines().count();
        if !self.try_send(commands, None) {
            self.broadcast_text(&ServerMessage::error(
                "busy",
                "the terminal is not keeping up; input was dropped",
            ));
            return false;
        }
        replies.resize_with(lines.max(replies.len()), || Pending::Ignore);
        self.pending.extend(replies);
        true
    }

    /// Passes the gathered output to every live viewer that has room for it.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let bytes = Bytes::from(std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(BATCH),
        ));
        let limit = self.settings.viewer_buffer;
        self.slots.retain_mut(|slot| {
            if slot.flow != Flow::Live {
                return true;
            }
            let queued = slot.viewer.queued.load(Ordering::Relaxed);
            if queued + bytes.len() > limit {
                slot.flow = Flow::Lagging(Instant::now());
                return true;
            }
            match slot.viewer.outbox.try_send(Outgoing::Binary(bytes.clone())) {
                Ok(()) => {
                    slot.viewer.queued.fetch_add(bytes.len(), Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slot.flow = Flow::Lagging(Instant::now());
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Stops tmux sending the pane's output to this client (see [`Flood`]).
    fn pause_output(&mut self) {
        let Some(pane) = self.pane else {
            return;
        };
        if self.send_commands(format!("refresh-client -A '%{pane}:pause'\n"), Vec::new()) {
            self.flood.pause(Instant::now());
        }
    }

    /// While paused, asks tmux for the pane's visible screen.
    fn ask_flood_screen(&mut self) {
        if !self.flood.paused || self.flood.asked {
            return;
        }
        let target = &self.target;
        let commands = format!(
            "display-message -p -t {target} '{}'\ncapture-pane -p -e -t {target}\n",
            screen::MODES_FORMAT
        );
        self.flood.asked =
            self.send_commands(commands, vec![Pending::FloodModes, Pending::FloodScreen]);
    }

    /// The screen during a flood: drawn over what viewers show, or, once it has settled, the
    /// pane's output continued with a fresh snapshot for everyone.
    fn flood_screen(&mut self, modes: Modes, lines: Vec<Vec<u8>>) {
        if self.flood.settled(modes, lines) {
            self.resume_output();
        } else if self.flood.unchanged == 0
            && let Some((modes, lines)) = &self.flood.last
        {
            // Drawn only when it changed: an unchanged screen costs the link nothing.
            let update = screen::redraw(modes, lines);
            self.batch.extend_from_slice(&update);
            self.flush();
        }
    }

    /// Continues the pane's output and resyncs every live viewer from that very point.
    fn resume_output(&mut self) {
        let Some(pane) = self.pane else {
            return;
        };
        if !self.send_commands(
            format!("refresh-client -A '%{pane}:continue'\n"),
            Vec::new(),
        ) {
            return;
        }
        self.flood.resume(Instant::now());
        self.resync_live();
    }

    /// Lagging viewers that have caught up get a fresh snapshot; those that never do go.
    fn check_lagging(&mut self) {
        self.ask_flood_screen();
        let now = Instant::now();
        self.snapshot_resized(|deadline| deadline <= now);
        let low_water = self.settings.viewer_buffer / 4;
        let mut resync = Vec::new();
        self.slots.retain_mut(|slot| {
            if slot.viewer.outbox.is_closed() {
                return false;
            }
            let Flow::Lagging(since) = slot.flow else {
                return true;
            };
            if slot.viewer.queued.load(Ordering::Relaxed) <= low_water
                && slot.viewer.outbox.capacity() > 2
            {
                slot.flow = Flow::AwaitingSnapshot("resync");
                resync.push((slot.viewer.id, "resync"));
                true
            } else if since.elapsed() > LAG_LIMIT {
                let _ = slot.viewer.close.try_send((
                    close::TOO_SLOW,
                    "this connection is too slow to follow the terminal".into(),
                ));
                false
            } else {
                true
            }
        });
        if !resync.is_empty() {
            self.request_snapshot(resync);
        }
    }

    /// A state change of the instance; true when it ended and every viewer was closed.
    fn on_instance(&mut self, event: InstanceEvent) -> bool {
        match event {
            InstanceEvent::Changed(instance) if instance.state.is_live() => {
                if instance.state != self.instance.state {
                    self.broadcast_text(&ServerMessage::Status {
                        state: instance.state.as_str().to_owned(),
                        status: None,
                        reason: None,
                    });
                }
                self.instance = instance;
                false
            }
            InstanceEvent::Changed(instance) => {
                self.flush();
                let reason = if instance.state == State::Suspended {
                    instance.suspend_reason.clone()
                } else {
                    instance.end_reason.clone()
                };
                let exit = ServerMessage::Exit {
                    state: instance.state.as_str().to_owned(),
                    exit_code: instance.exit_code,
                    reason,
                };
                self.broadcast_text(&exit);
                self.close_all(close::ENDED, &ended_reason(&instance));
                true
            }
            InstanceEvent::Activity { status, reason, .. } => {
                self.broadcast_text(&ServerMessage::Status {
                    state: self.instance.state.as_str().to_owned(),
                    status: Some(status),
                    reason,
                });
                false
            }
            InstanceEvent::Deleted(_) => {
                self.close_all(close::ENDED, "the instance was deleted");
                true
            }
            InstanceEvent::Approval { .. } => false,
        }
    }

    fn broadcast_text(&self, message: &ServerMessage) {
        let json = message.to_json();
        for slot in &self.slots {
            let _ = slot.viewer.outbox.try_send(Outgoing::Text(json.clone()));
        }
    }

    fn close_all(&mut self, code: u16, reason: &str) {
        for slot in self.slots.drain(..) {
            let _ = slot.viewer.close.try_send((code, reason.to_owned()));
        }
    }
}

/// When tmux cannot be reached, every waiting join is told to try again.
async fn reject_all(commands: &mut mpsc::Receiver<Command>, reason: &str) {
    commands.close();
    while let Some(command) = commands.recv().await {
        if let Command::Join { viewer, joined, .. } = command {
            let _ = viewer
                .close
                .try_send((close::UNAVAILABLE, reason.to_owned()));
            let _ = joined.send(());
        }
    }
}

/// `@<window> %<pane> <cols>x<rows>`.
fn parse_ids(line: &[u8]) -> Option<(u32, u32, (u16, u16))> {
    let text = std::str::from_utf8(line).ok()?;
    let mut fields = text.split(' ');
    let window = fields.next()?.strip_prefix('@')?.parse().ok()?;
    let pane = fields.next()?.strip_prefix('%')?.parse().ok()?;
    let size = parse_size(fields.next()?.as_bytes())?;
    Some((window, pane, size))
}

/// The close reason for an ended instance, short enough for a close frame (123 bytes).
pub fn ended_reason(instance: &Instance) -> String {
    match (instance.state, instance.exit_code) {
        (State::Exited, Some(code)) => format!("the agent exited with status {code}"),
        (State::Exited, None) => "the agent exited".into(),
        (State::Suspended, _) => format!(
            "the agent was suspended ({}); it resumes when opened",
            instance.suspend_reason.as_deref().unwrap_or("user")
        ),
        _ => format!(
            "the instance was stopped ({})",
            instance.end_reason.as_deref().unwrap_or("user")
        ),
    }
}

const SIZE_FORMAT: &str = "#{pane_width}x#{pane_height}";

fn parse_size(line: &[u8]) -> Option<(u16, u16)> {
    let text = std::str::from_utf8(line).ok()?;
    let (cols, rows) = text.trim().split_once('x')?;
    Some((cols.parse().ok()?, rows.parse().ok()?))
}

async fn current(db: &crate::db::Db, id: &str) -> InstanceEvent {
    match crate::instances::store::get(db, id).await {
        Ok(Some(instance)) => InstanceEvent::Changed(instance),
        _ => InstanceEvent::Deleted(id.to_owned()),
    }
}

impl Hub {
    /// Queues commands unless this hub's queue is over its bound or the connection's is full
    /// (see `Connection::send` for `unless_taken`).
    fn try_send(&self, commands: String, unless_taken: Option<u32>) -> bool {
        let len = commands.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > STDIN_BYTES
            || !self
                .connection
                .send(self.id, commands, &self.queued, unless_taken)
        {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}
