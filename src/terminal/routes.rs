//! `POST /api/instances/{id}/ticket` and `GET /ws/instance/{id}`: who may open an instance's
//! terminal is settled before the WebSocket upgrade, so refusals are plain JSON errors.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::protocol;
use super::viewer::{self, Watcher};
use crate::auth::extract::{AuthUser, authenticate, bearer_or_cookie};
use crate::error::{AppError, AppResult, ErrorBody, Json, Path, Query};
use crate::instances::routes::visible;
use crate::state::AppState;

/// What the ticket route needs of the application (the socket route authenticates and serves
/// the viewer with the whole state).
#[derive(Clone)]
pub struct TerminalState {
    pub db: crate::db::Db,
    pub terminals: std::sync::Arc<super::Terminals>,
}

/// Frames beyond this end the connection at once; between [`protocol::MAX_FRAME`] and this, a frame is
/// refused with an error message and the socket stays open.
const TRANSPORT_LIMIT: usize = 1024 * 1024;
/// Messages shorter than this go uncompressed: a keystroke's echo gains nothing from deflate.
const COMPRESS_FROM: usize = 256;

/// permessage-deflate without context takeover either way: each message is compressed alone,
/// with deflate state taken from `pool` for that message only, so an idle viewer costs a few
/// KiB rather than the ~370 KiB of a compressor of its own. Terminal output arrives in batches
/// of up to 32 KiB and snapshots whole, which compress well alone.
fn socket_options(pool: &yawc::DeflatePool) -> yawc::Options {
    yawc::Options::default()
        .with_low_latency_compression()
        .server_no_context_takeover()
        .client_no_context_takeover()
        .with_deflate_pool(pool.clone())
        .with_compression_threshold(COMPRESS_FROM)
        .with_limits(TRANSPORT_LIMIT, TRANSPORT_LIMIT)
        .with_read_buffer_capacity(8 * 1024)
        .with_utf8()
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_ticket))
        .routes(routes!(connect))
}

#[derive(Serialize, ToSchema)]
pub struct TicketResponse {
    /// Pass as `?ticket=` to `GET /ws/instance/{id}` once, within `expires_in` seconds.
    pub ticket: String,
    pub expires_in: u64,
}

/// A single-use ticket to open this instance's terminal socket within 30 seconds (or the
/// configured `terminal.ticket_ttl_secs`).
#[utoipa::path(post, path = "/api/instances/{id}/ticket", tag = "terminal",
    params(("id" = String, Path, description = "instance id")),
    responses((status = 201, body = TicketResponse), (status = 404, body = ErrorBody)))]
async fn issue_ticket(
    State(state): State<TerminalState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<(StatusCode, Json<TicketResponse>)> {
    let instance = visible(&state.db, &auth, &id).await?;
    let ticket = state
        .terminals
        .tickets
        .issue(auth.user.id, &auth.session_id, &instance.id);
    Ok((
        StatusCode::CREATED,
        Json(TicketResponse {
            ticket,
            expires_in: state.terminals.tickets.ttl().as_secs(),
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SocketQuery {
    /// A ticket from `POST /api/instances/{id}/ticket` (the browser app's way in).
    ticket: Option<String>,
    /// An access token, for API clients that cannot set headers on a WebSocket.
    token: Option<String>,
    /// The viewer's terminal size: the pane takes it before the first snapshot. Give both
    /// `cols` and `rows`, or neither (422). Columns: 1 to 1000 (`protocol::MAX_COLS`).
    #[param(minimum = 1, maximum = 1000)]
    cols: Option<i64>,
    /// Rows, with `cols`: 1 to 500 (`protocol::MAX_ROWS`).
    #[param(minimum = 1, maximum = 500)]
    rows: Option<i64>,
}

/// The instance's live terminal over a WebSocket; see docs/terminal-protocol.md. Signed in by
/// the session cookie, a ticket, `?token=` or a bearer header.
#[utoipa::path(get, path = "/ws/instance/{id}", tag = "terminal",
    params(("id" = String, Path, description = "instance id"), SocketQuery,
        // The WebSocket handshake (RFC 6455): without it, 400.
        ("Connection" = String, Header, description = "names `Upgrade`", example = "Upgrade",
            pattern = "(^|[ ,])[Uu][Pp][Gg][Rr][Aa][Dd][Ee]($|[ ,])"),
        ("Upgrade" = String, Header, example = "websocket", pattern = "^[Ww][Ee][Bb][Ss][Oo][Cc][Kk][Ee][Tt]$"),
        ("Sec-WebSocket-Version" = String, Header, example = "13", pattern = "^13$"),
        ("Sec-WebSocket-Key" = String, Header, description = "16 random bytes in base64",
            example = "dGhlIHNhbXBsZSBub25jZQ==", pattern = "^[A-Za-z0-9+/]{22}==$")),
    responses((status = 101, description = "switching to the terminal protocol"),
        (status = 400, description = "not a WebSocket request", body = ErrorBody),
        (status = 401, description = "no valid credential, or a bad, expired or used ticket", body = ErrorBody),
        (status = 403, description = "cross-site request", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, description = "bad size", body = ErrorBody)))]
async fn connect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<SocketQuery>,
    headers: HeaderMap,
    upgrade: Result<yawc::IncomingUpgrade, StatusCode>,
) -> AppResult<Response> {
    same_origin(&headers)?;
    let auth = authenticate_socket(&state, &query, &headers, &id).await?;
    let instance = visible(&state.db, &auth, &id).await?;
    let size = match (query.cols, query.rows) {
        (None, None) => None,
        (Some(cols), Some(rows)) => Some(protocol::size(cols, rows).map_err(|_| {
            AppError::Unprocessable(format!(
                "cols must be 1 to {} and rows 1 to {}",
                protocol::MAX_COLS,
                protocol::MAX_ROWS
            ))
        })?),
        _ => {
            return Err(AppError::Unprocessable(
                "give both cols and rows, or neither".into(),
            ));
        }
    };
    let upgrade = upgrade.map_err(|_| {
        AppError::BadRequest("this endpoint speaks WebSocket only (send Upgrade: websocket)".into())
    })?;
    let watcher = Watcher {
        user_id: auth.user.id,
        session_id: auth.session_id,
    };
    let (response, socket) = upgrade
        .upgrade(socket_options(&state.terminals.deflate))
        .map_err(|err| AppError::BadRequest(format!("cannot open a WebSocket: {err}")))?;
    tokio::spawn(async move {
        match socket.await {
            Ok(socket) => viewer::serve(socket, state, instance, watcher, size).await,
            Err(err) => tracing::debug!(error = %err, "a terminal socket failed to upgrade"),
        }
    });
    Ok(response.map(axum::body::Body::new))
}

/// A ticket, then `?token=`, then the bearer header or session cookie.
async fn authenticate_socket(
    state: &AppState,
    query: &SocketQuery,
    headers: &HeaderMap,
    instance_id: &str,
) -> AppResult<AuthUser> {
    if let Some(ticket) = &query.ticket {
        let holder = state
            .terminals
            .tickets
            .redeem(ticket, instance_id)
            .ok_or_else(|| {
                AppError::Unauthorized(
                    "this ticket is invalid, expired or already used; ask for a new one".into(),
                )
            })?;
        let user = crate::auth::store::session_user(&state.db, &holder.session_id, holder.user_id)
            .await?
            .filter(|u| !u.disabled)
            .ok_or_else(|| AppError::Unauthorized("you are signed out; sign in again".into()))?;
        return Ok(AuthUser {
            user,
            session_id: holder.session_id,
        });
    }
    match query.token.clone().or_else(|| bearer_or_cookie(headers)) {
        Some(token) => authenticate(state, &token).await,
        None => Err(AppError::unauthorized()),
    }
}

/// Browsers send `Origin` on WebSocket requests; one from another site is refused, so a page
/// elsewhere cannot open a socket with the user's cookie.
fn same_origin(headers: &HeaderMap) -> AppResult<()> {
    match crate::http::origin::from_this_site(headers) {
        Some(false) => Err(AppError::Forbidden(
            "a page from another site may not open this terminal".into(),
        )),
        _ => Ok(()),
    }
}
