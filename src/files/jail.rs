//! Every file operation on a workspace, resolved by the kernel beneath the workspace's
//! directory (`openat2` with `RESOLVE_BENEATH`): `..`, absolute paths and symlinks that lead out
//! fail in the kernel, including symlinks swapped in between a check and a use. Operations on
//! a name work relative to its parent's descriptor and never follow a final symlink.
//!
//! This is the only code that touches workspace content, so that running it under the
//! account's own identity (the isolation work) changes one place. All of it blocks; callers run
//! it on the blocking pool.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// Deepest folder nesting walked when measuring or deleting a tree.
const MAX_DEPTH: usize = 128;
/// Longest path accepted, in bytes (Linux's PATH_MAX).
const MAX_PATH: usize = 4096;
/// Longest name of one component (Linux's NAME_MAX).
const MAX_NAME: usize = 255;

/// What `save` expects to find where it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// Whatever is there (or nothing).
    Any,
    /// The file with this etag; anything else is `Changed`.
    Etag(&'a str),
    /// No file: "New file" never empties an existing one.
    Absent,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    BadPath(String),
    #[error("there is no `{0}` in your workspace")]
    NotFound(String),
    #[error("`{0}` leads outside your workspace")]
    Outside(String),
    #[error("`{0}` already exists")]
    Exists(String),
    #[error("`{0}` is a folder")]
    IsDirectory(String),
    #[error("`{0}` is not a regular file (a pipe, socket or device)")]
    NotRegular(String),
    #[error("`{0}` is not a folder")]
    NotDirectory(String),
    #[error("the folder `{0}` is not empty")]
    NotEmpty(String),
    #[error(
        "`{path}` is {size} bytes; files up to {limit} bytes open in the editor, download it instead"
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("`{0}` is not a text file; download it instead")]
    Binary(String),
    #[error("`{path}` changed since you opened it")]
    Changed { path: String, etag: Option<String> },
    #[error("`{0}` may not be read or changed (its permissions forbid it)")]
    Denied(String),
    #[error("the disk is full; nothing was written to `{0}`")]
    NoSpace(String),
    #[error("`{0}` nests folders more than {MAX_DEPTH} levels deep")]
    TooDeep(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A path inside a workspace, checked: relative, no `..`, no NUL or backslash, sane lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath {
    parts: Vec<String>,
}

impl RelPath {
    pub fn parse(raw: &str) -> Result<Self, FileError> {
        let bad = |why: &str| FileError::BadPath(format!("`{}` {why}", raw.escape_debug()));
        if raw.len() > MAX_PATH {
            return Err(bad("is too long"));
        }
        if raw.contains('\0') {
            return Err(bad("contains a NUL character"));
        }
        if raw.contains('\\') {
            return Err(bad("contains a backslash; paths use `/`"));
        }
        if raw.starts_with('/') {
            return Err(bad("is absolute; paths are relative to your workspace"));
        }
        let mut parts = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(bad("goes up with `..`; paths stay inside your workspace")),
                name if name.len() > MAX_NAME => return Err(bad("has a name that is too long")),
                name => parts.push(name.to_owned()),
            }
        }
        Ok(Self { parts })
    }

    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The path as clients see it (`""` for the workspace itself).
    pub fn display(&self) -> String {
        self.parts.join("/")
    }

    fn as_arg(&self) -> String {
        if self.parts.is_empty() {
            ".".into()
        } else {
            self.parts.join("/")
        }
    }

    fn split_last(&self) -> Option<(RelPath, &str)> {
        let (name, parent) = self.parts.split_last()?;
        Some((
            RelPath {
                parts: parent.to_vec(),
            },
            name,
        ))
    }

    pub fn join(&self, name: &str) -> RelPath {
        let mut parts = self.parts.clone();
        parts.push(name.to_owned());
        RelPath { parts }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// The name; names that are not valid UTF-8 are shown with U+FFFD and `utf8: false`.
    pub name: String,
    pub kind: Kind,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub modified: i64,
    pub utf8: bool,
    /// For a symlink: where it points, when that stays inside the workspace.
    pub target: Option<String>,
    /// For a symlink: what the target is, when it stays inside (`None`: dangling or outside).
    pub target_kind: Option<Kind>,
}

pub struct Listing {
    pub entries: Vec<Entry>,
    pub truncated: bool,
}

pub struct Text {
    pub content: String,
    pub encoding: &'static str,
    pub etag: String,
    pub size: u64,
    pub modified: i64,
}

pub struct Saved {
    pub etag: String,
    pub size: u64,
    pub modified: i64,
}

/// A workspace, opened once per operation.
pub struct Jail {
    root: OwnedFd,
}

impl Jail {
    pub fn open(workspace: &Path) -> Result<Self, FileError> {
        let root = rustix::fs::open(
            workspace,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)?;
        Ok(Self { root })
    }

    /// Checks that this kernel (and whatever filters system calls around the server) lets
    /// paths be resolved beneath a folder: without `openat2` the file API cannot be safe.
    pub fn probe(dir: &Path) -> Result<(), String> {
        let jail = Self::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
        match jail.resolve(
            &RelPath { parts: Vec::new() },
            OFlags::PATH | OFlags::DIRECTORY,
        ) {
            Ok(_) => Ok(()),
            Err(FileError::Io(err)) if err.raw_os_error() == Some(libc::ENOSYS) => Err(
                "the kernel refuses openat2 (Linux 5.6 or later is needed, and no seccomp \
                 filter may hide it, such as systemd's RestrictSUIDSGID=yes)"
                    .into(),
            ),
            Err(err) => Err(format!("cannot resolve beneath {}: {err}", dir.display())),
        }
    }

    /// Checks that `path` is a folder beneath the workspace (symlinks followed only while they
    /// stay inside).
    pub fn check_dir(&self, path: &RelPath) -> Result<(), FileError> {
        self.resolve(path, OFlags::PATH | OFlags::DIRECTORY)
            .map(drop)
    }

    /// Opens `path` beneath the workspace; symlinks are followed only while they stay inside.
    fn resolve(&self, path: &RelPath, flags: OFlags) -> Result<OwnedFd, FileError> {
        rustix::fs::openat2(
            &self.root,
            path.as_arg(),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| errno(e, path))
    }

    /// The parent folder of `path`, opened beneath the workspace, and the last name.
    fn parent<'p>(&self, path: &'p RelPath) -> Result<(OwnedFd, &'p str), FileError> {
        let (parent, name) = path
            .split_last()
            .ok_or_else(|| FileError::BadPath("the workspace itself cannot be changed".into()))?;
        let dir = self.resolve(&parent, OFlags::RDONLY | OFlags::DIRECTORY)?;
        Ok((dir, name))
    }

    pub fn list(&self, path: &RelPath, hidden: bool, cap: usize) -> Result<Listing, FileError> {
        let dir = self.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY)?;
        let mut entries = Vec::new();
        let mut truncated = false;
        for entry in Dir::read_from(&dir).map_err(|e| errno(e, path))? {
            let entry = entry.map_err(|e| errno(e, path))?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." || (!hidden && raw.starts_with(b".")) {
                continue;
            }
            if entries.len() == cap {
                truncated = true;
                break;
            }
            let Ok(stat) = rustix::fs::statat(&dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue; // gone since the listing began
            };
            let name = String::from_utf8_lossy(raw).into_owned();
            let utf8 = std::str::from_utf8(raw).is_ok();
            let kind = kind_of(&stat);
            let (target, target_kind) = if kind == Kind::Symlink && utf8 {
                self.symlink_target(&dir, &path.join(&name), entry.file_name())
            } else {
                (None, None)
            };
            entries.push(Entry {
                name,
                kind,
                size: stat.st_size as u64,
                modified: stat.st_mtime,
                utf8,
                target,
                target_kind,
            });
        }
        entries.sort_by(|a, b| {
            (a.kind != Kind::Dir, a.name.to_lowercase(), &a.name).cmp(&(
                b.kind != Kind::Dir,
                b.name.to_lowercase(),
                &b.name,
            ))
        });
        Ok(Listing { entries, truncated })
    }

    fn symlink_target(
        &self,
        dir: &OwnedFd,
        path: &RelPath,
        name: &std::ffi::CStr,
    ) -> (Option<String>, Option<Kind>) {
        let Ok(resolved) = self.resolve(path, OFlags::PATH) else {
            return (None, None);
        };
        let kind = rustix::fs::fstat(&resolved).ok().map(|s| kind_of(&s));
        let text = rustix::fs::readlinkat(dir, name, Vec::new())
            .ok()
            .map(|t| t.to_string_lossy().into_owned());
        (text, kind)
    }

    /// A text file's content, up to `limit` bytes.
    pub fn read_text(&self, path: &RelPath, limit: u64) -> Result<Text, FileError> {
        let fd = self.resolve(path, OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK)?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| errno(e, path))?;
        match kind_of(&stat) {
            Kind::Dir => return Err(FileError::IsDirectory(path.display())),
            Kind::File => {}
            _ => return Err(FileError::Binary(path.display())),
        }
        let size = stat.st_size as u64;
        if size > limit {
            return Err(FileError::TooLarge {
                path: path.display(),
                size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        File::from(fd).take(limit + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(FileError::TooLarge {
                path: path.display(),
                size: bytes.len() as u64,
                limit,
            });
        }
        let etag = etag_of(&bytes);
        let (content, encoding) =
            decode(&bytes).ok_or_else(|| FileError::Binary(path.display()))?;
        Ok(Text {
            content,
            encoding,
            etag,
            size: bytes.len() as u64,
            modified: stat.st_mtime,
        })
    }

    /// Writes `content` atomically: a temporary file beside the target, flushed to disk, then
    /// renamed over it. With `expected_etag`, a file that changed meanwhile is left untouched.
    pub fn save(
        &self,
        path: &RelPath,
        content: &[u8],
        expected: Expect<'_>,
    ) -> Result<Saved, FileError> {
        let (dir, name) = self.parent(path)?;
        let current = match rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => Some(fd),
            Err(Errno::NOENT) => None,
            Err(Errno::LOOP) => {
                return Err(FileError::BadPath(format!(
                    "`{}` is a symbolic link; open and save the file it points to",
                    path.display()
                )));
            }
            Err(e) => return Err(errno(e, path)),
        };
        let mut mode = Mode::from_raw_mode(0o644);
        if let Some(fd) = &current {
            let stat = rustix::fs::fstat(fd).map_err(|e| errno(e, path))?;
            match kind_of(&stat) {
                Kind::File => {}
                Kind::Dir => return Err(FileError::IsDirectory(path.display())),
                _ => return Err(FileError::NotRegular(path.display())),
            }
            mode = Mode::from_raw_mode(stat.st_mode & 0o7777);
        }
        if expected == Expect::Absent && current.is_some() {
            return Err(FileError::Exists(path.display()));
        }
        if let Expect::Etag(expected) = expected {
            let actual = match current {
                Some(fd) => Some(hash_file(File::from(fd))?),
                None => None,
            };
            if actual.as_deref() != Some(expected) {
                return Err(FileError::Changed {
                    path: path.display(),
                    etag: actual,
                });
            }
        }
        let temp = temp_name(name);
        let file = rustix::fs::openat(
            &dir,
            &temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        )
        .map_err(|e| errno(e, path))?;
        let written = write_and_sync(File::from(file), content)
            .and_then(|()| before_rename())
            .and_then(|()| {
                // Created only if still absent: a file made meanwhile is not replaced.
                let flags = match expected {
                    Expect::Absent => rustix::fs::RenameFlags::NOREPLACE,
                    _ => rustix::fs::RenameFlags::empty(),
                };
                rustix::fs::renameat_with(&dir, &temp, &dir, name, flags)
                    .map_err(std::io::Error::from)
            });
        if let Err(err) = written {
            let _ = rustix::fs::unlinkat(&dir, &temp, AtFlags::empty());
            if err.raw_os_error() == Some(libc::EEXIST) {
                return Err(FileError::Exists(path.display()));
            }
            return Err(err.into());
        }
        let _ = rustix::fs::fsync(&dir);
        sweep_stale_temps(&dir);
        let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| errno(e, path))?;
        Ok(Saved {
            etag: etag_of(content),
            size: content.len() as u64,
            modified: stat.st_mtime,
        })
    }

    /// The size of the file at `path` (a link counts as its own size), if there is one.
    pub fn existing_size(&self, path: &RelPath) -> Result<u64, FileError> {
        let (dir, name) = self.parent(path)?;
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(stat.st_size as u64),
            Err(Errno::NOENT) => Ok(0),
            Err(e) => Err(errno(e, path)),
        }
    }

    pub fn mkdir(&self, path: &RelPath) -> Result<(), FileError> {
        let (dir, name) = self.parent(path)?;
        rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)).map_err(|e| errno(e, path))
    }

    /// Renames within the workspace; never replaces what is at `to`.
    pub fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), FileError> {
        let (from_dir, from_name) = self.parent(from)?;
        let (to_dir, to_name) = self.parent(to)?;
        if to.parts.starts_with(&from.parts) {
            return Err(FileError::BadPath(format!(
                "`{}` cannot move into itself",
                from.display()
            )));
        }
        rustix::fs::renameat_with(
            &from_dir,
            from_name,
            &to_dir,
            to_name,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| match e {
            Errno::EXIST => FileError::Exists(to.display()),
            e => errno(e, from),
        })
    }

    /// Removes a file, a symlink (not what it points to) or a folder with everything in it.
    pub fn remove(&self, path: &RelPath) -> Result<(), FileError> {
        let (dir, name) = self.parent(path)?;
        let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| errno(e, path))?;
        if kind_of(&stat) == Kind::Dir {
            remove_tree(&dir, name, 0).map_err(|e| errno(e, path))
        } else {
            rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| errno(e, path))
        }
    }
}

/// A file being uploaded: written to a temporary name beside its destination, moved into
/// place by [`commit_uploads`]. Dropped without a commit, it removes what was written, with the
/// file identity it was begun with (never the server's own, whatever thread drops it).
pub struct PendingUpload {
    dir: OwnedFd,
    temp: String,
    name: String,
    shown: String,
    identity: Option<crate::isolation::Identity>,
    committed: bool,
}

/// How an upload went into place, so that it can be undone.
enum Placed {
    /// Swapped with the file that was there, which now has the temporary name.
    Exchanged,
    /// Nothing was there.
    New,
}

impl PendingUpload {
    /// Where the file will be, relative to the workspace.
    pub fn path(&self) -> &str {
        &self.shown
    }

    fn error(&self, e: Errno) -> FileError {
        match e {
            Errno::EXIST => FileError::Exists(self.shown.clone()),
            Errno::ISDIR | Errno::NOTEMPTY => FileError::IsDirectory(self.shown.clone()),
            e => errno(
                e,
                &RelPath::parse(&self.shown).unwrap_or(RelPath { parts: Vec::new() }),
            ),
        }
    }

    fn place(&self, replace: bool) -> Result<Placed, FileError> {
        use rustix::fs::RenameFlags;
        if replace {
            match rustix::fs::statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if kind_of(&stat) == Kind::Dir => {
                    return Err(FileError::IsDirectory(self.shown.clone()));
                }
                Ok(_) => {
                    let swapped = rustix::fs::renameat_with(
                        &self.dir,
                        &self.temp,
                        &self.dir,
                        &self.name,
                        RenameFlags::EXCHANGE,
                    );
                    match swapped {
                        Ok(()) => return Ok(Placed::Exchanged),
                        // Gone meanwhile: placed as new below.
                        Err(Errno::NOENT) => {}
                        // A file system without exchange: replaced, not undoable.
                        Err(Errno::INVAL) => {
                            return rustix::fs::renameat(
                                &self.dir, &self.temp, &self.dir, &self.name,
                            )
                            .map(|()| Placed::New)
                            .map_err(|e| self.error(e));
                        }
                        Err(e) => return Err(self.error(e)),
                    }
                }
                Err(_) => {}
            }
        }
        rustix::fs::renameat_with(
            &self.dir,
            &self.temp,
            &self.dir,
            &self.name,
            RenameFlags::NOREPLACE,
        )
        .map(|()| Placed::New)
        .map_err(|e| self.error(e))
    }

    /// Puts back what was there before `place`; what was uploaded is at the temporary name
    /// again, for the drop to remove.
    fn undo(&self, placed: &Placed) {
        let _ = match placed {
            Placed::Exchanged => rustix::fs::renameat_with(
                &self.dir,
                &self.temp,
                &self.dir,
                &self.name,
                rustix::fs::RenameFlags::EXCHANGE,
            ),
            Placed::New => rustix::fs::renameat(&self.dir, &self.name, &self.dir, &self.temp),
        };
    }

    fn finish(mut self, placed: &Placed) {
        if matches!(placed, Placed::Exchanged) {
            // The replaced file, now under the temporary name.
            let _ = rustix::fs::unlinkat(&self.dir, &self.temp, AtFlags::empty());
        }
        self.committed = true;
        let _ = rustix::fs::fsync(&self.dir);
        sweep_stale_temps(&self.dir);
    }
}

/// Moves every finished upload into place, all or none: when one cannot go (it exists and
/// `replace` is false, a folder took its name), those already placed are put back as they were,
/// replaced files included, and nothing uploaded is left.
pub fn commit_uploads(uploads: Vec<PendingUpload>, replace: bool) -> Result<(), FileError> {
    let mut placed = Vec::with_capacity(uploads.len());
    for upload in uploads {
        match upload.place(replace) {
            Ok(how) => placed.push((upload, how)),
            Err(err) => {
                for (done, how) in placed.iter().rev() {
                    done.undo(how);
                }
                return Err(err);
            }
        }
    }
    for (upload, how) in placed {
        upload.finish(&how);
    }
    Ok(())
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = crate::isolation::run_as(self.identity, |_| {
                rustix::fs::unlinkat(&self.dir, &self.temp, AtFlags::empty())
            });
        }
    }
}

/// A file opened for download.
pub struct Download {
    pub file: File,
    pub size: u64,
    pub name: String,
    pub modified: i64,
}

impl Jail {
    /// Starts an upload of `name` into `folder`: the temporary file to write, and what commits it.
    pub fn begin_upload(
        &self,
        folder: &RelPath,
        raw_name: &str,
        replace: bool,
    ) -> Result<(File, PendingUpload), FileError> {
        let single = RelPath::parse(raw_name)?;
        let [name] = single.parts.as_slice() else {
            return Err(FileError::BadPath(format!(
                "`{}` is not a file name",
                raw_name.escape_debug()
            )));
        };
        let name = name.as_str();
        let path = folder.join(name);
        let dir = self.resolve(folder, OFlags::RDONLY | OFlags::DIRECTORY)?;
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if kind_of(&stat) == Kind::Dir => {
                return Err(FileError::IsDirectory(path.display()));
            }
            Ok(_) if !replace => return Err(FileError::Exists(path.display())),
            _ => {}
        }
        let temp = temp_name(name);
        let fd = rustix::fs::openat(
            &dir,
            &temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| errno(e, &path))?;
        Ok((
            File::from(fd),
            PendingUpload {
                dir,
                temp,
                name: name.to_owned(),
                shown: path.display(),
                identity: crate::isolation::fsid::current(),
                committed: false,
            },
        ))
    }

    pub fn open_download(&self, path: &RelPath) -> Result<Download, FileError> {
        let fd = self.resolve(path, OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK)?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| errno(e, path))?;
        match kind_of(&stat) {
            Kind::File => {}
            Kind::Dir => return Err(FileError::IsDirectory(path.display())),
            _ => return Err(FileError::Binary(path.display())),
        }
        Ok(Download {
            file: File::from(fd),
            size: stat.st_size as u64,
            name: path.parts.last().cloned().unwrap_or_default(),
            modified: stat.st_mtime,
        })
    }
}

impl Jail {
    /// Bytes used by the workspace: the sizes of its files, symlinks not followed.
    pub fn usage(&self) -> Result<u64, FileError> {
        let root = self.resolve(
            &RelPath { parts: Vec::new() },
            OFlags::RDONLY | OFlags::DIRECTORY,
        )?;
        tree_size(&root, 0).map_err(|e| errno(e, &RelPath { parts: Vec::new() }))
    }
}

/// The sizes of the files under `dir`; `MLINK` past [`MAX_DEPTH`], so an agent cannot hide
/// data from the quota, or exhaust descriptors and stack, by nesting folders.
fn tree_size(dir: &OwnedFd, depth: usize) -> rustix::io::Result<u64> {
    if depth > MAX_DEPTH {
        return Err(Errno::MLINK);
    }
    let mut total = 0;
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let Ok(stat) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        match kind_of(&stat) {
            Kind::Dir => {
                if let Ok(child) = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    total += tree_size(&child, depth + 1)?;
                }
            }
            Kind::File => total += stat.st_size as u64,
            _ => {}
        }
    }
    Ok(total)
}

/// Empties and removes the folder `name` in `parent`, never following a symlink.
fn remove_tree(parent: &OwnedFd, name: &str, depth: usize) -> rustix::io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(Errno::MLINK);
    }
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut children = Vec::new();
    for entry in Dir::read_from(&dir)? {
        let entry = entry?;
        let child = entry.file_name().to_owned();
        if child.as_bytes() != b"." && child.as_bytes() != b".." {
            children.push((child, entry.file_type()));
        }
    }
    for (child, file_type) in children {
        let is_dir = if file_type == FileType::Unknown {
            let stat = rustix::fs::statat(&dir, &child, AtFlags::SYMLINK_NOFOLLOW)?;
            FileType::from_raw_mode(stat.st_mode) == FileType::Directory
        } else {
            file_type == FileType::Directory
        };
        if is_dir {
            let name = child.to_str().map_err(|_| Errno::INVAL)?;
            remove_tree(&dir, name, depth + 1)?;
        } else {
            rustix::fs::unlinkat(&dir, &child, AtFlags::empty())?;
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

fn kind_of(stat: &Stat) -> Kind {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

fn errno(err: Errno, path: &RelPath) -> FileError {
    let shown = path.display();
    match err {
        Errno::NOENT => FileError::NotFound(shown),
        // RESOLVE_BENEATH refuses what would leave the workspace with EXDEV; a symlink loop or
        // a magic link with ELOOP.
        Errno::XDEV | Errno::LOOP => FileError::Outside(shown),
        Errno::EXIST => FileError::Exists(shown),
        Errno::ISDIR => FileError::IsDirectory(shown),
        Errno::NOTDIR => FileError::NotDirectory(shown),
        Errno::NOTEMPTY => FileError::NotEmpty(shown),
        Errno::NAMETOOLONG => FileError::BadPath(format!("`{shown}` is too long")),
        Errno::ACCESS | Errno::PERM | Errno::ROFS => FileError::Denied(shown),
        Errno::NOSPC | Errno::DQUOT => FileError::NoSpace(shown),
        Errno::MLINK => FileError::TooDeep(shown),
        Errno::INVAL => FileError::BadPath(format!("`{shown}` cannot be used here")),
        // Opening a socket, or a device without a driver.
        Errno::NXIO | Errno::NODEV | Errno::OPNOTSUPP => FileError::NotRegular(shown),
        other => FileError::Io(other.into()),
    }
}

/// A strong validator: the content's SHA-256, shortened.
pub fn etag_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

fn hash_file(mut file: File) -> Result<String, FileError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(&hasher.finalize()[..16]))
}

/// Text in UTF-8 (with or without BOM) or UTF-16 with a BOM; `None` for binary content.
fn decode(bytes: &[u8]) -> Option<(String, &'static str)> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return Some((std::str::from_utf8(rest).ok()?.to_owned(), "utf-8-bom"));
    }
    for (bom, little, name) in [
        (b"\xFF\xFE", true, "utf-16le"),
        (b"\xFE\xFF", false, "utf-16be"),
    ] {
        if let Some(rest) = bytes.strip_prefix(bom) {
            let units = rest.chunks_exact(2).map(|p| {
                if little {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            });
            return char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
                .map(|s| (s, name));
        }
    }
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes)
        .ok()
        .map(|s| (s.to_owned(), "utf-8"))
}

/// How old a temporary file of a save or an upload must be before the next write into its
/// folder removes it: one left by a crash or a kill; an upload in progress writes all along.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Whether `name` is one of [`temp_name`]'s.
fn is_temp_name(name: &[u8]) -> bool {
    let Some(rest) = name.strip_suffix(b".tmp") else {
        return false;
    };
    let Some(at) = rest.windows(11).rposition(|w| w == b".pocketdev-") else {
        return false;
    };
    let suffix = &rest[at + 11..];
    name.first() == Some(&b'.')
        && at > 0
        && !suffix.is_empty()
        && suffix
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Removes temporary files of saves and uploads that were interrupted (the server killed
/// between write and rename) from the folder `dir`, once they are stale.
fn sweep_stale_temps(dir: &OwnedFd) {
    let Ok(own) = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let Ok(mut entries) = Dir::new(own) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let stale_before = now - STALE_TEMP.as_secs() as i64;
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name();
        if !is_temp_name(name.to_bytes()) {
            continue;
        }
        let old = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| kind_of(&stat) == Kind::File && stat.st_mtime < stale_before);
        if old {
            let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
        }
    }
}

fn temp_name(name: &str) -> String {
    let suffix = crate::auth::tokens::random_token(6);
    // Keep the whole temporary name within NAME_MAX.
    let mut end = name.len().min(MAX_NAME - 30);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.pocketdev-{suffix}.tmp", &name[..end])
}

fn write_and_sync(mut file: File, content: &[u8]) -> std::io::Result<()> {
    file.write_all(content)?;
    file.sync_all()
}

#[cfg(not(test))]
fn before_rename() -> std::io::Result<()> {
    Ok(())
}

/// Tests stand in for a crash between writing and renaming.
#[cfg(test)]
fn before_rename() -> std::io::Result<()> {
    if tests::CRASH_BEFORE_RENAME.with(|c| c.get()) {
        return Err(std::io::Error::other("simulated crash"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        pub static CRASH_BEFORE_RENAME: Cell<bool> = const { Cell::new(false) };
    }

    fn jail() -> (tempfile::TempDir, Jail) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ws")).unwrap();
        let jail = Jail::open(&dir.path().join("ws")).unwrap();
        (dir, jail)
    }

    fn p(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn paths_are_checked_before_the_kernel_sees_them() {
        assert_eq!(p("./a//b/").display(), "a/b");
        assert!(p("").is_root());
        for bad in ["..", "a/../b", "/etc", "a\\b", "a\0b", &"x".repeat(300)] {
            assert!(
                matches!(RelPath::parse(bad), Err(FileError::BadPath(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_old_file() {
        let (dir, jail) = jail();
        jail.save(&p("f.txt"), b"old", Expect::Any).unwrap();
        CRASH_BEFORE_RENAME.with(|c| c.set(true));
        let result = jail.save(&p("f.txt"), b"new", Expect::Any);
        CRASH_BEFORE_RENAME.with(|c| c.set(false));
        assert!(result.is_err());
        assert_eq!(std::fs::read(dir.path().join("ws/f.txt")).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("ws")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }

    fn upload(jail: &Jail, name: &str, content: &[u8], replace: bool) -> PendingUpload {
        let (mut file, pending) = jail.begin_upload(&p(""), name, replace).unwrap();
        file.write_all(content).unwrap();
        pending
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn uploads_go_into_place_all_or_none() {
        let (dir, jail) = jail();
        let ws = dir.path().join("ws");
        // Replacing: the second cannot go (a folder took its name), so the first file is put
        // back as it was.
        std::fs::write(ws.join("a.txt"), "old a").unwrap();
        std::fs::write(ws.join("b.txt"), "old b").unwrap();
        let a = upload(&jail, "a.txt", b"new a", true);
        let b = upload(&jail, "b.txt", b"new b", true);
        std::fs::remove_file(ws.join("b.txt")).unwrap();
        std::fs::create_dir(ws.join("b.txt")).unwrap();
        let err = commit_uploads(vec![a, b], true).unwrap_err();
        assert!(matches!(err, FileError::IsDirectory(_)), "{err:?}");
        assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "old a");
        assert_eq!(names(&ws), ["a.txt", "b.txt"], "nothing uploaded is left");
        std::fs::remove_dir(ws.join("b.txt")).unwrap();

        // New files: the second exists by the time of the commit, so neither stays.
        let c = upload(&jail, "c.txt", b"c", false);
        let d = upload(&jail, "d.txt", b"d", false);
        std::fs::write(ws.join("d.txt"), "someone else's d").unwrap();
        let err = commit_uploads(vec![c, d], false).unwrap_err();
        assert!(matches!(err, FileError::Exists(_)), "{err:?}");
        assert_eq!(names(&ws), ["a.txt", "d.txt"]);
        assert_eq!(
            std::fs::read_to_string(ws.join("d.txt")).unwrap(),
            "someone else's d"
        );

        // And when all can go, they do, the replaced file's old content gone with its name.
        let a = upload(&jail, "a.txt", b"newer a", true);
        let e = upload(&jail, "e.txt", b"e", true);
        commit_uploads(vec![a, e], true).unwrap();
        assert_eq!(
            std::fs::read_to_string(ws.join("a.txt")).unwrap(),
            "newer a"
        );
        assert_eq!(names(&ws), ["a.txt", "d.txt", "e.txt"]);
    }

    #[test]
    fn the_next_write_sweeps_temporary_files_a_crash_left() {
        let (dir, jail) = jail();
        let ws = dir.path().join("ws");
        let stale = ws.join(".f0.txt.pocketdev-Ab3_x-.tmp");
        let fresh = ws.join(".f1.txt.pocketdev-Zz9aaa.tmp");
        let lookalike = ws.join(".notes.pocketdev-draft.tmp.txt");
        for path in [&stale, &fresh, &lookalike] {
            std::fs::write(path, "partial").unwrap();
        }
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
        for path in [&stale, &lookalike] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(day_ago)
                .unwrap();
        }
        jail.save(&p("other.txt"), b"x", Expect::Any).unwrap();
        assert!(!stale.exists(), "a stale temporary file stays");
        assert!(fresh.exists(), "a save in progress lost its file");
        assert!(
            lookalike.exists(),
            "a file of the user's was taken for a temporary one"
        );
        assert!(is_temp_name(temp_name("f.txt").as_bytes()));
        assert!(!is_temp_name(b"f.pocketdev-abc.tmp"));
    }

    #[test]
    fn symlinks_are_followed_only_inside() {
        let (dir, jail) = jail();
        let ws = dir.path().join("ws");
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::fs::write(ws.join("inside.txt"), "i").unwrap();
        std::os::unix::fs::symlink("../secret", ws.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ws.join("abs")).unwrap();
        std::os::unix::fs::symlink("inside.txt", ws.join("ok")).unwrap();
        assert!(matches!(
            jail.read_text(&p("up"), 1000),
            Err(FileError::Outside(_))
        ));
        assert!(matches!(
            jail.read_text(&p("abs"), 1000),
            Err(FileError::Outside(_))
        ));
        assert_eq!(jail.read_text(&p("ok"), 1000).unwrap().content, "i");
        let listing = jail.list(&p(""), false, 100).unwrap();
        let up = listing.entries.iter().find(|e| e.name == "up").unwrap();
        assert_eq!((up.kind, up.target.as_deref()), (Kind::Symlink, None));
        let ok = listing.entries.iter().find(|e| e.name == "ok").unwrap();
        assert_eq!(
            (ok.target.as_deref(), ok.target_kind),
            (Some("inside.txt"), Some(Kind::File))
        );
        // Removing a symlink removes the link, not its target.
        jail.remove(&p("up")).unwrap();
        assert!(dir.path().join("secret").exists());
    }

    #[test]
    fn text_is_decoded_and_binary_refused() {
        assert_eq!(decode(b"hi").unwrap(), ("hi".into(), "utf-8"));
        assert_eq!(decode(b"\xEF\xBB\xBFhi").unwrap().1, "utf-8-bom");
        assert_eq!(
            decode(b"\xFF\xFEh\0i\0").unwrap(),
            ("hi".into(), "utf-16le")
        );
        assert!(decode(b"\x89PNG\0\0").is_none());
        assert!(decode(b"\xC3\x28").is_none());
    }
}
