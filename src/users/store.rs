//! SQL for accounts.

use time::OffsetDateTime;

use super::{Role, User};
use crate::db::Db;
use crate::error::AppError;

const COLUMNS: &str = "id, username, role, disabled, created_at, last_login_at";

pub async fn insert(
    db: &Db,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<User, AppError> {
    let user = sqlx::query_as::<_, User>(&format!(
        "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?) RETURNING {COLUMNS}"
    ))
    .bind(username)
    .bind(password_hash)
    .bind(role)
    .bind(OffsetDateTime::now_utc())
    .fetch_all(db)
    .await?;
    crate::db::the_returned_row(user)
}

pub async fn by_id(db: &Db, id: i64) -> Result<Option<User>, AppError> {
    Ok(
        sqlx::query_as::<_, User>(&format!("SELECT {COLUMNS} FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

pub async fn by_username(db: &Db, username: &str) -> Result<Option<User>, AppError> {
    Ok(
        sqlx::query_as::<_, User>(&format!("SELECT {COLUMNS} FROM users WHERE username = ?"))
            .bind(username)
            .fetch_optional(db)
            .await?,
    )
}

/// The user and their password hash, for sign-in.
pub async fn credentials(db: &Db, username: &str) -> Result<Option<(User, String)>, AppError> {
    let Some(user) = by_username(db, username).await? else {
        return Ok(None);
    };
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
        .bind(user.id)
        .fetch_one(db)
        .await?;
    Ok(Some((user, hash)))
}

pub async fn password_hash(db: &Db, id: i64) -> Result<Option<String>, AppError> {
    Ok(
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

pub async fn list(db: &Db) -> Result<Vec<User>, AppError> {
    Ok(
        sqlx::query_as::<_, User>(&format!("SELECT {COLUMNS} FROM users ORDER BY id"))
            .fetch_all(db)
            .await?,
    )
}

pub async fn count(db: &Db) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db)
        .await?)
}

pub async fn count_active_admins(db: &Db) -> Result<i64, AppError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0")
            .fetch_one(db)
            .await?,
    )
}

pub async fn set_password(db: &Db, id: i64, password_hash: &str) -> Result<(), AppError> {
    sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
        .bind(password_hash)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_role(db: &Db, id: i64, role: Role) -> Result<(), AppError> {
    sqlx::query("UPDATE users SET role = ? WHERE id = ?")
        .bind(role)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_disabled(db: &Db, id: i64, disabled: bool) -> Result<(), AppError> {
    sqlx::query("UPDATE users SET disabled = ? WHERE id = ?")
        .bind(disabled)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn touch_login(db: &Db, id: i64) -> Result<(), AppError> {
    sqlx::query("UPDATE users SET last_login_at = ? WHERE id = ?")
        .bind(OffsetDateTime::now_utc())
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete(db: &Db, id: i64) -> Result<bool, AppError> {
    let done = sqlx::query("DELETE FROM users WHERE id = ?")
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}
