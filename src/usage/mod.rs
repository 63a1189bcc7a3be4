//! What agents spend: tokens and money per instance, per account and per day, read from the
//! agents' own records with no proxy in the request path. Claude Code writes each reply's
//! usage into its transcript under the account's home; pocketdev follows those files as the
//! account, a few MiB at most per file per pass, remembering how far it read, so nothing is
//! read twice or counted twice after a restart, and nothing leaves the machine.

pub mod budgets;
pub mod pricing;
pub mod routes;
pub mod store;
pub mod transcript;

use std::collections::BTreeMap;
use std::io::{Read as _, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::config::Config;
use crate::db::Db;
use crate::instances::profiles::ProfileKind;
use crate::isolation::Isolation;
use crate::layout::Layout;

pub use routes::router;
use transcript::Reply;

/// At most this much of one transcript is read per pass; a busy one catches up over passes.
const READ_PER_PASS: u64 = 4 << 20;
/// Transcripts of instances that ended within this long are still read (their last lines).
const FOLLOW_AFTER_END_SECS: i64 = 3600;

pub struct Usage {
    db: Db,
    metrics: Arc<crate::monitor::metrics::Metrics>,
    config: Arc<Config>,
    layout: Arc<Layout>,
    isolation: Arc<Isolation>,
}

/// An instance whose usage is followed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Followed {
    pub id: String,
    pub user_id: i64,
    pub username: String,
    pub name: String,
    pub profile: String,
    pub agent_session_id: Option<String>,
}

impl Usage {
    pub fn new(
        db: Db,
        metrics: Arc<crate::monitor::metrics::Metrics>,
        config: Arc<Config>,
        layout: Arc<Layout>,
        isolation: Arc<Isolation>,
    ) -> Self {
        Self {
            db,
            metrics,
            config,
            layout,
            isolation,
        }
    }

    /// Whether a profile's usage can be measured (today: Claude Code's).
    pub fn measured(&self, profile: &str) -> bool {
        self.config
            .profiles
            .get(profile)
            .is_some_and(|p| p.kind == ProfileKind::Claude)
    }

    /// One pass over every followed instance.
    pub async fn pass(&self) -> anyhow::Result<()> {
        let since = OffsetDateTime::now_utc() - time::Duration::seconds(FOLLOW_AFTER_END_SECS);
        for instance in store::followed(&self.db, since).await? {
            if !self.measured(&instance.profile) {
                continue;
            }
            if let Err(e) = self.follow(&instance).await {
                tracing::debug!(instance = %instance.id, error = %e, "usage not read this pass");
            }
        }
        Ok(())
    }

    async fn follow(&self, instance: &Followed) -> anyhow::Result<()> {
        let identity = self.isolation.identity(instance.user_id);
        let home = self.layout.home(instance.user_id);
        let mut files = store::files(&self.db, &instance.id).await?;
        // The current conversation's transcript, once Claude Code has written it.
        if let Some(session) = instance.agent_session_id.clone().filter(|s| is_uuid(s))
            && !files
                .iter()
                .any(|f| f.path.ends_with(&format!("/{session}.jsonl")))
        {
            let home = home.clone();
            let found = crate::isolation::blocking_as(identity, move |acting| {
                find_transcript(home.path(acting), &session)
            })
            .await?;
            if let Some(path) = found {
                store::add_file(&self.db, &instance.id, &path).await?;
                files = store::files(&self.db, &instance.id).await?;
            }
        }
        for file in files {
            let home = home.clone();
            let relative = file.path.clone();
            let from = file.read_to as u64;
            let chunk = crate::isolation::blocking_as(identity, move |acting| {
                read_from(&home.path(acting).join(relative), from)
            })
            .await??;
            let Some((start, bytes)) = chunk else {
                continue;
            };
            let read = transcript::read(&bytes, file.last_message.clone());
            // A line longer than a pass can hold is no reply: pass over it.
            let consumed = if read.consumed == 0 && bytes.len() as u64 >= READ_PER_PASS {
                bytes.len()
            } else {
                read.consumed
            };
            if consumed == 0 {
                continue;
            }
            let priced = self.price(&read.replies);
            store::record(
                &self.db,
                instance,
                &file.path,
                start as i64 + consumed as i64,
                read.last_message.as_deref(),
                &priced,
            )
            .await?;
            for reply in &priced {
                self.metrics.count_usage(
                    &instance.username,
                    &reply.model,
                    &reply.tokens,
                    reply.cost_micros,
                );
            }
        }
        Ok(())
    }

    /// Each reply with its day and its cost at today's prices.
    fn price(&self, replies: &[Reply]) -> Vec<store::Counted> {
        let now = OffsetDateTime::now_utc();
        replies
            .iter()
            .map(|reply| {
                let price = pricing::price_of(&self.config.pricing, &reply.model);
                store::Counted {
                    day: day_of(reply.timestamp.as_deref(), now),
                    model: reply.model.clone(),
                    cost_micros: price.map_or(0, |p| pricing::cost_micros(p, &reply.tokens)),
                    unpriced: price.is_none(),
                    tokens: reply.tokens.clone(),
                }
            })
            .collect()
    }

    pub fn currency(&self) -> &str {
        &self.config.usage.currency
    }
}

/// Follows transcripts and holds budgets until shutdown, one pass per monitor interval.
pub async fn run(state: crate::state::AppState) {
    let every = std::time::Duration::from_secs(state.config.monitor.interval_secs.max(1));
    loop {
        if let Err(e) = state.usage.pass().await {
            tracing::warn!(error = %e, "reading agents' usage failed");
        }
        if let Err(e) = budgets::enforce(&state).await {
            tracing::warn!(error = %e, "holding budgets failed");
        }
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// The day a reply counts on: its own timestamp when that is plausible (written within the
/// last two days, not in the future), else today. UTC.
fn day_of(timestamp: Option<&str>, now: OffsetDateTime) -> String {
    let at = timestamp
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .filter(|t| *t <= now + time::Duration::hours(1) && *t >= now - time::Duration::days(2))
        .unwrap_or(now);
    day(at)
}

pub fn day(at: OffsetDateTime) -> String {
    let date = at.to_offset(time::UtcOffset::UTC).date();
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// `.claude/projects/<folder>/<session>.jsonl` below `home`, as a path relative to it.
fn find_transcript(home: &Path, session: &str) -> Option<String> {
    let file = format!("{session}.jsonl");
    let projects = home.join(".claude/projects");
    let dirs = std::fs::read_dir(&projects).ok()?;
    for dir in dirs.flatten() {
        let candidate = dir.path().join(&file);
        if std::fs::symlink_metadata(&candidate).is_ok_and(|m| m.is_file()) {
            let name = dir.file_name();
            return Some(format!(
                ".claude/projects/{}/{file}",
                name.to_string_lossy()
            ));
        }
    }
    None
}

/// What the file holds from `from` on (at most a pass's worth), with where that starts: `None`
/// when there is nothing new. A file that shrank was replaced: it is read again from the start.
/// Symlinks are not followed; only regular files are read.
fn read_from(path: &Path, from: u64) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        // Never through a symlink, never waiting on a FIFO.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let size = meta.len();
    let start = if size < from { 0 } else { from };
    if size == start {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(READ_PER_PASS).read_to_end(&mut bytes)?;
    Ok(Some((start, bytes)))
}

/// SpendTotals per kind of token and their cost.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct SpendTotals {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_write_tokens: i64,
    pub cache_read_tokens: i64,
    /// All four kinds together.
    pub tokens: i64,
    /// In the configured currency, at the prices in force when the replies were read.
    pub cost: f64,
    /// Tokens of models without a configured price (they cost nothing in `cost`).
    pub unpriced_tokens: i64,
}

impl SpendTotals {
    pub fn from_row(row: &store::Row) -> Self {
        let mut totals = Self::default();
        totals.add(row);
        totals
    }

    pub fn add(&mut self, row: &store::Row) {
        self.input_tokens += row.input_tokens;
        self.output_tokens += row.output_tokens;
        self.cache_write_tokens += row.cache_write_tokens;
        self.cache_read_tokens += row.cache_read_tokens;
        self.tokens +=
            row.input_tokens + row.output_tokens + row.cache_write_tokens + row.cache_read_tokens;
        self.cost = ((self.cost * 1e6).round() + row.cost_micros as f64) / 1e6;
        self.unpriced_tokens += row.unpriced_tokens;
    }
}

/// Rows summed by a key.
pub fn sum_by<K: Ord>(
    rows: &[store::Row],
    key: impl Fn(&store::Row) -> K,
) -> BTreeMap<K, SpendTotals> {
    let mut sums: BTreeMap<K, SpendTotals> = BTreeMap::new();
    for row in rows {
        sums.entry(key(row)).or_default().add(row);
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_counts_on_its_own_day_when_that_is_plausible() {
        let now = OffsetDateTime::parse(
            "2026-12-07T00:30:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(day_of(Some("2026-12-06T23:59:00.000Z"), now), "2026-12-06");
        assert_eq!(day_of(Some("2020-01-01T00:00:00Z"), now), "2026-12-07");
        assert_eq!(day_of(Some("2030-01-01T00:00:00Z"), now), "2026-12-07");
        assert_eq!(day_of(Some("yesterday"), now), "2026-12-07");
        assert_eq!(day_of(None, now), "2026-12-07");
    }

    #[test]
    fn a_transcript_is_read_from_where_it_stopped_and_again_when_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_from(&path, 4).unwrap(), Some((4, b"456789".to_vec())));
        assert_eq!(read_from(&path, 10).unwrap(), None);
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(read_from(&path, 10).unwrap(), Some((0, b"abc".to_vec())));
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(read_from(&link, 0).is_err());
        assert_eq!(read_from(&dir.path().join("none"), 0).unwrap(), None);
    }
}
