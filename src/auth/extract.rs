//! Extractors: `AuthUser` (signed in), `MaybeAuthUser`, `AdminUser`.
//!
//! A request is authenticated by `Authorization: Bearer <access token>` (API clients) or the
//! HttpOnly access cookie (the browser app). Every request re-checks the session and the account
//! in the database, so revoking a session or disabling an account takes effect at once.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;

use crate::error::AppError;
use crate::state::AppState;
use crate::users::User;

pub const ACCESS_COOKIE: &str = "pd_access";
pub const REFRESH_COOKIE: &str = "pd_refresh";

/// A signed-in, enabled user and the session the request belongs to.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub session_id: String,
}

/// `None` when no credential was sent; an invalid credential is still an error.
#[derive(Debug, Clone)]
pub struct MaybeAuthUser(pub Option<AuthUser>);

/// A signed-in admin; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct AdminUser(pub AuthUser);

/// The access token of a request: bearer header first, then the cookie.
pub fn bearer_or_cookie(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    CookieJar::from_headers(headers)
        .get(ACCESS_COOKIE)
        .map(|c| c.value().to_owned())
}

/// Resolves an access token to a live session of an enabled account.
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, AppError> {
    let invalid =
        || AppError::Unauthorized("your session has expired or is invalid; sign in again".into());
    let claims = state.tokens.verify(token).ok_or_else(invalid)?;
    let user_id = claims.user_id().ok_or_else(invalid)?;
    let user = crate::auth::store::session_user(&state.db, &claims.sid, user_id)
        .await?
        .ok_or_else(invalid)?;
    if user.disabled {
        return Err(AppError::Unauthorized("this account is disabled".into()));
    }
    Ok(AuthUser {
        user,
        session_id: claims.sid,
    })
}

impl<S> FromRequestParts<S> for MaybeAuthUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        match bearer_or_cookie(&parts.headers) {
            Some(token) => Ok(Self(Some(authenticate(&state, &token).await?))),
            None => Ok(Self(None)),
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        MaybeAuthUser::from_request_parts(parts, state)
            .await?
            .0
            .ok_or_else(AppError::unauthorized)
    }
}

impl<S> FromRequestParts<S> for AdminUser
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.user.is_admin() {
            Ok(Self(user))
        } else {
            Err(AppError::Forbidden("only admins may do this".into()))
        }
    }
}
