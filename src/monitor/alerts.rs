//! Alerts on the host's CPU, memory and disk. A value must stay at or above its threshold for
//! the grace period to raise an alert, and fall below the threshold minus the hysteresis to
//! clear it, so a value hovering at the line does not flap. Raised and cleared alerts are
//! logged, stored, and POSTed to the configured webhook in the background.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::AlertConfig;
use crate::db::Db;
use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Cpu,
    Memory,
    Disk,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cpu => "cpu",
            Kind::Memory => "memory",
            Kind::Disk => "disk",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Normal,
    /// Over the threshold since then, not yet for the grace period.
    Pending(OffsetDateTime),
    Firing,
}

/// What an observation changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    Raised {
        kind: Kind,
        value: f64,
        threshold: f64,
    },
    Cleared {
        kind: Kind,
        value: f64,
        threshold: f64,
    },
}

/// The alert state machine, one phase per kind; pure, so it can be driven by any source.
#[derive(Debug)]
pub struct Alerts {
    grace: Duration,
    hysteresis: f64,
    thresholds: HashMap<Kind, f64>,
    phases: HashMap<Kind, Phase>,
}

impl Alerts {
    pub fn new(config: &AlertConfig) -> Self {
        Self {
            grace: Duration::from_secs(config.grace_secs),
            hysteresis: config.hysteresis_percent,
            thresholds: HashMap::from([
                (Kind::Cpu, config.cpu_percent),
                (Kind::Memory, config.memory_percent),
                (Kind::Disk, config.disk_percent),
            ]),
            phases: HashMap::new(),
        }
    }

    /// Feeds one value (in percent) observed at `now`.
    pub fn observe(&mut self, kind: Kind, value: f64, now: OffsetDateTime) -> Option<Change> {
        let threshold = *self.thresholds.get(&kind)?;
        let phase = self.phases.entry(kind).or_insert(Phase::Normal);
        let over = value >= threshold;
        let (next, change) = match *phase {
            Phase::Normal if over && self.grace.is_zero() => (
                Phase::Firing,
                Some(Change::Raised {
                    kind,
                    value,
                    threshold,
                }),
            ),
            Phase::Normal if over => (Phase::Pending(now), None),
            Phase::Normal => (Phase::Normal, None),
            Phase::Pending(_) if !over => (Phase::Normal, None),
            Phase::Pending(since) if now - since >= self.grace => (
                Phase::Firing,
                Some(Change::Raised {
                    kind,
                    value,
                    threshold,
                }),
            ),
            Phase::Pending(since) => (Phase::Pending(since), None),
            Phase::Firing if value < threshold - self.hysteresis => (
                Phase::Normal,
                Some(Change::Cleared {
                    kind,
                    value,
                    threshold,
                }),
            ),
            Phase::Firing => (Phase::Firing, None),
        };
        *phase = next;
        change
    }
}

/// A stored alert.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    pub value: f64,
    pub threshold: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub raised_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cleared_at: Option<OffsetDateTime>,
}

/// Records a change, logs it, and sends it to the webhook without waiting.
pub async fn record(
    db: &Db,
    webhook: Option<&str>,
    change: Change,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    match change {
        Change::Raised {
            kind,
            value,
            threshold,
        } => {
            tracing::warn!(kind = kind.name(), value, threshold, "alert raised");
            sqlx::query(
                "INSERT INTO alerts (kind, value, threshold, raised_at) VALUES (?, ?, ?, ?)",
            )
            .bind(kind.name())
            .bind(value)
            .bind(threshold)
            .bind(now)
            .execute(db)
            .await?;
        }
        Change::Cleared {
            kind,
            value,
            threshold,
        } => {
            tracing::info!(kind = kind.name(), value, threshold, "alert cleared");
            sqlx::query("UPDATE alerts SET cleared_at = ? WHERE kind = ? AND cleared_at IS NULL")
                .bind(now)
                .bind(kind.name())
                .execute(db)
                .await?;
        }
    }
    if let Some(url) = webhook {
        tokio::spawn(deliver(url.to_owned(), payload(change, now)));
    }
    Ok(())
}

/// Raises the alerts the instances report (through [`crate::instances::observe::Alerts`]).
pub struct Raiser {
    db: Db,
    webhook: Option<String>,
}

impl Raiser {
    pub fn new(db: Db, webhook: Option<String>) -> Self {
        Self { db, webhook }
    }
}

impl crate::instances::observe::Alerts for Raiser {
    fn server_gone(&self, owner: i64, agents: u32) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            let detail = format!(
                "the tmux server of account {owner} stopped, taking {agents} running agent(s) with it; \
                 the account's next agent starts a new one"
            );
            let raised = event(
                &self.db,
                self.webhook.as_deref(),
                "tmux_server",
                f64::from(agents),
                &detail,
            )
            .await;
            if let Err(err) = raised {
                tracing::warn!(error = %err.logged(), "cannot record the alert");
            }
        })
    }
}

/// An alert for something that happened rather than a level crossed (`kind`, with `value` of
/// it and `detail` in words): stored raised and cleared at once, logged, and sent to the webhook.
pub async fn event(
    db: &Db,
    webhook: Option<&str>,
    kind: &'static str,
    value: f64,
    detail: &str,
) -> Result<(), AppError> {
    let now = OffsetDateTime::now_utc();
    tracing::error!(kind, value, detail, "alert");
    sqlx::query(
        "INSERT INTO alerts (kind, value, threshold, raised_at, cleared_at) VALUES (?, ?, 0, ?, ?)",
    )
    .bind(kind)
    .bind(value)
    .bind(now)
    .bind(now)
    .execute(db)
    .await?;
    if let Some(url) = webhook {
        let body = serde_json::json!({
            "source": "pocketdev",
            "event": "happened",
            "kind": kind,
            "value": value,
            "detail": detail,
            "at": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        });
        tokio::spawn(deliver(url.to_owned(), body));
    }
    Ok(())
}

/// An alert change as the webhook and the admins' event streams receive it.
pub fn payload(change: Change, at: OffsetDateTime) -> serde_json::Value {
    let (event, kind, value, threshold) = match change {
        Change::Raised {
            kind,
            value,
            threshold,
        } => ("raised", kind, value, threshold),
        Change::Cleared {
            kind,
            value,
            threshold,
        } => ("cleared", kind, value, threshold),
    };
    serde_json::json!({
        "source": "pocketdev",
        "event": event,
        "kind": kind,
        "value": value,
        "threshold": threshold,
        "at": at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    })
}

/// POSTs with retries (1, 2, 4, 8 s apart); gives up after five tries.
async fn deliver(url: String, body: serde_json::Value) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=5 {
        match client.post(&url).json(&body).send().await {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::debug!(attempt, status = %response.status(), "alert webhook refused")
            }
            Err(err) => tracing::debug!(attempt, error = %err, "alert webhook failed"),
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    tracing::warn!("alert webhook gave up after 5 tries");
}

/// Alerts left open by an earlier run: their state was not kept, so they are closed now and
/// raised again if the condition holds for the grace period.
pub async fn close_stale(db: &Db) -> Result<u64, AppError> {
    let closed = sqlx::query("UPDATE alerts SET cleared_at = ? WHERE cleared_at IS NULL")
        .bind(OffsetDateTime::now_utc())
        .execute(db)
        .await?
        .rows_affected();
    Ok(closed)
}

pub async fn active(db: &Db) -> Result<Vec<Alert>, AppError> {
    Ok(sqlx::query_as(
        "SELECT id, kind, value, threshold, raised_at, cleared_at FROM alerts WHERE cleared_at IS NULL ORDER BY id",
    )
    .fetch_all(db)
    .await?)
}

pub async fn recent(db: &Db, limit: i64) -> Result<Vec<Alert>, AppError> {
    Ok(sqlx::query_as(
        "SELECT id, kind, value, threshold, raised_at, cleared_at FROM alerts ORDER BY id DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(grace_secs: u64) -> AlertConfig {
        AlertConfig {
            cpu_percent: 80.0,
            grace_secs,
            hysteresis_percent: 5.0,
            ..AlertConfig::default()
        }
    }

    #[test]
    fn an_alert_needs_the_grace_period_and_clears_with_hysteresis() {
        let mut alerts = Alerts::new(&config(30));
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let at = |s: i64| t0 + time::Duration::seconds(s);
        // A short spike is not an alert.
        assert_eq!(alerts.observe(Kind::Cpu, 95.0, at(0)), None);
        assert_eq!(alerts.observe(Kind::Cpu, 50.0, at(10)), None);
        // Staying over for the grace period is.
        assert_eq!(alerts.observe(Kind::Cpu, 85.0, at(20)), None);
        assert_eq!(alerts.observe(Kind::Cpu, 90.0, at(40)), None);
        assert!(matches!(
            alerts.observe(Kind::Cpu, 88.0, at(50)),
            Some(Change::Raised {
                kind: Kind::Cpu,
                ..
            })
        ));
        // It stays up while the value hovers around the threshold…
        for (s, v) in [(55, 79.0), (60, 81.0), (65, 76.0), (70, 80.0)] {
            assert_eq!(alerts.observe(Kind::Cpu, v, at(s)), None, "{v} at {s}");
        }
        // …and clears once it is clearly below.
        assert!(matches!(
            alerts.observe(Kind::Cpu, 74.0, at(75)),
            Some(Change::Cleared {
                kind: Kind::Cpu,
                ..
            })
        ));
        assert_eq!(alerts.observe(Kind::Cpu, 70.0, at(80)), None);
        // Kinds are independent.
        assert_eq!(alerts.observe(Kind::Disk, 95.0, at(80)), None);
    }

    #[test]
    fn without_a_grace_period_an_alert_is_raised_at_once() {
        let mut alerts = Alerts::new(&config(0));
        let now = OffsetDateTime::UNIX_EPOCH;
        assert!(matches!(
            alerts.observe(Kind::Cpu, 80.0, now),
            Some(Change::Raised { .. })
        ));
    }
}
