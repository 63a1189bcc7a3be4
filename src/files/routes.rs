//! `/api/files/*`: list, read, save, make folders, move and delete inside the caller's
//! workspace. Every change is audited.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::jail::{Entry, Expect, FileError, Jail, RelPath};
use crate::audit::{self, Event};
use crate::auth::extract::AuthUser;
use crate::error::{
    AppError, AppResult, ErrorBody, ErrorDetail, Json, JsonRejections, Multipart, Query,
};
use crate::http::client::ClientInfo;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, delete))
        .routes(routes!(content))
        .routes(routes!(save))
        .routes(routes!(mkdir))
        .routes(routes!(rename))
        .routes(routes!(download))
        .routes(routes!(usage))
        .merge(
            // Uploads are limited by `files.max_upload_mb` as they stream, not by the body limit.
            OpenApiRouter::new()
                .routes(routes!(upload))
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
}

/// Runs a jail operation for `user` on the blocking pool.
async fn in_jail<T: Send + 'static>(
    state: &AppState,
    user_id: i64,
    operation: impl FnOnce(&Jail) -> Result<T, FileError> + Send + 'static,
) -> AppResult<T> {
    state.layout.prepare_user(user_id)?;
    // With isolation, the thread acts as the account: the kernel checks every access with its
    // rights, so nothing an agent planted leads further than the account itself could go.
    let identity = state.isolation.ensure(user_id).await?;
    let workspace = state.layout.workspace(user_id);
    crate::isolation::blocking_as(identity, move |acting| {
        operation(&Jail::open(workspace.path(acting))?)
    })
    .await?
    .map_err(AppError::from)
}

fn parse(raw: &str) -> AppResult<RelPath> {
    Ok(RelPath::parse(raw)?)
}

/// Patterns for what [`RelPath::parse`] takes: `/`-separated names of at most 255 characters
/// (bytes, for the server) without a backslash or NUL, none of them `..`, not starting with `/`;
/// at most 4095 bytes in all (the kernel's `PATH_MAX` counts the NUL at the end).
/// `(any, entry)`: any such path (`""` and `.` are the workspace itself), and one that names
/// something inside the workspace (the workspace itself cannot be saved, made, moved or deleted).
fn path_patterns() -> (String, String) {
    let c = r"[^/\\\x00]"; // a character of a name
    let c1 = r"[^/\\\x00.]"; // one that is not a dot
    // A name: not empty, not `..`; and one that is not `.` either.
    let name = format!(r"(?:{c1}{c}{{0,254}}|\.(?:{c1}{c}{{0,253}}|\.{c}{{1,253}})?)");
    let real = format!(r"(?:{c1}{c}{{0,254}}|\.{c1}{c}{{0,253}}|\.\.{c}{{1,253}})");
    (
        format!(r"^(?:{name}(?:/{name}?)*)?$"),
        format!(r"^(?:\.(?:/\.?)*/)?{real}(?:/{name}?)*$"),
    )
}

fn path_schema(pattern: String, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(4095))
        .pattern(Some(pattern))
        .examples([serde_json::json!(example)])
        .into()
}

/// For the description only: a path in the workspace, relative to it (`""` is the workspace
/// itself).
pub struct AnyPath;

impl PartialSchema for AnyPath {
    fn schema() -> RefOr<Schema> {
        path_schema(path_patterns().0, "notes")
    }
}

impl ToSchema for AnyPath {}

/// For the description only: a path naming a file or folder inside the workspace (not the
/// workspace itself).
pub struct EntryPath;

impl PartialSchema for EntryPath {
    fn schema() -> RefOr<Schema> {
        path_schema(path_patterns().1, "notes.txt")
    }
}

impl ToSchema for EntryPath {}

/// A file's bytes, for the description of downloads.
pub struct FileBytes;

impl PartialSchema for FileBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for FileBytes {}

/// What every workspace operation can answer besides its own outcomes.
#[derive(utoipa::IntoResponses)]
pub enum WorkspaceErrors {
    /// The path is not one inside the workspace (`..`, absolute, NUL, too long).
    #[response(status = 400)]
    BadPath(ErrorBody),
    /// The path leads outside the workspace through a link, or the account may not access it.
    #[response(status = 403)]
    Denied(ErrorBody),
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// A folder where a file is needed or the other way round, or something already there.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The account could not be provisioned (its Unix user or folders).
    #[response(status = 503)]
    Unavailable(ErrorBody),
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
    #[param(value_type = AnyPath, inline)]
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
    responses((status = 200, body = ListResponse), WorkspaceErrors))]
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
    #[param(value_type = AnyPath, inline)]
    path: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntryQuery {
    /// A file, link or folder in your workspace, relative to it.
    #[param(value_type = EntryPath, inline)]
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
        WorkspaceErrors, (status = 413, description = "over `files.max_read_kb`", body = ErrorBody),
        (status = 415, description = "not a text file", body = ErrorBody)))]
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
    #[schema(value_type = EntryPath, inline)]
    pub path: String,
    pub content: String,
    /// The etag you read; if the file changed since, nothing is written and 409 says so.
    pub expected_etag: Option<String>,
    /// Create only: if a file is already there, nothing is written and 409 says so.
    #[serde(default)]
    pub if_absent: bool,
}

/// A 409 from saving: the error, and the etag the file has now when it changed meanwhile.
#[derive(Serialize, ToSchema)]
pub struct SaveConflict {
    pub error: ErrorDetail,
    /// The file's etag now (when `expected_etag` was given and the file can be read), so an
    /// editor can offer a merge.
    pub current_etag: Option<String>,
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
    responses((status = 200, body = SaveResponse), JsonRejections, WorkspaceErrors,
        (status = 400, description = "the body is not valid JSON, or a path is not one inside the workspace", body = ErrorBody),
        (status = 409, description = "changed since `expected_etag` (then with `current_etag`), or a folder", body = SaveConflict),
        (status = 507, description = "over the storage quota, or the disk is full", body = ErrorBody)))]
async fn save(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Json(request): Json<SaveRequest>,
) -> AppResult<Response> {
    let path = parse(&request.path)?;
    if quota_bytes(&state).is_some() {
        let target = path.clone();
        let replaced = in_jail(&state, auth.user.id, move |jail| {
            jail.existing_size(&target)
        })
        .await
        .unwrap_or(0);
        check_quota(
            &state,
            auth.user.id,
            (request.content.len() as u64).saturating_sub(replaced),
        )
        .await?;
    }
    let shown = path.display();
    let expected = request.expected_etag.clone();
    let if_absent = request.if_absent;
    let result = in_jail(&state, auth.user.id, move |jail| {
        let expect = match (&expected, if_absent) {
            (_, true) => Expect::Absent,
            (Some(etag), false) => Expect::Etag(etag),
            (None, false) => Expect::Any,
        };
        jail.save(&path, request.content.as_bytes(), expect)
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
            let body = SaveConflict {
                error: ErrorDetail {
                    code: "conflict",
                    message,
                },
                current_etag: current,
            };
            return Ok((StatusCode::CONFLICT, Json(body)).into_response());
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
    #[schema(value_type = EntryPath, inline)]
    pub path: String,
}

#[derive(Serialize, ToSchema)]
pub struct UsageResponse {
    /// Bytes of files in your workspace.
    pub used: u64,
    /// Your quota in bytes; `null` when unlimited.
    pub quota: Option<u64>,
}

/// How much of your storage quota the workspace uses.
#[utoipa::path(get, path = "/api/files/usage", tag = "files",
    responses((status = 200, body = UsageResponse), (status = 503, description = "the account could not be provisioned", body = ErrorBody)))]
async fn usage(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<UsageResponse>> {
    let used = in_jail(&state, auth.user.id, |jail| jail.usage()).await?;
    Ok(Json(UsageResponse {
        used,
        quota: quota_bytes(&state),
    }))
}

fn quota_bytes(state: &AppState) -> Option<u64> {
    let mb = state.config.files.quota_mb;
    (mb > 0).then(|| mb * 1024 * 1024)
}

/// Refuses `adding` more bytes when they would take the workspace over its quota.
async fn check_quota(state: &AppState, user_id: i64, adding: u64) -> AppResult<()> {
    let Some(quota) = quota_bytes(state) else {
        return Ok(());
    };
    let used = in_jail(state, user_id, |jail| jail.usage()).await?;
    if used + adding > quota {
        return Err(quota_error(state, used));
    }
    Ok(())
}

fn quota_error(state: &AppState, used: u64) -> AppError {
    AppError::InsufficientStorage(format!(
        "your workspace would exceed its quota of {} MiB ({:.1} MiB used); delete something first",
        state.config.files.quota_mb,
        used as f64 / (1024.0 * 1024.0)
    ))
}

/// Makes a folder (its parent must exist).
#[utoipa::path(post, path = "/api/files/mkdir", tag = "files", request_body = MkdirRequest,
    responses((status = 201), JsonRejections, WorkspaceErrors,
        (status = 400, description = "the body is not valid JSON, or a path is not one inside the workspace", body = ErrorBody),
        (status = 507, description = "the disk is full", body = ErrorBody)))]
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
    /// What to move; not a folder into itself (400).
    #[schema(value_type = EntryPath, inline)]
    pub from: String,
    /// Where to; nothing may be there yet (409).
    #[schema(value_type = EntryPath, inline)]
    pub to: String,
}

/// Moves or renames; never replaces an existing file or folder (409).
#[utoipa::path(post, path = "/api/files/move", tag = "files", request_body = MoveRequest,
    responses((status = 204), JsonRejections, WorkspaceErrors,
        (status = 400, description = "the body is not valid JSON, or a path is not one inside the workspace", body = ErrorBody),
        (status = 507, description = "the disk is full", body = ErrorBody)))]
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
#[utoipa::path(delete, path = "/api/files", tag = "files", params(EntryQuery),
    responses((status = 204), WorkspaceErrors,
        (status = 400, description = "not a path inside the workspace, or the workspace itself", body = ErrorBody),
        (status = 507, description = "the disk is full", body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Query(query): Query<EntryQuery>,
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The folder to upload into (default: the workspace).
    #[serde(default)]
    #[param(value_type = AnyPath, inline)]
    path: String,
    /// Replace files that already exist (default: refuse with 409).
    #[serde(default)]
    replace: bool,
}

/// The upload's form, as documented: `file` parts. The server takes every part that has a file
/// name, whatever the part's name, and skips parts without one.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadForm {
    /// One or more files.
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    pub file: Vec<Vec<u8>>,
}

#[derive(Serialize, ToSchema)]
pub struct Uploaded {
    pub path: String,
    pub size: u64,
}

/// Uploads files (multipart/form-data, every part with a file name), streamed to disk and moved
/// into place once all have arrived: nothing of an upload that fails or goes over
/// `files.max_upload_mb` is left behind.
#[utoipa::path(post, path = "/api/files/upload", tag = "files", params(UploadQuery),
    request_body(content = UploadForm, content_type = "multipart/form-data", description = "one or more file parts"),
    responses((status = 201, body = Vec<Uploaded>), WorkspaceErrors,
        (status = 400, description = "not a path inside the workspace, not multipart, cut short, or no part with a file name", body = ErrorBody),
        (status = 409, description = "exists and `replace` is false, or the folder is a file", body = ErrorBody),
        (status = 413, description = "over `files.max_upload_mb`", body = ErrorBody),
        (status = 507, description = "over the storage quota, or the disk is full", body = ErrorBody)))]
async fn upload(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Query(query): Query<UploadQuery>,
    Multipart(mut multipart): Multipart,
) -> AppResult<(StatusCode, Json<Vec<Uploaded>>)> {
    use tokio::io::AsyncWriteExt;
    let folder = parse(&query.path)?;
    let limit = state.config.files.max_upload_mb * 1024 * 1024;
    let broken = |e: axum::extract::multipart::MultipartError| {
        AppError::BadRequest(format!(
            "the upload was cut short or is not valid multipart: {e}"
        ))
    };
    let mut total = 0u64;
    let mut uploaded = Vec::new();
    // Files are moved into place only once every part has arrived, so a failed upload of
    // several files leaves none of them.
    let mut pending_all = Vec::new();
    let replace = query.replace;
    let room = match quota_bytes(&state) {
        Some(quota) => {
            let used = in_jail(&state, auth.user.id, |jail| jail.usage()).await?;
            Some((quota.saturating_sub(used), used))
        }
        None => None,
    };
    while let Some(mut field) = multipart.next_field().await.map_err(broken)? {
        let Some(name) = field.file_name().map(str::to_owned) else {
            continue;
        };
        let target = folder.clone();
        let part_name = name.clone();
        let (file, pending) = in_jail(&state, auth.user.id, move |jail| {
            jail.begin_upload(&target, &part_name, replace)
        })
        .await?;
        let mut file = tokio::fs::File::from_std(file);
        let mut size = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(broken)? {
            size += chunk.len() as u64;
            total += chunk.len() as u64;
            if total > limit {
                return Err(AppError::PayloadTooLarge(format!(
                    "uploads are limited to {} MiB; nothing was kept",
                    state.config.files.max_upload_mb
                )));
            }
            if let Some((room, used)) = room
                && total > room
            {
                return Err(quota_error(&state, used));
            }
            file.write_all(&chunk).await.map_err(anyhow::Error::from)?;
        }
        file.sync_all().await.map_err(anyhow::Error::from)?;
        drop(file);
        uploaded.push(Uploaded {
            path: pending.path().to_owned(),
            size,
        });
        pending_all.push(pending);
    }
    let identity = state.isolation.ensure(auth.user.id).await?;
    crate::isolation::blocking_as(identity, move |_| {
        crate::files::jail::commit_uploads(pending_all, replace)
    })
    .await??;
    if uploaded.is_empty() {
        return Err(AppError::BadRequest(
            "no file parts: send multipart/form-data with a file name on each part".into(),
        ));
    }
    for file in &uploaded {
        audit_change(
            &state,
            &auth,
            &client,
            "file.upload",
            serde_json::json!({ "path": file.path, "size": file.size }),
        )
        .await;
    }
    Ok((StatusCode::CREATED, Json(uploaded)))
}

/// A file's bytes, streamed, with `Range` support (one range) for resuming.
#[utoipa::path(get, path = "/api/files/download", tag = "files", params(PathQuery),
    responses((status = 200, description = "the whole file", body = inline(FileBytes), content_type = "application/octet-stream"),
        (status = 206, description = "the requested range", body = inline(FileBytes), content_type = "application/octet-stream"),
        WorkspaceErrors, (status = 416, description = "range outside the file", body = ErrorBody)))]
async fn download(
    State(state): State<AppState>,
    auth: AuthUser,
    headers: HeaderMap,
    Query(query): Query<PathQuery>,
) -> AppResult<Response> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let path = parse(&query.path)?;
    let file = in_jail(&state, auth.user.id, move |jail| jail.open_download(&path)).await?;
    let size = file.size;
    let mut response_headers = HeaderMap::new();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(value) = header::HeaderValue::from_str(&value) {
            response_headers.insert(name, value);
        }
    };
    set(header::CONTENT_TYPE, "application/octet-stream".into());
    set(header::CONTENT_DISPOSITION, content_disposition(&file.name));
    set(header::ACCEPT_RANGES, "bytes".into());
    set(header::ETAG, format!("W/\"{size:x}-{:x}\"", file.modified));
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, size));
    let mut stream = tokio::fs::File::from_std(file.file);
    let (status, start, length) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Some((start, end))) => {
            set(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Some(None) => {
            set(header::CONTENT_RANGE, format!("bytes */{size}"));
            let body = serde_json::json!({ "error": { "code": "range_not_satisfiable",
                "message": format!("the file has {size} bytes; ask for a range inside it") } });
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                response_headers,
                axum::Json(body),
            )
                .into_response());
        }
    };
    if start > 0 {
        stream
            .seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(anyhow::Error::from)?;
    }
    set(header::CONTENT_LENGTH, length.to_string());
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        stream.take(length),
        64 * 1024,
    ));
    Ok((status, response_headers, body).into_response())
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` within `size`; `None` when it cannot be served.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?.trim();
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (start, end) = if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        if suffix == 0 {
            return None;
        }
        (size.saturating_sub(suffix), size - 1)
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            size - 1
        } else {
            last.parse::<u64>().ok()?.min(size - 1)
        };
        (start, end)
    };
    (start <= end && start < size).then_some((start, end))
}

/// `attachment` with an ASCII fallback and the exact name in RFC 5987 form.
fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_within_the_file() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-1000", 100), Some((50, 99)));
        for bad in [
            "bytes=100-",
            "bytes=5-2",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=-0",
            "bytes=x-",
        ] {
            assert_eq!(parse_range(bad, 100), None, "{bad}");
        }
    }

    #[test]
    fn download_names_survive_any_characters() {
        assert_eq!(
            content_disposition("r\u{e9}sum\u{e9} \"v2\".pdf"),
            "attachment; filename=\"r_sum_ _v2_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf"
        );
    }
}
