//! SQL for secrets.

use time::OffsetDateTime;

use crate::db::Db;
use crate::error::AppError;

#[derive(Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SecretInfo {
    pub name: String,
    /// The last characters of the value, to tell keys apart.
    pub hint: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
pub struct SealedSecret {
    pub name: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

pub async fn list(db: &Db, user_id: i64) -> Result<Vec<SecretInfo>, AppError> {
    Ok(
        sqlx::query_as(
            "SELECT name, hint, updated_at FROM secrets WHERE user_id = ? ORDER BY name",
        )
        .bind(user_id)
        .fetch_all(db)
        .await?,
    )
}

pub async fn sealed(db: &Db, user_id: i64) -> Result<Vec<SealedSecret>, AppError> {
    Ok(
        sqlx::query_as("SELECT name, nonce, ciphertext FROM secrets WHERE user_id = ?")
            .bind(user_id)
            .fetch_all(db)
            .await?,
    )
}

pub async fn upsert(
    db: &Db,
    user_id: i64,
    name: &str,
    nonce: &[u8],
    ciphertext: &[u8],
    hint: &str,
) -> Result<SecretInfo, AppError> {
    sqlx::query_as(
        "INSERT INTO secrets (user_id, name, nonce, ciphertext, hint, updated_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (user_id, name) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext,
             hint = excluded.hint, updated_at = excluded.updated_at
         RETURNING name, hint, updated_at",
    )
    .bind(user_id)
    .bind(name)
    .bind(nonce)
    .bind(ciphertext)
    .bind(hint)
    .bind(OffsetDateTime::now_utc())
    .fetch_all(db)
    .await
    .map_err(AppError::from)
    .and_then(crate::db::the_returned_row)
}

pub async fn delete(db: &Db, user_id: i64, name: &str) -> Result<bool, AppError> {
    let done = sqlx::query("DELETE FROM secrets WHERE user_id = ? AND name = ?")
        .bind(user_id)
        .bind(name)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}
