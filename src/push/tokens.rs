//! Action tokens: what a notification's Allow / Deny carries so the service worker can answer
//! without a session. Random, stored only as a hash, bound to one instance (and approval) and
//! its choices, short-lived, and used at most once; withdrawn when the question is answered
//! elsewhere.

use std::time::Duration;

use time::OffsetDateTime;

use crate::auth::tokens::{hash_token, random_token};
use crate::db::Db;
use crate::error::AppError;

/// Why a token cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such token (or not for this instance).
    Unknown,
    /// Used already.
    Used,
    /// Too old, or withdrawn because the question was answered elsewhere.
    Expired,
    /// Not one of the choices it was issued with.
    UnknownChoice,
}

/// A token accepted and spent.
#[derive(Debug, Clone)]
pub struct Granted {
    pub instance_id: String,
    pub user_id: i64,
    pub approval_id: Option<String>,
}

pub async fn issue(
    db: &Db,
    instance_id: &str,
    user_id: i64,
    approval_id: Option<&str>,
    choices: &[&str],
    ttl: Duration,
) -> Result<String, AppError> {
    let token = random_token(24);
    let expires_at = OffsetDateTime::now_utc() + ttl;
    sqlx::query(
        "INSERT INTO push_action_tokens (token_hash, instance_id, user_id, approval_id, choices, expires_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(hash_token(&token))
    .bind(instance_id)
    .bind(user_id)
    .bind(approval_id)
    .bind(serde_json::to_string(choices).unwrap_or_else(|_| "[]".into()))
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(token)
}

#[derive(sqlx::FromRow)]
struct Row {
    instance_id: String,
    user_id: i64,
    approval_id: Option<String>,
    choices: String,
    expires_at: OffsetDateTime,
    used_at: Option<OffsetDateTime>,
}

/// Spends `token` for `choice` on `instance_id`. A token named with another instance, or with a
/// choice it does not carry, is refused and stays unspent.
pub async fn consume(
    db: &Db,
    token: &str,
    instance_id: &str,
    choice: &str,
) -> Result<Result<Granted, Refusal>, AppError> {
    let hash = hash_token(token);
    let row: Option<Row> = sqlx::query_as(
        "SELECT instance_id, user_id, approval_id, choices, expires_at, used_at
         FROM push_action_tokens WHERE token_hash = ?",
    )
    .bind(&hash)
    .fetch_optional(db)
    .await?;
    let Some(row) = row.filter(|r| r.instance_id == instance_id) else {
        return Ok(Err(Refusal::Unknown));
    };
    if row.used_at.is_some() {
        return Ok(Err(Refusal::Used));
    }
    let now = OffsetDateTime::now_utc();
    if row.expires_at <= now {
        return Ok(Err(Refusal::Expired));
    }
    let choices: Vec<String> = serde_json::from_str(&row.choices).unwrap_or_default();
    if !choices.iter().any(|c| c == choice) {
        return Ok(Err(Refusal::UnknownChoice));
    }
    let spent = sqlx::query(
        "UPDATE push_action_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
    )
    .bind(now)
    .bind(&hash)
    .bind(now)
    .execute(db)
    .await?;
    if spent.rows_affected() == 0 {
        // Another request spent it (or it expired) in between.
        return Ok(Err(Refusal::Used));
    }
    Ok(Ok(Granted {
        instance_id: row.instance_id,
        user_id: row.user_id,
        approval_id: row.approval_id,
    }))
}

/// Withdraws the instance's unspent tokens: its question was answered or has gone.
pub async fn withdraw(db: &Db, instance_id: &str) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE push_action_tokens SET expires_at = ? WHERE instance_id = ? AND used_at IS NULL AND expires_at > ?",
    )
    .bind(OffsetDateTime::now_utc())
    .bind(instance_id)
    .bind(OffsetDateTime::now_utc())
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets tokens that ended over a day ago.
pub async fn purge(db: &Db) -> Result<(), AppError> {
    sqlx::query("DELETE FROM push_action_tokens WHERE expires_at < ?")
        .bind(OffsetDateTime::now_utc() - time::Duration::days(1))
        .execute(db)
        .await?;
    Ok(())
}
