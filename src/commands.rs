//! Operations the command line runs against a server's data: accounts, backups and `doctor`.

use std::path::Path;

use anyhow::Context;

use crate::config::Config;
use crate::db::{self, DbStatus};
use crate::error::AppError;
use crate::layout::Layout;
use crate::users::{self, Role, User};

async fn open(config: &Config) -> anyhow::Result<(Layout, db::Db)> {
    let layout = Layout::prepare(&config.data_dir)?;
    let pool = db::connect_and_migrate(&config.database_url_in(&layout)).await?;
    Ok((layout, pool))
}

/// Writes a consistent copy of the database to `to` (which must not exist), even while the
/// server writes to it: SQLite's `VACUUM INTO` reads one snapshot.
pub async fn backup_db(config: &Config, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        anyhow::bail!("{} already exists; give a new file", to.display());
    }
    let target = to
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("the backup path must be valid UTF-8"))?;
    let (_, pool) = open(config).await?;
    sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&pool)
        .await
        .with_context(|| format!("cannot copy the database to {}", to.display()))?;
    pool.close().await;
    Ok(())
}

/// Records what the command line did in the audit log.
async fn audit(pool: &db::Db, action: &str, user: &User, detail: serde_json::Value) {
    let event = crate::audit::Event {
        action,
        target: Some(format!("user:{}:{}", user.id, user.username)),
        detail: Some(detail),
        ..Default::default()
    };
    crate::audit::record(pool, event).await;
}

async fn find(pool: &db::Db, name: &str) -> anyhow::Result<User> {
    let name = users::normalize_username(name).map_err(AppError::into_anyhow)?;
    users::store::by_username(pool, &name)
        .await
        .map_err(AppError::into_anyhow)?
        .ok_or_else(|| anyhow::anyhow!("no user named `{name}`"))
}

/// Creates an account; returns it and the password when one was generated.
pub async fn user_add(
    config: &Config,
    name: &str,
    admin: bool,
    password: Option<String>,
) -> anyhow::Result<(User, Option<String>)> {
    let (layout, pool) = open(config).await?;
    let generated = password.is_none().then(users::generate_password);
    let password = password.or_else(|| generated.clone()).unwrap_or_default();
    let role = if admin { Role::Admin } else { Role::User };
    let user = users::create_account(
        &pool,
        &layout,
        name,
        &password,
        role,
        config.auth.min_password_length,
    )
    .await
    .map_err(AppError::into_anyhow)?;
    audit(
        &pool,
        "user.create",
        &user,
        serde_json::json!({"via": "cli", "role": role}),
    )
    .await;
    pool.close().await;
    Ok((user, generated))
}

pub async fn user_list(config: &Config) -> anyhow::Result<Vec<User>> {
    let (_, pool) = open(config).await?;
    let list = users::store::list(&pool)
        .await
        .map_err(AppError::into_anyhow)?;
    pool.close().await;
    Ok(list)
}

/// Sets a password and signs the user out everywhere; returns the password when generated.
pub async fn user_passwd(
    config: &Config,
    name: &str,
    password: Option<String>,
) -> anyhow::Result<Option<String>> {
    let (_, pool) = open(config).await?;
    let user = find(&pool, name).await?;
    let generated = password.is_none().then(users::generate_password);
    let password = password.or_else(|| generated.clone()).unwrap_or_default();
    users::check_password(&password, config.auth.min_password_length)
        .map_err(AppError::into_anyhow)?;
    let hash = crate::auth::password::hash(password).await?;
    users::store::set_password(&pool, user.id, &hash)
        .await
        .map_err(AppError::into_anyhow)?;
    crate::auth::store::revoke_user_sessions(&pool, user.id, None)
        .await
        .map_err(AppError::into_anyhow)?;
    audit(
        &pool,
        "user.update",
        &user,
        serde_json::json!({"via": "cli", "password_reset": true}),
    )
    .await;
    pool.close().await;
    Ok(generated)
}

pub async fn user_disable(config: &Config, name: &str) -> anyhow::Result<User> {
    let (_, pool) = open(config).await?;
    let user = find(&pool, name).await?;
    users::store::set_disabled(&pool, user.id, true)
        .await
        .map_err(AppError::into_anyhow)?;
    crate::auth::store::revoke_user_sessions(&pool, user.id, None)
        .await
        .map_err(AppError::into_anyhow)?;
    audit(
        &pool,
        "user.update",
        &user,
        serde_json::json!({"via": "cli", "disabled": true}),
    )
    .await;
    pool.close().await;
    Ok(user)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckLevel {
    Ok,
    /// Worth knowing, but the server can run.
    Warn,
    /// The server cannot work until this is fixed.
    Fail,
}

#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub level: CheckLevel,
    pub detail: String,
}

/// The measures the running server put around each account, one line each.
fn doctor_measures(
    running: &crate::isolation::Report,
    check: &mut impl FnMut(&'static str, CheckLevel, String),
) {
    use crate::isolation::Mode;
    match running.mode {
        Mode::Landlock | Mode::Bwrap if running.landlock_abi >= 2 => check(
            "sandbox",
            CheckLevel::Ok,
            "each account's tmux server, its agents and pocketdev's tmux clients for it run inside \
             the account's Landlock ruleset"
                .into(),
        ),
        Mode::Bwrap => check(
            "sandbox",
            CheckLevel::Ok,
            "each account's tmux server runs in its bubblewrap sandbox (no Landlock inside)".into(),
        ),
        _ => check(
            "sandbox",
            CheckLevel::Warn,
            "agents run as their account's Unix user without Landlock: they can read what the \
             system leaves world-readable"
                .into(),
        ),
    }
    match (&running.disk_quota, running.disk_quotas) {
        (Some(words), true) => check("quotas", CheckLevel::Ok, words.clone()),
        (Some(words), false) if words.starts_with("isolation.disk_mb") => {
            check("quotas", CheckLevel::Warn, words.clone())
        }
        (Some(words), false) => check(
            "quotas",
            CheckLevel::Ok,
            format!("{words}; an account can fill the disk up to the blocks kept for root"),
        ),
        (None, _) => {}
    }
    if running.private_namespaces {
        check(
            "namespaces",
            CheckLevel::Ok,
            "each account has its own /dev/shm, IPC and a /proc that lists only its processes"
                .into(),
        );
    } else {
        check(
            "namespaces",
            CheckLevel::Warn,
            format!(
                "accounts share /dev/shm and IPC and see each other's processes: {}",
                running
                    .namespaces_reason
                    .as_deref()
                    .unwrap_or("the server could not create namespaces")
            ),
        );
    }
}

/// The oldest tmux the terminals work with (Ubuntu 22.04 has 3.2a, Debian 12 3.3a).
const OLDEST_TMUX: &str = "3.2";

/// Whether `version` as `tmux -V` prints it (`3.3a`, `next-3.6`, `3.5`) is at least
/// [`OLDEST_TMUX`]; a version it cannot read is taken as new (builds from git say `master`).
fn tmux_supported(version: &str) -> bool {
    let digits = version.trim_start_matches(|c: char| !c.is_ascii_digit());
    let mut parts = digits.split(|c: char| !c.is_ascii_digit());
    let major: Option<u32> = parts.next().and_then(|p| p.parse().ok());
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    major.is_none_or(|major| (major, minor) >= (3, 2))
}

/// Agent CLIs that profiles commonly use; reported, not required.
const AGENT_CLIS: &[&str] = &["claude", "codex", "gemini", "aider", "opencode"];

/// Checks what the server needs, one line each. Creates nothing but the data dir's folders.
pub async fn doctor(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut check = |name, level, detail: String| {
        checks.push(Check {
            name,
            level,
            detail,
        })
    };

    match crate::instances::tmux::version().await {
        Some(version) if !tmux_supported(&version) => check(
            "tmux",
            CheckLevel::Fail,
            format!(
                "tmux {version} is older than {OLDEST_TMUX}, the oldest pocketdev supports (its \
                 terminals use control-mode commands of 3.2); install a newer one"
            ),
        ),
        Some(version) => check("tmux", CheckLevel::Ok, format!("tmux {version}")),
        None => check(
            "tmux",
            CheckLevel::Fail,
            "not found on PATH; install it (Debian/Ubuntu: apt-get install tmux)".into(),
        ),
    }

    let root = rustix::process::geteuid().is_root();
    let abi = crate::isolation::landlock_abi();
    let cgroups = crate::isolation::cgroups::Cgroups::detect(&config.isolation.cgroup);
    let limits = cgroups.backend();
    let decided = crate::isolation::decide(&config.isolation, root, abi, limits).and_then(|r| {
        if r.mode == crate::isolation::Mode::Bwrap {
            crate::isolation::sandbox::probe_bwrap()?;
        }
        Ok(r)
    });
    let isolated = matches!(&decided, Ok(r) if r.mode != crate::isolation::Mode::None);
    match &decided {
        Ok(report) if report.mode == crate::isolation::Mode::None => check(
            "isolation",
            CheckLevel::Warn,
            format!("NONE — {}", report.reason),
        ),
        Ok(report) => check(
            "isolation",
            CheckLevel::Ok,
            if report.reason.contains("ABI") {
                format!("{} — {}", report.mode.as_str(), report.reason)
            } else {
                format!(
                    "{} — {}; Landlock ABI {abi}",
                    report.mode.as_str(),
                    report.reason
                )
            },
        ),
        Err(e) => check("isolation", CheckLevel::Fail, format!("{e:#}")),
    }
    if isolated {
        match cgroups.unusable() {
            Some(why) => check("limits", CheckLevel::Warn, why.to_owned()),
            None => check(
                "limits",
                CheckLevel::Ok,
                format!("each account's by {}", limits.as_str()),
            ),
        }
    }

    let layout = match Layout::prepare(&config.data_dir) {
        Ok(layout) => match probe_writable(&layout.server_dir()) {
            Ok(()) => {
                check(
                    "data dir",
                    CheckLevel::Ok,
                    format!("{} is writable", layout.root().display()),
                );
                Some(layout)
            }
            Err(e) => {
                check(
                    "data dir",
                    CheckLevel::Fail,
                    format!("{} is not writable: {e}", layout.root().display()),
                );
                None
            }
        },
        Err(e) => {
            check("data dir", CheckLevel::Fail, format!("{e:#}"));
            None
        }
    };

    if isolated {
        for (setting, fix) in [
            ("protected_symlinks", "fs.protected_symlinks = 1"),
            ("protected_hardlinks", "fs.protected_hardlinks = 1"),
        ] {
            let on = std::fs::read_to_string(format!("/proc/sys/fs/{setting}"))
                .is_ok_and(|v| v.trim() != "0");
            if on {
                check("kernel", CheckLevel::Ok, format!("fs.{setting} is on"));
            } else {
                check(
                    "kernel",
                    CheckLevel::Fail,
                    format!(
                        "fs.{setting} is off, so an agent could plant links that make root-side code \
                         touch another account's files; set `{fix}` (sysctl, /etc/sysctl.d/)"
                    ),
                );
            }
        }
    }
    if let (Some(layout), true) = (&layout, isolated) {
        match crate::isolation::executable_here(layout.root()) {
            Ok(()) => check(
                "launcher",
                CheckLevel::Ok,
                format!(
                    "accounts can run programs from {}",
                    layout.bin_dir().display()
                ),
            ),
            Err(e) => check("launcher", CheckLevel::Fail, format!("{e:#}")),
        }
    }
    // The service may see another kernel interface than this shell (a container's syscall
    // filter, the unit's sandbox): what it decided when it last started is what is in force.
    if let (Some(layout), Ok(mine)) = (&layout, &decided)
        && let Some(running) = crate::isolation::Report::last_decided(layout)
    {
        for account in &running.unavailable {
            check(
                "account",
                CheckLevel::Fail,
                format!(
                    "account {} cannot be used (its agents cannot start): {}",
                    account.user_id, account.reason
                ),
            );
        }
        if running.mode != crate::isolation::Mode::None {
            doctor_measures(&running, &mut check);
        }
        if running.mode == mine.mode {
            check(
                "service",
                CheckLevel::Ok,
                format!(
                    "the running server decided the same: {}",
                    running.mode.as_str()
                ),
            );
        } else {
            check(
                "service",
                CheckLevel::Warn,
                format!(
                    "the server, when it last started, decided {} ({}) where this shell sees {}; \
                     a container's syscall filter or the service's sandbox can hide Landlock or cgroups from it",
                    running.mode.as_str(),
                    running.reason,
                    mine.mode.as_str()
                ),
            );
        }
    }

    match (&config.proxy_socket, config.trusted_proxies.is_empty()) {
        (Some(path), _) => check(
            "proxy",
            CheckLevel::Ok,
            format!(
                "the reverse proxy reaches pocketdev over {} (group {}), the one listener whose \
                 forwarded client addresses are believed",
                path.display(),
                config.proxy_socket_group
            ),
        ),
        (None, true) => check(
            "proxy",
            CheckLevel::Ok,
            "no proxy socket and no trusted proxies: clients are known by their own address".into(),
        ),
        (None, false) => check(
            "proxy",
            CheckLevel::Warn,
            "trusted_proxies is set but proxy_socket is not: a reverse proxy on this machine should \
             reach pocketdev over proxy_socket, since agents can reach loopback"
                .into(),
        ),
    }

    if let Some(layout) = &layout {
        let url = config.database_url_in(layout);
        match db::status(&url).await {
            Ok(DbStatus::Current { applied }) => check(
                "database",
                CheckLevel::Ok,
                format!("reachable, {applied} migrations applied"),
            ),
            Ok(DbStatus::Pending { applied, total }) => check(
                "database",
                CheckLevel::Warn,
                format!(
                    "reachable, {applied} of {total} migrations applied; the rest apply at the next start"
                ),
            ),
            Ok(DbStatus::Missing) => check(
                "database",
                CheckLevel::Warn,
                "not created yet; `pocketdev serve` creates it".into(),
            ),
            Err(e) => check("database", CheckLevel::Fail, format!("{e:#}")),
        }
    }

    let path = std::env::var_os("PATH").unwrap_or_default();
    for cli in AGENT_CLIS {
        match std::env::split_paths(&path)
            .map(|dir| dir.join(cli))
            .find(|p| is_executable(p))
        {
            Some(found) => check(
                "agent",
                CheckLevel::Ok,
                format!("{cli} at {}", found.display()),
            ),
            None => check(
                "agent",
                CheckLevel::Warn,
                format!("{cli} not on PATH (profiles using it are unusable)"),
            ),
        }
    }
    checks
}

fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    std::fs::write(&probe, b"ok")?;
    std::fs::remove_file(&probe)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::tmux_supported;

    #[test]
    fn tmux_versions_are_read_as_tmux_prints_them() {
        for new_enough in ["3.2", "3.2a", "3.3a", "3.5a", "next-3.6", "4.0", "master"] {
            assert!(tmux_supported(new_enough), "{new_enough}");
        }
        for too_old in ["3.1c", "3.0a", "2.9", "next-3.1"] {
            assert!(!tmux_supported(too_old), "{too_old}");
        }
    }
}
