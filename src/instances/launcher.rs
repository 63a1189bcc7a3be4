//! `pocketdev launch`: the first program in an agent's tmux pane. It reads the agent's
//! environment (secrets included) from a 0600 file, deletes the file, and execs the agent, so
//! no secret ever appears in a command line that `ps` shows.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;

use anyhow::Context;

/// Variables the pane itself provides and the agent keeps.
const FROM_PANE: &[&str] = &["TERM", "COLORTERM", "TMUX", "TMUX_PANE"];

/// Replaces this process with `argv`, confined by Landlock when `sandbox` says so; returns
/// only on failure.
pub fn exec(
    env_file: &Path,
    argv: &[String],
    sandbox: Option<&crate::isolation::sandbox::Allowed>,
    cgroup: Option<&str>,
) -> anyhow::Error {
    if let Some(group) = cgroup
        && let Err(err) = wait_to_be_in(group)
    {
        return err;
    }
    let prepared = prepare(env_file, argv).and_then(|command| {
        if let Some(allowed) = sandbox {
            crate::isolation::sandbox::confine(allowed)?;
        }
        Ok(command)
    });
    match prepared {
        Ok(mut command) => {
            let err = command.exec();
            anyhow::anyhow!("cannot start `{}`: {err}", argv[0])
        }
        Err(err) => err,
    }
}

/// Waits (at most 10 s) until pocketdev has moved this process into `group`, before anything of
/// the agent runs.
#[allow(clippy::disallowed_methods)] // before exec: there is no async runtime here
fn wait_to_be_in(group: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let inside = std::fs::read_to_string("/proc/self/cgroup")
            .is_ok_and(|text| text.lines().any(|l| l.strip_prefix("0::") == Some(group)));
        if inside {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "pocketdev did not place the agent in its cgroup {group}; not starting it"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[allow(clippy::disallowed_methods)] // exec replaces this process: there is no async runtime here
fn prepare(env_file: &Path, argv: &[String]) -> anyhow::Result<std::process::Command> {
    let text = std::fs::read_to_string(env_file)
        .with_context(|| format!("cannot read {}", env_file.display()));
    let _ = std::fs::remove_file(env_file);
    let env: BTreeMap<String, String> =
        serde_json::from_str(&text?).context("the environment file is not valid")?;
    let program = argv.first().context("no command to run")?;
    let mut command = std::process::Command::new(program);
    command.args(&argv[1..]).env_clear();
    for name in FROM_PANE {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(env);
    Ok(command)
}
