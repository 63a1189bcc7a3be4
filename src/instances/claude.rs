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

#[cfg(test)]
mod tests {
    use super::*;

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
