//! SQL for instances.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::db::Db;
use crate::error::AppError;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    /// Its process is gone, to free memory; the record keeps what resuming it needs (the
    /// agent's conversation id, working folder, last screen and size).
    Suspended,
    /// The agent ended by itself (see `exit_code`), or was lost with a reboot.
    Exited,
    /// Stopped by pocketdev (see `end_reason`: user, idle, admin, limit).
    Stopped,
}

impl State {
    pub fn is_live(self) -> bool {
        matches!(self, State::Starting | State::Running)
    }

    /// The name clients see (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Suspended => "suspended",
            State::Exited => "exited",
            State::Stopped => "stopped",
        }
    }
}

/// An instance as clients see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Instance {
    pub id: String,
    pub name: String,
    /// Profile id, such as `shell` or `claude-sonnet-4-5-20250929`.
    pub profile: String,
    /// Owner's user id.
    #[sqlx(rename = "user_id")]
    pub owner: i64,
    /// Working directory, relative to the owner's workspace (`""` is the workspace itself).
    pub workdir: String,
    pub state: State,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub exit_code: Option<i64>,
    /// Why it ended: `exit`, `lost`, `start_failed`, `user`, `idle`, `admin`, `disabled` (its
    /// account was), `limit`.
    pub end_reason: Option<String>,
    /// Claude Code's conversation id, resumed on restart.
    pub agent_session_id: Option<String>,
    /// When it was suspended (state `suspended`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub suspended_at: Option<OffsetDateTime>,
    /// Why: `idle`, `user`, `memory` (to make room for another agent), `budget`.
    pub suspend_reason: Option<String>,
    /// Resident memory of its process tree when it was suspended, which suspending freed.
    pub freed_bytes: Option<i64>,
    /// What the last resume lost, named in the terminal until sent again or dismissed.
    #[schema(value_type = Option<Interrupted>)]
    pub interrupted: Option<sqlx::types::Json<Interrupted>>,
    /// The repository (a folder of the workspace) whose worktree the instance works in, when
    /// it was started on a branch; its `workdir` is then the worktree.
    pub git_repo: Option<String>,
    /// The branch checked out in the instance's worktree.
    pub git_branch: Option<String>,
    /// What the branch is compared with and merged back into.
    pub git_base: Option<String>,
}

/// Work in flight when the agent's process went (a crash, a reboot, a kill mid-turn), which
/// resuming its conversation cannot bring back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Interrupted {
    /// `turn`: a prompt the agent never answered; `tool`: a tool call that never finished.
    pub kind: String,
    /// The prompt, or the tool and what it was given, shortened.
    pub text: String,
    /// What "send again" types: the unanswered prompt (none for a tool call).
    pub prompt: Option<String>,
}

impl Instance {
    /// The tmux session holding this instance.
    pub fn tmux_session(&self) -> String {
        session_name(&self.id)
    }
}

pub const SESSION_PREFIX: &str = "pd-";

pub fn session_name(id: &str) -> String {
    format!("{SESSION_PREFIX}{id}")
}

const COLUMNS: &str = "id, name, profile, user_id, workdir, state, created_at, started_at, ended_at, exit_code, end_reason, agent_session_id, suspended_at, suspend_reason, freed_bytes, interrupted, git_repo, git_branch, git_base";

pub struct NewInstance<'a> {
    pub id: &'a str,
    pub user_id: i64,
    pub name: &'a str,
    pub profile: &'a str,
    pub workdir: &'a str,
    pub agent_session_id: Option<&'a str>,
    pub git: Option<&'a GitPlace>,
}

/// Where an instance started on a git branch works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPlace {
    pub repo: String,
    pub branch: String,
    pub base: Option<String>,
}

pub async fn insert(db: &Db, new: &NewInstance<'_>) -> Result<Instance, AppError> {
    sqlx::query_as(&format!(
        "INSERT INTO instances (id, user_id, name, profile, workdir, state, created_at, agent_session_id,
            git_repo, git_branch, git_base)
         VALUES (?, ?, ?, ?, ?, 'starting', ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
    ))
    .bind(new.id)
    .bind(new.user_id)
    .bind(new.name)
    .bind(new.profile)
    .bind(new.workdir)
    .bind(OffsetDateTime::now_utc())
    .bind(new.agent_session_id)
    .bind(new.git.map(|g| g.repo.as_str()))
    .bind(new.git.map(|g| g.branch.as_str()))
    .bind(new.git.and_then(|g| g.base.as_deref()))
    .fetch_all(db)
    .await
    .map_err(AppError::from)
    .and_then(crate::db::the_returned_row)
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Instance>, AppError> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM instances WHERE id = ?"))
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// The owners of those of `ids` that have a record, in one query (`ids` as a JSON array).
pub async fn owners(db: &Db, ids: &[&str]) -> Result<HashMap<String, i64>, AppError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = serde_json::to_string(ids).map_err(anyhow::Error::from)?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id, user_id FROM instances WHERE id IN (SELECT value FROM json_each(?))",
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Instances of `user_id`, or everyone's when `None`; newest first.
pub async fn list(db: &Db, user_id: Option<i64>) -> Result<Vec<Instance>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM instances WHERE ?1 IS NULL OR user_id = ?1 ORDER BY created_at DESC, id"
    ))
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

/// Deletes each user's ended instances beyond the `keep` most recently ended; how many went.
pub async fn prune_ended(db: &Db, keep: u32) -> Result<u64, AppError> {
    let done = sqlx::query(
        "DELETE FROM instances WHERE id IN (
            SELECT id FROM (
                SELECT id, ROW_NUMBER() OVER (
                    PARTITION BY user_id ORDER BY COALESCE(ended_at, created_at) DESC, id DESC
                ) AS newest
                FROM instances WHERE state NOT IN ('starting', 'running', 'suspended')
            ) WHERE newest > ?
        )",
    )
    .bind(keep)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn live(db: &Db) -> Result<Vec<Instance>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM instances WHERE state IN ('starting', 'running')"
    ))
    .fetch_all(db)
    .await?)
}

/// Live instances of one user and in total.
pub async fn live_counts(db: &Db, user_id: i64) -> Result<(i64, i64), AppError> {
    Ok(sqlx::query_as(
        "SELECT COALESCE(SUM(user_id = ?), 0), COUNT(*) FROM instances WHERE state IN ('starting', 'running')",
    )
    .bind(user_id)
    .fetch_one(db)
    .await?)
}

/// Keeps a running instance's current screen, for when it ends without a last look (a reboot).
pub async fn keep_screen(db: &Db, id: &str, screen: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE instances SET last_screen = ? WHERE id = ? AND state = 'running'")
        .bind(screen)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn mark_starting(db: &Db, id: &str) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE instances SET state = 'starting', suspended_at = NULL, suspend_reason = NULL,
             freed_bytes = NULL WHERE id = ?",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn mark_running(db: &Db, id: &str) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE instances SET state = 'running', started_at = ?, ended_at = NULL, exit_code = NULL,
             end_reason = NULL, last_screen = NULL WHERE id = ?",
    )
    .bind(OffsetDateTime::now_utc())
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Records that a live instance's process went to free memory; `false` if it was no longer live.
pub async fn mark_suspended(
    db: &Db,
    id: &str,
    suspension: &Suspension<'_>,
) -> Result<bool, AppError> {
    let done = sqlx::query(
        "UPDATE instances SET state = 'suspended', suspended_at = ?, suspend_reason = ?,
             freed_bytes = ?, cols = ?, rows = ?, last_screen = COALESCE(?, last_screen)
         WHERE id = ? AND state IN ('starting', 'running')",
    )
    .bind(OffsetDateTime::now_utc())
    .bind(suspension.reason)
    .bind(
        suspension
            .freed_bytes
            .map(|b| b.min(i64::MAX as u64) as i64),
    )
    .bind(suspension.size.map(|(cols, _)| cols))
    .bind(suspension.size.map(|(_, rows)| rows))
    .bind(suspension.screen)
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What a suspension records.
pub struct Suspension<'a> {
    pub reason: &'a str,
    pub freed_bytes: Option<u64>,
    pub screen: Option<&'a str>,
    /// The terminal's columns and rows, to come back at that size.
    pub size: Option<(u16, u16)>,
}

/// The size a suspended instance had, to resume at.
pub async fn suspended_size(db: &Db, id: &str) -> Result<Option<(u16, u16)>, AppError> {
    let row: Option<(Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT cols, rows FROM instances WHERE id = ?")
            .bind(id)
            .fetch_optional(db)
            .await?;
    Ok(row.and_then(|(cols, rows)| {
        Some((
            u16::try_from(cols?).ok()?.max(2),
            u16::try_from(rows?).ok()?.max(2),
        ))
    }))
}

/// Suspended instances, longest suspended first.
pub async fn suspended(db: &Db) -> Result<Vec<Instance>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM instances WHERE state = 'suspended' ORDER BY suspended_at, id"
    ))
    .fetch_all(db)
    .await?)
}

/// Queues input for an instance whose agent is not ready for it yet (suspended, resuming, or
/// resumed and still drawing), to be typed once it is; `false` if it ended.
pub async fn queue_input(db: &Db, id: &str, text: &str) -> Result<bool, AppError> {
    let done = sqlx::query(
        "UPDATE instances SET pending_input = json_insert(COALESCE(pending_input, '[]'), '$[#]', ?)
         WHERE id = ? AND state IN ('suspended', 'starting', 'running')",
    )
    .bind(text)
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes (and clears) the queued input, oldest first, so each piece is typed once: cleared only
/// if it is still what was read, so input queued meanwhile is taken next time, not lost.
pub async fn take_pending_input(db: &Db, id: &str) -> Result<Vec<String>, AppError> {
    loop {
        let queued: Option<String> =
            sqlx::query_scalar("SELECT pending_input FROM instances WHERE id = ?")
                .bind(id)
                .fetch_optional(db)
                .await?
                .flatten();
        let Some(queued) = queued else {
            return Ok(Vec::new());
        };
        let taken = sqlx::query(
            "UPDATE instances SET pending_input = NULL WHERE id = ? AND pending_input = ?",
        )
        .bind(id)
        .bind(&queued)
        .execute(db)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(serde_json::from_str(&queued).unwrap_or_default());
        }
    }
}

/// Records (or with `None` clears) what the last resume lost.
pub async fn set_interrupted(
    db: &Db,
    id: &str,
    interrupted: Option<&Interrupted>,
) -> Result<(), AppError> {
    let json = interrupted
        .map(serde_json::to_string)
        .transpose()
        .map_err(anyhow::Error::from)?;
    sqlx::query("UPDATE instances SET interrupted = ? WHERE id = ?")
        .bind(json)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Records the end of a live or suspended instance; `false` if it had already ended.
pub async fn mark_ended(
    db: &Db,
    id: &str,
    state: State,
    exit_code: Option<i32>,
    reason: &str,
    last_screen: Option<&str>,
) -> Result<bool, AppError> {
    let done = sqlx::query(
        "UPDATE instances SET state = ?, ended_at = ?, exit_code = ?, end_reason = ?,
             last_screen = COALESCE(?, last_screen), pending_input = NULL
         WHERE id = ? AND state IN ('starting', 'running', 'suspended')",
    )
    .bind(state)
    .bind(OffsetDateTime::now_utc())
    .bind(exit_code)
    .bind(reason)
    .bind(last_screen)
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn last_screen(db: &Db, id: &str) -> Result<Option<String>, AppError> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT last_screen FROM instances WHERE id = ?")
            .bind(id)
            .fetch_optional(db)
            .await?
            .flatten(),
    )
}

pub async fn rename(db: &Db, id: &str, name: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE instances SET name = ? WHERE id = ?")
        .bind(name)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete(db: &Db, id: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM instances WHERE id = ?")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_hook_token(db: &Db, id: &str, token_hash: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE instances SET hook_token_hash = ? WHERE id = ?")
        .bind(token_hash)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// The instance a hook token belongs to, if it is the current token of that instance.
pub async fn by_hook_token(
    db: &Db,
    id: &str,
    token_hash: &str,
) -> Result<Option<Instance>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM instances WHERE id = ? AND hook_token_hash = ? \
         AND user_id IN (SELECT id FROM users WHERE disabled = 0)"
    ))
    .bind(id)
    .bind(token_hash)
    .fetch_optional(db)
    .await?)
}

pub async fn set_agent_session(db: &Db, id: &str, session: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE instances SET agent_session_id = ? WHERE id = ?")
        .bind(session)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}
