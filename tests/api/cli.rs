//! The `pocketdev` command itself: serve, user management, doctor, config.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::helpers::{expect_error, spawn_app_with};

/// A temporary folder for one test's data dir; its accounts' Unix users go with it.
struct CliDir {
    tmp: tempfile::TempDir,
}

impl CliDir {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        // Isolated accounts (the tests run as root in CI) must reach their folders.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        Self { tmp }
    }

    fn path(&self) -> &std::path::Path {
        self.tmp.path()
    }
}

impl Drop for CliDir {
    fn drop(&mut self) {
        crate::helpers::remove_test_accounts(&user_prefix(&self.tmp.path().join("data")));
    }
}

/// The Unix user prefix of the servers started on `data_dir`: the same for every command of a
/// test, unique between tests (`pdt<pid>x<n>-`, which the sweeper understands).
fn user_prefix(data_dir: &std::path::Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    format!("pdt{}x{}-", std::process::id(), hasher.finish() % 100_000)
}

fn pocketdev(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pocketdev"));
    let prefix = user_prefix(data_dir);
    command
        .env("POCKETDEV_DATA_DIR", data_dir)
        .env(
            "POCKETDEV_ISOLATION__RUN_DIR",
            data_dir.parent().unwrap().join("run"),
        )
        .env(
            "POCKETDEV_ISOLATION__CGROUP",
            crate::helpers::test_cgroup(&prefix),
        )
        .env("POCKETDEV_ISOLATION__USER_PREFIX", prefix)
        .env_remove("POCKETDEV_CONFIG")
        .current_dir(data_dir.parent().unwrap());
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn run(mut command: Command, stdin: Option<&str>) -> Output {
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .await
            .unwrap();
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("finishes")
        .unwrap();
    Output {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `pocketdev serve` process on a random port; returns it with its URL and, on a first
/// start, the admin password from the file it names (standard output is not a terminal, so
/// the password itself is never printed: it would land in a journal).
async fn start_server(
    data: &std::path::Path,
    env: &[(&str, String)],
) -> (tokio::process::Child, String, Option<String>) {
    let mut command = pocketdev(data);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut password) = (None, None);
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("output in time")
            .unwrap()
            .expect("a line");
        if let Some(rest) = line.trim().strip_prefix("pocketdev is running at ") {
            url = Some(rest.to_owned());
        }
        assert!(
            !line.contains("password: "),
            "a password printed to a pipe: {line}"
        );
        if let Some((_, rest)) = line.split_once("its password is in ") {
            let file = rest.split(" (").next().unwrap();
            let saved = std::fs::read_to_string(file).unwrap();
            password = saved
                .lines()
                .find_map(|l| l.strip_prefix("password: "))
                .map(str::to_owned);
        }
        // The banner ends with an empty line.
        if url.is_some() && line.trim().is_empty() {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url.unwrap(), password)
}

#[tokio::test]
async fn serve_prints_the_url_and_a_working_admin_password_then_stops_on_sigterm() {
    let tmp = CliDir::new();
    let data = tmp.path().join("data");
    let (mut child, url, password) = start_server(&data, &[]).await;
    let response = reqwest::Client::new()
        .post(format!("{url}api/auth/login"))
        .json(&serde_json::json!({ "username": "admin", "password": password.expect("printed password") }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the printed password signs in"
    );

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[tokio::test]
async fn kill_9_of_the_server_loses_no_agent_and_no_record() {
    let tmp = CliDir::new();
    let data = tmp.path().join("data");
    let env = [
        ("POCKETDEV_PROFILES__FAKE__NAME", "Fake agent".to_owned()),
        (
            "POCKETDEV_PROFILES__FAKE__COMMAND",
            crate::helpers::fake_agent_path().display().to_string(),
        ),
        ("POCKETDEV_PROFILES__FAKE__MEMORY_MB", "10".to_owned()),
    ];
    let (mut first, url, password) = start_server(&data, &env).await;
    let client = reqwest::Client::new();
    let login = serde_json::json!({ "username": "admin", "password": password.unwrap() });
    let session: serde_json::Value = client
        .post(format!("{url}api/auth/login"))
        .json(&login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for profile in ["fake", "shell"] {
        let created: serde_json::Value = client
            .post(format!("{url}api/instances"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "profile": profile }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(created["state"], "running", "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    client
        .post(format!("{url}api/instances/{}/command", ids[0]))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "text": "before the crash" }))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    first.start_kill().unwrap(); // SIGKILL: no shutdown code runs
    first.wait().await.unwrap();

    let (mut second, url, _) = start_server(&data, &env).await;
    for id in &ids {
        let instance: serde_json::Value = client
            .get(format!("{url}api/instances/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(instance["state"], "running", "{id} survived: {instance}");
    }
    let output: serde_json::Value = client
        .get(format!("{url}api/instances/{}/output", ids[0]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        output["output"]
            .as_str()
            .unwrap()
            .contains("you said: before the crash"),
        "{output}"
    );
    second.start_kill().unwrap();
    second.wait().await.unwrap();
    crate::helpers::kill_tmux_server(&data.canonicalize().unwrap().join("server/tmux.sock"));
}

#[tokio::test]
async fn user_commands_manage_accounts_the_server_sees() {
    let tmp = CliDir::new();
    let data = tmp.path().join("data");

    let mut add = pocketdev(&data);
    add.args(["user", "add", "Olga", "--admin", "--password-stdin"]);
    let out = run(add, Some("olga-password-1\n")).await;
    assert!(out.ok, "user add: {}", out.stderr);
    assert!(
        out.stdout.contains("created admin `olga`"),
        "{}",
        out.stdout
    );

    let mut add = pocketdev(&data);
    add.args(["user", "add", "pete"]);
    let out = run(add, None).await;
    assert!(out.ok, "{}", out.stderr);
    let pete_password = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("generated password")
        .to_owned();

    let mut dup = pocketdev(&data);
    dup.args(["user", "add", "pete"]);
    let out = run(dup, None).await;
    assert!(
        !out.ok && out.stderr.contains("taken"),
        "duplicate: {}",
        out.stderr
    );

    let mut bad = pocketdev(&data);
    bad.args(["user", "add", "../x"]);
    assert!(!run(bad, None).await.ok, "invalid names are refused");

    let mut list = pocketdev(&data);
    list.args(["user", "list"]);
    let out = run(list, None).await;
    assert!(
        out.stdout.contains("olga") && out.stdout.contains("pete"),
        "{}",
        out.stdout
    );

    // An admin made by `user add` means the server creates no `admin` of its own.
    let app = spawn_app_with(|c| c.data_dir = data.clone()).await;
    assert!(
        app.admin_password.is_empty(),
        "no first admin when one exists"
    );
    assert_eq!(
        app.login("olga", "olga-password-1").await.status(),
        StatusCode::OK
    );
    let pete = app.sign_in("pete", &pete_password).await;

    let mut passwd = pocketdev(&data);
    passwd.args(["user", "passwd", "pete", "--password-stdin"]);
    assert!(run(passwd, Some("pete-password-2\n")).await.ok);
    expect_error(
        app.get("/api/auth/me", pete["access_token"].as_str()).await,
        StatusCode::UNAUTHORIZED,
        "signed out",
    )
    .await;
    assert_eq!(
        app.login("pete", "pete-password-2").await.status(),
        StatusCode::OK
    );

    let mut disable = pocketdev(&data);
    disable.args(["user", "disable", "pete"]);
    assert!(run(disable, None).await.ok);
    expect_error(
        app.login("pete", "pete-password-2").await,
        StatusCode::FORBIDDEN,
        "disabled by the CLI",
    )
    .await;
}

#[tokio::test]
async fn doctor_reports_one_line_per_check() {
    let tmp = CliDir::new();
    let data = tmp.path().join("data");
    let mut doctor = pocketdev(&data);
    doctor.arg("doctor");
    let out = run(doctor, None).await;
    // A host that does not protect links (some CI machines) fails isolation's kernel check,
    // and nothing else.
    let failures: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    let links_protected = ["protected_symlinks", "protected_hardlinks"]
        .iter()
        .all(|s| {
            std::fs::read_to_string(format!("/proc/sys/fs/{s}")).is_ok_and(|v| v.trim() != "0")
        });
    assert!(
        out.ok || (!links_protected && failures.iter().all(|l| l.contains("fs.protected_"))),
        "doctor passes where tmux is installed: {}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("tmux")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("not created yet"),
        "fresh data dir: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("claude"),
        "agent CLIs are listed: {}",
        out.stdout
    );

    let mut doctor = pocketdev(&data);
    doctor.arg("doctor").env("PATH", "/nonexistent");
    let out = run(doctor, None).await;
    assert!(!out.ok, "a missing tmux fails the doctor");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("tmux")),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn config_prints_effective_values_with_secrets_masked() {
    let tmp = CliDir::new();
    let data = tmp.path().join("data");
    let file = tmp.path().join("custom.toml");
    std::fs::write(&file, "[limits]\nmax_per_user = 3\n").unwrap();
    let mut config = pocketdev(&data);
    config
        .args(["config", "--config"])
        .arg(&file)
        .env(
            "POCKETDEV_AUTH__JWT_SECRET",
            "super-secret-value-that-must-stay-hidden",
        )
        .env("POCKETDEV_LIMITS__MAX_TOTAL", "7");
    let out = run(config, None).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("max_per_user = 3") && out.stdout.contains("max_total = 7"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("super-secret"),
        "secret leaked: {}",
        out.stdout
    );
    assert!(out.stdout.contains("********"));

    std::fs::write(&file, "[limits]\nmax_per_usr = 3\n").unwrap();
    let mut bad = pocketdev(&data);
    bad.args(["config", "--config"]).arg(&file);
    let out = run(bad, None).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("max_per_usr") && out.stderr.contains("custom.toml"),
        "{}",
        out.stderr
    );

    let mut missing = pocketdev(&data);
    missing.args(["serve", "--config", "/nonexistent/pocketdev.toml"]);
    let out = run(missing, None).await;
    assert!(
        !out.ok && out.stderr.contains("does not exist"),
        "{}",
        out.stderr
    );
}
