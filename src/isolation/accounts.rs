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
    comments: std::collections::HashMap<String, String>,
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
        let comments = passwd
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                Some(((*fields.first()?).to_owned(), (*fields.get(4)?).to_owned()))
            })
            .collect();
        let gids = group
            .lines()
            .filter_map(|line| line.split(':').nth(2)?.parse().ok())
            .collect();
        Ok(Self {
            users,
            comments,
            gids,
        })
    }

    pub fn user(&self, name: &str) -> Option<Identity> {
        self.users
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, uid, gid)| Identity { uid, gid })
    }

    /// The user's comment (GECOS) field.
    pub fn comment(&self, name: &str) -> Option<&str> {
        self.comments.get(name).map(String::as_str)
    }

    pub fn names_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> {
        self.users
            .iter()
            .map(|(n, _, _)| n.as_str())
            .filter(move |n| n.starts_with(prefix))
    }

    fn taken(&self, id: u32) -> bool {
        self.gids.contains(&id)
            || self.users.iter().any(|&(_, uid, _)| uid == id)
            || known_to_nss(id)
    }

    /// The first id from `from` up to `max` free as both a uid and a gid.
    pub fn free_id(&self, from: u32, max: u32) -> Option<u32> {
        (from..=max).find(|&id| !self.taken(id))
    }
}

/// Where the machine-wide accounts lock lives: a folder only root can write (never the
/// world-writable /run/lock, where anyone could hold the lock for ever).
const LOCK_DIR: &str = "/run/pocketdev-locks";
/// How long account creation or removal waits for another pocketdev process.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The gid of a group by name, as the name service knows it.
pub fn group_id(name: &str) -> anyhow::Result<u32> {
    #[allow(clippy::disallowed_methods)] // at start-up, before the server serves
    let output = std::process::Command::new("getent")
        .args(["group", name])
        .output()
        .context("cannot run getent")?;
    String::from_utf8_lossy(&output.stdout)
        .split(':')
        .nth(2)
        .and_then(|gid| gid.trim().parse().ok())
        .with_context(|| format!("no group named {name}"))
}

/// Whether the name service (LDAP, sssd, systemd's dynamic users…) knows `id` as a uid or a
/// gid, beyond the files read above: `getent` asks it the way every program will.
fn known_to_nss(id: u32) -> bool {
    let id = id.to_string();
    ["passwd", "group"].iter().any(|database| {
        #[allow(clippy::disallowed_methods)] // runs on a blocking thread, under the lock
        let answer = std::process::Command::new("getent")
            .args([*database, id.as_str()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        answer.is_ok_and(|status| status.success())
    })
}

/// Holds the machine-wide lock on account creation and removal.
pub struct AccountsLock {
    _file: std::fs::File,
}

impl AccountsLock {
    /// Waits until the lock is free, at most `LOCK_WAIT` (call from a blocking thread).
    pub fn acquire() -> anyhow::Result<Self> {
        Self::acquire_in(Path::new(LOCK_DIR), LOCK_WAIT)
    }

    #[allow(clippy::disallowed_methods)] // on a blocking thread: provisioning and removal
    fn acquire_in(dir: &Path, wait: Duration) -> anyhow::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
        let folder = rustix::fs::open(
            dir,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", dir.display()))?;
        let stat = rustix::fs::fstat(&folder)?;
        let me = rustix::process::geteuid().as_raw();
        if stat.st_uid != me || stat.st_mode & 0o022 != 0 {
            bail!(
                "{} must belong to the server's user and be writable by it alone (it is {:o}, owner {})",
                dir.display(),
                stat.st_mode & 0o7777,
                stat.st_uid
            );
        }
        let file = rustix::fs::openat(
            &folder,
            "accounts.lock",
            OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .with_context(|| format!("cannot open {}/accounts.lock", dir.display()))?;
        let deadline = Instant::now() + wait;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Self { _file: file.into() }),
                Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => bail!(
                    "another pocketdev process has held the accounts lock ({}/accounts.lock) for {} s",
                    dir.display(),
                    wait.as_secs()
                ),
                Err(e) => return Err(e).with_context(|| format!("cannot lock {}", dir.display())),
            }
        }
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
/// The comment (GECOS) of the Unix users this install creates: it names the install, so that a
/// second pocketdev server on the same host never takes another's users for its own.
pub fn comment(install: &str) -> String {
    format!("pocketdev account {install}")
}

pub fn create_user(name: &str, id: u32, home: &Path, install: &str) -> anyhow::Result<()> {
    let comment = comment(install);
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
            &comment,
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

/// A process's real and effective uid and whether it is a zombie, from the kernel.
fn status_of(pid: impl std::fmt::Display) -> Option<(u32, u32, bool)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let zombie = status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains("Z (zombie)"));
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let mut ids = line.split_whitespace().skip(1);
    let real = ids.next()?.parse().ok()?;
    let effective = ids.next()?.parse().ok()?;
    Some((real, effective, zombie))
}

/// Whether `pid` is a process whose real and effective uid are `uid` (read from the kernel,
/// never from what an account's tmux server says).
pub fn process_is_of(pid: u32, uid: u32) -> bool {
    status_of(pid).is_some_and(|(real, effective, _)| real == uid && effective == uid)
}

/// The live processes of `uid` (real or effective). A zombie is dead already; only its parent
/// can make it go.
pub fn processes_of(uid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            status_of(pid).is_some_and(|(real, effective, zombie)| {
                !zombie && (real == uid || effective == uid)
            })
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
            comments: Default::default(),
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

    #[test]
    fn the_accounts_lock_waits_with_a_deadline_in_a_folder_only_its_owner_writes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("locks");
        let held = AccountsLock::acquire_in(&dir, Duration::from_secs(1)).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // Someone holding it for ever costs a waiting caller its deadline, not its thread.
        let err = AccountsLock::acquire_in(&dir, Duration::from_millis(200))
            .err()
            .expect("the lock is held");
        assert!(
            err.to_string().contains("has held the accounts lock"),
            "{err}"
        );
        drop(held);
        drop(AccountsLock::acquire_in(&dir, Duration::from_secs(1)).unwrap());

        // A folder others may write to (where anyone could plant or hold the lock) is refused,
        // and so is a link in its place.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = AccountsLock::acquire_in(&dir, Duration::from_secs(1))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("writable by it alone"), "{err}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(AccountsLock::acquire_in(&link, Duration::from_secs(1)).is_err());
    }
}
