//! The terminal WebSocket's messages. Binary frames are raw terminal bytes both ways; text
//! frames are the JSON messages below, tagged by `type`. See docs/terminal-protocol.md.

use serde::{Deserialize, Serialize};

/// Largest terminal size a viewer may ask for.
pub const MAX_COLS: u16 = 1000;
pub const MAX_ROWS: u16 = 500;
/// Largest scroll one message may ask for, in lines.
pub const MAX_SCROLL: i32 = 100;
/// Largest frame the server accepts; bigger ones are refused with an error message.
pub const MAX_FRAME: usize = 64 * 1024;

/// A control message from a viewer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// The viewer's terminal size; the pane follows the most recent active viewer.
    Resize { cols: i64, rows: i64 },
    /// A swipe: negative `lines` scroll back (up), positive forward. `col`/`row` (1-based) say
    /// where, for programs that take mouse-wheel reports.
    Scroll {
        lines: i32,
        #[serde(default = "one")]
        col: u16,
        #[serde(default = "one")]
        row: u16,
    },
    /// Text pasted as one piece; bracketed if the program asked for bracketed paste.
    Paste { data: String },
    /// Answered with `pong` carrying the same `id`.
    Ping {
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
}

fn one() -> u16 {
    1
}

/// A control message to a viewer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message: which instance and its state.
    Hello { instance: String, state: String },
    /// The next binary frame is a fresh picture of the terminal (history, screen, cursor and
    /// modes): reset the terminal, then write it. `reason` is `connect` or `resync`.
    Snapshot {
        reason: &'static str,
        cols: u16,
        rows: u16,
        alternate_screen: bool,
    },
    /// The pane's size changed (another viewer became the active one, or this one resized).
    Size { cols: u16, rows: u16 },
    /// The instance's state changed while it is still live, or (with `status`) the running
    /// agent's status: `working`, `waiting` or `needs_permission`, with a `reason` such as the
    /// question on screen.
    Status {
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The agent ended; the socket closes right after.
    Exit {
        state: String,
        exit_code: Option<i64>,
        reason: Option<String>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
    /// A message could not be handled; the connection stays open.
    Error { code: &'static str, message: String },
}

impl ServerMessage {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages serialise")
    }
}

/// Parses a text frame; the error is the message to send back.
pub fn parse(text: &str) -> Result<ClientMessage, ServerMessage> {
    let message: ClientMessage = serde_json::from_str(text).map_err(|e| {
        let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
        match value.as_ref().and_then(|v| v.get("type")).and_then(|t| t.as_str()) {
            Some(kind @ ("resize" | "scroll" | "paste" | "ping")) => {
                ServerMessage::error("invalid_message", format!("invalid `{kind}` message: {e}"))
            }
            Some(kind) => ServerMessage::error(
                "unknown_message",
                format!("unknown message type `{kind}`; known: resize, scroll, paste, ping"),
            ),
            None => ServerMessage::error(
                "invalid_message",
                "text frames must be JSON objects with a `type`; terminal input goes in binary frames",
            ),
        }
    })?;
    if let ClientMessage::Resize { cols, rows } = message {
        size(cols, rows)?;
    }
    if let ClientMessage::Scroll { lines, .. } = message
        && !(-MAX_SCROLL..=MAX_SCROLL).contains(&lines)
    {
        return Err(ServerMessage::error(
            "invalid_scroll",
            format!("scroll at most {MAX_SCROLL} lines at a time"),
        ));
    }
    Ok(message)
}

/// A size within bounds, or the error to report.
pub fn size(cols: i64, rows: i64) -> Result<(u16, u16), ServerMessage> {
    let in_range = |v: i64, max: u16| (1..=i64::from(max)).contains(&v);
    if in_range(cols, MAX_COLS) && in_range(rows, MAX_ROWS) {
        Ok((cols as u16, rows as u16))
    } else {
        Err(ServerMessage::error(
            "invalid_resize",
            format!("cols must be 1 to {MAX_COLS} and rows 1 to {MAX_ROWS}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> &'static str {
        match parse(text) {
            Err(ServerMessage::Error { code, .. }) => code,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn resizes_are_checked() {
        assert_eq!(
            parse(r#"{"type":"resize","cols":80,"rows":24}"#).unwrap(),
            ClientMessage::Resize { cols: 80, rows: 24 }
        );
        for bad in [
            r#"{"type":"resize","cols":0,"rows":24}"#,
            r#"{"type":"resize","cols":-5,"rows":24}"#,
            r#"{"type":"resize","cols":100000,"rows":24}"#,
            r#"{"type":"resize","cols":80,"rows":99999999999999999999}"#,
        ] {
            assert!(
                matches!(code(bad), "invalid_resize" | "invalid_message"),
                "{bad}"
            );
        }
        assert_eq!(code(r#"{"type":"resize","cols":"80"}"#), "invalid_message");
    }

    #[test]
    fn unknown_and_malformed_messages_are_named() {
        assert_eq!(code("not json"), "invalid_message");
        assert_eq!(code("[1,2]"), "invalid_message");
        assert_eq!(code(r#"{"type":"launch"}"#), "unknown_message");
        assert_eq!(code(r#"{"type":"scroll","lines":1000}"#), "invalid_scroll");
        assert_eq!(
            parse(r#"{"type":"ping","id":7}"#).unwrap(),
            ClientMessage::Ping { id: Some(7.into()) }
        );
        assert_eq!(
            parse(r#"{"type":"scroll","lines":-3}"#).unwrap(),
            ClientMessage::Scroll {
                lines: -3,
                col: 1,
                row: 1
            }
        );
    }
}
