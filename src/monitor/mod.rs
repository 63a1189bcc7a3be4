//! The resource monitor: samples the host and every live instance's process tree on an
//! interval, feeds measured memory (and which agents are at rest) to admission, suspends or
//! stops idle instances, and answers what each instance costs and whether it is working or
//! waiting.

pub mod alerts;
pub mod metrics;
pub mod routes;
pub mod sampler;
pub mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::Db;
use crate::instances::Manager;
use crate::instances::MemoryView;
use crate::instances::profiles::IdlePolicy;
use crate::instances::store::{self, Instance, State};
use crate::instances::tmux::PaneInfo;
use sampler::{HostUsage, Sampler, Tree};

pub use routes::router;

/// How much history is kept in memory.
const HISTORY: Duration = Duration::from_secs(3600);

/// One point of the in-memory history, for the admin's charts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryPoint {
    /// Seconds since the epoch.
    pub at: i64,
    pub cpu_percent: f32,
    pub memory_used: u64,
    pub memory_available: u64,
    pub disk_used: u64,
    /// Each live instance: id, memory in bytes, CPU in % of one core.
    pub instances: Vec<(String, u64, f32)>,
}

/// Output within this long means the agent is working.
const WORKING_WINDOW: Duration = Duration::from_secs(3);

/// What one instance uses and when it was last active.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct InstanceUsage {
    pub memory_bytes: u64,
    /// Of one core.
    pub cpu_percent: f32,
    pub processes: usize,
    /// Seconds since the epoch.
    pub last_output_at: Option<i64>,
    pub last_input_at: Option<i64>,
}

pub use status::Status;
use status::{Debounced, Reading, Signals};

/// A hook's word is trusted this long without a newer one (the screen still overrides it).
const HOOK_TRUST: Duration = Duration::from_secs(600);

/// How often a running instance's screen is kept in its record at most, so what it showed
/// survives a machine that goes down with it.
const KEEP_SCREEN_EVERY: Duration = Duration::from_secs(30);

/// Per running instance: the published status, the last hook reading, and when its screen was
/// last kept (with a digest of what was kept).
#[derive(Default)]
struct Tracked {
    status: Debounced,
    hook: Option<(Reading, std::time::Instant)>,
    screen_kept: Option<(std::time::Instant, u64)>,
    /// The last line of text on the screen, for the dashboard's one-line preview.
    preview: Option<String>,
    /// A second look after a hook report is already on its way: more reports meanwhile add
    /// no more.
    settle_pending: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub at: Option<OffsetDateTime>,
    pub host: HostUsage,
    pub instances: HashMap<String, InstanceUsage>,
}

/// The monitor's bookkeeping that the instances feed and read (through the traits of
/// [`crate::instances::observe`]): when each instance last received input, and the memory each
/// live instance's process tree used at the last sample.
#[derive(Default)]
pub struct Activity {
    last_input: Mutex<HashMap<String, OffsetDateTime>>,
    measured: Mutex<HashMap<String, u64>>,
    /// Running instances at rest at the last sample, with when each was last active.
    resting: Mutex<HashMap<String, i64>>,
}

impl Activity {
    pub fn last_input(&self, id: &str) -> Option<OffsetDateTime> {
        self.last_input.lock().get(id).copied()
    }

    /// The latest measurement of each live instance's memory, in bytes.
    pub fn record_memory(&self, measured: HashMap<String, u64>) {
        *self.measured.lock() = measured;
    }

    /// Forgets the input of instances that are no longer live.
    fn retain_live(&self, live: &[Instance]) {
        let ids: std::collections::HashSet<&str> = live.iter().map(|i| i.id.as_str()).collect();
        self.last_input
            .lock()
            .retain(|id, _| ids.contains(id.as_str()));
    }
}

impl crate::instances::InputLog for Activity {
    /// Records that someone typed into the instance (it is not idle).
    fn note_input(&self, id: &str) {
        self.last_input
            .lock()
            .insert(id.to_owned(), OffsetDateTime::now_utc());
    }
}

impl crate::instances::MemoryView for Activity {
    fn measured(&self) -> HashMap<String, u64> {
        self.measured.lock().clone()
    }

    fn resting(&self) -> HashMap<String, i64> {
        self.resting.lock().clone()
    }
}

/// CPU of an agent's whole process tree under which it counts as at rest, in % of one core.
const RESTING_CPU_PERCENT: f32 = 5.0;

pub struct Monitor {
    manager: Arc<Manager>,
    activity: Arc<Activity>,
    db: Db,
    data_dir: PathBuf,
    interval: Duration,
    webhook: Option<String>,
    sampler: Arc<Mutex<Sampler>>,
    alerts: Mutex<alerts::Alerts>,
    latest: RwLock<Arc<Snapshot>>,
    history: Mutex<std::collections::VecDeque<HistoryPoint>>,
    tracked: Mutex<HashMap<String, Tracked>>,
    /// Samples taken and alerts raised or cleared, for live event streams.
    events: tokio::sync::broadcast::Sender<MonitorEvent>,
}

/// What the monitor tells live event streams.
#[derive(Debug, Clone)]
pub enum MonitorEvent {
    /// A sample was taken: usage figures and previews are new.
    Sampled,
    /// An alert was raised or cleared, as the webhook receives it.
    Alert(serde_json::Value),
}

impl Monitor {
    pub fn new(
        manager: Arc<Manager>,
        activity: Arc<Activity>,
        db: Db,
        config: &Config,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            manager,
            activity,
            db,
            data_dir,
            interval: Duration::from_secs(config.monitor.interval_secs.max(1)),
            webhook: config.alerts.webhook_url.clone(),
            sampler: Arc::new(Mutex::new(Sampler::new())),
            alerts: Mutex::new(alerts::Alerts::new(&config.alerts)),
            latest: RwLock::new(Arc::default()),
            history: Mutex::default(),
            tracked: Mutex::default(),
            events: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// Samples and alerts from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<MonitorEvent> {
        self.events.subscribe()
    }

    /// The samples of the last `minutes`, oldest first.
    pub fn history(&self, minutes: u64) -> Vec<HistoryPoint> {
        let since = OffsetDateTime::now_utc().unix_timestamp() - (minutes * 60) as i64;
        self.history
            .lock()
            .iter()
            .filter(|p| p.at >= since)
            .cloned()
            .collect()
    }

    fn remember(&self, snapshot: &Snapshot) {
        let Some(at) = snapshot.at else { return };
        let point = HistoryPoint {
            at: at.unix_timestamp(),
            cpu_percent: snapshot.host.cpu_percent,
            memory_used: snapshot.host.memory_used,
            memory_available: snapshot.host.memory_available,
            disk_used: snapshot.host.disk_used,
            instances: snapshot
                .instances
                .iter()
                .map(|(id, u)| (id.clone(), u.memory_bytes, u.cpu_percent))
                .collect(),
        };
        let capacity = (HISTORY.as_secs() / self.interval.as_secs().max(1)) as usize;
        let mut history = self.history.lock();
        history.push_back(point);
        while history.len() > capacity {
            history.pop_front();
        }
    }

    pub fn latest(&self) -> Arc<Snapshot> {
        self.latest.read().clone()
    }

    pub fn usage(&self, id: &str) -> Option<InstanceUsage> {
        self.latest().instances.get(id).cloned()
    }

    /// The published status of a running instance (`None` otherwise), with its reason.
    pub fn status(&self, instance: &Instance) -> Option<(Status, Option<String>)> {
        if instance.state != State::Running {
            return None;
        }
        let tracked = self.tracked.lock();
        let reading = tracked.get(&instance.id)?.status.published.clone()?;
        Some((reading.status, reading.reason))
    }

    /// The last line of text on a live instance's screen at the last look, if any.
    pub fn preview(&self, id: &str) -> Option<String> {
        self.tracked.lock().get(id)?.preview.clone()
    }

    fn output_flowing(&self, id: &str) -> bool {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.usage(id)
            .and_then(|u| u.last_output_at)
            .is_some_and(|at| now - at <= WORKING_WINDOW.as_secs() as i64)
    }

    /// Reads the instance's signals and offers the fused reading to its debounced status;
    /// a change is pushed to the instance's terminal viewers.
    pub async fn evaluate(&self, instance: &Instance) {
        if instance.state != State::Running {
            return;
        }
        let screen = match self.manager.tmux().for_account(instance.owner) {
            Some(tmux) => tmux.capture(&instance.tmux_session(), 0, false).await.ok(),
            None => None,
        };
        self.evaluate_with(instance, screen).await;
    }

    /// Every running instance in `live`, each account's screens read by one tmux client.
    async fn evaluate_all(&self, live: &[Instance]) {
        let mut by_owner: HashMap<i64, Vec<&Instance>> = HashMap::new();
        for instance in live.iter().filter(|i| i.state == State::Running) {
            by_owner.entry(instance.owner).or_default().push(instance);
        }
        let tmux = self.manager.tmux();
        let reads = by_owner.iter().map(|(&owner, instances)| {
            let sessions: Vec<String> = instances.iter().map(|i| i.tmux_session()).collect();
            let server = tmux.for_account(owner);
            async move {
                match server {
                    Some(server) => server.capture_screens(&sessions).await.unwrap_or_default(),
                    None => HashMap::new(),
                }
            }
        });
        let mut screens: HashMap<String, String> = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect();
        for instances in by_owner.values() {
            for instance in instances {
                let screen = screens.remove(&instance.tmux_session());
                self.evaluate_with(instance, screen).await;
            }
        }
    }

    /// Offers what `screen` and the other signals say of the instance to its debounced status.
    async fn evaluate_with(&self, instance: &Instance, screen: Option<String>) {
        let kind = self.manager.profile_kind(&instance.profile);
        let flowing = self.output_flowing(&instance.id);
        let approval = screen
            .as_deref()
            .and_then(|s| self.manager.observe_approval(instance, s));
        let changed = {
            let mut tracked = self.tracked.lock();
            let entry = tracked.entry(instance.id.clone()).or_default();
            let hook = entry
                .hook
                .as_ref()
                .filter(|(_, at)| at.elapsed() < HOOK_TRUST)
                .map(|(reading, _)| reading.clone());
            let mut reading = status::fuse(&Signals {
                kind,
                screen: screen.as_deref(),
                hook,
                output_flowing: flowing,
            });
            // A dialog the profile's approval rules read is a permission prompt, whatever else.
            if let Some(approval) = &approval {
                reading = Reading {
                    status: Status::NeedsPermission,
                    reason: approval
                        .question
                        .clone()
                        .or_else(|| Some(approval.tool.clone())),
                };
            }
            if let Some(screen) = screen.as_deref() {
                entry.preview = status::preview(screen);
            }
            entry.status.offer(reading, std::time::Instant::now())
        };
        if let Some(screen) = screen.as_deref() {
            self.keep_screen(instance, screen).await;
        }
        if let Some(reading) = changed {
            self.manager.publish_activity(
                &instance.id,
                reading.status.as_str(),
                reading.reason.as_deref(),
            );
        }
    }

    /// Keeps the screen in the record now and then (only when it changed), for an instance
    /// whose machine goes down with it: the record of a `lost` instance still shows it.
    async fn keep_screen(&self, instance: &Instance, screen: &str) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        screen.hash(&mut hasher);
        let digest = hasher.finish();
        let due = {
            let mut tracked = self.tracked.lock();
            let entry = tracked.entry(instance.id.clone()).or_default();
            let due = entry
                .screen_kept
                .is_none_or(|(at, kept)| kept != digest && at.elapsed() >= KEEP_SCREEN_EVERY);
            if due {
                entry.screen_kept = Some((std::time::Instant::now(), digest));
            }
            due
        };
        if due && let Err(err) = store::keep_screen(&self.db, &instance.id, screen).await {
            tracing::warn!(instance = %instance.id, error = %err.logged(), "cannot keep the screen");
        }
    }

    /// A hook report from the agent (already authenticated as this instance's): recorded, then
    /// the status is evaluated now and once more after it had time to settle.
    pub async fn hook_event(self: &Arc<Self>, instance: &Instance, event: &serde_json::Value) {
        let Some(reading) = status::from_hook(event) else {
            return;
        };
        self.tracked
            .lock()
            .entry(instance.id.clone())
            .or_default()
            .hook = Some((reading, std::time::Instant::now()));
        self.evaluate(instance).await;
        let first = {
            let mut tracked = self.tracked.lock();
            let entry = tracked.entry(instance.id.clone()).or_default();
            !std::mem::replace(&mut entry.settle_pending, true)
        };
        if !first {
            return;
        }
        let monitor = self.clone();
        let instance = instance.clone();
        tokio::spawn(async move {
            tokio::time::sleep(status::SETTLE + Duration::from_millis(100)).await;
            if let Some(entry) = monitor.tracked.lock().get_mut(&instance.id) {
                entry.settle_pending = false;
            }
            monitor.evaluate(&instance).await;
        });
    }

    /// Samples everything once, hands the measurements on, and stops idle instances.
    pub async fn sample(&self) -> anyhow::Result<()> {
        // Without tmux's word on an account's panes, none of its instances is idle and none
        // of their memory figures is new.
        let mut listing = self.manager.tmux().list_all_panes().await;
        // Keyed by owner too: an agent may name a session of its own after another's instance.
        let panes: HashMap<_, _> = std::mem::take(&mut listing.panes)
            .into_iter()
            .map(|(owner, _, pane)| ((owner, pane.session.clone()), pane))
            .collect();
        let live = store::live(&self.db).await?;
        let answered = |i: &Instance| listing.answered(i.owner);
        // Where the instance has its own cgroup, the kernel's list of its members is what
        // counts (nothing the account's tmux server says, and right inside bubblewrap's pid
        // namespace too); else the pane's pid, only if the kernel says it is the account's
        // (never pid 1, the server or another account's agent).
        // Both are read from the kernel's files, on the blocking pool.
        let sources: Vec<(String, i64, Option<PathBuf>, Option<u32>)> = live
            .iter()
            .map(|i| {
                let pid = pane_of(&panes, i).and_then(|pane| pane.pid);
                (
                    i.id.clone(),
                    i.owner,
                    self.manager.instance_group_dir(i),
                    pid,
                )
            })
            .collect();
        let (sampler, manager) = (self.sampler.clone(), self.manager.clone());
        let data_dir = self.data_dir.clone();
        let (host, trees) = tokio::task::spawn_blocking(move || {
            let roots: Vec<(String, Vec<u32>)> = sources
                .into_iter()
                .filter_map(|(id, owner, group, pid)| match group {
                    Some(group) if group.exists() => {
                        let members = crate::isolation::cgroups::members(&group);
                        Some((id, members.into_iter().map(i32::unsigned_abs).collect()))
                    }
                    _ => {
                        let pid = pid.filter(|&pid| manager.owns_process(owner, pid))?;
                        Some((id, vec![pid]))
                    }
                })
                .collect();
            sampler.lock().sample(&data_dir, &roots)
        })
        .await?;
        // An account whose server did not answer keeps its last figures rather than zeros.
        let previous = self.latest();
        let mut instances = HashMap::new();
        for instance in &live {
            if !answered(instance) {
                if let Some(usage) = previous.instances.get(&instance.id) {
                    instances.insert(instance.id.clone(), usage.clone());
                }
                continue;
            }
            let tree = trees.get(&instance.id).copied().unwrap_or(Tree::default());
            let pane = pane_of(&panes, instance);
            instances.insert(
                instance.id.clone(),
                InstanceUsage {
                    memory_bytes: tree.memory_bytes,
                    cpu_percent: tree.cpu_percent,
                    processes: tree.processes,
                    last_output_at: pane.and_then(|p| p.last_output),
                    last_input_at: self
                        .activity
                        .last_input(&instance.id)
                        .map(OffsetDateTime::unix_timestamp),
                },
            );
        }
        self.activity.retain_live(&live);
        self.activity.record_memory(
            instances
                .iter()
                .map(|(id, usage)| (id.clone(), usage.memory_bytes))
                .collect(),
        );
        let now = OffsetDateTime::now_utc();
        let changes = {
            let mut alerts = self.alerts.lock();
            let percent = |used: u64, total: u64| {
                if total == 0 {
                    0.0
                } else {
                    100.0 * used as f64 / total as f64
                }
            };
            [
                (alerts::Kind::Cpu, f64::from(host.cpu_percent)),
                (
                    alerts::Kind::Memory,
                    percent(
                        host.memory_total - host.memory_available.min(host.memory_total),
                        host.memory_total,
                    ),
                ),
                (alerts::Kind::Disk, percent(host.disk_used, host.disk_total)),
            ]
            .into_iter()
            .filter_map(|(kind, value)| alerts.observe(kind, value, now))
            .collect::<Vec<_>>()
        };
        for change in changes {
            if let Err(err) = alerts::record(&self.db, self.webhook.as_deref(), change, now).await {
                tracing::warn!(error = %err.logged(), "recording an alert failed");
            }
            let _ = self
                .events
                .send(MonitorEvent::Alert(alerts::payload(change, now)));
        }
        let snapshot = Arc::new(Snapshot {
            at: Some(now),
            host,
            instances,
        });
        self.remember(&snapshot);
        *self.latest.write() = snapshot;
        self.tracked.lock().retain(|id, _| {
            live.iter()
                .any(|i| &i.id == id && i.state == State::Running)
        });
        let answering: Vec<Instance> = live.into_iter().filter(|i| answered(i)).collect();
        self.evaluate_all(&answering).await;
        *self.activity.resting.lock() = self.resting(&answering);
        let _ = self.events.send(MonitorEvent::Sampled);
        self.apply_idle_policy(&answering).await;
        Ok(())
    }

    /// When a running instance was last active: its start, its last output or input.
    fn last_activity(&self, instance: &Instance) -> Option<i64> {
        let latest = self.latest();
        let usage = latest.instances.get(&instance.id);
        [
            instance.started_at.map(OffsetDateTime::unix_timestamp),
            usage.and_then(|u| u.last_output_at),
            usage.and_then(|u| u.last_input_at),
        ]
        .into_iter()
        .flatten()
        .max()
    }

    /// Running instances really at rest: waiting or idle (not working, not asking), no
    /// permission dialog up, and no process of theirs at work (a dev server or a test run in
    /// the background counts, as does CPU), each with when it was last active.
    fn resting(&self, live: &[Instance]) -> HashMap<String, i64> {
        let latest = self.latest();
        live.iter()
            .filter(|i| i.state == State::Running)
            .filter(|i| matches!(self.status(i), Some((Status::Waiting | Status::Idle, _))))
            .filter(|i| self.manager.pending_approval(i).is_none())
            .filter(|i| {
                latest
                    .instances
                    .get(&i.id)
                    .is_some_and(|u| u.processes <= 1 && u.cpu_percent < RESTING_CPU_PERCENT)
            })
            .filter_map(|i| Some((i.id.clone(), self.last_activity(i)?)))
            .collect()
    }

    /// Running instances without input or output for their idle timeout are suspended (when
    /// their profile says so and they are really at rest) or stopped, as their profile's
    /// `idle_policy` says.
    async fn apply_idle_policy(&self, live: &[Instance]) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let resting = self.activity.resting();
        for instance in live.iter().filter(|i| i.state == State::Running) {
            let Some(timeout) = self.manager.idle_timeout(&instance.profile) else {
                continue;
            };
            let Some(last_activity) = self.last_activity(instance) else {
                continue;
            };
            if now - last_activity < timeout.as_secs_f64().ceil() as i64 {
                continue;
            }
            let outcome = match self.manager.idle_policy(&instance.profile) {
                IdlePolicy::Off => continue,
                // Only at rest: a quiet agent with a build running is not idle.
                IdlePolicy::Suspend if !resting.contains_key(&instance.id) => continue,
                IdlePolicy::Suspend => self.manager.suspend(instance, "idle").await,
                IdlePolicy::Stop => self.manager.stop(instance, "idle").await,
            };
            match outcome {
                Ok(done) => {
                    tracing::info!(instance = %instance.id, state = done.state.as_str(), "idle instance put to rest");
                }
                Err(err) => {
                    tracing::debug!(instance = %instance.id, error = %err.logged(), "idle policy skipped");
                }
            }
        }
    }

    /// Samples every interval until shutdown.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(err) = self.sample().await {
                tracing::warn!(error = format!("{err:#}"), "sampling failed");
            }
        }
    }
}

impl crate::instances::Observer for Monitor {
    fn usage(&self, id: &str) -> Option<crate::instances::observe::Usage> {
        let usage = Monitor::usage(self, id)?;
        Some(crate::instances::observe::Usage {
            memory_bytes: usage.memory_bytes,
            cpu_percent: usage.cpu_percent,
            last_activity_at: usage.last_output_at.max(usage.last_input_at),
        })
    }

    fn status(&self, instance: &Instance) -> Option<(Status, Option<String>)> {
        Monitor::status(self, instance)
    }

    fn preview(&self, id: &str) -> Option<String> {
        Monitor::preview(self, id)
    }

    fn hook_event<'a>(
        self: Arc<Self>,
        instance: &'a Instance,
        event: &'a serde_json::Value,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move { Monitor::hook_event(&self, instance, event).await })
    }
}

/// The instance's pane in its owner's server (or the shared one without isolation).
fn pane_of<'a>(
    panes: &'a HashMap<(Option<i64>, String), PaneInfo>,
    instance: &Instance,
) -> Option<&'a PaneInfo> {
    let session = instance.tmux_session();
    panes
        .get(&(Some(instance.owner), session.clone()))
        .or_else(|| panes.get(&(None, session)))
}
