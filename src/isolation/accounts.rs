//! Unix users for accounts: created with `groupadd`/`useradd` from a configured uid range,
//! recorded in the database and never given out twice, removed with `userdel` after every
//! process of theirs is killed.
//!
//! `useradd` and friends lock the passwd files and fail when another one runs, so creation and
//! removal hold a file lock that every pocketdev process on the machine shares.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use time::OffsetDateTime;

use super::Identity;
use crate::db::Db;

/// An account's Unix user as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixAccount {
    pub name: String,
    pub identity: Identity,
}

pub async fn live(db: &Db, user_id: i64) -> anyhow::Result<Option<UnixAccount>> {
    let row: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT uid, gid, name FROM unix_accounts WHERE user_id = ? AND removed_at IS NULL",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(uid, gid, name)| UnixAccount {
        name,
        identity: Identity {
            uid: uid as u32,
            gid: gid as u32,
        },
    }))
}

/// The lowest uid at or above `min` that no record, past or present, has used.
pub async fn next_free_uid(db: &Db, min: u32) -> anyhow::Result<u32> {
    let highest: Option<i64> = sqlx::query_scalar("SELECT MAX(uid) FROM unix_accounts")
        .fetch_one(db)
        .await?;
    Ok(highest.map_or(min, |uid| (uid as u32 + 1).max(min)))
}

pub async fn record(db: &Db, user_id: i64, account: &UnixAccount) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO unix_accounts (uid, gid, name, user_id, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(i64::from(account.identity.uid))
    .bind(i64::from(account.identity.gid))
    .bind(&account.name)
    .bind(user_id)
    .bind(OffsetDateTime::now_utc())
    .execute(db)
    .await?;
    Ok(())
}

pub async fn mark_removed(db: &Db, uid: u32) -> anyhow::Result<()> {
    sqlx::query("UPDATE unix_accounts SET removed_at = ? WHERE uid = ?")
        .bind(OffsetDateTime::now_utc())
        .bind(i64::from(uid))
        .execute(db)
        .await?;
    Ok(())
}

/// Names and ids in the system's passwd and group files.
#[derive(Default)]
pub struct SystemIds {
    users: Vec<(String, u32, u32)>,
    gids: HashSet<u32>,
}

impl SystemIds {
    pub fn read() -> anyhow::Result<Self> {
        let passwd = std::fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
        let group = std::fs::read_to_string("/etc/group").context("cannot read /etc/group")?;
        let users = passwd
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?.to_owned();
                let uid = fields.nth(1)?.parse().ok()?;
                let gid = fields.next()?.parse().ok()?;
                Some((name, uid, gid))
            })
            .collect();
        let gids = group
            .lines()
            .filter_map(|line| line.split(':').nth(2)?.parse().ok())
            .collect();
        Ok(Self { users, gids })
    }

    pub fn user(&self, name: &str) -> Option<Identity> {
        self.users
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, uid, gid)| Identity { uid, gid })
    }

    pub fn names_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> {
        self.users
            .iter()
            .map(|(n, _, _)| n.as_str())
            .filter(move |n| n.starts_with(prefix))
    }

    fn taken(&self, id: u32) -> bool {
        self.gids.contains(&id) || self.users.iter().any(|&(_, uid, _)| uid == id)
    }

    /// The first id from `from` up to `max` free as both a uid and a gid.
    pub fn free_id(&self, from: u32, max: u32) -> Option<u32> {
        (from..=max).find(|&id| !self.taken(id))
    }
}

/// Holds the machine-wide lock on account creation and removal.
pub struct AccountsLock {
    _file: std::fs::File,
}

impl AccountsLock {
    /// Blocks until the lock is free (call from a blocking thread).
    pub fn acquire() -> anyhow::Result<Self> {
        let dir = if Path::new("/run/lock").is_dir() {
            PathBuf::from("/run/lock")
        } else {
            std::env::temp_dir()
        };
        let path = dir.join("pocketdev-accounts.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

/// The system tools live in /usr/sbin, which a service's PATH may lack.
fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

#[allow(clippy::disallowed_methods)] // account tools run on a blocking thread, under the lock
fn run(name: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = std::process::Command::new(tool(name))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .with_context(|| format!("cannot run {name} (install the passwd package)"))?;
    if !output.status.success() {
        bail!(
            "{name} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Creates the Unix user `name` with `id` as its uid and its own group's gid (under the lock).
pub fn create_user(name: &str, id: u32, home: &Path) -> anyhow::Result<()> {
    let id = id.to_string();
    let home = home.to_string_lossy();
    run("groupadd", &["--gid", &id, name])?;
    let created = run(
        "useradd",
        &[
            "--uid",
            &id,
            "--gid",
            &id,
            "--no-create-home",
            "--home-dir",
            &home,
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "pocketdev account",
            name,
        ],
    );
    if created.is_err() {
        let _ = run("groupdel", &[name]);
    }
    created
}

/// Removes the Unix user `name` and its group (under the lock); gone already is fine.
pub fn remove_user(name: &str) -> anyhow::Result<()> {
    let ids = SystemIds::read()?;
    if ids.user(name).is_some() {
        // Forced: every live process of the account is gone (the caller killed them); what
        // userdel would still find are zombies waiting for their parent.
        run("userdel", &["--force", name])?;
    }
    // userdel removes a user's own group on most systems; make sure.
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    if groups.lines().any(|l| l.split(':').next() == Some(name)) {
        run("groupdel", &[name])?;
    }
    Ok(())
}

/// Live processes whose real or effective uid is `uid`.
pub fn processes_of(uid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| {
                    // A zombie is dead already; only its parent can make it go.
                    if status
                        .lines()
                        .any(|l| l.starts_with("State:") && l.contains("Z (zombie)"))
                    {
                        return Some(false);
                    }
                    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
                    let mut ids = line.split_whitespace().skip(1);
                    let real: u32 = ids.next()?.parse().ok()?;
                    let effective: u32 = ids.next()?.parse().ok()?;
                    Some(real == uid || effective == uid)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Kills every process of `uid` until none is left (a fork loop included), or gives up after
/// `deadline`; answers how many remain.
pub fn kill_all(uid: u32, deadline: Duration) -> usize {
    let until = Instant::now() + deadline;
    loop {
        let pids = processes_of(uid);
        if pids.is_empty() || Instant::now() > until {
            return pids.len();
        }
        for pid in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// Gives a folder tree to an account, never following links (`lchown` semantics).
pub fn chown_tree(root: &Path, identity: Identity) -> anyhow::Result<()> {
    use std::os::unix::fs::lchown;
    lchown(root, Some(identity.uid), Some(identity.gid))
        .with_context(|| format!("cannot give {} to uid {}", root.display(), identity.uid))?;
    let meta = std::fs::symlink_metadata(root)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(root)? {
            chown_tree(&entry?.path(), identity)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ids_skip_users_and_groups() {
        let ids = SystemIds {
            users: vec![("a".into(), 70_000, 70_000), ("b".into(), 70_002, 100)],
            gids: [70_000, 70_001].into(),
        };
        assert_eq!(ids.free_id(70_000, 70_010), Some(70_003));
        assert_eq!(ids.free_id(70_000, 70_002), None);
        assert_eq!(
            ids.user("b"),
            Some(Identity {
                uid: 70_002,
                gid: 100
            })
        );
    }
}
