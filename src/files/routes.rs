//! `/api/files/*`: list, read, save, make folders, move and delete inside the caller's
//! workspace. Every change is audited.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::jail::{Entry, FileError, Jail, RelPath};
use crate::audit::{self, Event};
use crate::auth::extract::AuthUser;
use crate::error::{AppError, AppResult, ErrorBody, Json, Query};
use crate::http::client::ClientInfo;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, delete))
        .routes(routes!(content))
        .routes(routes!(save))
        .routes(routes!(mkdir))
        .routes(routes!(rename))
}

/// Runs a jail operation for `user` on the blocking pool.
async fn in_jail<T: Send + 'static>(
    state: &AppState,
    user_id: i64,
    operation: impl FnOnce(&Jail) -> Result<T, FileError> + Send + 'static,
) -> AppResult<T> {
    state.layout.prepare_user(user_id)?;
    let workspace = state.layout.workspace(user_id);
    tokio::task::spawn_blocking(move || operation(&Jail::open(&workspace)?))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(AppError::from)
}

fn parse(raw: &str) -> AppResult<RelPath> {
    Ok(RelPath::parse(raw)?)
}

async fn audit_change(
    state: &AppState,
    auth: &AuthUser,
    client: &ClientInfo,
    action: &str,
    detail: serde_json::Value,
) {
    audit::record(
        &state.db,
        Event {
            user_id: Some(auth.user.id),
            username: Some(&auth.user.username),
            action,
            target: None,
            ip: Some(client.ip),
            detail: Some(detail),
        },
    )
    .await;
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A folder, relative to your workspace (default: the workspace).
    #[serde(default)]
    path: String,
    /// Include names starting with a dot.
    #[serde(default)]
    hidden: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ListResponse {
    pub path: String,
    /// Folders first, then by name.
    pub entries: Vec<Entry>,
    /// True when the folder has more entries than `files.max_list_entries`.
    pub truncated: bool,
}

/// A folder of your workspace.
#[utoipa::path(get, path = "/api/files", tag = "files", params(ListQuery),
    responses((status = 200, body = ListResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(query): Query<ListQuery>,
) -> AppResult<Json<ListResponse>> {
    let path = parse(&query.path)?;
    let cap = state.config.files.max_list_entries;
    let shown = path.display();
    let listing = in_jail(&state, auth.user.id, move |jail| {
        jail.list(&path, query.hidden, cap)
    })
    .await?;
    Ok(Json(ListResponse {
        path: shown,
        entries: listing.entries,
        truncated: listing.truncated,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PathQuery {
    /// Relative to your workspace.
    path: String,
}

#[derive(Serialize, ToSchema)]
pub struct ContentResponse {
    pub path: String,
    pub content: String,
    /// `utf-8`, `utf-8-bom`, `utf-16le` or `utf-16be`; saving writes UTF-8.
    pub encoding: String,
    /// Pass back as `expected_etag` when saving.
    pub etag: String,
    pub size: u64,
    pub modified: i64,
}

/// A text file's content. Binary files answer 415 and files over `files.max_read_kb` 413.
#[utoipa::path(get, path = "/api/files/content", tag = "files", params(PathQuery),
    responses((status = 200, body = ContentResponse), (status = 304, description = "unchanged since `If-None-Match`"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
async fn content(
    State(state): State<AppState>,
    auth: AuthUser,
    headers: HeaderMap,
    Query(query): Query<PathQuery>,
) -> AppResult<Response> {
    let path = parse(&query.path)?;
    let limit = state.config.files.max_read_kb * 1024;
    let shown = path.display();
    let text = in_jail(&state, auth.user.id, move |jail| {
        jail.read_text(&path, limit)
    })
    .await?;
    let etag = format!("\"{}\"", text.etag);
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let body = ContentResponse {
        path: shown,
        content: text.content,
        encoding: text.encoding.into(),
        etag: text.etag,
        size: text.size,
        modified: text.modified,
    };
    Ok((
        [
            (header::ETAG, etag),
            (header::CACHE_CONTROL, "no-cache".into()),
        ],
        Json(body),
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    pub path: String,
    pub content: String,
    /// The etag you read; if the file changed since, nothing is written and 409 says so.
    pub expected_etag: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SaveResponse {
    pub path: String,
    pub etag: String,
    pub size: u64,
    pub modified: i64,
}

/// Writes a text file atomically (a temporary file, flushed, then renamed over the old one).
#[utoipa::path(post, path = "/api/files/save", tag = "files", request_body = SaveRequest,
    responses((status = 200, body = SaveResponse), (status = 409, description = "changed meanwhile, or a folder", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn save(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Json(request): Json<SaveRequest>,
) -> AppResult<Response> {
    let path = parse(&request.path)?;
    let shown = path.display();
    let expected = request.expected_etag.clone();
    let result = in_jail(&state, auth.user.id, move |jail| {
        jail.save(&path, request.content.as_bytes(), expected.as_deref())
    })
    .await;
    let saved = match result {
        Ok(saved) => saved,
        Err(AppError::Conflict(message)) if request.expected_etag.is_some() => {
            // Tell the editor which version is there now, so it can offer a merge.
            let current = in_jail(&state, auth.user.id, {
                let path = parse(&request.path)?;
                let limit = state.config.files.max_read_kb * 1024;
                move |jail| jail.read_text(&path, limit)
            })
            .await
            .ok()
            .map(|t| t.etag);
            let body = serde_json::json!({
                "error": { "code": "conflict", "message": message },
                "current_etag": current,
            });
            return Ok((StatusCode::CONFLICT, axum::Json(body)).into_response());
        }
        Err(err) => return Err(err),
    };
    audit_change(
        &state,
        &auth,
        &client,
        "file.save",
        serde_json::json!({ "path": shown, "size": saved.size }),
    )
    .await;
    Ok(Json(SaveResponse {
        path: shown,
        etag: saved.etag,
        size: saved.size,
        modified: saved.modified,
    })
    .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MkdirRequest {
    pub path: String,
}

/// Makes a folder (its parent must exist).
#[utoipa::path(post, path = "/api/files/mkdir", tag = "files", request_body = MkdirRequest,
    responses((status = 201), (status = 409, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn mkdir(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Json(request): Json<MkdirRequest>,
) -> AppResult<StatusCode> {
    let path = parse(&request.path)?;
    let shown = path.display();
    in_jail(&state, auth.user.id, move |jail| jail.mkdir(&path)).await?;
    audit_change(
        &state,
        &auth,
        &client,
        "file.mkdir",
        serde_json::json!({ "path": shown }),
    )
    .await;
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    pub from: String,
    pub to: String,
}

/// Moves or renames; never replaces an existing file or folder (409).
#[utoipa::path(post, path = "/api/files/move", tag = "files", request_body = MoveRequest,
    responses((status = 204), (status = 409, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rename(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Json(request): Json<MoveRequest>,
) -> AppResult<StatusCode> {
    let (from, to) = (parse(&request.from)?, parse(&request.to)?);
    let detail = serde_json::json!({ "from": from.display(), "to": to.display() });
    in_jail(&state, auth.user.id, move |jail| jail.rename(&from, &to)).await?;
    audit_change(&state, &auth, &client, "file.move", detail).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a file, a symlink (not its target) or a folder with its content.
#[utoipa::path(delete, path = "/api/files", tag = "files", params(PathQuery),
    responses((status = 204), (status = 400, description = "the workspace itself", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Query(query): Query<PathQuery>,
) -> AppResult<StatusCode> {
    let path = parse(&query.path)?;
    if path.is_root() {
        return Err(AppError::BadRequest(
            "the workspace itself cannot be deleted".into(),
        ));
    }
    let shown = path.display();
    in_jail(&state, auth.user.id, move |jail| jail.remove(&path)).await?;
    audit_change(
        &state,
        &auth,
        &client,
        "file.delete",
        serde_json::json!({ "path": shown }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
