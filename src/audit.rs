//! The audit log: who did what, when, from where. Recording never fails a request.

use std::net::IpAddr;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::extract::AdminUser;
use crate::db::Db;
use crate::error::{AppResult, Json, Query};
use crate::state::AppState;

/// One event to record. `user_id`/`username` name the actor when known.
#[derive(Debug, Default)]
pub struct Event<'a> {
    pub user_id: Option<i64>,
    pub username: Option<&'a str>,
    pub action: &'a str,
    pub target: Option<String>,
    pub ip: Option<IpAddr>,
    pub detail: Option<serde_json::Value>,
}

pub async fn record(db: &Db, event: Event<'_>) {
    let result = sqlx::query(
        "INSERT INTO audit_log (at, user_id, username, action, target, ip, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(OffsetDateTime::now_utc())
    .bind(event.user_id)
    .bind(event.username)
    .bind(event.action)
    .bind(&event.target)
    .bind(event.ip.map(|ip| ip.to_string()))
    .bind(event.detail.as_ref().map(|d| d.to_string()))
    .execute(db)
    .await;
    if let Err(err) = result {
        tracing::error!(error = %err, action = event.action, "cannot record audit event");
    }
}

/// Forgets entries older than `days` (0 keeps everything); answers how many went.
pub async fn prune(db: &Db, days: u32) -> Result<u64, sqlx::Error> {
    if days == 0 {
        return Ok(0);
    }
    let before = OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
    Ok(sqlx::query("DELETE FROM audit_log WHERE at < ?")
        .bind(before)
        .execute(db)
        .await?
        .rows_affected())
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    /// Such as `login.success`, `login.failure`, `user.delete`.
    pub action: String,
    pub target: Option<String>,
    pub ip: Option<String>,
    /// JSON text with action-specific details.
    pub detail: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// At most this many entries (default 100, at most 1000).
    #[param(minimum = 0, maximum = 4294967295_u64, format = Int64)]
    pub limit: Option<u32>,
    /// Only entries older than this id, for paging back.
    pub before: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
}

pub async fn list(db: &Db, query: &AuditQuery) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    sqlx::query_as::<_, AuditEntry>(
        "SELECT id, at, user_id, username, action, target, ip, detail FROM audit_log
         WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR action = ?2)
         ORDER BY id DESC LIMIT ?3",
    )
    .bind(query.before)
    .bind(&query.action)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
async fn list_audit(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<AuditQuery>,
) -> AppResult<Json<Vec<AuditEntry>>> {
    Ok(Json(list(&state.db, &query).await?))
}
