//! `/api/push`: the VAPID key, the caller's subscribed devices, preferences and muted instances,
//! and `POST /api/push/act`, which a notification's action calls with its token (no session).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::sender::{self, SubscriptionJson};
use super::store::{self, Preferences, SubscriptionInfo};
use super::tokens::{self, Refusal};
use crate::auth::extract::AuthUser;
use crate::error::{AppError, AppResult, ErrorBody, ErrorDetail, Json, JsonRejections, Path};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(push_config))
        .routes(routes!(list_subscriptions, subscribe))
        .routes(routes!(unsubscribe))
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(list_mutes))
        .routes(routes!(mute, unmute))
        .routes(routes!(act))
}

#[derive(Serialize, ToSchema)]
pub struct PushInfo {
    /// Whether this server sends notifications (an admin set `push.subject`).
    pub enabled: bool,
    /// The VAPID public key for `PushManager.subscribe({applicationServerKey})`, base64url.
    pub public_key: String,
}

/// Whether push is on, and the key to subscribe with.
#[utoipa::path(get, path = "/api/push/config", tag = "push",
    responses((status = 200, body = PushInfo)))]
async fn push_config(State(state): State<AppState>, _auth: AuthUser) -> Json<PushInfo> {
    Json(PushInfo {
        enabled: state.push.enabled(),
        public_key: state.push.public_key().to_owned(),
    })
}

/// The caller's subscribed devices.
#[utoipa::path(get, path = "/api/push/subscriptions", tag = "push",
    responses((status = 200, body = Vec<SubscriptionInfo>)))]
async fn list_subscriptions(
    State(state): State<AppState>,
    auth: AuthUser,
) -> AppResult<Json<Vec<SubscriptionInfo>>> {
    Ok(Json(store::list(&state.db, auth.user.id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// `PushSubscription.toJSON()`; the endpoint must be a known push service's.
    pub subscription: SubscriptionJson,
    /// What to call this device; by default it is named from its `User-Agent`.
    #[schema(max_length = 80, example = "Pixel 8")]
    pub device: Option<String>,
}

/// Registers this device for notifications (again: the same endpoint replaces its entry).
#[utoipa::path(post, path = "/api/push/subscriptions", tag = "push", request_body = NewSubscription,
    responses((status = 201, body = SubscriptionInfo), JsonRejections,
        (status = 400, description = "not a usable subscription: keys of the wrong size, or an endpoint that is not a known push service", body = ErrorBody),
        (status = 503, description = "this server does not send notifications (`push.subject` is not set)", body = ErrorBody)))]
async fn subscribe(
    State(state): State<AppState>,
    auth: AuthUser,
    headers: HeaderMap,
    Json(body): Json<NewSubscription>,
) -> AppResult<(StatusCode, Json<SubscriptionInfo>)> {
    if !state.push.enabled() {
        return Err(AppError::Unavailable(
            "this server does not send notifications; an admin must set push.subject".into(),
        ));
    }
    let target = sender::validate(&body.subscription, &state.config.push.allowed_hosts)
        .map_err(AppError::BadRequest)?;
    let device = match body.device.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => {
            name.chars().filter(|c| !c.is_control()).take(80).collect()
        }
        _ => super::device_name(
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        ),
    };
    let info = store::upsert(&state.db, auth.user.id, &device, &target).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Stops notifications to one of the caller's devices.
#[utoipa::path(delete, path = "/api/push/subscriptions/{id}", tag = "push",
    params(("id" = i64, Path, description = "the subscription's id")),
    responses((status = 204, description = "revoked"),
        (status = 404, description = "no such subscription of yours", body = ErrorBody)))]
async fn unsubscribe(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    if store::delete(&state.db, auth.user.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("subscription"))
    }
}

/// When notifications come.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushPreferences {
    /// Seconds an agent waits for input before a notification says so (0 to a day).
    #[schema(minimum = 0, maximum = 86400, example = 60)]
    pub waiting_delay_secs: u32,
    /// No agent notifications in this span of the day (sign-in notices still come).
    pub quiet_hours: Option<QuietHours>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM` on the device's clock.
    #[schema(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "22:00")]
    pub start: String,
    #[schema(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "07:00")]
    pub end: String,
    /// The device's offset from UTC in minutes, east positive (`-new Date().getTimezoneOffset()`).
    #[schema(minimum = -840, maximum = 840, example = 60)]
    pub utc_offset_minutes: i32,
}

fn minutes(text: &str) -> Option<i64> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    (h.to_string().len() <= 2 && m < 60 && (0..24).contains(&h) && text.len() == 5)
        .then_some(h * 60 + m)
}

fn hhmm(minutes: i64) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

impl From<Preferences> for PushPreferences {
    fn from(p: Preferences) -> Self {
        Self {
            waiting_delay_secs: p.waiting_delay_secs.clamp(0, 86400) as u32,
            quiet_hours: match (p.quiet_start, p.quiet_end) {
                (Some(start), Some(end)) => Some(QuietHours {
                    start: hhmm(start),
                    end: hhmm(end),
                    utc_offset_minutes: p.utc_offset_minutes as i32,
                }),
                _ => None,
            },
        }
    }
}

/// The caller's notification preferences.
#[utoipa::path(get, path = "/api/push/preferences", tag = "push",
    responses((status = 200, body = PushPreferences)))]
async fn get_preferences(
    State(state): State<AppState>,
    auth: AuthUser,
) -> AppResult<Json<PushPreferences>> {
    Ok(Json(
        store::preferences(&state.db, auth.user.id).await?.into(),
    ))
}

/// Sets the caller's notification preferences.
#[utoipa::path(put, path = "/api/push/preferences", tag = "push", request_body = PushPreferences,
    responses((status = 200, body = PushPreferences), JsonRejections))]
async fn put_preferences(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<PushPreferences>,
) -> AppResult<Json<PushPreferences>> {
    if body.waiting_delay_secs > 86400 {
        return Err(AppError::Unprocessable(
            "waiting_delay_secs must be at most 86400 (a day)".into(),
        ));
    }
    let (quiet_start, quiet_end, utc_offset_minutes) = match &body.quiet_hours {
        Some(q) => {
            let (Some(start), Some(end)) = (minutes(&q.start), minutes(&q.end)) else {
                return Err(AppError::Unprocessable(
                    "quiet hours are HH:MM, such as 22:00".into(),
                ));
            };
            if !(-840..=840).contains(&q.utc_offset_minutes) {
                return Err(AppError::Unprocessable(
                    "utc_offset_minutes must be between -840 and 840".into(),
                ));
            }
            (Some(start), Some(end), i64::from(q.utc_offset_minutes))
        }
        None => (None, None, 0),
    };
    let prefs = Preferences {
        waiting_delay_secs: i64::from(body.waiting_delay_secs),
        quiet_start,
        quiet_end,
        utc_offset_minutes,
    };
    store::set_preferences(&state.db, auth.user.id, &prefs).await?;
    Ok(Json(prefs.into()))
}

/// The caller's instances whose notifications are muted.
#[utoipa::path(get, path = "/api/push/mutes", tag = "push",
    responses((status = 200, body = Vec<String>, description = "instance ids")))]
async fn list_mutes(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Vec<String>>> {
    Ok(Json(store::mutes(&state.db, auth.user.id).await?))
}

async fn own_instance(state: &AppState, auth: &AuthUser, id: &str) -> AppResult<()> {
    match crate::instances::store::get(&state.db, id).await? {
        Some(instance) if instance.owner == auth.user.id => Ok(()),
        _ => Err(AppError::not_found("instance")),
    }
}

/// Mutes one of the caller's instances: no notifications about it.
#[utoipa::path(put, path = "/api/push/mutes/{id}", tag = "push",
    params(("id" = String, Path, description = "the instance's id")),
    responses((status = 204, description = "muted"),
        (status = 404, description = "no such instance of yours", body = ErrorBody)))]
async fn mute(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    own_instance(&state, &auth, &id).await?;
    store::set_muted(&state.db, auth.user.id, &id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unmutes one of the caller's instances.
#[utoipa::path(delete, path = "/api/push/mutes/{id}", tag = "push",
    params(("id" = String, Path, description = "the instance's id")),
    responses((status = 204, description = "not muted (any more)"),
        (status = 404, description = "no such instance of yours", body = ErrorBody)))]
async fn unmute(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    own_instance(&state, &auth, &id).await?;
    store::set_muted(&state.db, auth.user.id, &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActRequest {
    /// The instance the notification was about.
    #[schema(example = "k3j9x2")]
    pub instance: String,
    /// The notification's action token.
    #[schema(example = "not-a-real-token")]
    pub token: String,
    /// One of the question's choice ids.
    #[schema(example = "allow")]
    pub choice: String,
}

/// Why an action was not carried out.
#[derive(Debug)]
pub enum ActError {
    Refused(Refusal),
    /// The question is the monitor's words alone, not a dialog pocketdev read: nothing to
    /// answer it with.
    NotAvailable,
    App(AppError),
}

impl IntoResponse for ActError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::Refused(Refusal::Unknown) => (
                StatusCode::FORBIDDEN,
                "invalid_token",
                "this notification's action is not valid",
            ),
            Self::Refused(Refusal::Used) => (
                StatusCode::CONFLICT,
                "token_used",
                "this notification was already answered",
            ),
            Self::Refused(Refusal::Expired) => (
                StatusCode::GONE,
                "token_expired",
                "this question was answered elsewhere or is too old; open the app",
            ),
            Self::Refused(Refusal::UnknownChoice) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_choice",
                "that is not one of the question's choices",
            ),
            Self::NotAvailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not_available",
                "this question cannot be answered from a notification; open the app to answer",
            ),
            Self::App(err) => return err.into_response(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        };
        (status, axum::Json(body)).into_response()
    }
}

/// Answers an agent's question from a notification's action, with the token it carried.
///
/// No session is needed: the token is single-use, short-lived and bound to the instance.
#[utoipa::path(post, path = "/api/push/act", tag = "push", request_body = ActRequest, security(()),
    responses((status = 200, body = super::Answered), JsonRejections,
        (status = 403, description = "`invalid_token`: no such token for this instance, or its owner is disabled", body = ErrorBody),
        (status = 409, description = "`token_used`: it was used already", body = ErrorBody),
        (status = 410, description = "`token_expired`: too old, or the question was answered elsewhere", body = ErrorBody),
        (status = 422, description = "`unknown_choice`, or the body's shape", body = ErrorBody),
        (status = 503, description = "`not_available`: the question is not a dialog pocketdev read, so it cannot be answered from here", body = ErrorBody)))]
async fn act(
    State(state): State<AppState>,
    Json(body): Json<ActRequest>,
) -> Result<Json<super::Answered>, ActError> {
    let granted = tokens::consume(&state.db, &body.token, &body.instance, &body.choice)
        .await?
        .map_err(ActError::Refused)?;
    let owner = crate::users::store::by_id(&state.db, granted.user_id).await?;
    let Some(owner) = owner.filter(|u| !u.disabled) else {
        return Err(ActError::Refused(Refusal::Unknown));
    };
    let answered = super::answer(
        &state,
        &owner,
        &granted.instance_id,
        granted.approval_id.as_deref(),
        &body.choice,
    )
    .await?;
    Ok(Json(answered))
}
