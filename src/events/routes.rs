//! `GET /api/events`: one signed-in tab's stream of Server-Sent Events.
//!
//! The stream is pulled by the connection: while a slow client's socket is full nothing is
//! produced, and the broadcasts it listens to keep a bounded backlog. A client that falls
//! behind that backlog gets a fresh snapshot instead of what it missed.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Serialize;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{MAX_STREAMS_PER_USER, StreamGuard};
use crate::auth::extract::AuthUser;
use crate::auth::signouts::SignOut;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::instances::manager::InstanceEvent;
use crate::instances::routes::InstanceView;
use crate::instances::store::{self, Instance};
use crate::monitor::MonitorEvent;
use crate::state::AppState;

/// A comment this often keeps proxies and the browser from timing the stream out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How soon a browser reconnects by itself after the stream broke.
const RETRY: Duration = Duration::from_secs(2);
/// A session ended by a way no announcement covers (expiry) is noticed this often.
const SESSION_CHECK: Duration = Duration::from_secs(30);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Live events for the signed-in user (Server-Sent Events; docs/events.md).
///
/// Every connection starts with `snapshot` (the user's instances, as `GET /api/instances`
/// answers), then sends deltas: `created` and `changed` (one instance, as
/// `GET /api/instances/{id}` answers: its state, name, `status` and `status_reason`, the
/// question it asks), `deleted` (`{"id"}`), `usage` after each of the monitor's samples
/// (`[{"id", "memory_bytes", "cpu_percent", "last_activity_at", "preview"}]` of the user's live
/// instances, when they changed), `alert` to admins (`{"event": "raised"|"cleared", "kind",
/// "value", "threshold", "at"}`) and `signed_out` (`{"reason"}`) when the session ends, after
/// which the stream closes. A client that falls behind gets a new `snapshot`. Comments keep
/// the connection alive. Nothing is replayed: a reconnecting client starts with a snapshot.
#[utoipa::path(get, path = "/api/events", tag = "events",
    responses((status = 200, description = "the event stream", content_type = "text/event-stream", body = String),
        (status = 409, description = "the user has the most event streams open already", body = ErrorBody)))]
async fn events(State(state): State<AppState>, auth: AuthUser) -> AppResult<impl IntoResponse> {
    let guard = state.events.open(auth.user.id).ok_or_else(|| {
        AppError::Conflict(format!(
            "you have {MAX_STREAMS_PER_USER} live event streams open, the most allowed; close a tab or two"
        ))
    })?;
    // Subscribed before the snapshot is read, so nothing falls between the two.
    let mut pump = Pump {
        instances: state.instances.subscribe(),
        monitor: state.monitor.subscribe(),
        signouts: state.signouts.subscribe(),
        user_id: auth.user.id,
        admin: auth.user.is_admin(),
        session_id: auth.session_id,
        known: HashMap::new(),
        last_usage: None,
        ended: false,
        queued: VecDeque::new(),
        session_check: tokio::time::interval_at(
            tokio::time::Instant::now() + SESSION_CHECK,
            SESSION_CHECK,
        ),
        _guard: guard,
        state,
    };
    let snapshot = pump.snapshot().await?.retry(RETRY);
    pump.queued.push_back(snapshot);
    if pump.admin {
        // A new tab learns which alerts are up, not only those raised from now on.
        for alert in crate::monitor::alerts::active(&pump.state.db).await? {
            let raised = serde_json::json!({
                "source": "pocketdev",
                "event": "raised",
                "kind": alert.kind,
                "value": alert.value,
                "threshold": alert.threshold,
                "at": alert.raised_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            });
            pump.queued.push_back(json_event("alert", &raised));
        }
    }
    let stream = futures_util::stream::unfold(pump, |mut pump| async move {
        let event = pump.next().await?;
        Some((Ok::<_, Infallible>(event), pump))
    });
    Ok((
        // nginx passes each event on at once rather than buffering the response.
        [(HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    ))
}

/// One usage entry of a live instance.
#[derive(Serialize, PartialEq)]
struct Usage {
    id: String,
    memory_bytes: Option<u64>,
    cpu_percent: Option<f32>,
    last_activity_at: Option<i64>,
    preview: Option<String>,
}

/// The state of one stream: what it listens to and what it has told its client.
struct Pump {
    state: AppState,
    instances: Receiver<InstanceEvent>,
    monitor: Receiver<MonitorEvent>,
    signouts: Receiver<SignOut>,
    user_id: i64,
    admin: bool,
    session_id: String,
    /// The user's instances the client knows of, and whether each is live.
    known: HashMap<String, bool>,
    last_usage: Option<Vec<Usage>>,
    ended: bool,
    /// Events ready to go before any new one: the snapshot and the alerts that are up.
    queued: VecDeque<Event>,
    session_check: tokio::time::Interval,
    _guard: StreamGuard,
}

impl Pump {
    /// The next event, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.queued.pop_front() {
            return Some(event);
        }
        if self.ended {
            return None;
        }
        loop {
            let found = tokio::select! {
                () = self.state.shutdown.cancelled() => return None,
                event = self.instances.recv() => match event {
                    Ok(event) => self.instance_event(event).await,
                    Err(RecvError::Lagged(_)) => self.snapshot().await.map(Some),
                    Err(RecvError::Closed) => return None,
                },
                event = self.monitor.recv() => match event {
                    Ok(MonitorEvent::Sampled) | Err(RecvError::Lagged(_)) => Ok(self.usage()),
                    Ok(MonitorEvent::Alert(alert)) => Ok(self.admin.then(|| json_event("alert", &alert))),
                    Err(RecvError::Closed) => return None,
                },
                signout = self.signouts.recv() => {
                    let ended = match signout {
                        Ok(signout) => signout.ends(self.user_id, &self.session_id),
                        // Missed some: ask the database.
                        Err(RecvError::Lagged(_)) => !self.still_signed_in().await,
                        Err(RecvError::Closed) => false,
                    };
                    Ok(ended.then(|| self.signed_out()))
                }
                _ = self.session_check.tick() => Ok((!self.still_signed_in().await).then(|| self.signed_out())),
            };
            match found {
                Ok(Some(event)) => return Some(event),
                Ok(None) => {}
                Err(err) => {
                    // The client reconnects and starts over with a snapshot.
                    tracing::warn!(error = %err.logged(), "an event stream failed");
                    return None;
                }
            }
        }
    }

    async fn snapshot(&mut self) -> Result<Event, AppError> {
        let instances = store::list(&self.state.db, Some(self.user_id)).await?;
        self.known = instances
            .iter()
            .map(|i| (i.id.clone(), i.state.is_live()))
            .collect();
        self.last_usage = None;
        let views: Vec<InstanceView> = instances
            .into_iter()
            .map(|i| InstanceView::new(&self.state.instances, &*self.state.monitor, i))
            .collect();
        Ok(json_event("snapshot", &views))
    }

    async fn instance_event(&mut self, event: InstanceEvent) -> Result<Option<Event>, AppError> {
        match event {
            InstanceEvent::Changed(instance) => Ok(self.changed(instance)),
            // A status or a permission dialog changed: the instance as it is now.
            InstanceEvent::Activity { id, .. } | InstanceEvent::Approval { id, .. }
                if self.known.contains_key(&id) =>
            {
                Ok(store::get(&self.state.db, &id)
                    .await?
                    .and_then(|instance| self.changed(instance)))
            }
            InstanceEvent::Activity { .. } | InstanceEvent::Approval { .. } => Ok(None),
            InstanceEvent::Deleted(id) => Ok(self
                .known
                .remove(&id)
                .map(|_| json_event("deleted", &serde_json::json!({ "id": id })))),
        }
    }

    fn changed(&mut self, instance: Instance) -> Option<Event> {
        if instance.owner != self.user_id {
            return None;
        }
        let name = match self
            .known
            .insert(instance.id.clone(), instance.state.is_live())
        {
            Some(_) => "changed",
            None => "created",
        };
        Some(json_event(
            name,
            &InstanceView::new(&self.state.instances, &*self.state.monitor, instance),
        ))
    }

    /// The user's live instances' figures, when they differ from those last sent.
    fn usage(&mut self) -> Option<Event> {
        let latest = self.state.monitor.latest();
        let mut usage: Vec<Usage> = self
            .known
            .iter()
            .filter(|(_, live)| **live)
            .map(|(id, _)| {
                let measured = latest.instances.get(id);
                Usage {
                    id: id.clone(),
                    memory_bytes: measured.map(|u| u.memory_bytes),
                    cpu_percent: measured.map(|u| u.cpu_percent),
                    last_activity_at: measured.and_then(|u| u.last_output_at.max(u.last_input_at)),
                    preview: self.state.monitor.preview(id),
                }
            })
            .collect();
        usage.sort_by(|a, b| a.id.cmp(&b.id));
        if self.last_usage.as_ref() == Some(&usage)
            || (usage.is_empty() && self.last_usage.is_none())
        {
            return None;
        }
        let event = json_event("usage", &usage);
        self.last_usage = Some(usage);
        Some(event)
    }

    fn signed_out(&mut self) -> Event {
        self.ended = true;
        json_event(
            "signed_out",
            &serde_json::json!({ "reason": "your session has ended; sign in again" }),
        )
    }

    async fn still_signed_in(&self) -> bool {
        matches!(
            crate::auth::store::session_user(&self.state.db, &self.session_id, self.user_id).await,
            Ok(Some(user)) if !user.disabled
        )
    }
}

fn json_event(name: &str, data: &impl Serialize) -> Event {
    let data = serde_json::to_string(data).expect("events serialize to JSON");
    Event::default().event(name).data(data)
}
