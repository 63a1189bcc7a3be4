//! SQL for sign-in sessions, their rotating refresh tokens, and invites.

use std::net::IpAddr;

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::db::Db;
use crate::error::AppError;
use crate::users::{Role, User};

pub async fn create_session(
    db: &Db,
    user_id: i64,
    expires_at: OffsetDateTime,
    ip: IpAddr,
    user_agent: Option<&str>,
) -> Result<String, AppError> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO sessions (id, user_id, created_at, expires_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(&id)
        .bind(user_id)
        .bind(OffsetDateTime::now_utc())
        .bind(expires_at)
        .bind(ip.to_string())
        .bind(user_agent.map(|ua| ua.chars().take(200).collect::<String>()))
        .execute(db)
        .await?;
    Ok(id)
}

pub async fn insert_refresh_token(
    db: &Db,
    token_hash: &str,
    session_id: &str,
    expires_at: OffsetDateTime,
) -> Result<(), AppError> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
        .bind(token_hash)
        .bind(session_id)
        .bind(OffsetDateTime::now_utc())
        .bind(expires_at)
        .execute(db)
        .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct RefreshLookup {
    pub session_id: String,
    pub user_id: i64,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

pub async fn find_refresh_token(
    db: &Db,
    token_hash: &str,
) -> Result<Option<RefreshLookup>, AppError> {
    Ok(sqlx::query_as::<_, RefreshLookup>(
        "SELECT r.session_id, s.user_id, r.expires_at, r.used_at, s.revoked_at
         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await?)
}

/// Marks a refresh token as exchanged; `false` if someone exchanged it first.
pub async fn consume_refresh_token(db: &Db, token_hash: &str) -> Result<bool, AppError> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
    )
    .bind(OffsetDateTime::now_utc())
    .bind(token_hash)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn revoke_session(db: &Db, session_id: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(OffsetDateTime::now_utc())
        .bind(session_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Revokes every session of a user except `keep` (the caller's own, on password change).
pub async fn revoke_user_sessions(
    db: &Db,
    user_id: i64,
    keep: Option<&str>,
) -> Result<(), AppError> {
    sqlx::query("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ?")
        .bind(OffsetDateTime::now_utc())
        .bind(user_id)
        .bind(keep)
        .execute(db)
        .await?;
    Ok(())
}

/// The user behind a live session, if both are still valid.
pub async fn session_user(
    db: &Db,
    session_id: &str,
    user_id: i64,
) -> Result<Option<User>, AppError> {
    Ok(sqlx::query_as::<_, User>(
        "SELECT u.id, u.username, u.role, u.disabled, u.created_at, u.last_login_at
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id = ? AND s.user_id = ? AND s.revoked_at IS NULL AND s.expires_at > ?",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(OffsetDateTime::now_utc())
    .fetch_optional(db)
    .await?)
}

/// Drops expired sessions and tokens; run now and then.
pub async fn purge_expired(db: &Db) -> Result<(), AppError> {
    let now = OffsetDateTime::now_utc();
    sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
        .bind(now)
        .execute(db)
        .await?;
    sqlx::query("DELETE FROM invites WHERE expires_at < ? AND used_at IS NULL")
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// Stores a new invite; returns its id.
pub async fn insert_invite(
    db: &Db,
    code_hash: &str,
    role: Role,
    created_by: i64,
    expires_at: OffsetDateTime,
) -> Result<i64, AppError> {
    sqlx::query_scalar("INSERT INTO invites (code_hash, role, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?) RETURNING id")
        .bind(code_hash)
        .bind(role)
        .bind(created_by)
        .bind(OffsetDateTime::now_utc())
        .bind(expires_at)
        .fetch_all(db)
        .await
        .map_err(AppError::from)
        .and_then(crate::db::the_returned_row)
}

/// Whether an invite can still be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, ToSchema)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum InviteState {
    Pending,
    Used,
    Expired,
}

/// An invite as admins see it: never its code, which only its holder knows.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Invite {
    pub id: i64,
    pub role: Role,
    pub state: InviteState,
    /// Who created it (absent once that account is deleted).
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The account it created.
    pub used_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub used_at: Option<OffsetDateTime>,
}

/// Every invite still on record, newest first (expired ones go at the next purge).
pub async fn list_invites(db: &Db) -> Result<Vec<Invite>, AppError> {
    select_invites(db, None).await
}

pub async fn invite_by_id(db: &Db, id: i64) -> Result<Option<Invite>, AppError> {
    Ok(select_invites(db, Some(id)).await?.pop())
}

async fn select_invites(db: &Db, id: Option<i64>) -> Result<Vec<Invite>, AppError> {
    Ok(sqlx::query_as(
        "SELECT i.id, i.role,
                CASE WHEN i.used_at IS NOT NULL THEN 'used'
                     WHEN i.expires_at <= ?1 THEN 'expired'
                     ELSE 'pending' END AS state,
                creator.username AS created_by, i.created_at, i.expires_at,
                redeemer.username AS used_by, i.used_at
         FROM invites i
         LEFT JOIN users creator ON creator.id = i.created_by
         LEFT JOIN users redeemer ON redeemer.id = i.used_by
         WHERE ?2 IS NULL OR i.id = ?2
         ORDER BY i.id DESC",
    )
    .bind(OffsetDateTime::now_utc())
    .bind(id)
    .fetch_all(db)
    .await?)
}

/// Deletes an invite unless it was redeemed meanwhile; true when it was deleted.
pub async fn revoke_invite(db: &Db, id: i64) -> Result<bool, AppError> {
    let deleted = sqlx::query("DELETE FROM invites WHERE id = ? AND used_at IS NULL")
        .bind(id)
        .execute(db)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Claims an unused, unexpired invite atomically; returns the role it grants.
pub async fn claim_invite(db: &Db, code_hash: &str) -> Result<Option<Role>, AppError> {
    Ok(sqlx::query_scalar(
        "UPDATE invites SET used_at = ?1 WHERE code_hash = ?2 AND used_at IS NULL AND expires_at > ?1 RETURNING role",
    )
    .bind(OffsetDateTime::now_utc())
    .bind(code_hash)
    .fetch_all(db)
    .await?
    .into_iter()
    .next())
}

/// Gives an invite back when the registration it was claimed for failed (say, a taken name).
pub async fn release_invite(db: &Db, code_hash: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE invites SET used_at = NULL WHERE code_hash = ? AND used_by IS NULL")
        .bind(code_hash)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn mark_invite_used_by(db: &Db, code_hash: &str, user_id: i64) -> Result<(), AppError> {
    sqlx::query("UPDATE invites SET used_by = ? WHERE code_hash = ?")
        .bind(user_id)
        .bind(code_hash)
        .execute(db)
        .await?;
    Ok(())
}
