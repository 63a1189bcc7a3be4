//! Suspending idle agents and resuming them where they were, with a stand-in agent whose
//! conversation outlives its process (`--session-id` / `--resume`, like Claude Code's).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_error_saying, fake_profile, spawn_app_with};

const RESUMABLE: &str = "fake-resumable";

fn resumable_profile() -> pocketdev::instances::profiles::Profile {
    let mut profile = fake_profile();
    profile.name = "Resumable fake".into();
    profile.session_args = Some(vec!["--session-id".into(), "{session}".into()]);
    profile.resume_args = Some(vec!["--resume".into(), "{session}".into()]);
    profile
}

async fn app_with(customize: impl FnOnce(&mut pocketdev::Config)) -> (TestApp, String) {
    let app = spawn_app_with(|config| {
        config.monitor.interval_secs = 1;
        config.limits.max_per_user = 10;
        config.limits.max_total = 10;
        config
            .profiles
            .insert(RESUMABLE.into(), resumable_profile());
        customize(config);
    })
    .await;
    app.create_user("sam", "sam-password-1").await;
    let token = app.token("sam", "sam-password-1").await;
    (app, token)
}

async fn start(app: &TestApp, token: &str, profile: &str) -> (String, String) {
    let created = app
        .create_instance(token, json!({ "profile": profile }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let session = created["agent_session_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    app.wait_for_output(token, &id, "agent>").await;
    (id, session)
}

async fn post(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    let response = app.post(path, Some(token), json!({})).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Processes whose command line names `session`: the agent holding that conversation.
fn agents_on(session: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            // The agent itself (bash running the script), not a launcher on its way to it.
            words.contains(&session.as_bytes())
                && words.iter().any(|w| w.ends_with(b"fake-agent.sh"))
                && !words.iter().any(|w| *w == b"launch")
        })
        .count()
}

/// Polls the instance until `check` holds; returns it.
async fn wait_until(
    app: &TestApp,
    token: &str,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    app.wait_until(token, id, what, Duration::from_secs(20), check)
        .await
}

#[tokio::test]
async fn a_suspended_agent_frees_its_process_and_a_command_resumes_it_once() {
    let (app, token) = app_with(|_| {}).await;
    let (id, session) = start(&app, &token, RESUMABLE).await;
    assert!(!session.is_empty(), "pocketdev names the conversation");
    app.command(&token, &id, json!({ "text": "first words" }))
        .await;
    app.wait_for_output(&token, &id, "you said: first words")
        .await;
    assert_eq!(agents_on(&session), 1);
    // Measured by the monitor first, so the memory it frees is known.
    wait_until(&app, &token, &id, "measured", |i| {
        i["memory_bytes"].as_u64().unwrap_or(0) > 0
    })
    .await;

    let (status, suspended) = post(&app, &token, &format!("/api/instances/{id}/suspend")).await;
    assert_eq!(status, StatusCode::OK, "{suspended}");
    assert_eq!(suspended["state"], "suspended");
    assert_eq!(suspended["suspend_reason"], "user");
    assert!(suspended["suspended_at"].is_string());
    assert!(
        suspended["freed_bytes"].as_u64().unwrap_or(0) > 1_000_000,
        "it says what it freed: {suspended}"
    );
    assert_eq!(agents_on(&session), 0, "the agent's process is gone");
    let output = app.output(&token, &id).await;
    assert!(
        output.contains("you said: first words"),
        "its last screen is kept: {output}"
    );
    // Suspending twice is a clear refusal, not an error.
    let twice = app
        .post(
            &format!("/api/instances/{id}/suspend"),
            Some(&token),
            json!({}),
        )
        .await;
    expect_error_saying(twice, StatusCode::CONFLICT, "not running").await;

    // A command to a suspended agent brings it back and is typed once it is ready.
    let sent = app
        .command(&token, &id, json!({ "text": "second words" }))
        .await;
    assert!(sent.status().is_success(), "{}", sent.text().await.unwrap());
    let screen = app
        .wait_for_output(&token, &id, "you said: second words")
        .await;
    assert!(
        screen.contains("resumed conversation") && screen.contains("earlier: first words"),
        "the conversation came back: {screen}"
    );
    assert_eq!(
        screen.matches("you said: second words").count(),
        1,
        "typed once: {screen}"
    );
    let resumed = app.instance(&token, &id).await;
    assert_eq!(resumed["state"], "running");
    assert_eq!(resumed["agent_session_id"], session.as_str());
    assert_eq!(resumed["suspended_at"], Value::Null);
    assert_eq!(agents_on(&session), 1, "one process on the conversation");
    assert_eq!(
        app.audit("instance.suspend").await.len(),
        1,
        "the suspension is audited"
    );
}

#[tokio::test]
async fn opening_the_terminal_resumes_a_suspended_agent() {
    let (app, token) = app_with(|_| {}).await;
    let (id, session) = start(&app, &token, RESUMABLE).await;
    app.command(&token, &id, json!({ "text": "remember me" }))
        .await;
    app.wait_for_output(&token, &id, "you said: remember me")
        .await;
    let (status, _) = post(&app, &token, &format!("/api/instances/{id}/suspend")).await;
    assert_eq!(status, StatusCode::OK);

    let mut term = app.term(&token, &id).await;
    assert_eq!(
        (&term.messages[0]["type"], &term.messages[0]["state"]),
        (&json!("hello"), &json!("suspended")),
        "the viewer learns it is resuming: {:?}",
        term.messages
    );
    term.wait_for("earlier: remember me").await;
    term.run("after the resume", "you said: after the resume")
        .await;
    assert_eq!(app.instance(&token, &id).await["state"], "running");
    assert_eq!(agents_on(&session), 1);
}

#[tokio::test]
async fn explicit_resume_and_stop_or_delete_of_a_suspended_agent() {
    let (app, token) = app_with(|_| {}).await;
    let (id, session) = start(&app, &token, RESUMABLE).await;
    post(&app, &token, &format!("/api/instances/{id}/suspend")).await;
    let (status, resumed) = post(&app, &token, &format!("/api/instances/{id}/resume")).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["state"], "running");
    app.wait_for_output(&token, &id, "resumed conversation")
        .await;
    // Resuming what runs changes nothing.
    let (status, again) = post(&app, &token, &format!("/api/instances/{id}/resume")).await;
    assert_eq!(
        (status, &again["state"]),
        (StatusCode::OK, &json!("running"))
    );
    assert_eq!(agents_on(&session), 1);

    post(&app, &token, &format!("/api/instances/{id}/suspend")).await;
    let (status, stopped) = post(&app, &token, &format!("/api/instances/{id}/stop")).await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["state"], "stopped");
    let resume_stopped = app
        .post(
            &format!("/api/instances/{id}/resume"),
            Some(&token),
            json!({}),
        )
        .await;
    expect_error_saying(resume_stopped, StatusCode::CONFLICT, "restart").await;

    let (other, _) = start(&app, &token, RESUMABLE).await;
    post(&app, &token, &format!("/api/instances/{other}/suspend")).await;
    let deleted = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/instances/{other}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_agent_that_cannot_resume_is_not_suspended() {
    let (app, token) = app_with(|_| {}).await;
    let (id, _) = start(&app, &token, "fake").await;
    let refused = app
        .post(
            &format!("/api/instances/{id}/suspend"),
            Some(&token),
            json!({}),
        )
        .await;
    expect_error_saying(refused, StatusCode::CONFLICT, "cannot resume").await;
    assert_eq!(app.instance(&token, &id).await["state"], "running");
}

#[tokio::test]
async fn idle_agents_are_suspended_unless_their_children_work() {
    let (app, token) = app_with(|config| config.limits.idle_timeout_minutes = 0.05).await;
    let (quiet, quiet_session) = start(&app, &token, RESUMABLE).await;
    let (busy, _) = start(&app, &token, RESUMABLE).await;
    // A dev server or a test run in the background is work, even when the agent is quiet.
    app.command(&token, &busy, json!({ "text": "child" })).await;
    app.wait_for_output(&token, &busy, "child started").await;
    let (plain, _) = start(&app, &token, "fake").await;

    let suspended = wait_until(&app, &token, &quiet, "suspended as idle", |i| {
        i["state"] == "suspended"
    })
    .await;
    assert_eq!(suspended["suspend_reason"], "idle");
    assert_eq!(agents_on(&quiet_session), 0);
    let stopped = wait_until(&app, &token, &plain, "stopped as idle", |i| {
        i["state"] == "stopped"
    })
    .await;
    assert_eq!(
        stopped["end_reason"], "idle",
        "an agent that cannot resume stops"
    );
    assert_eq!(
        app.instance(&token, &busy).await["state"],
        "running",
        "a child at work keeps it running"
    );
}

#[tokio::test]
async fn under_memory_pressure_the_longest_idle_agent_makes_room() {
    let (app, token) = app_with(|config| {
        // Two fit, a third does not: the longest idle of the account is suspended for it.
        config.limits.memory_budget_mb = 250;
        config.profiles.get_mut(RESUMABLE).unwrap().memory_mb = 100;
    })
    .await;
    let (oldest, oldest_session) = start(&app, &token, RESUMABLE).await;
    let (newer, _) = start(&app, &token, RESUMABLE).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.command(&token, &newer, json!({ "text": "still here" }))
        .await;
    app.wait_for_output(&token, &newer, "you said: still here")
        .await;
    // The monitor must have seen both at rest.
    for id in [&oldest, &newer] {
        wait_until(&app, &token, id, "at rest", |i| {
            i["status"] == "idle" || i["status"] == "waiting"
        })
        .await;
    }

    let response = app
        .post(
            "/api/instances",
            Some(&token),
            json!({ "profile": RESUMABLE }),
        )
        .await;
    let status = response.status();
    let created: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let made_room = created["made_room"]
        .as_array()
        .expect("says what it suspended");
    assert_eq!(made_room.len(), 1, "{created}");
    assert_eq!(made_room[0]["id"], oldest.as_str());
    let oldest_now = app.instance(&token, &oldest).await;
    assert_eq!(oldest_now["state"], "suspended");
    assert_eq!(oldest_now["suspend_reason"], "memory");
    assert_eq!(agents_on(&oldest_session), 0);
    assert_eq!(app.instance(&token, &newer).await["state"], "running");
    let audit = app.audit("instance.suspend").await;
    assert!(
        audit
            .iter()
            .any(|e| e["detail"].as_str().is_some_and(|d| d.contains("memory"))),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_restart_of_pocketdev_adopts_running_agents_and_a_reboot_resumes_them() {
    let (app, token) = app_with(|_| {}).await;
    let (id, session) = start(&app, &token, RESUMABLE).await;
    app.command(&token, &id, json!({ "text": "before the restart" }))
        .await;
    app.wait_for_output(&token, &id, "you said: before the restart")
        .await;
    let (plain, _) = start(&app, &token, "fake").await;

    // pocketdev alone restarts: the agent runs on, adopted, never started twice.
    let app = app.restart().await;
    let token = app.token("sam", "sam-password-1").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.instance(&token, &id).await["state"], "running");
    assert_eq!(agents_on(&session), 1);
    let screen = app.output(&token, &id).await;
    assert!(!screen.contains("resumed conversation"), "{screen}");

    // A reboot: the account's tmux server and pocketdev both go.
    let user = app.user_id(&token).await;
    let mut app = app;
    app.stop().await;
    let _ = app.tmux_client(user).arg("kill-server").status().await;
    let app = app.restart().await;
    let token = app.token("sam", "sam-password-1").await;
    let back = wait_until(&app, &token, &id, "resumed after the reboot", |i| {
        i["state"] == "running"
    })
    .await;
    assert_eq!(back["agent_session_id"], session.as_str());
    let screen = app
        .wait_for_output(&token, &id, "earlier: before the restart")
        .await;
    assert!(screen.contains("resumed conversation"), "{screen}");
    assert_eq!(agents_on(&session), 1);
    // An agent that cannot resume is lost with the machine, as before.
    let lost = wait_until(&app, &token, &plain, "ended", |i| i["state"] == "exited").await;
    assert!(
        matches!(lost["end_reason"].as_str(), Some("lost" | "server_gone")),
        "{lost}"
    );
}

#[tokio::test]
async fn an_answer_to_a_suspended_agent_resumes_it_and_says_its_question_is_gone() {
    let (app, token) = app_with(|_| {}).await;
    let (id, session) = start(&app, &token, RESUMABLE).await;
    post(&app, &token, &format!("/api/instances/{id}/suspend")).await;
    let response = app
        .post(
            &format!("/api/instances/{id}/approvals/0123456789abcdef"),
            Some(&token),
            json!({ "choice": "1" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answered: Value = response.json().await.unwrap();
    assert_eq!(answered["outcome"], "gone", "{answered}");
    assert_eq!(app.instance(&token, &id).await["state"], "running");
    app.wait_for_output(&token, &id, "resumed conversation")
        .await;
    assert_eq!(agents_on(&session), 1);
}
