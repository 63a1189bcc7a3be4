//! Sign-in endpoints: register, login, refresh, logout, me, password, public auth config, and
//! the admins' invites (create, list, revoke).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{ACCESS_COOKIE, AdminUser, AuthUser, MaybeAuthUser, REFRESH_COOKIE};
use super::{password, store, tokens};
use crate::audit::{self, Event};
use crate::config::Registration;
use crate::error::{AppError, AppResult, ErrorBody, Json, JsonRejections, Path};
use crate::http::client::ClientInfo;
use crate::http::rate_limit;
use crate::state::AppState;
use crate::users::{self, Role, User};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth_config))
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(create_invite, list_invites))
        .routes(routes!(revoke_invite))
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// 2 to 32 letters, digits, `-` and `_`, starting with a letter; stored in lower case.
    #[schema(pattern = r"^[A-Za-z][A-Za-z0-9_-]{1,31}$", example = "kim")]
    pub username: String,
    /// At least `auth.min_password_length` characters, at most 1024 bytes.
    #[schema(max_length = 1024, example = "correct-horse-battery")]
    pub password: String,
    /// Required when the registration policy is `invite`.
    pub invite: Option<String>,
}

#[derive(Deserialize, Default, ToSchema)]
pub struct RefreshRequest {
    /// API clients send the refresh token here; the browser app relies on its cookie.
    pub refresh_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    pub current_password: String,
    /// At least `auth.min_password_length` characters, at most 1024 bytes.
    #[schema(max_length = 1024, example = "correct-horse-battery")]
    pub new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
    pub user: Me,
}

#[derive(Serialize, ToSchema)]
pub struct AuthConfigResponse {
    pub registration: Registration,
    pub min_password_length: usize,
    pub version: &'static str,
}

#[derive(Deserialize, Default, ToSchema)]
pub struct InviteRequest {
    /// Role of the account the invite creates (default `user`).
    pub role: Option<Role>,
    /// Hours until the code expires (default from configuration, at most 720).
    #[schema(minimum = 1, maximum = 720)]
    pub expires_in_hours: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct InviteResponse {
    pub id: i64,
    /// Shown once; only its hash is stored.
    pub code: String,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

/// A body that may be left out: nothing, `null` or a JSON object (a client library that sends
/// `null` for "no body" is as welcome as one that sends nothing). Anything else is refused with
/// what `refuse` makes of the reason.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    refuse: impl Fn(String) -> AppError,
) -> AppResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Null) => Ok(T::default()),
        Ok(object @ serde_json::Value::Object(_)) => {
            serde_json::from_value(object).map_err(|e| refuse(e.to_string()))
        }
        Ok(_) => Err(refuse("expected a JSON object, `null` or no body".into())),
        Err(e) => Err(refuse(e.to_string())),
    }
}

fn cookie(
    state: &AppState,
    client: ClientInfo,
    name: &'static str,
    value: String,
    max_age_secs: u64,
) -> Cookie<'static> {
    let path = if name == REFRESH_COOKIE {
        format!("{}api/auth/", state.config.base_path)
    } else {
        state.config.base_path.clone()
    };
    Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .secure(client.https)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(max_age_secs as i64))
        .build()
}

fn clear_cookies(state: &AppState, jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build(ACCESS_COOKIE).path(state.config.base_path.clone()))
        .remove(Cookie::build(REFRESH_COOKIE).path(format!("{}api/auth/", state.config.base_path)))
}

/// Issues an access token and a refresh token for `session_id`, as JSON and as cookies.
async fn issue_tokens(
    state: &AppState,
    client: ClientInfo,
    jar: CookieJar,
    user: User,
    session_id: &str,
) -> AppResult<(CookieJar, TokenResponse)> {
    let auth = &state.config.auth;
    let refresh_token = tokens::random_token(32);
    let expires_at =
        OffsetDateTime::now_utc() + time::Duration::seconds(auth.refresh_token_ttl_secs as i64);
    store::insert_refresh_token(
        &state.db,
        &tokens::hash_token(&refresh_token),
        session_id,
        expires_at,
    )
    .await?;
    let (access_token, _) = state.tokens.issue(user.id, session_id)?;
    let jar = jar
        .add(cookie(
            state,
            client,
            ACCESS_COOKIE,
            access_token.clone(),
            auth.access_token_ttl_secs,
        ))
        .add(cookie(
            state,
            client,
            REFRESH_COOKIE,
            refresh_token.clone(),
            auth.refresh_token_ttl_secs,
        ));
    let response = TokenResponse {
        access_token,
        token_type: "bearer",
        expires_in: auth.access_token_ttl_secs,
        refresh_token,
        user: Me::new(state, user),
    };
    Ok((jar, response))
}

/// Starts a new session (a signed-in device) for `user`.
async fn sign_in(
    state: &AppState,
    client: ClientInfo,
    headers: &HeaderMap,
    jar: CookieJar,
    user: User,
) -> AppResult<(CookieJar, TokenResponse)> {
    let expires_at = OffsetDateTime::now_utc()
        + time::Duration::seconds(state.config.auth.refresh_token_ttl_secs as i64);
    let session_id = store::create_session(
        &state.db,
        user.id,
        expires_at,
        client.ip,
        user_agent(headers),
    )
    .await?;
    users::store::touch_login(&state.db, user.id).await?;
    crate::push::signed_in(
        state,
        user.id,
        &user.username,
        client.ip,
        user_agent(headers),
    );
    issue_tokens(state, client, jar, user, &session_id).await
}

/// Sign-in style attempts are limited per client IP; a refusal is audited.
async fn check_login_rate(state: &AppState, client: ClientInfo, attempted: &str) -> AppResult<()> {
    let limited = rate_limit::check(&state.rate_limits.login, &client.ip);
    if limited.is_err()
        && rate_limit::check(&state.rate_limits.refusals_audited, &client.ip).is_ok()
    {
        tracing::warn!(target: "pocketdev::auth", ip = %client.ip, username = %attempted, "sign-in rate limited");
        audit::record(
            &state.db,
            Event {
                username: Some(attempted),
                action: "login.rate_limited",
                ip: Some(client.ip),
                ..Default::default()
            },
        )
        .await;
    }
    limited
}

/// What the sign-in page needs to know.
#[utoipa::path(get, path = "/api/auth/config", tag = "auth", security(()), responses((status = 200, body = AuthConfigResponse)))]
async fn auth_config(State(state): State<AppState>) -> Json<AuthConfigResponse> {
    Json(AuthConfigResponse {
        registration: state.config.auth.registration,
        min_password_length: state.config.auth.min_password_length,
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Creates an account when the registration policy allows it, and signs it in.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest, security(()),
    responses((status = 201, body = TokenResponse), JsonRejections,
        (status = 403, description = "registration closed or invite invalid", body = ErrorBody),
        (status = 409, description = "username taken", body = ErrorBody),
        (status = 422, description = "the body's shape, or a username or password against the rules", body = ErrorBody),
        (status = 429, description = "too many attempts from this address", body = ErrorBody),
        (status = 503, description = "the account could not be provisioned", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<RegisterRequest>,
) -> AppResult<impl IntoResponse> {
    check_login_rate(
        &state,
        client,
        &req.username.chars().take(64).collect::<String>(),
    )
    .await?;
    let policy = state.config.auth.registration;
    // An invite is an admin's decision: it opens an account under `closed` too, which only
    // keeps the sign-in page from offering registration to everyone.
    let invite_hash = match (policy, req.invite.as_deref().map(str::trim)) {
        (Registration::Closed, None | Some("")) => {
            return Err(AppError::Forbidden(
                "registration is closed on this server; ask an admin for an account or an invite"
                    .into(),
            ));
        }
        (Registration::Invite, None | Some("")) => {
            return Err(AppError::Forbidden(
                "registration on this server needs an invite code".into(),
            ));
        }
        (Registration::Closed | Registration::Invite, Some(code)) => Some(tokens::hash_token(code)),
        (Registration::Open, _) => None,
    };
    // Check the name and password before spending an invite on a request that must fail.
    let username = users::normalize_username(&req.username)?;
    users::check_password(&req.password, state.config.auth.min_password_length)?;
    let role = match &invite_hash {
        Some(hash) => store::claim_invite(&state.db, hash).await?.ok_or_else(|| {
            AppError::Forbidden("this invite code is invalid, already used or expired".into())
        })?,
        None => Role::User,
    };
    let min_len = state.config.auth.min_password_length;
    let user = match users::create_account(
        &state.db,
        &state.layout,
        &username,
        &req.password,
        role,
        min_len,
    )
    .await
    {
        Ok(user) => user,
        Err(err) => {
            if let Some(hash) = &invite_hash {
                store::release_invite(&state.db, hash).await?;
            }
            return Err(err);
        }
    };
    if let Some(hash) = &invite_hash {
        store::mark_invite_used_by(&state.db, hash, user.id).await?;
    }
    state.isolation.ensure(user.id).await?;
    audit::record(
        &state.db,
        Event {
            user_id: Some(user.id),
            username: Some(&user.username),
            action: "user.register",
            ip: Some(client.ip),
            detail: Some(serde_json::json!({ "invite": invite_hash.is_some(), "role": role })),
            ..Default::default()
        },
    )
    .await;
    let (jar, body) = sign_in(&state, client, &headers, jar, user).await?;
    Ok((StatusCode::CREATED, jar, Json(body)))
}

/// Signs in with a username and password.
///
/// Returns the tokens for API clients and sets the same session as HttpOnly cookies for the browser.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest, security(()),
    responses((status = 200, body = TokenResponse), JsonRejections,
        (status = 401, description = "wrong username or password", body = ErrorBody),
        (status = 403, description = "account disabled", body = ErrorBody), (status = 429, description = "too many attempts", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<LoginRequest>,
) -> AppResult<(CookieJar, Json<TokenResponse>)> {
    let attempted = req.username.trim().to_ascii_lowercase();
    let attempted: String = attempted.chars().take(64).collect();
    check_login_rate(&state, client, &attempted).await?;
    let found = users::store::credentials(&state.db, &attempted).await?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let password_ok = password::verify(req.password, hash).await;
    let Some(user) = user.filter(|_| password_ok) else {
        // A fixed format, so log-based tools such as fail2ban can match it; the username is
        // quoted and escaped (Debug), so it cannot forge a line or an address.
        tracing::warn!(target: "pocketdev::auth", ip = %client.ip, username = ?attempted, "sign-in failed");
        state.metrics.sign_in_failures.inc();
        audit::record(
            &state.db,
            Event {
                username: Some(&attempted),
                action: "login.failure",
                ip: Some(client.ip),
                ..Default::default()
            },
        )
        .await;
        return Err(AppError::Unauthorized("wrong username or password".into()));
    };
    if user.disabled {
        return Err(AppError::Forbidden(
            "this account is disabled; ask an admin".into(),
        ));
    }
    audit::record(
        &state.db,
        Event {
            user_id: Some(user.id),
            username: Some(&user.username),
            action: "login.success",
            ip: Some(client.ip),
            ..Default::default()
        },
    )
    .await;
    let (jar, body) = sign_in(&state, client, &headers, jar, user).await?;
    Ok((jar, Json(body)))
}

/// Exchanges a refresh token for new tokens (rotation). Presenting an already-exchanged token
/// revokes the whole session, since it means the token was copied.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", security(()),
    request_body(content = Option<RefreshRequest>, description = "optional: without it (or with `null`), the refresh cookie"),
    responses((status = 200, body = TokenResponse),
        (status = 400, description = "the body is neither nothing, `null` nor a `RefreshRequest`", body = ErrorBody),
        (status = 401, description = "no refresh token, or an expired, revoked or reused one", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    client: ClientInfo,
    jar: CookieJar,
    body: axum::body::Bytes,
) -> AppResult<(CookieJar, Json<TokenResponse>)> {
    let req: RefreshRequest = optional_body(&body, |e| {
        AppError::BadRequest(format!("invalid JSON body: {e}"))
    })?;
    let token = req
        .refresh_token
        .or_else(|| jar.get(REFRESH_COOKIE).map(|c| c.value().to_owned()))
        .ok_or_else(AppError::unauthorized)?;
    let expired = || AppError::Unauthorized("your session has expired; sign in again".into());
    let hash = tokens::hash_token(&token);
    let found = store::find_refresh_token(&state.db, &hash)
        .await?
        .ok_or_else(expired)?;
    let reused = found.used_at.is_some() || !store::consume_refresh_token(&state.db, &hash).await?;
    if reused {
        store::revoke_session(&state.db, &found.session_id).await?;
        state
            .signouts
            .announce(crate::auth::signouts::SignOut::Session(
                found.session_id.clone(),
            ));
        tracing::warn!(user_id = found.user_id, ip = %client.ip, "refresh token reused; session revoked");
        audit::record(
            &state.db,
            Event {
                user_id: Some(found.user_id),
                action: "token.reuse",
                target: Some(found.session_id),
                ip: Some(client.ip),
                ..Default::default()
            },
        )
        .await;
        return Err(expired());
    }
    if found.revoked_at.is_some() || found.expires_at <= OffsetDateTime::now_utc() {
        return Err(expired());
    }
    let user = users::store::by_id(&state.db, found.user_id)
        .await?
        .ok_or_else(expired)?;
    if user.disabled {
        return Err(AppError::Unauthorized("this account is disabled".into()));
    }
    let (jar, body) = issue_tokens(&state, client, jar, user, &found.session_id).await?;
    Ok((jar, Json(body)))
}

/// Ends the current session and clears the cookies.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security((), ("bearer" = []), ("cookie" = [])),
    responses((status = 204), (status = 401, description = "a credential was sent and is not valid", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    client: ClientInfo,
    jar: CookieJar,
    MaybeAuthUser(auth): MaybeAuthUser,
) -> AppResult<(StatusCode, CookieJar)> {
    let session = match &auth {
        Some(auth) => Some(auth.session_id.clone()),
        None => match jar.get(REFRESH_COOKIE) {
            Some(c) => store::find_refresh_token(&state.db, &tokens::hash_token(c.value()))
                .await?
                .map(|f| f.session_id),
            None => None,
        },
    };
    if let Some(session) = session {
        store::revoke_session(&state.db, &session).await?;
        state
            .signouts
            .announce(crate::auth::signouts::SignOut::Session(session));
    }
    if let Some(auth) = auth {
        audit::record(
            &state.db,
            Event {
                user_id: Some(auth.user.id),
                username: Some(&auth.user.username),
                action: "logout",
                ip: Some(client.ip),
                ..Default::default()
            },
        )
        .await;
    }
    Ok((StatusCode::NO_CONTENT, clear_cookies(&state, jar)))
}

/// The signed-in user, with the limits that apply to them.
#[derive(Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: User,
    /// How many instances this user may have running at once (`limits.max_per_user`); null
    /// when no per-user limit applies to them (admins, with `limits.admins_exempt`). The
    /// server's own limit (`limits.max_total`) and its memory can still refuse a start.
    pub max_instances: Option<u32>,
}

impl Me {
    fn new(state: &AppState, user: User) -> Self {
        Self {
            max_instances: state.config.limits.per_user(user.is_admin()),
            user,
        }
    }
}

/// The signed-in user. A 401 with the code `no_session` means the request carried neither an
/// access token nor a refresh cookie, so refreshing cannot help: the client has to sign in.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", responses((status = 200, body = Me),
    (status = 401, description = "not signed in: `no_session` without any credential or refresh cookie, else `unauthorized`", body = ErrorBody)))]
async fn me(
    State(state): State<AppState>,
    MaybeAuthUser(auth): MaybeAuthUser,
    jar: CookieJar,
) -> AppResult<Json<Me>> {
    let Some(auth) = auth else {
        return Err(if jar.get(REFRESH_COOKIE).is_some() {
            AppError::unauthorized()
        } else {
            AppError::NoSession
        });
    };
    Ok(Json(Me::new(&state, auth.user)))
}

/// Changes the caller's password and signs out their other devices.
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204), JsonRejections, (status = 401, body = ErrorBody), (status = 403, description = "current password wrong", body = ErrorBody),
        (status = 422, description = "the body's shape, or a new password against the rules", body = ErrorBody),
        (status = 429, description = "too many attempts from this address", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Json(req): Json<PasswordChange>,
) -> AppResult<StatusCode> {
    check_login_rate(&state, client, &auth.user.username).await?;
    let stored = users::store::password_hash(&state.db, auth.user.id).await?;
    if !password::verify(req.current_password.clone(), stored).await {
        return Err(AppError::Forbidden("the current password is wrong".into()));
    }
    users::check_password(&req.new_password, state.config.auth.min_password_length)?;
    let hash = password::hash(req.new_password).await?;
    users::store::set_password(&state.db, auth.user.id, &hash).await?;
    store::revoke_user_sessions(&state.db, auth.user.id, Some(&auth.session_id)).await?;
    state
        .signouts
        .announce(crate::auth::signouts::SignOut::Account {
            user_id: auth.user.id,
            except: Some(auth.session_id.clone()),
        });
    crate::auth::initial_password::forget_initial_password(&state.layout, &req.current_password);
    audit::record(
        &state.db,
        Event {
            user_id: Some(auth.user.id),
            username: Some(&auth.user.username),
            action: "password.change",
            ip: Some(client.ip),
            ..Default::default()
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates a single-use invite code (admins).
#[utoipa::path(post, path = "/api/admin/invites", tag = "admin",
    request_body(content = Option<InviteRequest>, description = "optional: without it (or with `null`), the defaults"),
    responses((status = 201, body = InviteResponse), (status = 403, description = "not an admin", body = ErrorBody),
        (status = 422, description = "the body is neither nothing, `null` nor an `InviteRequest`", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn create_invite(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminUser(admin): AdminUser,
    body: axum::body::Bytes,
) -> AppResult<(StatusCode, Json<InviteResponse>)> {
    let req: InviteRequest = optional_body(&body, |e| {
        AppError::Unprocessable(format!("invalid invite request: {e}"))
    })?;
    let hours = req
        .expires_in_hours
        .unwrap_or(state.config.auth.invite_ttl_hours);
    if !(1..=720).contains(&hours) {
        return Err(AppError::Unprocessable(
            "expires_in_hours must be between 1 and 720".into(),
        ));
    }
    let role = req.role.unwrap_or(Role::User);
    let code = tokens::random_token(12);
    let expires_at = OffsetDateTime::now_utc() + time::Duration::hours(hours as i64);
    let id = store::insert_invite(
        &state.db,
        &tokens::hash_token(&code),
        role,
        admin.user.id,
        expires_at,
    )
    .await?;
    audit::record(
        &state.db,
        Event {
            user_id: Some(admin.user.id),
            username: Some(&admin.user.username),
            action: "invite.create",
            target: Some(format!("invite:{id}")),
            ip: Some(client.ip),
            detail: Some(serde_json::json!({ "role": role, "expires_in_hours": hours })),
        },
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(InviteResponse {
            id,
            code,
            role,
            expires_at,
        }),
    ))
}

/// Invites on record (admins): pending, used and expired, never their codes.
#[utoipa::path(get, path = "/api/admin/invites", tag = "admin",
    responses((status = 200, body = Vec<store::Invite>), (status = 401, body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
async fn list_invites(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> AppResult<Json<Vec<store::Invite>>> {
    Ok(Json(store::list_invites(&state.db).await?))
}

/// Revokes an invite that was not redeemed yet (admins).
#[utoipa::path(delete, path = "/api/admin/invites/{id}", tag = "admin", params(("id" = i64, Path, description = "invite id")),
    responses((status = 204), (status = 403, description = "not an admin", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "already redeemed", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn revoke_invite(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminUser(admin): AdminUser,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    if !store::revoke_invite(&state.db, id).await? {
        return Err(match store::invite_by_id(&state.db, id).await? {
            Some(invite) => AppError::Conflict(format!(
                "this invite was already used{}; disable or delete that account instead",
                invite
                    .used_by
                    .map(|name| format!(" by {name}"))
                    .unwrap_or_default()
            )),
            None => AppError::not_found("invite"),
        });
    }
    audit::record(
        &state.db,
        Event {
            user_id: Some(admin.user.id),
            username: Some(&admin.user.username),
            action: "invite.revoke",
            target: Some(format!("invite:{id}")),
            ip: Some(client.ip),
            ..Default::default()
        },
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
