//! An instance's life: create (admitted, recorded, started), start around the launch plan
//! (the account's home, the environment file, tmux, the cgroup), stop, restart with the
//! agent's conversation resumed, and delete.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::launch::{self, Conversation, LaunchInput, Paths};
use super::{DEFAULT_COLS, DEFAULT_ROWS, LAST_SCREEN_LINES, Manager, tmux_error};
use crate::error::AppError;
use crate::instances::profiles::{Profile, ProfileKind, resolve_command, search_path};
use crate::instances::store::{self, Instance, NewInstance, State};
use crate::instances::tmux::{PaneInfo, SessionSpec, TmuxError};
use crate::isolation::blocking_as;
use crate::layout::write_private_file;
use crate::users::User;

impl Manager {
    /// Admits, records and starts a new instance; says which idle agents were suspended to
    /// make room for it.
    pub async fn create(
        &self,
        user: &User,
        profile_id: &str,
        name: Option<&str>,
        workdir: Option<&str>,
        git: Option<&GitRequest>,
    ) -> Result<Created, AppError> {
        let profile = self.profile(profile_id).ok_or_else(|| {
            AppError::Unprocessable(format!(
                "there is no profile `{profile_id}`; see GET /api/models"
            ))
        })?;
        let name = match name {
            Some(name) => check_name(name)?,
            None => profile.name.clone(),
        };
        if git.is_some() && workdir.is_some() {
            return Err(AppError::Unprocessable(
                "give either `workdir` or `repo` and `branch` (the worktree is the workdir)".into(),
            ));
        }
        let secrets = self.secrets_of(user.id).await?;
        if let Some(missing) = profile.secrets.values().find(|s| !secrets.contains_key(*s)) {
            return Err(AppError::Unprocessable(format!(
                "the profile `{profile_id}` needs the secret {missing}; set it with PUT /api/secrets/{missing}"
            )));
        }
        // On a branch: its own worktree, made now (and removed again if the instance is not).
        let worktree = match git {
            Some(request) => Some(
                self.git
                    .add_worktree(
                        user.id,
                        &request.repo,
                        &request.branch,
                        request.base.as_deref(),
                    )
                    .await?,
            ),
            None => None,
        };
        let workdir = match &worktree {
            Some(made) => made.workdir.clone(),
            None => normalize_workdir(workdir.unwrap_or(""))?,
        };
        let place = git
            .zip(worktree.as_ref())
            .map(|(request, made)| store::GitPlace {
                repo: crate::files::jail::RelPath::parse(&request.repo)
                    .map(|p| p.display())
                    .unwrap_or_else(|_| request.repo.clone()),
                branch: made.branch.clone(),
                base: Some(made.base.clone()),
            });
        let admitted = self
            .record(user, profile, profile_id, &name, &workdir, place.as_ref())
            .await;
        let (instance, made_room, _busy) = match admitted {
            Ok(done) => done,
            Err(err) => {
                if let (Some(place), Some(made)) = (&place, &worktree) {
                    self.git.undo_worktree(user.id, &place.repo, made).await;
                }
                return Err(err);
            }
        };
        self.publish(&instance.id).await?;
        self.start(&instance, user, profile, &secrets, None).await?;
        let instance = store::get(&self.db, &instance.id)
            .await?
            .unwrap_or(instance);
        Ok(Created {
            instance,
            made_room,
        })
    }

    /// Checks the working folder, admits and records a new instance (busy, so the reconciler
    /// leaves it alone until it is started).
    async fn record(
        &self,
        user: &User,
        profile: &Profile,
        profile_id: &str,
        name: &str,
        workdir: &str,
        git: Option<&store::GitPlace>,
    ) -> Result<(Instance, Vec<Instance>, super::BusyGuard<'_>), AppError> {
        self.resolve_workdir(user.id, workdir).await?;
        let id = new_instance_id();
        let agent_session = profile
            .names_its_session()
            .then(|| uuid::Uuid::new_v4().to_string());
        // Busy before the record exists, so the reconciler never sees it without its session.
        let busy = self.busy(&id)?;
        let (instance, made_room) = {
            let _admission = self.admission.lock().await;
            let made_room = self.admit(user, profile, None).await?;
            let new = NewInstance {
                id: &id,
                user_id: user.id,
                name,
                profile: profile_id,
                workdir,
                agent_session_id: agent_session.as_deref(),
                git,
            };
            (store::insert(&self.db, &new).await?, made_room)
        };
        Ok((instance, made_room, busy))
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

    /// Builds the agent's environment and command, and starts its tmux session at `size`
    /// (the default size without one).
    async fn start(
        &self,
        instance: &Instance,
        user: &User,
        profile: &Profile,
        secrets: &BTreeMap<String, String>,
        size: Option<(u16, u16)>,
    ) -> Result<(), AppError> {
        let result = self
            .start_session(instance, user, profile, secrets, size)
            .await;
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
        size: Option<(u16, u16)>,
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
        let identity = self.isolation.ensure(user.id).await?;
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
        let program_root = self
            .isolation
            .landlock()
            .then(|| crate::isolation::sandbox::program_root(&command));
        // Claude Code's conversation exists once its transcript does; another agent's once it
        // ran.
        let exists = match &instance.agent_session_id {
            Some(session) if profile.kind == ProfileKind::Claude => {
                let home_for_check = home.clone();
                let session_for_check = session.clone();
                blocking_as(identity, move |acting| {
                    crate::instances::claude::transcript(
                        home_for_check.path(acting),
                        &session_for_check,
                    )
                    .is_some()
                })
                .await
                .unwrap_or(false)
            }
            _ => instance.started_at.is_some(),
        };
        let conversation = Conversation::of(profile, instance.agent_session_id.as_deref(), exists);
        // A fresh hook token per start: a report counts only with the current one.
        let hook_token = crate::auth::tokens::random_token(24);
        store::set_hook_token(
            &self.db,
            &instance.id,
            &crate::auth::tokens::hash_token(&hook_token),
        )
        .await?;
        let server_run_dir = self.layout.server_dir().join("run");
        let plan = launch::plan(&LaunchInput {
            instance_id: &instance.id,
            username: &user.username,
            profile,
            secrets,
            launcher: &self.launcher,
            command: &command,
            search_path: &path,
            paths: Paths {
                home: &home_path,
                workspace: &workspace_path,
                cwd: &cwd,
                server_run_dir: &server_run_dir,
            },
            isolated: identity.is_some(),
            cgroup: group.as_ref().map(|(_, seen)| seen.as_str()),
            landlock_program_root: program_root.as_deref(),
            conversation,
            hook_token: &hook_token,
        });

        if profile.kind == ProfileKind::Claude {
            let home_for_prep = home.clone();
            let cwd_for_prep = plan.cwd.clone();
            let key = plan.env.get("ANTHROPIC_API_KEY").cloned();
            let hook_command = self.launcher.hook_command();
            blocking_as(identity, move |acting| {
                crate::instances::claude::prepare_home(
                    home_for_prep.path(acting),
                    &cwd_for_prep,
                    key.as_deref(),
                    &hook_command,
                )
            })
            .await??;
        }

        // Written as the launcher's user: the account's, when it has one.
        let env_text = serde_json::to_string(&plan.env).context("environment")?;
        let env_path = plan.env_file.clone();
        blocking_as(identity, move |_| {
            if identity.is_some() {
                create_private_dirs(env_path.parent().expect("a folder"))?;
            }
            write_private_file(&env_path, env_text.as_bytes())
        })
        .await??;

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
            tmux.start_server(&self.launcher.program, &start)
                .await
                .map_err(start_error)?;
        }
        let session = instance.tmux_session();
        // A leftover dead session of this instance would block the name.
        tmux.kill_session(&session).await.map_err(tmux_error)?;
        let (cols, rows) = size.unwrap_or((DEFAULT_COLS, DEFAULT_ROWS));
        let spec = SessionSpec {
            name: &session,
            cwd: &plan.cwd,
            cols,
            rows,
            argv: &plan.argv,
        };
        let started = tmux.new_session(&spec).await;
        if started.is_err() {
            let env_file = plan.env_file.clone();
            let _ = blocking_as(identity, move |_| std::fs::remove_file(&env_file)).await;
        }
        started.map_err(start_error)?;
        // The launcher waits in the pane until it is in its group.
        if let Some((dir, _)) = group {
            let placed = self
                .isolation
                .move_into(&dir, &plan.env_file, user.id)
                .await;
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
        if instance.state == State::Suspended {
            // Nothing runs: what it left in its group goes, and the record says it stopped.
            self.remove_group(instance).await;
        } else if !instance.state.is_live() {
            return Err(AppError::Conflict("this instance is not running".into()));
        }
        let live = instance.state.is_live();
        let ended = if live {
            self.end_process(instance).await?
        } else {
            Ended::default()
        };
        // Recorded before the session goes, so its viewers learn why it ended rather than
        // only that their terminal went.
        store::mark_ended(
            &self.db,
            &instance.id,
            State::Stopped,
            ended.exit_code,
            reason,
            ended.screen.as_deref(),
        )
        .await?;
        self.publish(&instance.id).await?;
        if live {
            self.clear_session(instance).await?;
        }
        Ok(())
    }

    /// Ends a live instance's agent: SIGHUP to everything in its group (the agent's own clean
    /// exit), then the grace period. Answers what was on screen, the size, and how it ended;
    /// `clear_session` then removes what is left.
    async fn end_process(&self, instance: &Instance) -> Result<Ended, AppError> {
        let tmux = self.tmux_for(instance.owner).await?;
        let session = instance.tmux_session();
        let screen = tmux.capture(&session, LAST_SCREEN_LINES, false).await.ok();
        let size = tmux.pane_size(&session).await.ok();
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
        Ok(Ended {
            screen,
            size,
            exit_code,
        })
    }

    /// Removes an ended agent's session and whatever it left running (nohup, setsid, a dev
    /// server: its group is killed).
    async fn clear_session(&self, instance: &Instance) -> Result<(), AppError> {
        let tmux = self.tmux_for(instance.owner).await?;
        let killed = tmux.kill_session(&instance.tmux_session()).await;
        self.remove_group(instance).await;
        killed.map_err(tmux_error)
    }

    /// Suspends a running agent that can resume: its process goes (gracefully, as at a stop),
    /// the record keeps its conversation, last screen and size, and the memory it freed.
    pub async fn suspend(&self, instance: &Instance, reason: &str) -> Result<Instance, AppError> {
        let _busy = self.busy(&instance.id)?;
        let current = store::get(&self.db, &instance.id)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))?;
        self.suspend_inner(&current, reason).await?;
        store::get(&self.db, &instance.id)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))
    }

    /// `suspend`, for a caller that holds the instance busy.
    pub(super) async fn suspend_inner(
        &self,
        instance: &Instance,
        reason: &str,
    ) -> Result<(), AppError> {
        if !self.can_resume(&instance.profile) {
            return Err(AppError::Conflict(
                "this agent cannot resume where it was (its profile has no resume_args), so \
                 it is not suspended; stop it instead"
                    .into(),
            ));
        }
        if instance.state != State::Running {
            return Err(AppError::Conflict("this instance is not running".into()));
        }
        let freed = self.observers.memory.measured().get(&instance.id).copied();
        let ended = self.end_process(instance).await?;
        let suspension = store::Suspension {
            reason,
            freed_bytes: freed,
            screen: ended.screen.as_deref(),
            size: ended.size,
        };
        if store::mark_suspended(&self.db, &instance.id, &suspension).await? {
            tracing::info!(instance = %instance.id, reason, freed_bytes = ?freed, "agent suspended");
        }
        self.publish(&instance.id).await?;
        self.clear_session(instance).await
    }

    /// Whether agents of `profile` can be suspended and resumed.
    pub fn can_resume(&self, profile: &str) -> bool {
        self.config
            .profiles
            .get(profile)
            .is_some_and(Profile::can_resume)
    }

    /// Brings a suspended instance back where it was: its conversation resumed, at its size
    /// (or `size`, a viewer's), input queued meanwhile typed once it is ready. An instance that
    /// runs already (another resume got there first) is answered as it is.
    pub async fn resume(
        self: &Arc<Self>,
        instance: &Instance,
        size: Option<(u16, u16)>,
    ) -> Result<Instance, AppError> {
        // Several ways lead here at once (a terminal, a command, a tap): one resumes, the
        // others wait for it, so no conversation is ever started twice.
        let deadline = tokio::time::Instant::now() + RESUME_WAIT;
        let _busy = loop {
            match self.busy(&instance.id) {
                Ok(guard) => break guard,
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let current = store::get(&self.db, &instance.id)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))?;
        match current.state {
            State::Running | State::Starting => return Ok(current),
            State::Suspended => {}
            State::Exited | State::Stopped => {
                return Err(AppError::Conflict(
                    "this instance is not suspended but ended; restart it instead".into(),
                ));
            }
        }
        self.resume_inner(&current, size).await?;
        store::get(&self.db, &instance.id)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))
    }

    /// `resume`, for a caller that holds the instance busy.
    pub(super) async fn resume_inner(
        self: &Arc<Self>,
        instance: &Instance,
        size: Option<(u16, u16)>,
    ) -> Result<(), AppError> {
        let profile = self.profile(&instance.profile).ok_or_else(|| {
            AppError::Conflict(format!(
                "the profile `{}` no longer exists",
                instance.profile
            ))
        })?;
        let secrets = self.secrets_of(instance.owner).await?;
        if let Some(missing) = profile.secrets.values().find(|s| !secrets.contains_key(*s)) {
            return Err(AppError::Unprocessable(format!(
                "the profile needs the secret {missing}"
            )));
        }
        let owner = crate::users::store::by_id(&self.db, instance.owner)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))?;
        {
            let _admission = self.admission.lock().await;
            self.admit(&owner, profile, Some(&instance.id)).await?;
            store::mark_starting(&self.db, &instance.id).await?;
        }
        self.publish(&instance.id).await?;
        let lost = self.lost_work(instance, profile).await;
        let size = match size {
            Some(size) => Some(size),
            None => store::suspended_size(&self.db, &instance.id).await?,
        };
        self.start(instance, &owner, profile, &secrets, size)
            .await?;
        store::set_interrupted(&self.db, &instance.id, lost.as_ref()).await?;
        if lost.is_some() {
            self.publish(&instance.id).await?;
        }
        tracing::info!(instance = %instance.id, "agent resumed");
        self.deliver_when_ready(&instance.id).await;
        Ok(())
    }

    /// What the agent was doing when its process went and resuming will not bring back, read
    /// from the end of its transcript (Claude Code), as the account.
    async fn lost_work(
        &self,
        instance: &Instance,
        profile: &Profile,
    ) -> Option<store::Interrupted> {
        let session = instance.agent_session_id.clone()?;
        if profile.kind != ProfileKind::Claude {
            return None;
        }
        let identity = self.isolation.ensure(instance.owner).await.ok()?;
        let home = self.layout.home(instance.owner);
        blocking_as(identity, move |acting| {
            let path = crate::instances::claude::transcript(home.path(acting), &session)?;
            let tail = crate::instances::claude::transcript_tail(&path).ok()?;
            crate::instances::claude::interrupted(&tail)
        })
        .await
        .ok()
        .flatten()
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
    pub(super) async fn remove_group_unless_busy(&self, instance: &Instance) {
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
        if instance.state.is_live() || instance.state == State::Suspended {
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
            self.admit(&owner, profile, Some(&instance.id)).await?;
            store::mark_starting(&self.db, &instance.id).await?;
        }
        self.publish(&instance.id).await?;
        self.start(instance, &owner, profile, &secrets, None)
            .await?;
        store::get(&self.db, &instance.id)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))
    }

    /// Stops the instance if it runs and removes its record.
    ///
    /// An instance on a branch keeps its branch and worktree unless `remove_worktree`; then
    /// uncommitted changes in it (untracked files too) refuse the deletion, named, unless
    /// `force`.
    pub async fn delete(
        &self,
        instance: &Instance,
        remove_worktree: bool,
        force: bool,
    ) -> Result<(), AppError> {
        let _busy = self.busy(&instance.id)?;
        let worktree = if remove_worktree && instance.git_repo.is_some() {
            let place = self
                .git
                .place(
                    instance.owner,
                    &instance.workdir,
                    instance.git_repo.as_deref(),
                    instance.git_branch.as_deref(),
                    instance.git_base.as_deref(),
                )
                .await;
            match place {
                Ok(place) => {
                    let uncommitted = crate::git::Git::uncommitted(&place).await?;
                    if !uncommitted.is_empty() && !force {
                        return Err(AppError::Conflict(format!(
                            "the worktree has uncommitted changes: {}; commit or discard them, or \
                             delete with `force=true`",
                            uncommitted.join(", ")
                        )));
                    }
                    Some(place)
                }
                // Gone already: nothing to remove.
                Err(AppError::Conflict(_)) => None,
                Err(err) => return Err(err),
            }
        } else {
            None
        };
        if instance.state.is_live() || instance.state == State::Suspended {
            self.stop_inner(instance, "user").await?;
        }
        store::delete(&self.db, &instance.id).await?;
        self.publish(&instance.id).await?;
        if let Some(place) = worktree {
            crate::git::Git::remove_worktree(&place).await?;
        }
        Ok(())
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
}

/// How long a resume waits for another operation on the instance (another resume) to end.
const RESUME_WAIT: Duration = Duration::from_secs(60);

/// What ending an agent's process left to keep.
#[derive(Default)]
struct Ended {
    screen: Option<String>,
    size: Option<(u16, u16)>,
    exit_code: Option<i32>,
}

/// Where a new instance on a branch works: `branch` of the repository in the workspace folder
/// `repo`, new from `base` (default: what the repository has checked out) or existing.
#[derive(Debug, Clone)]
pub struct GitRequest {
    pub repo: String,
    pub branch: String,
    pub base: Option<String>,
}

/// A new instance, and the idle agents suspended to make room for it.
#[derive(Debug)]
pub struct Created {
    pub instance: Instance,
    pub made_room: Vec<Instance>,
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
}
