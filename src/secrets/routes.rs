//! `/api/secrets`: list (masked), set, delete the caller's own secrets.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::store::{self, SecretInfo};
use crate::audit::{self, Event};
use crate::auth::extract::AuthUser;
use crate::error::{AppError, AppResult, ErrorBody, Json, JsonRejections, Path};
use crate::http::client::ClientInfo;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret, delete_secret))
}

#[derive(Deserialize, ToSchema)]
pub struct SecretValue {
    /// Not empty, without NUL characters, at most 16 KiB (larger: 413).
    #[schema(min_length = 1, pattern = r"^[^\x00]+$", example = "sk-example")]
    pub value: String,
}

/// The caller's secrets, masked.
#[utoipa::path(get, path = "/api/secrets", tag = "secrets", responses((status = 200, body = Vec<SecretInfo>), (status = 401, body = ErrorBody)))]
async fn list_secrets(
    State(state): State<AppState>,
    auth: AuthUser,
) -> AppResult<Json<Vec<SecretInfo>>> {
    Ok(Json(store::list(&state.db, auth.user.id).await?))
}

/// Sets a secret; the value is never returned again.
#[utoipa::path(put, path = "/api/secrets/{name}", tag = "secrets", request_body = SecretValue,
    params(("name" = String, Path, description = "an environment variable name, such as ANTHROPIC_API_KEY",
        pattern = r"^[A-Z][A-Z0-9_]{0,63}$", example = "ANTHROPIC_API_KEY")),
    responses((status = 200, body = SecretInfo), JsonRejections,
        (status = 413, description = "the value is over 16 KiB", body = ErrorBody),
        (status = 422, description = "the body's shape, or a name or value against the rules", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn put_secret(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(name): Path<String>,
    Json(body): Json<SecretValue>,
) -> AppResult<Json<SecretInfo>> {
    super::check_name(&name)?;
    super::check_value(&body.value)?;
    let (nonce, sealed) = state.secrets.seal(auth.user.id, &name, &body.value)?;
    let info = store::upsert(
        &state.db,
        auth.user.id,
        &name,
        &nonce,
        &sealed,
        &super::hint(&body.value),
    )
    .await?;
    audit::record(
        &state.db,
        Event {
            user_id: Some(auth.user.id),
            username: Some(&auth.user.username),
            action: "secret.set",
            target: Some(name),
            ip: Some(client.ip),
            ..Default::default()
        },
    )
    .await;
    Ok(Json(info))
}

/// Deletes a secret.
#[utoipa::path(delete, path = "/api/secrets/{name}", tag = "secrets", params(("name" = String, Path, description = "secret name", example = "ANTHROPIC_API_KEY")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn delete_secret(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(name): Path<String>,
) -> AppResult<StatusCode> {
    if !store::delete(&state.db, auth.user.id, &name).await? {
        return Err(AppError::not_found("secret"));
    }
    audit::record(
        &state.db,
        Event {
            user_id: Some(auth.user.id),
            username: Some(&auth.user.username),
            action: "secret.delete",
            target: Some(name),
            ip: Some(client.ip),
            ..Default::default()
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
