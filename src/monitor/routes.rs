//! `GET /api/system/stats`: the host, every live instance with its owner, usage and status,
//! and totals per user (admins only).

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::alerts::{self, Alert};
use super::sampler::HostUsage;
use super::{InstanceUsage, Status};
use crate::auth::extract::AdminUser;
use crate::error::{AppResult, ErrorBody, Json};
use crate::instances::store;
use crate::state::AppState;

/// What the monitor's routes need of the application.
#[derive(Clone)]
pub struct MonitorState {
    pub monitor: std::sync::Arc<super::Monitor>,
    pub db: crate::db::Db,
    pub isolation: std::sync::Arc<crate::isolation::Isolation>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(list_alerts))
        .routes(routes!(history))
}

#[derive(Serialize, ToSchema)]
pub struct InstanceStats {
    pub id: String,
    pub name: String,
    pub profile: String,
    pub owner: i64,
    pub owner_name: String,
    pub state: store::State,
    pub status: Option<Status>,
    pub status_reason: Option<String>,
    pub usage: Option<InstanceUsage>,
}

#[derive(Serialize, ToSchema)]
pub struct UserTotals {
    pub user_id: i64,
    pub username: String,
    pub instances: usize,
    pub memory_bytes: u64,
    pub cpu_percent: f32,
}

#[derive(Serialize, ToSchema)]
pub struct SystemStats {
    /// When the numbers were sampled (RFC 3339); null before the first sample.
    pub sampled_at: Option<String>,
    pub host: HostUsage,
    pub instances: Vec<InstanceStats>,
    pub users: Vec<UserTotals>,
    /// Alerts raised and not yet cleared.
    pub alerts: Vec<Alert>,
    /// How accounts are kept apart on this server (mode `none`: not at all).
    pub isolation: crate::isolation::Report,
}

/// The host, each live instance's usage and status with its owner, and per-user totals.
#[utoipa::path(get, path = "/api/system/stats", tag = "system",
    responses((status = 200, body = SystemStats), (status = 403, description = "not an admin", body = ErrorBody)))]
async fn stats(
    State(state): State<MonitorState>,
    _admin: AdminUser,
) -> AppResult<Json<SystemStats>> {
    let latest = state.monitor.latest();
    let names: BTreeMap<i64, String> = crate::users::store::list(&state.db)
        .await?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect();
    let mut users: BTreeMap<i64, UserTotals> = BTreeMap::new();
    let mut instances = Vec::new();
    for instance in store::live(&state.db).await? {
        let usage = latest.instances.get(&instance.id).cloned();
        let owner_name = names.get(&instance.owner).cloned().unwrap_or_default();
        let totals = users.entry(instance.owner).or_insert_with(|| UserTotals {
            user_id: instance.owner,
            username: owner_name.clone(),
            instances: 0,
            memory_bytes: 0,
            cpu_percent: 0.0,
        });
        totals.instances += 1;
        if let Some(usage) = &usage {
            totals.memory_bytes += usage.memory_bytes;
            totals.cpu_percent += usage.cpu_percent;
        }
        let (status, status_reason) = state.monitor.status(&instance).unzip();
        instances.push(InstanceStats {
            status,
            status_reason: status_reason.flatten(),
            id: instance.id,
            name: instance.name,
            profile: instance.profile,
            owner: instance.owner,
            owner_name,
            state: instance.state,
            usage,
        });
    }
    Ok(Json(SystemStats {
        sampled_at: latest.at.and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        }),
        host: latest.host.clone(),
        instances,
        users: users.into_values().collect(),
        alerts: alerts::active(&state.db).await?,
        isolation: state.isolation.report(),
    }))
}

/// The last 100 alerts, newest first, cleared ones included.
#[utoipa::path(get, path = "/api/system/alerts", tag = "system",
    responses((status = 200, body = Vec<Alert>), (status = 403, description = "not an admin", body = ErrorBody)))]
async fn list_alerts(
    State(state): State<MonitorState>,
    _admin: AdminUser,
) -> AppResult<Json<Vec<Alert>>> {
    Ok(Json(alerts::recent(&state.db, 100).await?))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// How far back, 1 to 60 minutes (default 60).
    #[param(minimum = 1, maximum = 60)]
    minutes: Option<u64>,
}

/// The host's and each instance's samples over the last hour at most, oldest first.
#[utoipa::path(get, path = "/api/system/history", tag = "system", params(HistoryQuery),
    responses((status = 200, body = Vec<super::HistoryPoint>), (status = 403, description = "not an admin", body = ErrorBody),
        (status = 422, description = "minutes outside 1 to 60", body = ErrorBody)))]
async fn history(
    State(state): State<MonitorState>,
    _admin: AdminUser,
    crate::error::Query(query): crate::error::Query<HistoryQuery>,
) -> AppResult<Json<Vec<super::HistoryPoint>>> {
    let minutes = query.minutes.unwrap_or(60);
    if !(1..=60).contains(&minutes) {
        return Err(crate::error::AppError::Unprocessable(
            "minutes is 1 to 60; history is kept for an hour".into(),
        ));
    }
    Ok(Json(state.monitor.history(minutes)))
}
