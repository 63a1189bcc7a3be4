//! `pocketdev start-account-server`: the first program of an account's tmux server. Still root,
//! it joins the account's cgroups (so the server and everything it will start are inside from
//! the first instruction), enters its own mount and IPC namespaces, sets the account's process
//! limit where there are no cgroups, drops to the account (or leaves that to the sandbox's own
//! `setpriv`), and execs.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::Context;

pub struct Start {
    pub procs: Vec<PathBuf>,
    pub nproc: Option<u32>,
    /// Enter [`enter_private_namespaces`] first.
    pub private_namespaces: bool,
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

/// Gives this process (the account's tmux server, so every agent of the account) its own
/// System V IPC and POSIX message queues, its own `/dev/shm`, and a `/proc` that lists only the
/// account's own processes (`hidepid`): a new mount and IPC namespace whose mounts never
/// propagate back to the host. Must run as root, before Landlock (which forbids mounting).
#[allow(unsafe_code)]
pub fn enter_private_namespaces() -> anyhow::Result<()> {
    use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
    use rustix::thread::UnshareFlags;
    // SAFETY: neither flag touches the descriptor table, and no other thread exists.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::NEWIPC) }
        .context("cannot create the account's mount and IPC namespaces")?;
    // Slave: the host's later mounts still show here; nothing mounted here shows there.
    mount_change(
        "/",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .context("cannot make the account's mounts private")?;
    let quiet = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if std::path::Path::new("/dev/shm").is_dir() {
        mount(
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=1777",
        )
        .context("cannot give the account its own /dev/shm")?;
    }
    // The new IPC namespace already makes the queues private; this makes their listing so.
    if std::path::Path::new("/dev/mqueue").is_dir() {
        mount("mqueue", "/dev/mqueue", "mqueue", quiet, None)
            .context("cannot give the account its own /dev/mqueue")?;
    }
    // `invisible` since Linux 5.8; `2` is the same for older kernels.
    mount("proc", "/proc", "proc", quiet, c"hidepid=invisible")
        .or_else(|_| mount("proc", "/proc", "proc", quiet, c"hidepid=2"))
        .context("cannot give the account a /proc of its own processes")?;
    Ok(())
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
        if start.private_namespaces {
            enter_private_namespaces()?;
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
