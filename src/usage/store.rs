//! The usage tables: tokens and cost per instance, day and model (`usage_daily`), and how far
//! each transcript was read (`usage_files`). A pass's replies and the new read position go in
//! one transaction, so a crash between them cannot count a reply twice.

use time::OffsetDateTime;

use super::Followed;
use super::transcript::Tokens;
use crate::db::Db;
use crate::error::AppError;

/// Instances whose transcripts are read: live ones, and those that ended lately.
pub async fn followed(db: &Db, ended_since: OffsetDateTime) -> Result<Vec<Followed>, AppError> {
    Ok(sqlx::query_as(
        "SELECT i.id, i.user_id, u.username, i.name, i.profile, i.agent_session_id, i.started_at
         FROM instances i JOIN users u ON u.id = i.user_id
         WHERE i.state IN ('starting', 'running') OR i.ended_at >= ?",
    )
    .bind(ended_since)
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct File {
    pub path: String,
    pub read_to: i64,
    pub last_message: Option<String>,
}

pub async fn files(db: &Db, instance_id: &str) -> Result<Vec<File>, AppError> {
    Ok(sqlx::query_as(
        "SELECT path, read_to, last_message FROM usage_files WHERE instance_id = ? ORDER BY rowid",
    )
    .bind(instance_id)
    .fetch_all(db)
    .await?)
}

/// Whether an instance of the account follows `path` already.
pub async fn claimed(db: &Db, user_id: i64, path: &str) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM usage_files f JOIN instances i ON i.id = f.instance_id
         WHERE i.user_id = ? AND f.path = ?",
    )
    .bind(user_id)
    .bind(path)
    .fetch_one(db)
    .await?
        > 0)
}

pub async fn add_file(db: &Db, instance_id: &str, path: &str) -> Result<(), AppError> {
    sqlx::query("INSERT OR IGNORE INTO usage_files (instance_id, path) VALUES (?, ?)")
        .bind(instance_id)
        .bind(path)
        .execute(db)
        .await?;
    Ok(())
}

/// A reply, priced and dated.
#[derive(Debug, Clone)]
pub struct Counted {
    pub day: String,
    pub model: String,
    pub tokens: Tokens,
    pub cost_micros: i64,
    pub unpriced: bool,
}

/// Adds `replies` and moves the file's read position to `read_to`, at once.
pub async fn record(
    db: &Db,
    instance: &Followed,
    path: &str,
    read_to: i64,
    last_message: Option<&str>,
    replies: &[Counted],
) -> Result<(), AppError> {
    let mut tx = db.begin().await?;
    let (mut tokens, mut cost) = (0i64, 0i64);
    for reply in replies {
        let t = &reply.tokens;
        let total = t.total() as i64;
        tokens += total;
        cost += reply.cost_micros;
        sqlx::query(
            "INSERT INTO usage_daily (instance_id, user_id, instance_name, day, model, input_tokens,
                 output_tokens, cache_write_tokens, cache_read_tokens, replies, cost_micros, unpriced_tokens)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
             ON CONFLICT (instance_id, day, model) DO UPDATE SET
                 instance_name = excluded.instance_name,
                 input_tokens = input_tokens + excluded.input_tokens,
                 output_tokens = output_tokens + excluded.output_tokens,
                 cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
                 cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
                 replies = replies + 1,
                 cost_micros = cost_micros + excluded.cost_micros,
                 unpriced_tokens = unpriced_tokens + excluded.unpriced_tokens",
        )
        .bind(&instance.id)
        .bind(instance.user_id)
        .bind(&instance.name)
        .bind(&reply.day)
        .bind(&reply.model)
        .bind(t.input as i64)
        .bind(t.output as i64)
        .bind(t.cache_write as i64)
        .bind(t.cache_read as i64)
        .bind(reply.cost_micros)
        .bind(if reply.unpriced { total } else { 0 })
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE usage_files SET read_to = ?, last_message = ?, tokens = tokens + ?,
             cost_micros = cost_micros + ?
         WHERE instance_id = ? AND path = ?",
    )
    .bind(read_to)
    .bind(last_message)
    .bind(tokens)
    .bind(cost)
    .bind(&instance.id)
    .bind(path)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One row of `usage_daily`, with its owner's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub instance_id: String,
    pub instance_name: String,
    pub user_id: i64,
    pub username: String,
    pub day: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_write_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost_micros: i64,
    pub unpriced_tokens: i64,
}

const ROW: &str = "SELECT d.instance_id, d.instance_name, d.user_id, u.username, d.day, d.model,
    d.input_tokens, d.output_tokens, d.cache_write_tokens, d.cache_read_tokens, d.cost_micros,
    d.unpriced_tokens FROM usage_daily d JOIN users u ON u.id = d.user_id";

/// Rows from `since` (a day, inclusive) on; one account's, or everyone's.
pub async fn rows(db: &Db, user_id: Option<i64>, since: &str) -> Result<Vec<Row>, AppError> {
    let rows = match user_id {
        Some(user) => {
            sqlx::query_as(&format!(
                "{ROW} WHERE d.user_id = ? AND d.day >= ? ORDER BY d.day"
            ))
            .bind(user)
            .bind(since)
            .fetch_all(db)
            .await?
        }
        None => {
            sqlx::query_as(&format!("{ROW} WHERE d.day >= ? ORDER BY d.day"))
                .bind(since)
                .fetch_all(db)
                .await?
        }
    };
    Ok(rows)
}

/// One instance's rows, every day.
pub async fn instance_rows(db: &Db, instance_id: &str) -> Result<Vec<Row>, AppError> {
    Ok(
        sqlx::query_as(&format!("{ROW} WHERE d.instance_id = ? ORDER BY d.day"))
            .bind(instance_id)
            .fetch_all(db)
            .await?,
    )
}

/// The tokens and cost of one conversation's transcript, if it was read.
pub async fn conversation(
    db: &Db,
    instance_id: &str,
    session: &str,
) -> Result<Option<(i64, i64)>, AppError> {
    Ok(sqlx::query_as(
        "SELECT tokens, cost_micros FROM usage_files WHERE instance_id = ? AND path LIKE ?",
    )
    .bind(instance_id)
    .bind(format!("%/{session}.jsonl"))
    .fetch_optional(db)
    .await?)
}
