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
            enabled: true,
            approval: None,
            usage: None,
        }
    }
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
