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

/// Restricts this process (and what it execs) to `allowed`. Fails unless the kernel enforces
/// it at least partly; an agent never runs believed-sandboxed when it is not.
pub fn confine(allowed: &Allowed) -> anyhow::Result<()> {
    let abi = ABI::V5;
    let read = SYSTEM_READ
        .iter()
        .map(PathBuf::from)
        .chain(allowed.read.iter().cloned());
    let write = std::iter::once(PathBuf::from(DEVICES)).chain(allowed.write.iter().cloned());
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .context("Landlock")?
        .create()
        .context("cannot create a Landlock ruleset")?
        .add_rules(path_beneath_rules(read, AccessFs::from_read(abi)))
        .context("Landlock read rules")?
        .add_rules(path_beneath_rules(write, AccessFs::from_all(abi)))
        .context("Landlock write rules")?
        .restrict_self()
        .context("cannot apply Landlock")?;
    if status.ruleset == RulesetStatus::NotEnforced {
        bail!("the kernel does not enforce Landlock; refusing to start the agent unconfined");
    }
    Ok(())
}
