//! One-tap approvals: an agent's permission dialog read off its screen into its choices (by a
//! per-profile table of patterns, Claude Code's built in), and answered by sending the keys that
//! pick exactly one choice, only while the very same dialog is still up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::manager::{InstanceEvent, Manager};
use super::profiles::{Profile, ProfileKind};
use super::store::{self, Instance, State};
use crate::error::AppError;
use crate::users::User;

/// How an agent draws its permission dialog, as patterns on the screen's lines (box borders
/// and surrounding spaces removed). The defaults are Claude Code's (2.1.x); a profile sets
/// `[profiles.<id>.approval]` to change any of them for another agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalRules {
    /// The dialog's first line: a rule above the title, or the title itself
    /// (`start_is_title`).
    pub start: String,
    pub start_is_title: bool,
    /// Lines that frame the dialog's preview (a command, a file's content or a diff).
    pub separator: String,
    /// The question above the choices; empty when the dialog has none.
    pub question: String,
    /// A choice line, with the groups `key` (what to type to pick it) and `label`.
    pub choice: String,
    /// The line that marks the highlighted choice (for `keys = "arrows"`).
    pub selected: String,
    /// The dialog's last line, which must be the screen's last line of text; empty when the
    /// choices are the last lines.
    pub end: String,
    /// Labels of choices that allow from now on, and of choices that refuse; others allow once.
    pub always: String,
    pub deny: String,
    /// Titles whose framed text is the detail (a command) rather than a preview.
    pub detail_in_preview: String,
    /// `digits`: type the choice's key; `arrows`: move the highlight to it, then Enter.
    pub keys: KeyStyle,
    /// How long the dialog must have been up before keys are sent: Claude Code drops keys
    /// that come within about 0.1 s of drawing it.
    pub pause_ms: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyStyle {
    #[default]
    Digits,
    Arrows,
}

impl Default for ApprovalRules {
    fn default() -> Self {
        Self {
            start: r"^─{8,}$".into(),
            start_is_title: false,
            separator: r"^╌{8,}$".into(),
            question: r"^Do you want".into(),
            choice: r"^(?:❯\s*)?(?P<key>[1-9])\.\s+(?P<label>.+)$".into(),
            selected: r"^❯".into(),
            end: r"^Esc to cancel".into(),
            always: r"(?i)^yes,? and|always|don.t ask again".into(),
            deny: r"(?i)^no\b".into(),
            detail_in_preview: r"(?i)command$".into(),
            keys: KeyStyle::Digits,
            pause_ms: 500,
        }
    }
}

/// `ApprovalRules` compiled.
#[derive(Debug)]
pub struct Rules {
    start: Regex,
    start_is_title: bool,
    separator: Option<Regex>,
    question: Option<Regex>,
    choice: Regex,
    selected: Option<Regex>,
    end: Option<Regex>,
    always: Option<Regex>,
    deny: Option<Regex>,
    detail_in_preview: Option<Regex>,
    keys: KeyStyle,
    pause: Duration,
}

impl Rules {
    /// Compiles the patterns; the error names the key at fault.
    pub fn compile(rules: &ApprovalRules) -> Result<Self, String> {
        let required = |key: &str, pattern: &str| {
            if pattern.is_empty() {
                return Err(format!("approval.{key} must not be empty"));
            }
            Regex::new(pattern).map_err(|e| format!("approval.{key}: {e}"))
        };
        let optional = |key: &str, pattern: &str| {
            (!pattern.is_empty())
                .then(|| Regex::new(pattern).map_err(|e| format!("approval.{key}: {e}")))
                .transpose()
        };
        let choice = required("choice", &rules.choice)?;
        let groups: Vec<&str> = choice.capture_names().flatten().collect();
        if !groups.contains(&"key") || !groups.contains(&"label") {
            return Err("approval.choice needs the groups (?P<key>…) and (?P<label>…)".into());
        }
        Ok(Self {
            start: required("start", &rules.start)?,
            start_is_title: rules.start_is_title,
            separator: optional("separator", &rules.separator)?,
            question: optional("question", &rules.question)?,
            choice,
            selected: optional("selected", &rules.selected)?,
            end: optional("end", &rules.end)?,
            always: optional("always", &rules.always)?,
            deny: optional("deny", &rules.deny)?,
            detail_in_preview: optional("detail_in_preview", &rules.detail_in_preview)?,
            keys: rules.keys,
            pause: Duration::from_millis(rules.pause_ms.min(5000)),
        })
    }

    /// A profile's rules: its own table, Claude Code's for Claude profiles, else none.
    pub fn for_profile(profile: &Profile) -> Result<Option<Self>, String> {
        match (&profile.approval, profile.kind) {
            (Some(rules), _) => Self::compile(rules).map(Some),
            (None, ProfileKind::Claude) => Self::compile(&ApprovalRules::default()).map(Some),
            (None, _) => Ok(None),
        }
    }
}

/// A permission dialog on an agent's screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PendingApproval {
    /// A digest of the dialog's words (title, detail, preview, question, choices): the same
    /// dialog keeps it, a different one gets another.
    #[schema(example = "3f9a0c12d4e5b6a7")]
    pub id: String,
    /// The dialog's title, as it words it (`Bash command`, `Create file`, `Edit file`).
    pub tool: String,
    /// What it is about: the command, or the file.
    pub detail: String,
    /// The question, such as `Do you want to create notes.txt?`.
    pub question: Option<String>,
    /// More of what the dialog shows: a file's new content or a diff (at most 40 lines), or a
    /// command's description.
    pub preview: Option<String>,
    /// In the dialog's order.
    pub choices: Vec<ApprovalChoice>,
    /// The tool's own name, as the agent's permission hook reported it (Claude Code: `Write`,
    /// `Edit`, `Bash`), when what the hook asked matches this dialog.
    pub tool_name: Option<String>,
    /// Which choice is highlighted, for agents answered with arrow keys.
    #[serde(skip)]
    selected: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApprovalChoice {
    /// What to send in `POST /api/instances/{id}/approvals/{approval_id}` (the dialog's number).
    #[schema(example = "1")]
    pub id: String,
    /// As the dialog words it.
    #[schema(example = "Yes")]
    pub label: String,
    pub kind: ChoiceKind,
}

/// What a choice does, for its button's look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChoiceKind {
    /// Allows this once.
    Allow,
    /// Allows this and more like it from now on.
    Always,
    /// Refuses.
    Deny,
}

/// Lines of preview kept.
const PREVIEW_LINES: usize = 40;
/// Characters kept of a detail or a preview line.
const LINE_CHARS: usize = 400;

/// A line without the box drawing around it.
fn inside_box(line: &str) -> &str {
    line.trim_matches(|c: char| c.is_whitespace() || matches!(c, '│' | '┃' | '║'))
}

fn cut(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(chars - 1).collect();
    short.push('…');
    short
}

/// The permission dialog at the bottom of `screen`, if `rules` find one there.
pub fn parse(rules: &Rules, screen: &str) -> Option<PendingApproval> {
    let lines: Vec<&str> = screen.lines().map(inside_box).collect();
    let mut last = lines.iter().rposition(|l| !l.is_empty())?;
    if let Some(end) = &rules.end {
        if !end.is_match(lines[last]) {
            return None;
        }
        last = lines[..last].iter().rposition(|l| !l.is_empty())?;
    }
    // The choices: the block of lines above the end, each a choice or the wrapped rest of one.
    let mut top = last;
    while top > 0 {
        let above = lines[top - 1];
        let stop = above.is_empty()
            || rules.question.as_ref().is_some_and(|q| q.is_match(above))
            || rules.separator.as_ref().is_some_and(|s| s.is_match(above))
            || rules.start.is_match(above);
        if stop {
            break;
        }
        top -= 1;
    }
    let mut choices: Vec<(String, String, bool)> = Vec::new();
    for line in &lines[top..=last] {
        if let Some(found) = rules.choice.captures(line) {
            let selected = rules.selected.as_ref().is_some_and(|s| s.is_match(line));
            choices.push((
                found["key"].to_owned(),
                found["label"].trim().to_owned(),
                selected,
            ));
        } else {
            let (_, label, _) = choices.last_mut()?;
            label.push(' ');
            label.push_str(line);
        }
    }
    let mut keys: Vec<&str> = choices.iter().map(|(k, _, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    // Keys are typed one character at a time, each literally: letters and digits only.
    let typable =
        |key: &str| (1..=8).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric());
    if choices.len() < 2 || keys.len() != choices.len() || !keys.iter().all(|k| typable(k)) {
        return None;
    }
    // The question just above them, then the rest of the dialog up to its start.
    let mut body_end = top;
    let question = match &rules.question {
        Some(pattern) => {
            let at = lines[..top].iter().rposition(|l| !l.is_empty())?;
            if !pattern.is_match(lines[at]) {
                return None;
            }
            body_end = at;
            Some(lines[at].to_owned())
        }
        None => None,
    };
    let start = lines[..body_end]
        .iter()
        .rposition(|l| rules.start.is_match(l))?;
    let (title, body_start) = if rules.start_is_title {
        (lines[start], start + 1)
    } else {
        let at = start
            + 1
            + lines[start + 1..body_end]
                .iter()
                .position(|l| !l.is_empty())?;
        (lines[at], at + 1)
    };
    let (mut plain, mut framed) = (Vec::new(), Vec::new());
    let mut inside = false;
    for line in &lines[body_start..body_end] {
        if rules.separator.as_ref().is_some_and(|s| s.is_match(line)) {
            inside = !inside;
        } else if inside {
            framed.push(*line);
        } else if !line.is_empty() {
            plain.push(*line);
        }
    }
    let in_preview = rules
        .detail_in_preview
        .as_ref()
        .is_some_and(|p| p.is_match(title));
    let (detail, preview) = if in_preview && !framed.is_empty() {
        (framed.join("\n"), plain)
    } else if plain.is_empty() {
        (
            framed.first().copied().unwrap_or_default().to_owned(),
            framed[framed.len().min(1)..].to_vec(),
        )
    } else {
        (
            plain[0].to_owned(),
            if framed.is_empty() {
                plain[1..].to_vec()
            } else {
                framed
            },
        )
    };
    let preview: Vec<String> = preview
        .iter()
        .take(PREVIEW_LINES)
        .map(|l| cut(l, LINE_CHARS))
        .collect();
    let preview = (!preview.is_empty()).then(|| preview.join("\n"));
    let kind = |label: &str| {
        if rules.deny.as_ref().is_some_and(|d| d.is_match(label)) {
            ChoiceKind::Deny
        } else if rules.always.as_ref().is_some_and(|a| a.is_match(label)) {
            ChoiceKind::Always
        } else {
            ChoiceKind::Allow
        }
    };
    let selected = choices.iter().position(|(_, _, selected)| *selected);
    let choices: Vec<ApprovalChoice> = choices
        .into_iter()
        .map(|(key, label, _)| ApprovalChoice {
            kind: kind(&label),
            id: key,
            label,
        })
        .collect();
    let mut approval = PendingApproval {
        id: String::new(),
        tool: cut(title, LINE_CHARS),
        detail: cut(&detail, 4 * LINE_CHARS),
        question,
        preview,
        choices,
        tool_name: None,
        selected,
    };
    approval.id = digest(&approval);
    Some(approval)
}

/// The dialog's words without their spacing, so a redraw at another width keeps the id.
fn digest(approval: &PendingApproval) -> String {
    let mut hasher = Sha256::new();
    let mut add = |text: &str| {
        let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        hasher.update(squeezed.as_bytes());
        hasher.update([0]);
    };
    add(&approval.tool);
    add(&approval.detail);
    add(approval.preview.as_deref().unwrap_or_default());
    add(approval.question.as_deref().unwrap_or_default());
    for choice in &approval.choices {
        add(&choice.id);
        add(&choice.label);
    }
    hex::encode(&hasher.finalize()[..8])
}

/// What answering did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The choice was sent and the dialog went away.
    Done,
    /// No dialog is up any more (answered elsewhere, or the agent moved on): nothing was sent.
    Gone,
    /// Another question is up instead: nothing was sent; look again.
    Changed,
    /// The choice was sent but the dialog is still up after a few seconds.
    StillOpen,
}

impl Outcome {
    /// The name clients see (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Gone => "gone",
            Outcome::Changed => "changed",
            Outcome::StillOpen => "still_open",
        }
    }
}

/// The answer to an answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Answered {
    pub outcome: Outcome,
    /// The dialog up now (another question after `done`, the new one after `changed`).
    pub pending_approval: Option<PendingApproval>,
}

/// Who answers, for the audit log.
pub struct AnsweredBy<'a> {
    pub user: &'a User,
    pub ip: Option<IpAddr>,
    /// `api`, or `push` for a notification's action.
    pub via: &'a str,
}

/// The tool a permission hook named, the texts of its input, and when.
type Hooked = (String, Vec<String>, Instant);

/// Per profile, its compiled rules; per instance, the dialog last seen and since when.
pub struct Registry {
    rules: HashMap<String, Arc<Rules>>,
    seen: Mutex<HashMap<String, (PendingApproval, Instant)>>,
    /// Per instance, what its last permission hook asked.
    hooked: Mutex<HashMap<String, Hooked>>,
    answering: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Registry {
    pub fn new(profiles: &std::collections::BTreeMap<String, Profile>) -> anyhow::Result<Self> {
        let mut rules = HashMap::new();
        for (id, profile) in profiles {
            if let Some(compiled) =
                Rules::for_profile(profile).map_err(|e| anyhow::anyhow!("profile `{id}`: {e}"))?
            {
                rules.insert(id.clone(), Arc::new(compiled));
            }
        }
        Ok(Self {
            rules,
            seen: Mutex::default(),
            hooked: Mutex::default(),
            answering: Mutex::default(),
        })
    }

    fn rules(&self, profile: &str) -> Option<Arc<Rules>> {
        self.rules.get(profile).cloned()
    }

    /// Remembers what the screen shows now; true when that changed. The same dialog keeps the
    /// time it was first seen.
    fn remember(&self, id: &str, approval: Option<&PendingApproval>) -> bool {
        let mut seen = self.seen.lock();
        match approval {
            Some(approval) => {
                let since = seen
                    .get(id)
                    .filter(|(a, _)| a.id == approval.id)
                    .map(|(_, at)| *at);
                let changed = seen.get(id).is_none_or(|(a, _)| a != approval);
                seen.insert(
                    id.to_owned(),
                    (approval.clone(), since.unwrap_or_else(Instant::now)),
                );
                changed
            }
            None => seen.remove(id).is_some(),
        }
    }

    /// What the agent's latest permission hook asked, if it matches `approval`'s words.
    fn hooked_tool(&self, id: &str, approval: &PendingApproval) -> Option<String> {
        let hooked = self.hooked.lock();
        let (tool, inputs, at) = hooked.get(id)?;
        let detail = approval.detail.trim();
        let matches = !detail.is_empty()
            && at.elapsed() < HOOK_FRESH
            && inputs.iter().any(|input| {
                let input = input.trim();
                input == detail || input.ends_with(&format!("/{detail}"))
            });
        matches.then(|| tool.clone())
    }

    fn first_seen(&self, id: &str, approval_id: &str) -> Option<Instant> {
        self.seen
            .lock()
            .get(id)
            .filter(|(a, _)| a.id == approval_id)
            .map(|(_, at)| *at)
    }
}

/// A permission hook names the dialog's tool this long at most.
const HOOK_FRESH: Duration = Duration::from_secs(600);

/// Approval ids are 16 hex digits; choice ids a few letters or digits.
fn check_ids(approval_id: &str, choice: &str) -> Result<(), AppError> {
    if approval_id.len() != 16 || !approval_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::Unprocessable(
            "an approval id is 16 hexadecimal digits, as pending_approval.id gives it".into(),
        ));
    }
    if choice.is_empty() || choice.len() > 8 || !choice.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(AppError::Unprocessable(
            "choice is the id of one of pending_approval.choices".into(),
        ));
    }
    Ok(())
}

/// How long the dialog may take to go away after its keys were sent.
const GONE_WITHIN: Duration = Duration::from_secs(4);
/// When to send the keys once more if the dialog is still up (dropped keys).
const RESEND_AFTER: Duration = Duration::from_millis(1200);
/// The first look after the keys, doubling up to `LOOK_AT_MOST` (each look runs tmux).
const LOOK_FIRST: Duration = Duration::from_millis(5);
const LOOK_AT_MOST: Duration = Duration::from_millis(80);

impl Manager {
    /// The dialog on a running instance's screen at the last look.
    pub fn pending_approval(&self, instance: &Instance) -> Option<PendingApproval> {
        if instance.state != State::Running {
            return None;
        }
        self.approvals
            .seen
            .lock()
            .get(&instance.id)
            .map(|(a, _)| a.clone())
    }

    /// Notes what a permission hook of the agent asks (Claude Code's `PermissionRequest`:
    /// `tool_name`, `tool_input`), to name the tool of the dialog that matches it. The hook
    /// runs as the agent, so it only ever adds a name to what the screen shows.
    pub fn note_permission_hook(&self, instance_id: &str, event: &serde_json::Value) {
        if event["hook_event_name"] != "PermissionRequest" {
            return;
        }
        let Some(tool) = event["tool_name"].as_str().filter(|t| t.len() <= 100) else {
            return;
        };
        let inputs = event["tool_input"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, value)| value.as_str())
            .take(16)
            .map(|text| cut(text, 4000))
            .collect();
        self.approvals.hooked.lock().insert(
            instance_id.to_owned(),
            (tool.to_owned(), inputs, Instant::now()),
        );
    }

    /// Reads `screen` for a dialog with the instance's rules, remembers it, and tells
    /// subscribers when it appeared, changed or went. `None` for profiles without rules.
    pub fn observe_approval(&self, instance: &Instance, screen: &str) -> Option<PendingApproval> {
        let rules = self.approvals.rules(&instance.profile)?;
        let approval = parse(&rules, screen).map(|mut approval| {
            approval.tool_name = self.approvals.hooked_tool(&instance.id, &approval);
            approval
        });
        if self.approvals.remember(&instance.id, approval.as_ref()) {
            let _ = self.events().send(InstanceEvent::Approval {
                id: instance.id.clone(),
                approval: approval.clone(),
            });
        }
        approval
    }

    /// Answers the dialog `approval_id` on `instance_id` with `choice`, if that very dialog is
    /// still up: the screen is read again, the keys sent after the agent's pause, and the
    /// dialog watched until it goes. Someone else's instance is not found (admins may answer
    /// any). Audited.
    pub async fn answer_approval(
        &self,
        by: &AnsweredBy<'_>,
        instance_id: &str,
        approval_id: &str,
        choice: &str,
    ) -> Result<Answered, AppError> {
        let instance = store::get(self.db(), instance_id)
            .await?
            .filter(|i| i.owner == by.user.id || by.user.is_admin())
            .ok_or_else(|| AppError::not_found("instance"))?;
        check_ids(approval_id, choice)?;
        if instance.state != State::Running {
            return Err(AppError::Conflict(
                "this instance is not running; its question went with it".into(),
            ));
        }
        let lock = self
            .approvals
            .answering
            .lock()
            .entry(instance.id.clone())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let answered = self.answer_locked(&instance, approval_id, choice).await?;
        let (tool, detail, label) = answered
            .1
            .as_ref()
            .map(|(a, c)| (a.tool.as_str(), a.detail.as_str(), c.label.as_str()))
            .unwrap_or_default();
        crate::audit::record(
            self.db(),
            crate::audit::Event {
                user_id: Some(by.user.id),
                username: Some(&by.user.username),
                action: "instance.approval",
                target: Some(format!("instance:{}", instance.id)),
                ip: by.ip,
                detail: Some(serde_json::json!({
                    "approval": approval_id, "choice": choice, "label": label, "tool": tool,
                    "detail": cut(detail, 200), "outcome": answered.0.outcome, "via": by.via,
                    "owner": instance.owner,
                })),
            },
        )
        .await;
        Ok(answered.0)
    }

    async fn answer_locked(
        &self,
        instance: &Instance,
        approval_id: &str,
        choice: &str,
    ) -> Result<(Answered, Option<(PendingApproval, ApprovalChoice)>), AppError> {
        let unanswered = |outcome, now: Option<PendingApproval>| {
            Ok((
                Answered {
                    outcome,
                    pending_approval: now,
                },
                None,
            ))
        };
        let Some(rules) = self.approvals.rules(&instance.profile) else {
            return unanswered(Outcome::Gone, None);
        };
        let tmux = self.tmux_for(instance.owner).await?;
        let session = instance.tmux_session();
        let look = || async {
            tmux.capture(&session, 0, false)
                .await
                .map_err(super::manager::tmux_error)
        };
        let mut screen = look().await?;
        let mut now = self.observe_approval(instance, &screen);
        // Keys too soon after the dialog appeared are lost: wait out the pause, then look again.
        if let Some(first) = self.approvals.first_seen(&instance.id, approval_id) {
            let since = first.elapsed();
            if since < rules.pause {
                tokio::time::sleep(rules.pause - since).await;
                screen = look().await?;
                now = self.observe_approval(instance, &screen);
            }
        }
        let Some(dialog) = now else {
            return unanswered(Outcome::Gone, None);
        };
        if dialog.id != approval_id {
            return unanswered(Outcome::Changed, Some(dialog));
        }
        let Some(picked) = dialog.choices.iter().find(|c| c.id == choice).cloned() else {
            let ids: Vec<&str> = dialog.choices.iter().map(|c| c.id.as_str()).collect();
            return Err(AppError::Unprocessable(format!(
                "this dialog has no choice `{choice}`; its choices are {}",
                ids.join(", ")
            )));
        };
        let keys: Vec<String> = match rules.keys {
            // One character per key: tmux reads a longer word as a key's name (`Enter`).
            KeyStyle::Digits => picked.id.chars().map(String::from).collect(),
            KeyStyle::Arrows => {
                let target = dialog
                    .choices
                    .iter()
                    .position(|c| c.id == choice)
                    .unwrap_or(0);
                let from = dialog.selected.unwrap_or(0);
                let step = if target >= from { "Down" } else { "Up" };
                let mut keys = vec![step.to_owned(); target.abs_diff(from)];
                keys.push("Enter".into());
                keys
            }
        };
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.note_input(&instance.id);
        tmux.send_keys(&session, &keys)
            .await
            .map_err(super::manager::tmux_error)?;
        let sent = Instant::now();
        let mut resent = false;
        let mut wait = LOOK_FIRST;
        let outcome = loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(LOOK_AT_MOST);
            let screen = look().await?;
            let now = self.observe_approval(instance, &screen);
            match now {
                Some(still) if still.id == approval_id => {
                    if sent.elapsed() >= GONE_WITHIN {
                        break Answered {
                            outcome: Outcome::StillOpen,
                            pending_approval: Some(still),
                        };
                    }
                    if !resent && sent.elapsed() >= RESEND_AFTER {
                        resent = true;
                        tmux.send_keys(&session, &keys)
                            .await
                            .map_err(super::manager::tmux_error)?;
                    }
                }
                next => {
                    break Answered {
                        outcome: Outcome::Done,
                        pending_approval: next,
                    };
                }
            }
        };
        Ok((outcome, Some((dialog, picked))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claude() -> Rules {
        Rules::compile(&ApprovalRules::default()).unwrap()
    }

    fn recorded(name: &str) -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/claude-screens/"
        );
        std::fs::read_to_string(format!("{path}{name}.txt")).unwrap()
    }

    fn labels(approval: &PendingApproval) -> Vec<(&str, &str, ChoiceKind)> {
        approval
            .choices
            .iter()
            .map(|c| (c.id.as_str(), c.label.as_str(), c.kind))
            .collect()
    }

    /// Screens recorded from Claude Code 2.1.328 against the mock Messages API
    /// (tests/api/approvals.rs records them with POCKETDEV_RECORD_SCREENS).
    #[test]
    fn claude_code_write_dialog() {
        let approval = parse(&claude(), &recorded("permission_write")).unwrap();
        assert_eq!(approval.tool, "Create file");
        assert_eq!(approval.detail, "notes.txt");
        assert_eq!(
            approval.question.as_deref(),
            Some("Do you want to create notes.txt?")
        );
        assert_eq!(
            approval.preview.as_deref(),
            Some("1 first line\n2 second line")
        );
        assert_eq!(
            labels(&approval),
            [
                ("1", "Yes", ChoiceKind::Allow),
                (
                    "2",
                    "Yes, and switch to accept edits (auto-approve file edits and common file commands) for this session (shift+tab)",
                    ChoiceKind::Always
                ),
                ("3", "No", ChoiceKind::Deny),
            ]
        );
        assert_eq!(approval.id.len(), 16);
    }

    #[test]
    fn claude_code_edit_dialog_shows_its_diff() {
        let approval = parse(&claude(), &recorded("permission_edit")).unwrap();
        assert_eq!(approval.tool, "Edit file");
        assert_eq!(approval.detail, "notes.txt");
        assert_eq!(
            approval.preview.as_deref(),
            Some("1  first line\n2 -second line\n2 +a changed line")
        );
        assert_eq!(approval.choices.len(), 3);
        assert_eq!(approval.choices[2].kind, ChoiceKind::Deny);
    }

    #[test]
    fn claude_code_bash_dialog_names_the_command() {
        let approval = parse(&claude(), &recorded("needs_permission")).unwrap();
        assert_eq!(approval.tool, "Bash command");
        assert_eq!(approval.detail, "touch pocketdev-notes.txt");
        assert_eq!(approval.preview.as_deref(), Some("Create the notes file"));
        assert_eq!(
            approval.question.as_deref(),
            Some("Do you want to proceed?")
        );
        assert_eq!(
            labels(&approval)[1],
            (
                "2",
                "Yes, and always allow access to /var/lib/pocketdev/users/2/workspace from this project",
                ChoiceKind::Always
            )
        );
    }

    #[test]
    fn screens_without_a_dialog_at_the_bottom_have_none() {
        for name in ["waiting", "working", "interrupted"] {
            assert_eq!(parse(&claude(), &recorded(name)), None, "{name}");
        }
        // A dialog answered a moment ago, still in the scrollback above the prompt.
        let answered = format!("{}\nchose 1\n❯ \n", recorded("permission_write"));
        assert_eq!(parse(&claude(), &answered), None);
        assert_eq!(parse(&claude(), ""), None);
    }

    #[test]
    fn the_id_is_the_dialogs_words_not_their_layout() {
        let screen = recorded("permission_edit");
        let approval = parse(&claude(), &screen).unwrap();
        let narrower = screen.replace(
            "   2. Yes, and switch to accept edits (auto-approve file edits and common file commands) for this session (shift+tab)",
            "   2. Yes, and switch to accept edits (auto-approve file edits and\n      common file commands) for this session (shift+tab)",
        );
        let rewrapped = parse(&claude(), &narrower).unwrap();
        assert_eq!(
            rewrapped.id, approval.id,
            "a wrapped label is the same dialog"
        );
        assert_eq!(rewrapped.choices[1].label, approval.choices[1].label);
        let other = parse(&claude(), &screen.replace("a changed line", "another line")).unwrap();
        assert_ne!(other.id, approval.id, "another edit is another question");
        let selected_moved = screen
            .replace(" ❯ 1. Yes", "   1. Yes")
            .replace("   3. No", " ❯ 3. No");
        assert_eq!(
            parse(&claude(), &selected_moved).unwrap().id,
            approval.id,
            "moving the highlight does not change the question"
        );
    }

    /// Another agent's dialog, described by a table in its profile.
    #[test]
    fn a_table_describes_another_agents_dialog() {
        let table: ApprovalRules = toml::from_str(
            r#"
            start = '^Would you like to'
            start_is_title = true
            separator = ''
            question = ''
            choice = '^(?:›\s*)?(?P<key>[1-9])\.\s+(?P<label>.+?)(?:\s+\((?:y|a|esc)\))?$'
            selected = '^›'
            end = '^Press enter to confirm'
            deny = '^No'
            keys = "arrows"
            pause_ms = 0
            "#,
        )
        .unwrap();
        let rules = Rules::compile(&table).unwrap();
        let screen = "\n  Would you like to run the following command?\n\n  $ cargo test --workspace\n\n› 1. Yes, proceed (y)\n  2. Yes, and don't ask again for this command (a)\n  3. No, and tell Codex what to do differently (esc)\n\n  Press enter to confirm or esc to cancel\n";
        let approval = parse(&rules, screen).unwrap();
        assert_eq!(
            approval.tool,
            "Would you like to run the following command?"
        );
        assert_eq!(approval.detail, "$ cargo test --workspace");
        assert_eq!(approval.question, None);
        assert_eq!(
            labels(&approval),
            [
                ("1", "Yes, proceed", ChoiceKind::Allow),
                (
                    "2",
                    "Yes, and don't ask again for this command",
                    ChoiceKind::Always
                ),
                (
                    "3",
                    "No, and tell Codex what to do differently",
                    ChoiceKind::Deny
                ),
            ]
        );
        assert_eq!(approval.selected, Some(0));
        assert_eq!(
            parse(&claude(), screen),
            None,
            "Claude Code's rules do not match it"
        );
    }

    #[test]
    fn only_letters_and_digits_are_keys() {
        let rules = Rules::compile(&ApprovalRules {
            choice: r"^\[(?P<key>[^\]]+)\] (?P<label>.+)$".into(),
            ..ApprovalRules::default()
        })
        .unwrap();
        let screen = |keys: [&str; 2]| {
            format!(
                "────────\n Bash command\n ls\n Do you want to proceed?\n [{}] Yes\n [{}] No\n Esc to cancel\n",
                keys[0], keys[1]
            )
        };
        assert!(parse(&rules, &screen(["y", "n"])).is_some());
        assert_eq!(parse(&rules, &screen(["y", "C-c"])), None, "a key's name");
        assert_eq!(
            parse(&rules, &screen(["y", "y"])),
            None,
            "the same key twice"
        );
    }

    #[test]
    fn bad_tables_are_refused_with_the_key_at_fault() {
        let missing_group = ApprovalRules {
            choice: r"^(\d)\. (.+)$".into(),
            ..ApprovalRules::default()
        };
        assert!(
            Rules::compile(&missing_group)
                .unwrap_err()
                .contains("(?P<key>")
        );
        let broken = ApprovalRules {
            start: "(".into(),
            ..ApprovalRules::default()
        };
        assert!(
            Rules::compile(&broken)
                .unwrap_err()
                .starts_with("approval.start")
        );
    }

    #[test]
    fn a_permission_hook_names_only_the_dialog_it_matches() {
        let registry = Registry::new(&Default::default()).unwrap();
        let approval = parse(&claude(), &recorded("permission_write")).unwrap();
        assert_eq!(registry.hooked_tool("i1", &approval), None);
        registry.hooked.lock().insert(
            "i1".into(),
            (
                "Write".into(),
                vec!["/w/notes.txt".into(), "first line\n".into()],
                Instant::now(),
            ),
        );
        assert_eq!(
            registry.hooked_tool("i1", &approval).as_deref(),
            Some("Write")
        );
        let bash = parse(&claude(), &recorded("needs_permission")).unwrap();
        assert_eq!(registry.hooked_tool("i1", &bash), None, "another question");
        assert_eq!(
            registry.hooked_tool("i2", &approval),
            None,
            "another instance"
        );
    }

    #[test]
    fn ids_are_checked_before_anything() {
        assert!(check_ids("0123456789abcdef", "1").is_ok());
        for (approval, choice) in [
            ("0123", "1"),
            ("0123456789abcdeg", "1"),
            ("0123456789abcdef", ""),
            ("0123456789abcdef", "1; rm"),
            ("0123456789abcdef", "123456789"),
        ] {
            assert!(check_ids(approval, choice).is_err(), "{approval} {choice}");
        }
    }
}
