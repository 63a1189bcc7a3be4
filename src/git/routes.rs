//! `/api/instances/{id}/git/*` (status, diff, stage, unstage, discard, commit, push, pull,
//! merge), `/api/git/clone`, the workspace's repositories (`/api/git/repos`, read-only
//! `/api/git/repo/status` and `/diff`) and the account's SSH key (`/api/git/ssh-key`).
//! Someone else's instance answers 404, like one that does not exist; git runs as the
//! instance's owner.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ops::{Against, Committed, Diff, Discarded, GitStatus, Merged, Pulled, Pushed};
use super::workspace::{Repos, SshKey};
use super::{Cloned, Git, Place};
use crate::audit::{self, Event};
use crate::auth::extract::AuthUser;
use crate::db::Db;
use crate::error::{AppError, AppResult, ErrorBody, Json, JsonRejections, Path, Query};
use crate::http::client::ClientInfo;
use crate::instances::store::{self, Instance};
use crate::secrets::SecretBox;
use crate::state::AppState;

/// What the git routes need of the application.
#[derive(Clone)]
pub struct GitState {
    pub db: Db,
    pub git: Git,
    pub secrets: Arc<SecretBox>,
}

impl axum::extract::FromRef<AppState> for GitState {
    fn from_ref(state: &AppState) -> Self {
        Self {
            db: state.db.clone(),
            git: Git::new(state.isolation.clone(), state.layout.clone()),
            secrets: state.secrets.clone(),
        }
    }
}

/// The secret whose value authenticates pushes, pulls and clones over HTTPS.
pub const TOKEN_SECRET: &str = "GIT_TOKEN";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(git_status))
        .routes(routes!(git_diff))
        .routes(routes!(git_stage))
        .routes(routes!(git_unstage))
        .routes(routes!(git_discard))
        .routes(routes!(git_commit))
        .routes(routes!(git_push))
        .routes(routes!(git_pull))
        .routes(routes!(git_merge))
        .routes(routes!(git_clone))
        .routes(routes!(git_repos))
        .routes(routes!(repo_status))
        .routes(routes!(repo_diff))
        .routes(routes!(ssh_key_show, ssh_key_make))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PathsRequest {
    /// Files relative to the worktree (no absolute paths, `..`, NUL or `.git`).
    #[schema(example = json!(["README.md"]), max_items = 1000)]
    pub paths: Vec<String>,
    /// Only these hunks (ids from the diff) of those files; without: the whole files.
    #[schema(max_items = 1000)]
    pub hunks: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscardRequest {
    /// Files relative to the worktree whose working-tree changes go.
    #[schema(example = json!(["README.md"]), max_items = 1000)]
    pub paths: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// Not empty; at most 64 KiB.
    #[schema(example = "Fix the parser")]
    pub message: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    /// `https://`, `http://`, `ssh://`, `user@host:path`, `file://` or an absolute path the
    /// account can read; transport helpers such as `ext::` are refused.
    #[schema(example = "https://github.com/owner/repo.git")]
    pub url: String,
    /// A new folder in the workspace (its parent must exist).
    #[schema(example = "repo")]
    pub folder: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// One file only (relative to the worktree).
    pub path: Option<String>,
    /// The index instead of the working tree.
    #[serde(default)]
    pub staged: bool,
    /// What to compare with (default `worktree`).
    #[serde(default)]
    #[param(inline)]
    pub against: Against,
    /// Which page of at most 2000 diff lines (from 0).
    #[serde(default)]
    #[param(minimum = 0, maximum = 1000000)]
    pub page: usize,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RepoQuery {
    /// The repository's folder, relative to the workspace.
    pub folder: String,
}

impl DiffQuery {
    /// The diff this query asks for, of an instance's or a repository's place.
    async fn read(&self, place: &Place) -> AppResult<Diff> {
        place
            .diff(self.path.as_deref(), self.staged, self.against, self.page)
            .await
    }
}

/// An instance the caller may act on (their own, or anyone's for an admin), and where its git
/// work happens.
async fn place(state: &GitState, auth: &AuthUser, id: &str) -> AppResult<(Instance, Place)> {
    let instance = store::get(&state.db, id)
        .await?
        .filter(|i| i.owner == auth.user.id || auth.user.is_admin())
        .ok_or_else(|| AppError::not_found("instance"))?;
    let place = state
        .git
        .place(
            instance.owner,
            &instance.workdir,
            instance.git_repo.as_deref(),
            instance.git_branch.as_deref(),
            instance.git_base.as_deref(),
        )
        .await?;
    Ok((instance, place))
}

/// The name commits carry: the instance owner's.
async fn owner_name(state: &GitState, auth: &AuthUser, owner: i64) -> AppResult<String> {
    if owner == auth.user.id {
        return Ok(auth.user.username.clone());
    }
    Ok(crate::users::store::by_id(&state.db, owner)
        .await?
        .map(|u| u.username)
        .unwrap_or_else(|| format!("user-{owner}")))
}

/// The owner's `GIT_TOKEN` secret, if set.
async fn token(state: &GitState, owner: i64) -> AppResult<Option<String>> {
    for row in crate::secrets::store::sealed(&state.db, owner).await? {
        if row.name == TOKEN_SECRET {
            return Ok(Some(state.secrets.open(
                owner,
                &row.name,
                &row.nonce,
                &row.ciphertext,
            )?));
        }
    }
    Ok(None)
}

async fn audit_git(
    db: &Db,
    auth: &AuthUser,
    client: ClientInfo,
    action: &str,
    target: String,
    detail: serde_json::Value,
) {
    audit::record(
        db,
        Event {
            user_id: Some(auth.user.id),
            username: Some(&auth.user.username),
            action,
            target: Some(target),
            ip: Some(client.ip),
            detail: Some(detail),
        },
    )
    .await;
}

/// The branch, its base, ahead/behind, and every changed file.
#[utoipa::path(get, path = "/api/instances/{id}/git/status", tag = "git",
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = GitStatus), (status = 404, body = ErrorBody),
        (status = 409, description = "not started on a branch, its worktree is gone, or git refused", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time", body = ErrorBody)))]
async fn git_status(
    State(state): State<GitState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<GitStatus>> {
    let (_, place) = place(&state, &auth, &id).await?;
    Ok(Json(place.status().await?))
}

/// The diff, paged by lines (at most 2000 a page; a longer hunk continues on the next page
/// with the same id). Binary files come without hunks. `against=base` compares with where the
/// branch left its base.
#[utoipa::path(get, path = "/api/instances/{id}/git/diff", tag = "git",
    params(("id" = String, Path, description = "instance id"), DiffQuery),
    responses((status = 200, body = Diff), (status = 404, body = ErrorBody),
        (status = 409, description = "not started on a branch, no base, or git refused", body = ErrorBody),
        (status = 422, description = "a bad path, or a diff too large to read (over 8 MiB)", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time", body = ErrorBody)))]
async fn git_diff(
    State(state): State<GitState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Query(query): Query<DiffQuery>,
) -> AppResult<Json<Diff>> {
    let (_, place) = place(&state, &auth, &id).await?;
    Ok(Json(query.read(&place).await?))
}

/// Stages whole files (`git add`), or only the given hunks of them (`git apply --cached`);
/// answers the new status.
#[utoipa::path(post, path = "/api/instances/{id}/git/stage", tag = "git", request_body = PathsRequest,
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = GitStatus), JsonRejections, (status = 404, body = ErrorBody),
        (status = 409, description = "not started on a branch, a hunk is no longer in the diff, or git refused (a file it does not know)", body = ErrorBody),
        (status = 422, description = "the body's shape, a path outside the worktree, or no path", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time", body = ErrorBody)))]
async fn git_stage(
    State(state): State<GitState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(req): Json<PathsRequest>,
) -> AppResult<Json<GitStatus>> {
    let (_, place) = place(&state, &auth, &id).await?;
    place.stage(&req.paths, req.hunks.as_deref()).await?;
    Ok(Json(place.status().await?))
}

/// Unstages whole files (`git restore --staged`), or only the given hunks of the staged diff
/// (`git apply --cached --reverse`); answers the new status.
#[utoipa::path(post, path = "/api/instances/{id}/git/unstage", tag = "git", request_body = PathsRequest,
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = GitStatus), JsonRejections, (status = 404, body = ErrorBody),
        (status = 409, description = "not started on a branch, a hunk is no longer in the diff, or git refused", body = ErrorBody),
        (status = 422, description = "the body's shape, a path outside the worktree, or no path", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time", body = ErrorBody)))]
async fn git_unstage(
    State(state): State<GitState>,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(req): Json<PathsRequest>,
) -> AppResult<Json<GitStatus>> {
    let (_, place) = place(&state, &auth, &id).await?;
    place.unstage(&req.paths, req.hunks.as_deref()).await?;
    Ok(Json(place.status().await?))
}

/// Throws away the working-tree changes of these files (staged changes stay); untracked files
/// are removed. There is no undo: clients confirm first.
#[utoipa::path(post, path = "/api/instances/{id}/git/discard", tag = "git", request_body = DiscardRequest,
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Discarded), JsonRejections, (status = 404, body = ErrorBody),
        (status = 409, description = "not started on a branch, or git refused", body = ErrorBody),
        (status = 422, description = "the body's shape, a path outside the worktree, or no path", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time", body = ErrorBody)))]
async fn git_discard(
    State(state): State<GitState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(req): Json<DiscardRequest>,
) -> AppResult<Json<Discarded>> {
    let (instance, place) = place(&state, &auth, &id).await?;
    let discarded = place.discard(&req.paths).await?;
    audit_git(
        &state.db,
        &auth,
        client,
        "git.discard",
        format!("instance:{}", instance.id),
        serde_json::json!({ "owner": instance.owner, "paths": discarded.discarded }),
    )
    .await;
    Ok(Json(discarded))
}

/// Commits what is staged, as the account (`<username>@pocketdev.local` unless the repository
/// or the account's git config names someone); the repository's hooks run, as the account.
#[utoipa::path(post, path = "/api/instances/{id}/git/commit", tag = "git", request_body = CommitRequest,
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Committed), JsonRejections, (status = 404, body = ErrorBody),
        (status = 409, description = "nothing is staged, not started on a branch, or git (a hook) refused", body = ErrorBody),
        (status = 422, description = "the body's shape, or an empty message", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time", body = ErrorBody)))]
async fn git_commit(
    State(state): State<GitState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(id): Path<String>,
    Json(req): Json<CommitRequest>,
) -> AppResult<Json<Committed>> {
    let (instance, place) = place(&state, &auth, &id).await?;
    let username = owner_name(&state, &auth, instance.owner).await?;
    let committed = place.commit(&req.message, &username).await?;
    audit_git(
        &state.db,
        &auth,
        client,
        "git.commit",
        format!("instance:{}", instance.id),
        serde_json::json!({ "owner": instance.owner, "branch": place.branch, "commit": committed.commit }),
    )
    .await;
    Ok(Json(committed))
}

/// Pushes the branch to its upstream, or to `origin` (then made its upstream). Over HTTPS the
/// owner's secret `GIT_TOKEN` is offered as the password, through the environment only.
#[utoipa::path(post, path = "/api/instances/{id}/git/push", tag = "git",
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Pushed), (status = 404, body = ErrorBody),
        (status = 409, description = "no remote, the push was refused (not a fast-forward, no access), or not started on a branch", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time (120 s)", body = ErrorBody)))]
async fn git_push(
    State(state): State<GitState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<Pushed>> {
    let (instance, place) = place(&state, &auth, &id).await?;
    let token = token(&state, instance.owner).await?;
    let pushed = place.push(token.as_deref()).await?;
    audit_git(
        &state.db,
        &auth,
        client,
        "git.push",
        format!("instance:{}", instance.id),
        serde_json::json!({ "owner": instance.owner, "remote": pushed.remote, "branch": pushed.branch }),
    )
    .await;
    Ok(Json(pushed))
}

/// Pulls the branch from its upstream (or `origin`), fast-forward only.
#[utoipa::path(post, path = "/api/instances/{id}/git/pull", tag = "git",
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Pulled), (status = 404, body = ErrorBody),
        (status = 409, description = "no remote, not a fast-forward, or not started on a branch", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time (120 s)", body = ErrorBody)))]
async fn git_pull(
    State(state): State<GitState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<Pulled>> {
    let (instance, place) = place(&state, &auth, &id).await?;
    let token = token(&state, instance.owner).await?;
    Ok(Json(place.pull(token.as_deref()).await?))
}

/// Merges the branch's commits into its base in the repository's main checkout, which must
/// have the base checked out and no uncommitted changes. On conflicts the merge is aborted
/// (nothing changes; nothing is resolved by guess) and the conflicting files are named.
#[utoipa::path(post, path = "/api/instances/{id}/git/merge", tag = "git",
    params(("id" = String, Path, description = "instance id")),
    responses((status = 200, body = Merged), (status = 404, body = ErrorBody),
        (status = 409, description = "the main checkout is not on the base or has uncommitted changes, no base, or git refused", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time", body = ErrorBody)))]
async fn git_merge(
    State(state): State<GitState>,
    client: ClientInfo,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<Merged>> {
    let (instance, place) = place(&state, &auth, &id).await?;
    let username = owner_name(&state, &auth, instance.owner).await?;
    let merged = place.merge(&username).await?;
    audit_git(
        &state.db,
        &auth,
        client,
        "git.merge",
        format!("instance:{}", instance.id),
        serde_json::json!({
            "owner": instance.owner, "branch": place.branch, "base": place.base,
            "outcome": merged.outcome, "conflicts": merged.conflicts,
        }),
    )
    .await;
    Ok(Json(merged))
}

/// Clones a repository into a new folder of the caller's workspace, as the account. Over HTTPS
/// the caller's secret `GIT_TOKEN` is offered as the password, through the environment only.
#[utoipa::path(post, path = "/api/git/clone", tag = "git", request_body = CloneRequest,
    responses((status = 201, body = Cloned), JsonRejections,
        (status = 409, description = "the folder exists, or git could not clone (in its words)", body = ErrorBody),
        (status = 422, description = "the body's shape, a URL of a refused kind, or a folder outside the workspace", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time (120 s)", body = ErrorBody)))]
async fn git_clone(
    State(state): State<GitState>,
    client: ClientInfo,
    auth: AuthUser,
    Json(req): Json<CloneRequest>,
) -> AppResult<(StatusCode, Json<Cloned>)> {
    let token = token(&state, auth.user.id).await?;
    let cloned = state
        .git
        .clone_into(auth.user.id, &req.url, &req.folder, token.as_deref())
        .await?;
    audit_git(
        &state.db,
        &auth,
        client,
        "git.clone",
        format!("folder:{}", cloned.folder),
        serde_json::json!({ "url": redact_url(&req.url) }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(cloned)))
}

/// A URL without credentials written into it.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, path)) => {
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                format!("{scheme}://{host}/{path}")
            }
            None => format!(
                "{scheme}://{}",
                rest.rsplit_once('@').map_or(rest, |(_, h)| h)
            ),
        },
        None => url.to_owned(),
    }
}

/// The git repositories of the caller's workspace (top-level folders and one level down; the
/// worktrees of agents are not listed), each with what it has checked out and how many files
/// have uncommitted changes. At most 50.
#[utoipa::path(get, path = "/api/git/repos", tag = "git",
    responses((status = 200, body = Repos),
        (status = 503, description = "git is missing", body = ErrorBody)))]
async fn git_repos(State(state): State<GitState>, auth: AuthUser) -> AppResult<Json<Repos>> {
    Ok(Json(state.git.repos(auth.user.id).await?))
}

/// A repository's status, as for an instance (`base` is none).
#[utoipa::path(get, path = "/api/git/repo/status", tag = "git", params(RepoQuery),
    responses((status = 200, body = GitStatus),
        (status = 404, description = "no repository at that folder", body = ErrorBody),
        (status = 422, description = "a folder outside the workspace", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time", body = ErrorBody)))]
async fn repo_status(
    State(state): State<GitState>,
    auth: AuthUser,
    Query(query): Query<RepoQuery>,
) -> AppResult<Json<GitStatus>> {
    let place = state.git.repo_place(auth.user.id, &query.folder).await?;
    Ok(Json(place.status().await?))
}

/// A repository's diff, as for an instance; `against=base` has no base here (409).
#[utoipa::path(get, path = "/api/git/repo/diff", tag = "git", params(RepoQuery, DiffQuery),
    responses((status = 200, body = Diff),
        (status = 404, description = "no repository at that folder", body = ErrorBody),
        (status = 409, description = "`against=base`, or git refused", body = ErrorBody),
        (status = 422, description = "a bad folder or path, or a diff too large to read", body = ErrorBody),
        (status = 503, description = "git is missing or did not finish in time", body = ErrorBody)))]
async fn repo_diff(
    State(state): State<GitState>,
    auth: AuthUser,
    Query(repo): Query<RepoQuery>,
    Query(query): Query<DiffQuery>,
) -> AppResult<Json<Diff>> {
    let place = state.git.repo_place(auth.user.id, &repo.folder).await?;
    Ok(Json(query.read(&place).await?))
}

/// The account's SSH key for forges (`~/.ssh/id_ed25519.pub`), which git over `ssh://` and
/// `user@host:path` uses; `public_key` is null until one is made.
#[utoipa::path(get, path = "/api/git/ssh-key", tag = "git",
    responses((status = 200, body = SshKey)))]
async fn ssh_key_show(State(state): State<GitState>, auth: AuthUser) -> AppResult<Json<SshKey>> {
    Ok(Json(state.git.ssh_key(auth.user.id).await?))
}

/// Makes the account's ed25519 SSH key, as the account, without a passphrase; answers its
/// public half to copy into the forge (a deploy key or the account's keys).
#[utoipa::path(post, path = "/api/git/ssh-key", tag = "git",
    responses((status = 201, body = SshKey),
        (status = 409, description = "the account has a key already", body = ErrorBody),
        (status = 503, description = "ssh-keygen is missing", body = ErrorBody)))]
async fn ssh_key_make(
    State(state): State<GitState>,
    client: ClientInfo,
    auth: AuthUser,
) -> AppResult<(StatusCode, Json<SshKey>)> {
    let key = state
        .git
        .make_ssh_key(auth.user.id, &auth.user.username)
        .await?;
    audit_git(
        &state.db,
        &auth,
        client,
        "git.ssh_key",
        format!("user:{}", auth.user.id),
        serde_json::json!({ "fingerprint": key.fingerprint }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(key)))
}
