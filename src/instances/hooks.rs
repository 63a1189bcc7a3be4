//! Events an agent reports about itself (Claude Code hooks), over a per-instance channel.
//!
//! Hooks run as the agent, so their input is untrusted: each start of an instance gets a fresh
//! random token in the agent's environment, and a report counts only for the instance whose
//! current token it carries. `SessionStart` keeps the conversation id current (after `/clear`,
//! so a restart resumes the right conversation); the others feed the monitor's agent status.

use std::io::Read;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::store;
use crate::auth::tokens::hash_token;
use crate::error::{AppError, AppResult, ErrorBody, Path};
use crate::state::AppState;

use super::routes::InstancesState;

/// Environment variables the agent receives.
pub const URL_ENV: &str = "POCKETDEV_HOOK_URL";
pub const TOKEN_ENV: &str = "POCKETDEV_HOOK_TOKEN";
/// Largest report accepted.
const REPORT_MAX: usize = 64 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(report))
}

/// Receives one hook event from an instance's agent (authenticated by the instance's hook token).
#[utoipa::path(post, path = "/api/instances/{id}/hooks", tag = "instances",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "instance id")),
    request_body(content = Object, description = "the hook's JSON input, as Claude Code gives it"),
    responses((status = 204), (status = 401, description = "not this instance's current token", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 507, description = "the disk is full", body = ErrorBody)))]
async fn report(
    State(state): State<InstancesState>,
    Path(id): Path<String>,
    client: crate::http::client::ClientInfo,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AppResult<StatusCode> {
    use crate::http::rate_limit::{ApiKey, check};
    // Wrong tokens count against the caller's address; good ones against their instance.
    let invalid = || {
        check(&state.rate_limits.api, &ApiKey::Ip(client.ip))
            .err()
            .unwrap_or_else(|| {
                AppError::Unauthorized("not a valid hook token for this instance".into())
            })
    };
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(invalid)?;
    let instance = store::by_hook_token(&state.db, &id, &hash_token(token))
        .await?
        .ok_or_else(invalid)?;
    check(&state.rate_limits.hooks, &instance.id)?;
    if body.len() > REPORT_MAX {
        return Err(AppError::PayloadTooLarge(format!(
            "a hook report is at most {REPORT_MAX} bytes"
        )));
    }
    let event: Value = serde_json::from_slice(&body)
        .map_err(|e| AppError::Unprocessable(format!("a hook report is a JSON object: {e}")))?;
    let name = event["hook_event_name"].as_str().unwrap_or_default();
    if name == "SessionStart"
        && let Some(session) = event["session_id"].as_str()
    {
        let session = uuid::Uuid::parse_str(session)
            .map_err(|_| AppError::Unprocessable("session_id is not a UUID".into()))?
            .to_string();
        if instance.agent_session_id.as_deref() != Some(&session) {
            tracing::info!(instance = %instance.id, source = ?event["source"].as_str(), "agent conversation changed");
            store::set_agent_session(&state.db, &instance.id, &session).await?;
        }
    }
    state.manager.note_permission_hook(&instance.id, &event);
    state.observer.clone().hook_event(&instance, &event).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `pocketdev hook`: run by the agent for each hook; forwards its standard input to the server.
/// It never fails the agent: a hook's exit status can block Claude Code's actions.
pub async fn forward_stdin() {
    let (Ok(url), Ok(token)) = (std::env::var(URL_ENV), std::env::var(TOKEN_ENV)) else {
        return;
    };
    let mut input = Vec::new();
    if std::io::stdin()
        .take(REPORT_MAX as u64)
        .read_to_end(&mut input)
        .is_err()
    {
        return;
    }
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    else {
        return;
    };
    let sent = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(input)
        .send()
        .await;
    if let Err(err) = sent {
        eprintln!("pocketdev hook: cannot reach the server: {err}");
    }
}
