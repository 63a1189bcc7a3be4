//! `pocketdev start-account-server`: the first program of an account's tmux server. Still root,
//! it joins the account's cgroups (so the server and everything it will start are inside from
//! the first instruction), sets the account's process limit where there are no cgroups, drops
//! to the account (or leaves that to the sandbox's own `setpriv`), and execs.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::Context;

pub struct Start {
    pub procs: Vec<PathBuf>,
    pub nproc: Option<u32>,
    /// The account's Landlock ruleset, applied before the drop: the server and everything it
    /// runs (panes, `run-shell`, hooks) stay inside it.
    pub landlock: Option<super::sandbox::Allowed>,
    /// Drop to this uid/gid (no supplementary groups) before exec.
    pub identity: Option<super::Identity>,
    pub argv: Vec<String>,
}

#[allow(unsafe_code)]
fn close_on_exec_from(first: u32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: a plain system call with integer arguments; descriptors stay open until exec.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if done != 0 {
        // Kernels before 5.11: mark each open descriptor by hand.
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|&fd| fd >= first as i32)
                .collect();
            for fd in fds {
                // SAFETY: F_SETFD on a descriptor number; a closed one answers EBADF.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// Replaces this process with the server; returns only on failure. Runs before any thread
/// exists, so the credential calls change the whole process.
#[allow(clippy::disallowed_methods)] // exec replaces this process: there is no async runtime here
pub fn exec(start: &Start) -> anyhow::Error {
    let prepared = (|| -> anyhow::Result<std::process::Command> {
        let pid = std::process::id().to_string();
        for procs in &start.procs {
            std::fs::write(procs, &pid)
                .with_context(|| format!("cannot join the cgroup {}", procs.display()))?;
        }
        if let Some(limit) = start.nproc {
            let limit = rustix::process::Rlimit {
                current: Some(u64::from(limit)),
                maximum: Some(u64::from(limit)),
            };
            rustix::process::setrlimit(rustix::process::Resource::Nproc, limit)
                .context("cannot set RLIMIT_NPROC")?;
        }
        if let Some(allowed) = &start.landlock {
            super::sandbox::confine(allowed)?;
        }
        // Nothing of whoever started pocketdev (a lock, a root-only file) reaches the account:
        // every descriptor above the standard three closes at exec.
        close_on_exec_from(3);
        if let Some(identity) = start.identity {
            use rustix::process::{Gid, Uid};
            rustix::thread::set_thread_groups(&[]).context("cannot drop groups")?;
            rustix::thread::set_thread_res_gid(
                Gid::from_raw(identity.gid),
                Gid::from_raw(identity.gid),
                Gid::from_raw(identity.gid),
            )
            .context("cannot become the account's group")?;
            rustix::thread::set_thread_res_uid(
                Uid::from_raw(identity.uid),
                Uid::from_raw(identity.uid),
                Uid::from_raw(identity.uid),
            )
            .context("cannot become the account")?;
        }
        let program = start.argv.first().context("nothing to run")?;
        let mut command = std::process::Command::new(program);
        command.args(&start.argv[1..]);
        Ok(command)
    })();
    match prepared {
        Ok(mut command) => {
            let err = command.exec();
            anyhow::anyhow!("cannot start `{}`: {err}", start.argv[0])
        }
        Err(err) => err,
    }
}
