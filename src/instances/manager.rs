//! Instance lifecycle: admission and limits, start (environment, secrets, launcher), stop,
//! restart with the agent's conversation resumed, input and output, and reconciliation with tmux.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use super::profiles::{Profile, ProfileKind, resolve_command, search_path};
use super::store::{self, Instance, NewInstance, SESSION_PREFIX, State};
use super::tmux::{PaneInfo, SessionSpec, Tmux, TmuxError, TmuxServers};
use crate::config::Config;
use crate::db::Db;
use crate::error::AppError;
use crate::isolation::{Isolation, blocking_as};
use crate::layout::{Layout, write_private_file};
use crate::secrets::SecretBox;
use crate::users::User;

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
    launcher: PathBuf,
    /// Where agents report hook events: `http://<loopback>:<port><base>`.
    hook_base: String,
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
    /// When each instance last received input (API commands, terminal keystrokes).
    last_input: Mutex<HashMap<String, time::OffsetDateTime>>,
    /// Resident memory of each live instance's process tree, as the monitor last measured it.
    measured: Mutex<HashMap<String, u64>>,
    /// Permission dialogs on screens, and how each profile draws them.
    pub(super) approvals: super::approvals::Registry,
}

/// A change of an instance's state, as live terminals learn of it.
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

/// A profile as `GET /api/models` shows it to one user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    pub id: String,
    pub name: String,
    pub kind: ProfileKind,
    pub memory_mb: u64,
    /// Whether this user can start it now.
    pub usable: bool,
    /// Why not, when it is not usable.
    pub reason: Option<String>,
    /// Secret names the profile needs, for a link to set them.
    pub required_secrets: Vec<String>,
}

/// Input for an instance: text typed literally, then named keys, then Enter if asked.
pub struct Input<'a> {
    pub text: Option<&'a str>,
    pub keys: &'a [String],
    pub enter: bool,
}

impl Manager {
    pub fn new(
        db: Db,
        layout: Arc<Layout>,
        config: Arc<Config>,
        secrets: Arc<SecretBox>,
        isolation: Arc<Isolation>,
        launcher: PathBuf,
        hook_base: String,
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
            layout,
            config,
            secrets,
            tmux,
            isolation,
            launcher,
            hook_base,
            admission: tokio::sync::Mutex::new(()),
            busy: Mutex::new(HashSet::new()),
            reported_orphans: Mutex::new(HashSet::new()),
            awaiting_status: Mutex::new(HashMap::new()),
            missed: Mutex::new(HashMap::new()),
            events: tokio::sync::broadcast::channel(256).0,
            last_input: Mutex::new(HashMap::new()),
            measured: Mutex::new(HashMap::new()),
            approvals,
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

    pub fn profile_kind(&self, profile: &str) -> ProfileKind {
        self.config
            .profiles
            .get(profile)
            .map_or(ProfileKind::Generic, |p| p.kind)
    }

    /// Records that someone typed into the instance (it is not idle).
    pub fn note_input(&self, id: &str) {
        self.last_input
            .lock()
            .insert(id.to_owned(), time::OffsetDateTime::now_utc());
    }

    pub fn last_input(&self, id: &str) -> Option<time::OffsetDateTime> {
        self.last_input.lock().get(id).copied()
    }

    /// The monitor's latest measurement of each live instance's memory, in bytes.
    pub fn record_memory(&self, measured: HashMap<String, u64>) {
        *self.measured.lock() = measured;
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

    /// Every enabled profile, with whether `user` can start it now.
    pub async fn models(&self, user: &User) -> Result<Vec<ModelInfo>, AppError> {
        let names: HashSet<String> = crate::secrets::store::list(&self.db, user.id)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let path = search_path();
        Ok(self
            .config
            .profiles
            .iter()
            .filter(|(_, p)| p.enabled)
            .map(|(id, profile)| {
                let missing: Vec<&String> = profile
                    .secrets
                    .values()
                    .filter(|s| !names.contains(*s))
                    .collect();
                let reason = if resolve_command(&profile.command, &path).is_none() {
                    Some(format!(
                        "`{}` is not installed on the server",
                        profile.command
                    ))
                } else if !missing.is_empty() {
                    let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                    Some(format!(
                        "set the secret {} in Settings first",
                        list.join(", ")
                    ))
                } else {
                    None
                };
                ModelInfo {
                    id: id.clone(),
                    name: profile.name.clone(),
                    kind: profile.kind,
                    memory_mb: profile.memory_mb,
                    usable: reason.is_none(),
                    reason,
                    required_secrets: profile.secrets.values().cloned().collect(),
                }
            })
            .collect())
    }

    /// Admits, records and starts a new instance.
    pub async fn create(
        &self,
        user: &User,
        profile_id: &str,
        name: Option<&str>,
        workdir: Option<&str>,
    ) -> Result<Instance, AppError> {
        let profile = self.profile(profile_id).ok_or_else(|| {
            AppError::Unprocessable(format!(
                "there is no profile `{profile_id}`; see GET /api/models"
            ))
        })?;
        let name = match name {
            Some(name) => check_name(name)?,
            None => profile.name.clone(),
        };
        let workdir = normalize_workdir(workdir.unwrap_or(""))?;
        self.resolve_workdir(user.id, &workdir).await?;
        let secrets = self.secrets_of(user.id).await?;
        if let Some(missing) = profile.secrets.values().find(|s| !secrets.contains_key(*s)) {
            return Err(AppError::Unprocessable(format!(
                "the profile `{profile_id}` needs the secret {missing}; set it with PUT /api/secrets/{missing}"
            )));
        }
        let id = new_instance_id();
        let agent_session =
            (profile.kind == ProfileKind::Claude).then(|| uuid::Uuid::new_v4().to_string());
        // Busy before the record exists, so the reconciler never sees it without its session.
        let _busy = self.busy(&id)?;
        let instance = {
            let _admission = self.admission.lock().await;
            self.admit(user, profile).await?;
            let new = NewInstance {
                id: &id,
                user_id: user.id,
                name: &name,
                profile: profile_id,
                workdir: &workdir,
                agent_session_id: agent_session.as_deref(),
            };
            store::insert(&self.db, &new).await?
        };
        self.publish(&instance.id).await?;
        self.start(&instance, user, profile, &secrets).await?;
        Ok(store::get(&self.db, &instance.id)
            .await?
            .unwrap_or(instance))
    }

    /// Refuses a start beyond the instance limits or the memory that is free.
    async fn admit(&self, user: &User, profile: &Profile) -> Result<(), AppError> {
        let limits = &self.config.limits;
        let (mine, total) = store::live_counts(&self.db, user.id).await?;
        if total >= i64::from(limits.max_total) {
            return Err(AppError::Conflict(format!(
                "the server runs its maximum of {} instances; stop one first",
                limits.max_total
            )));
        }
        if let Some(max) = limits.per_user(user.is_admin())
            && mine >= i64::from(max)
        {
            return Err(AppError::Conflict(format!(
                "you already run your maximum of {max} instances; stop one first"
            )));
        }
        self.admit_memory(user, profile).await
    }

    /// Refuses a start that would not fit in memory. Running agents count with what they
    /// use now, or with their profile's estimate while they have not grown to it yet, since
    /// a fresh agent grows; the newcomer counts with its estimate.
    async fn admit_memory(&self, user: &User, profile: &Profile) -> Result<(), AppError> {
        const MB: u64 = 1024 * 1024;
        let limits = &self.config.limits;
        let measured = self.measured.lock().clone();
        let mut running = Vec::new();
        for instance in store::live(&self.db).await? {
            let estimate = self
                .config
                .profiles
                .get(&instance.profile)
                .map_or(0, |p| p.memory_mb * MB);
            let now = measured.get(&instance.id).copied().unwrap_or(0);
            running.push((instance, now, estimate.max(now)));
        }
        let (fits, capacity_text) = if limits.memory_budget_mb > 0 {
            let committed: u64 = running.iter().map(|(_, _, counted)| counted).sum();
            let budget = limits.memory_budget_mb * MB;
            (
                committed + profile.memory_mb * MB <= budget,
                format!(
                    "agents may use {} MB together and {} MB of that is taken",
                    limits.memory_budget_mb,
                    committed / MB
                ),
            )
        } else {
            let Some(available) = available_memory_mb().map(|mb| mb * MB) else {
                return Ok(());
            };
            // What running agents will still grow into is not available for the newcomer.
            let growth: u64 = running.iter().map(|(_, now, counted)| counted - now).sum();
            let usable = available
                .saturating_sub(growth)
                .saturating_sub(limits.memory_reserve_mb * MB);
            (
                profile.memory_mb * MB <= usable,
                format!(
                    "the server has {} MB available, keeps {} MB in reserve and expects {} MB more from agents still starting",
                    available / MB,
                    limits.memory_reserve_mb,
                    growth / MB
                ),
            )
        };
        if fits {
            return Ok(());
        }
        // Name the caller's own biggest instances; others' are only a total.
        running.sort_by_key(|(_, now, _)| std::cmp::Reverse(*now));
        let mine: Vec<String> = running
            .iter()
            .filter(|(i, _, _)| i.owner == user.id)
            .take(3)
            .map(|(i, now, _)| format!("{} ({} MB)", i.name, now / MB))
            .collect();
        let others: u64 = running
            .iter()
            .filter(|(i, _, _)| i.owner != user.id)
            .map(|(_, now, _)| now)
            .sum();
        let mut using = Vec::new();
        if !mine.is_empty() {
            using.push(format!("your {}", mine.join(", ")));
        }
        if others > 0 {
            using.push(format!("other users' agents ({} MB)", others / MB));
        }
        let using = if using.is_empty() {
            String::new()
        } else {
            format!("; using memory: {}", using.join(" and "))
        };
        Err(AppError::Conflict(format!(
            "not enough memory: {} needs about {} MB, {capacity_text}{using}; stop an instance first",
            profile.name, profile.memory_mb
        )))
    }

    /// The path of `workdir` in the account's workspace, once the kernel found it a folder
    /// beneath it, as the account: one answer for "missing" and "outside", so nothing learns
    /// what exists where the account cannot look. (The agent enters it as the account, so a
    /// link swapped meanwhile takes it nowhere the account could not go.)
    async fn resolve_workdir(&self, user_id: i64, workdir: &str) -> Result<PathBuf, AppError> {
        let identity = self.isolation.ensure(user_id).await?;
        self.layout.prepare_user(user_id)?;
        let workspace = self.layout.workspace(user_id);
        let relative = workdir.to_owned();
        let found = crate::isolation::blocking_as(identity, move |acting| {
            let workspace = workspace.path(acting);
            let path = crate::files::jail::RelPath::parse(&relative).ok()?;
            crate::files::jail::Jail::open(workspace)
                .ok()?
                .check_dir(&path)
                .ok()?;
            // The real path, as programs see their working folder (Claude Code keys its
            // trust of a folder by it); read with the account's rights, like the check.
            let real = workspace.join(&relative).canonicalize().ok()?;
            real.starts_with(workspace.canonicalize().ok()?)
                .then_some(real)
        })
        .await?;
        found.ok_or_else(|| {
            AppError::Unprocessable(format!("`{workdir}` is not a folder in your workspace"))
        })
    }

    /// Builds the agent's environment and command, and starts its tmux session.
    async fn start(
        &self,
        instance: &Instance,
        user: &User,
        profile: &Profile,
        secrets: &BTreeMap<String, String>,
    ) -> Result<(), AppError> {
        let result = self.start_session(instance, user, profile, secrets).await;
        match result {
            Ok(()) => {
                store::mark_running(&self.db, &instance.id).await?;
                self.publish(&instance.id).await
            }
            Err(err) => {
                store::mark_ended(
                    &self.db,
                    &instance.id,
                    State::Exited,
                    None,
                    "start_failed",
                    None,
                )
                .await?;
                self.publish(&instance.id).await?;
                Err(err)
            }
        }
    }

    async fn start_session(
        &self,
        instance: &Instance,
        user: &User,
        profile: &Profile,
        secrets: &BTreeMap<String, String>,
    ) -> Result<(), AppError> {
        let cwd = self.resolve_workdir(user.id, &instance.workdir).await?;
        let home = self.layout.home(user.id);
        // The agent's HOME, TMPDIR and sandbox rules: for its processes, which run as it.
        #[allow(clippy::disallowed_methods)]
        let home_path = home.for_account_process().to_path_buf();
        #[allow(clippy::disallowed_methods)]
        let workspace_path = self
            .layout
            .workspace(user.id)
            .for_account_process()
            .to_path_buf();
        let path = search_path();
        let command = resolve_command(&profile.command, &path).ok_or_else(|| {
            AppError::Unprocessable(format!(
                "`{}` is not installed on the server",
                profile.command
            ))
        })?;

        let mut env: BTreeMap<String, String> = BTreeMap::from([
            ("HOME".into(), home_path.to_string_lossy().into_owned()),
            ("USER".into(), user.username.clone()),
            ("LOGNAME".into(), user.username.clone()),
            ("SHELL".into(), "/bin/bash".into()),
            ("PATH".into(), path),
            ("LANG".into(), "C.UTF-8".into()),
            ("POCKETDEV_INSTANCE".into(), instance.id.clone()),
            (
                super::hooks::URL_ENV.into(),
                format!("{}api/instances/{}/hooks", self.hook_base, instance.id),
            ),
        ]);
        let identity = self.isolation.ensure(user.id).await?;
        if identity.is_some() {
            // The account's own temporary folder: /tmp is shared by every account.
            env.insert(
                "TMPDIR".into(),
                home_path.join("tmp").to_string_lossy().into_owned(),
            );
        }
        env.extend(profile.env.clone());
        for (var, secret) in profile.secrets.iter().chain(&profile.optional_secrets) {
            if let Some(value) = secrets.get(secret) {
                env.insert(var.clone(), value.clone());
            }
        }

        let mut argv = vec![
            self.launcher.to_string_lossy().into_owned(),
            "launch".into(),
            "--env-file".into(),
            String::new(),
        ];
        // A group of its own, so that everything the agent starts goes with it at a stop. A
        // leftover from an earlier run of this instance goes first.
        if let Some(old) = self
            .isolation
            .existing_instance_group(user.id, &instance.id)
        {
            tokio::task::spawn_blocking(move || crate::isolation::cgroups::kill_and_remove(&old))
                .await
                .map_err(anyhow::Error::from)?;
        }
        let group = self.isolation.instance_group(user.id, &instance.id);
        if let Some((_, seen)) = &group {
            argv.extend(["--cgroup".into(), seen.clone()]);
        }
        if self.isolation.landlock() {
            let launcher_dir = self.launcher.parent().unwrap_or(Path::new("/"));
            let allowed = crate::isolation::sandbox::Allowed {
                write: vec![workspace_path, home_path.clone()],
                read: vec![
                    crate::isolation::sandbox::program_root(&command),
                    launcher_dir.to_path_buf(),
                ],
            };
            argv.extend(allowed.to_args());
        }
        argv.extend(["--".into(), command.to_string_lossy().into_owned()]);
        argv.extend(profile.args.iter().cloned());
        if profile.kind == ProfileKind::Claude {
            let home_for_prep = home.clone();
            let cwd_for_prep = cwd.clone();
            let key = env.get("ANTHROPIC_API_KEY").cloned();
            let hook_command = format!("'{}' hook", self.launcher.display());
            blocking_as(identity, move |acting| {
                super::claude::prepare_home(
                    home_for_prep.path(acting),
                    &cwd_for_prep,
                    key.as_deref(),
                    &hook_command,
                )
            })
            .await??;
            if let Some(session) = &instance.agent_session_id {
                let home_for_check = home.clone();
                let session_for_check = session.clone();
                let resume = blocking_as(identity, move |acting| {
                    has_transcript(home_for_check.path(acting), &session_for_check)
                })
                .await
                .unwrap_or(false);
                argv.push(if resume { "--resume" } else { "--session-id" }.into());
                argv.push(session.clone());
            }
        }

        // A fresh hook token per start: a report counts only with the current one.
        let hook_token = crate::auth::tokens::random_token(24);
        store::set_hook_token(
            &self.db,
            &instance.id,
            &crate::auth::tokens::hash_token(&hook_token),
        )
        .await?;
        env.insert(super::hooks::TOKEN_ENV.into(), hook_token);

        // The launcher reads and deletes it. An isolated account's launcher runs as the account,
        // so its file is in the account's home, written with the account's identity.
        let env_file = match identity {
            None => self.layout.server_dir().join("run"),
            // Named for the launcher, which runs as the account; written below as the account.
            Some(_) => home_path.join(".pocketdev").join("run"),
        }
        .join(format!("{}.env", instance.id));
        let env_text = serde_json::to_string(&env).context("environment")?;
        let env_path = env_file.clone();
        blocking_as(identity, move |_| {
            if identity.is_some() {
                create_private_dirs(env_path.parent().expect("a folder"))?;
            }
            write_private_file(&env_path, env_text.as_bytes())
        })
        .await??;
        argv[3] = env_file.to_string_lossy().into_owned();

        let tmux = self.tmux_for(user.id).await?;
        if self.isolation.enabled() {
            // Under the account's limits (and in its sandbox) from its first instruction on.
            let start = self
                .isolation
                .server_start(user.id)
                .map_err(|e| {
                    tracing::error!(user_id = user.id, error = %format!("{e:#}"), "cannot prepare the account's limits");
                    AppError::StartFailed(
                        "the agent could not start: this server could not set up the account's \
                         resource limits (cgroups); an admin finds the cause in the server's log \
                         and with `pocketdev doctor`"
                            .into(),
                    )
                })?;
            tmux.start_server(&self.launcher, &start)
                .await
                .map_err(start_error)?;
        }
        let session = instance.tmux_session();
        // A leftover dead session of this instance would block the name.
        tmux.kill_session(&session).await.map_err(tmux_error)?;
        let spec = SessionSpec {
            name: &session,
            cwd: &cwd,
            cols: DEFAULT_COLS,
            rows: DEFAULT_ROWS,
            argv: &argv,
        };
        let started = tmux.new_session(&spec).await;
        if started.is_err() {
            let env_file = env_file.clone();
            let _ = blocking_as(identity, move |_| std::fs::remove_file(&env_file)).await;
        }
        started.map_err(start_error)?;
        // The launcher waits in the pane until it is in its group.
        if let Some((dir, _)) = group {
            let placed = self.isolation.move_into(&dir, &env_file, user.id).await;
            if let Err(err) = placed {
                let _ = tmux.kill_session(&session).await;
                tracing::error!(instance = %instance.id, error = %format!("{err:#}"), "cannot place the agent in its cgroup");
                return Err(AppError::StartFailed(
                    "the agent could not start: the server could not place it in its own group"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Stops a live instance: SIGHUP to the agent, SIGKILL after the grace period, then the
    /// session goes; the record keeps its last screen and the reason.
    pub async fn stop(&self, instance: &Instance, reason: &str) -> Result<Instance, AppError> {
        let _busy = self.busy(&instance.id)?;
        self.stop_inner(instance, reason).await?;
        store::get(&self.db, &instance.id)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))
    }

    async fn stop_inner(&self, instance: &Instance, reason: &str) -> Result<(), AppError> {
        if !instance.state.is_live() {
            return Err(AppError::Conflict("this instance is not running".into()));
        }
        let tmux = self.tmux_for(instance.owner).await?;
        let session = instance.tmux_session();
        let screen = tmux.capture(&session, LAST_SCREEN_LINES, false).await.ok();
        let pane = self.pane(instance).await?;
        let group = self
            .isolation
            .existing_instance_group(instance.owner, &instance.id);
        // Signals go only to processes the kernel says are the account's: the pane's pid comes
        // from the account's own tmux server, which could name any process.
        let signal = |pid: u32, signal| self.isolation.signal_owned(instance.owner, pid, signal);
        let mut exit_code = None;
        if let Some(PaneInfo {
            dead: false,
            pid: Some(pid),
            ..
        }) = pane
        {
            match &group {
                Some(dir) => {
                    for member in crate::isolation::cgroups::members(dir) {
                        signal(member.unsigned_abs(), rustix::process::Signal::HUP);
                    }
                }
                None => {
                    signal(pid, rustix::process::Signal::HUP);
                }
            }
            let deadline =
                tokio::time::Instant::now() + Duration::from_secs(self.config.tmux.stop_grace_secs);
            loop {
                match self.pane(instance).await? {
                    Some(p) if p.dead => {
                        exit_code = p.exit_code();
                        break;
                    }
                    None => break,
                    Some(_) if tokio::time::Instant::now() >= deadline => {
                        // With a group, cgroup.kill below ends everything at once.
                        if group.is_none() {
                            signal(pid, rustix::process::Signal::KILL);
                        }
                        break;
                    }
                    Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        tmux.kill_session(&session).await.map_err(tmux_error)?;
        // Whatever the agent left running (nohup, setsid, a dev server) goes with it.
        self.remove_group(instance).await;
        store::mark_ended(
            &self.db,
            &instance.id,
            State::Stopped,
            exit_code,
            reason,
            screen.as_deref(),
        )
        .await?;
        self.publish(&instance.id).await
    }

    /// Where the instance's own cgroup is when it has one (it may not exist: check it on a
    /// blocking thread).
    pub fn instance_group_dir(&self, instance: &Instance) -> Option<std::path::PathBuf> {
        self.isolation
            .instance_group_dir(instance.owner, &instance.id)
    }

    /// Whether `pid` is one of the account's processes, as the kernel says.
    pub fn owns_process(&self, owner: i64, pid: u32) -> bool {
        self.isolation.owns_process(owner, pid)
    }

    /// For reconciliation: `remove_group`, but not while someone acts on the instance (a
    /// restart makes its new group under the same name and clears the old one itself).
    async fn remove_group_unless_busy(&self, instance: &Instance) {
        if !self.busy.lock().contains(&instance.id) {
            self.remove_group(instance).await;
        }
    }

    /// Ends everything left in an instance's group and removes the group.
    async fn remove_group(&self, instance: &Instance) {
        if let Some(dir) = self
            .isolation
            .existing_instance_group(instance.owner, &instance.id)
        {
            let _ = tokio::task::spawn_blocking(move || {
                crate::isolation::cgroups::kill_and_remove(&dir);
            })
            .await;
        }
    }

    /// Starts an ended instance again (stopping it first if it runs), resuming the agent's
    /// conversation where the profile supports it.
    pub async fn restart(&self, instance: &Instance) -> Result<Instance, AppError> {
        let _busy = self.busy(&instance.id)?;
        let profile = self.profile(&instance.profile).ok_or_else(|| {
            AppError::Conflict(format!(
                "the profile `{}` no longer exists",
                instance.profile
            ))
        })?;
        if instance.state.is_live() {
            self.stop_inner(instance, "restart").await?;
        }
        let secrets = self.secrets_of(instance.owner).await?;
        if let Some(missing) = profile.secrets.values().find(|s| !secrets.contains_key(*s)) {
            return Err(AppError::Unprocessable(format!(
                "the profile needs the secret {missing}"
            )));
        }
        // Limits count against the owner, also when an admin restarts it.
        let owner = crate::users::store::by_id(&self.db, instance.owner)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))?;
        {
            let _admission = self.admission.lock().await;
            self.admit(&owner, profile).await?;
            store::mark_starting(&self.db, &instance.id).await?;
        }
        self.publish(&instance.id).await?;
        self.start(instance, &owner, profile, &secrets).await?;
        store::get(&self.db, &instance.id)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))
    }

    /// Stops the instance if it runs and removes its record.
    pub async fn delete(&self, instance: &Instance) -> Result<(), AppError> {
        let _busy = self.busy(&instance.id)?;
        if instance.state.is_live() {
            self.stop_inner(instance, "user").await?;
        }
        store::delete(&self.db, &instance.id).await?;
        self.publish(&instance.id).await
    }

    pub async fn send(&self, instance: &Instance, input: &Input<'_>) -> Result<(), AppError> {
        if instance.state != State::Running {
            return Err(AppError::Conflict(
                "this instance is not running; restart it first".into(),
            ));
        }
        self.note_input(&instance.id);
        let keys = input
            .keys
            .iter()
            .map(|k| tmux_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let tmux = self.tmux_for(instance.owner).await?;
        let session = instance.tmux_session();
        if let Some(text) = input.text.filter(|t| !t.is_empty()) {
            tmux.send_text(&session, text).await.map_err(tmux_error)?;
        }
        if !keys.is_empty() {
            tmux.send_keys(&session, &keys).await.map_err(tmux_error)?;
        }
        if input.enter {
            tmux.send_keys(&session, &["Enter"])
                .await
                .map_err(tmux_error)?;
        }
        Ok(())
    }

    /// The screen plus up to `lines` lines of history; for an ended instance, what was kept.
    pub async fn output(
        &self,
        instance: &Instance,
        lines: u32,
        ansi: bool,
    ) -> Result<String, AppError> {
        if instance.state.is_live() {
            let tmux = self.tmux_for(instance.owner).await?;
            match tmux.capture(&instance.tmux_session(), lines, ansi).await {
                Ok(text) => return Ok(last_lines(&text, lines as usize + DEFAULT_ROWS as usize)),
                Err(TmuxError::Failed { .. }) => {} // ended a moment ago; fall back to the record
                Err(err) => return Err(tmux_error(err)),
            }
        }
        let kept = store::last_screen(&self.db, &instance.id)
            .await?
            .unwrap_or_default();
        Ok(last_lines(&kept, lines as usize + DEFAULT_ROWS as usize))
    }

    /// A page of a running instance's tmux history (see [`super::history`]).
    pub async fn history_page(
        &self,
        instance: &Instance,
        before: u64,
        lines: u32,
    ) -> Result<super::history::Page, AppError> {
        let tmux = self.history_tmux(instance).await?;
        super::history::page(&tmux, &instance.tmux_session(), before, lines)
            .await
            .map_err(history_error)
    }

    /// The lines of a running instance's tmux history that hold `query`, newest first.
    pub async fn history_search(
        &self,
        instance: &Instance,
        query: &str,
    ) -> Result<super::history::Found, AppError> {
        let tmux = self.history_tmux(instance).await?;
        super::history::search(&tmux, &instance.tmux_session(), query)
            .await
            .map_err(history_error)
    }

    async fn history_tmux(&self, instance: &Instance) -> Result<Tmux, AppError> {
        if instance.state != State::Running {
            return Err(not_running_history());
        }
        self.tmux_for(instance.owner).await
    }

    /// Keeps every running instance's screen in its record (at shutdown), each within the tmux
    /// timeout; a silent account's instances keep what was kept before.
    pub async fn keep_screens(&self) {
        let Ok(live) = store::live(&self.db).await else {
            return;
        };
        let captures = live
            .iter()
            .filter(|i| i.state == store::State::Running)
            .map(|instance| async move {
                let tmux = self.tmux.for_account(instance.owner)?;
                let screen = tmux
                    .capture(&instance.tmux_session(), LAST_SCREEN_LINES, false)
                    .await
                    .ok()?;
                Some((instance.id.clone(), screen))
            });
        for (id, screen) in futures_util::future::join_all(captures)
            .await
            .into_iter()
            .flatten()
        {
            if let Err(err) = store::keep_screen(&self.db, &id, &screen).await {
                tracing::warn!(instance = %id, error = %err.logged(), "cannot keep the screen");
            }
        }
    }

    async fn pane(&self, instance: &Instance) -> Result<Option<PaneInfo>, AppError> {
        let session = instance.tmux_session();
        let panes = self
            .tmux_for(instance.owner)
            .await?
            .list_panes()
            .await
            .map_err(tmux_error)?;
        Ok(panes.into_iter().find(|p| p.session == session))
    }

    /// One pass of reconciliation: live records whose agent ended or whose session vanished
    /// are recorded as exited; sessions without a record are reported (or killed if configured).
    pub async fn reconcile(&self) -> Result<(), AppError> {
        // A listing says nothing of an instance that started after it began (a slow server
        // can hold a listing for seconds while other accounts create agents).
        let began = time::OffsetDateTime::now_utc();
        let listing = self.tmux.list_all_panes().await;
        if listing.tmux_missing {
            return Ok(());
        }
        let panes = &listing.panes;
        let live = store::live(&self.db).await?;
        // Accounts whose tmux server stopped under their agents this pass, and how many went.
        let mut servers_gone: std::collections::BTreeMap<i64, u32> = Default::default();
        for instance in &live {
            // An account whose server did not answer is left as it is until it does.
            if self.busy.lock().contains(&instance.id) || !listing.answered(instance.owner) {
                continue;
            }
            let session = instance.tmux_session();
            // Only the owner's server counts: an agent may name a session of its own after
            // someone else's instance.
            let found = panes.iter().find(|(owner, _, p)| {
                p.session == session && owner.is_none_or(|o| o == instance.owner)
            });
            if found.is_some() {
                self.missed.lock().remove(&instance.id);
            }
            match found.map(|(_, tmux, pane)| (tmux, pane)) {
                None => {
                    if !self.missed_twice(instance, began) {
                        continue;
                    }
                    self.remove_group_unless_busy(instance).await;
                    // The server itself stopped (or crashed), not just this agent's session.
                    let reason = if listing.server_stopped(instance.owner) {
                        "server_gone"
                    } else {
                        "lost"
                    };
                    if store::mark_ended(&self.db, &instance.id, State::Exited, None, reason, None)
                        .await?
                    {
                        if reason == "server_gone" {
                            *servers_gone.entry(instance.owner).or_default() += 1;
                        }
                        tracing::warn!(instance = %instance.id, reason, "tmux session vanished; instance marked exited");
                        self.publish(&instance.id).await?;
                    }
                }
                Some((tmux, pane)) if pane.dead && self.status_settled(&instance.id, pane) => {
                    let screen = tmux.capture(&session, LAST_SCREEN_LINES, false).await.ok();
                    let code = pane.exit_code();
                    // What it left running goes before anyone sees it ended (and restarts it).
                    self.remove_group_unless_busy(instance).await;
                    if store::mark_ended(
                        &self.db,
                        &instance.id,
                        State::Exited,
                        code,
                        "exit",
                        screen.as_deref(),
                    )
                    .await?
                    {
                        tracing::info!(instance = %instance.id, exit_code = ?code, "agent exited");
                        self.publish(&instance.id).await?;
                    }
                    if let Err(err) = tmux.kill_session(&session).await {
                        tracing::warn!(instance = %instance.id, error = %err, "cannot remove an ended agent's session");
                    }
                }
                Some(_) => {}
            }
        }
        for (owner, agents) in servers_gone {
            let detail = format!(
                "the tmux server of account {owner} stopped, taking {agents} running agent(s) with it; \
                 the account's next agent starts a new one"
            );
            let webhook = self.config.alerts.webhook_url.as_deref();
            let raised = crate::monitor::alerts::event(
                &self.db,
                webhook,
                "tmux_server",
                f64::from(agents),
                &detail,
            )
            .await;
            if let Err(err) = raised {
                tracing::warn!(error = %err.logged(), "cannot record the alert");
            }
        }
        // Per-instance state lasts only as long as the instance.
        let live_ids: HashSet<&str> = live.iter().map(|i| i.id.as_str()).collect();
        self.missed
            .lock()
            .retain(|id, _| live_ids.contains(id.as_str()));
        self.last_input
            .lock()
            .retain(|id, _| live_ids.contains(id.as_str()));
        self.awaiting_status
            .lock()
            .retain(|id, _| live_ids.contains(id.as_str()));
        let known: HashSet<String> = live.iter().map(Instance::tmux_session).collect();
        // Sessions without a live record; an agent can make any number of them in its own
        // server, so they cost one query a pass, whatever their number.
        let orphans: Vec<_> = panes
            .iter()
            .filter(|(_, _, p)| p.session.starts_with(SESSION_PREFIX))
            .filter(|(_, _, p)| !known.contains(&p.session))
            .filter(|(_, _, p)| {
                let id = p.session.trim_start_matches(SESSION_PREFIX);
                !self.busy.lock().contains(id)
            })
            .collect();
        let ids: Vec<&str> = orphans
            .iter()
            .map(|(_, _, p)| p.session.trim_start_matches(SESSION_PREFIX))
            .collect();
        let owners = store::owners(&self.db, &ids).await?;
        {
            // Forget sessions that are gone, so the set stays as small as what runs.
            let present: HashSet<&str> =
                orphans.iter().map(|(_, _, p)| p.session.as_str()).collect();
            self.reported_orphans
                .lock()
                .retain(|s| present.contains(s.as_str()));
        }
        for (owner, tmux, pane) in orphans {
            let id = pane.session.trim_start_matches(SESSION_PREFIX);
            // An ended instance's leftover, in its owner's own server (another account may name
            // a session after someone else's instance: that one is only its own orphan).
            let has_record = owners
                .get(id)
                .is_some_and(|&o| owner.is_none_or(|owner| owner == o));
            if has_record || self.config.tmux.kill_orphans {
                // An ended instance's leftover session, or an orphan we were told to clean.
                if let Err(err) = tmux.kill_session(&pane.session).await {
                    tracing::warn!(session = %pane.session, error = %err, "cannot remove a leftover session");
                }
            } else if self.reported_orphans.lock().insert(pane.session.clone()) {
                tracing::warn!(session = %pane.session, socket = %tmux.socket().display(), "tmux session without a record left running");
            }
        }
        Ok(())
    }

    /// Whether this is the second listing in a row, each begun after the instance started,
    /// that misses it: only then is it lost.
    fn missed_twice(&self, instance: &Instance, listing_began: time::OffsetDateTime) -> bool {
        if instance
            .started_at
            .is_none_or(|started| started >= listing_began)
        {
            return false;
        }
        let mut missed = self.missed.lock();
        let count = missed.entry(instance.id.clone()).or_insert(0);
        *count += 1;
        if *count < 2 {
            return false;
        }
        missed.remove(&instance.id);
        true
    }

    /// tmux marks a pane dead when its terminal closes, a moment before it collects the exit
    /// status; give it a few passes so the recorded exit code is the real one.
    fn status_settled(&self, id: &str, pane: &PaneInfo) -> bool {
        let mut waiting = self.awaiting_status.lock();
        if pane.exit_code().is_some() {
            waiting.remove(id);
            return true;
        }
        let passes = waiting.entry(id.to_owned()).or_insert(0);
        *passes += 1;
        if *passes > 3 {
            // tmux never learned how it ended (a tmux without pane_dead_signal).
            waiting.remove(id);
            return true;
        }
        false
    }

    /// Reconciles every second until shutdown.
    pub async fn watch(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(err) = self.reconcile().await {
                tracing::warn!(error = %err.logged(), "reconciling instances failed");
            }
        }
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

/// An instance's tmux history exists only while its session does.
fn not_running_history() -> AppError {
    AppError::Conflict(
        "this instance is not running, so its tmux history is gone; its last screen is at \
         GET /api/instances/{id}/output"
            .into(),
    )
}

/// A session that ended a moment ago (its record not yet marked) counts as not running.
fn history_error(err: TmuxError) -> AppError {
    match err {
        TmuxError::Failed { stderr, .. }
            if stderr.contains("can't find") || stderr.contains("no current target") =>
        {
            not_running_history()
        }
        other => tmux_error(other),
    }
}

/// A failure to start an agent, in words: what tmux or the launcher said, never "internal
/// error".
fn start_error(err: TmuxError) -> AppError {
    match err {
        TmuxError::Failed { command, stderr } => {
            tracing::error!(command, stderr, "an agent could not start");
            AppError::StartFailed(if command == "start-account-server" {
                format!(
                    "the agent could not start: the account's tmux server did not start ({stderr})"
                )
            } else {
                format!("the agent could not start: tmux {command} said: {stderr}")
            })
        }
        other => tmux_error(other),
    }
}

/// Friendly key names for scripted input, mapped to tmux's.
fn tmux_key(name: &str) -> Result<&'static str, AppError> {
    const KEYS: &[(&str, &str)] = &[
        ("enter", "Enter"),
        ("esc", "Escape"),
        ("escape", "Escape"),
        ("tab", "Tab"),
        ("shift-tab", "BTab"),
        ("up", "Up"),
        ("down", "Down"),
        ("left", "Left"),
        ("right", "Right"),
        ("backspace", "BSpace"),
        ("delete", "DC"),
        ("home", "Home"),
        ("end", "End"),
        ("pageup", "PPage"),
        ("pagedown", "NPage"),
        ("space", "Space"),
        ("ctrl-a", "C-a"),
        ("ctrl-b", "C-b"),
        ("ctrl-c", "C-c"),
        ("ctrl-d", "C-d"),
        ("ctrl-e", "C-e"),
        ("ctrl-k", "C-k"),
        ("ctrl-l", "C-l"),
        ("ctrl-r", "C-r"),
        ("ctrl-u", "C-u"),
        ("ctrl-w", "C-w"),
        ("ctrl-z", "C-z"),
    ];
    let lower = name.to_ascii_lowercase();
    KEYS.iter()
        .find(|(k, _)| *k == lower)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            AppError::Unprocessable(format!(
                "unknown key `{name}`; known keys: {}",
                known.join(", ")
            ))
        })
}

/// A workdir relative to the workspace, with `.`/`..`/absolute paths refused.
fn normalize_workdir(raw: &str) -> Result<String, AppError> {
    let invalid =
        || AppError::Unprocessable(format!("`{raw}` is not a folder inside your workspace"));
    if raw.contains('\0') || raw.contains('\\') {
        return Err(invalid());
    }
    let mut parts = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return Err(invalid()),
        }
    }
    Ok(parts.join("/"))
}

/// Instance names: 1 to 64 characters, no control characters and no invisible formatting
/// (bidirectional overrides, zero-width characters: a name must read as what it is); stored as
/// given otherwise.
pub fn check_name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > 64
        || name.chars().any(|c| c.is_control() || is_format(c))
    {
        return Err(AppError::Unprocessable(
            "a name is 1 to 64 characters, without control or invisible formatting characters"
                .into(),
        ));
    }
    Ok(name.to_owned())
}

/// Unicode's format characters (category Cf) that can hide or reorder what a name shows.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

fn new_instance_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Whether Claude Code saved a transcript for `session` under `home` (so `--resume` works).
fn has_transcript(home: &Path, session: &str) -> bool {
    let file = format!("{session}.jsonl");
    std::fs::read_dir(home.join(".claude/projects"))
        .map(|dirs| dirs.flatten().any(|dir| dir.path().join(&file).is_file()))
        .unwrap_or(false)
}

/// `MemAvailable` from /proc/meminfo, in MB.
fn available_memory_mb() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// Creates folders (mode 0700) that do not exist yet; symlinks are refused, not followed.
fn create_private_dirs(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut path = PathBuf::new();
    for part in dir.components() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => anyhow::bail!("{} is not a folder", path.display()),
            Err(_) => std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdirs_stay_relative() {
        assert_eq!(normalize_workdir("").unwrap(), "");
        assert_eq!(normalize_workdir("./src/app/").unwrap(), "src/app");
        for bad in ["/etc", "../x", "a/../../b", "a\\..\\b", "nul\0"] {
            assert!(normalize_workdir(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_map_to_tmux_names() {
        assert_eq!(tmux_key("Ctrl-C").unwrap(), "C-c");
        assert_eq!(tmux_key("shift-tab").unwrap(), "BTab");
        assert!(tmux_key("C-c; rm -rf /").is_err());
    }

    #[test]
    fn names_refuse_invisible_formatting() {
        assert_eq!(check_name("  my agent ").unwrap(), "my agent");
        for bad in [
            "evil\u{202E}txt.exe",
            "zero\u{200B}width",
            "bom\u{FEFF}",
            "bell\u{7}",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("café ✓ 日本").is_ok());
    }

    #[test]
    fn ids_are_short_and_safe() {
        let id = new_instance_id();
        assert_eq!(id.len(), 10);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("", 5), "");
    }
}
