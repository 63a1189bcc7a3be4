//! Per-account disk limits: a block quota on the account's Unix user, set through
//! `quotactl_fd` (Linux 5.14) on the file system holding the data dir. The kernel then refuses
//! an agent's writes past its share, whatever wrote them (the agent, its tools, the file API,
//! which drops `CAP_SYS_RESOURCE` to act as the account). Needs user quotas switched on for
//! that file system (ext4: the `quota` feature and the `usrquota` mount option; XFS: `uquota`).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

const USRQUOTA: libc::c_int = 0;
const Q_GETINFO: libc::c_int = 0x80_0005;
const Q_SETQUOTA: libc::c_int = 0x80_0008;

/// `QCMD(cmd, type)` of `<sys/quota.h>`.
fn command(cmd: libc::c_int) -> libc::c_int {
    (cmd << 8) | USRQUOTA
}

/// `struct if_dqinfo`, which `Q_GETINFO` fills.
#[repr(C)]
#[derive(Default)]
struct DqInfo {
    bgrace: u64,
    igrace: u64,
    flags: u32,
    valid: u32,
}

fn quotactl(path: &Path, cmd: libc::c_int, id: u32, data: *mut libc::c_void) -> io::Result<()> {
    let dir = std::fs::File::open(path)?;
    // SAFETY: a descriptor we hold, and `data` points to the structure `cmd` reads or fills.
    let done = unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            dir.as_raw_fd(),
            command(cmd),
            id as libc::c_int,
            data,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the file system holding `path` enforces user quotas; the reason when not.
pub fn enforced(path: &Path) -> Result<(), String> {
    let mut info = DqInfo::default();
    quotactl(path, Q_GETINFO, 0, (&raw mut info).cast()).map_err(|err| match err.raw_os_error() {
        Some(libc::ESRCH) => "user quotas are not switched on for its file system (ext4: \
                `tune2fs -O quota` and mount it with `usrquota`; XFS: mount with `uquota`)"
            .to_owned(),
        Some(libc::ENOSYS) => "the kernel has no quotactl_fd (Linux 5.14 or later)".to_owned(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) => {
            "its file system keeps no user quotas".to_owned()
        }
        _ => format!("cannot read its quota settings: {err}"),
    })
}

/// Limits what `uid` may store on the file system holding `path` to `megabytes`.
pub fn limit(path: &Path, uid: u32, megabytes: u64) -> io::Result<()> {
    let kib = megabytes.saturating_mul(1024);
    let mut block = libc::dqblk {
        dqb_bhardlimit: kib,
        dqb_bsoftlimit: kib,
        dqb_curspace: 0,
        dqb_ihardlimit: 0,
        dqb_isoftlimit: 0,
        dqb_curinodes: 0,
        dqb_btime: 0,
        dqb_itime: 0,
        dqb_valid: libc::QIF_BLIMITS,
    };
    quotactl(path, Q_SETQUOTA, uid, (&raw mut block).cast())
}
