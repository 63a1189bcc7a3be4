//! The SQLite store: connection pool with WAL, foreign keys and a busy timeout; embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub type Db = SqlitePool;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

fn options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    Ok(SqliteConnectOptions::from_str(url)
        .with_context(|| format!("invalid database URL {url}"))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5)))
}

/// Opens (creating if needed) the database and applies pending migrations.
/// The row an `INSERT … RETURNING` gave, read with `fetch_all`: only a statement run to its end
/// has committed (a failed commit, such as on a full disk, surfaces there), so a write is never
/// acknowledged before it is stored.
pub fn the_returned_row<T>(rows: Vec<T>) -> Result<T, crate::error::AppError> {
    rows.into_iter().next().ok_or_else(|| {
        crate::error::AppError::Internal(anyhow::anyhow!("the statement returned no row"))
    })
}

pub async fn connect_and_migrate(url: &str) -> anyhow::Result<Db> {
    let options = options(url)?;
    create_private(options.get_filename())?;
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options.create_if_missing(true))
        .await
        .with_context(|| format!("cannot open database {url}"))?;
    MIGRATOR
        .run(&pool)
        .await
        .context("cannot apply database migrations")?;
    Ok(pool)
}

/// Creates the database file 0600 before SQLite does; its WAL and SHM files take the same mode.
fn create_private(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str().is_empty() || path.to_str() == Some(":memory:") || path.exists() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create database file {}", path.display()))?;
    Ok(())
}

/// What `doctor` reports about the database, without creating or migrating it.
#[derive(Debug, PartialEq, Eq)]
pub enum DbStatus {
    Missing,
    Current { applied: usize },
    Pending { applied: usize, total: usize },
}

pub async fn status(url: &str) -> anyhow::Result<DbStatus> {
    let opts = options(url)?;
    if !opts.get_filename().exists() {
        return Ok(DbStatus::Missing);
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .with_context(|| format!("cannot open database {url}"))?;
    let has_table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(&pool)
    .await?;
    let applied = if has_table.is_some() {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(&pool)
            .await? as usize
    } else {
        0
    };
    pool.close().await;
    let total = MIGRATOR.iter().count();
    Ok(if applied >= total {
        DbStatus::Current { applied }
    } else {
        DbStatus::Pending { applied, total }
    })
}
