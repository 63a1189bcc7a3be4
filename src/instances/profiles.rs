//! Agent profiles: what command an instance runs, with which environment and secrets.
//!
//! The built-in profiles mirror the seed system; an admin adds others (Codex, Gemini CLI, Aider…)
//! under `[profiles.<id>]` in the configuration file, without code changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// Claude Code: pocketdev answers its first-run screens and keeps its conversation id.
    Claude,
    /// Any other terminal program.
    #[default]
    Generic,
}

/// What happens to an agent left idle for its idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdlePolicy {
    /// Its process goes and its conversation is resumed on the next tap (profiles that can
    /// resume; others are stopped).
    Suspend,
    /// It is stopped.
    Stop,
    /// It is left running.
    Off,
}

/// Stands for the agent's conversation id in `session_args` and `resume_args`.
pub const SESSION_PLACEHOLDER: &str = "{session}";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Display name.
    pub name: String,
    pub kind: ProfileKind,
    /// Program to run: a name looked up on PATH, or an absolute path.
    pub command: String,
    pub args: Vec<String>,
    /// Environment set for the agent (never secrets: those come from `secrets`).
    pub env: BTreeMap<String, String>,
    /// Environment variable → name of the user's secret that must be set for this profile.
    pub secrets: BTreeMap<String, String>,
    /// Like `secrets`, but the profile also works without them.
    pub optional_secrets: BTreeMap<String, String>,
    /// Memory the agent is expected to use, for admission before it runs.
    pub memory_mb: u64,
    /// Overrides `limits.idle_timeout_minutes` for this profile; 0 disables.
    pub idle_timeout_minutes: Option<f64>,
    /// What an idle timeout does: `suspend` (the default where the agent can resume), `stop`
    /// (the default otherwise) or `off`.
    pub idle_policy: Option<IdlePolicy>,
    /// Arguments, after `args`, that start a new conversation under an id pocketdev chooses
    /// (`{session}` stands for it). Claude profiles: `--session-id {session}`.
    pub session_args: Option<Vec<String>>,
    /// Arguments, after `args`, that resume the agent's conversation (`{session}` stands for
    /// its id). Claude profiles: `--resume {session}`. Without them an agent cannot be
    /// suspended: it is stopped instead.
    pub resume_args: Option<Vec<String>>,
    /// Whether agents that were running when the server went down are resumed when it starts
    /// again (default: on where the agent can resume).
    pub resume_on_boot: Option<bool>,
    pub enabled: bool,
    /// How the agent's permission dialogs look, for one-tap approvals; Claude profiles have
    /// Claude Code's rules without it, others none.
    pub approval: Option<super::approvals::ApprovalRules>,
    /// How the agent's token usage is read: Claude Code's transcripts for `kind = "claude"`,
    /// not at all for others, unless set (`reader = "jsonl"` with files and JSON pointers).
    pub usage: Option<crate::usage::UsageSource>,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: ProfileKind::Generic,
            command: String::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            optional_secrets: BTreeMap::new(),
            memory_mb: 500,
            idle_timeout_minutes: None,
            idle_policy: None,
            session_args: None,
            resume_args: None,
            resume_on_boot: None,
            enabled: true,
            approval: None,
            usage: None,
        }
    }
}

impl Profile {
    /// Arguments for a new conversation under `session`, if the profile names one.
    pub fn session_args(&self) -> Option<Vec<String>> {
        let args = match (&self.session_args, self.kind) {
            (Some(args), _) => args.clone(),
            (None, ProfileKind::Claude) => vec!["--session-id".into(), SESSION_PLACEHOLDER.into()],
            (None, ProfileKind::Generic) => return None,
        };
        Some(args)
    }

    /// Arguments that resume a conversation, if the agent can.
    pub fn resume_args(&self) -> Option<Vec<String>> {
        match (&self.resume_args, self.kind) {
            (Some(args), _) => Some(args.clone()),
            (None, ProfileKind::Claude) => {
                Some(vec!["--resume".into(), SESSION_PLACEHOLDER.into()])
            }
            (None, ProfileKind::Generic) => None,
        }
    }

    /// Whether pocketdev chooses the agent's conversation id (its arguments name it).
    pub fn names_its_session(&self) -> bool {
        let names = |args: Option<Vec<String>>| {
            args.is_some_and(|a| a.iter().any(|x| x.contains(SESSION_PLACEHOLDER)))
        };
        names(self.session_args()) || names(self.resume_args())
    }

    pub fn can_resume(&self) -> bool {
        self.resume_args().is_some()
    }

    /// The idle policy in force: `suspend` needs a way to resume.
    pub fn idle_policy(&self) -> IdlePolicy {
        match self.idle_policy {
            Some(IdlePolicy::Suspend) | None if self.can_resume() => IdlePolicy::Suspend,
            Some(IdlePolicy::Suspend) | None => IdlePolicy::Stop,
            Some(policy) => policy,
        }
    }

    pub fn resume_on_boot(&self) -> bool {
        self.can_resume() && self.resume_on_boot.unwrap_or(true)
    }
}

/// `args` with `{session}` replaced by the conversation id.
pub fn with_session(args: &[String], session: &str) -> Vec<String> {
    args.iter()
        .map(|a| a.replace(SESSION_PLACEHOLDER, session))
        .collect()
}

/// Environment that keeps Claude Code from updating itself (a global npm install) or phoning home.
fn claude_env() -> BTreeMap<String, String> {
    [
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_TELEMETRY", "1"),
        ("DISABLE_ERROR_REPORTING", "1"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn claude(name: &str, model: &str, memory_mb: u64) -> Profile {
    Profile {
        name: name.into(),
        kind: ProfileKind::Claude,
        command: "claude".into(),
        args: vec!["--model".into(), model.into()],
        env: claude_env(),
        // Optional: a Claude subscription login done in the terminal works too.
        optional_secrets: [(
            "ANTHROPIC_API_KEY".to_owned(),
            "ANTHROPIC_API_KEY".to_owned(),
        )]
        .into(),
        memory_mb,
        ..Profile::default()
    }
}

/// The built-in profiles, keyed by id.
pub fn defaults() -> BTreeMap<String, Profile> {
    let mut glm = claude("GLM-4.6", "glm-4.6", 700);
    glm.env.insert(
        "ANTHROPIC_BASE_URL".into(),
        "https://api.z.ai/api/anthropic".into(),
    );
    glm.env.insert("ANTHROPIC_MODEL".into(), "glm-4.6".into());
    glm.optional_secrets.clear();
    glm.secrets
        .insert("ANTHROPIC_AUTH_TOKEN".into(), "GLM_API_KEY".into());
    let shell = Profile {
        name: "Shell".into(),
        command: "bash".into(),
        args: vec!["-l".into()],
        memory_mb: 50,
        ..Profile::default()
    };
    BTreeMap::from([
        (
            "claude-sonnet-4-20250514".to_owned(),
            claude("Sonnet 4", "claude-sonnet-4-20250514", 800),
        ),
        (
            "claude-sonnet-4-5-20250929".to_owned(),
            claude("Sonnet 4.5", "claude-sonnet-4-5-20250929", 900),
        ),
        ("glm-4.6".to_owned(), glm),
        ("shell".to_owned(), shell),
    ])
}

/// The program search path agents, tmux and command lookups use: the server's, or the usual
/// system folders when it has none.
/// The folders of every configured agent's program (see `sandbox::program_root`), which an
/// account's sandbox must let its agents read and run.
pub fn program_roots(profiles: &std::collections::BTreeMap<String, Profile>) -> Vec<PathBuf> {
    let path = search_path();
    let mut roots: Vec<PathBuf> = profiles
        .values()
        .filter_map(|p| resolve_command(&p.command, &path))
        .map(|c| crate::isolation::sandbox::program_root(&c))
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

pub fn search_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
}

/// Where `command` would be found, looking on `path` when it is a bare name.
pub fn resolve_command(command: &str, path: &str) -> Option<PathBuf> {
    if command.contains('/') {
        let candidate = PathBuf::from(command);
        return is_executable(&candidate).then_some(candidate);
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(command))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_mirror_the_seed_system() {
        let profiles = defaults();
        assert_eq!(profiles["claude-sonnet-4-20250514"].memory_mb, 800);
        assert_eq!(profiles["claude-sonnet-4-5-20250929"].memory_mb, 900);
        assert_eq!(profiles["glm-4.6"].memory_mb, 700);
        assert_eq!(
            profiles["glm-4.6"].secrets["ANTHROPIC_AUTH_TOKEN"],
            "GLM_API_KEY"
        );
        assert_eq!(profiles["shell"].args, ["-l"]);
        for profile in profiles.values().filter(|p| p.kind == ProfileKind::Claude) {
            assert_eq!(
                profile.env["DISABLE_AUTOUPDATER"], "1",
                "{} never updates itself",
                profile.name
            );
        }
    }

    #[test]
    fn claude_resumes_and_others_need_a_recipe() {
        let profiles = defaults();
        let claude = &profiles["claude-sonnet-4-5-20250929"];
        assert_eq!(claude.idle_policy(), IdlePolicy::Suspend);
        assert!(claude.resume_on_boot());
        assert_eq!(
            with_session(&claude.resume_args().unwrap(), "abc"),
            ["--resume", "abc"]
        );
        let shell = &profiles["shell"];
        assert_eq!(
            shell.idle_policy(),
            IdlePolicy::Stop,
            "a shell cannot resume"
        );
        assert!(!shell.resume_on_boot() && !shell.names_its_session());
        let mut codex = shell.clone();
        codex.resume_args = Some(vec!["resume".into(), "--last".into()]);
        codex.idle_policy = Some(IdlePolicy::Suspend);
        assert_eq!(codex.idle_policy(), IdlePolicy::Suspend);
        assert!(
            !codex.names_its_session(),
            "no id of pocketdev's in its arguments"
        );
        let mut off = claude.clone();
        off.idle_policy = Some(IdlePolicy::Off);
        assert_eq!(off.idle_policy(), IdlePolicy::Off);
    }

    #[test]
    fn commands_resolve_on_path_or_absolutely() {
        assert!(resolve_command("sh", "/usr/bin:/bin").is_some());
        assert!(resolve_command("/bin/sh", "").is_some());
        assert!(resolve_command("no-such-agent-cli", "/usr/bin:/bin").is_none());
        assert!(
            resolve_command("/etc/passwd", "").is_none(),
            "not executable"
        );
    }
}
