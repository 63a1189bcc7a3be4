//! What a viewer needs to draw a pane it has not watched: history, the screen with its colours,
//! the cursor and the terminal modes the program set, rebuilt from tmux's own view of the pane.

/// tmux formats for the pane state a snapshot restores, in [`Modes::parse`]'s order.
pub const MODES_FORMAT: &str = "#{alternate_on} #{cursor_x} #{cursor_y} #{pane_width} #{pane_height} \
    #{cursor_flag} #{keypad_cursor_flag} #{keypad_flag} #{mouse_standard_flag} #{mouse_button_flag} \
    #{mouse_all_flag} #{mouse_sgr_flag} #{mouse_utf8_flag} #{insert_flag} #{wrap_flag} \
    #{scroll_region_upper} #{scroll_region_lower}";

/// The pane's terminal state as tmux reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modes {
    pub alternate: bool,
    pub cursor_x: u16,
    pub cursor_y: u16,
    pub cols: u16,
    pub rows: u16,
    pub cursor_visible: bool,
    /// DECCKM: arrow keys send `ESC O A` rather than `ESC [ A`.
    pub app_cursor: bool,
    pub app_keypad: bool,
    pub mouse_standard: bool,
    pub mouse_button: bool,
    pub mouse_all: bool,
    pub mouse_sgr: bool,
    pub mouse_utf8: bool,
    pub insert: bool,
    pub wrap: bool,
    pub scroll_top: u16,
    pub scroll_bottom: u16,
}

impl Modes {
    pub fn parse(line: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(line).ok()?;
        let fields: Vec<u16> = text.split(' ').map(|f| f.parse().unwrap_or(0)).collect();
        if fields.len() != 17 {
            return None;
        }
        let flag = |i: usize| fields[i] == 1;
        Some(Self {
            alternate: flag(0),
            cursor_x: fields[1],
            cursor_y: fields[2],
            cols: fields[3],
            rows: fields[4],
            cursor_visible: flag(5),
            app_cursor: flag(6),
            app_keypad: flag(7),
            mouse_standard: flag(8),
            mouse_button: flag(9),
            mouse_all: flag(10),
            mouse_sgr: flag(11),
            mouse_utf8: flag(12),
            insert: flag(13),
            wrap: flag(14),
            scroll_top: fields[15],
            scroll_bottom: fields[16],
        })
    }

    pub fn mouse(&self) -> bool {
        self.mouse_standard || self.mouse_button || self.mouse_all
    }
}

/// The bytes that redraw a pane on a freshly reset terminal of the pane's size.
///
/// `pane_lines` is `capture-pane -e -S -<history>`: history, then the visible lines (on the
/// alternate screen, the program's full-screen view). `saved_lines` is `capture-pane -e -a`:
/// the normal screen hidden behind the alternate one, if any.
pub fn snapshot(modes: &Modes, pane_lines: &[Vec<u8>], saved_lines: &[Vec<u8>]) -> Vec<u8> {
    let size: usize = pane_lines
        .iter()
        .chain(saved_lines)
        .map(|l| l.len() + 2)
        .sum();
    let mut out = Vec::with_capacity(size + 256);
    out.extend_from_slice(b"\x1bc");
    let rows = usize::from(modes.rows.max(1));
    if modes.alternate {
        let split = pane_lines.len().saturating_sub(rows);
        let (history, screen) = pane_lines.split_at(split);
        let normal: Vec<&Vec<u8>> = history.iter().chain(saved_lines).collect();
        join_lines(&mut out, &normal);
        // Reset the pen so the normal screen's last colours do not paint the alternate one.
        out.extend_from_slice(b"\x1b[0m\x1b[?1049h\x1b[H\x1b[2J");
        draw_rows(&mut out, screen);
    } else {
        let lines: Vec<&Vec<u8>> = pane_lines.iter().collect();
        join_lines(&mut out, &lines);
    }
    out.extend_from_slice(b"\x1b[0m");
    restore_modes(&mut out, modes);
    out
}

/// Lines one after another, scrolling the terminal so earlier ones end up in its scrollback.
/// The visible screen drawn over whatever a viewer shows, row by row in place, then the cursor.
/// Used while a flood's output is paused; history is left alone (the snapshot that ends the
/// flood brings it).
pub fn redraw(modes: &Modes, rows: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.len() + 16).sum::<usize>() + 32);
    for (row, line) in rows.iter().take(usize::from(modes.rows.max(1))).enumerate() {
        // The row is cleared first: after a full-width row the cursor sits on its last cell,
        // which a clear to the end of the line would erase.
        out.extend_from_slice(format!("\x1b[{};1H\x1b[0m\x1b[2K", row + 1).as_bytes());
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"\x1b[0m");
    out.extend_from_slice(
        format!("\x1b[{};{}H", modes.cursor_y + 1, modes.cursor_x + 1).as_bytes(),
    );
    out.extend_from_slice(if modes.cursor_visible {
        b"\x1b[?25h"
    } else {
        b"\x1b[?25l"
    });
    out
}

fn join_lines(out: &mut Vec<u8>, lines: &[&Vec<u8>]) {
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    }
}

/// Each line at its own row, so nothing scrolls (the alternate screen has no scrollback).
fn draw_rows(out: &mut Vec<u8>, lines: &[Vec<u8>]) {
    for (row, line) in lines.iter().enumerate() {
        out.extend_from_slice(format!("\x1b[{};1H", row + 1).as_bytes());
        out.extend_from_slice(line);
    }
}

fn restore_modes(out: &mut Vec<u8>, modes: &Modes) {
    let mut set = |on: bool, sequence: &str| {
        if on {
            out.extend_from_slice(sequence.as_bytes());
        }
    };
    let full_region = modes.scroll_top == 0 && modes.scroll_bottom + 1 >= modes.rows;
    set(
        !full_region && modes.scroll_bottom > modes.scroll_top,
        &format!("\x1b[{};{}r", modes.scroll_top + 1, modes.scroll_bottom + 1),
    );
    set(
        true,
        &format!("\x1b[{};{}H", modes.cursor_y + 1, modes.cursor_x + 1),
    );
    set(!modes.cursor_visible, "\x1b[?25l");
    set(modes.app_cursor, "\x1b[?1h");
    set(modes.app_keypad, "\x1b=");
    set(modes.mouse_standard, "\x1b[?1000h");
    set(modes.mouse_button, "\x1b[?1002h");
    set(modes.mouse_all, "\x1b[?1003h");
    set(modes.mouse_sgr, "\x1b[?1006h");
    set(modes.mouse_utf8, "\x1b[?1005h");
    set(modes.insert, "\x1b[4h");
    set(!modes.wrap, "\x1b[?7l");
}

/// What a desktop terminal sends for a mouse-wheel turn of `lines` (negative: back) at
/// 1-based `col`/`row`: wheel reports when the program asked for the mouse, arrow keys on the
/// alternate screen otherwise, and nothing on the normal screen (the viewer scrolls its own
/// history there).
pub fn scroll_input(modes: &Modes, lines: i32, col: u16, row: u16) -> Vec<u8> {
    let count = lines.unsigned_abs() as usize;
    let up = lines < 0;
    if modes.mouse() {
        let button: u16 = if up { 64 } else { 65 };
        let (col, row) = (
            col.clamp(1, modes.cols.max(1)),
            row.clamp(1, modes.rows.max(1)),
        );
        let report = if modes.mouse_sgr {
            format!("\x1b[<{button};{col};{row}M").into_bytes()
        } else {
            let cap = |v: u16| u8::try_from(v + 32).unwrap_or(255);
            vec![0x1b, b'[', b'M', cap(button), cap(col), cap(row)]
        };
        report.repeat(count)
    } else if modes.alternate {
        let key: &[u8] = match (up, modes.app_cursor) {
            (true, true) => b"\x1bOA",
            (true, false) => b"\x1b[A",
            (false, true) => b"\x1bOB",
            (false, false) => b"\x1b[B",
        };
        key.repeat(count)
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes(line: &str) -> Modes {
        Modes::parse(line.as_bytes()).expect("modes parse")
    }

    #[test]
    fn modes_parse_from_tmux() {
        let m = modes("1 10 3 80 24 1 0 0 1 0 0 1 0 0 1 0 23");
        assert!(m.alternate && m.mouse() && m.mouse_sgr && m.wrap);
        assert_eq!((m.cursor_x, m.cursor_y, m.cols, m.rows), (10, 3, 80, 24));
        assert_eq!(Modes::parse(b"1 2 3"), None);
    }

    #[test]
    fn normal_screen_snapshot_replays_lines_and_cursor() {
        let m = modes("0 2 1 80 2 1 0 0 0 0 0 0 0 0 1 0 1");
        let lines = vec![b"old".to_vec(), b"\x1b[31m$ ls".to_vec(), b"x".to_vec()];
        let bytes = snapshot(&m, &lines, &[]);
        assert_eq!(
            bytes,
            b"\x1bcold\r\n\x1b[31m$ ls\r\nx\x1b[0m\x1b[2;3H".to_vec()
        );
    }

    #[test]
    fn alternate_screen_snapshot_keeps_the_normal_screen_behind() {
        let m = modes("1 0 0 80 2 0 1 0 1 0 0 1 0 0 1 0 1");
        let pane = vec![b"hist".to_vec(), b"ALT 1".to_vec(), b"ALT 2".to_vec()];
        let saved = vec![b"$ claude".to_vec()];
        let text = String::from_utf8(snapshot(&m, &pane, &saved)).unwrap();
        assert!(
            text.starts_with("\x1bchist\r\n$ claude\x1b[0m\x1b[?1049h"),
            "{text:?}"
        );
        assert!(text.contains("\x1b[1;1HALT 1\x1b[2;1HALT 2"), "{text:?}");
        assert!(
            text.ends_with("\x1b[1;1H\x1b[?25l\x1b[?1h\x1b[?1000h\x1b[?1006h"),
            "{text:?}"
        );
    }

    #[test]
    fn scrolling_speaks_the_programs_language() {
        let sgr_mouse = modes("1 0 0 80 24 1 0 0 1 0 0 1 0 0 1 0 23");
        assert_eq!(
            scroll_input(&sgr_mouse, -2, 5, 6),
            b"\x1b[<64;5;6M\x1b[<64;5;6M".to_vec()
        );
        let x10_mouse = modes("1 0 0 80 24 1 0 0 1 0 0 0 0 0 1 0 23");
        assert_eq!(
            scroll_input(&x10_mouse, 1, 1, 1),
            vec![0x1b, b'[', b'M', 97, 33, 33]
        );
        let alternate = modes("1 0 0 80 24 1 1 0 0 0 0 0 0 0 1 0 23");
        assert_eq!(scroll_input(&alternate, -1, 1, 1), b"\x1bOA".to_vec());
        let normal = modes("0 0 0 80 24 1 0 0 0 0 0 0 0 0 1 0 23");
        assert!(scroll_input(&normal, -3, 1, 1).is_empty());
    }
}
