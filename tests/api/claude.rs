//! The real Claude Code CLI in an instance, against the mock Messages API.
//!
//! `scripts/test.sh` installs the pinned CLI into `.test-tools/`; `POCKETDEV_TEST_CLAUDE` may
//! point at another binary. Without either, the test says why and does nothing else.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::spawn_app_with;
use crate::mock_anthropic::{MockAnthropic, REPLY_PREFIX};

pub(crate) const PROFILE: &str = "claude-sonnet-4-5-20250929";
const API_KEY: &str = "sk-ant-api03-pocketdev-test-key-0123456789";

pub(crate) fn claude_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("POCKETDEV_TEST_CLAUDE") {
        return Some(PathBuf::from(path));
    }
    let bundled =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-tools/node_modules/.bin/claude");
    bundled
        .exists()
        .then(|| crate::helpers::program_for_accounts(&bundled))
}

/// A server whose Sonnet profile runs `claude` against `mock`, and a signed-in user with an
/// API key set: (app, that user's token).
pub(crate) async fn app_with_claude(
    claude: &std::path::Path,
    mock: &MockAnthropic,
    customize: impl FnOnce(&mut pocketdev::Config),
) -> (crate::helpers::TestApp, String) {
    let app = spawn_app_with(|c| {
        let profile = c.profiles.get_mut(PROFILE).unwrap();
        profile.command = claude.display().to_string();
        profile
            .env
            .insert("ANTHROPIC_BASE_URL".into(), mock.url.clone());
        customize(c);
    })
    .await;
    app.create_user("cleo", "cleo-password-1").await;
    let token = app.token("cleo", "cleo-password-1").await;
    let put = app
        .call(
            Method::PUT,
            "/api/secrets/ANTHROPIC_API_KEY",
            Some(&token),
            Some(json!({ "value": API_KEY })),
        )
        .await;
    assert!(put.status().is_success());
    (app, token)
}

/// Screens Claude Code shows on a first run; none may appear.
const FIRST_RUN_SCREENS: &[&str] = &[
    "Choose the text style",
    "Do you trust",
    "one you trust",
    "Do you want to use this API key",
    "Select login method",
];

#[tokio::test]
async fn claude_code_opens_at_its_prompt_answers_and_resumes_after_restart() {
    let Some(claude) = claude_binary() else {
        eprintln!(
            "SKIPPED: the Claude Code CLI is not installed (run scripts/test.sh, which installs it into .test-tools/)"
        );
        return;
    };
    let mock = MockAnthropic::start().await;
    let (app, token) = app_with_claude(&claude, &mock, |_| {}).await;

    let instance = app
        .create_instance(&token, json!({ "profile": PROFILE }))
        .await;
    let id = instance["id"].as_str().unwrap().to_owned();
    let session = instance["agent_session_id"]
        .as_str()
        .expect("pocketdev chose the conversation id")
        .to_owned();
    let screen = app.wait_for_output(&token, &id, "? for shortcuts").await;
    for first_run in FIRST_RUN_SCREENS {
        assert!(
            !screen.contains(first_run),
            "first-run screen `{first_run}` appeared:\n{screen}"
        );
    }

    app.command(&token, &id, json!({ "text": "Say hello to pocketdev" }))
        .await;
    let screen = app.wait_for_output(&token, &id, REPLY_PREFIX).await;
    assert!(screen.contains("Say hello to pocketdev"), "{screen}");
    let requests = mock.requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.api_key.as_deref() == Some(API_KEY)),
        "the user's key is sent as x-api-key"
    );
    assert!(
        requests.iter().any(|r| r.body["stream"] == true),
        "turns are streamed"
    );

    // `/clear` starts a new conversation; the SessionStart hook tells pocketdev its id.
    app.command(&token, &id, json!({ "text": "/clear" })).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let cleared = loop {
        let current = app.instance(&token, &id).await["agent_session_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if current != session {
            break current;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hook never reported the new conversation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(uuid::Uuid::parse_str(&cleared).is_ok());
    app.command(&token, &id, json!({ "text": "After the clear" }))
        .await;
    app.wait_for_output(&token, &id, "I read \"After the clear\"")
        .await;
    let session = cleared;

    // Stop, restart: the same conversation comes back (`--resume`).
    let stopped: Value = app
        .post(
            &format!("/api/instances/{id}/stop"),
            Some(&token),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stopped["state"], "stopped");
    let restarted: Value = app
        .post(
            &format!("/api/instances/{id}/restart"),
            Some(&token),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(restarted["state"], "running", "{restarted}");
    assert_eq!(restarted["agent_session_id"], session.as_str());
    let screen = app.wait_for_output(&token, &id, "? for shortcuts").await;
    let screen = if screen.contains(REPLY_PREFIX) {
        screen
    } else {
        app.wait_for_output(&token, &id, REPLY_PREFIX).await
    };
    assert!(
        screen.contains("After the clear") && !screen.contains("Say hello to pocketdev"),
        "the resumed transcript is the conversation after /clear:\n{screen}"
    );
}

#[tokio::test]
async fn glm_profile_sends_the_token_as_bearer_to_its_endpoint() {
    let Some(claude) = claude_binary() else {
        eprintln!(
            "SKIPPED: the Claude Code CLI is not installed (run scripts/test.sh, which installs it into .test-tools/)"
        );
        return;
    };
    let mock = MockAnthropic::start().await;
    let app = spawn_app_with(|c| {
        let profile = c.profiles.get_mut("glm-4.6").unwrap();
        profile.command = claude.display().to_string();
        profile
            .env
            .insert("ANTHROPIC_BASE_URL".into(), mock.url.clone());
    })
    .await;
    app.create_user("gail", "gail-password-1").await;
    let token = app.token("gail", "gail-password-1").await;
    let missing = app
        .post(
            "/api/instances",
            Some(&token),
            json!({ "profile": "glm-4.6" }),
        )
        .await;
    crate::helpers::expect_error(
        missing,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "GLM without its key",
    )
    .await;
    let glm_key = "glm-test-token-0123456789abcdef";
    app.call(
        Method::PUT,
        "/api/secrets/GLM_API_KEY",
        Some(&token),
        Some(json!({ "value": glm_key })),
    )
    .await;

    let id = app
        .create_instance(&token, json!({ "profile": "glm-4.6" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let screen = app.wait_for_output(&token, &id, "? for shortcuts").await;
    for first_run in FIRST_RUN_SCREENS {
        assert!(
            !screen.contains(first_run),
            "first-run screen `{first_run}` appeared:\n{screen}"
        );
    }
    app.command(&token, &id, json!({ "text": "Hello GLM" }))
        .await;
    app.wait_for_output(&token, &id, REPLY_PREFIX).await;
    let requests = mock.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.bearer.as_deref() == Some(glm_key) && r.api_key.is_none()),
        "bearer token only"
    );
    assert!(
        requests.iter().any(|r| r.body["model"] == "glm-4.6"),
        "the GLM model is asked for"
    );
}

/// Live status on the real CLI: waiting at its prompt, working on a turn, needs_permission at a
/// tool's permission dialog (hook and screen agree), waiting after Esc (no hook fires for it),
/// and nothing once it exits.
#[tokio::test]
async fn claude_code_status_follows_a_turn_a_permission_dialog_an_escape_and_an_exit() {
    let Some(claude) = claude_binary() else {
        eprintln!("SKIPPED: the Claude Code CLI is not installed (run scripts/test.sh)");
        return;
    };
    let mock = MockAnthropic::start().await;
    let (app, token) = app_with_claude(&claude, &mock, |c| c.monitor.interval_secs = 1).await;
    let id = app
        .create_instance(&token, json!({ "profile": PROFILE }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_output(&token, &id, "? for shortcuts").await;
    let status = |wanted: &'static str| {
        let (app, token, id) = (&app, &token, &id);
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let instance = app.instance(token, id).await;
                if instance["status"] == wanted {
                    return instance;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never {wanted}: {instance}\n{}",
                    app.output(token, id).await
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    status("waiting").await;
    check_screen(&app, &token, &id, "waiting").await;
    let mut term = app.term(&token, &id).await;

    let prompt = format!("Say hello, {}", crate::mock_anthropic::SLOW_TRIGGER);
    app.command(&token, &id, json!({ "text": prompt })).await;
    status("working").await;
    check_screen(&app, &token, &id, "working").await;
    term.wait_message(|m| m["type"] == "status" && m["status"] == "working")
        .await;
    app.wait_for_output(&token, &id, REPLY_PREFIX).await;
    status("waiting").await;

    app.command(
        &token,
        &id,
        json!({ "text": format!("{} now", crate::mock_anthropic::TOOL_TRIGGER) }),
    )
    .await;
    let asking = status("needs_permission").await;
    check_screen(&app, &token, &id, "needs_permission").await;
    let screen = app.output(&token, &id).await;
    assert!(
        screen.contains(crate::mock_anthropic::TOOL_COMMAND),
        "{screen}"
    );
    assert!(
        asking["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("proceed") || r.contains("Bash")),
        "{asking}"
    );

    // Esc denies; no hook reports it, the screen does.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    app.command(&token, &id, json!({ "keys": ["esc"], "enter": false }))
        .await;
    status("waiting").await;
    check_screen(&app, &token, &id, "interrupted").await;

    app.command(&token, &id, json!({ "text": "/exit" })).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let instance = app.instance(&token, &id).await;
        if instance["state"] == "exited" {
            assert_eq!(instance["status"], Value::Null);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never exited: {instance}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Reads the live screen with pocketdev's Claude rules; with `POCKETDEV_RECORD_SCREENS=<dir>`,
/// also saves it there (how tests/fixtures/claude-screens/ was made).
async fn check_screen(app: &crate::helpers::TestApp, token: &str, id: &str, name: &str) {
    use pocketdev::instances::profiles::ProfileKind;
    use pocketdev::monitor::status::{Status, from_screen};
    let screen = app
        .get(&format!("/api/instances/{id}/output?lines=0"), Some(token))
        .await
        .json::<Value>()
        .await
        .unwrap()["output"]
        .as_str()
        .unwrap()
        .to_owned();
    if let Some(dir) = std::env::var_os("POCKETDEV_RECORD_SCREENS") {
        std::fs::write(PathBuf::from(dir).join(format!("{name}.txt")), &screen).unwrap();
    }
    let expected = match name {
        "working" => Status::Working,
        "needs_permission" => Status::NeedsPermission,
        _ => Status::Waiting,
    };
    let read = from_screen(ProfileKind::Claude, &screen).map(|r| r.status);
    assert_eq!(read, Some(expected), "screen `{name}`:\n{screen}");
}

/// Isolation on the real CLI: a Bash tool call of Claude Code in one account tries to read
/// another account's file and the server's database; both are refused, and the tool ran as the
/// account's own Unix user.
#[tokio::test]
async fn an_isolated_claude_code_cannot_read_another_accounts_files() {
    let Some(claude) = claude_binary() else {
        eprintln!("SKIPPED: the Claude Code CLI is not installed (run scripts/test.sh)");
        return;
    };
    if !crate::helpers::running_as_root() {
        eprintln!("SKIPPED: isolation needs root (CI runs the tests as root)");
        return;
    }
    let mock = MockAnthropic::start().await;
    let (app, token) = app_with_claude(&claude, &mock, |_| {}).await;
    let bob = app.create_user("bobby", "bobby-password-1").await;
    let bob_token = app.token("bobby", "bobby-password-1").await;
    app.post(
        "/api/files/save",
        Some(&bob_token),
        json!({ "path": "secret.txt", "content": "bobby's secret" }),
    )
    .await;
    let data = app.data_dir();
    let bob_file = data.join(format!("users/{bob}/workspace/secret.txt"));
    let database = data.join("server/pocketdev.db");

    let instance = app
        .create_instance(&token, json!({ "profile": PROFILE }))
        .await;
    let id = instance["id"].as_str().unwrap().to_owned();
    // A real CLI under a loaded machine (every test runs at once) may take a while.
    let slow = std::time::Duration::from_secs(45);
    app.wait_for_output_within(&token, &id, "? for shortcuts", slow)
        .await;
    let command = format!(
        "{} (id -u; cat {} {}) > probe.txt 2>&1",
        crate::mock_anthropic::BASH_TRIGGER,
        bob_file.display(),
        database.display()
    );
    let cleo = app.user_id(&token).await;
    let probe = data.join(format!("users/{cleo}/workspace/probe.txt"));
    // Typed without Enter: Claude Code takes fast input for a paste and may swallow an Enter
    // that arrives with it; Enter follows on its own (again, if the prompt did not take it).
    app.command(&token, &id, json!({ "text": command, "enter": false }))
        .await;
    let deadline = tokio::time::Instant::now() + slow;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        app.command(&token, &id, json!({ "keys": ["enter"], "enter": false }))
            .await;
        let asked = tokio::time::Instant::now() + std::time::Duration::from_secs(8);
        let mut screen = String::new();
        while tokio::time::Instant::now() < asked
            && !screen.contains("Do you want to proceed?")
            && !probe.exists()
        {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            screen = app.output(&token, &id).await;
        }
        // Claude Code asks before running it; the first choice allows it.
        if screen.contains("Do you want to proceed?") || probe.exists() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Claude Code never asked to run the command:\n{screen}"
        );
    }
    if !probe.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        app.command(&token, &id, json!({ "keys": ["enter"], "enter": false }))
            .await;
    }

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&probe)
            && text.lines().count() >= 3
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tool never ran:\n{}",
            app.output(&token, &id).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        !text.contains("bobby's secret") && !text.contains("SQLite"),
        "{text}"
    );
    assert_eq!(text.matches("Permission denied").count(), 2, "{text}");
    let uid: u32 = text.lines().next().unwrap().trim().parse().unwrap();
    assert_ne!(uid, 0, "the tool ran as the account, not root");
}
