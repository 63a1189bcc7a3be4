//! The data dir's layout and modes, fixed once so per-account Unix users can share it safely.
//!
//! ```text
//! <data>/                 0711  accounts may traverse to their own folder, never list
//! <data>/bin/             0755  the launcher accounts run (on an exec-capable file system)
//! <data>/server/          0700  database, signing keys, the first admin's password
//! <data>/users/           0711
//! <data>/users/<id>/      0711  owned by the server, so an agent cannot swap its parts
//! <data>/users/<id>/workspace/  0700
//! <data>/users/<id>/home/       0700
//! <data>/archive/         0700  deleted accounts' files, until an admin removes them
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A folder of an account's own (its workspace or home). What is inside belongs to the
/// account, and only the account's identity may touch it: the path is shown to code acting as
/// the account on its thread ([`AccountDir::path`] asks for the proof), or handed to a process
/// that will run as the account ([`AccountDir::for_account_process`], which clippy allows only
/// where a reason says so). Root-side code cannot open, stat or canonicalize inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDir(PathBuf);

impl AccountDir {
    /// The path, for code acting as the account (`run_as`, `blocking_as`).
    pub fn path(&self, _acting: &crate::isolation::Acting) -> &Path {
        &self.0
    }

    /// The path, for a process that runs as the account: its working folder, its `HOME`, its
    /// sandbox's rules, `useradd`'s home. Never for the server's own file access.
    pub fn for_account_process(&self) -> &Path {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    /// Accounts whose folders this process has prepared: once each, not at every request.
    prepared: std::sync::Arc<parking_lot::Mutex<std::collections::HashSet<i64>>>,
}

impl Layout {
    /// Creates the layout's shared folders if missing and fixes their modes.
    pub fn prepare(data_dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let root = data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve data dir {}", data_dir.display()))?;
        let layout = Self {
            root,
            prepared: Default::default(),
        };
        ensure_dir(&layout.root, 0o711)?;
        ensure_dir(&layout.server_dir(), 0o700)?;
        ensure_dir(&layout.users_dir(), 0o711)?;
        ensure_dir(&layout.archive_dir(), 0o700)?;
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("bin")
    }

    pub fn server_dir(&self) -> PathBuf {
        self.root.join("server")
    }

    pub fn users_dir(&self) -> PathBuf {
        self.root.join("users")
    }

    pub fn archive_dir(&self) -> PathBuf {
        self.root.join("archive")
    }

    pub fn user_dir(&self, user_id: i64) -> PathBuf {
        self.users_dir().join(user_id.to_string())
    }

    pub fn workspace(&self, user_id: i64) -> AccountDir {
        AccountDir(self.user_dir(user_id).join("workspace"))
    }

    pub fn home(&self, user_id: i64) -> AccountDir {
        AccountDir(self.user_dir(user_id).join("home"))
    }

    /// Creates an account's folders with the layout's modes; idempotent.
    pub fn prepare_user(&self, user_id: i64) -> anyhow::Result<()> {
        if self.prepared.lock().contains(&user_id) {
            return Ok(());
        }
        // Root makes them in the root-owned 0711 folder no account can change, so nothing an
        // account planted is followed; inside them, only the account acts.
        ensure_dir(&self.user_dir(user_id), 0o711)?;
        ensure_dir(&self.workspace(user_id).0, 0o700)?;
        ensure_dir(&self.home(user_id).0, 0o700)?;
        self.prepared.lock().insert(user_id);
        Ok(())
    }

    /// Gives the account its folders (root makes them, in the root-owned folder above): the
    /// folders themselves, or everything in them for a Unix user just made (files restored
    /// from a backup keep the uid they had). `lchown` never follows a link.
    pub fn hand_over(
        &self,
        user_id: i64,
        identity: crate::isolation::Identity,
        whole_tree: bool,
    ) -> anyhow::Result<()> {
        for dir in [self.workspace(user_id).0, self.home(user_id).0] {
            if whole_tree {
                crate::isolation::accounts::chown_tree(&dir, identity)?;
            } else {
                std::os::unix::fs::lchown(&dir, Some(identity.uid), Some(identity.gid))?;
            }
        }
        Ok(())
    }

    /// Moves an account's folder into the archive; returns where it went, if it existed.
    pub fn archive_user(&self, user_id: i64, label: &str) -> anyhow::Result<Option<PathBuf>> {
        self.prepared.lock().remove(&user_id);
        let from = self.user_dir(user_id);
        if !from.exists() {
            return Ok(None);
        }
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let to = self
            .archive_dir()
            .join(format!("{user_id}-{label}-{stamp}"));
        fs::rename(&from, &to)
            .with_context(|| format!("cannot archive {} to {}", from.display(), to.display()))?;
        Ok(Some(to))
    }
}

fn ensure_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))
}

/// Writes a small private file (mode 0600) atomically: a reader sees the old content or the new, whole.
pub fn write_private_file(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    write_file_atomically(path, content, 0o600)
}

/// Writes a small file with `mode` atomically: a reader sees the old content or the new, whole.
pub fn write_file_atomically(path: &Path, content: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().context("file has no parent folder")?;
    let name = path
        .file_name()
        .context("file has no name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // Exactly `mode`, whatever the umask.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn layout_has_documented_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::prepare(&tmp.path().join("data")).unwrap();
        layout.prepare_user(7).unwrap();
        assert_eq!(mode(layout.root()), 0o711);
        assert_eq!(mode(&layout.server_dir()), 0o700);
        assert_eq!(mode(&layout.users_dir()), 0o711);
        assert_eq!(mode(&layout.user_dir(7)), 0o711);
        assert_eq!(mode(&layout.workspace(7).0), 0o700);
        assert_eq!(mode(&layout.home(7).0), 0o700);
        assert!(layout.workspace(7).0.ends_with("users/7/workspace"));
    }

    #[test]
    fn private_file_is_0600_and_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("key");
        write_private_file(&path, b"first").unwrap();
        write_private_file(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn archiving_moves_the_account_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::prepare(tmp.path()).unwrap();
        layout.prepare_user(3).unwrap();
        fs::write(layout.workspace(3).0.join("notes.txt"), "hi").unwrap();
        let archived = layout.archive_user(3, "alice").unwrap().expect("archived");
        assert!(!layout.user_dir(3).exists());
        assert_eq!(
            fs::read_to_string(archived.join("workspace/notes.txt")).unwrap(),
            "hi"
        );
        assert_eq!(layout.archive_user(3, "alice").unwrap(), None);
    }
}
