//! Reconciliation with tmux: live records whose agent ended or whose session vanished are
//! recorded as exited (a vanished server raised as an alert), sessions without a record are
//! reported or removed; once a second until shutdown.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{LAST_SCREEN_LINES, Manager};

/// An instance the reconciler resumed is not resumed again by it within this long.
const AUTO_RESUME_SPACING: Duration = Duration::from_secs(60);
use crate::error::AppError;
use crate::instances::store::{self, Instance, SESSION_PREFIX, State};
use crate::instances::tmux::PaneInfo;

impl Manager {
    /// are recorded as exited; sessions without a record are reported (or killed if configured).
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), AppError> {
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
                    if reason == "server_gone" {
                        *servers_gone.entry(instance.owner).or_default() += 1;
                    }
                    // An agent that can resume comes back where it was (a reboot, a crashed
                    // tmux server); others are lost with their session.
                    if self.resumes_on_boot(&instance.profile) {
                        let suspension = store::Suspension {
                            reason,
                            freed_bytes: None,
                            screen: None,
                            size: None,
                        };
                        if store::mark_suspended(&self.db, &instance.id, &suspension).await? {
                            self.publish(&instance.id).await?;
                            self.resume_in_background(instance);
                        }
                        continue;
                    }
                    if store::mark_ended(&self.db, &instance.id, State::Exited, None, reason, None)
                        .await?
                    {
                        tracing::warn!(instance = %instance.id, reason, "tmux session vanished; instance marked exited");
                        self.publish(&instance.id).await?;
                    }
                }
                Some((tmux, pane)) if pane.dead && self.status_settled(&instance.id, pane) => {
                    let screen = tmux.capture(&session, LAST_SCREEN_LINES, false).await.ok();
                    let code = pane.exit_code();
                    // What it left running goes before anyone sees it ended (and restarts it).
                    self.remove_group_unless_busy(instance).await;
                    // Killed by a signal (the OOM killer, a `kill -9`): an agent that can
                    // resume waits suspended, to come back on the next tap.
                    if pane.exit_signal.is_some() && self.can_resume(&instance.profile) {
                        let suspension = store::Suspension {
                            reason: "crash",
                            freed_bytes: None,
                            screen: screen.as_deref(),
                            size: None,
                        };
                        if store::mark_suspended(&self.db, &instance.id, &suspension).await? {
                            tracing::warn!(instance = %instance.id, signal = ?pane.exit_signal, "agent killed; suspended, to resume on the next tap");
                            self.publish(&instance.id).await?;
                        }
                        if let Err(err) = tmux.kill_session(&session).await {
                            tracing::warn!(instance = %instance.id, error = %err, "cannot remove an ended agent's session");
                        }
                        continue;
                    }
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
            self.observers.alerts.server_gone(owner, agents).await;
        }
        // Per-instance state lasts only as long as the instance.
        let live_ids: HashSet<&str> = live.iter().map(|i| i.id.as_str()).collect();
        self.missed
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

    fn resumes_on_boot(&self, profile: &str) -> bool {
        self.config
            .profiles
            .get(profile)
            .is_some_and(crate::instances::profiles::Profile::resume_on_boot)
    }

    /// Resumes an instance whose session went, unless it was resumed so a minute ago (an
    /// agent that cannot stay up is left suspended, not restarted in a loop).
    fn resume_in_background(self: &Arc<Self>, instance: &Instance) {
        {
            let mut resumed = self.auto_resumed.lock();
            resumed.retain(|_, at| at.elapsed() < AUTO_RESUME_SPACING);
            if resumed.contains_key(&instance.id) {
                tracing::warn!(instance = %instance.id, "session went again soon after it was resumed; left suspended");
                return;
            }
            resumed.insert(instance.id.clone(), std::time::Instant::now());
        }
        tracing::warn!(instance = %instance.id, "tmux session vanished; resuming the agent's conversation");
        let manager = self.clone();
        let instance = instance.clone();
        tokio::spawn(async move {
            if let Err(err) = manager.resume(&instance, None).await {
                tracing::warn!(instance = %instance.id, error = %err.logged(), "could not resume the agent; it stays suspended");
            }
        });
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
