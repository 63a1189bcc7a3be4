//! `/api/models` and `/api/instances/*`: create, list, inspect, stop, restart, rename, delete,
//! send input, read output and page through or search the tmux history. Someone else's instance answers 404, like one that does not exist.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::Manager;
use super::manager::{Input, ModelInfo, Sent};
use super::observe::{Observer, Status};
use super::store::{self, Instance};
use crate::audit::{self, Event};
use crate::auth::extract::AuthUser;
use crate::db::Db;
use crate::error::{AppError, AppResult, ErrorBody, Json, JsonRejections, Path, Query};
use crate::http::client::ClientInfo;
use crate::http::rate_limit::RateLimits;
use crate::state::AppState;

/// What the instance routes (and the hook reports) need of the application; the routes that
/// check usage budgets take the whole state for those.
#[derive(Clone)]
pub struct InstancesState {
    pub db: Db,
    pub manager: Arc<Manager>,
    /// Whoever watches the instances (the monitor): usage, status, hook reports.
    pub observer: Arc<dyn Observer>,
    pub rate_limits: Arc<RateLimits>,
}

/// Largest text one command may type.
pub const COMMAND_MAX: usize = 64 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(list_instances, create_instance))
        .routes(routes!(get_instance, delete_instance, rename_instance))
        .routes(routes!(stop_instance))
        .routes(routes!(restart_instance))
        .routes(routes!(suspend_instance))
        .routes(routes!(resume_instance))
        .routes(routes!(dismiss_interrupted))
        .routes(routes!(retry_interrupted))
        .routes(routes!(send_command))
        .routes(routes!(read_output))
        .routes(routes!(read_history))
        .merge(super::hooks::router())
        .merge(super::approval_routes::router())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    /// Profile id from `GET /api/models`.
    #[schema(example = "shell")]
    pub profile: String,
    /// 1 to 64 characters (spaces around are trimmed), without control or invisible formatting
    /// characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        example = "my agent",
        pattern = r"^[^\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]*[^\s\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff][^\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]*$"
    )]
    pub name: Option<String>,
    /// A folder inside the workspace to work in (default: the workspace).
    #[schema(pattern = r"^[^\\\x00]*$", example = "project")]
    pub workdir: Option<String>,
    /// A folder of the workspace holding a git repository: the agent works in a worktree of
    /// it, `worktrees/<repo folder>/<branch with / as ->`, on `branch` (then without `workdir`).
    pub repo: Option<String>,
    /// The branch (new, or existing and not checked out elsewhere); required with `repo`.
    pub branch: Option<String>,
    /// Where a new branch starts, and what it is compared with and merged into (default: the
    /// repository's current branch).
    pub base: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameInstance {
    /// 1 to 64 characters (spaces around are trimmed), without control or invisible formatting
    /// characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        example = "my agent",
        pattern = r"^[^\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]*[^\s\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff][^\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]*$"
    )]
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Text typed literally (never through a shell).
    pub text: Option<String>,
    /// Press Enter afterwards (default true).
    pub enter: Option<bool>,
    /// Named keys pressed after the text (at most 64; names in any case).
    #[serde(default)]
    #[schema(schema_with = key_names)]
    pub keys: Vec<String>,
}

/// The key names `Command.keys` takes (the manager's table, which the conformance test sends).
const KEY_NAMES: &[&str] = &[
    "enter",
    "esc",
    "escape",
    "tab",
    "shift-tab",
    "up",
    "down",
    "left",
    "right",
    "backspace",
    "delete",
    "home",
    "end",
    "pageup",
    "pagedown",
    "space",
    "ctrl-a",
    "ctrl-b",
    "ctrl-c",
    "ctrl-d",
    "ctrl-e",
    "ctrl-k",
    "ctrl-l",
    "ctrl-r",
    "ctrl-u",
    "ctrl-w",
    "ctrl-z",
];

fn key_names() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(KEY_NAMES.iter().copied())),
        )
        .max_items(Some(64))
        .description(Some(
            "Named keys pressed after the text (at most 64; names in any case).",
        ))
        .build()
}

#[derive(Deserialize, IntoParams)]
pub struct OutputQuery {
    /// Lines of history above the screen (default 200; more than 10000 count as 10000).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295_u64)]
    pub lines: Option<u32>,
    /// Keep colours and attributes as ANSI escapes.
    #[serde(default)]
    pub ansi: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Output {
    pub id: String,
    pub state: store::State,
    /// The screen and the history above it, as plain text unless `ansi` was asked.
    pub output: String,
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// Admins: list every user's instances.
    #[serde(default)]
    pub all: bool,
}

/// Loads an instance the caller may act on: their own, or anyone's for an admin.
pub(crate) async fn visible(db: &Db, auth: &AuthUser, id: &str) -> AppResult<Instance> {
    let instance = store::get(db, id)
        .await?
        .ok_or_else(|| AppError::not_found("instance"))?;
    if instance.owner == auth.user.id || auth.user.is_admin() {
        Ok(instance)
    } else {
        Err(AppError::not_found("instance"))
    }
}

async fn audit_instance(
    db: &Db,
    auth: &AuthUser,
    client: ClientInfo,
    action: &str,
    instance: &Instance,
) {
    audit::record(
        db,
        Event {
            user_id: Some(auth.user.id),
            username: Some(&auth.user.username),
            action,
            target: Some(format!("instance:{}", instance.id)),
            ip: Some(client.ip),
            detail: Some(
                serde_json::json!({ "profile": instance.profile, "owner": instance.owner }),
            ),
        },
    )
    .await;
}

/// Agent profiles, with whether the caller can start each now and why not.
#[utoipa::path(get, path = "/api/models", tag = "instances", responses((status = 200, body = Vec<ModelInfo>)))]
async fn list_models(
    State(state): State<InstancesState>,
    auth: AuthUser,
) -> AppResult<Json<Vec<ModelInfo>>> {
    Ok(Json(state.manager.models(&auth.user).await?))
}

/// The caller's instances, newest first (admins may pass `all=true`).
#[utoipa::path(get, path = "/api/instances", tag = "instances", params(ListQuery),
    responses((status = 200, body = Vec<InstanceView>)))]
async fn list_instances(
    State(state): State<InstancesState>,
    auth: AuthUser,
    Query(query): Query<ListQuery>,
) -> AppResult<Json<Vec<InstanceView>>> {
    let owner = if query.all && auth.user.is_admin() {
        None
    } else {
        Some(auth.user.id)
    };
    let instances = store::list(&state.db, owner).await?;
    Ok(Json(
        instances
            .into_iter()
            .map(|i| InstanceView::new(&state.manager, &*state.observer, i))
            .collect(),
    ))
}

/// An instance with what it uses and whether it is working, from the monitor's last sample.
#[derive(Serialize, ToSchema)]
pub struct InstanceView {
    #[serde(flatten)]
    pub instance: Instance,
    /// Resident memory of the agent's whole process tree (live instances).
    pub memory_bytes: Option<u64>,
    /// CPU of the process tree, in % of one core.
    pub cpu_percent: Option<f32>,
    /// `working`, `waiting` or `needs_permission` while running; null otherwise.
    pub status: Option<Status>,
    /// What explains the status, such as the permission question on screen.
    pub status_reason: Option<String>,
    /// Last output or input, seconds since the epoch.
    pub last_activity_at: Option<i64>,
    /// The last line of text on the agent's screen at the monitor's last look (running only),
    /// for a one-line preview.
    pub preview: Option<String>,
    /// The permission dialog on the agent's screen, parsed into its choices (running only,
    /// for profiles whose dialogs pocketdev knows).
    pub pending_approval: Option<super::approvals::PendingApproval>,
}

impl InstanceView {
    pub(crate) fn new(manager: &Manager, observer: &dyn Observer, instance: Instance) -> Self {
        let usage = instance
            .state
            .is_live()
            .then(|| observer.usage(&instance.id))
            .flatten();
        let (status, status_reason) = observer.status(&instance).unzip();
        Self {
            status,
            status_reason: status_reason.flatten(),
            memory_bytes: usage.as_ref().map(|u| u.memory_bytes),
            cpu_percent: usage.as_ref().map(|u| u.cpu_percent),
            last_activity_at: usage.and_then(|u| u.last_activity_at),
            preview: (instance.state == crate::instances::store::State::Running)
                .then(|| observer.preview(&instance.id))
                .flatten(),
            pending_approval: manager.pending_approval(&instance),
            instance,
        }
    }
}

/// A new instance, and the idle agents suspended to make room for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedInstance {
    #[serde(flatten)]
    pub instance: Instance,
    /// Idle agents suspended because the new one did not fit otherwise (the account's own
    /// first, the longest idle first); empty when it fitted.
    pub made_room: Vec<MadeRoom>,
}

/// An agent suspended to make room.
#[derive(Debug, Serialize, ToSchema)]
pub struct MadeRoom {
    pub id: String,
    pub name: String,
    /// Its owner's user id (another account's agent is suspended only by server policy).
    pub owner: i64,
}

/// Starts a new instance of a profile. Where it does not fit (a limit, memory), idle agents
/// that can resume are suspended for it, the account's own first; `made_room` names them.
#[utoipa::path(post, path = "/api/instances", tag = "instances", request_body = CreateInstance,
    responses((status = 201, body = CreatedInstance), JsonRejections,
        (status = 409, description = "over a limit or not enough memory, with no idle agent to suspend for it", body = ErrorBody),
        (status = 422, description = "the body's shape, an unknown or unusable profile (its program missing, a secret missing), a bad workdir or name", body = ErrorBody),
        (status = 503, description = "tmux is missing or does not answer, the agent could not start, or the account could not be provisioned", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn create_instance(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Json(req): Json<CreateInstance>,
) -> AppResult<(StatusCode, Json<CreatedInstance>)> {
    crate::usage::budgets::admit(&state, auth.user.id).await?;
    let created = state
        .instances
        .create(
            &auth.user,
            &req.profile,
            req.name.as_deref(),
            req.workdir.as_deref(),
            git_request(&req)?.as_ref(),
        )
        .await?;
    audit_instance(
        &state.db,
        &auth,
        client,
        "instance.create",
        &created.instance,
    )
    .await;
    let made_room = created
        .made_room
        .into_iter()
        .map(|i| MadeRoom {
            id: i.id,
            name: i.name,
            owner: i.owner,
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(CreatedInstance {
            instance: created.instance,
            made_room,
        }),
    ))
}

/// `repo`, `branch` and `base` of a create request, which come together.
fn git_request(req: &CreateInstance) -> AppResult<Option<super::manager::GitRequest>> {
    match (&req.repo, &req.branch) {
        (None, None) if req.base.is_none() => Ok(None),
        (Some(repo), Some(branch)) => Ok(Some(super::manager::GitRequest {
            repo: repo.clone(),
            branch: branch.clone(),
            base: req.base.clone(),
        })),
        _ => Err(AppError::Unprocessable(
            "`repo` and `branch` come together (and `base` only with them)".into(),
        )),
    }
}

#[derive(Deserialize, IntoParams)]
pub struct DeleteQuery {
    /// Also remove the instance's git worktree (the branch stays).
    #[serde(default)]
    pub remove_worktree: bool,
    /// With `remove_worktree`: even with uncommitted changes in it.
    #[serde(default)]
    pub force: bool,
}

/// One instance.
#[utoipa::path(get, path = "/api/instances/{id}", tag = "instances", params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = InstanceView), (status = 404, body = ErrorBody)))]
async fn get_instance(
    State(state): State<InstancesState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<InstanceView>> {
    let instance = visible(&state.db, &auth, &id).await?;
    Ok(Json(InstanceView::new(
        &state.manager,
        &*state.observer,
        instance,
    )))
}

/// Renames an instance.
#[utoipa::path(patch, path = "/api/instances/{id}", tag = "instances", request_body = RenameInstance,
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Instance), JsonRejections, (status = 404, body = ErrorBody),
        (status = 422, description = "the body's shape, or a name against the rules", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn rename_instance(
    State(state): State<InstancesState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(req): Json<RenameInstance>,
) -> AppResult<Json<Instance>> {
    let instance = visible(&state.db, &auth, &id).await?;
    let name = super::manager::check_name(&req.name)?;
    store::rename(&state.db, &instance.id, &name).await?;
    state.manager.publish(&instance.id).await?;
    Ok(Json(
        store::get(&state.db, &id)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))?,
    ))
}

/// Stops an instance: the agent may exit cleanly, then is killed. The record stays.
#[utoipa::path(post, path = "/api/instances/{id}/stop", tag = "instances", params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody),
        (status = 409, description = "not running, or another operation on it is in progress", body = ErrorBody),
        (status = 503, description = "its tmux server does not answer", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn stop_instance(
    State(state): State<InstancesState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<Instance>> {
    let instance = visible(&state.db, &auth, &id).await?;
    let reason = if instance.owner == auth.user.id {
        "user"
    } else {
        "admin"
    };
    let stopped = state.manager.stop(&instance, reason).await?;
    audit_instance(&state.db, &auth, client, "instance.stop", &stopped).await;
    Ok(Json(stopped))
}

/// Starts the instance again; a Claude Code conversation is resumed.
#[utoipa::path(post, path = "/api/instances/{id}/restart", tag = "instances", params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody),
        (status = 409, description = "its profile is gone, over a limit, not enough memory, or another operation on it is in progress", body = ErrorBody),
        (status = 422, description = "the profile needs a secret that is not set", body = ErrorBody),
        (status = 503, description = "tmux does not answer, or the agent could not start", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn restart_instance(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<Instance>> {
    let instance = visible(&state.db, &auth, &id).await?;
    crate::usage::budgets::admit(&state, instance.owner).await?;
    let restarted = state.instances.restart(&instance).await?;
    audit_instance(&state.db, &auth, client, "instance.restart", &restarted).await;
    Ok(Json(restarted))
}

/// Suspends a running agent that can resume: its process goes, freeing its memory; the
/// conversation, last screen and size stay, and it resumes where it was on the next terminal,
/// command, approval or `POST …/resume`.
#[utoipa::path(post, path = "/api/instances/{id}/suspend", tag = "instances", params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody),
        (status = 409, description = "not running, its agent cannot resume (no `resume_args`), or another operation on it is in progress", body = ErrorBody),
        (status = 503, description = "its tmux server does not answer", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn suspend_instance(
    State(state): State<InstancesState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<Instance>> {
    let instance = visible(&state.db, &auth, &id).await?;
    let reason = if instance.owner == auth.user.id {
        "user"
    } else {
        "admin"
    };
    let suspended = state.manager.suspend(&instance, reason).await?;
    audit_instance(&state.db, &auth, client, "instance.suspend", &suspended).await;
    Ok(Json(suspended))
}

/// Resumes a suspended agent where it was (its conversation, at its size). A running one is
/// answered as it is.
#[utoipa::path(post, path = "/api/instances/{id}/resume", tag = "instances", params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody),
        (status = 409, description = "it ended (restart it instead), its profile is gone, over a limit or a budget, or not enough memory", body = ErrorBody),
        (status = 422, description = "the profile needs a secret that is not set", body = ErrorBody),
        (status = 503, description = "tmux does not answer, or the agent could not start", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn resume_instance(
    State(state): State<AppState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<Instance>> {
    let instance = visible(&state.db, &auth, &id).await?;
    if instance.state != store::State::Suspended {
        return match instance.state {
            store::State::Running | store::State::Starting => Ok(Json(instance)),
            _ => Err(AppError::Conflict(
                "this instance is not suspended but ended; restart it instead".into(),
            )),
        };
    }
    let resumed = resume_checked(&state, &instance, None).await?;
    audit_instance(&state.db, &auth, client, "instance.resume", &resumed).await;
    Ok(Json(resumed))
}

/// Resumes a suspended instance for whoever needs it (a terminal, a command, an approval),
/// within its owner's budgets.
pub(crate) async fn resume_checked(
    state: &AppState,
    instance: &Instance,
    size: Option<(u16, u16)>,
) -> AppResult<Instance> {
    crate::usage::budgets::admit(state, instance.owner).await?;
    state.instances.resume(instance, size).await
}

/// Forgets what the last resume lost (the terminal's banner goes).
#[utoipa::path(delete, path = "/api/instances/{id}/interrupted", tag = "instances", params(("id" = String, Path, description = "instance id")),
    responses((status = 204), (status = 404, body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn dismiss_interrupted(
    State(state): State<InstancesState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let instance = visible(&state.db, &auth, &id).await?;
    store::set_interrupted(&state.db, &instance.id, None).await?;
    state.manager.publish(&instance.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends the prompt the last resume lost again (typed, then Enter) and forgets it.
#[utoipa::path(post, path = "/api/instances/{id}/interrupted/retry", tag = "instances", params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Instance), (status = 404, body = ErrorBody),
        (status = 409, description = "nothing was lost, or it is not running", body = ErrorBody),
        (status = 503, description = "its tmux server does not answer", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn retry_interrupted(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<Instance>> {
    let instance = visible(&state.db, &auth, &id).await?;
    let prompt = instance
        .interrupted
        .as_ref()
        .and_then(|lost| lost.0.prompt.clone())
        .ok_or_else(|| AppError::Conflict("nothing was lost to send again".into()))?;
    if instance.state == store::State::Suspended {
        crate::usage::budgets::admit(&state, instance.owner).await?;
    }
    let input = Input {
        text: Some(&prompt),
        keys: &[],
        enter: true,
    };
    state.instances.send(&instance, &input).await?;
    store::set_interrupted(&state.db, &instance.id, None).await?;
    state.instances.publish(&instance.id).await?;
    Ok(Json(
        store::get(&state.db, &instance.id)
            .await?
            .ok_or_else(|| AppError::not_found("instance"))?,
    ))
}

/// Stops the instance if it runs and deletes its record. An instance on a branch keeps its
/// branch and worktree unless `remove_worktree=true`, which refuses (409, naming the files)
/// while the worktree has uncommitted changes, unless `force=true`.
#[utoipa::path(delete, path = "/api/instances/{id}", tag = "instances", params(("id" = String, Path, description = "instance id"), DeleteQuery),
    responses((status = 204), (status = 404, body = ErrorBody),
        (status = 409, description = "another operation on it is in progress, or its worktree has uncommitted changes", body = ErrorBody),
        (status = 503, description = "its tmux server does not answer", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn delete_instance(
    State(state): State<InstancesState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> AppResult<StatusCode> {
    let instance = visible(&state.db, &auth, &id).await?;
    state
        .manager
        .delete(&instance, query.remove_worktree, query.force)
        .await?;
    audit_instance(&state.db, &auth, client, "instance.delete", &instance).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Types into the instance: text (literally), named keys, then Enter.
#[utoipa::path(post, path = "/api/instances/{id}/command", tag = "instances", request_body = Command,
    params(("id" = String, Path, description = "instance id")),
    responses((status = 204), (status = 202, description = "the agent was suspended: it is resuming, and the input is typed once it is ready"),
        JsonRejections, (status = 404, body = ErrorBody),
        (status = 409, description = "it ended, or resuming it is over a limit or a budget", body = ErrorBody),
        (status = 413, description = "the text is over 64 KiB", body = ErrorBody),
        (status = 422, description = "the body's shape, an unknown key or over 64 keys", body = ErrorBody),
        (status = 503, description = "its tmux server does not answer", body = ErrorBody)))]
async fn send_command(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(req): Json<Command>,
) -> AppResult<StatusCode> {
    let instance = visible(&state.db, &auth, &id).await?;
    if req.text.as_ref().is_some_and(|t| t.len() > COMMAND_MAX) {
        return Err(AppError::PayloadTooLarge(format!(
            "a command is at most {COMMAND_MAX} bytes"
        )));
    }
    if req.keys.len() > 64 {
        return Err(AppError::Unprocessable(
            "at most 64 keys per command".into(),
        ));
    }
    let input = Input {
        text: req.text.as_deref(),
        keys: &req.keys,
        enter: req.enter.unwrap_or(true),
    };
    if instance.state == store::State::Suspended {
        crate::usage::budgets::admit(&state, instance.owner).await?;
    }
    match state.instances.send(&instance, &input).await? {
        Sent::Typed => Ok(StatusCode::NO_CONTENT),
        Sent::Queued => Ok(StatusCode::ACCEPTED),
    }
}

/// The current screen and history; for an ended instance, its last screen.
#[utoipa::path(get, path = "/api/instances/{id}/output", tag = "instances", params(("id" = String, Path, description = "instance id"), OutputQuery),
    responses((status = 200, body = Output), (status = 404, body = ErrorBody),
        (status = 503, description = "its tmux server does not answer", body = ErrorBody)))]
async fn read_output(
    State(state): State<InstancesState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Query(query): Query<OutputQuery>,
) -> AppResult<Json<Output>> {
    let instance = visible(&state.db, &auth, &id).await?;
    let lines = query.lines.unwrap_or(200).min(10_000);
    let output = state.manager.output(&instance, lines, query.ansi).await?;
    Ok(Json(Output {
        id: instance.id,
        state: instance.state,
        output,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The page ends at this position: how many rows above the bottom (0, the default: the
    /// newest row). The page above one you hold starts at its `first + 1`.
    #[param(minimum = 0)]
    pub before: Option<i64>,
    /// How many rows the page spans: 1 to 2000 (default 500).
    #[param(minimum = 1, maximum = 2000)]
    pub lines: Option<i64>,
    /// Instead of a page: search the whole history and screen for this text (any case), 1 to
    /// 200 characters. Not with `before` or `lines`.
    #[param(min_length = 1, max_length = 200, example = "error")]
    pub q: Option<String>,
}

/// What `GET /api/instances/{id}/history` answers: a page, or the matches of a search (`q`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum History {
    Page(HistoryPage),
    Search(HistorySearch),
}

/// Rows `first` down to `last` of the history, as lines.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    /// Plain text, oldest first; a line that wrapped across rows comes joined (it takes one
    /// position per row); a line over 64 KiB is cut there and ends with `…`.
    pub lines: Vec<String>,
    /// The position of `lines[0]`'s first row; null when there is nothing at or above `before`.
    pub first: Option<u64>,
    /// The position of the page's last row: `before`, or above it when the line there wraps on
    /// below (that line belongs to the page below). 0 when the page reaches the bottom, whose
    /// blank rows under the screen's text are left out of `lines`.
    pub last: Option<u64>,
    /// Rows of history and screen now: positions run from 0 to `total - 1`.
    pub total: u64,
}

/// The lines that hold the text searched for.
#[derive(Serialize, ToSchema)]
pub struct HistorySearch {
    pub query: String,
    /// Newest first, at most 200.
    pub matches: Vec<HistoryMatch>,
    /// More lines matched than were sent; the oldest were left out.
    pub truncated: bool,
    /// Rows of history and screen now.
    pub total: u64,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryMatch {
    /// The position of the line's first row: `before = position - lines + 1` (at least 0)
    /// asks for the page that starts with it.
    pub position: u64,
    /// The line as plain text; a long one is cut to 400 characters around the match, marked
    /// with `…`.
    pub text: String,
}

/// The instance's whole tmux history (up to `tmux.history_limit` rows, plus the screen), a page
/// at a time, or searched.
///
/// **Positions** count the pane's rows from the bottom: 0 is the screen's last row, `total - 1`
/// the oldest row tmux keeps. A page holds the rows from `before + lines - 1` down to `before`,
/// as whole lines of plain text (no escape sequences): a line that wrapped across rows comes
/// joined, at the position of its first row; a line that began above the page, or goes on below
/// it, is left to that neighbouring page (a line longer than the page comes whole, up to 4000
/// rows). The newest page starts at `before=0`; the page above one you hold is `before = first +
/// 1`.
///
/// **Output between pages** moves every row up by the rows printed: a page asked for with
/// positions from an earlier answer comes that many rows lower, overlapping what you hold. Each
/// answer says `total`; add the growth since your last answer (`total` now − then) to the
/// positions you hold, and ask again with the corrected `before` (or drop the overlap). When
/// the history is full tmux drops its oldest rows (a tenth at a time), so `total` can stay the
/// same or fall while rows move: expect the odd repeated or missing line then.
///
/// **Search** (`q`): the lines of the whole history and screen holding the text, any case,
/// newest first, at most 200, each with its position.
///
/// Only for a running instance: the history lives in its tmux session.
#[utoipa::path(get, path = "/api/instances/{id}/history", tag = "instances",
    params(("id" = String, Path, description = "instance id"), HistoryQuery),
    responses((status = 200, body = History),
        (status = 400, description = "a parameter out of range, of the wrong type or unknown, or `q` with `before` or `lines`", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "not running (its tmux session and history are gone)", body = ErrorBody),
        (status = 503, description = "its tmux server does not answer", body = ErrorBody)))]
async fn read_history(
    State(state): State<InstancesState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> AppResult<Json<History>> {
    use super::history::{PAGE_DEFAULT, PAGE_MAX, QUERY_MAX};
    let instance = visible(&state.db, &auth, &id).await?;
    if let Some(text) = query.q {
        if query.before.is_some() || query.lines.is_some() {
            return Err(AppError::BadRequest(
                "q searches the whole history: leave out before and lines".into(),
            ));
        }
        let length = text.chars().count();
        if length == 0 || length > QUERY_MAX {
            return Err(AppError::BadRequest(format!(
                "q must be 1 to {QUERY_MAX} characters"
            )));
        }
        let found = state.manager.history_search(&instance, &text).await?;
        return Ok(Json(History::Search(HistorySearch {
            query: text,
            matches: found
                .matches
                .into_iter()
                .map(|m| HistoryMatch {
                    position: m.position,
                    text: m.text,
                })
                .collect(),
            truncated: found.truncated,
            total: found.total,
        })));
    }
    let before = u64::try_from(query.before.unwrap_or(0))
        .map_err(|_| AppError::BadRequest("before must be 0 or more".into()))?;
    let lines = query.lines.unwrap_or(i64::from(PAGE_DEFAULT));
    let lines = u32::try_from(lines)
        .ok()
        .filter(|l| (1..=PAGE_MAX).contains(l))
        .ok_or_else(|| AppError::BadRequest(format!("lines must be 1 to {PAGE_MAX}")))?;
    let page = state.manager.history_page(&instance, before, lines).await?;
    Ok(Json(History::Page(HistoryPage {
        lines: page.lines,
        first: page.first,
        last: page.last,
        total: page.total,
    })))
}
