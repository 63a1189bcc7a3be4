//! Admin endpoints for accounts: list, create, update (role, disabled, password), delete.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Role, User, store};
use crate::audit::{self, Event};
use crate::auth::extract::{AdminUser, AuthUser};
use crate::error::{AppError, AppResult, ErrorBody, Json, JsonRejections, Path};
use crate::http::client::ClientInfo;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(update_user, delete_user))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateUser {
    /// 2 to 32 letters, digits, `-` and `_`, starting with a letter; stored in lower case.
    #[schema(pattern = r"^[A-Za-z][A-Za-z0-9_-]{1,31}$", example = "lee")]
    pub username: String,
    /// When omitted, a random password is generated and returned once. At least
    /// `auth.min_password_length` characters, at most 1024 bytes.
    #[schema(max_length = 1024, example = "correct-horse-battery")]
    pub password: Option<String>,
    pub role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: User,
    /// The generated password, when none was given.
    pub password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// Sets a new password and signs the user out everywhere. At least
    /// `auth.min_password_length` characters, at most 1024 bytes.
    #[schema(max_length = 1024, example = "correct-horse-battery")]
    pub password: Option<String>,
}

async fn audit_admin(
    state: &AppState,
    admin: &AuthUser,
    client: ClientInfo,
    action: &str,
    target: &User,
    detail: serde_json::Value,
) {
    audit::record(
        &state.db,
        Event {
            user_id: Some(admin.user.id),
            username: Some(&admin.user.username),
            action,
            target: Some(format!("user:{}:{}", target.id, target.username)),
            ip: Some(client.ip),
            detail: Some(detail),
        },
    )
    .await;
}

/// Refuses a change that would leave the server with no enabled admin.
async fn keep_an_admin(state: &AppState, target: &User) -> AppResult<()> {
    if target.is_admin() && !target.disabled && store::count_active_admins(&state.db).await? <= 1 {
        return Err(AppError::Conflict(
            "this is the last enabled admin; make another admin first".into(),
        ));
    }
    Ok(())
}

/// All accounts.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin",
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody), (status = 403, description = "not an admin", body = ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> AppResult<Json<Vec<User>>> {
    Ok(Json(store::list(&state.db).await?))
}

/// Creates an account.
#[utoipa::path(post, path = "/api/admin/users", tag = "admin", request_body = CreateUser,
    responses((status = 201, body = CreatedUser), JsonRejections, (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "username taken", body = ErrorBody),
        (status = 422, description = "the body's shape, or a username or password against the rules", body = ErrorBody),
        (status = 503, description = "the account could not be provisioned", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminUser(admin): AdminUser,
    Json(req): Json<CreateUser>,
) -> AppResult<(StatusCode, Json<CreatedUser>)> {
    let generated = req.password.is_none().then(super::generate_password);
    let password = req
        .password
        .as_deref()
        .or(generated.as_deref())
        .unwrap_or_default();
    let role = req.role.unwrap_or(Role::User);
    let user = super::create_account(
        &state.db,
        &state.layout,
        &req.username,
        password,
        role,
        state.config.auth.min_password_length,
    )
    .await?;
    state.isolation.ensure(user.id).await?;
    audit_admin(
        &state,
        &admin,
        client,
        "user.create",
        &user,
        serde_json::json!({ "role": role }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user,
            password: generated,
        }),
    ))
}

/// Changes an account's role, disables or enables it, or resets its password.
#[utoipa::path(patch, path = "/api/admin/users/{id}", tag = "admin", request_body = UpdateUser,
    params(("id" = i64, Path, description = "user id")),
    responses((status = 200, body = User), JsonRejections, (status = 403, description = "not an admin", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "would leave no enabled admin", body = ErrorBody),
        (status = 422, description = "the body's shape, or a password against the rules", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn update_user(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminUser(admin): AdminUser,
    Path(id): Path<i64>,
    Json(req): Json<UpdateUser>,
) -> AppResult<Json<User>> {
    let target = store::by_id(&state.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    let demotes = req.role == Some(Role::User) && target.is_admin();
    let disables = req.disabled == Some(true) && !target.disabled;
    if demotes || disables {
        keep_an_admin(&state, &target).await?;
    }
    let new_hash = match &req.password {
        Some(password) => {
            super::check_password(password, state.config.auth.min_password_length)?;
            Some(crate::auth::password::hash(password.clone()).await?)
        }
        None => None,
    };
    if let Some(role) = req.role {
        store::set_role(&state.db, id, role).await?;
    }
    if let Some(disabled) = req.disabled {
        store::set_disabled(&state.db, id, disabled).await?;
    }
    if let Some(hash) = &new_hash {
        store::set_password(&state.db, id, hash).await?;
    }
    if disables || new_hash.is_some() {
        crate::auth::store::revoke_user_sessions(&state.db, id, None).await?;
        state
            .signouts
            .announce(crate::auth::signouts::SignOut::Account {
                user_id: id,
                except: None,
            });
    }
    if disables {
        // Its agents hold its secrets and act for it: they stop with the account (suspended ones
        // too, so none comes back by a tap or a reboot).
        for instance in crate::instances::store::list(&state.db, Some(id)).await? {
            let resting = instance.state == crate::instances::store::State::Suspended;
            if (instance.state.is_live() || resting)
                && let Err(err) = state.instances.stop(&instance, "disabled").await
            {
                tracing::warn!(instance = %instance.id, error = %err.logged(), "cannot stop an agent of a disabled account");
            }
        }
    }
    let detail = serde_json::json!({ "role": req.role, "disabled": req.disabled, "password_reset": new_hash.is_some() });
    audit_admin(&state, &admin, client, "user.update", &target, detail).await;
    let updated = store::by_id(&state.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    Ok(Json(updated))
}

/// Deletes an account; its workspace and home move to the data dir's archive.
#[utoipa::path(delete, path = "/api/admin/users/{id}", tag = "admin", params(("id" = i64, Path, description = "user id")),
    responses((status = 204), (status = 403, description = "not an admin", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "your own account, or the last enabled admin", body = ErrorBody),
        (status = 507, description = "the server's disk is full", body = ErrorBody)))]
async fn delete_user(
    State(state): State<AppState>,
    client: ClientInfo,
    AdminUser(admin): AdminUser,
    Path(id): Path<i64>,
) -> AppResult<StatusCode> {
    let target = store::by_id(&state.db, id)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    if target.id == admin.user.id {
        return Err(AppError::Conflict(
            "you cannot delete your own account".into(),
        ));
    }
    keep_an_admin(&state, &target).await?;
    for instance in crate::instances::store::list(&state.db, Some(id)).await? {
        // A silent tmux server (the account may have stopped it) must not keep the account
        // alive: whatever is left is killed with the account below.
        if instance.state.is_live()
            && let Err(err) = state.instances.stop(&instance, "admin").await
        {
            tracing::warn!(instance = %instance.id, error = %err.logged(), "stopping an agent of a deleted account failed; its processes are killed with the account");
        }
    }
    // Everything of the account at once (agents, their children, its tmux server), then its
    // Unix user; the uid stays recorded so no later account ever gets it.
    state.isolation.remove(id).await?;
    store::delete(&state.db, id).await?;
    state
        .signouts
        .announce(crate::auth::signouts::SignOut::Account {
            user_id: id,
            except: None,
        });
    let layout = state.layout.clone();
    let label = target.username.clone();
    let archived = tokio::task::spawn_blocking(move || layout.archive_user(id, &label))
        .await
        .map_err(anyhow::Error::from)??;
    let detail = serde_json::json!({ "archived_to": archived.map(|p| p.display().to_string()) });
    audit_admin(&state, &admin, client, "user.delete", &target, detail).await;
    Ok(StatusCode::NO_CONTENT)
}
