//! Rate limits backed by `governor` (GCRA): sign-in attempts per IP, API calls per user.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::extract::bearer_or_cookie;
use crate::config::RateLimitConfig;
use crate::error::AppError;
use crate::http::client::ClientInfo;
use crate::state::AppState;

/// Claude Code reports before and after every tool call: a busy agent sends a few a second.
pub const HOOK_REPORTS_PER_MINUTE: u32 = 600;

/// A hook report (`/api/instances/{id}/hooks`): limited per instance by its handler instead.
fn is_hook_report(path: &str) -> bool {
    path.ends_with("/hooks") && path.contains("/api/instances/")
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ApiKey {
    User(i64),
    Ip(IpAddr),
}

pub struct RateLimits {
    pub login: DefaultKeyedRateLimiter<IpAddr>,
    pub api: DefaultKeyedRateLimiter<ApiKey>,
    /// Refused sign-ins are audited once a minute per address, so a flood of them cannot fill
    /// the audit log.
    pub refusals_audited: DefaultKeyedRateLimiter<IpAddr>,
    /// Hook reports per instance: agents share loopback, so an address says nothing of who
    /// reports, and one agent must not spend the others' allowance.
    pub hooks: DefaultKeyedRateLimiter<String>,
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            login: RateLimiter::keyed(per_minute(config.login_per_minute)),
            api: RateLimiter::keyed(per_minute(config.api_per_minute)),
            refusals_audited: RateLimiter::keyed(per_minute(1)),
            hooks: RateLimiter::keyed(per_minute(HOOK_REPORTS_PER_MINUTE)),
        }
    }

    /// Forgets keys whose allowance is full again, so memory stays bounded.
    pub fn prune(&self) {
        self.login.retain_recent();
        self.api.retain_recent();
        self.refusals_audited.retain_recent();
        self.hooks.retain_recent();
    }
}

pub fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), AppError> {
    limiter
        .check_key(key)
        .map_err(|not_until| AppError::TooManyRequests {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
}

/// Middleware for the API: per user when a valid token is presented, else per client IP.
pub async fn api_middleware(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if is_hook_report(request.uri().path()) {
        return next.run(request).await;
    }
    let user = bearer_or_cookie(request.headers())
        .and_then(|token| state.tokens.verify(&token))
        .and_then(|claims| claims.user_id());
    let key = match user {
        Some(id) => ApiKey::User(id),
        None => ApiKey::Ip(
            request
                .extensions()
                .get::<ClientInfo>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.ip),
        ),
    };
    match check(&state.rate_limits.api, &key) {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}
