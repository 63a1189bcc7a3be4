//! What every process pocketdev starts for an account goes through before it execs: the
//! account's cgroups (joined while still root), its identity (no supplementary groups), and its
//! Landlock ruleset. The account's tmux server and every tmux client pocketdev runs against it
//! (listings, captures, input, the terminal's control client) get the same, so nothing an
//! account's own tmux server can be made to do (hooks, `run-shell`, `save-buffer` through a
//! client) reaches outside what its agents may reach.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::Identity;

/// An account's confinement, shared by every process started for it.
#[derive(Debug, Clone)]
pub struct Confinement {
    pub identity: Identity,
    /// `cgroup.procs` of the account's groups, one per hierarchy.
    procs: Vec<PathBuf>,
    /// The account's Landlock ruleset, where agents are confined by Landlock.
    ruleset: Option<Arc<OwnedFd>>,
}

impl Confinement {
    pub fn new(identity: Identity, procs: Vec<PathBuf>, ruleset: Option<OwnedFd>) -> Self {
        Self {
            identity,
            procs,
            ruleset: ruleset.map(Arc::new),
        }
    }

    /// Whether a Landlock ruleset is applied.
    pub fn landlocked(&self) -> bool {
        self.ruleset.is_some()
    }

    /// Makes `command` join the account's cgroups, become the account and restrict itself to
    /// the account's ruleset between fork and exec. The cgroup files are opened now, as root.
    #[allow(unsafe_code)]
    pub fn apply(&self, command: &mut tokio::process::Command) -> anyhow::Result<()> {
        let procs = self
            .procs
            .iter()
            .map(|path| {
                rustix::fs::open(
                    path,
                    rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .with_context(|| format!("cannot open {}", path.display()))
            })
            .collect::<anyhow::Result<Vec<OwnedFd>>>()?;
        let ruleset = self.ruleset.clone();
        let Identity { uid, gid } = self.identity;
        // SAFETY: between fork and exec the closure makes only system calls (write, setgroups,
        // setres[gu]id, prctl, landlock_restrict_self), allocates nothing and takes no lock;
        // the child has one thread, so per-thread credential calls change the whole process.
        unsafe {
            command.pre_exec(move || enter(&procs, uid, gid, ruleset.as_deref()));
        }
        Ok(())
    }
}

/// Joins the groups (writing 0 moves the writer), drops to the account, then confines.
fn enter(procs: &[OwnedFd], uid: u32, gid: u32, ruleset: Option<&OwnedFd>) -> std::io::Result<()> {
    use rustix::process::{Gid, Uid};
    for fd in procs {
        rustix::io::write(fd, b"0")?;
    }
    rustix::thread::set_thread_groups(&[])?;
    let gid = Gid::from_raw(gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid)?;
    let uid = Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    if let Some(ruleset) = ruleset {
        rustix::thread::set_no_new_privs(true)?;
        restrict_self(ruleset)?;
    }
    Ok(())
}

#[allow(unsafe_code)]
fn restrict_self(ruleset: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: a plain system call on a ruleset descriptor we own; no memory is passed.
    let done = unsafe {
        libc::syscall(
            libc::SYS_landlock_restrict_self,
            ruleset.as_raw_fd(),
            0 as libc::c_uint,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
