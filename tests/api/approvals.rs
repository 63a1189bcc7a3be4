//! One-tap approvals: a permission dialog parsed into its choices and answered through the API,
//! with the fake agent drawing Claude Code's dialog, and with the real Claude Code CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pocketdev::instances::approvals::ApprovalRules;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::claude::{PROFILE, app_with_claude, claude_binary};
use crate::helpers::{TestApp, expect_error, spawn_app_with};
use crate::mock_anthropic::{MockAnthropic, TOOL_CALL_TRIGGER};

/// A server whose fake agent draws Claude Code's dialog (`dialog`, `dialogs`), read with
/// Claude Code's rules, and a signed-in user with one such agent: (app, token, instance id).
async fn fake_with_dialogs() -> (TestApp, String, String) {
    let app = spawn_app_with(|c| {
        c.monitor.interval_secs = 1;
        c.profiles.get_mut("fake").unwrap().approval = Some(ApprovalRules::default());
    })
    .await;
    app.create_user("ann", "ann-password-1").await;
    let token = app.token("ann", "ann-password-1").await;
    let id = app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_output(&token, &id, "agent>").await;
    (app, token, id)
}

/// Polls the instance until `pending` says yes to its `pending_approval`.
async fn wait_for_approval(
    app: &TestApp,
    token: &str,
    id: &str,
    pending: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let instance = app.instance(token, id).await;
        if pending(&instance["pending_approval"]) {
            return instance;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never the awaited approval: {instance}\n{}",
            app.output(token, id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn answer(
    app: &TestApp,
    token: &str,
    id: &str,
    approval: &str,
    choice: Value,
) -> reqwest::Response {
    app.post(
        &format!("/api/instances/{id}/approvals/{approval}"),
        Some(token),
        json!({ "choice": choice }),
    )
    .await
}

async fn answered(app: &TestApp, token: &str, id: &str, approval: &str, choice: &str) -> Value {
    let response = answer(app, token, id, approval, json!(choice)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_dialog_is_parsed_and_answered_with_the_chosen_digit() {
    let (app, token, id) = fake_with_dialogs().await;
    app.command(&token, &id, json!({ "text": "dialogs" })).await;
    let instance = wait_for_approval(&app, &token, &id, |a| !a.is_null()).await;
    assert_eq!(instance["status"], "needs_permission", "{instance}");
    let approval = &instance["pending_approval"];
    assert_eq!(approval["tool"], "Bash command");
    assert_eq!(approval["detail"], "rm -rf build");
    assert_eq!(approval["question"], "Do you want to proceed?");
    assert_eq!(
        approval["choices"],
        json!([
            { "id": "1", "label": "Yes", "kind": "allow" },
            { "id": "2", "label": "Yes, and don't ask again for rm commands", "kind": "always" },
            { "id": "3", "label": "No", "kind": "deny" },
        ])
    );
    let first = approval["id"].as_str().unwrap().to_owned();

    let body = answered(&app, &token, &id, &first, "2").await;
    assert_eq!(body["outcome"], "done", "{body}");
    let screen = app.output(&token, &id).await;
    assert!(screen.contains("chose 2 for rm -rf build"), "{screen}");
    // The next question is up at once, with its own id.
    assert_eq!(body["pending_approval"]["detail"], "make clean", "{body}");
    let second = body["pending_approval"]["id"].as_str().unwrap().to_owned();
    assert_ne!(second, first);

    // Answering the first one again: it is gone, and nothing is typed.
    let again = answered(&app, &token, &id, &first, "1").await;
    assert_eq!(again["outcome"], "changed", "another dialog is up: {again}");
    assert_eq!(again["pending_approval"]["id"], second.as_str());

    let body = answered(&app, &token, &id, &second, "3").await;
    assert_eq!(body["outcome"], "done");
    assert_eq!(body["pending_approval"], Value::Null);
    assert_eq!(
        app.instance(&token, &id).await["pending_approval"],
        Value::Null
    );
    let screen = app
        .wait_for_output(&token, &id, "chose 3 for make clean")
        .await;
    assert!(!screen.contains("chose 1"), "{screen}");

    let audit = app.audit("instance.approval").await;
    let details: Vec<Value> = audit
        .iter()
        .map(|e| serde_json::from_str(e["detail"].as_str().unwrap()).unwrap())
        .collect();
    let outcomes: Vec<(&str, &str)> = details
        .iter()
        .map(|d| {
            (
                d["choice"].as_str().unwrap(),
                d["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 3, "{audit:?}");
    for expected in [("2", "done"), ("1", "changed"), ("3", "done")] {
        assert!(outcomes.contains(&expected), "{expected:?} in {outcomes:?}");
    }
    assert!(
        details
            .iter()
            .any(|d| d["label"] == "No" && d["detail"] == "make clean"),
        "{details:?}"
    );
    assert!(audit.iter().all(|e| e["username"] == "ann"));
}

#[tokio::test]
async fn a_dialog_answered_in_the_terminal_first_is_gone() {
    let (app, token, id) = fake_with_dialogs().await;
    app.command(&token, &id, json!({ "text": "dialog" })).await;
    let instance = wait_for_approval(&app, &token, &id, |a| !a.is_null()).await;
    let approval = instance["pending_approval"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.command(&token, &id, json!({ "text": "1", "enter": false }))
        .await;
    app.wait_for_output(&token, &id, "chose 1 for rm -rf build")
        .await;
    let body = answered(&app, &token, &id, &approval, "3").await;
    assert_eq!(body["outcome"], "gone", "{body}");
    assert_eq!(body["pending_approval"], Value::Null);
    let screen = app.output(&token, &id).await;
    assert!(!screen.contains("chose 3"), "nothing was typed: {screen}");
}

#[tokio::test]
async fn a_dialog_replaced_by_another_is_not_answered() {
    let (app, token, id) = fake_with_dialogs().await;
    app.command(&token, &id, json!({ "text": "dialog" })).await;
    let instance = wait_for_approval(&app, &token, &id, |a| !a.is_null()).await;
    let approval = instance["pending_approval"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.command(&token, &id, json!({ "text": "n", "enter": false }))
        .await;
    app.wait_for_output(&token, &id, "rm -rf build --again")
        .await;
    let body = answered(&app, &token, &id, &approval, "1").await;
    assert_eq!(body["outcome"], "changed", "{body}");
    assert_eq!(body["pending_approval"]["detail"], "rm -rf build --again");
    let screen = app.output(&token, &id).await;
    assert!(!screen.contains("chose"), "nothing was typed: {screen}");
}

#[tokio::test]
async fn bad_answers_are_refused_and_others_instances_not_found() {
    let (app, token, id) = fake_with_dialogs().await;
    app.command(&token, &id, json!({ "text": "dialog" })).await;
    let instance = wait_for_approval(&app, &token, &id, |a| !a.is_null()).await;
    let approval = instance["pending_approval"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: [(&str, Value, &str); 5] = [
        (
            approval.as_str(),
            json!("7"),
            "a choice the dialog does not have",
        ),
        (approval.as_str(), json!(1), "a number, not a choice id"),
        (approval.as_str(), json!(""), "an empty choice"),
        ("not-an-approval", json!("1"), "a malformed approval id"),
        (
            approval.as_str(),
            json!("1\n2"),
            "a choice with a line feed",
        ),
    ];
    for (approval, choice, why) in cases {
        let response = answer(&app, &token, &id, approval, choice).await;
        expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, why).await;
    }
    let extra = app
        .post(
            &format!("/api/instances/{id}/approvals/{approval}"),
            Some(&token),
            json!({ "choice": "1", "also": true }),
        )
        .await;
    expect_error(extra, StatusCode::UNPROCESSABLE_ENTITY, "an unknown field").await;

    app.create_user("eve", "eve-password-1").await;
    let eve = app.token("eve", "eve-password-1").await;
    let response = answer(&app, &eve, &id, &approval, json!("1")).await;
    expect_error(response, StatusCode::NOT_FOUND, "someone else's instance").await;
    let response = answer(&app, &eve, "nosuchinstance", &approval, json!("1")).await;
    expect_error(response, StatusCode::NOT_FOUND, "no such instance").await;
    assert_eq!(
        app.get(&format!("/api/instances/{id}"), Some(&eve))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let screen = app.output(&token, &id).await;
    assert!(!screen.contains("chose"), "nothing was typed: {screen}");

    app.post(
        &format!("/api/instances/{id}/stop"),
        Some(&token),
        json!({}),
    )
    .await;
    let response = answer(&app, &token, &id, &approval, json!("1")).await;
    expect_error(response, StatusCode::CONFLICT, "not running").await;
    assert_eq!(
        app.instance(&token, &id).await["pending_approval"],
        Value::Null
    );
}

/// A profile without approval rules (the plain fake agent) never shows one.
#[tokio::test]
async fn profiles_without_rules_have_no_approvals() {
    let app = spawn_app_with(|c| c.monitor.interval_secs = 1).await;
    app.create_user("ann", "ann-password-1").await;
    let token = app.token("ann", "ann-password-1").await;
    let id = app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.command(&token, &id, json!({ "text": "dialog" })).await;
    app.wait_for_output(&token, &id, "Esc to cancel").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        app.instance(&token, &id).await["pending_approval"],
        Value::Null
    );
    let body = answered(&app, &token, &id, "0123456789abcdef", "1").await;
    assert_eq!(body["outcome"], "gone");
}

/// Types a prompt into Claude Code and presses Enter until it takes it (fast input looks like a
/// paste to it, which may swallow an Enter that comes with it); returns the approval it asks.
async fn ask_claude(app: &TestApp, token: &str, id: &str, prompt: &str, not: &str) -> Value {
    app.command(token, id, json!({ "text": prompt, "enter": false }))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        app.command(token, id, json!({ "keys": ["enter"], "enter": false }))
            .await;
        let asked = tokio::time::Instant::now() + Duration::from_secs(8);
        while tokio::time::Instant::now() < asked {
            let approval = app.instance(token, id).await["pending_approval"].clone();
            if !approval.is_null() && approval["id"] != not {
                record(&approval, &screen(app, token, id).await);
                return approval;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Claude Code never asked:\n{}",
            screen(app, token, id).await
        );
    }
}

async fn screen(app: &TestApp, token: &str, id: &str) -> String {
    app.get(&format!("/api/instances/{id}/output?lines=0"), Some(token))
        .await
        .json::<Value>()
        .await
        .unwrap()["output"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// With `POCKETDEV_RECORD_SCREENS=<dir>`, saves the dialog's screen there (how the parser's
/// fixtures in tests/fixtures/claude-screens/ were made).
fn record(approval: &Value, screen: &str) {
    if let Some(dir) = std::env::var_os("POCKETDEV_RECORD_SCREENS") {
        let name = approval["tool"]
            .as_str()
            .unwrap_or("dialog")
            .replace(' ', "_");
        std::fs::write(
            PathBuf::from(dir).join(format!("permission_{name}.txt")),
            screen,
        )
        .unwrap();
    }
}

fn write_prompt(file: &Path) -> String {
    let input = json!({ "file_path": file, "content": "written by Claude Code\n" });
    format!("{TOOL_CALL_TRIGGER}Write {input}")
}

/// The real CLI: a Write tool call asks; Allow writes the file, Deny does not, and a dialog
/// that changed meanwhile (denied in the terminal, another asked) is not answered.
#[tokio::test]
async fn claude_code_permission_dialogs_are_answered_in_one_tap() {
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
    app.wait_for_output_within(&token, &id, "? for shortcuts", Duration::from_secs(45))
        .await;
    let user = app.user_id(&token).await;
    let workspace = app.data_dir().join(format!("users/{user}/workspace"));

    let allowed = workspace.join("allowed.txt");
    let approval = ask_claude(&app, &token, &id, &write_prompt(&allowed), "").await;
    assert_eq!(approval["tool"], "Create file", "{approval}");
    // Claude Code's PermissionRequest hook names the tool, a moment after the dialog shows.
    let named = wait_for_approval(&app, &token, &id, |a| a["tool_name"] == "Write").await;
    assert_eq!(
        named["pending_approval"]["id"], approval["id"],
        "the same dialog"
    );
    assert_eq!(approval["detail"], "allowed.txt");
    assert_eq!(approval["preview"], "1 written by Claude Code");
    assert_eq!(approval["choices"][0]["label"], "Yes");
    assert_eq!(approval["choices"][2]["kind"], "deny");
    let body = answered(&app, &token, &id, approval["id"].as_str().unwrap(), "1").await;
    assert_eq!(body["outcome"], "done", "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !allowed.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never written:\n{}",
            screen(&app, &token, &id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.wait_for_output_within(&token, &id, "? for shortcuts", Duration::from_secs(30))
        .await;

    let denied = workspace.join("denied.txt");
    let approval = ask_claude(&app, &token, &id, &write_prompt(&denied), "").await;
    assert_eq!(approval["detail"], "denied.txt");
    let body = answered(&app, &token, &id, approval["id"].as_str().unwrap(), "3").await;
    assert_eq!(body["outcome"], "done", "{body}");
    app.wait_for_output_within(&token, &id, "? for shortcuts", Duration::from_secs(30))
        .await;
    assert!(!denied.exists());

    // Asked about one file; meanwhile denied in the terminal and asked about another.
    let first = workspace.join("first.txt");
    let approval = ask_claude(&app, &token, &id, &write_prompt(&first), "").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    app.command(&token, &id, json!({ "keys": ["esc"], "enter": false }))
        .await;
    app.wait_for_output_within(&token, &id, "? for shortcuts", Duration::from_secs(30))
        .await;
    let second = workspace.join("second.txt");
    let newer = ask_claude(
        &app,
        &token,
        &id,
        &write_prompt(&second),
        approval["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(newer["detail"], "second.txt");
    let body = answered(&app, &token, &id, approval["id"].as_str().unwrap(), "1").await;
    assert_eq!(body["outcome"], "changed", "{body}");
    assert_eq!(body["pending_approval"]["id"], newer["id"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!first.exists() && !second.exists(), "nothing was allowed");
    assert_eq!(
        app.instance(&token, &id).await["pending_approval"]["id"],
        newer["id"]
    );
}

/// A notification's actions answer the dialog pocketdev read: Allow and Deny first (a
/// notification shows two), the answer audited as the owner's `via: push`; a newer question
/// replaces the notification so its actions answer what is asked now.
#[tokio::test]
async fn a_notification_answers_the_dialog_it_shows() {
    use crate::push::{push_app, subscribe};
    let app = push_app(|c| {
        c.profiles.get_mut("fake").unwrap().approval = Some(ApprovalRules::default());
    })
    .await;
    let mock = crate::mock_push::MockPush::start().await;
    let token = app.admin_token().await;
    subscribe(
        &app,
        &mock,
        &token,
        "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
    )
    .await;
    let id = app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_output(&token, &id, "agent>").await;
    app.command(&token, &id, json!({ "text": "dialogs" })).await;
    let asked = mock.next_of("permission").await.payload;
    let approval = app.instance(&token, &id).await["pending_approval"].clone();
    assert_eq!(asked["question"]["approval"], approval["id"], "{asked}");
    assert_eq!(asked["question"]["text"], "Bash command: rm -rf build");
    assert_eq!(
        asked["question"]["choices"],
        json!([
            { "id": "1", "label": "Allow" },
            { "id": "3", "label": "Deny" },
            { "id": "2", "label": "Always" },
        ])
    );
    // The question changes under the notification: it is replaced.
    app.command(&token, &id, json!({ "text": "n", "enter": false }))
        .await;
    let replaced = mock.next_of("permission").await.payload;
    assert_eq!(
        replaced["question"]["text"],
        "Bash command: rm -rf build --again"
    );
    assert_ne!(
        replaced["question"]["approval"],
        asked["question"]["approval"]
    );

    let acted = app
        .post(
            "/api/push/act",
            None,
            json!({ "instance": id, "token": replaced["token"], "choice": "3" }),
        )
        .await;
    assert_eq!(acted.status(), StatusCode::OK);
    assert_eq!(acted.json::<Value>().await.unwrap()["outcome"], "done");
    app.wait_for_output(&token, &id, "chose 3 for rm -rf build --again")
        .await;
    let audit = app.audit("instance.approval").await;
    let detail: Value = serde_json::from_str(audit[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["via"], "push");
    assert_eq!(audit[0]["username"], "admin");
}
