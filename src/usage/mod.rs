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
use transcript::{JsonlSource, Reply};

/// How a profile's usage is read (`[profiles.<id>.usage]`, `reader = ...`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "reader", rename_all = "lowercase")]
pub enum UsageSource {
    /// Claude Code's transcripts (the default for `kind = "claude"`).
    Claude,
    /// Not measured: the app says so rather than showing 0 (the default for other profiles).
    None,
    /// JSON lines that other agents write (see [`JsonlSource`]).
    Jsonl(JsonlSource),
}

impl UsageSource {
    /// Checks a source: relative file patterns that stay below the home, pointers that are
    /// pointers, at least one token figure.
    pub fn validate(&self) -> Result<(), String> {
        let Self::Jsonl(source) = self else {
            return Ok(());
        };
        let pattern = &source.files;
        if pattern.is_empty()
            || pattern.starts_with('/')
            || pattern
                .split('/')
                .any(|part| part.is_empty() || part == "..")
        {
            return Err("usage.files must be a path below the account's home, without `..`".into());
        }
        let pointers = [
            &source.input,
            &source.output,
            &source.cache_write,
            &source.cache_read,
        ];
        if pointers.iter().all(|p| p.is_none()) {
            return Err(
                "usage needs at least one of input, output, cache_write, cache_read".into(),
            );
        }
        for pointer in pointers
            .into_iter()
            .chain([&source.model, &source.id])
            .flatten()
        {
            if !pointer.starts_with('/') {
                return Err(format!(
                    "usage: `{pointer}` is not a JSON pointer (they start with /)"
                ));
            }
        }
        Ok(())
    }
}

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
    pub started_at: Option<OffsetDateTime>,
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

    /// How a profile's usage is read.
    pub fn source(&self, profile: &str) -> UsageSource {
        match self.config.profiles.get(profile) {
            Some(p) => p.usage.clone().unwrap_or(if p.kind == ProfileKind::Claude {
                UsageSource::Claude
            } else {
                UsageSource::None
            }),
            None => UsageSource::None,
        }
    }

    /// Whether a profile's usage can be measured.
    pub fn measured(&self, profile: &str) -> bool {
        self.source(profile) != UsageSource::None
    }

    /// One pass over every followed instance.
    pub async fn pass(&self) -> anyhow::Result<()> {
        let since = OffsetDateTime::now_utc() - time::Duration::seconds(FOLLOW_AFTER_END_SECS);
        let followed = store::followed(&self.db, since).await?;
        for instance in &followed {
            let source = self.source(&instance.profile);
            if source == UsageSource::None {
                continue;
            }
            if let Err(e) = self.follow(instance, &source, &followed).await {
                tracing::debug!(instance = %instance.id, error = %e, "usage not read this pass");
            }
        }
        Ok(())
    }

    async fn follow(
        &self,
        instance: &Followed,
        source: &UsageSource,
        followed: &[Followed],
    ) -> anyhow::Result<()> {
        let identity = self.isolation.identity(instance.user_id);
        let home = self.layout.home(instance.user_id);
        let mut files = store::files(&self.db, &instance.id).await?;
        // Another agent's files: each belongs to the instance of its profile that started last
        // before the file was made, and is followed by that one only.
        if let (UsageSource::Jsonl(jsonl), Some(started)) = (source, instance.started_at) {
            let pattern = jsonl.files.clone();
            let since = std::time::SystemTime::from(started) - std::time::Duration::from_secs(5);
            let home = home.clone();
            let found = crate::isolation::blocking_as(identity, move |acting| {
                matching_files(home.path(acting), &pattern, since)
            })
            .await?;
            for (path, born) in found {
                let owner = followed
                    .iter()
                    .filter(|f| f.user_id == instance.user_id && f.profile == instance.profile)
                    .filter(|f| {
                        f.started_at.is_some_and(|s| {
                            std::time::SystemTime::from(s)
                                <= born + std::time::Duration::from_secs(2)
                        })
                    })
                    .max_by_key(|f| f.started_at);
                if owner.is_some_and(|o| o.id == instance.id)
                    && !files.iter().any(|f| f.path == path)
                    && !store::claimed(&self.db, instance.user_id, &path).await?
                {
                    store::add_file(&self.db, &instance.id, &path).await?;
                }
            }
            files = store::files(&self.db, &instance.id).await?;
        }
        // The current conversation's transcript, once Claude Code has written it.
        if *source == UsageSource::Claude
            && let Some(session) = instance.agent_session_id.clone().filter(|s| is_uuid(s))
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
            let read = match source {
                UsageSource::Jsonl(jsonl) => {
                    transcript::read_with(&bytes, file.last_message.clone(), |line| {
                        transcript::reply_at(line, jsonl)
                    })
                }
                _ => transcript::read(&bytes, file.last_message.clone()),
            };
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

/// Regular files below `home` that match `pattern` (`*` for any name within one folder) and
/// changed since `since`, as paths relative to `home` with when each was made (or, where the
/// file system does not say, last changed); at most 1,000 names looked at per folder.
fn matching_files(
    home: &Path,
    pattern: &str,
    since: std::time::SystemTime,
) -> Vec<(String, std::time::SystemTime)> {
    let parts: Vec<&str> = pattern.split('/').collect();
    let mut found = Vec::new();
    let mut walk = vec![(home.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, relative, depth)) = walk.pop() {
        let Some(part) = parts.get(depth) else {
            continue;
        };
        let last = depth + 1 == parts.len();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten().take(1000) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !glob_match(part, &name) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
                continue;
            };
            let path = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            if last {
                if meta.is_file()
                    && let Ok(changed) = meta.modified()
                    && changed >= since
                {
                    found.push((path, meta.created().unwrap_or(changed)));
                }
            } else if meta.is_dir() {
                walk.push((entry.path(), path, depth + 1));
            }
        }
    }
    found.sort();
    found
}

/// `*` matches any run of characters; everything else itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob_match(rest, &tail[i..]))
        }
    }
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
    fn file_patterns_match_within_one_folder_each() {
        assert!(glob_match("*.jsonl", "rollout-1.jsonl"));
        assert!(glob_match("rollout-*-x.jsonl", "rollout-2026-x.jsonl"));
        assert!(!glob_match("*.jsonl", "notes.txt"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("s/2026/12")).unwrap();
        std::fs::write(dir.path().join("s/2026/12/a.jsonl"), "").unwrap();
        std::fs::write(dir.path().join("s/2026/12/b.txt"), "").unwrap();
        std::fs::write(dir.path().join("s/top.jsonl"), "").unwrap();
        let since = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        let found = matching_files(dir.path(), "s/*/*/*.jsonl", since);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "s/2026/12/a.jsonl");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(matching_files(dir.path(), "s/*/*/*.jsonl", later).is_empty());
    }

    #[test]
    fn usage_sources_are_read_from_toml_and_checked() {
        let source: UsageSource = toml::from_str(
            "reader = \"jsonl\"\nfiles = \".agent/*.jsonl\"\noutput = \"/usage/out\"",
        )
        .unwrap();
        assert!(source.validate().is_ok());
        let typo = "reader = \"jsonl\"\nfiles = \"x\"\nouput = \"/o\"";
        assert!(toml::from_str::<UsageSource>(typo).is_err());
        let escaping: UsageSource =
            toml::from_str("reader = \"jsonl\"\nfiles = \"../x\"\noutput = \"/o\"").unwrap();
        assert!(escaping.validate().is_err());
        let none: UsageSource = toml::from_str("reader = \"none\"").unwrap();
        assert_eq!(none, UsageSource::None);
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
