//! SQL for push: subscriptions, preferences, mutes and action tokens.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::sender::Target;
use crate::db::Db;
use crate::error::AppError;

/// A subscribed device as its owner sees it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct SubscriptionInfo {
    pub id: i64,
    /// The device's name, such as "Chrome on Android".
    pub device: String,
    /// The push service's URL for this device (it tells a page which entry is its own).
    pub endpoint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When a notification last reached the push service.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stored {
    pub id: i64,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

impl Stored {
    pub fn target(&self) -> Target {
        Target {
            endpoint: self.endpoint.clone(),
            p256dh: self.p256dh.clone(),
            auth: self.auth.clone(),
        }
    }
}

const INFO: &str = "id, device, endpoint, created_at, last_success_at";

/// Adds (or takes over: one browser has one endpoint) a subscription for `user_id`.
pub async fn upsert(
    db: &Db,
    user_id: i64,
    device: &str,
    target: &Target,
) -> Result<SubscriptionInfo, AppError> {
    sqlx::query_as(&format!(
        "INSERT INTO push_subscriptions (user_id, device, endpoint, p256dh, auth, created_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id, device = excluded.device,
             p256dh = excluded.p256dh, auth = excluded.auth, created_at = excluded.created_at,
             last_success_at = NULL
         RETURNING {INFO}"
    ))
    .bind(user_id)
    .bind(device)
    .bind(&target.endpoint)
    .bind(&target.p256dh)
    .bind(&target.auth)
    .bind(OffsetDateTime::now_utc())
    .fetch_all(db)
    .await
    .map_err(AppError::from)
    .and_then(crate::db::the_returned_row)
}

pub async fn list(db: &Db, user_id: i64) -> Result<Vec<SubscriptionInfo>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {INFO} FROM push_subscriptions WHERE user_id = ? ORDER BY id"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

pub async fn targets(db: &Db, user_id: i64) -> Result<Vec<Stored>, AppError> {
    Ok(sqlx::query_as(
        "SELECT id, endpoint, p256dh, auth FROM push_subscriptions WHERE user_id = ? ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

/// Deletes `user_id`'s subscription `id`; false when there is none.
pub async fn delete(db: &Db, user_id: i64, id: i64) -> Result<bool, AppError> {
    let done = sqlx::query("DELETE FROM push_subscriptions WHERE id = ? AND user_id = ?")
        .bind(id)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Forgets a subscription the push service says has ended.
pub async fn forget(db: &Db, id: i64) -> Result<(), AppError> {
    sqlx::query("DELETE FROM push_subscriptions WHERE id = ?")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delivered(db: &Db, id: i64) -> Result<(), AppError> {
    sqlx::query("UPDATE push_subscriptions SET last_success_at = ? WHERE id = ?")
        .bind(OffsetDateTime::now_utc())
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// A user's notification preferences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Preferences {
    pub waiting_delay_secs: i64,
    pub quiet_start: Option<i64>,
    pub quiet_end: Option<i64>,
    pub utc_offset_minutes: i64,
}

/// Waiting for input this long before a notification says so, unless the user chose otherwise.
pub const DEFAULT_WAITING_DELAY_SECS: i64 = 60;

impl Default for Preferences {
    fn default() -> Self {
        Self {
            waiting_delay_secs: DEFAULT_WAITING_DELAY_SECS,
            quiet_start: None,
            quiet_end: None,
            utc_offset_minutes: 0,
        }
    }
}

impl Preferences {
    /// Whether `now` falls in the quiet hours, on the user's clock.
    pub fn quiet_at(&self, now: OffsetDateTime) -> bool {
        let (Some(start), Some(end)) = (self.quiet_start, self.quiet_end) else {
            return false;
        };
        let local = now + time::Duration::minutes(self.utc_offset_minutes);
        let minute = i64::from(local.hour()) * 60 + i64::from(local.minute());
        match start.cmp(&end) {
            std::cmp::Ordering::Less => (start..end).contains(&minute),
            std::cmp::Ordering::Greater => minute >= start || minute < end,
            std::cmp::Ordering::Equal => false,
        }
    }
}

pub async fn preferences(db: &Db, user_id: i64) -> Result<Preferences, AppError> {
    Ok(sqlx::query_as(
        "SELECT waiting_delay_secs, quiet_start, quiet_end, utc_offset_minutes
         FROM push_preferences WHERE user_id = ?",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?
    .unwrap_or_default())
}

pub async fn set_preferences(db: &Db, user_id: i64, p: &Preferences) -> Result<(), AppError> {
    sqlx::query(
        "INSERT INTO push_preferences (user_id, waiting_delay_secs, quiet_start, quiet_end, utc_offset_minutes)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (user_id) DO UPDATE SET waiting_delay_secs = excluded.waiting_delay_secs,
             quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end,
             utc_offset_minutes = excluded.utc_offset_minutes",
    )
    .bind(user_id)
    .bind(p.waiting_delay_secs)
    .bind(p.quiet_start)
    .bind(p.quiet_end)
    .bind(p.utc_offset_minutes)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn mutes(db: &Db, user_id: i64) -> Result<Vec<String>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT instance_id FROM push_mutes WHERE user_id = ? ORDER BY instance_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

pub async fn is_muted(db: &Db, user_id: i64, instance_id: &str) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT 1 FROM push_mutes WHERE user_id = ? AND instance_id = ?",
    )
    .bind(user_id)
    .bind(instance_id)
    .fetch_optional(db)
    .await?
    .is_some())
}

pub async fn set_muted(
    db: &Db,
    user_id: i64,
    instance_id: &str,
    muted: bool,
) -> Result<(), AppError> {
    let sql = if muted {
        "INSERT OR IGNORE INTO push_mutes (user_id, instance_id) VALUES (?, ?)"
    } else {
        "DELETE FROM push_mutes WHERE user_id = ? AND instance_id = ?"
    };
    sqlx::query(sql)
        .bind(user_id)
        .bind(instance_id)
        .execute(db)
        .await?;
    Ok(())
}

/// The ids of the enabled admins.
pub async fn admins(db: &Db) -> Result<Vec<i64>, AppError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM users WHERE role = 'admin' AND disabled = 0")
            .fetch_all(db)
            .await?,
    )
}

/// An alert raised since `after` (an alert id).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RaisedAlert {
    pub id: i64,
    pub kind: String,
    pub value: f64,
    pub threshold: f64,
}

pub async fn alerts_after(db: &Db, after: i64) -> Result<Vec<RaisedAlert>, AppError> {
    Ok(sqlx::query_as(
        "SELECT id, kind, value, threshold FROM alerts WHERE id > ? ORDER BY id LIMIT 20",
    )
    .bind(after)
    .fetch_all(db)
    .await?)
}

pub async fn last_alert_id(db: &Db) -> Result<i64, AppError> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM alerts")
            .fetch_one(db)
            .await?
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_may_span_midnight_and_follow_the_users_clock() {
        let at = |h: u8, m: u8| {
            OffsetDateTime::UNIX_EPOCH
                .replace_hour(h)
                .unwrap()
                .replace_minute(m)
                .unwrap()
        };
        let night = Preferences {
            quiet_start: Some(22 * 60),
            quiet_end: Some(7 * 60),
            ..Preferences::default()
        };
        assert!(night.quiet_at(at(23, 0)));
        assert!(night.quiet_at(at(6, 59)));
        assert!(!night.quiet_at(at(7, 0)));
        assert!(!night.quiet_at(at(12, 0)));
        // 21:30 UTC is 23:30 two hours east.
        let east = Preferences {
            utc_offset_minutes: 120,
            ..night
        };
        assert!(east.quiet_at(at(21, 30)));
        assert!(!Preferences::default().quiet_at(at(23, 0)));
    }
}
