//! Claude Code's transcript, read for the tokens each reply used: a JSONL file where every
//! assistant message carries `message.usage` and `message.model`. A message with several
//! content blocks is written as several lines that repeat its id and its usage, so a message
//! counts once. The file is the agent's to write: anything malformed or absurd is skipped or
//! bounded, never trusted.

use serde::Deserialize;

/// A line longer than this is not a reply's record; it is skipped whole.
pub const MAX_LINE: usize = 1 << 20;
/// No single reply uses more tokens than this of any kind; larger figures are cut to it.
pub const MAX_TOKENS_PER_MESSAGE: u64 = 10_000_000;

/// The tokens one reply used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_write: u64,
    pub cache_read: u64,
}

impl Tokens {
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_write + self.cache_read
    }

    pub fn add(&mut self, other: &Tokens) {
        self.input += other.input;
        self.output += other.output;
        self.cache_write += other.cache_write;
        self.cache_read += other.cache_read;
    }
}

/// One reply's usage, as the transcript records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub message_id: String,
    pub model: String,
    /// When the reply was written (RFC 3339, as the transcript has it), if it says.
    pub timestamp: Option<String>,
    pub tokens: Tokens,
}

/// What reading a piece of the file found.
#[derive(Debug, Default)]
pub struct Read {
    pub replies: Vec<Reply>,
    /// Bytes consumed: whole lines only; a line still being written waits for the next read.
    pub consumed: usize,
    /// The id of the last message counted, to carry to the next read.
    pub last_message: Option<String>,
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: Option<String>,
    timestamp: Option<String>,
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    id: Option<String>,
    model: Option<String>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

/// Reads the whole lines of `chunk` (bytes of the file from where the last read stopped); a
/// last line without its newline is still being written and waits. `last_message` is the id of
/// the last message counted before.
pub fn read(chunk: &[u8], last_message: Option<String>) -> Read {
    read_with(chunk, last_message, reply)
}

/// As [`read`], with `reply` telling what a line says (`None`: not a reply). A reply without an
/// id (empty) always counts.
pub fn read_with(
    chunk: &[u8],
    last_message: Option<String>,
    reply: impl Fn(&[u8]) -> Option<Reply>,
) -> Read {
    let mut found = Read {
        last_message,
        ..Read::default()
    };
    let mut start = 0;
    while let Some(end) = chunk[start..].iter().position(|&b| b == b'\n') {
        let line = &chunk[start..start + end];
        start += end + 1;
        found.consumed = start;
        if line.len() > MAX_LINE {
            continue;
        }
        let Some(reply) = reply(line) else { continue };
        // The lines of one message follow each other and repeat its usage.
        if !reply.message_id.is_empty()
            && found.last_message.as_deref() == Some(reply.message_id.as_str())
        {
            continue;
        }
        found.last_message = Some(reply.message_id.clone());
        found.replies.push(reply);
    }
    found
}

/// A model name as the figures keep it: an identifier, or `unknown`.
fn model_name(model: Option<&str>) -> String {
    match model {
        Some(m)
            if !m.is_empty()
                && m.len() <= 100
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@".contains(&b)) =>
        {
            m.to_owned()
        }
        _ => "unknown".into(),
    }
}

/// Where another agent writes its usage: JSON lines in files below the account's home, read
/// through JSON pointers (RFC 6901) a profile names.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSource {
    /// Files below the account's home; `*` stands for any name within one folder
    /// (`.codex/sessions/*/*/*/*.jsonl`).
    pub files: String,
    pub input: Option<String>,
    pub output: Option<String>,
    pub cache_write: Option<String>,
    pub cache_read: Option<String>,
    /// The model's name; lines without one count under `model_name`, else `unknown`.
    pub model: Option<String>,
    /// A name for the model when lines do not say it.
    pub model_name: Option<String>,
    /// The reply's id: consecutive lines with the same id count once.
    pub id: Option<String>,
}

/// A line read through `pointers`: a reply when at least one token figure is there.
pub fn reply_at(line: &[u8], pointers: &JsonlSource) -> Option<Reply> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let number = |pointer: &Option<String>| {
        let n = value.pointer(pointer.as_deref()?)?;
        n.as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(|n| n.min(MAX_TOKENS_PER_MESSAGE))
    };
    let figures = [
        number(&pointers.input),
        number(&pointers.output),
        number(&pointers.cache_write),
        number(&pointers.cache_read),
    ];
    if figures.iter().all(Option::is_none) {
        return None;
    }
    let text = |pointer: &Option<String>| {
        value
            .pointer(pointer.as_deref()?)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let model = text(&pointers.model).or_else(|| pointers.model_name.clone());
    Some(Reply {
        message_id: text(&pointers.id)
            .filter(|id| id.len() <= 200)
            .unwrap_or_default(),
        model: model_name(model.as_deref()),
        timestamp: None,
        tokens: Tokens {
            input: figures[0].unwrap_or(0),
            output: figures[1].unwrap_or(0),
            cache_write: figures[2].unwrap_or(0),
            cache_read: figures[3].unwrap_or(0),
        },
    })
}

fn reply(line: &[u8]) -> Option<Reply> {
    let line: Line = serde_json::from_slice(line).ok()?;
    if line.kind.as_deref() != Some("assistant") {
        return None;
    }
    let message = line.message?;
    let usage = message.usage?;
    let bounded = |n: Option<u64>| n.unwrap_or(0).min(MAX_TOKENS_PER_MESSAGE);
    Some(Reply {
        message_id: message.id.filter(|id| !id.is_empty() && id.len() <= 200)?,
        model: model_name(message.model.as_deref()),
        timestamp: line.timestamp.filter(|t| t.len() <= 40),
        tokens: Tokens {
            input: bounded(usage.input_tokens),
            output: bounded(usage.output_tokens),
            cache_write: bounded(usage.cache_creation_input_tokens),
            cache_read: bounded(usage.cache_read_input_tokens),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assistant(id: &str, input: u64, output: u64) -> String {
        format!(
            r#"{{"type":"assistant","timestamp":"2026-12-07T10:00:00.000Z","message":{{"id":"{id}","model":"claude-sonnet-4-5-20250929","role":"assistant","usage":{{"input_tokens":{input},"output_tokens":{output},"cache_creation_input_tokens":5,"cache_read_input_tokens":7}}}}}}"#
        ) + "\n"
    }

    #[test]
    fn a_message_written_over_several_lines_counts_once() {
        let text = [
            r#"{"type":"user","message":{"role":"user","content":"hi"}}"#.to_owned() + "\n",
            assistant("msg_1", 12, 8),
            assistant("msg_1", 12, 8),
            assistant("msg_2", 3, 4),
        ]
        .concat();
        let read = read(text.as_bytes(), None);
        assert_eq!(read.replies.len(), 2);
        assert_eq!(
            read.replies[0].tokens,
            Tokens {
                input: 12,
                output: 8,
                cache_write: 5,
                cache_read: 7
            }
        );
        assert_eq!(read.replies[0].model, "claude-sonnet-4-5-20250929");
        assert_eq!(read.consumed, text.len());
        assert_eq!(read.last_message.as_deref(), Some("msg_2"));
    }

    #[test]
    fn a_line_still_being_written_waits_and_the_last_message_carries_over() {
        let first = assistant("msg_1", 1, 1);
        let second = assistant("msg_1", 1, 1) + &assistant("msg_2", 2, 2);
        let text = first.clone() + &second[..second.len() - 10];
        let read1 = read(text.as_bytes(), None);
        assert_eq!(read1.replies.len(), 1);
        assert_eq!(read1.consumed, first.len() + assistant("msg_1", 1, 1).len());
        // The rest, read later, still knows msg_1 was counted.
        let rest = &(first + &second).into_bytes()[read1.consumed..];
        let read2 = read(rest, read1.last_message);
        assert_eq!(read2.replies.len(), 1);
        assert_eq!(read2.replies[0].message_id, "msg_2");
    }

    #[test]
    fn other_agents_lines_are_read_through_their_profiles_pointers() {
        let pointers = JsonlSource {
            files: String::new(),
            input: Some("/usage/in".into()),
            output: Some("/usage/out".into()),
            model: Some("/model".into()),
            model_name: Some("codex".into()),
            id: Some("/turn".into()),
            ..JsonlSource::default()
        };
        let text = [
            r#"{"turn":"t1","model":"gpt-5","usage":{"in":100,"out":20.7}}"#,
            r#"{"turn":"t1","model":"gpt-5","usage":{"in":100,"out":20}}"#,
            r#"{"turn":"t2","usage":{"out":5}}"#,
            r#"{"note":"no figures here"}"#,
            r#"{"turn":"t3","usage":{"in":-3}}"#,
        ]
        .join("\n")
            + "\n";
        let read = read_with(text.as_bytes(), None, |line| reply_at(line, &pointers));
        let got: Vec<(&str, u64, u64)> = read
            .replies
            .iter()
            .map(|r| (r.model.as_str(), r.tokens.input, r.tokens.output))
            .collect();
        assert_eq!(got, [("gpt-5", 100, 20), ("codex", 0, 5)]);
    }

    #[test]
    fn malformed_absurd_and_oversized_lines_cannot_count_or_crash() {
        let huge = format!(
            r#"{{"type":"assistant","message":{{"id":"big","model":"m","usage":{{"input_tokens":{}}}}}}}"#,
            "1".repeat(40)
        );
        let long = format!(
            r#"{{"type":"assistant","pad":"{}","message":{{"id":"long","usage":{{"input_tokens":1}}}}}}"#,
            "x".repeat(MAX_LINE + 1)
        );
        let text = [
            "not json\n".to_owned(),
            "\u{0}\u{1}\n".into(),
            huge + "\n",
            r#"{"type":"assistant","message":{"id":"neg","usage":{"input_tokens":-5}}}"#.to_owned()
                + "\n",
            r#"{"type":"assistant","message":{"id":"max","model":"<script>","usage":{"output_tokens":18446744073709551615}}}"#.to_owned() + "\n",
            long + "\n",
            r#"{"type":"assistant","message":{"usage":{"input_tokens":9}}}"#.to_owned() + "\n",
        ]
        .concat();
        let read = read(text.as_bytes(), None);
        assert_eq!(read.consumed, text.len());
        // Only the one with a valid (if absurd) figure counts, cut to the bound, under no model.
        assert_eq!(read.replies.len(), 1);
        assert_eq!(read.replies[0].message_id, "max");
        assert_eq!(read.replies[0].model, "unknown");
        assert_eq!(read.replies[0].tokens.output, MAX_TOKENS_PER_MESSAGE);
    }
}
