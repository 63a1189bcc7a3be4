//! A running agent's whole tmux history, a page at a time, and a search through it.
//!
//! Positions count **rows of the pane from the bottom**: 0 is the screen's last row, `total - 1`
//! the oldest row tmux keeps (`total` = history + screen rows). A line that wrapped takes one
//! position per row but comes back joined, as one line, at the position of its first row.
//! Counting from the bottom means a client holding the newest rows can ask for the rows above
//! them; output printed meanwhile moves every row up, which `total` shows.

use super::tmux::{JoinedLine, PaneRows, Tmux, TmuxError};

/// Rows in a page when none is asked for.
pub const PAGE_DEFAULT: u32 = 500;
/// The most rows one page may ask for.
pub const PAGE_MAX: u32 = 2000;
/// The most matches a search answers (the newest).
pub const MATCHES_MAX: usize = 200;
/// The longest search text, in characters.
pub const QUERY_MAX: usize = 200;
/// Around a match, the most characters of its line that are sent.
const MATCH_TEXT_MAX: usize = 400;
/// A page stops growing upwards past this many bytes of text (lines of tens of kilobytes).
const PAGE_BYTES_MAX: usize = 2 * 1024 * 1024;
/// How often a page is read again: when the pane was resized meanwhile, or to read more of a
/// line longer than the page.
const TRIES: usize = 8;

/// Rows `first` down to `last` (positions from the bottom), as lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub lines: Vec<String>,
    /// The position of the first line's first row; `None` when the page is empty.
    pub first: Option<u64>,
    /// The position of the last line's last row (0 when the page reaches the bottom, whose
    /// blank rows are left out); `None` when the page is empty.
    pub last: Option<u64>,
    pub total: u64,
}

/// A line that holds the search text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The position of the line's first row.
    pub position: u64,
    /// The line, or a part of it around the match when it is long.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Newest first.
    pub matches: Vec<Match>,
    /// More lines matched than were sent; the oldest were left out.
    pub truncated: bool,
    pub total: u64,
}

/// The rows at positions `before + lines - 1` down to `before`, as whole lines: a line that
/// began above the page or wraps on below it is left to the neighbouring page, and a line longer
/// than the page is read whole (up to [`SPAN_MAX`] rows; longer ones come in parts). At the
/// bottom, the screen's blank rows below its last text are left out.
pub async fn page(tmux: &Tmux, session: &str, before: u64, lines: u32) -> Result<Page, TmuxError> {
    let lines = u64::from(lines.max(1));
    let mut size = tmux.pane_rows(session).await?;
    let (mut top, mut bottom) = (before.saturating_add(lines - 1), before);
    for _ in 0..TRIES {
        let total = size.total();
        if bottom >= total {
            return Ok(Page {
                lines: Vec::new(),
                first: None,
                last: None,
                total,
            });
        }
        top = top.min(total - 1);
        // One row more above, to tell whether the page's first line began there.
        let above = top + 1 < total;
        let mut read = Vec::new();
        let now = tmux
            .joined_lines(
                session,
                Some((row_of(size, top) - i64::from(above), row_of(size, bottom))),
                |line| read.push(line),
            )
            .await?;
        // A resize (or cleared history) moves rows under the numbers asked: ask again.
        if now.height != size.height || now.history < size.history {
            size = now;
            continue;
        }
        match whole_lines(now, read, row_of(now, top), row_of(now, bottom)) {
            Whole::Page(page) => return Ok(page),
            // One line fills the page and goes on past it: read more of it.
            Whole::Longer { up, down } if top - bottom < SPAN_MAX => {
                let more = (top - bottom + 1).min(SPAN_MAX - (top - bottom));
                if up {
                    top = top.saturating_add(more);
                } else if down {
                    bottom = bottom.saturating_sub(more);
                }
            }
            Whole::Longer { .. } => {
                let mut read = Vec::new();
                let now = tmux
                    .joined_lines(
                        session,
                        Some((row_of(size, top), row_of(size, bottom))),
                        |line| read.push(line),
                    )
                    .await?;
                return Ok(parts(now, read));
            }
        }
    }
    Err(TmuxError::Failed {
        command: "capture-pane".into(),
        stderr: "the pane kept changing while it was read".into(),
    })
}

/// The most rows read to make one line whole.
const SPAN_MAX: u64 = 2 * PAGE_MAX as u64;

/// tmux's row number of a position.
fn row_of(size: PaneRows, position: u64) -> i64 {
    i64::try_from(size.height).unwrap_or(i64::MAX) - 1 - i64::try_from(position).unwrap_or(i64::MAX)
}

/// The position of a tmux row.
fn position_of(size: PaneRows, row: i64) -> u64 {
    u64::try_from(i64::try_from(size.height).unwrap_or(i64::MAX) - 1 - row).unwrap_or(0)
}

enum Whole {
    Page(Page),
    /// The page is one line that goes on above it (`up`) or below it (`down`).
    Longer {
        up: bool,
        down: bool,
    },
}

/// The page of rows `top_row` to `bottom_row` from what was read (with the row above when
/// there is one).
fn whole_lines(size: PaneRows, mut read: Vec<JoinedLine>, top_row: i64, bottom_row: i64) -> Whole {
    // The row above, when it is a line of its own, holds nothing of the page.
    read.retain(|line| line.row + i64::try_from(line.rows).unwrap_or(0) > top_row);
    let reaches_bottom = bottom_row >= i64::try_from(size.height).unwrap_or(i64::MAX) - 1;
    let began_above = read.first().is_some_and(|l| l.row < top_row);
    let goes_on = !reaches_bottom && read.last().is_some_and(|l| l.continues);
    if read.len() == 1 && (began_above || goes_on) {
        return Whole::Longer {
            up: began_above,
            down: goes_on,
        };
    }
    if began_above {
        read.remove(0);
    }
    if goes_on {
        read.pop();
    }
    Whole::Page(parts(size, read))
}

/// The lines read as they are, in a page: within the byte budget from the bottom up, without
/// the blank rows under the screen's last text.
fn parts(size: PaneRows, mut read: Vec<JoinedLine>) -> Page {
    let mut bytes = 0usize;
    let keep_from = read
        .iter()
        .rposition(|line| {
            bytes += line.text.len() + 4;
            bytes > PAGE_BYTES_MAX
        })
        .map_or(0, |at| (at + 1).min(read.len().saturating_sub(1)));
    read.drain(..keep_from);
    let first = read.first().map(|l| position_of(size, l.row));
    let last = read
        .last()
        .map(|l| position_of(size, l.row + i64::try_from(l.rows.max(1)).unwrap_or(1) - 1));
    // `last` still covers them: the page below has nothing to show.
    if last == Some(0) {
        while read.last().is_some_and(|l| l.text.trim().is_empty()) {
            read.pop();
        }
    }
    Page {
        lines: read.into_iter().map(|l| text_of(l.text, l.len)).collect(),
        first,
        last,
        total: size.total(),
    }
}

/// A line as sent: without the spaces tmux keeps at its end, marked where it was cut.
fn text_of(mut text: String, len: usize) -> String {
    let cut = text.len() < len;
    text.truncate(text.trim_end().len());
    if cut {
        text.push('…');
    }
    text
}

/// The lines holding `query` (any case), newest first, at most [`MATCHES_MAX`].
pub async fn search(tmux: &Tmux, session: &str, query: &str) -> Result<Found, TmuxError> {
    let needle = query.to_lowercase();
    let mut kept = std::collections::VecDeque::with_capacity(MATCHES_MAX);
    let mut truncated = false;
    let size = tmux
        .joined_lines(session, None, |line| {
            let lower = line.text.to_lowercase();
            if let Some(at) = lower.find(&needle) {
                if kept.len() == MATCHES_MAX {
                    kept.pop_front();
                    truncated = true;
                }
                kept.push_back((line.row, excerpt(&line.text, &lower, at, needle.len())));
            }
        })
        .await?;
    Ok(Found {
        matches: kept
            .into_iter()
            .rev()
            .map(|(row, text)| Match {
                position: position_of(size, row),
                text,
            })
            .collect(),
        truncated,
        total: size.total(),
    })
}

/// The line, or [`MATCH_TEXT_MAX`] characters of it around the match at byte `at` of its
/// lower-case form (whose characters match the line's one for one but for a rare few, such as
/// `İ`, so the window may sit a character off for those).
fn excerpt(text: &str, lower: &str, at: usize, len: usize) -> String {
    let text = text.trim_end();
    if text.chars().count() <= MATCH_TEXT_MAX {
        return text.to_owned();
    }
    // The match's character index, which both forms share.
    let chars_before = lower[..at].chars().count();
    let match_chars = lower[at..at + len].chars().count();
    let start = chars_before.saturating_sub((MATCH_TEXT_MAX.saturating_sub(match_chars)) / 2);
    let mut out: String = text.chars().skip(start).take(MATCH_TEXT_MAX).collect();
    if start > 0 {
        out.insert(0, '…');
    }
    if start + MATCH_TEXT_MAX < text.chars().count() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, row: i64, rows: u64, continues: bool, first_row_len: usize) -> JoinedLine {
        JoinedLine {
            text: text.into(),
            len: text.len(),
            row,
            rows,
            continues,
            first_row_len,
        }
    }

    const SIZE: PaneRows = PaneRows {
        history: 100,
        height: 10,
    };

    #[test]
    fn positions_count_rows_from_the_bottom() {
        assert_eq!(row_of(SIZE, 0), 9);
        assert_eq!(row_of(SIZE, 109), -100);
        assert_eq!(position_of(SIZE, -100), 109);
        assert_eq!(position_of(SIZE, 9), 0);
    }

    fn page_of(whole: Whole) -> Page {
        match whole {
            Whole::Page(page) => page,
            Whole::Longer { up, down } => panic!("one long line (up {up}, down {down})"),
        }
    }

    #[test]
    fn a_page_keeps_whole_lines_only() {
        // Rows -21 (the row above) to -10; "a" began above and wraps into the page, "z" wraps
        // on below it.
        let read = vec![
            line("aaaabb", -21, 2, false, 4),
            line("c", -19, 1, false, 1),
            line("dddd", -18, 1, false, 4),
            line("zzzzzz", -11, 2, true, 4),
        ];
        let page = page_of(whole_lines(SIZE, read, -20, -10));
        assert_eq!(page.lines, ["c", "dddd"]);
        assert_eq!(page.first, Some(position_of(SIZE, -19)));
        assert_eq!(page.last, Some(position_of(SIZE, -18)));
        assert_eq!(page.total, 110);
    }

    #[test]
    fn the_row_above_alone_is_left_out_and_a_line_longer_than_the_page_is_read_further() {
        let page = page_of(whole_lines(
            SIZE,
            vec![
                line("above", -21, 1, false, 5),
                line("in", -20, 1, false, 2),
            ],
            -20,
            -20,
        ));
        assert_eq!(page.lines, ["in"]);
        assert!(matches!(
            whole_lines(SIZE, vec![line("xxxxyyyyzz", -21, 3, true, 4)], -20, -19),
            Whole::Longer {
                up: true,
                down: true
            }
        ));
        let cut = parts(SIZE, vec![line("yyyyzz", -20, 2, true, 4)]);
        assert_eq!(cut.lines, ["yyyyzz"]);
        assert_eq!((cut.first, cut.last), (Some(29), Some(28)));
    }

    #[test]
    fn the_newest_page_leaves_out_the_blank_rows_under_the_text() {
        let read = vec![
            line("$ ls", 6, 1, false, 4),
            line("", 7, 1, false, 0),
            line("   ", 8, 1, false, 3),
            line("", 9, 1, false, 0),
        ];
        let page = page_of(whole_lines(SIZE, read, 6, 9));
        assert_eq!(page.lines, ["$ ls"]);
        assert_eq!((page.first, page.last), (Some(3), Some(0)));
        assert_eq!(text_of("abc  ".into(), 9), "abc…");
    }

    #[test]
    fn long_matches_are_cut_around_the_match() {
        let long = format!("{}NEEDLE{}", "a".repeat(1000), "b".repeat(1000));
        let lower = long.to_lowercase();
        let at = lower.find("needle").unwrap();
        let cut = excerpt(&long, &lower, at, 6);
        assert!(cut.contains("NEEDLE"), "{cut}");
        assert!(cut.starts_with('…') && cut.ends_with('…'));
        assert_eq!(cut.chars().count(), MATCH_TEXT_MAX + 2);
        assert_eq!(excerpt("short line  ", "short line  ", 0, 5), "short line");
    }
}
