//! Agent instances on real tmux, driven by the fake agent.

use std::time::Duration;

use pocketdev::instances::profiles::Profile;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_error, expect_error_saying, spawn_app, spawn_app_with};

async fn user(app: &TestApp, name: &str) -> String {
    let password = format!("{name}-password-1");
    app.create_user(name, &password).await;
    app.token(name, &password).await
}

fn id(instance: &Value) -> String {
    instance["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn models_say_which_profiles_are_usable_and_why_not() {
    let app = spawn_app_with(|c| {
        let missing_cli = Profile {
            name: "Missing".into(),
            command: "no-such-agent-cli".into(),
            ..Profile::default()
        };
        c.profiles.insert("missing".into(), missing_cli);
        let mut needs_key = crate::helpers::fake_profile();
        needs_key
            .secrets
            .insert("TOKEN".into(), "NEEDED_KEY".into());
        c.profiles.insert("needs-key".into(), needs_key);
        c.profiles.get_mut("glm-4.6").unwrap().enabled = false;
    })
    .await;
    let token = user(&app, "amy").await;
    let models: Vec<Value> = app
        .get("/api/models", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let by_id = |id: &str| models.iter().find(|m| m["id"] == id).cloned();
    assert_eq!(by_id("fake").unwrap()["usable"], true);
    assert_eq!(by_id("shell").unwrap()["usable"], true);
    let missing = by_id("missing").unwrap();
    assert_eq!(missing["usable"], false);
    assert!(
        missing["reason"]
            .as_str()
            .unwrap()
            .contains("not installed"),
        "{missing}"
    );
    let needs_key = by_id("needs-key").unwrap();
    assert_eq!(needs_key["usable"], false);
    assert!(
        needs_key["reason"].as_str().unwrap().contains("NEEDED_KEY"),
        "{needs_key}"
    );
    assert!(by_id("glm-4.6").is_none(), "disabled profiles are hidden");
    assert!(by_id("claude-sonnet-4-5-20250929").is_some());

    let created = app
        .post(
            "/api/instances",
            Some(&token),
            json!({ "profile": "needs-key" }),
        )
        .await;
    let body: Value = created.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NEEDED_KEY"),
        "missing secret is named: {body}"
    );
    let put = app
        .call(
            Method::PUT,
            "/api/secrets/NEEDED_KEY",
            Some(&token),
            Some(json!({ "value": "abc-123-xyz-789" })),
        )
        .await;
    assert_eq!(put.status(), StatusCode::OK);
    let models: Vec<Value> = app
        .get("/api/models", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        models
            .iter()
            .any(|m| m["id"] == "needs-key" && m["usable"] == true)
    );
}

#[tokio::test]
async fn an_agent_runs_takes_input_and_shows_output() {
    let app = spawn_app().await;
    let token = user(&app, "ben").await;
    let instance = app
        .create_instance(&token, json!({ "profile": "fake", "name": "My agent" }))
        .await;
    assert_eq!(instance["state"], "running");
    assert_eq!(instance["name"], "My agent");
    assert_eq!(instance["profile"], "fake");
    assert!(instance["started_at"].is_string());
    let id = id(&instance);
    let screen = app.wait_for_output(&token, &id, "agent>").await;
    assert!(
        screen.contains("/workspace"),
        "the agent works in the workspace: {screen}"
    );
    assert!(
        screen.contains("home=") && screen.contains("/home"),
        "HOME is the user's home: {screen}"
    );

    let sent = app
        .command(&token, &id, json!({ "text": "hello there" }))
        .await;
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    app.wait_for_output(&token, &id, "you said: hello there")
        .await;

    // Text without Enter stays on the input line until a key is pressed.
    app.command(&token, &id, json!({ "text": "partial", "enter": false }))
        .await;
    app.command(&token, &id, json!({ "keys": ["enter"], "enter": false }))
        .await;
    app.wait_for_output(&token, &id, "you said: partial").await;

    app.command(&token, &id, json!({ "text": "think" })).await;
    app.wait_for_output(&token, &id, "done thinking").await;

    let list: Vec<Value> = app
        .get("/api/instances", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    let renamed = app
        .call(
            Method::PATCH,
            &format!("/api/instances/{id}"),
            Some(&token),
            Some(json!({ "name": "Renamed" })),
        )
        .await;
    assert_eq!(renamed.json::<Value>().await.unwrap()["name"], "Renamed");
}

#[tokio::test]
async fn shell_profile_runs_bash() {
    let app = spawn_app().await;
    let token = user(&app, "cat").await;
    let id = id(&app
        .create_instance(&token, json!({ "profile": "shell" }))
        .await);
    app.command(&token, &id, json!({ "text": "echo $((6 * 7))-$0" }))
        .await;
    app.wait_for_output(&token, &id, "42-").await;
}

#[tokio::test]
async fn an_exiting_agent_is_noticed_and_its_screen_kept() {
    let app = spawn_app().await;
    let token = user(&app, "dan").await;
    let id = id(&app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await);
    app.wait_for_output(&token, &id, "agent>").await;
    app.command(&token, &id, json!({ "text": "fail" })).await;
    let ended = app.wait_for_state(&token, &id, "exited").await;
    assert_eq!(ended["exit_code"], 3, "{ended}");
    assert_eq!(ended["end_reason"], "exit");
    assert!(
        app.output(&token, &id).await.contains("failing on purpose"),
        "last screen stays readable"
    );
    let late = app.command(&token, &id, json!({ "text": "anyone?" })).await;
    expect_error(late, StatusCode::CONFLICT, "command to an exited instance").await;
    let stop = app
        .post(
            &format!("/api/instances/{id}/stop"),
            Some(&token),
            json!({}),
        )
        .await;
    expect_error(stop, StatusCode::CONFLICT, "stop of an exited instance").await;

    // Restart brings it back under the same id.
    let restarted = app
        .post(
            &format!("/api/instances/{id}/restart"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(restarted.status(), StatusCode::OK);
    let restarted: Value = restarted.json().await.unwrap();
    assert_eq!(restarted["state"], "running");
    assert!(restarted["exit_code"].is_null() && restarted["end_reason"].is_null());
    app.command(&token, &id, json!({ "text": "back" })).await;
    app.wait_for_output(&token, &id, "you said: back").await;
}

#[tokio::test]
async fn stop_keeps_the_record_and_delete_removes_it() {
    let app = spawn_app().await;
    let token = user(&app, "eva").await;
    let id = id(&app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await);
    app.command(&token, &id, json!({ "text": "remember me" }))
        .await;
    app.wait_for_output(&token, &id, "you said: remember me")
        .await;

    let stopped = app
        .post(
            &format!("/api/instances/{id}/stop"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    let stopped: Value = stopped.json().await.unwrap();
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(stopped["end_reason"], "user");
    assert!(
        app.output(&token, &id)
            .await
            .contains("you said: remember me"),
        "last screen kept"
    );

    let id2 = crate::instances::id(
        &app.create_instance(&token, json!({ "profile": "fake" }))
            .await,
    );
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/instances/{id2}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    expect_error(
        app.get(&format!("/api/instances/{id2}"), Some(&token))
            .await,
        StatusCode::NOT_FOUND,
        "deleted",
    )
    .await;
    let sessions = tmux_sessions(&app, app.user_id(&token).await).await;
    assert!(
        !sessions.iter().any(|s| s.contains(&id2)),
        "the session is gone: {sessions:?}"
    );
    let actions: Vec<Value> = app.audit("instance.delete").await;
    assert_eq!(actions.len(), 1);
}

async fn tmux_sessions(app: &TestApp, owner: i64) -> Vec<String> {
    let output = app
        .tmux_client(owner)
        .args(["list-sessions", "-F", "#{session_name}"])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn kill_session(app: &TestApp, owner: i64, id: &str) {
    let status = app
        .tmux_client(owner)
        .args(["kill-session", "-t", &format!("pd-{id}")])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn instances_survive_a_server_restart_and_lost_sessions_become_exited() {
    let app = spawn_app().await;
    let token = user(&app, "fay").await;
    let first = id(&app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await);
    let second = id(&app
        .create_instance(&token, json!({ "profile": "shell" }))
        .await);
    app.command(&token, &first, json!({ "text": "before restart" }))
        .await;
    app.wait_for_output(&token, &first, "you said: before restart")
        .await;

    let app = app.restart().await;
    for id in [&first, &second] {
        assert_eq!(
            app.instance(&token, id).await["state"],
            "running",
            "{id} still runs"
        );
    }
    assert!(
        app.output(&token, &first)
            .await
            .contains("you said: before restart"),
        "output intact"
    );
    app.command(&token, &first, json!({ "text": "after restart" }))
        .await;
    app.wait_for_output(&token, &first, "you said: after restart")
        .await;

    kill_session(&app, app.user_id(&token).await, &second).await;
    let lost = app.wait_for_state(&token, &second, "exited").await;
    assert_eq!(lost["end_reason"], "lost");
    assert_eq!(app.instance(&token, &first).await["state"], "running");

    // The last session gone too: the server, now without sessions, still answers for it.
    kill_session(&app, app.user_id(&token).await, &first).await;
    let lost = app.wait_for_state(&token, &first, "exited").await;
    assert_eq!(lost["end_reason"], "lost");
}

#[tokio::test]
async fn secrets_reach_the_agent_but_never_a_command_line_or_a_response() {
    let app = spawn_app().await;
    let token = user(&app, "gus").await;
    let secret = "sk-test-0123456789-very-secret-value";
    let put = app
        .call(
            Method::PUT,
            "/api/secrets/FAKE_TOKEN",
            Some(&token),
            Some(json!({ "value": secret })),
        )
        .await;
    assert_eq!(put.status(), StatusCode::OK);
    let put: Value = put.json().await.unwrap();
    assert_eq!(put["hint"], "…alue");
    let listed = app
        .get("/api/secrets", Some(&token))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !listed.contains(secret) && listed.contains("FAKE_TOKEN"),
        "{listed}"
    );

    let id = id(&app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await);
    app.wait_for_output(
        &token,
        &id,
        &format!("token has {} characters", secret.len()),
    )
    .await;
    let run_dir = app.data_dir().join("server/run");
    assert_eq!(
        std::fs::read_dir(&run_dir).unwrap().count(),
        0,
        "the environment file is gone once read"
    );
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmdline).contains("very-secret"),
                "secret in argv of {:?}",
                entry.path()
            );
        }
    }
    let db = std::fs::read(app.data_dir().join("server/pocketdev.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains("very-secret"),
        "stored encrypted"
    );

    let other = user(&app, "hal").await;
    let theirs: Vec<Value> = app
        .get("/api/secrets", Some(&other))
        .await
        .json()
        .await
        .unwrap();
    assert!(theirs.is_empty(), "secrets are per user");
    let delete = app
        .call(
            Method::DELETE,
            "/api/secrets/FAKE_TOKEN",
            Some(&other),
            None,
        )
        .await;
    expect_error(delete, StatusCode::NOT_FOUND, "someone else's secret").await;
    for (name, body, status) in [
        (
            "lower_case",
            json!({ "value": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "EMPTY",
            json!({ "value": "" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "BIG",
            json!({ "value": "x".repeat(20_000) }),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let response = app
            .call(
                Method::PUT,
                &format!("/api/secrets/{name}"),
                Some(&token),
                Some(body),
            )
            .await;
        expect_error(response, status, name).await;
    }
}

#[tokio::test]
async fn limits_per_user_and_in_total_hold_under_concurrency() {
    let app = spawn_app_with(|c| {
        c.limits.max_per_user = 2;
        c.limits.max_total = 3;
    })
    .await;
    let ivy = user(&app, "ivy").await;
    app.create_instance(&ivy, json!({ "profile": "fake" }))
        .await;
    app.create_instance(&ivy, json!({ "profile": "fake" }))
        .await;
    let third = app
        .post("/api/instances", Some(&ivy), json!({ "profile": "fake" }))
        .await;
    let body: Value = third.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 2"),
        "{body}"
    );

    // Ten concurrent creates from fresh users: exactly one more fits under the total of 3.
    let mut tokens = Vec::new();
    for n in 0..10 {
        tokens.push(user(&app, &format!("racer{n}")).await);
    }
    let app = &app;
    let results = futures::future::join_all(
        tokens
            .iter()
            .map(|t| app.post("/api/instances", Some(t), json!({ "profile": "fake" }))),
    )
    .await;
    let created = results
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .count();
    let refused = results
        .iter()
        .filter(|r| r.status() == StatusCode::CONFLICT)
        .count();
    assert_eq!(
        (created, refused),
        (1, 9),
        "the total limit is never overshot"
    );
}

#[tokio::test]
async fn memory_admission_refuses_what_cannot_fit() {
    let app = spawn_app_with(|c| c.limits.memory_reserve_mb = 100_000_000).await;
    let token = user(&app, "jon").await;
    let response = app
        .post("/api/instances", Some(&token), json!({ "profile": "fake" }))
        .await;
    expect_error_saying(response, StatusCode::CONFLICT, "not enough memory").await;
}

#[tokio::test]
async fn someone_elses_instance_is_404_for_every_verb_but_admins_may_act() {
    let app = spawn_app().await;
    let owner = user(&app, "kay").await;
    let stranger = user(&app, "lou").await;
    let id = id(&app
        .create_instance(&owner, json!({ "profile": "fake" }))
        .await);
    let verbs = [
        (Method::GET, format!("/api/instances/{id}"), None),
        (
            Method::PATCH,
            format!("/api/instances/{id}"),
            Some(json!({ "name": "mine now" })),
        ),
        (Method::DELETE, format!("/api/instances/{id}"), None),
        (
            Method::POST,
            format!("/api/instances/{id}/stop"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/instances/{id}/restart"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/instances/{id}/command"),
            Some(json!({ "text": "hi" })),
        ),
        (Method::GET, format!("/api/instances/{id}/output"), None),
    ];
    for (method, path, body) in &verbs {
        let theirs = app
            .call(method.clone(), path, Some(&stranger), body.clone())
            .await;
        expect_error(
            theirs,
            StatusCode::NOT_FOUND,
            &format!("{method} {path} by a stranger"),
        )
        .await;
        let missing = path.replace(&id, "doesnotexist");
        let response = app
            .call(method.clone(), &missing, Some(&owner), body.clone())
            .await;
        expect_error(
            response,
            StatusCode::NOT_FOUND,
            &format!("{method} {missing}"),
        )
        .await;
    }
    let list: Vec<Value> = app
        .get("/api/instances", Some(&stranger))
        .await
        .json()
        .await
        .unwrap();
    assert!(list.is_empty());
    assert_eq!(
        app.instance(&owner, &id).await["state"],
        "running",
        "nothing happened to it"
    );

    let admin = app.admin_token().await;
    let all: Vec<Value> = app
        .get("/api/instances?all=true", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let stopped: Value = app
        .post(
            &format!("/api/instances/{id}/stop"),
            Some(&admin),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stopped["end_reason"], "admin");
}

#[tokio::test]
async fn bad_input_is_refused_and_never_reaches_a_shell() {
    let app = spawn_app().await;
    let token = user(&app, "max").await;
    let cases = [
        (
            json!({ "profile": "nope" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown profile",
        ),
        (
            json!({ "profile": "fake", "workdir": "../" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "workdir above the workspace",
        ),
        (
            json!({ "profile": "fake", "workdir": "/etc" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "absolute workdir",
        ),
        (
            json!({ "profile": "fake", "workdir": "missing" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing workdir",
        ),
        (
            json!({ "profile": "fake", "workdir": "escape" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "symlink out of the workspace",
        ),
        (
            json!({ "profile": "fake", "name": "bad\u{7}name" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "control character in name",
        ),
        (
            json!({ "profile": "fake", "name": "" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty name",
        ),
        (
            json!({ "profile": "fake", "extra": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field",
        ),
    ];
    let me: Value = app
        .get("/api/auth/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let workspace = app.data_dir().join(format!("users/{}/workspace", me["id"]));
    std::os::unix::fs::symlink("/etc", workspace.join("escape")).unwrap();
    for (body, status, what) in cases {
        expect_error(
            app.post("/api/instances", Some(&token), body).await,
            status,
            what,
        )
        .await;
    }
    assert!(
        app.get("/api/instances", Some(&token))
            .await
            .json::<Vec<Value>>()
            .await
            .unwrap()
            .is_empty()
    );

    std::fs::create_dir(workspace.join("project")).unwrap();
    let marker = app.data_dir().join("pwned");
    let name = format!("$(touch {}); `id`", marker.display());
    let instance = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "workdir": "project", "name": name }),
        )
        .await;
    assert_eq!(instance["name"], name.as_str(), "names are stored as given");
    let id = id(&instance);
    app.wait_for_output(&token, &id, "project").await;
    let text = format!("$(touch {}); echo ; rm -rf /tmp/nothing", marker.display());
    app.command(&token, &id, json!({ "text": text })).await;
    app.wait_for_output(&token, &id, "you said: $(touch").await;
    assert!(!marker.exists(), "text was typed, not run by a shell");

    let huge = app
        .command(&token, &id, json!({ "text": "x".repeat(1_000_000) }))
        .await;
    expect_error(huge, StatusCode::PAYLOAD_TOO_LARGE, "1 MB command").await;
    let key = app
        .command(&token, &id, json!({ "keys": ["C-c; kill-server"] }))
        .await;
    expect_error(key, StatusCode::UNPROCESSABLE_ENTITY, "unknown key").await;
    let ctrl_c = app
        .command(&token, &id, json!({ "keys": ["ctrl-c"], "enter": false }))
        .await;
    assert_eq!(ctrl_c.status(), StatusCode::NO_CONTENT);
    let bad_lines = app
        .get(
            &format!("/api/instances/{id}/output?lines=-5"),
            Some(&token),
        )
        .await;
    expect_error(bad_lines, StatusCode::BAD_REQUEST, "negative lines").await;
}

#[tokio::test]
async fn deleting_a_user_stops_their_instances() {
    let app = spawn_app().await;
    let password = "ned-password-1";
    let user_id = app.create_user("ned", password).await;
    let token = app.token("ned", password).await;
    let id = id(&app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await);
    let admin = app.admin_token().await;
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/admin/users/{user_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !tmux_sessions(&app, user_id)
            .await
            .iter()
            .any(|s| s.contains(&id)),
        "the agent was stopped"
    );
}

#[tokio::test]
async fn hook_reports_count_only_with_the_instances_current_token() {
    let app = spawn_app().await;
    let token = user(&app, "ora").await;
    let first = id(&app
        .create_instance(&token, json!({ "profile": "shell" }))
        .await);
    let other = id(&app
        .create_instance(&token, json!({ "profile": "shell" }))
        .await);
    let read_env = |id: String| {
        let app = &app;
        let token = token.clone();
        async move {
            app.command(&token, &id, json!({ "text": "echo \"URL=$POCKETDEV_HOOK_URL TOKEN=$POCKETDEV_HOOK_TOKEN END\"" })).await;
            let screen = app.wait_for_output(&token, &id, "END\n").await;
            let line = screen
                .lines()
                .rev()
                .find(|l| l.starts_with("URL="))
                .unwrap()
                .to_owned();
            let url = line
                .split_whitespace()
                .next()
                .unwrap()
                .trim_start_matches("URL=")
                .to_owned();
            let hook = line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .trim_start_matches("TOKEN=")
                .to_owned();
            (url, hook)
        }
    };
    let (url, hook) = read_env(first.clone()).await;
    let (_, other_hook) = read_env(other.clone()).await;
    assert_eq!(url, app.url(&format!("/api/instances/{first}/hooks")));
    let session = "8c2a3f1e-9b7d-4c6e-a5f4-0d1e2b3c4d5e";
    let report = |bearer: String, body: Value| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(bearer)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let event =
        json!({ "hook_event_name": "SessionStart", "source": "clear", "session_id": session });

    for (bearer, what) in [
        (other_hook, "another instance's token"),
        ("forged".to_owned(), "a made-up token"),
    ] {
        expect_error(
            report(bearer, event.clone()).await,
            StatusCode::UNAUTHORIZED,
            what,
        )
        .await;
    }
    let bad = json!({ "hook_event_name": "SessionStart", "session_id": "../../etc" });
    expect_error(
        report(hook.clone(), bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not a UUID",
    )
    .await;
    assert!(app.instance(&token, &first).await["agent_session_id"].is_null());

    assert_eq!(
        report(hook.clone(), event.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.instance(&token, &first).await["agent_session_id"],
        session
    );
    let other_event =
        json!({ "hook_event_name": "PreToolUse", "session_id": session, "tool_name": "Bash" });
    assert_eq!(
        report(hook.clone(), other_event).await.status(),
        StatusCode::NO_CONTENT,
        "other events are accepted"
    );

    // A restart issues a new token; the old one stops working.
    app.post(
        &format!("/api/instances/{first}/restart"),
        Some(&token),
        json!({}),
    )
    .await;
    expect_error(
        report(hook, event).await,
        StatusCode::UNAUTHORIZED,
        "the previous start's token",
    )
    .await;
}

#[tokio::test]
async fn admins_exceed_the_per_user_limit_only_when_configured() {
    for exempt in [false, true] {
        let app = spawn_app_with(|c| {
            c.limits.max_per_user = 1;
            c.limits.admins_exempt = exempt;
        })
        .await;
        let admin = app.admin_token().await;
        app.create_instance(&admin, json!({ "profile": "fake" }))
            .await;
        let second = app
            .post("/api/instances", Some(&admin), json!({ "profile": "fake" }))
            .await;
        let expected = if exempt {
            StatusCode::CREATED
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(second.status(), expected, "admins_exempt = {exempt}");
    }
}

#[tokio::test]
async fn sessions_without_a_record_are_left_alone_or_killed_as_configured() {
    for kill in [false, true] {
        let app = spawn_app_with(|c| c.tmux.kill_orphans = kill).await;
        let token = user(&app, "pia").await;
        app.create_instance(&token, json!({ "profile": "fake" }))
            .await; // the server is running
        let owner = app.user_id(&token).await;
        let created = app
            .tmux_client(owner)
            .args(["new-session", "-d", "-s", "pd-orphan", "--", "sleep", "600"])
            .status()
            .await
            .unwrap();
        assert!(created.success());
        let orphan_alive = || async {
            tmux_sessions(&app, owner)
                .await
                .contains(&"pd-orphan".to_owned())
        };
        if kill {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while orphan_alive().await {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the orphan was never killed"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else {
            // Nothing to wait for but time: two reconciliation passes must leave it running.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            assert!(
                orphan_alive().await,
                "an orphan is only reported unless kill_orphans is set"
            );
        }
    }
}

#[tokio::test]
async fn only_the_newest_ended_instances_are_kept() {
    let app = spawn_app_with(|c| c.limits.ended_per_user = 2).await;
    let token = user(&app, "max").await;
    let mut ended = Vec::new();
    for _ in 0..3 {
        let instance = app
            .create_instance(&token, json!({ "profile": "fake" }))
            .await;
        let stopped = app
            .post(
                &format!("/api/instances/{}/stop", id(&instance)),
                Some(&token),
                json!({}),
            )
            .await;
        assert_eq!(stopped.status(), StatusCode::OK);
        ended.push(id(&instance));
        // Ended at distinct times.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let running = id(&app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await);
    // Housekeeping forgets the oldest at its first round after a start.
    let app = app.restart().await;
    let token = app.token("max", "max-password-1").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed: Vec<Value> = app
            .get("/api/instances", Some(&token))
            .await
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = listed.iter().filter_map(|i| i["id"].as_str()).collect();
        if !ids.contains(&ended[0].as_str()) {
            assert!(
                ids.contains(&ended[1].as_str()) && ids.contains(&ended[2].as_str()),
                "{ids:?}"
            );
            assert!(
                ids.contains(&running.as_str()),
                "a running instance is never forgotten"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the oldest ended instance stays: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_tmux_server_that_dies_is_said_so_and_started_anew() {
    let app = spawn_app().await;
    let token = user(&app, "ida").await;
    let owner = app.user_id(&token).await;
    let agents = [
        id(&app
            .create_instance(&token, json!({ "profile": "fake" }))
            .await),
        id(&app
            .create_instance(&token, json!({ "profile": "shell" }))
            .await),
    ];
    // As a crash would: the server gone at once, sessions and all.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(app.tmux_server_pid(owner).await).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    for agent in &agents {
        let ended = app.wait_for_state(&token, agent, "exited").await;
        assert_eq!(ended["end_reason"], "server_gone", "{ended}");
    }
    // Admins are told, once for the server.
    let admin = app.admin_token().await;
    let alerts: Vec<Value> = app
        .get("/api/system/alerts", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let told: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["kind"] == "tmux_server")
        .collect();
    assert_eq!(told.len(), 1, "{alerts:?}");
    assert_eq!(told[0]["value"], 2.0, "{alerts:?}");
    // The next agent starts a new server.
    let next = id(&app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await);
    app.command(&token, &next, json!({ "text": "still here" }))
        .await;
    app.wait_for_output(&token, &next, "you said: still here")
        .await;
}
