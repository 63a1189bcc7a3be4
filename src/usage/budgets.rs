//! Budgets: what an account (or the whole server) may spend per day or per month, in money
//! and/or tokens. At 80 % the account's user is told; at 100 % the admins are alerted, new
//! agents are refused with the budget and its reset in words, and running agents are paused
//! (suspended where they can resume, else stopped; reason `budget`) at their next quiet moment,
//! never mid-turn. An admin can lift a budget for the rest of the day.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::day;
use crate::db::Db;
use crate::error::AppError;
use crate::state::AppState;

/// Share of a budget at which its user is warned.
const WARN_AT: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase", type_name = "TEXT")]
pub enum Period {
    Day,
    Month,
}

impl Period {
    /// The first day of the period holding `now` (UTC).
    pub fn start(self, now: OffsetDateTime) -> String {
        match self {
            Self::Day => day(now),
            Self::Month => format!("{}-01", &day(now)[..7]),
        }
    }

    /// When the period holding `now` ends (UTC midnight).
    pub fn resets_at(self, now: OffsetDateTime) -> OffsetDateTime {
        let date = now.to_offset(time::UtcOffset::UTC).date();
        let next = match self {
            Self::Day => date.next_day().unwrap_or(date),
            Self::Month => {
                let (year, month) = match date.month() {
                    time::Month::December => (date.year() + 1, time::Month::January),
                    m => (date.year(), m.next()),
                };
                time::Date::from_calendar_date(year, month, 1).unwrap_or(date)
            }
        };
        next.midnight().assume_utc()
    }

    fn word(self) -> &'static str {
        match self {
            Self::Day => "daily",
            Self::Month => "monthly",
        }
    }
}

/// A budget as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Budget {
    pub id: i64,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub period: Period,
    pub cost_micros: Option<i64>,
    pub tokens: Option<i64>,
    pub lifted_on: Option<String>,
    pub warned_for: Option<String>,
    pub reached_for: Option<String>,
}

/// A budget with what has been spent against it in its current period.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Standing {
    pub id: i64,
    /// The account it limits; null for the whole server.
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub period: Period,
    /// At most this much money per period (in `currency`), if set.
    pub cost_limit: Option<f64>,
    /// At most this many tokens per period, if set.
    pub tokens_limit: Option<i64>,
    pub spent_cost: f64,
    pub spent_tokens: i64,
    /// The larger of the two shares used, in percent.
    pub used_percent: f64,
    /// `ok`, `warning` (80 % or more), `exceeded`, or `lifted` (by an admin, for today).
    pub state: &'static str,
    /// When the period ends and the budget starts again (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub resets_at: OffsetDateTime,
    /// Set when at least one budget is exceeded: why new agents are refused, in words.
    pub message: Option<String>,
}

const BUDGET: &str = "SELECT b.id, b.user_id, u.username, b.period, b.cost_micros, b.tokens,
    b.lifted_on, b.warned_for, b.reached_for FROM budgets b LEFT JOIN users u ON u.id = b.user_id";

pub async fn all(db: &Db) -> Result<Vec<Budget>, AppError> {
    Ok(sqlx::query_as(&format!(
        "{BUDGET} ORDER BY b.user_id IS NOT NULL, u.username, b.period"
    ))
    .fetch_all(db)
    .await?)
}

/// The budgets that limit `user_id`: its own and the server's.
pub async fn for_user(db: &Db, user_id: i64) -> Result<Vec<Budget>, AppError> {
    Ok(sqlx::query_as(&format!(
        "{BUDGET} WHERE b.user_id = ? OR b.user_id IS NULL ORDER BY b.user_id IS NOT NULL, b.period"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

/// Sets (or replaces) the budget for an account, or the server with `user_id` null.
pub async fn set(
    db: &Db,
    user_id: Option<i64>,
    period: Period,
    cost_micros: Option<i64>,
    tokens: Option<i64>,
) -> Result<i64, AppError> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM budgets WHERE COALESCE(user_id, 0) = COALESCE(?, 0) AND period = ?")
        .bind(user_id)
        .bind(period)
        .execute(&mut *tx)
        .await?;
    let id = sqlx::query_scalar(
        "INSERT INTO budgets (user_id, period, cost_micros, tokens, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(user_id)
    .bind(period)
    .bind(cost_micros)
    .bind(tokens)
    .bind(OffsetDateTime::now_utc())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn remove(db: &Db, id: i64) -> Result<bool, AppError> {
    Ok(sqlx::query("DELETE FROM budgets WHERE id = ?")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected()
        > 0)
}

/// Lifts a budget for the rest of today (UTC).
pub async fn lift(db: &Db, id: i64, now: OffsetDateTime) -> Result<bool, AppError> {
    Ok(sqlx::query("UPDATE budgets SET lifted_on = ? WHERE id = ?")
        .bind(day(now))
        .bind(id)
        .execute(db)
        .await?
        .rows_affected()
        > 0)
}

/// What the budget's scope has spent since `since` (a day): (millionths, tokens).
async fn spent(db: &Db, user_id: Option<i64>, since: &str) -> Result<(i64, i64), AppError> {
    Ok(sqlx::query_as(
        "SELECT COALESCE(SUM(cost_micros), 0), COALESCE(SUM(input_tokens + output_tokens + cache_write_tokens + cache_read_tokens), 0)
         FROM usage_daily WHERE day >= ? AND (? IS NULL OR user_id = ?)",
    )
    .bind(since)
    .bind(user_id)
    .bind(user_id)
    .fetch_one(db)
    .await?)
}

pub async fn standing(
    db: &Db,
    budget: &Budget,
    currency: &str,
    now: OffsetDateTime,
) -> Result<Standing, AppError> {
    let (micros, tokens) = spent(db, budget.user_id, &budget.period.start(now)).await?;
    let share = |spent: i64, limit: Option<i64>| {
        limit.map_or(0.0, |l| {
            if l <= 0 {
                f64::INFINITY
            } else {
                spent as f64 / l as f64
            }
        })
    };
    let used = share(micros, budget.cost_micros).max(share(tokens, budget.tokens));
    let lifted = budget.lifted_on.as_deref() == Some(day(now).as_str());
    let state = if lifted {
        "lifted"
    } else if used >= 1.0 {
        "exceeded"
    } else if used >= WARN_AT {
        "warning"
    } else {
        "ok"
    };
    let resets_at = budget.period.resets_at(now);
    let message = (state == "exceeded").then(|| {
        let whose = match &budget.username {
            Some(_) if budget.user_id.is_some() => "your account's",
            _ => "the server's",
        };
        let limit = match (budget.cost_micros, budget.tokens) {
            (Some(c), _) if share(micros, Some(c)) >= 1.0 => {
                format!("{:.2} {currency}", c as f64 / 1e6)
            }
            (_, Some(t)) => format!("{t} tokens"),
            (Some(c), None) => format!("{:.2} {currency}", c as f64 / 1e6),
            (None, None) => String::new(),
        };
        let reset = resets_at
            .format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .unwrap_or_default();
        format!(
            "The {} budget of {limit} for {whose} agents is spent; it starts again at {reset}. An admin can lift it for today.",
            budget.period.word()
        )
    });
    Ok(Standing {
        id: budget.id,
        user_id: budget.user_id,
        username: budget.username.clone(),
        period: budget.period,
        cost_limit: budget.cost_micros.map(|c| c as f64 / 1e6),
        tokens_limit: budget.tokens,
        spent_cost: micros as f64 / 1e6,
        spent_tokens: tokens,
        used_percent: if used.is_finite() {
            used * 100.0
        } else {
            100.0
        },
        state,
        resets_at,
        message,
    })
}

/// Why `user_id` may not start an agent now, if a budget says so.
pub async fn refusal(state: &AppState, user_id: i64) -> Result<Option<String>, AppError> {
    let now = OffsetDateTime::now_utc();
    for budget in for_user(&state.db, user_id).await? {
        let standing = standing(&state.db, &budget, state.usage.currency(), now).await?;
        if let Some(message) = standing.message {
            return Ok(Some(message));
        }
    }
    Ok(None)
}

/// Refuses with the budget's words when one is spent.
pub async fn admit(state: &AppState, user_id: i64) -> Result<(), AppError> {
    match refusal(state, user_id).await? {
        Some(message) => Err(AppError::Conflict(message)),
        None => Ok(()),
    }
}

/// After each reading pass: warns at 80 %, alerts and stops quiet agents at 100 %.
pub async fn enforce(state: &AppState) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    for budget in all(&state.db).await? {
        let standing = standing(&state.db, &budget, state.usage.currency(), now).await?;
        let period = budget.period.start(now);
        let whose = budget.username.as_deref().unwrap_or("the server");
        if matches!(standing.state, "warning" | "exceeded")
            && budget.warned_for.as_deref() != Some(period.as_str())
        {
            mark(&state.db, budget.id, "warned_for", &period).await?;
            if let Some(user) = budget.user_id {
                crate::push::budget_notice(
                    state,
                    user,
                    &format!(
                        "{:.0} % of the {} budget is spent",
                        standing.used_percent.min(100.0),
                        budget.period.word()
                    ),
                );
            }
        }
        if standing.state != "exceeded" {
            continue;
        }
        if budget.reached_for.as_deref() != Some(period.as_str()) {
            mark(&state.db, budget.id, "reached_for", &period).await?;
            sqlx::query(
                "INSERT INTO alerts (kind, value, threshold, raised_at, cleared_at) VALUES (?, ?, 100, ?, NULL)",
            )
            .bind(format!("budget:{whose}"))
            .bind(standing.used_percent)
            .bind(now)
            .execute(&state.db)
            .await?;
            tracing::warn!(budget = budget.id, scope = whose, "a budget is spent");
            if let (Some(user), Some(message)) = (budget.user_id, &standing.message) {
                crate::push::budget_notice(state, user, message);
            }
        }
        // Agents of the scope that are not in the middle of a turn are paused now (suspended
        // where they can resume, else stopped); the others at their next quiet moment.
        for instance in crate::instances::store::live(&state.db).await? {
            if budget.user_id.is_some_and(|u| u != instance.owner) {
                continue;
            }
            let working = state
                .monitor
                .status(&instance)
                .is_some_and(|(status, _)| status == crate::monitor::Status::Working);
            if working || instance.state != crate::instances::store::State::Running {
                continue;
            }
            let paused = if state.instances.can_resume(&instance.profile) {
                state.instances.suspend(&instance, "budget").await
            } else {
                state.instances.stop(&instance, "budget").await
            };
            if let Err(e) = paused {
                tracing::warn!(instance = %instance.id, error = %e, "could not pause an agent over its budget");
            }
        }
    }
    Ok(())
}

async fn mark(db: &Db, id: i64, column: &'static str, period: &str) -> Result<(), AppError> {
    sqlx::query(&format!("UPDATE budgets SET {column} = ? WHERE id = ?"))
        .bind(period)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_and_reset_at_utc_midnight() {
        let now = OffsetDateTime::parse(
            "2026-12-31T23:30:00+02:00",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(Period::Day.start(now), "2026-12-31");
        assert_eq!(Period::Month.start(now), "2026-12-01");
        assert_eq!(
            Period::Day.resets_at(now).to_string(),
            "2027-01-01 0:00:00.0 +00:00:00"
        );
        assert_eq!(
            Period::Month.resets_at(now).to_string(),
            "2027-01-01 0:00:00.0 +00:00:00"
        );
    }
}
