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

#[cfg(test)]
mod tests {
    use super::*;

    /// The suspension migration rebuilds `instances` inside the migrator's transaction, where
    /// foreign keys stay on: what refers to an instance must survive it.
    #[tokio::test]
    async fn rebuilding_instances_keeps_what_refers_to_them() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options(&url).unwrap().create_if_missing(true))
            .await
            .unwrap();
        // The database as it was before suspension: migrations up to 9.
        let earlier = dir.path().join("earlier");
        std::fs::create_dir(&earlier).unwrap();
        for migration in MIGRATOR.iter().filter(|m| m.version < 10) {
            let name = format!("{:04}_{}.sql", migration.version, migration.description);
            std::fs::write(earlier.join(name), migration.sql.as_bytes()).unwrap();
        }
        Migrator::new(earlier.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        for sql in [
            "INSERT INTO users (username, password_hash, role, created_at) VALUES ('ann', 'x', 'user', '2026-01-01T00:00:00Z')",
            "INSERT INTO instances (id, user_id, name, profile, workdir, state, created_at, agent_session_id, last_screen)
             VALUES ('i1', 1, 'agent', 'shell', '', 'running', '2026-01-01T00:00:00Z', 's1', 'screen')",
            "INSERT INTO push_mutes (instance_id, user_id) VALUES ('i1', 1)",
            "INSERT INTO push_action_tokens (token_hash, instance_id, user_id, choices, expires_at)
             VALUES ('t', 'i1', 1, '[]', '2026-01-02T00:00:00Z')",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }

        MIGRATOR.run(&pool).await.unwrap();
        let kept: (String, String, String) = sqlx::query_as(
            "SELECT state, agent_session_id, last_screen FROM instances WHERE id = 'i1'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(kept, ("running".into(), "s1".into(), "screen".into()));
        for table in ["push_mutes", "push_action_tokens"] {
            let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(rows, 1, "{table} kept its row");
        }
        sqlx::query("UPDATE instances SET state = 'suspended' WHERE id = 'i1'")
            .execute(&pool)
            .await
            .expect("the new state is allowed");
        // The foreign keys still hold: deleting the instance takes its rows with it.
        sqlx::query("DELETE FROM instances WHERE id = 'i1'")
            .execute(&pool)
            .await
            .unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM push_mutes")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
    }
}
