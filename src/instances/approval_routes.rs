//! `POST /api/instances/{id}/approvals/{approval_id}`: answers an agent's permission dialog with
//! one of its choices (see [`super::approvals`]).

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::approvals::{Answered, AnsweredBy};
use crate::auth::extract::AuthUser;
use crate::error::{AppResult, ErrorBody, Json, JsonRejections, Path};
use crate::http::client::ClientInfo;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(answer))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The id of one of `pending_approval.choices`.
    #[schema(example = "1", min_length = 1, max_length = 8)]
    pub choice: String,
}

/// An answer to a suspended agent brings it back (within its owner's budgets); its question
/// went with its process, so the answer that follows is `gone` and the person sees it anew.
pub(crate) async fn resume_for_an_answer(
    state: &AppState,
    user: &crate::users::User,
    id: &str,
) -> AppResult<()> {
    let suspended = crate::instances::store::get(&state.db, id)
        .await?
        .filter(|i| i.owner == user.id || user.is_admin())
        .filter(|i| i.state == crate::instances::store::State::Suspended);
    if let Some(instance) = suspended {
        super::routes::resume_checked(state, &instance, None).await?;
    }
    Ok(())
}

/// Answers the permission dialog `approval_id` (`pending_approval.id` of the instance) with one
/// of its choices. The screen is read again first: when no dialog is up any more the answer is
/// `gone`, when another one is, `changed` — nothing is sent then. Otherwise the choice's keys
/// are sent (once the dialog has been up long enough for the agent to take them) and the
/// dialog watched until it goes: `done`, or `still_open` after a few seconds. A suspended agent
/// is resumed first (and answers `gone`: its question went with its process). Audited.
#[utoipa::path(post, path = "/api/instances/{id}/approvals/{approval_id}", tag = "instances",
    request_body = Answer,
    params(("id" = String, Path, description = "instance id"),
        ("approval_id" = String, Path, description = "`pending_approval.id`")),
    responses((status = 200, body = Answered), JsonRejections, (status = 404, body = ErrorBody),
        (status = 409, description = "not running", body = ErrorBody),
        (status = 422, description = "the body's shape, a malformed approval id, or a choice the dialog does not have", body = ErrorBody),
        (status = 503, description = "its tmux server does not answer", body = ErrorBody)))]
async fn answer(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Path((id, approval_id)): Path<(String, String)>,
    Json(req): Json<Answer>,
) -> AppResult<Json<Answered>> {
    resume_for_an_answer(&state, &auth.user, &id).await?;
    let by = AnsweredBy {
        user: &auth.user,
        ip: Some(client.ip),
        via: "api",
    };
    let answered = state
        .instances
        .answer_approval(&by, &id, &approval_id, &req.choice)
        .await?;
    Ok(Json(answered))
}
