//! Claude Code's per-user configuration, prepared so a first instance opens at a usable prompt.
//!
//! Claude Code rewrites `~/.claude.json` while it runs, so keys are merged into the existing file,
//! never written over it; a value the user changed later is left alone.

use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::layout::write_private_file;

/// Answers the first-run screens in `home` for an agent working in `workdir`.
pub fn prepare_home(
    home: &Path,
    workdir: &Path,
    api_key: Option<&str>,
    hook_command: &str,
) -> anyhow::Result<()> {
    let state_path = home.join(".claude.json");
    let mut state = read_object(&state_path)?;
    for (key, value) in [
        ("hasCompletedOnboarding", json!(true)),
        ("hasSeenAutoDefaultNudge", json!(true)),
        ("autoUpdates", json!(false)),
        ("theme", json!("dark")),
    ] {
        state.entry(key).or_insert(value);
    }
    let projects = object_at(&mut state, "projects");
    let project = object_at(projects, &workdir.to_string_lossy());
    project.insert("hasTrustDialogAccepted".into(), json!(true));
    if let Some(key) = api_key {
        // Claude Code remembers an approved key by its last 20 characters.
        let tail: String = key
            .chars()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let responses = object_at(&mut state, "customApiKeyResponses");
        let approved = responses.entry("approved").or_insert_with(|| json!([]));
        if let Value::Array(list) = approved
            && !list.iter().any(|v| v.as_str() == Some(&tail))
        {
            list.push(json!(tail));
        }
        responses.entry("rejected").or_insert_with(|| json!([]));
    }
    write_private_file(
        &state_path,
        serde_json::to_string_pretty(&state)?.as_bytes(),
    )?;

    let settings_dir = home.join(".claude");
    std::fs::create_dir_all(&settings_dir)
        .with_context(|| format!("cannot create {}", settings_dir.display()))?;
    let settings_path = settings_dir.join("settings.json");
    let mut settings = read_object(&settings_path)?;
    settings.entry("autoUpdates").or_insert(json!(false));
    // Transcripts are what a suspended agent resumes from: keep them about ten years, not
    // Claude Code's 30 days (a user's own setting stays).
    settings
        .entry("cleanupPeriodDays")
        .or_insert(json!(TRANSCRIPT_DAYS));
    // Predictable permission prompts: auto mode needs Anthropic's own servers to judge actions.
    object_at(&mut settings, "permissions")
        .entry("defaultMode")
        .or_insert(json!("default"));
    for event in HOOK_EVENTS {
        register_hook(&mut settings, event, hook_command);
    }
    write_private_file(
        &settings_path,
        serde_json::to_string_pretty(&settings)?.as_bytes(),
    )?;
    Ok(())
}

/// How long Claude Code keeps transcripts in accounts pocketdev prepares.
const TRANSCRIPT_DAYS: u32 = 3650;

/// The hooks pocketdev listens to: the conversation id (SessionStart) and the agent's status.
pub const HOOK_EVENTS: &[&str] = &[
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "PermissionRequest",
    "Notification",
    "Stop",
    "SessionEnd",
];

/// Adds pocketdev's hook for `event`, replacing an older one (say, from before an upgrade moved
/// the binary) and leaving the user's own hooks alone.
fn register_hook(settings: &mut Map<String, Value>, event: &str, command: &str) {
    let hooks = object_at(settings, "hooks");
    let entries = hooks.entry(event).or_insert_with(|| json!([]));
    if !entries.is_array() {
        *entries = json!([]);
    }
    let list = entries.as_array_mut().expect("just made an array");
    let ours = |entry: &Value| {
        entry["hooks"].as_array().is_some_and(|hooks| {
            hooks.iter().any(|h| {
                h["command"]
                    .as_str()
                    .is_some_and(|c| c == command || c.ends_with("pocketdev' hook"))
            })
        })
    };
    list.retain(|entry| !ours(entry));
    list.push(json!({ "matcher": "", "hooks": [{ "type": "command", "command": command }] }));
}

fn read_object(path: &Path) -> anyhow::Result<Map<String, Value>> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            // A damaged file is kept aside rather than lost.
            _ => {
                let aside = path.with_extension("json.damaged");
                std::fs::rename(path, &aside)
                    .with_context(|| format!("cannot move aside {}", path.display()))?;
                tracing::warn!(file = %path.display(), "unreadable agent config moved aside");
                Ok(Map::new())
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The object under `key`, replacing anything else found there.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// Whether Claude Code's screen shows its input prompt, not busy: ready for what is typed.
pub fn at_prompt(screen: &str) -> bool {
    let lines: Vec<&str> = screen
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(6)..];
    let busy = tail.iter().any(|l| l.contains("esc to interrupt"));
    let dialog = lines.iter().any(|l| l.contains("Esc to cancel"));
    let prompt = tail
        .iter()
        .any(|l| l.trim_start().starts_with("❯\u{a0}") || l.trim() == "❯");
    prompt && !busy && !dialog
}

/// How much of a transcript's end is read to learn what a resume lost.
pub const TRANSCRIPT_TAIL: u64 = 256 * 1024;

/// The transcript of conversation `session` under `home`, if Claude Code saved one.
pub fn transcript(home: &Path, session: &str) -> Option<std::path::PathBuf> {
    let file = format!("{session}.jsonl");
    std::fs::read_dir(home.join(".claude/projects"))
        .ok()?
        .flatten()
        .map(|dir| dir.path().join(&file))
        .find(|path| path.is_file())
}

/// The last `TRANSCRIPT_TAIL` bytes of `path`, from the first whole line.
pub fn transcript_tail(path: &Path) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TRANSCRIPT_TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(TRANSCRIPT_TAIL).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(if start > 0 {
        text.split_once('\n')
            .map_or(String::new(), |(_, rest)| rest.to_owned())
    } else {
        text
    })
}

/// What the end of a transcript says was in flight when the agent's process went: a prompt
/// never answered, or a tool call that never finished. A completed turn gives `None`.
pub fn interrupted(tail: &str) -> Option<super::store::Interrupted> {
    let entries: Vec<Value> = tail
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| {
            matches!(entry["type"].as_str(), Some("user" | "assistant"))
                && entry["isSidechain"] != json!(true)
                && entry["isMeta"] != json!(true)
        })
        .collect();
    let last = entries.last()?;
    let blocks = content_blocks(&last["message"]["content"]);
    let last_prompt = || entries.iter().rev().find_map(prompt_of);
    match last["type"].as_str()? {
        "assistant" => {
            let tool = blocks.iter().rev().find(|b| b["type"] == "tool_use")?;
            let name = tool["name"].as_str().unwrap_or("a tool");
            let input = &tool["input"];
            let detail = [
                "command",
                "file_path",
                "path",
                "pattern",
                "url",
                "description",
            ]
            .iter()
            .find_map(|key| input[*key].as_str())
            .map_or_else(|| name.to_owned(), |what| format!("{name}: {what}"));
            Some(super::store::Interrupted {
                kind: "tool".into(),
                text: shorten(&detail),
                prompt: last_prompt(),
            })
        }
        _ => {
            // The user's own interruption (Esc) ends a turn as surely as an answer does.
            let said = prompt_of(last);
            if said
                .as_deref()
                .is_some_and(|p| p.starts_with("[Request interrupted"))
            {
                return None;
            }
            let prompt = said.or_else(last_prompt)?;
            Some(super::store::Interrupted {
                kind: "turn".into(),
                text: shorten(&prompt),
                prompt: Some(prompt),
            })
        }
    }
}

/// A message's content as blocks (a plain string is one text block).
fn content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(text) => vec![json!({ "type": "text", "text": text })],
        Value::Array(blocks) => blocks.clone(),
        _ => Vec::new(),
    }
}

/// What the person typed, for a user entry that holds a prompt (not a tool's result or a slash
/// command's bookkeeping).
fn prompt_of(entry: &Value) -> Option<String> {
    if entry["type"] != "user" {
        return None;
    }
    let text: Vec<String> = content_blocks(&entry["message"]["content"])
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str().map(str::to_owned))
        .collect();
    let text = text.join("\n");
    let bookkeeping = text.starts_with('<') || text.starts_with("Caveat:");
    (!text.trim().is_empty() && !bookkeeping).then_some(text)
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX {
        return line;
    }
    let mut short: String = line.chars().take(MAX - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(content: Value) -> String {
        json!({ "type": "user", "message": { "role": "user", "content": content } }).to_string()
    }

    fn assistant(content: Value) -> String {
        json!({ "type": "assistant", "message": { "role": "assistant", "content": content } })
            .to_string()
    }

    #[test]
    fn a_transcripts_end_names_what_was_lost() {
        let asked = user(json!("write hello.txt"));
        let answered = assistant(json!([{ "type": "text", "text": "Done." }]));
        let calls = assistant(json!([{ "type": "tool_use", "id": "t1", "name": "Bash",
            "input": { "command": "npm test" } }]));
        let result = user(json!([{ "type": "tool_result", "tool_use_id": "t1", "content": "ok" }]));
        let meta = json!({ "type": "user", "isMeta": true,
            "message": { "content": "<command-name>/clear</command-name>" } })
        .to_string();
        let summary = json!({ "type": "summary", "summary": "x" }).to_string();

        assert_eq!(
            interrupted(&[asked.clone(), answered.clone()].join("\n")),
            None
        );
        assert_eq!(interrupted(""), None);

        let cut = interrupted(&[answered, asked.clone(), summary].join("\n")).unwrap();
        assert_eq!(
            (cut.kind.as_str(), cut.prompt.as_deref()),
            ("turn", Some("write hello.txt"))
        );

        let tool = interrupted(&[asked.clone(), calls.clone()].join("\n")).unwrap();
        assert_eq!(tool.kind, "tool");
        assert_eq!(tool.text, "Bash: npm test");
        assert_eq!(tool.prompt.as_deref(), Some("write hello.txt"));

        let after_tool = interrupted(&[asked.clone(), calls, result, meta].join("\n")).unwrap();
        assert_eq!(
            (after_tool.kind.as_str(), after_tool.text.as_str()),
            ("turn", "write hello.txt")
        );

        let escaped = user(json!([{ "type": "text", "text": "[Request interrupted by user]" }]));
        assert_eq!(interrupted(&[asked, escaped].join("\n")), None);
        assert_eq!(interrupted("not json\n{\"type\":\"user\"}\n\u{0}"), None);
    }

    #[test]
    fn first_run_screens_are_answered_and_user_choices_kept() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(".claude.json"),
            r#"{"theme":"light","numStartups":7}"#,
        )
        .unwrap();
        let work = Path::new("/data/users/1/workspace");
        let key = Some("sk-ant-api03-0123456789abcdefghijXYZ");
        prepare_home(home.path(), work, key, "'/old/pocketdev' hook").unwrap();
        prepare_home(home.path(), work, key, "'/usr/bin/pocketdev' hook").unwrap();

        let state: Value =
            serde_json::from_slice(&std::fs::read(home.path().join(".claude.json")).unwrap())
                .unwrap();
        assert_eq!(state["hasCompletedOnboarding"], true);
        assert_eq!(state["theme"], "light", "the user's own choice stays");
        assert_eq!(state["numStartups"], 7, "unknown keys are kept");
        assert_eq!(
            state["projects"]["/data/users/1/workspace"]["hasTrustDialogAccepted"],
            true
        );
        assert_eq!(
            state["customApiKeyResponses"]["approved"],
            json!(["3456789abcdefghijXYZ"]),
            "once, last 20 chars"
        );
        let settings: Value = serde_json::from_slice(
            &std::fs::read(home.path().join(".claude/settings.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(settings["permissions"]["defaultMode"], "default");
        assert_eq!(settings["cleanupPeriodDays"], TRANSCRIPT_DAYS);
        let starts = settings["hooks"]["SessionStart"].as_array().unwrap();
        assert_eq!(
            starts.len(),
            1,
            "the old binary's hook was replaced: {starts:?}"
        );
        assert_eq!(
            starts[0]["hooks"][0]["command"],
            "'/usr/bin/pocketdev' hook"
        );
        for event in HOOK_EVENTS {
            assert_eq!(
                settings["hooks"][event].as_array().unwrap().len(),
                1,
                "{event}"
            );
        }
    }

    #[test]
    fn a_damaged_config_is_moved_aside() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(".claude.json"), "{not json").unwrap();
        prepare_home(home.path(), Path::new("/w"), None, "'/p/pocketdev' hook").unwrap();
        assert!(home.path().join(".claude.json.damaged").exists());
    }
}
