//! tmux control mode (`tmux -C`): reading its notifications and writing its commands.
//!
//! A control client prints the pane's output as `%output %<pane> <escaped bytes>` lines and the
//! reply to each command it was sent between `%begin <time> <number> <flags>` and a matching
//! `%end`/`%error` line, all in one ordered stream. That order is what makes a snapshot exact:
//! the reply to a `capture-pane` sits precisely between the output it includes and the output
//! that follows it.

/// Bytes of input per `send-keys` command.
const KEYS_PER_COMMAND: usize = 512;
/// A reply block or output line larger than this means something is wrong; the client is dropped.
pub const MAX_REPLY: usize = 8 * 1024 * 1024;

/// What one line (or finished block) of the control stream means.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Bytes a pane (`%<pane>`) printed.
    Output { pane: u32, bytes: Vec<u8> },
    /// The reply to a command this client sent, in the order the commands were sent.
    Reply { ok: bool, lines: Vec<Vec<u8>> },
    /// A window's (`@<window>`) size changed.
    Resized { window: u32, cols: u16, rows: u16 },
    /// A window went: killed, or unlinked from the client's session.
    WindowClosed { window: u32 },
    /// The client is attached to its session; commands sent before this may be lost.
    Attached,
    /// The client is detaching: the session ended or was killed.
    Exit,
}

/// Turns the control stream, line by line, into [`Event`]s.
#[derive(Default)]
pub struct Reader {
    block: Option<Block>,
}

struct Block {
    /// `<time> <number> <flags>`, which the closing line repeats exactly.
    tag: Vec<u8>,
    ours: bool,
    lines: Vec<Vec<u8>>,
    size: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

impl Reader {
    /// Feeds one line without its newline.
    pub fn feed(&mut self, line: &[u8]) -> Result<Option<Event>, TooLarge> {
        if let Some(block) = &mut self.block {
            for (closing, ok) in [(&b"%end "[..], true), (&b"%error "[..], false)] {
                if line.strip_prefix(closing) == Some(&block.tag[..]) {
                    let block = self.block.take().expect("inside a block");
                    // Blocks tmux itself started (the attach command) are not replies to us.
                    return Ok(block.ours.then_some(Event::Reply {
                        ok,
                        lines: block.lines,
                    }));
                }
            }
            block.size += line.len() + 1;
            if block.size > MAX_REPLY {
                return Err(TooLarge);
            }
            block.lines.push(line.to_vec());
            return Ok(None);
        }
        if let Some(rest) = line.strip_prefix(b"%output %") {
            let space = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            let Some(pane) = number(&rest[..space]) else {
                return Ok(None);
            };
            let data = rest.get(space + 1..).unwrap_or_default();
            return Ok(Some(Event::Output {
                pane,
                bytes: unescape(data),
            }));
        }
        if let Some(tag) = line.strip_prefix(b"%begin ") {
            self.block = Some(Block {
                tag: tag.to_vec(),
                ours: tag.ends_with(b" 1"),
                lines: Vec::new(),
                size: 0,
            });
            return Ok(None);
        }
        if line.starts_with(b"%session-changed ") {
            return Ok(Some(Event::Attached));
        }
        if line == b"%exit" || line.starts_with(b"%exit ") {
            return Ok(Some(Event::Exit));
        }
        if let Some(rest) = line.strip_prefix(b"%layout-change ") {
            return Ok(
                layout_size(rest).map(|(window, cols, rows)| Event::Resized { window, cols, rows }),
            );
        }
        for closed in [&b"%window-close @"[..], b"%unlinked-window-close @"] {
            if let Some(window) = line.strip_prefix(closed).and_then(number) {
                return Ok(Some(Event::WindowClosed { window }));
            }
        }
        Ok(None)
    }
}

fn number(digits: &[u8]) -> Option<u32> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The window and size in `@<window> <checksum>,<cols>x<rows>,…`.
fn layout_size(rest: &[u8]) -> Option<(u32, u16, u16)> {
    let text = std::str::from_utf8(rest).ok()?;
    let mut fields = text.split(' ');
    let window = fields.next()?.strip_prefix('@')?.parse().ok()?;
    let dims = fields.next()?.split(',').nth(1)?;
    let (cols, rows) = dims.split_once('x')?;
    Some((window, cols.parse().ok()?, rows.parse().ok()?))
}

/// Undoes control mode's escaping: `\ooo` (three octal digits) is one byte.
pub fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let byte = data[i];
        if byte == b'\\'
            && let Some(digits) = data.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u16, |acc, d| acc * 8 + u16::from(d - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    out
}

/// Commands typing `bytes` into `target` exactly as given (escape sequences included).
pub fn send_bytes(target: &str, bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3 + 32);
    for chunk in bytes.chunks(KEYS_PER_COMMAND) {
        out.push_str("send-keys -H -t ");
        out.push_str(target);
        for byte in chunk {
            out.push_str(&format!(" {byte:02x}"));
        }
        out.push('\n');
    }
    out
}

/// Commands pasting `text` into `target`, inside bracketed-paste markers when the program
/// asked for them (tmux knows; `-p`), with line ends as Enter (CR) like any terminal's paste.
pub fn paste(target: &str, text: &str) -> String {
    let text = text.replace("\r\n", "\r").replace('\n', "\r");
    format!(
        "set-buffer -b pocketdev-paste -- {}\npaste-buffer -p -r -d -b pocketdev-paste -t {target}\n",
        quote(&text)
    )
}

/// A tmux command-language string that means exactly `text`: double quotes, with every
/// character that could be special (`$`, `~`, `#`, quotes, backslashes, controls) as octal.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b' ' | b'.' | b',' | b'-' | b'_' | b'/' | b':' | b'=')
        {
            out.push(byte as char);
        } else {
            out.push_str(&format!("\\{byte:03o}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_unescaped() {
        let mut reader = Reader::default();
        assert_eq!(
            reader.feed(br"%output %7 a\015\012\033[1mb\134").unwrap(),
            Some(Event::Output {
                pane: 7,
                bytes: b"a\r\n\x1b[1mb\\".to_vec()
            })
        );
        assert_eq!(unescape(br"trailing \01"), b"trailing \\01");
    }

    #[test]
    fn replies_are_matched_by_their_exact_tag() {
        let mut reader = Reader::default();
        // The attach command's own block is not a reply to us.
        assert_eq!(reader.feed(b"%begin 1 264 0").unwrap(), None);
        assert_eq!(reader.feed(b"%end 1 264 0").unwrap(), None);
        assert_eq!(
            reader.feed(b"%session-changed $0 pd-x").unwrap(),
            Some(Event::Attached)
        );
        assert_eq!(reader.feed(b"%begin 1 265 1").unwrap(), None);
        // A captured line that looks like an end line, but with another tag, is content.
        assert_eq!(reader.feed(b"%end 1 999 1").unwrap(), None);
        assert_eq!(reader.feed(b"%output %0 x").unwrap(), None);
        assert_eq!(
            reader.feed(b"%end 1 265 1").unwrap(),
            Some(Event::Reply {
                ok: true,
                lines: vec![b"%end 1 999 1".to_vec(), b"%output %0 x".to_vec()]
            })
        );
        assert_eq!(reader.feed(b"%begin 2 266 1").unwrap(), None);
        assert_eq!(
            reader.feed(b"%error 2 266 1").unwrap(),
            Some(Event::Reply {
                ok: false,
                lines: vec![]
            })
        );
        assert_eq!(reader.feed(b"%exit").unwrap(), Some(Event::Exit));
        assert_eq!(
            reader
                .feed(b"%layout-change @0 a87d,100x30,0,0,0 a87d,100x30,0,0,0 *")
                .unwrap(),
            Some(Event::Resized {
                window: 0,
                cols: 100,
                rows: 30
            })
        );
        assert_eq!(
            reader.feed(b"%unlinked-window-close @12").unwrap(),
            Some(Event::WindowClosed { window: 12 })
        );
    }

    #[test]
    fn huge_replies_are_refused() {
        let mut reader = Reader::default();
        reader.feed(b"%begin 1 2 1").unwrap();
        let line = vec![b'x'; 1024 * 1024];
        let results: Vec<_> = (0..9).map(|_| reader.feed(&line)).collect();
        assert!(results.contains(&Err(TooLarge)));
    }

    #[test]
    fn commands_are_encoded_safely() {
        assert_eq!(send_bytes("%0", b"hi\r"), "send-keys -H -t %0 68 69 0d\n");
        assert_eq!(send_bytes("%0", &[b'a'; 1000]).lines().count(), 2);
        assert_eq!(
            quote("a$b\"c\n#{x}~"),
            r#""a\044b\042c\012\043\173x\175\176""#
        );
    }
}
