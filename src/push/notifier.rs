//! The background task that turns instance events into notifications: it follows the
//! instances' broadcast (statuses as `Activity`, states as `Changed`), waits out each user's
//! quiet time before "waiting", withdraws what was answered elsewhere, and polls the alerts
//! table for admins.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::broadcast::error::RecvError;

use super::sender::Urgency;
use super::{Message, Payload, store, tokens};
use crate::instances::manager::InstanceEvent;
use crate::instances::store::{Instance, State};
use crate::state::AppState;

/// How often due "waiting" notifications and new alerts are looked for.
const TICK: Duration = Duration::from_secs(1);
const ALERT_EVERY_TICKS: u64 = 5;
const PURGE_EVERY_TICKS: u64 = 3600;
/// An instance found ended longer ago than this (at start-up, say) is not announced.
const FRESH_EXIT: time::Duration = time::Duration::minutes(5);

/// What was last told about one instance.
#[derive(Default)]
struct Told {
    /// A notification about it is showing (so a change withdraws it).
    showing: bool,
    /// Its permission question's action tokens may be outstanding.
    asked: bool,
    /// The approval that question is about, when pocketdev read the dialog.
    asked_approval: Option<String>,
    /// When to say it is waiting, if it still is.
    waiting_due: Option<Instant>,
    /// Its end was announced.
    ended: bool,
    /// Whose it is, for withdrawing once the record is gone.
    owner: i64,
}

pub async fn run(state: AppState) {
    let mut events = state.instances.subscribe();
    let mut told: HashMap<String, Told> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    let mut ticks: u64 = 0;
    let mut last_alert = store::last_alert_id(&state.db).await.unwrap_or(0);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            event = events.recv() => match event {
                Ok(event) => {
                    if let Err(err) = on_event(&state, &mut told, event).await {
                        tracing::warn!(error = %err.logged(), "cannot prepare a notification");
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "notifications missed instance events");
                }
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                ticks += 1;
                due_waiting(&state, &mut told).await;
                if ticks.is_multiple_of(ALERT_EVERY_TICKS) {
                    last_alert = alerts(&state, last_alert).await;
                }
                if ticks.is_multiple_of(PURGE_EVERY_TICKS)
                    && let Err(err) = tokens::purge(&state.db).await
                {
                    tracing::warn!(error = %err.logged(), "cannot purge action tokens");
                }
            }
        }
    }
}

async fn on_event(
    state: &AppState,
    told: &mut HashMap<String, Told>,
    event: InstanceEvent,
) -> Result<(), crate::error::AppError> {
    match event {
        InstanceEvent::Activity { id, status, reason } => {
            let entry = told.entry(id.clone()).or_default();
            if entry.asked && status != "needs_permission" {
                entry.asked = false;
                tokens::withdraw(&state.db, &id).await?;
            }
            entry.waiting_due = None;
            let Some(instance) = crate::instances::store::get(&state.db, &id).await? else {
                return Ok(());
            };
            match status.as_str() {
                "needs_permission" => {
                    if let Some(approval) = permission(state, &instance, reason.as_deref()).await? {
                        let entry = showing(told, &instance);
                        entry.asked = true;
                        entry.asked_approval = approval;
                    }
                }
                "waiting" => {
                    withdraw(state, told, &instance);
                    let prefs = store::preferences(&state.db, instance.owner).await?;
                    let delay = Duration::from_secs(prefs.waiting_delay_secs.max(0) as u64);
                    told.entry(id).or_default().waiting_due = Some(Instant::now() + delay);
                }
                _ => withdraw(state, told, &instance),
            }
        }
        InstanceEvent::Changed(instance) => {
            let entry = told.entry(instance.id.clone()).or_default();
            if instance.state.is_live() {
                entry.ended = false;
                return Ok(());
            }
            entry.waiting_due = None;
            if entry.asked {
                entry.asked = false;
                tokens::withdraw(&state.db, &instance.id).await?;
            }
            let fresh = instance
                .ended_at
                .is_some_and(|at| OffsetDateTime::now_utc() - at < FRESH_EXIT);
            if instance.state == State::Exited && !entry.ended && fresh {
                entry.ended = true;
                if ended(state, &instance).await? {
                    showing(told, &instance);
                    return Ok(());
                }
            }
            withdraw(state, told, &instance);
        }
        // Another question in place of the one a notification asks: it is replaced, so its
        // actions answer what is asked now.
        InstanceEvent::Approval {
            id,
            approval: Some(approval),
        } => {
            let Some(entry) = told.get(&id) else {
                return Ok(());
            };
            if !entry.asked || entry.asked_approval.as_deref() == Some(&approval.id) {
                return Ok(());
            }
            tokens::withdraw(&state.db, &id).await?;
            let Some(instance) = crate::instances::store::get(&state.db, &id).await? else {
                return Ok(());
            };
            let asked = permission(state, &instance, None).await?;
            let entry = told.entry(id).or_default();
            entry.asked = asked.is_some();
            entry.asked_approval = asked.flatten();
        }
        // A dialog gone: the status that follows withdraws its notification.
        InstanceEvent::Approval { approval: None, .. } => {}
        InstanceEvent::Deleted(id) => {
            if let Some(entry) = told.remove(&id)
                && entry.showing
            {
                clear(state, entry.owner, &id);
            }
        }
    }
    Ok(())
}

/// Whether notifications about `instance` may be sent now (not muted, not quiet hours).
async fn may_tell(state: &AppState, instance: &Instance) -> Result<bool, crate::error::AppError> {
    if store::is_muted(&state.db, instance.owner, &instance.id).await? {
        return Ok(false);
    }
    let prefs = store::preferences(&state.db, instance.owner).await?;
    Ok(!prefs.quiet_at(OffsetDateTime::now_utc()))
}

fn tag(instance: &Instance) -> String {
    format!("instance-{}", instance.id)
}

fn key(instance: &Instance) -> String {
    format!("instance:{}", instance.id)
}

/// Marks a notification about `instance` as showing.
fn showing<'a>(told: &'a mut HashMap<String, Told>, instance: &Instance) -> &'a mut Told {
    let entry = told.entry(instance.id.clone()).or_default();
    entry.showing = true;
    entry.owner = instance.owner;
    entry
}

fn terminal_url(instance: &Instance) -> String {
    format!("#/t/{}", instance.id)
}

/// Notifies the owner that the agent asks; when sent, `Some` with the approval it is about.
async fn permission(
    state: &AppState,
    instance: &Instance,
    reason: Option<&str>,
) -> Result<Option<Option<String>>, crate::error::AppError> {
    if !may_tell(state, instance).await? {
        return Ok(None);
    }
    let question = super::pending_question(state, instance, reason).await;
    let approval = question.approval.clone();
    let choices: Vec<&str> = question.choices.iter().map(|c| c.id.as_str()).collect();
    let ttl = Duration::from_secs(state.config.push.action_token_ttl_secs.max(1));
    let token = tokens::issue(
        &state.db,
        &instance.id,
        instance.owner,
        question.approval.as_deref(),
        &choices,
        ttl,
    )
    .await?;
    state.push.notify(
        instance.owner,
        Message {
            payload: Payload {
                kind: "permission",
                tag: tag(instance),
                title: format!("{} needs permission", instance.name),
                body: question.text.clone(),
                url: terminal_url(instance),
                instance: Some(instance.id.clone()),
                question: Some(question),
                token: Some(token),
            },
            key: key(instance),
            urgency: Urgency::High,
            // A stale Allow is worse than none.
            ttl,
        },
    );
    Ok(Some(approval))
}

/// Notifies the owner that the agent ended; true when sent.
async fn ended(state: &AppState, instance: &Instance) -> Result<bool, crate::error::AppError> {
    if !may_tell(state, instance).await? {
        return Ok(false);
    }
    let (title, body) = match (instance.end_reason.as_deref(), instance.exit_code) {
        (Some("lost"), _) => (
            format!("{} was lost", instance.name),
            "It was not running any more when pocketdev looked (a restart of the machine?).".into(),
        ),
        (_, Some(code)) if code != 0 => (
            format!("{} crashed", instance.name),
            format!("It ended with exit code {code}."),
        ),
        _ => (
            format!("{} exited", instance.name),
            "It ended by itself.".into(),
        ),
    };
    state.push.notify(
        instance.owner,
        Message {
            payload: Payload {
                kind: "exited",
                tag: tag(instance),
                title,
                body,
                url: terminal_url(instance),
                instance: Some(instance.id.clone()),
                question: None,
                token: None,
            },
            key: key(instance),
            urgency: Urgency::Normal,
            ttl: Duration::from_secs(24 * 3600),
        },
    );
    Ok(true)
}

/// Withdraws the notification showing for `instance`, if any: it was answered elsewhere.
fn withdraw(state: &AppState, told: &mut HashMap<String, Told>, instance: &Instance) {
    let Some(entry) = told.get_mut(&instance.id) else {
        return;
    };
    if std::mem::take(&mut entry.showing) {
        clear(state, instance.owner, &instance.id);
    }
}

fn clear(state: &AppState, owner: i64, id: &str) {
    state.push.notify(
        owner,
        Message {
            payload: Payload {
                kind: "clear",
                tag: format!("instance-{id}"),
                title: String::new(),
                body: String::new(),
                url: format!("#/t/{id}"),
                instance: Some(id.to_owned()),
                question: None,
                token: None,
            },
            key: format!("instance:{id}"),
            urgency: Urgency::Normal,
            ttl: Duration::from_secs(3600),
        },
    );
}

/// Sends the "waiting" notifications whose quiet time has passed.
async fn due_waiting(state: &AppState, told: &mut HashMap<String, Told>) {
    let now = Instant::now();
    let due: Vec<String> = told
        .iter_mut()
        .filter(|(_, t)| t.waiting_due.is_some_and(|at| at <= now))
        .map(|(id, t)| {
            t.waiting_due = None;
            id.clone()
        })
        .collect();
    for id in due {
        let instance = match crate::instances::store::get(&state.db, &id).await {
            Ok(Some(instance)) if instance.state.is_live() => instance,
            Ok(_) => continue,
            Err(err) => {
                tracing::warn!(error = %err.logged(), "cannot read an instance");
                continue;
            }
        };
        match may_tell(state, &instance).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                tracing::warn!(error = %err.logged(), "cannot read push preferences");
                continue;
            }
        }
        state.push.notify(
            instance.owner,
            Message {
                payload: Payload {
                    kind: "waiting",
                    tag: tag(&instance),
                    title: format!("{} is waiting for you", instance.name),
                    body: "It finished and waits for your next message.".into(),
                    url: terminal_url(&instance),
                    instance: Some(instance.id.clone()),
                    question: None,
                    token: None,
                },
                key: key(&instance),
                urgency: Urgency::Normal,
                ttl: Duration::from_secs(3600),
            },
        );
        showing(told, &instance);
    }
}

/// Tells the admins about alerts raised after `after`; returns the newest id seen.
async fn alerts(state: &AppState, after: i64) -> i64 {
    let raised = match store::alerts_after(&state.db, after).await {
        Ok(raised) => raised,
        Err(err) => {
            tracing::warn!(error = %err.logged(), "cannot read alerts");
            return after;
        }
    };
    let Some(newest) = raised.last().map(|a| a.id) else {
        return after;
    };
    let admins = store::admins(&state.db).await.unwrap_or_default();
    for alert in raised {
        let body = if alert.threshold > 0.0 {
            format!("{:.0}% (threshold {:.0}%)", alert.value, alert.threshold)
        } else {
            format!("value {}", alert.value)
        };
        for &admin in &admins {
            state.push.notify(
                admin,
                Message {
                    payload: Payload {
                        kind: "alert",
                        tag: format!("alert-{}", alert.kind),
                        title: format!("Alert: {}", alert.kind),
                        body: body.clone(),
                        url: "#/admin".into(),
                        instance: None,
                        question: None,
                        token: None,
                    },
                    key: format!("alert:{}", alert.kind),
                    urgency: Urgency::High,
                    ttl: Duration::from_secs(3600),
                },
            );
        }
    }
    newest
}
