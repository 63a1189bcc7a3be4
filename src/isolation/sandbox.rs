//! Landlock around an agent: applied by `pocketdev launch` to itself just before it execs the
//! agent, as the account. The agent may write only its workspace, its home (its TMPDIR is
//! there) and devices; it may read and run the system's folders and its own program's; nothing
//! else — not /tmp, not other accounts' world-readable files, not pocketdev's data.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use landlock::{
    ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    path_beneath_rules,
};

/// Read and run: the system, wherever a distribution or a package manager puts programs.
pub const SYSTEM_READ: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/proc",
    "/sys", "/run", "/snap", "/nix",
];

/// Written by every terminal program: ttys, /dev/null, /dev/shm and the like.
pub const DEVICES: &str = "/dev";

/// What one agent may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    pub write: Vec<PathBuf>,
    pub read: Vec<PathBuf>,
}

impl Allowed {
    /// As `pocketdev launch` arguments (paths only; nothing secret).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec!["--landlock".to_owned()];
        for path in &self.write {
            args.extend(["--write".to_owned(), path.to_string_lossy().into_owned()]);
        }
        for path in &self.read {
            args.extend(["--read".to_owned(), path.to_string_lossy().into_owned()]);
        }
        args
    }
}

/// The folder an agent's program lives in: the package around it (the nearest folder with a
/// package.json, as npm installs agents), else the program's own folder.
pub fn program_root(program: &Path) -> PathBuf {
    let program = program
        .canonicalize()
        .unwrap_or_else(|_| program.to_path_buf());
    let dir = program.parent().unwrap_or(Path::new("/")).to_path_buf();
    dir.ancestors()
        .take(4)
        .find(|d| d.join("package.json").is_file())
        .map_or(dir.clone(), Path::to_path_buf)
}

fn ruleset_for(allowed: &Allowed) -> anyhow::Result<landlock::RulesetCreated> {
    let abi = ABI::V5;
    let read = SYSTEM_READ
        .iter()
        .map(PathBuf::from)
        .chain(allowed.read.iter().cloned());
    let write = std::iter::once(PathBuf::from(DEVICES)).chain(allowed.write.iter().cloned());
    Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .context("Landlock")?
        .create()
        .context("cannot create a Landlock ruleset")?
        .add_rules(path_beneath_rules(read, AccessFs::from_read(abi)))
        .context("Landlock read rules")?
        .add_rules(path_beneath_rules(write, AccessFs::from_all(abi)))
        .context("Landlock write rules")
}

/// Restricts this process (and what it execs) to `allowed`. Fails unless the kernel enforces
/// it at least partly; an agent never runs believed-sandboxed when it is not.
pub fn confine(allowed: &Allowed) -> anyhow::Result<()> {
    let status = ruleset_for(allowed)?
        .restrict_self()
        .context("cannot apply Landlock")?;
    if status.ruleset == RulesetStatus::NotEnforced {
        bail!("the kernel does not enforce Landlock; refusing to start the agent unconfined");
    }
    Ok(())
}

/// The ruleset for `allowed` as a descriptor, for processes that restrict themselves to it
/// between fork and exec (see `confine.rs`).
pub fn ruleset(allowed: &Allowed) -> anyhow::Result<std::os::fd::OwnedFd> {
    Option::<std::os::fd::OwnedFd>::from(ruleset_for(allowed)?)
        .context("the kernel offers no Landlock ruleset")
}

/// Checks that bubblewrap is installed and can build a sandbox here (as root, so no user
/// namespace is needed).
#[allow(clippy::disallowed_methods)] // once, at start-up, before the server serves
pub fn probe_bwrap() -> anyhow::Result<()> {
    let output = std::process::Command::new("bwrap")
        .args([
            "--unshare-pid",
            "--ro-bind",
            "/usr",
            "/usr",
            "--ro-bind-try",
            "/bin",
            "/bin",
            "--ro-bind-try",
            "/lib",
            "/lib",
            "--ro-bind-try",
            "/lib64",
            "/lib64",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--",
            "true",
        ])
        .env_clear()
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "isolation.mode = \"bwrap\" needs bubblewrap ({e}); install it (apt-get install bubblewrap) or use \"landlock\""
            )
        })?;
    if !output.status.success() {
        bail!(
            "isolation.mode = \"bwrap\": bubblewrap cannot build a sandbox here: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// What one account's bubblewrap sandbox shows.
pub struct Account {
    pub socket_dir: PathBuf,
    pub workspace: PathBuf,
    pub home: PathBuf,
    /// The folder of the launcher accounts run (`<data>/bin`).
    pub launcher_dir: PathBuf,
    pub tmux_config: PathBuf,
    /// The agents' program folders (bound read-only unless the system's folders hold them).
    pub programs: Vec<PathBuf>,
}

/// Folders of the system shown read-only in a sandbox.
const SYSTEM_BINDS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
];

/// bubblewrap's arguments for an account's sandbox (run as root, so it needs no user
/// namespace). Its own process ids, /tmp, /dev/shm, /run, IPC and host name; the system
/// read-only; the account's workspace, home and socket folder writable; nothing else of the
/// data dir. Never `--new-session` (it breaks resizing) nor `--die-with-parent` (the sandbox
/// outlives pocketdev).
pub fn bwrap_args(account: &Account) -> Vec<String> {
    let mut args: Vec<String> = ["--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        .map(String::from)
        .to_vec();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    for dir in SYSTEM_BINDS {
        push(&["--ro-bind-try", dir, dir]);
    }
    push(&[
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm", "--tmpfs",
        "/run",
    ]);
    // Name resolution on hosts where /etc/resolv.conf points into /run.
    push(&[
        "--ro-bind-try",
        "/run/systemd/resolve",
        "/run/systemd/resolve",
    ]);
    let under_system = |path: &Path| SYSTEM_BINDS.iter().any(|s| path.starts_with(s));
    let binds: Vec<(&str, PathBuf)> = [
        ("--bind", account.socket_dir.clone()),
        ("--bind", account.workspace.clone()),
        ("--bind", account.home.clone()),
        ("--ro-bind", account.launcher_dir.clone()),
        ("--ro-bind", account.tmux_config.clone()),
    ]
    .into_iter()
    .chain(
        account
            .programs
            .iter()
            .filter(|p| !under_system(p))
            .map(|p| ("--ro-bind", p.clone())),
    )
    .collect();
    // bubblewrap would create missing parents root-only (0700); make them traversable.
    let mut made = std::collections::BTreeSet::new();
    for (_, target) in &binds {
        for parent in target
            .ancestors()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if parent == Path::new("/")
                || under_system(parent)
                || !made.insert(parent.to_path_buf())
            {
                continue;
            }
            let parent = parent.to_string_lossy().into_owned();
            args.extend(["--perms".into(), "0755".into(), "--dir".into(), parent]);
        }
    }
    for (how, path) in binds {
        let path = path.to_string_lossy().into_owned();
        args.extend([how.to_owned(), path.clone(), path]);
    }
    args.extend(["--chdir".into(), "/".into()]);
    args
}
