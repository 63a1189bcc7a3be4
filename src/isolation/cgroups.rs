//! Resource limits per account through the cgroup filesystem: one group per account holding
//! its tmux server and therefore every agent and child. cgroup v2 where its memory and pids
//! controllers are available, v1 where they are bound there instead (as on some VMs), and
//! `RLIMIT_NPROC` on the account's server as the last resort (see `server.rs`). Never `RLIMIT_AS`: it breaks
//! Node and WebAssembly.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use utoipa::ToSchema;

const ROOT: &str = "/sys/fs/cgroup";

/// How limits are enforced on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    V2,
    V1,
    /// No usable controllers: only the process count is limited, by RLIMIT_NPROC.
    Rlimit,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2 => "cgroup v2",
            Self::V1 => "cgroup v1",
            Self::Rlimit => "RLIMIT_NPROC (processes only)",
        }
    }
}

/// The limits each account gets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub memory_bytes: u64,
    pub tasks: u32,
    pub cpu_percent: u32,
    /// The cap on every account's agents together, written on the parent group; 0: none.
    pub all_accounts_memory_bytes: u64,
}

/// The cgroup folders of one account, one per controller hierarchy that has any.
#[derive(Debug, Clone)]
pub struct Group {
    dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Cgroups {
    backend: Backend,
    /// Parent folder of every account's group, per hierarchy: (controller, folder).
    parents: Vec<(&'static str, PathBuf)>,
    /// Why the controllers the host has cannot be used, when it has some.
    unusable: Option<String>,
}

fn has_controller(list: &Path, name: &str) -> bool {
    std::fs::read_to_string(list)
        .map(|text| text.split_whitespace().any(|c| c == name))
        .unwrap_or(false)
}

/// Why pocketdev cannot create groups under `mount`, if it cannot: a read-only mount (an LXC or
/// nspawn container's) or no write access.
fn unwritable(mount: &Path) -> Option<String> {
    let read_only = rustix::fs::statvfs(mount)
        .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
    let denied = rustix::fs::access(mount, rustix::fs::Access::WRITE_OK).is_err();
    (read_only || denied).then(|| {
        format!(
            "{} is {}, as in some containers",
            mount.display(),
            if read_only {
                "mounted read-only"
            } else {
                "not writable"
            }
        )
    })
}

impl Cgroups {
    /// Finds the backend; `name` is the folder that holds every account's group. Controllers
    /// that cannot be written count as none, so accounts still get their process limit.
    pub fn detect(name: &str) -> Self {
        let found = Self::find(name);
        let blocked = found
            .parents
            .iter()
            .find_map(|(_, parent)| unwritable(parent.parent().unwrap_or(parent)));
        match blocked {
            Some(why) => Self {
                backend: Backend::Rlimit,
                parents: Vec::new(),
                unusable: Some(format!(
                    "the cgroup controllers cannot be used ({why}): only each account's process \
                     count is limited"
                )),
            },
            None => found,
        }
    }

    /// Why the host's controllers are not used, when it has some that cannot be written.
    pub fn unusable(&self) -> Option<&str> {
        self.unusable.as_deref()
    }

    fn find(name: &str) -> Self {
        let root = Path::new(ROOT);
        let v2 = root.join("cgroup.controllers");
        if has_controller(&v2, "memory") && has_controller(&v2, "pids") {
            return Self {
                backend: Backend::V2,
                parents: vec![("unified", root.join(name))],
                unusable: None,
            };
        }
        let mut parents = Vec::new();
        for controller in ["memory", "pids", "cpu"] {
            let mount = root.join(controller);
            if mount.join("cgroup.procs").exists() {
                parents.push((controller, mount.join(name)));
            }
        }
        if parents.iter().any(|(c, _)| *c == "memory" || *c == "pids") {
            // A v2 hierarchy beside them groups the processes and can kill them all at once.
            let unified = root.join("unified");
            if unified.join("cgroup.procs").exists() {
                parents.push(("unified", unified.join(name)));
            }
            return Self {
                backend: Backend::V1,
                parents,
                unusable: None,
            };
        }
        Self {
            backend: Backend::Rlimit,
            parents: Vec::new(),
            unusable: None,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Creates (or finds) the account's group with `limits` written.
    pub fn prepare(&self, account: &str, limits: Limits) -> anyhow::Result<Group> {
        let mut dirs = Vec::new();
        for (controller, parent) in &self.parents {
            if self.backend == Backend::V2 {
                create(parent)?;
                // Controllers must be enabled from the root down to the account's parent.
                enable_controllers(Path::new(ROOT))?;
                enable_controllers(parent)?;
            } else {
                create(parent)?;
            }
            write_all_accounts_cap(self.backend, controller, parent, limits)?;
            let dir = parent.join(account);
            create(&dir)?;
            write_limits(self.backend, controller, &dir, limits)?;
            dirs.push(dir);
        }
        Ok(Group { dirs })
    }

    /// Where an instance's own group goes: under the account's group in the cgroup v2
    /// hierarchy (the host's only one, or the one mounted beside v1's controllers), which can
    /// kill a whole group at once. `None`: no such hierarchy here.
    pub fn instance_dir(&self, account: &str, instance: &str) -> Option<PathBuf> {
        self.parents
            .iter()
            .find(|(controller, _)| *controller == "unified")
            .map(|(_, parent)| parent.join(account).join(format!("i-{instance}")))
    }

    /// The path of `dir` as `/proc/<pid>/cgroup` names it on its `0::` line.
    pub fn as_seen_by_processes(&self, dir: &Path) -> Option<String> {
        let mount = match self.backend {
            Backend::V2 => Path::new(ROOT).to_path_buf(),
            _ => Path::new(ROOT).join("unified"),
        };
        dir.strip_prefix(mount)
            .ok()
            .map(|rel| format!("/{}", rel.display()))
    }

    /// Removes the account's group folders, its instances' groups first, once they are empty
    /// (a killed process leaves its group only when it is reaped: up to two seconds). Call it
    /// on a blocking thread.
    #[allow(clippy::disallowed_methods)] // on a blocking thread
    pub fn remove(&self, account: &str) {
        for _ in 0..20 {
            let mut left = false;
            for (_, parent) in &self.parents {
                let group = parent.join(account);
                if let Ok(children) = std::fs::read_dir(&group) {
                    for child in children.flatten().filter(|c| c.path().is_dir()) {
                        let _ = std::fs::remove_dir(child.path());
                    }
                }
                left |= std::fs::remove_dir(&group).is_err() && group.exists();
            }
            if !left {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Removes the parent folders once no account is left in them (tests use their own).
    pub fn remove_parents(&self) {
        for (_, parent) in &self.parents {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn create(dir: &Path) -> anyhow::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create the cgroup {}", dir.display())),
    }
}

fn enable_controllers(dir: &Path) -> anyhow::Result<()> {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<String> = ["memory", "pids", "cpu"]
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if !wanted.is_empty() {
        std::fs::write(dir.join("cgroup.subtree_control"), wanted.join(" "))
            .with_context(|| format!("cannot enable controllers in {}", dir.display()))?;
    }
    Ok(())
}

fn write(dir: &Path, file: &str, value: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(file), value)
        .with_context(|| format!("cannot write {value} to {}", dir.join(file).display()))
}

/// The parent group holds every account: its memory cap covers all agents together.
fn write_all_accounts_cap(
    backend: Backend,
    controller: &str,
    parent: &Path,
    limits: Limits,
) -> anyhow::Result<()> {
    let cap = (limits.all_accounts_memory_bytes > 0).then_some(limits.all_accounts_memory_bytes);
    match (backend, controller) {
        (Backend::V2, _) => write(
            parent,
            "memory.max",
            &cap.map_or_else(|| "max".to_owned(), |c| c.to_string()),
        ),
        (Backend::V1, "memory") => write(
            parent,
            "memory.limit_in_bytes",
            &cap.map_or_else(|| "-1".to_owned(), |c| c.to_string()),
        ),
        _ => Ok(()),
    }
}

fn write_limits(
    backend: Backend,
    controller: &str,
    dir: &Path,
    limits: Limits,
) -> anyhow::Result<()> {
    let memory = (limits.memory_bytes > 0).then(|| limits.memory_bytes.to_string());
    let tasks = (limits.tasks > 0).then(|| limits.tasks.to_string());
    let period = 100_000u64;
    let quota = (limits.cpu_percent > 0).then(|| u64::from(limits.cpu_percent) * period / 100);
    match (backend, controller) {
        (Backend::V2, _) => {
            write(dir, "memory.max", memory.as_deref().unwrap_or("max"))?;
            if limits.memory_bytes > 0 {
                // The kernel reclaims from 90 % on, before anything is killed.
                write(
                    dir,
                    "memory.high",
                    &(limits.memory_bytes / 10 * 9).to_string(),
                )?;
            }
            write(dir, "pids.max", tasks.as_deref().unwrap_or("max"))?;
            if dir.join("cpu.max").exists() {
                let cpu =
                    quota.map_or_else(|| format!("max {period}"), |q| format!("{q} {period}"));
                write(dir, "cpu.max", &cpu)?;
            }
        }
        (Backend::V1, "memory") => {
            write(
                dir,
                "memory.limit_in_bytes",
                memory.as_deref().unwrap_or("-1"),
            )?;
        }
        (Backend::V1, "pids") => write(dir, "pids.max", tasks.as_deref().unwrap_or("max"))?,
        (Backend::V1, "cpu") => {
            write(dir, "cpu.cfs_period_us", &period.to_string())?;
            write(
                dir,
                "cpu.cfs_quota_us",
                &quota.map_or("-1".into(), |q| q.to_string()),
            )?;
        }
        _ => {}
    }
    Ok(())
}

impl Group {
    /// The folders, for checking where a process is.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

/// The processes in a group, as the kernel lists them.
pub fn members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills everything in an instance's group at once (`cgroup.kill`), waits for the group to
/// empty, and removes it; a missing group is fine. Call it on a blocking thread.
#[allow(clippy::disallowed_methods)] // on a blocking thread, for at most two seconds
pub fn kill_and_remove(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    for _ in 0..200 {
        if members(dir).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = std::fs::remove_dir(dir);
}

/// Kills every process of a group at once where the kernel can (`cgroup.kill`).
pub fn kill(parent_name: &str, account: &str) {
    for hierarchy in ["", "unified"] {
        let file = Path::new(ROOT)
            .join(hierarchy)
            .join(parent_name)
            .join(account)
            .join("cgroup.kill");
        if file.exists() {
            let _ = std::fs::write(file, "1");
        }
    }
}
