//! The launch plan: what an agent's start runs, worked out without touching anything. From the
//! instance, its owner, the profile, the secrets and the paths found beforehand, it yields the
//! environment (secrets go there, never into arguments), the launcher's argument list, the
//! working folder and where the environment file goes. `lifecycle` does the IO around it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::instances::hooks;
use crate::instances::profiles::{Profile, with_session};

/// The launcher program agents start through, and where they report hook events.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// `pocketdev` itself, where accounts can run it.
    pub program: PathBuf,
    /// Where agents report hook events: `http://<loopback>:<port><base>`.
    pub hook_base: String,
}

impl Launcher {
    /// The command Claude Code's hooks run.
    pub fn hook_command(&self) -> String {
        format!("'{}' hook", self.program.display())
    }
}

/// Which conversation the agent continues, for agents that keep them (Claude Code, or any
/// profile with `session_args` / `resume_args`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// Start the conversation with this id.
    New(String),
    /// Resume the conversation with this id (or, for agents that name their own, the last).
    Resume(Option<String>),
    /// The agent keeps no conversation pocketdev knows of.
    None,
}

impl Conversation {
    /// The conversation a start continues: the instance's, resumed once it exists (Claude
    /// Code: its transcript was saved; others: the agent ran before).
    pub fn of(profile: &Profile, session: Option<&str>, exists: bool) -> Self {
        match session {
            Some(id) if profile.names_its_session() => {
                if exists && profile.can_resume() {
                    Self::Resume(Some(id.to_owned()))
                } else {
                    Self::New(id.to_owned())
                }
            }
            _ if exists && profile.can_resume() && !profile.names_its_session() => {
                Self::Resume(None)
            }
            _ => Self::None,
        }
    }

    /// The agent's arguments for it, from its profile's recipe.
    fn args(&self, profile: &Profile) -> Vec<String> {
        let recipe = match self {
            Self::New(_) => profile.session_args(),
            Self::Resume(_) => profile.resume_args(),
            Self::None => None,
        };
        let id = match self {
            Self::New(id) | Self::Resume(Some(id)) => id.as_str(),
            Self::Resume(None) | Self::None => "",
        };
        recipe.map_or_else(Vec::new, |args| with_session(&args, id))
    }
}

/// Where the agent's files are, as its own processes see them.
#[derive(Debug, Clone)]
pub struct Paths<'a> {
    /// The account's home (the agent's HOME).
    pub home: &'a Path,
    /// The account's workspace.
    pub workspace: &'a Path,
    /// The folder the agent starts in, already resolved inside the workspace.
    pub cwd: &'a Path,
    /// The server's own folder for environment files (used without isolation).
    pub server_run_dir: &'a Path,
}

/// Everything a start depends on, found beforehand.
#[derive(Debug, Clone)]
pub struct LaunchInput<'a> {
    pub instance_id: &'a str,
    pub username: &'a str,
    pub profile: &'a Profile,
    /// The user's secrets by name, opened.
    pub secrets: &'a BTreeMap<String, String>,
    pub launcher: &'a Launcher,
    /// The agent's program, resolved on `search_path`.
    pub command: &'a Path,
    /// The agent's PATH.
    pub search_path: &'a str,
    pub paths: Paths<'a>,
    /// Whether the agent runs as the account's own Unix user.
    pub isolated: bool,
    /// The instance's cgroup as the launcher names it, when it gets one.
    pub cgroup: Option<&'a str>,
    /// With Landlock: the root of the agent's program, which it may read.
    pub landlock_program_root: Option<&'a Path>,
    pub conversation: Conversation,
    /// This start's hook token (its hash is what the server keeps).
    pub hook_token: &'a str,
}

/// What to run: the launcher with `argv` in `cwd`, reading `env` from `env_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    pub env: BTreeMap<String, String>,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// Written before the start; the launcher reads and deletes it.
    pub env_file: PathBuf,
}

/// The plan for one start; no IO.
pub fn plan(input: &LaunchInput<'_>) -> LaunchPlan {
    let LaunchInput {
        instance_id,
        profile,
        launcher,
        paths,
        ..
    } = input;
    let home = paths.home;
    let mut env: BTreeMap<String, String> = BTreeMap::from([
        ("HOME".into(), home.to_string_lossy().into_owned()),
        ("USER".into(), input.username.to_owned()),
        ("LOGNAME".into(), input.username.to_owned()),
        ("SHELL".into(), "/bin/bash".into()),
        ("PATH".into(), input.search_path.to_owned()),
        ("LANG".into(), "C.UTF-8".into()),
        ("POCKETDEV_INSTANCE".into(), (*instance_id).to_owned()),
        (
            hooks::URL_ENV.into(),
            format!("{}api/instances/{instance_id}/hooks", launcher.hook_base),
        ),
    ]);
    if input.isolated {
        // The account's own temporary folder: /tmp is shared by every account.
        env.insert(
            "TMPDIR".into(),
            home.join("tmp").to_string_lossy().into_owned(),
        );
    }
    env.extend(profile.env.clone());
    for (var, secret) in profile.secrets.iter().chain(&profile.optional_secrets) {
        if let Some(value) = input.secrets.get(secret) {
            env.insert(var.clone(), value.clone());
        }
    }
    // A fresh hook token per start: a report counts only with the current one.
    env.insert(hooks::TOKEN_ENV.into(), input.hook_token.to_owned());

    // The launcher reads and deletes it. An isolated account's launcher runs as the account,
    // so its file is in the account's home (written there as the account).
    let env_file = if input.isolated {
        home.join(".pocketdev").join("run")
    } else {
        paths.server_run_dir.to_path_buf()
    }
    .join(format!("{instance_id}.env"));

    let mut argv = vec![
        launcher.program.to_string_lossy().into_owned(),
        "launch".into(),
        "--env-file".into(),
        env_file.to_string_lossy().into_owned(),
    ];
    // A group of its own, so that everything the agent starts goes with it at a stop.
    if let Some(cgroup) = input.cgroup {
        argv.extend(["--cgroup".into(), cgroup.to_owned()]);
    }
    if let Some(program_root) = input.landlock_program_root {
        let launcher_dir = launcher.program.parent().unwrap_or(Path::new("/"));
        let allowed = crate::isolation::sandbox::Allowed {
            write: vec![paths.workspace.to_path_buf(), home.to_path_buf()],
            read: vec![program_root.to_path_buf(), launcher_dir.to_path_buf()],
        };
        argv.extend(allowed.to_args());
    }
    argv.extend(["--".into(), input.command.to_string_lossy().into_owned()]);
    argv.extend(profile.args.iter().cloned());
    argv.extend(input.conversation.args(profile));
    LaunchPlan {
        env,
        argv,
        cwd: paths.cwd.to_path_buf(),
        env_file,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instances::profiles::ProfileKind;

    struct Fixture {
        profile: Profile,
        secrets: BTreeMap<String, String>,
        launcher: Launcher,
    }

    fn fixture(kind: ProfileKind) -> Fixture {
        Fixture {
            profile: Profile {
                name: "Agent".into(),
                kind,
                command: "agent".into(),
                args: vec!["--flag".into()],
                env: BTreeMap::from([("PROFILE_VAR".into(), "1".into())]),
                secrets: BTreeMap::from([("API_KEY".into(), "key".into())]),
                optional_secrets: BTreeMap::from([("EXTRA".into(), "extra".into())]),
                ..Profile::default()
            },
            secrets: BTreeMap::from([("key".into(), "s3cret-value".into())]),
            launcher: Launcher {
                program: "/opt/pd/bin/pocketdev".into(),
                hook_base: "http://127.0.0.1:8080/".into(),
            },
        }
    }

    fn input(f: &Fixture) -> LaunchInput<'_> {
        LaunchInput {
            instance_id: "abc234",
            username: "alice",
            profile: &f.profile,
            secrets: &f.secrets,
            launcher: &f.launcher,
            command: Path::new("/usr/bin/agent"),
            search_path: "/usr/bin:/bin",
            paths: Paths {
                home: Path::new("/home/alice"),
                workspace: Path::new("/ws/alice"),
                cwd: Path::new("/ws/alice/project"),
                server_run_dir: Path::new("/srv/pd/run"),
            },
            isolated: false,
            cgroup: None,
            landlock_program_root: None,
            conversation: Conversation::None,
            hook_token: "hook-token",
        }
    }

    #[test]
    fn secrets_go_into_the_environment_never_the_arguments() {
        let f = fixture(ProfileKind::Generic);
        let plan = plan(&input(&f));
        assert_eq!(plan.env["API_KEY"], "s3cret-value");
        assert!(
            !plan.env.contains_key("EXTRA"),
            "an optional secret that is not set is left out"
        );
        assert_eq!(plan.env["PROFILE_VAR"], "1");
        assert_eq!(plan.env[hooks::TOKEN_ENV], "hook-token");
        assert_eq!(
            plan.env[hooks::URL_ENV],
            "http://127.0.0.1:8080/api/instances/abc234/hooks"
        );
        for arg in &plan.argv {
            assert!(
                !arg.contains("s3cret") && !arg.contains("hook-token"),
                "{arg}"
            );
        }
    }

    #[test]
    fn the_launcher_runs_the_agent_with_its_arguments() {
        let f = fixture(ProfileKind::Generic);
        let plan = plan(&input(&f));
        assert_eq!(
            plan.argv,
            [
                "/opt/pd/bin/pocketdev",
                "launch",
                "--env-file",
                "/srv/pd/run/abc234.env",
                "--",
                "/usr/bin/agent",
                "--flag",
            ]
        );
        assert_eq!(plan.env_file, Path::new("/srv/pd/run/abc234.env"));
        assert_eq!(plan.cwd, Path::new("/ws/alice/project"));
        assert_eq!(plan.env["HOME"], "/home/alice");
        assert_eq!(plan.env["USER"], "alice");
    }

    #[test]
    fn tmpdir_and_the_env_file_are_the_accounts_only_when_isolated() {
        let f = fixture(ProfileKind::Generic);
        let shared = plan(&input(&f));
        assert!(!shared.env.contains_key("TMPDIR"));
        let isolated = plan(&LaunchInput {
            isolated: true,
            ..input(&f)
        });
        assert_eq!(isolated.env["TMPDIR"], "/home/alice/tmp");
        assert_eq!(
            isolated.env_file,
            Path::new("/home/alice/.pocketdev/run/abc234.env")
        );
        assert_eq!(isolated.argv[3], "/home/alice/.pocketdev/run/abc234.env");
    }

    #[test]
    fn claude_conversations_are_started_or_resumed() {
        let f = fixture(ProfileKind::Claude);
        let session = "0b0e1b36-3f4a-4d55-9c8e-2f5d0a6c9b11";
        let conversation = Conversation::of(&f.profile, Some(session), false);
        let fresh = plan(&LaunchInput {
            conversation,
            ..input(&f)
        });
        assert_eq!(
            fresh.argv[fresh.argv.len() - 2..],
            ["--session-id", session]
        );
        let conversation = Conversation::of(&f.profile, Some(session), true);
        let resumed = plan(&LaunchInput {
            conversation,
            ..input(&f)
        });
        assert_eq!(
            resumed.argv[resumed.argv.len() - 2..],
            ["--resume", session]
        );
        let generic = fixture(ProfileKind::Generic);
        assert_eq!(
            Conversation::of(&generic.profile, Some(session), true),
            Conversation::None,
            "other agents keep no conversation without a recipe"
        );
        assert_eq!(Conversation::of(&f.profile, None, true), Conversation::None);
    }

    #[test]
    fn a_profiles_recipe_says_how_its_agent_resumes() {
        let mut f = fixture(ProfileKind::Generic);
        f.profile.session_args = Some(vec!["--new".into(), "id={session}".into()]);
        f.profile.resume_args = Some(vec!["resume".into(), "{session}".into()]);
        fn tail(f: &Fixture, conversation: Conversation) -> Vec<String> {
            let plan = plan(&LaunchInput {
                conversation,
                ..input(f)
            });
            plan.argv[plan.argv.len() - 2..].to_vec()
        }
        assert_eq!(
            tail(&f, Conversation::of(&f.profile, Some("s1"), false)),
            ["--new", "id=s1"]
        );
        assert_eq!(
            tail(&f, Conversation::of(&f.profile, Some("s1"), true)),
            ["resume", "s1"]
        );
        // An agent that names its own conversations resumes its last one.
        f.profile.session_args = None;
        f.profile.resume_args = Some(vec!["resume".into(), "--last".into()]);
        assert_eq!(
            Conversation::of(&f.profile, None, true),
            Conversation::Resume(None)
        );
        assert_eq!(tail(&f, Conversation::Resume(None)), ["resume", "--last"]);
        assert_eq!(
            Conversation::of(&f.profile, None, false),
            Conversation::None
        );
    }

    #[test]
    fn cgroup_and_landlock_arguments_come_before_the_agent() {
        let f = fixture(ProfileKind::Generic);
        let plan = plan(&LaunchInput {
            cgroup: Some("/pocketdev/u7/abc234"),
            landlock_program_root: Some(Path::new("/usr/lib/agent")),
            ..input(&f)
        });
        let separator = plan.argv.iter().position(|a| a == "--").unwrap();
        let launcher_args = &plan.argv[4..separator];
        assert_eq!(
            launcher_args,
            [
                "--cgroup",
                "/pocketdev/u7/abc234",
                "--landlock",
                "--write",
                "/ws/alice",
                "--write",
                "/home/alice",
                "--read",
                "/usr/lib/agent",
                "--read",
                "/opt/pd/bin",
            ]
        );
    }
}
