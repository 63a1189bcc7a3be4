//! Whether a running agent is working, waiting for its user, or asking permission: the agent's
//! own hook reports fused with what its screen shows and whether output flows, with rules per
//! profile kind, debounced so a half-drawn screen never flips the status.

use std::time::{Duration, Instant};

use crate::instances::profiles::ProfileKind;

pub use crate::instances::observe::Status;

/// A status with what explains it (the question on screen, for a permission prompt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub status: Status,
    pub reason: Option<String>,
}

impl Reading {
    fn plain(status: Status) -> Self {
        Self {
            status,
            reason: None,
        }
    }
}

/// What the visible screen says, if it says anything for sure.
pub fn from_screen(kind: ProfileKind, screen: &str) -> Option<Reading> {
    let lines: Vec<&str> = screen
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    match kind {
        ProfileKind::Claude => claude_screen(&lines),
        _ => generic_screen(&lines),
    }
}

/// Claude Code's TUI: a permission dialog, the busy footer, or the input prompt.
fn claude_screen(lines: &[&str]) -> Option<Reading> {
    let dialog = lines.iter().any(|l| l.contains("Esc to cancel"))
        && lines.iter().any(|l| l.contains("1. Yes"));
    if dialog {
        let question = lines
            .iter()
            .map(|l| inside_box(l))
            .rev()
            .find(|l| l.starts_with("Do you want"))
            .map(str::to_owned);
        return Some(Reading {
            status: Status::NeedsPermission,
            reason: question,
        });
    }
    let footer = lines.iter().rev().take(4);
    let mut waiting = false;
    for line in footer {
        if line.ends_with("esc to interrupt") || line.contains("· esc to interrupt") {
            return Some(Reading::plain(Status::Working));
        }
        if line.contains("? for shortcuts") {
            waiting = true;
        }
    }
    let prompt = lines
        .iter()
        .rev()
        .take(6)
        .any(|l| l.trim_start().starts_with("❯\u{a0}") || l.trim() == "❯");
    (waiting || prompt).then(|| Reading::plain(Status::Waiting))
}

/// A line without the box drawing around it.
fn inside_box(line: &str) -> &str {
    line.trim_matches(|c: char| c.is_whitespace() || matches!(c, '│' | '┃' | '║'))
}

/// Other CLIs: a yes/no question on the last line is a permission prompt.
fn generic_screen(lines: &[&str]) -> Option<Reading> {
    let last = lines.last()?.trim();
    let lower = last.to_lowercase();
    let asks = ["[y/n]", "(y/n)", "[y/n]:", "(yes/no)", "[yes/no]"]
        .iter()
        .any(|p| lower.contains(p));
    asks.then(|| Reading {
        status: Status::NeedsPermission,
        reason: Some(last.to_owned()),
    })
}

/// The last line of text on a screen, for a one-line preview: the agent's latest words, not its
/// chrome (box borders, Claude Code's footer and empty prompt). At most 120 characters.
pub fn preview(screen: &str) -> Option<String> {
    const CHROME: [&str; 3] = ["? for shortcuts", "esc to interrupt", "shift+tab to cycle"];
    screen
        .lines()
        .rev()
        .map(|line| {
            inside_box(line)
                .trim_start_matches(['❯', '>', '$', '#', ' ', '\u{a0}'])
                .trim()
        })
        .find(|line| {
            line.chars().filter(|c| c.is_alphanumeric()).count() >= 3
                && !CHROME.iter().any(|chrome| line.contains(chrome))
        })
        .map(|line| line.chars().take(120).collect())
}

/// What a Claude Code hook event says, per the observed state machine.
pub fn from_hook(event: &serde_json::Value) -> Option<Reading> {
    match event["hook_event_name"].as_str()? {
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" | "PostToolUseFailure" => {
            Some(Reading::plain(Status::Working))
        }
        "PermissionRequest" => Some(Reading {
            status: Status::NeedsPermission,
            reason: event["tool_name"]
                .as_str()
                .map(|tool| format!("{tool} wants permission")),
        }),
        "Notification" if event["notification_type"] == "permission_prompt" => Some(Reading {
            status: Status::NeedsPermission,
            reason: event["message"].as_str().map(str::to_owned),
        }),
        "Stop" => Some(Reading::plain(Status::Waiting)),
        _ => None,
    }
}

/// The inputs of one evaluation.
pub struct Signals<'a> {
    pub kind: ProfileKind,
    /// The visible screen as text, when it could be read.
    pub screen: Option<&'a str>,
    /// The latest hook reading, if recent enough to trust.
    pub hook: Option<Reading>,
    /// Whether the pane printed within the last few seconds.
    pub output_flowing: bool,
}

/// Fuses the signals: the screen wins where it is sure (a dialog, the busy footer, the prompt —
/// which catches an Esc that no hook reports), then the hook, then output activity.
pub fn fuse(signals: &Signals<'_>) -> Reading {
    if let Some(reading) = signals.screen.and_then(|s| from_screen(signals.kind, s)) {
        return reading;
    }
    if let Some(hook) = &signals.hook {
        return hook.clone();
    }
    Reading::plain(if signals.output_flowing {
        Status::Working
    } else if signals.kind == ProfileKind::Claude {
        Status::Waiting
    } else {
        Status::Idle
    })
}

/// A published status that changes only when a new reading holds for a moment.
#[derive(Debug, Clone)]
pub struct Debounced {
    pub published: Option<Reading>,
    candidate: Option<(Reading, Instant)>,
}

impl Default for Debounced {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a new reading must hold before it is published.
pub const SETTLE: Duration = Duration::from_millis(400);

impl Debounced {
    pub fn new() -> Self {
        Self {
            published: None,
            candidate: None,
        }
    }

    /// Offers a reading; returns the new published reading when it changed.
    pub fn offer(&mut self, reading: Reading, now: Instant) -> Option<Reading> {
        if self.published.is_none() {
            self.published = Some(reading.clone());
            return Some(reading);
        }
        if self.published.as_ref() == Some(&reading) {
            self.candidate = None;
            return None;
        }
        match &self.candidate {
            Some((candidate, since)) if *candidate == reading && now - *since >= SETTLE => {
                self.candidate = None;
                self.published = Some(reading.clone());
                Some(reading)
            }
            Some((candidate, _)) if *candidate == reading => None,
            _ => {
                self.candidate = Some((reading, now));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAUDE_WAITING: &str = "╭───────────────╮\n│ ✻ Welcome to Claude Code! │\n╰───────────────╯\n\n> hello\n\n⏺ Hello! How can I help?\n\n────────\n❯\u{a0}\n────────\n  ⏵⏵ auto mode on (shift+tab to cycle) · ? for shortcuts\n";
    const CLAUDE_WORKING: &str = "> write a file\n\n✻ Tinkering… (3s · ↓ 120 tokens)\n\n────────\n❯\u{a0}\n────────\n  ⏸ manual mode on · esc to interrupt\n";
    const CLAUDE_PERMISSION: &str = "⏺ Write(hello.txt)\n\n╭────────╮\n│ Create file\n│ hello.txt\n│ Do you want to create hello.txt?\n│ ❯ 1. Yes\n│   2. Yes, and don't ask again this session\n│   3. No, and tell Claude what to do differently (esc)\n╰────────╯\n  Esc to cancel · Tab to amend\n";
    const CLAUDE_INTERRUPTED: &str = "> long task\n  ⎿  Interrupted · What should Claude do instead?\n\n────────\n❯\u{a0}\n────────\n  ⏸ manual mode on\n";

    #[test]
    fn claude_screens_are_read() {
        let read = |s| from_screen(ProfileKind::Claude, s).map(|r| r.status);
        assert_eq!(read(CLAUDE_WAITING), Some(Status::Waiting));
        assert_eq!(read(CLAUDE_WORKING), Some(Status::Working));
        assert_eq!(
            read(CLAUDE_INTERRUPTED),
            Some(Status::Waiting),
            "Esc: no hook, the screen tells"
        );
        let permission = from_screen(ProfileKind::Claude, CLAUDE_PERMISSION).unwrap();
        assert_eq!(permission.status, Status::NeedsPermission);
        assert_eq!(
            permission.reason.as_deref(),
            Some("Do you want to create hello.txt?")
        );
        assert_eq!(
            from_screen(ProfileKind::Claude, ""),
            None,
            "a blank capture says nothing"
        );
    }

    /// Screens recorded from Claude Code 2.1.328 (see tests/api/claude.rs).
    #[test]
    fn recorded_claude_screens_are_read() {
        let read = |screen: &str| from_screen(ProfileKind::Claude, screen).map(|r| r.status);
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/claude-screens/"
        );
        let screen = |name: &str| std::fs::read_to_string(format!("{dir}{name}.txt")).unwrap();
        assert_eq!(read(&screen("waiting")), Some(Status::Waiting));
        assert_eq!(read(&screen("working")), Some(Status::Working));
        assert_eq!(read(&screen("interrupted")), Some(Status::Waiting));
        let asking = from_screen(ProfileKind::Claude, &screen("needs_permission")).unwrap();
        assert_eq!(asking.status, Status::NeedsPermission);
        assert_eq!(asking.reason.as_deref(), Some("Do you want to proceed?"));
    }

    #[test]
    fn other_clis_ask_with_yes_no() {
        let asked = from_screen(
            ProfileKind::Generic,
            "editing main.rs\nApply this change? [y/N]",
        )
        .unwrap();
        assert_eq!(asked.status, Status::NeedsPermission);
        assert_eq!(asked.reason.as_deref(), Some("Apply this change? [y/N]"));
        assert_eq!(from_screen(ProfileKind::Generic, "$ ls\nsrc\n$"), None);
    }

    #[test]
    fn names_are_the_serialised_ones() {
        for status in [
            Status::Working,
            Status::Waiting,
            Status::NeedsPermission,
            Status::Idle,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        use crate::instances::store::State;
        for state in [
            State::Starting,
            State::Running,
            State::Exited,
            State::Stopped,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }

    #[test]
    fn hooks_follow_the_observed_state_machine() {
        let hook = |name: &str| {
            from_hook(&serde_json::json!({ "hook_event_name": name })).map(|r| r.status)
        };
        assert_eq!(hook("UserPromptSubmit"), Some(Status::Working));
        assert_eq!(hook("PreToolUse"), Some(Status::Working));
        assert_eq!(hook("PermissionRequest"), Some(Status::NeedsPermission));
        assert_eq!(hook("Stop"), Some(Status::Waiting));
        assert_eq!(hook("SessionStart"), None);
    }

    #[test]
    fn the_screen_overrides_a_stale_hook() {
        let signals = Signals {
            kind: ProfileKind::Claude,
            screen: Some(CLAUDE_INTERRUPTED),
            hook: Some(Reading::plain(Status::Working)),
            output_flowing: false,
        };
        assert_eq!(fuse(&signals).status, Status::Waiting);
        let quiet = Signals {
            kind: ProfileKind::Generic,
            screen: Some("$"),
            hook: None,
            output_flowing: true,
        };
        assert_eq!(fuse(&quiet).status, Status::Working);
    }

    #[test]
    fn a_preview_is_the_last_line_of_words_not_chrome() {
        assert_eq!(
            preview("$ make\ncc -o app main.c\nBuild finished in 2.1s\n$ \n\n").as_deref(),
            Some("Build finished in 2.1s")
        );
        let claude = "⏺ I created hello.txt with a greeting.\n╭──────╮\n│ ❯ \u{a0}│\n╰──────╯\n  ? for shortcuts\n";
        assert_eq!(
            preview(claude).as_deref(),
            Some("⏺ I created hello.txt with a greeting.")
        );
        assert_eq!(preview("\n  \n──\n"), None);
        assert_eq!(preview(&"x".repeat(500)).map(|p| p.len()), Some(120));
    }

    /// A quiet program that is not Claude Code is idle: nothing says it waits for anyone.
    #[test]
    fn quiet_programs_are_idle_unless_claude_code_waits() {
        let quiet = |kind| Signals {
            kind,
            screen: Some("$"),
            hook: None,
            output_flowing: false,
        };
        assert_eq!(fuse(&quiet(ProfileKind::Generic)).status, Status::Idle);
        assert_eq!(fuse(&quiet(ProfileKind::Claude)).status, Status::Waiting);
    }

    #[test]
    fn a_status_changes_only_once_a_reading_holds() {
        let mut status = Debounced::new();
        let t0 = Instant::now();
        let working = Reading::plain(Status::Working);
        let waiting = Reading::plain(Status::Waiting);
        assert_eq!(status.offer(waiting.clone(), t0), Some(waiting.clone()));
        assert_eq!(
            status.offer(working.clone(), t0),
            None,
            "one reading is not enough"
        );
        assert_eq!(
            status.offer(waiting, t0 + SETTLE),
            None,
            "a flicker is dropped"
        );
        assert_eq!(status.offer(working.clone(), t0 + SETTLE), None);
        assert_eq!(
            status.offer(working.clone(), t0 + SETTLE * 2),
            Some(working)
        );
    }
}
