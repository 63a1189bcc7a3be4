//! `git diff --patch` output read into files and hunks, paged by lines, and the patches that
//! stage or unstage chosen hunks.
//!
//! Each hunk keeps its raw bytes, so a patch built from it is exactly what git printed (text
//! that is not UTF-8 included). A hunk's id is a short hash of its file's path, its header and
//! its lines: the same change has the same id, and a hunk that changed meanwhile is not found.

use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::status::FileStatus;

/// The most diff lines one page holds.
pub const PAGE_LINES: usize = 2000;

/// What one line of a hunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    Context,
    Add,
    Del,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DiffLine {
    pub kind: LineKind,
    /// The line without its `+`, `-` or space (not valid UTF-8: replaced characters).
    pub text: String,
    /// Its number in the old file (context and removed lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<u32>,
    /// Its number in the new file (context and added lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<u32>,
    /// The file ends here without a newline.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[schema(default = false, required = false)]
    pub no_newline: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Hunk {
    /// Stable for the same change: what `stage` and `unstage` take.
    pub id: String,
    /// The `@@ -a,b +c,d @@ …` line.
    pub header: String,
    pub old_start: u32,
    pub old_lines: u32,
    pub new_start: u32,
    pub new_lines: u32,
    /// Its lines on this page (a hunk longer than a page continues, same id, on the next).
    pub lines: Vec<DiffLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DiffFile {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub status: FileStatus,
    /// No hunks are shown for a binary file.
    pub binary: bool,
    /// Lines added and removed in the whole file (all pages).
    pub additions: usize,
    pub deletions: usize,
    pub hunks: Vec<Hunk>,
}

/// One file of a diff as git printed it.
#[derive(Debug, Clone)]
pub struct RawFile {
    pub path: String,
    pub old_path: Option<String>,
    pub status: FileStatus,
    pub binary: bool,
    /// The lines from `diff --git` to `+++`, for patches.
    header: Vec<Vec<u8>>,
    pub hunks: Vec<RawHunk>,
}

impl RawFile {
    /// An untracked file listed without its content.
    pub fn without_content(path: String) -> Self {
        Self {
            path,
            old_path: None,
            status: FileStatus::Untracked,
            binary: false,
            header: Vec::new(),
            hunks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RawHunk {
    pub id: String,
    header: Vec<u8>,
    old_start: u32,
    old_lines: u32,
    new_start: u32,
    new_lines: u32,
    /// Each line with its prefix (`+`, `-`, space or `\`), without the newline.
    lines: Vec<Vec<u8>>,
}

/// `-a,b +c,d` of a hunk header.
fn parse_range(header: &[u8]) -> Option<(u32, u32, u32, u32)> {
    let text = std::str::from_utf8(header).ok()?;
    let inner = text.strip_prefix("@@ -")?;
    let (ranges, _) = inner.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let one = |r: &str| -> Option<(u32, u32)> {
        match r.split_once(',') {
            Some((s, n)) => Some((s.parse().ok()?, n.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (a, b) = one(old)?;
    let (c, d) = one(new)?;
    Some((a, b, c, d))
}

/// A name as git prints it in headers: C-quoted when it holds unusual characters.
fn unquote(raw: &[u8]) -> Vec<u8> {
    let Some(inner) = raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) else {
        return raw.to_vec();
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        if c != b'\\' || i + 1 >= inner.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let next = inner[i + 1];
        let simple = match next {
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'v' => Some(11),
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            i += 2;
        } else if i + 3 < inner.len()
            && inner[i + 1..i + 4]
                .iter()
                .all(|d| (b'0'..=b'7').contains(d))
        {
            let value = inner[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn name(raw: &[u8]) -> String {
    String::from_utf8_lossy(&unquote(raw)).into_owned()
}

/// A `---`/`+++` name without its `a/`/`b/` prefix; `None` for /dev/null.
fn side(raw: &[u8], prefix: &[u8]) -> Option<String> {
    // git adds a tab after a name with a space in it, for patch(1).
    let raw = raw.strip_suffix(b"\t").unwrap_or(raw);
    if raw == b"/dev/null" {
        return None;
    }
    let unquoted = unquote(raw);
    let bare = unquoted.strip_prefix(prefix).unwrap_or(&unquoted);
    Some(String::from_utf8_lossy(bare).into_owned())
}

fn hunk_id(path: &str, header: &[u8], lines: &[Vec<u8>]) -> String {
    let mut hash = Sha256::new();
    hash.update(path.as_bytes());
    hash.update([0]);
    hash.update(header);
    for line in lines {
        hash.update([b'\n']);
        hash.update(line);
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the output of `git diff --patch --no-color --src-prefix=a/ --dst-prefix=b/`.
pub fn parse(raw: &[u8]) -> Vec<RawFile> {
    let mut lines: Vec<&[u8]> = raw.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let mut files = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let Some(git_names) = line.strip_prefix(b"diff --git ") else {
            i += 1;
            continue;
        };
        let mut file = RawFile {
            path: String::new(),
            old_path: None,
            status: FileStatus::Modified,
            binary: false,
            header: vec![line.to_vec()],
            hunks: Vec::new(),
        };
        let (mut minus, mut plus, mut renamed_from, mut renamed_to) = (None, None, None, None);
        i += 1;
        // The extended header.
        while i < lines.len()
            && !lines[i].starts_with(b"@@ ")
            && !lines[i].starts_with(b"diff --git ")
        {
            let l = lines[i];
            file.header.push(l.to_vec());
            if let Some(rest) = l.strip_prefix(b"--- ") {
                minus = side(rest, b"a/");
            } else if let Some(rest) = l.strip_prefix(b"+++ ") {
                plus = side(rest, b"b/");
            } else if let Some(rest) = l
                .strip_prefix(b"rename from ")
                .or_else(|| l.strip_prefix(b"copy from "))
            {
                renamed_from = Some(name(rest));
            } else if let Some(rest) = l
                .strip_prefix(b"rename to ")
                .or_else(|| l.strip_prefix(b"copy to "))
            {
                renamed_to = Some(name(rest));
            } else if l.starts_with(b"new file mode") {
                file.status = FileStatus::Added;
            } else if l.starts_with(b"deleted file mode") {
                file.status = FileStatus::Deleted;
            } else if l.starts_with(b"Binary files ") || l == b"GIT binary patch" {
                file.binary = true;
            } else if let Some(old_mode) = l.strip_prefix(b"old mode ") {
                let next = lines.get(i + 1).and_then(|n| n.strip_prefix(b"new mode "));
                if next.is_some_and(|new| new.get(..2) != old_mode.get(..2)) {
                    file.status = FileStatus::Typechange;
                }
            }
            i += 1;
        }
        if renamed_from.is_some() {
            file.status = FileStatus::Renamed;
        }
        file.path = renamed_to
            .clone()
            .or_else(|| plus.clone())
            .or_else(|| minus.clone())
            .unwrap_or_else(|| {
                // `diff --git a/X b/X`: only mode or binary changes, the same name twice.
                if git_names.starts_with(b"\"") {
                    // `"a/…" "b/…"`: the first quoted name.
                    let mut end = 1;
                    while end < git_names.len() && git_names[end] != b'"' {
                        end += if git_names[end] == b'\\' { 2 } else { 1 };
                    }
                    let first = &git_names[..(end + 1).min(git_names.len())];
                    return side(first, b"a/").unwrap_or_default();
                }
                let text = String::from_utf8_lossy(git_names).into_owned();
                let half = text.len().saturating_sub(1) / 2;
                let first = text.get(..half).unwrap_or(&text);
                first.strip_prefix("a/").unwrap_or(first).to_owned()
            });
        if file.status == FileStatus::Renamed {
            file.old_path = renamed_from.or(minus);
        }
        // The hunks.
        while i < lines.len() && lines[i].starts_with(b"@@ ") {
            let header = lines[i].to_vec();
            i += 1;
            let Some((old_start, old_lines, new_start, new_lines)) = parse_range(&header) else {
                continue;
            };
            let (mut old_left, mut new_left) = (old_lines, new_lines);
            let mut body = Vec::new();
            while i < lines.len() && (old_left > 0 || new_left > 0) {
                let l = lines[i];
                match l.first() {
                    Some(b'+') => new_left = new_left.saturating_sub(1),
                    Some(b'-') => old_left = old_left.saturating_sub(1),
                    Some(b'\\') => {}
                    // A context line (empty: `diff.suppressBlankEmpty`).
                    _ => {
                        old_left = old_left.saturating_sub(1);
                        new_left = new_left.saturating_sub(1);
                    }
                }
                body.push(l.to_vec());
                i += 1;
            }
            while i < lines.len() && lines[i].starts_with(b"\\") {
                body.push(lines[i].to_vec());
                i += 1;
            }
            file.hunks.push(RawHunk {
                id: hunk_id(&file.path, &header, &body),
                header,
                old_start,
                old_lines,
                new_start,
                new_lines,
                lines: body,
            });
        }
        files.push(file);
    }
    files
}

impl RawHunk {
    /// The lines as clients see them, numbered.
    fn shown(&self) -> Vec<DiffLine> {
        let (mut old, mut new) = (self.old_start, self.new_start);
        let mut out: Vec<DiffLine> = Vec::with_capacity(self.lines.len());
        for line in &self.lines {
            let text = |l: &[u8]| String::from_utf8_lossy(l.get(1..).unwrap_or(b"")).into_owned();
            match line.first() {
                Some(b'\\') => {
                    if let Some(last) = out.last_mut() {
                        last.no_newline = true;
                    }
                }
                Some(b'+') => {
                    out.push(DiffLine {
                        kind: LineKind::Add,
                        text: text(line),
                        old: None,
                        new: Some(new),
                        no_newline: false,
                    });
                    new += 1;
                }
                Some(b'-') => {
                    out.push(DiffLine {
                        kind: LineKind::Del,
                        text: text(line),
                        old: Some(old),
                        new: None,
                        no_newline: false,
                    });
                    old += 1;
                }
                _ => {
                    out.push(DiffLine {
                        kind: LineKind::Context,
                        text: text(line),
                        old: Some(old),
                        new: Some(new),
                        no_newline: false,
                    });
                    old += 1;
                    new += 1;
                }
            }
        }
        out
    }
}

/// One page of a diff: its files (hunks cut to the page's lines) and how many pages there are.
pub fn page(files: &[RawFile], page: usize) -> (Vec<DiffFile>, usize) {
    let (start, end) = (
        page.saturating_mul(PAGE_LINES),
        (page + 1).saturating_mul(PAGE_LINES),
    );
    let mut offset = 0usize;
    let mut out = Vec::new();
    for file in files {
        let shown: Vec<(&RawHunk, Vec<DiffLine>)> = if file.binary {
            Vec::new()
        } else {
            file.hunks.iter().map(|h| (h, h.shown())).collect()
        };
        let additions = shown
            .iter()
            .flat_map(|(_, l)| l)
            .filter(|l| l.kind == LineKind::Add)
            .count();
        let deletions = shown
            .iter()
            .flat_map(|(_, l)| l)
            .filter(|l| l.kind == LineKind::Del)
            .count();
        let total: usize = shown.iter().map(|(_, l)| l.len()).sum::<usize>().max(1);
        let (file_start, file_end) = (offset, offset + total);
        offset = file_end;
        if file_end <= start || file_start >= end {
            continue;
        }
        let mut hunks = Vec::new();
        let mut at = file_start;
        for (raw, lines) in shown {
            let (h_start, h_end) = (at, at + lines.len());
            at = h_end;
            if h_end <= start || h_start >= end {
                continue;
            }
            let from = start.saturating_sub(h_start);
            let to = (end - h_start).min(lines.len());
            hunks.push(Hunk {
                id: raw.id.clone(),
                header: String::from_utf8_lossy(&raw.header).into_owned(),
                old_start: raw.old_start,
                old_lines: raw.old_lines,
                new_start: raw.new_start,
                new_lines: raw.new_lines,
                lines: lines[from..to].to_vec(),
            });
        }
        out.push(DiffFile {
            path: file.path.clone(),
            old_path: file.old_path.clone(),
            status: file.status,
            binary: file.binary,
            additions,
            deletions,
            hunks,
        });
    }
    (out, offset.div_ceil(PAGE_LINES).max(1))
}

/// The patch of the chosen hunks (by id) of `files`, and the ids not found in them.
pub fn patch_of(files: &[RawFile], ids: &[String]) -> (Vec<u8>, Vec<String>) {
    let mut patch = Vec::new();
    let mut found = std::collections::HashSet::new();
    for file in files.iter().filter(|f| !f.binary) {
        let chosen: Vec<&RawHunk> = file.hunks.iter().filter(|h| ids.contains(&h.id)).collect();
        if chosen.is_empty() {
            continue;
        }
        for line in &file.header {
            patch.extend_from_slice(line);
            patch.push(b'\n');
        }
        for hunk in chosen {
            found.insert(hunk.id.clone());
            patch.extend_from_slice(&hunk.header);
            patch.push(b'\n');
            for line in &hunk.lines {
                patch.extend_from_slice(line);
                patch.push(b'\n');
            }
        }
    }
    let missing = ids
        .iter()
        .filter(|id| !found.contains(*id))
        .cloned()
        .collect();
    (patch, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"diff --git a/src/a.rs b/src/a.rs
index 1111111..2222222 100644
--- a/src/a.rs
+++ b/src/a.rs
@@ -1,3 +1,3 @@ fn main()
 one
-two
+TWO
 three
@@ -10,2 +10,3 @@
 ten
+ten and a half
 eleven
\\ No newline at end of file
diff --git a/new file.txt b/new file.txt
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/new file.txt\t
@@ -0,0 +1 @@
+hello
diff --git a/old.txt b/renamed.txt
similarity index 90%
rename from old.txt
rename to renamed.txt
index 4444444..5555555 100644
--- a/old.txt
+++ b/renamed.txt
@@ -1 +1 @@
-x
+y
diff --git a/img.png b/img.png
index 6666666..7777777 100644
Binary files a/img.png and b/img.png differ
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 8888888..0000000
--- a/gone.txt
+++ /dev/null
@@ -1,2 +0,0 @@
-a
-b
diff --git \"a/tab\\there\" \"b/tab\\there\"
old mode 100644
new mode 100755
";

    #[test]
    fn reads_files_hunks_and_lines() {
        let files = parse(SAMPLE);
        let summary: Vec<(&str, Option<&str>, FileStatus, bool, usize)> = files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.old_path.as_deref(),
                    f.status,
                    f.binary,
                    f.hunks.len(),
                )
            })
            .collect();
        use FileStatus::*;
        assert_eq!(
            summary,
            vec![
                ("src/a.rs", None, Modified, false, 2),
                ("new file.txt", None, Added, false, 1),
                ("renamed.txt", Some("old.txt"), Renamed, false, 1),
                ("img.png", None, Modified, true, 0),
                ("gone.txt", None, Deleted, false, 1),
                ("tab\there", None, Modified, false, 0),
            ]
        );
        let (shown, pages) = page(&files, 0);
        assert_eq!(pages, 1);
        let a = &shown[0];
        assert_eq!((a.additions, a.deletions), (2, 1));
        let second = &a.hunks[1];
        assert_eq!(
            (
                second.old_start,
                second.old_lines,
                second.new_start,
                second.new_lines
            ),
            (10, 2, 10, 3)
        );
        assert_eq!(
            second.lines[1],
            DiffLine {
                kind: LineKind::Add,
                text: "ten and a half".into(),
                old: None,
                new: Some(11),
                no_newline: false
            }
        );
        assert!(second.lines[2].no_newline);
        assert_eq!(second.lines[2].old, Some(11));
        // Ids: stable for the same content, different for different hunks.
        assert_eq!(parse(SAMPLE)[0].hunks[0].id, files[0].hunks[0].id);
        assert_ne!(files[0].hunks[0].id, files[0].hunks[1].id);
    }

    #[test]
    fn a_patch_holds_the_chosen_hunks_only() {
        let files = parse(SAMPLE);
        let id = files[0].hunks[1].id.clone();
        let (patch, missing) = patch_of(&files, &[id, "nope".into()]);
        assert_eq!(missing, vec!["nope".to_owned()]);
        let text = String::from_utf8(patch).unwrap();
        assert!(
            text.starts_with("diff --git a/src/a.rs b/src/a.rs\n"),
            "{text}"
        );
        assert!(text.contains("@@ -10,2 +10,3 @@\n ten\n+ten and a half\n eleven\n\\ No newline"));
        assert!(!text.contains("TWO"), "{text}");
    }

    #[test]
    fn long_hunks_continue_on_later_pages() {
        let mut raw = b"diff --git a/big b/big\nnew file mode 100644\n--- /dev/null\n+++ b/big\n@@ -0,0 +1,5000 @@\n".to_vec();
        for n in 1..=5000 {
            raw.extend_from_slice(format!("+line {n}\n").as_bytes());
        }
        let files = parse(&raw);
        let (first, pages) = page(&files, 0);
        assert_eq!(pages, 3);
        assert_eq!(first[0].hunks[0].lines.len(), PAGE_LINES);
        let (last, _) = page(&files, 2);
        let lines = &last[0].hunks[0].lines;
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[0].new, Some(4001));
        assert_eq!(last[0].hunks[0].id, first[0].hunks[0].id);
        assert_eq!(last[0].additions, 5000);
        assert!(page(&files, 3).0.is_empty());
    }

    #[test]
    fn quoted_names_are_unquoted() {
        assert_eq!(
            unquote(b"\"a\\tb\\\"c\\303\\251\""),
            "a\tb\"c\u{e9}".as_bytes()
        );
        assert_eq!(unquote(b"plain"), b"plain");
    }
}
