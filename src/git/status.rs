//! `git status --porcelain=v2 -z --branch` read into what the phone shows.

use serde::Serialize;
use utoipa::ToSchema;

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Modified,
    Added,
    Deleted,
    Renamed,
    Untracked,
    Conflicted,
    Typechange,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StatusFile {
    /// Relative to the worktree.
    pub path: String,
    /// Where a renamed (or copied) file came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub status: FileStatus,
    /// Changes of it are in the index (will be committed).
    pub staged: bool,
    /// Changes of it are only in the working tree.
    pub unstaged: bool,
}

/// How many files of each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Counts {
    /// Modified, renamed, type-changed or conflicted.
    pub changed: usize,
    pub added: usize,
    pub deleted: usize,
    pub untracked: usize,
}

/// The parsed status: the branch header and the files.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The commit checked out (`None` before the first commit).
    pub head: Option<String>,
    /// The branch (`None` when detached).
    pub branch: Option<String>,
    pub files: Vec<StatusFile>,
}

fn status_of(code: u8) -> Option<FileStatus> {
    Some(match code {
        b'M' => FileStatus::Modified,
        b'A' => FileStatus::Added,
        b'D' => FileStatus::Deleted,
        b'R' | b'C' => FileStatus::Renamed,
        b'T' => FileStatus::Typechange,
        b'U' => FileStatus::Conflicted,
        _ => return None,
    })
}

/// Reads porcelain v2 with `-z` (entries end with NUL; a rename's original path follows it).
/// The `git status` that [`parse`] reads: every file, untracked ones one by one, and the
/// branch headers.
pub const PORCELAIN: [&str; 5] = [
    "status",
    "--porcelain=v2",
    "-z",
    "--branch",
    "--untracked-files=all",
];

pub fn parse(raw: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut entries = raw.split(|b| *b == 0).map(String::from_utf8_lossy);
    while let Some(entry) = entries.next() {
        let entry = entry.as_ref();
        if let Some(header) = entry.strip_prefix("# ") {
            if let Some(oid) = header.strip_prefix("branch.oid ") {
                parsed.head = (oid != "(initial)").then(|| oid.to_owned());
            } else if let Some(head) = header.strip_prefix("branch.head ") {
                parsed.branch = (head != "(detached)").then(|| head.to_owned());
            }
            continue;
        }
        let kind = entry.chars().next();
        match kind {
            Some('1') | Some('2') | Some('u') => {
                // 1 XY sub mH mI mW hH hI path
                // 2 XY sub mH mI mW hH hI Xscore path (then origPath as its own entry)
                // u XY sub m1 m2 m3 mW h1 h2 h3 path
                let fields = match kind {
                    Some('1') => 8,
                    Some('2') => 9,
                    _ => 10,
                };
                let mut parts = entry.splitn(fields + 1, ' ');
                let _ = parts.next();
                let xy = parts.next().unwrap_or("..").as_bytes().to_vec();
                let Some(path) = parts.nth(fields - 2) else {
                    continue;
                };
                let old_path = if kind == Some('2') {
                    entries.next().map(|p| p.into_owned())
                } else {
                    None
                };
                let (x, y) = (
                    xy.first().copied().unwrap_or(b'.'),
                    xy.get(1).copied().unwrap_or(b'.'),
                );
                let status = if kind == Some('u') {
                    FileStatus::Conflicted
                } else if old_path.is_some() {
                    FileStatus::Renamed
                } else {
                    status_of(x)
                        .or_else(|| status_of(y))
                        .unwrap_or(FileStatus::Modified)
                };
                parsed.files.push(StatusFile {
                    path: path.to_owned(),
                    old_path,
                    status,
                    staged: kind != Some('u') && x != b'.',
                    unstaged: kind == Some('u') || y != b'.',
                });
            }
            Some('?') => parsed.files.push(StatusFile {
                path: entry[2.min(entry.len())..].to_owned(),
                old_path: None,
                status: FileStatus::Untracked,
                staged: false,
                unstaged: true,
            }),
            _ => {}
        }
    }
    parsed
}

pub fn count(files: &[StatusFile]) -> Counts {
    let mut counts = Counts::default();
    for file in files {
        match file.status {
            FileStatus::Added => counts.added += 1,
            FileStatus::Deleted => counts.deleted += 1,
            FileStatus::Untracked => counts.untracked += 1,
            _ => counts.changed += 1,
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_of_entry() {
        let raw = b"# branch.oid 1234abcd\0# branch.head feature/x\0# branch.ab +1 -0\0\
1 .M N... 100644 100644 100644 aaa aaa src/a b.rs\0\
1 A. N... 000000 100644 100644 000 bbb new.txt\0\
1 D. N... 100644 000000 000000 ccc 000 gone.txt\0\
2 R. N... 100644 100644 100644 ddd ddd R100 to.txt\0from.txt\0\
u UU N... 100644 100644 100644 100644 e1 e2 e3 both.txt\0\
1 T. N... 100644 120000 120000 fff ggg link\0\
? fresh file.txt\0! ignored\0";
        let parsed = parse(raw);
        assert_eq!(parsed.head.as_deref(), Some("1234abcd"));
        assert_eq!(parsed.branch.as_deref(), Some("feature/x"));
        let got: Vec<(&str, Option<&str>, FileStatus, bool, bool)> = parsed
            .files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.old_path.as_deref(),
                    f.status,
                    f.staged,
                    f.unstaged,
                )
            })
            .collect();
        use FileStatus::*;
        assert_eq!(
            got,
            vec![
                ("src/a b.rs", None, Modified, false, true),
                ("new.txt", None, Added, true, false),
                ("gone.txt", None, Deleted, true, false),
                ("to.txt", Some("from.txt"), Renamed, true, false),
                ("both.txt", None, Conflicted, false, true),
                ("link", None, Typechange, true, false),
                ("fresh file.txt", None, Untracked, false, true),
            ]
        );
        let counts = count(&parsed.files);
        assert_eq!(
            counts,
            Counts {
                changed: 4,
                added: 1,
                deleted: 1,
                untracked: 1
            }
        );
    }

    #[test]
    fn an_unborn_branch_has_no_head() {
        let parsed = parse(b"# branch.oid (initial)\0# branch.head main\0");
        assert_eq!(parsed.head, None);
        assert_eq!(parsed.branch.as_deref(), Some("main"));
        let detached = parse(b"# branch.oid abc\0# branch.head (detached)\0");
        assert_eq!(detached.branch, None);
    }
}
