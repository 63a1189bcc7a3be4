//! Input and output: keys and text typed into a running agent (noted, so it is not idle),
//! its screen and history read back, and every screen kept at shutdown.

use std::sync::Arc;

use super::{DEFAULT_ROWS, LAST_SCREEN_LINES, Manager, tmux_error};
use crate::error::AppError;
use crate::instances::profiles::ProfileKind;
use crate::instances::store::{self, Instance, State};
use crate::instances::tmux::{Tmux, TmuxError};

/// Input for an instance: text typed literally, then named keys, then Enter if asked.
pub struct Input<'a> {
    pub text: Option<&'a str>,
    pub keys: &'a [String],
    pub enter: bool,
}

/// Input kept for an agent that is not ready for it yet (suspended, resuming), as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Queued {
    text: Option<String>,
    /// tmux's key names.
    keys: Vec<String>,
    enter: bool,
}

/// What became of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Typed into the agent.
    Typed,
    /// Kept, to be typed once the agent (resumed for it) is ready.
    Queued,
}

/// How long a resumed agent may take to show it is ready before queued input goes anyway.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Manager {
    /// Types `input` into the agent. A suspended agent is resumed for it, and the input typed
    /// once the agent is ready, once.
    pub async fn send(
        self: &Arc<Self>,
        instance: &Instance,
        input: &Input<'_>,
    ) -> Result<Sent, AppError> {
        let queued = Queued {
            text: input.text.filter(|t| !t.is_empty()).map(str::to_owned),
            keys: input
                .keys
                .iter()
                .map(|k| tmux_key(k).map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()?,
            enter: input.enter,
        };
        self.note_input(&instance.id);
        let instance = match instance.state {
            State::Suspended => self.resume(instance, None).await?,
            State::Running => instance.clone(),
            _ => {
                return Err(AppError::Conflict(
                    "this instance is not running; restart it first".into(),
                ));
            }
        };
        {
            // Behind input still waiting for the agent to be ready, never ahead of it.
            let delivering = self.delivering.lock().await;
            if delivering.contains(&instance.id) {
                let json = serde_json::to_string(&queued).map_err(anyhow::Error::from)?;
                if store::queue_input(&self.db, &instance.id, &json).await? {
                    return Ok(Sent::Queued);
                }
            }
        }
        if instance.state != State::Running {
            return Err(AppError::Conflict(
                "this instance is not running; restart it first".into(),
            ));
        }
        self.type_input(&instance, &queued).await?;
        Ok(Sent::Typed)
    }

    async fn type_input(&self, instance: &Instance, input: &Queued) -> Result<(), AppError> {
        let tmux = self.tmux_for(instance.owner).await?;
        let session = instance.tmux_session();
        if let Some(text) = &input.text {
            tmux.send_text(&session, text).await.map_err(tmux_error)?;
        }
        if !input.keys.is_empty() {
            let keys: Vec<&str> = input.keys.iter().map(String::as_str).collect();
            tmux.send_keys(&session, &keys).await.map_err(tmux_error)?;
        }
        if input.enter {
            tmux.send_keys(&session, &["Enter"])
                .await
                .map_err(tmux_error)?;
        }
        Ok(())
    }

    /// After a resume: waits until the agent is ready for input (Claude Code at its prompt;
    /// another agent's screen settled), then types what was queued for it, in order, once.
    /// Input sent from now on queues behind it, whatever the task's progress.
    pub(super) async fn deliver_when_ready(self: &Arc<Self>, id: &str) {
        if !self.delivering.lock().await.insert(id.to_owned()) {
            return;
        }
        let manager = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            manager.wait_until_ready(&id).await;
            loop {
                let taken = {
                    let mut delivering = manager.delivering.lock().await;
                    let taken = store::take_pending_input(&manager.db, &id)
                        .await
                        .unwrap_or_default();
                    if taken.is_empty() {
                        delivering.remove(&id);
                        return;
                    }
                    taken
                };
                let Ok(Some(instance)) = store::get(&manager.db, &id).await else {
                    manager.delivering.lock().await.remove(&id);
                    return;
                };
                for json in taken {
                    let Ok(input) = serde_json::from_str::<Queued>(&json) else {
                        continue;
                    };
                    if let Err(err) = manager.type_input(&instance, &input).await {
                        tracing::warn!(instance = %id, error = %err.logged(), "queued input could not be typed");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        });
    }

    /// Polls the agent's screen until it is ready for input, or `READY_WAIT` passed.
    async fn wait_until_ready(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        let mut previous: Option<String> = None;
        let mut steady = 0;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let Ok(Some(instance)) = store::get(&self.db, id).await else {
                return;
            };
            match instance.state {
                State::Running => {}
                State::Starting => continue,
                _ => return,
            }
            let Some(tmux) = self.tmux.for_account(instance.owner) else {
                return;
            };
            let Ok(screen) = tmux.capture(&instance.tmux_session(), 0, false).await else {
                continue;
            };
            if self.profile_kind(&instance.profile) == ProfileKind::Claude {
                if crate::instances::claude::at_prompt(&screen) {
                    // Keys sent the moment the prompt is drawn can be dropped.
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    return;
                }
                continue;
            }
            // Another agent: ready once its screen shows something and holds still.
            if !screen.trim().is_empty() && previous.as_deref() == Some(screen.as_str()) {
                steady += 1;
                if steady >= 2 {
                    return;
                }
            } else {
                steady = 0;
            }
            previous = Some(screen);
        }
        tracing::warn!(instance = %id, "the resumed agent never looked ready; typing its queued input anyway");
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
    ) -> Result<crate::instances::history::Page, AppError> {
        let tmux = self.history_tmux(instance).await?;
        crate::instances::history::page(&tmux, &instance.tmux_session(), before, lines)
            .await
            .map_err(history_error)
    }

    /// The lines of a running instance's tmux history that hold `query`, newest first.
    pub async fn history_search(
        &self,
        instance: &Instance,
        query: &str,
    ) -> Result<crate::instances::history::Found, AppError> {
        let tmux = self.history_tmux(instance).await?;
        crate::instances::history::search(&tmux, &instance.tmux_session(), query)
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

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_tmux_names() {
        assert_eq!(tmux_key("Ctrl-C").unwrap(), "C-c");
        assert_eq!(tmux_key("shift-tab").unwrap(), "BTab");
        assert!(tmux_key("C-c; rm -rf /").is_err());
    }

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("", 5), "");
    }
}
