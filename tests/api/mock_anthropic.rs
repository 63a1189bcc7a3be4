//! A mock of the Anthropic Messages API on 127.0.0.1, for running the real Claude Code CLI
//! offline. Every `POST /v1/messages` is answered with one text block that quotes the last
//! user message, streamed as server-sent events when the request asks for a stream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const REPLY_PREFIX: &str = "MOCK-REPLY";

#[derive(Debug, Clone)]
pub struct Seen {
    pub api_key: Option<String>,
    pub bearer: Option<String>,
    pub body: Value,
}

pub struct MockAnthropic {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockAnthropic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockAnthropic {
    pub async fn start() -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let app = Router::new().route(
            "/v1/messages",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let record = record.clone();
                async move {
                    // A prompt that asks to take its time keeps the turn going for a while.
                    if String::from_utf8_lossy(&body).contains(SLOW_TRIGGER) {
                        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                    }
                    messages(&record, &headers, &body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, seen, task }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn last_user_text(body: &Value) -> String {
    let Some(message) = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &message["content"] {
        Value::String(text) => text.clone(),
        // The user's own words: the last text block that is not a tagged note from Claude Code.
        Value::Array(blocks) => blocks
            .iter()
            .rev()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .find(|t| !t.trim_start().starts_with('<'))
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

fn messages(record: &Mutex<Vec<Seen>>, headers: &HeaderMap, raw: &[u8]) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(raw) else {
        return (StatusCode::BAD_REQUEST, "bad json").into_response();
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    record.lock().unwrap().push(Seen {
        api_key: header("x-api-key"),
        bearer: header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned)),
        body: body.clone(),
    });
    let model = body["model"]
        .as_str()
        .unwrap_or("claude-sonnet-4-5-20250929")
        .to_owned();
    let asked = last_user_text(&body);
    // A prompt with TOOL_TRIGGER in it gets a Bash tool call, which Claude Code asks to allow.
    if body["stream"] == true && asked.contains(TOOL_TRIGGER) && !answers_a_tool(&body) {
        return sse(&bash_call_events(&model, TOOL_COMMAND));
    }
    // Only a prompt's own words call it: a tool's result alone carries none.
    if body["stream"] == true
        && let Some((_, call)) = asked.split_once(TOOL_CALL_TRIGGER)
        && let Some((name, input)) = call.trim().split_once(' ')
    {
        return sse(&tool_call_events(&model, name, input.trim()));
    }
    if body["stream"] == true
        && !answers_a_tool(&body)
        && let Some((_, command)) = asked.split_once(BASH_TRIGGER)
    {
        return sse(&bash_call_events(&model, command.trim()));
    }
    let quoted: String = asked.chars().take(80).collect();
    let text = format!("{REPLY_PREFIX}: I read \"{}\"", quoted.replace('\n', " "));
    let usage = json!({ "input_tokens": 12, "output_tokens": 8, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 });
    if body["stream"] != true {
        let message = json!({
            "id": message_id(), "type": "message", "role": "assistant", "model": model,
            "content": [{ "type": "text", "text": text }],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
        });
        return axum::Json(message).into_response();
    }
    let events = [
        (
            "message_start",
            json!({ "type": "message_start", "message": {
            "id": message_id(), "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage } }),
        ),
        (
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
        ),
        ("ping", json!({ "type": "ping" })),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": text } }),
        ),
        (
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ),
        (
            "message_delta",
            json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn", "stop_sequence": null }, "usage": { "output_tokens": 8 } }),
        ),
        ("message_stop", json!({ "type": "message_stop" })),
    ];
    sse(&events)
}

/// Words in a prompt that make the mock wait before it answers.
pub const SLOW_TRIGGER: &str = "take your time";

/// Words in a prompt that make the mock answer with a tool call.
pub const TOOL_TRIGGER: &str = "please touch the file";
/// The command of that tool call.
pub const TOOL_COMMAND: &str = "touch pocketdev-notes.txt";

/// A prompt with this in it gets a Bash tool call running the rest of the prompt.
pub const BASH_TRIGGER: &str = "MOCK-BASH:";

/// A prompt with this in it gets a call of the tool named after it, with the JSON input that
/// follows: `MOCK-TOOL:Write {"file_path": "/abs/notes.txt", "content": "hi"}`.
pub const TOOL_CALL_TRIGGER: &str = "MOCK-TOOL:";

/// Whether the last user message carries a tool result (the turn after a tool call).
fn answers_a_tool(body: &Value) -> bool {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_array())
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
}

/// Each reply's own id, as the real API gives (readers of transcripts tell replies apart by it).
fn message_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "msg_mock_{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn bash_call_events(model: &str, command: &str) -> Vec<(&'static str, Value)> {
    let input = json!({ "command": command, "description": "Run a command" }).to_string();
    tool_call_events(model, "Bash", &input)
}

fn tool_call_events(model: &str, tool: &str, input: &str) -> Vec<(&'static str, Value)> {
    // Each call its own id, as the real API gives.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let usage = json!({ "input_tokens": 12, "output_tokens": 8, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 });
    vec![
        (
            "message_start",
            json!({ "type": "message_start", "message": {
            "id": message_id(), "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage } }),
        ),
        (
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0,
            "content_block": { "type": "tool_use", "id": format!("toolu_mock_{call}"), "name": tool, "input": {} } }),
        ),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0,
            "delta": { "type": "input_json_delta", "partial_json": input } }),
        ),
        (
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ),
        (
            "message_delta",
            json!({ "type": "message_delta", "delta": { "stop_reason": "tool_use", "stop_sequence": null }, "usage": { "output_tokens": 20 } }),
        ),
        ("message_stop", json!({ "type": "message_stop" })),
    ]
}

fn sse(events: &[(&str, Value)]) -> Response {
    let stream: String = events
        .iter()
        .map(|(event, data)| format!("event: {event}\ndata: {data}\n\n"))
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from(stream))
        .unwrap()
}
