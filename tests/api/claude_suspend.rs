//! Suspending and resuming the real Claude Code CLI, against the mock Messages API: the
//! conversation comes back, input sent meanwhile arrives once, a reboot brings it back, and a
//! turn cut by a kill is named and can be sent again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::claude::{PROFILE, app_with_claude, claude_binary};
use crate::helpers::TestApp;
use crate::mock_anthropic::{MockAnthropic, REPLY_PREFIX, SLOW_TRIGGER};

/// The Claude Code processes running conversation `session` (not a launcher or sandbox on
/// the way to one).
fn claude_processes(session: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let first = String::from_utf8_lossy(words.first()?).into_owned();
            let is_agent = words.contains(&session.as_bytes())
                && !words.contains(&b"launch".as_slice())
                && !first.ends_with("bwrap");
            is_agent.then_some(pid)
        })
        .collect()
}

/// Polls the instance until `check` holds; returns it.
async fn wait_until(
    app: &TestApp,
    token: &str,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    app.wait_until(token, id, what, Duration::from_secs(40), check)
        .await
}

/// Requests to the mock whose last user message is `prompt`.
fn asked(mock: &MockAnthropic, prompt: &str) -> usize {
    mock.requests()
        .iter()
        .filter(|r| {
            r.body["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
                .is_some_and(|m| m["content"].to_string().contains(prompt))
        })
        .count()
}

async fn turn(app: &TestApp, token: &str, id: &str, prompt: &str) {
    app.command(token, id, json!({ "text": prompt })).await;
    app.wait_for_output_within(
        token,
        id,
        &format!("I read \"{prompt}\""),
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test]
async fn an_idle_claude_code_is_suspended_and_resumes_its_conversation() {
    let Some(claude) = claude_binary() else {
        eprintln!("SKIPPED: the Claude Code CLI is not installed (run scripts/test.sh)");
        return;
    };
    let mock = MockAnthropic::start().await;
    let (app, token) = app_with_claude(&claude, &mock, |c| {
        c.monitor.interval_secs = 1;
        c.limits.idle_timeout_minutes = 0.05;
    })
    .await;
    let created = app
        .create_instance(&token, json!({ "profile": PROFILE }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let session = created["agent_session_id"].as_str().unwrap().to_owned();
    app.wait_for_output_within(&token, &id, "? for shortcuts", Duration::from_secs(30))
        .await;
    turn(&app, &token, &id, "First question").await;
    turn(&app, &token, &id, "Second question").await;
    assert_eq!(claude_processes(&session).len(), 1);

    // Idle at its prompt past the timeout: suspended, its process gone, its memory free.
    let suspended = wait_until(&app, &token, &id, "suspended as idle", |i| {
        i["state"] == "suspended"
    })
    .await;
    assert_eq!(suspended["suspend_reason"], "idle", "{suspended}");
    assert!(
        suspended["freed_bytes"].as_u64().unwrap_or(0) > 50_000_000,
        "a Claude Code process holds tens of MB at least: {suspended}"
    );
    assert!(claude_processes(&session).is_empty(), "the CLI is gone");

    // Opening the terminal resumes it: the conversation is on screen, and the next turn
    // sends the whole history.
    let mut term = app.term(&token, &id).await;
    assert_eq!(
        term.messages[0]["state"], "suspended",
        "{:?}",
        term.messages
    );
    term.wait_for("Second question").await;
    let resumed = app.instance(&token, &id).await;
    assert_eq!(resumed["state"], "running");
    assert_eq!(resumed["agent_session_id"], session.as_str());
    app.wait_for_output_within(&token, &id, "? for shortcuts", Duration::from_secs(30))
        .await;
    turn(&app, &token, &id, "Third question").await;
    let third = mock
        .requests()
        .into_iter()
        .find(|r| r.body["messages"].to_string().contains("Third question"))
        .expect("the third turn reached the mock");
    let history = third.body["messages"].to_string();
    assert!(
        history.contains("First question") && history.contains("Second question"),
        "the resumed conversation carries its history: {history}"
    );
    drop(term);

    // Suspended by hand, then a prompt through the API: resumed for it, typed once, answered.
    let response = app
        .post(
            &format!("/api/instances/{id}/suspend"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert!(claude_processes(&session).is_empty());
    let sent = app
        .command(&token, &id, json!({ "text": "Fourth question" }))
        .await;
    assert_eq!(sent.status(), reqwest::StatusCode::ACCEPTED);
    app.wait_for_output_within(
        &token,
        &id,
        "I read \"Fourth question\"",
        Duration::from_secs(40),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(asked(&mock, "Fourth question"), 1, "typed once");
    assert_eq!(
        claude_processes(&session).len(),
        1,
        "one CLI on the conversation"
    );

    // A reboot: pocketdev and the account's tmux server go; the agent comes back by itself.
    let user = app.user_id(&token).await;
    let mut app = app;
    app.stop().await;
    let _ = app.tmux_client(user).arg("kill-server").status().await;
    let app = app.restart().await;
    let token = app.token("cleo", "cleo-password-1").await;
    let back = wait_until(&app, &token, &id, "resumed after the reboot", |i| {
        i["state"] == "running"
    })
    .await;
    assert_eq!(back["agent_session_id"], session.as_str());
    let screen = app
        .wait_for_output_within(&token, &id, "Fourth question", Duration::from_secs(30))
        .await;
    assert!(screen.contains(REPLY_PREFIX), "{screen}");
    assert_eq!(claude_processes(&session).len(), 1);
}

#[tokio::test]
async fn a_turn_cut_by_a_kill_is_named_after_the_resume_and_sent_again() {
    let Some(claude) = claude_binary() else {
        eprintln!("SKIPPED: the Claude Code CLI is not installed (run scripts/test.sh)");
        return;
    };
    let mock = MockAnthropic::start().await;
    let (app, token) = app_with_claude(&claude, &mock, |c| c.monitor.interval_secs = 1).await;
    let created = app
        .create_instance(&token, json!({ "profile": PROFILE }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let session = created["agent_session_id"].as_str().unwrap().to_owned();
    app.wait_for_output_within(&token, &id, "? for shortcuts", Duration::from_secs(30))
        .await;
    turn(&app, &token, &id, "A finished turn").await;

    // Mid-turn (the mock takes its time), the CLI is killed.
    let prompt = format!("Count the files, {SLOW_TRIGGER}");
    app.command(&token, &id, json!({ "text": prompt })).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while asked(&mock, "Count the files") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the turn never began"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in claude_processes(&session) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    let crashed = wait_until(&app, &token, &id, "suspended after the kill", |i| {
        i["state"] == "suspended"
    })
    .await;
    assert_eq!(crashed["suspend_reason"], "crash", "{crashed}");

    let resumed = app
        .post(
            &format!("/api/instances/{id}/resume"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(resumed.status(), reqwest::StatusCode::OK);
    let back = app.instance(&token, &id).await;
    assert_eq!(back["state"], "running");
    assert_eq!(back["interrupted"]["kind"], "turn", "{back}");
    assert!(
        back["interrupted"]["prompt"]
            .as_str()
            .is_some_and(|p| p.contains("Count the files")),
        "the lost turn is named: {back}"
    );
    // It came back idle, at its prompt, with the finished turn on screen.
    let screen = app
        .wait_for_output_within(&token, &id, "? for shortcuts", Duration::from_secs(30))
        .await;
    assert!(screen.contains("A finished turn"), "{screen}");

    let answered_before = asked(&mock, "Count the files");
    let again = app
        .post(
            &format!("/api/instances/{id}/interrupted/retry"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(again.status(), reqwest::StatusCode::OK);
    let after: Value = again.json().await.unwrap();
    assert_eq!(after["interrupted"], Value::Null, "the banner goes");
    app.wait_for_output_within(
        &token,
        &id,
        "I read \"Count the files",
        Duration::from_secs(40),
    )
    .await;
    assert!(asked(&mock, "Count the files") > answered_before);
}
