//! File access as an account: the calling thread's filesystem identity (fsuid, fsgid, no
//! supplementary groups) becomes the account's for as long as the guard lives. The kernel then
//! checks every open, create and rename against the account's rights, so a symlink or hard link
//! the agent planted leads nowhere the account could not go itself, and new files belong to it.
//!
//! Only this thread changes: `setfsuid`/`setfsgid` are per thread, and groups are set with the
//! raw per-thread syscall (glibc's `setgroups` would change every thread of the server).
//! Leaving fsuid 0 clears only the filesystem capabilities, so the thread also drops
//! `CAP_SYS_RESOURCE` (also per thread): with it, the account's writes would pass disk quotas and
//! the blocks a file system keeps for root.
//!
//! A thread created inside the guard would keep the account's identity for good: nothing
//! inside spawns threads, and nothing may.
#![allow(unsafe_code)]

use std::io;

use rustix::process::Gid;

use super::Identity;

/// The thread acts as an account until this is dropped. Not `Send`: it must be dropped on the
/// thread that made it.
pub struct AsAccount {
    previous_uid: u32,
    previous_gid: u32,
    previous_groups: Vec<Gid>,
    previous_caps: rustix::thread::CapabilitySets,
    _not_send: std::marker::PhantomData<*const ()>,
}

/// `setfsuid` with an id no one has answers the current fsuid and changes nothing.
const QUERY: u32 = u32::MAX;

fn current_fsuid() -> u32 {
    // SAFETY: setfsuid only sets (here: with an invalid id, only reads) this thread's fsuid.
    unsafe { libc::setfsuid(QUERY) as u32 }
}

fn current_fsgid() -> u32 {
    // SAFETY: as above, for the fsgid.
    unsafe { libc::setfsgid(QUERY) as u32 }
}

impl AsAccount {
    pub fn enter(identity: Identity) -> io::Result<Self> {
        let previous_groups = rustix::process::getgroups()?;
        let previous_caps = rustix::thread::capabilities(None)?;
        let previous_uid = current_fsuid();
        let previous_gid = current_fsgid();
        rustix::thread::set_thread_groups(&[])?;
        // SAFETY: these change only this thread's filesystem ids; the guard restores them.
        unsafe {
            libc::setfsgid(identity.gid);
            libc::setfsuid(identity.uid);
        }
        let guard = Self {
            previous_uid,
            previous_gid,
            previous_groups,
            previous_caps,
            _not_send: std::marker::PhantomData,
        };
        let mut caps = rustix::thread::capabilities(None)?;
        caps.effective
            .remove(rustix::thread::CapabilitySet::SYS_RESOURCE);
        rustix::thread::set_capabilities(None, caps)?;
        if current_fsuid() != identity.uid || current_fsgid() != identity.gid {
            // Dropping the guard restores what was there.
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "cannot act as uid {} (pocketdev must run as root for isolation)",
                    identity.uid
                ),
            ));
        }
        Ok(guard)
    }
}

impl Drop for AsAccount {
    fn drop(&mut self) {
        // SAFETY: restores this thread's own filesystem ids.
        unsafe {
            libc::setfsuid(self.previous_uid);
            libc::setfsgid(self.previous_gid);
        }
        let restored = rustix::thread::set_thread_groups(&self.previous_groups).is_ok()
            && current_fsuid() == self.previous_uid
            && current_fsgid() == self.previous_gid
            && rustix::thread::set_capabilities(None, self.previous_caps).is_ok()
            && rustix::thread::capabilities(None)
                .is_ok_and(|caps| caps.effective == self.previous_caps.effective);
        if !restored {
            // A pool thread left with an account's identity would serve the next request with
            // the wrong rights; nothing is safe to do but stop.
            eprintln!("pocketdev: cannot restore a thread's file identity; aborting");
            std::process::abort();
        }
    }
}

/// The account this thread acts as right now, if any (`None`: the server's own identity).
pub fn current() -> Option<Identity> {
    let (uid, gid) = (current_fsuid(), current_fsgid());
    (uid != rustix::process::geteuid().as_raw()).then_some(Identity { uid, gid })
}

/// Proof that this thread acts as an account (or, with isolation off, as the only user there
/// is): what [`crate::layout::AccountDir`] asks before it shows the path of an account's folder.
/// Made only by [`run_as`]; not `Send`, so it cannot leave the thread that acts.
pub struct Acting {
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Runs `work` on this thread as `identity`, or as the server itself when there is none
/// (isolation off).
pub fn run_as<T>(identity: Option<Identity>, work: impl FnOnce(&Acting) -> T) -> io::Result<T> {
    let _guard = identity.map(AsAccount::enter).transpose()?;
    Ok(work(&Acting {
        _not_send: std::marker::PhantomData,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_restored_when_the_guard_goes() {
        let before = (current_fsuid(), current_fsgid());
        if rustix::process::geteuid().is_root() {
            let inside = run_as(
                Some(Identity {
                    uid: 65_534,
                    gid: 65_534,
                }),
                |_| {
                    (
                        current_fsuid(),
                        current_fsgid(),
                        rustix::process::getgroups().unwrap(),
                    )
                },
            )
            .unwrap();
            assert_eq!((inside.0, inside.1), (65_534, 65_534));
            assert!(
                inside.2.is_empty(),
                "no supplementary groups as the account"
            );
            // Nor root's way past quotas and reserved blocks, and it comes back after.
            let caps_before = rustix::thread::capabilities(None).unwrap();
            let caps_inside = run_as(
                Some(Identity {
                    uid: 65_534,
                    gid: 65_534,
                }),
                |_| rustix::thread::capabilities(None).unwrap(),
            )
            .unwrap();
            assert!(
                !caps_inside
                    .effective
                    .contains(rustix::thread::CapabilitySet::SYS_RESOURCE)
            );
            assert_eq!(rustix::thread::capabilities(None).unwrap(), caps_before);
        } else {
            // Not root: the switch is refused and nothing changes.
            assert!(
                AsAccount::enter(Identity {
                    uid: 65_534,
                    gid: 65_534
                })
                .is_err()
            );
        }
        assert_eq!((current_fsuid(), current_fsgid()), before);
    }

    #[test]
    fn other_threads_keep_their_identity() {
        if !rustix::process::geteuid().is_root() {
            return eprintln!("skipped: needs root");
        }
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (tell, told) = std::sync::mpsc::channel();
        // Started before the switch: a thread created later would copy this one's identity.
        let other = std::thread::spawn(move || {
            asked.recv().unwrap();
            tell.send(current_fsuid()).unwrap();
        });
        let guard = AsAccount::enter(Identity {
            uid: 65_534,
            gid: 65_534,
        })
        .unwrap();
        ask.send(()).unwrap();
        assert_eq!(told.recv().unwrap(), 0);
        assert_eq!(current_fsuid(), 65_534);
        drop(guard);
        other.join().unwrap();
    }
}
