//! The monitor against real processes: memory of a process tree, idle stops, status, memory
//! admission and the admin's system view.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_error, fake_profile, spawn_app_with};

async fn monitored(customize: impl FnOnce(&mut pocketdev::Config)) -> (TestApp, String) {
    let app = spawn_app_with(|config| {
        config.monitor.interval_secs = 1;
        config.limits.max_per_user = 10;
        config.limits.max_total = 10;
        customize(config);
    })
    .await;
    let token = app.admin_token().await;
    (app, token)
}

async fn start(app: &TestApp, token: &str, profile: &str) -> String {
    let id = app
        .create_instance(token, json!({ "profile": profile }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_output(token, &id, "agent>").await;
    id
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
async fn memory_and_children_of_an_agent_are_measured() {
    let (app, token) = monitored(|_| {}).await;
    let id = start(&app, &token, "fake").await;
    app.command(&token, &id, json!({ "text": "alloc" })).await;
    app.wait_for_output(&token, &id, "allocated 100000000 bytes")
        .await;
    wait_until(&app, &token, &id, "measured at 100 MB", |i| {
        i["memory_bytes"].as_u64().unwrap_or(0) >= 100_000_000
    })
    .await;

    app.command(&token, &id, json!({ "text": "child" })).await;
    app.wait_for_output(&token, &id, "child started").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats: Value = app
            .get("/api/system/stats", Some(&token))
            .await
            .json()
            .await
            .unwrap();
        let mine = stats["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id.as_str())
            .cloned();
        let processes = mine
            .as_ref()
            .and_then(|i| i["usage"]["processes"].as_u64())
            .unwrap_or(0);
        // The launcher execs the agent; the agent and its `sleep` child make two.
        if processes >= 2 {
            let host = &stats["host"];
            assert!(
                host["memory_total"].as_u64().unwrap() > 0
                    && host["disk_total"].as_u64().unwrap() > 0
            );
            assert_eq!(stats["users"][0]["instances"], 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the child was never counted: {mine:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let history: Value = app
        .get("/api/system/history?minutes=5", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let points = history.as_array().unwrap();
    assert!(points.len() >= 2, "{history}");
    assert!(points.iter().any(|p| {
        p["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i[0] == id.as_str())
    }));
    let response = app.get("/api/system/history?minutes=0", Some(&token)).await;
    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "minutes out of range",
    )
    .await;

    // The system view is for admins only.
    app.create_user("erin", "erin-password-12").await;
    let erin = app.token("erin", "erin-password-12").await;
    expect_error(
        app.get("/api/system/stats", Some(&erin)).await,
        StatusCode::FORBIDDEN,
        "non-admin",
    )
    .await;
}

#[tokio::test]
async fn an_idle_instance_is_stopped_and_a_busy_one_is_not() {
    let (app, token) = monitored(|config| config.limits.idle_timeout_minutes = 0.05).await;
    let quiet = start(&app, &token, "fake").await;
    let busy = start(&app, &token, "fake").await;
    app.command(&token, &busy, json!({ "text": "spin" })).await;
    let working = wait_until(&app, &token, &busy, "working", |i| i["status"] == "working").await;
    assert_eq!(working["state"], "running");

    let stopped = wait_until(&app, &token, &quiet, "stopped as idle", |i| {
        i["state"] == "stopped"
    })
    .await;
    assert_eq!(stopped["end_reason"], "idle");
    assert_eq!(
        stopped["status"],
        Value::Null,
        "status is only for running instances"
    );
    let busy_now = app.instance(&token, &busy).await;
    assert_eq!(
        busy_now["state"], "running",
        "an agent that prints is never idle"
    );
    assert_eq!(busy_now["status"], "working");
}

/// A quiet program that is not Claude Code is idle, not "waiting for you": nothing says it
/// waits for anyone (a shell at its prompt), so the next-waiting button skips it.
#[tokio::test]
async fn a_quiet_agent_is_idle() {
    let (app, token) = monitored(|_| {}).await;
    let id = start(&app, &token, "fake").await;
    let idle = wait_until(&app, &token, &id, "idle", |i| i["status"] == "idle").await;
    assert!(idle["last_activity_at"].as_i64().is_some());
}

#[tokio::test]
async fn admission_counts_what_running_agents_really_use() {
    let (app, token) = monitored(|config| {
        // The hungry agent measures 100 MB or more (bash keeps some of what it freed, up to
        // 190 MB seen): a 310 MB newcomer never fits beside it in 400, a 10 MB one does.
        config.limits.memory_budget_mb = 400;
        let mut big = fake_profile();
        big.name = "Big fake".into();
        big.memory_mb = 310;
        config.profiles.insert("fake-big".into(), big);
    })
    .await;
    let hungry = start(&app, &token, "fake").await;
    // Its estimate is 10 MB, but it really uses 100 or more: a 310 MB newcomer does not fit.
    app.command(&token, &hungry, json!({ "text": "alloc" }))
        .await;
    app.wait_for_output(&token, &hungry, "allocated").await;
    wait_until(&app, &token, &hungry, "measured", |i| {
        i["memory_bytes"].as_u64().unwrap_or(0) >= 100_000_000
    })
    .await;

    let response = app
        .post(
            "/api/instances",
            Some(&token),
            json!({ "profile": "fake-big", "name": "newcomer" }),
        )
        .await;
    let message = {
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let body: Value = response.json().await.unwrap();
        body["error"]["message"].as_str().unwrap().to_owned()
    };
    assert!(message.contains("not enough memory"), "{message}");
    assert!(
        message.contains("Fake agent ("),
        "the message names what uses the memory: {message}"
    );
    assert!(message.contains("400 MB"), "{message}");

    // A small one still fits beside it.
    let response = app
        .post("/api/instances", Some(&token), json!({ "profile": "fake" }))
        .await;
    let status = response.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn a_crossed_threshold_raises_an_alert_and_calls_the_webhook() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let (app, token) = monitored(|config| {
        // Any disk is more than 1 % used.
        config.alerts.disk_percent = 1.0;
        config.alerts.grace_secs = 0;
        config.alerts.webhook_url = Some(url);
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats: Value = app
            .get("/api/system/stats", Some(&token))
            .await
            .json()
            .await
            .unwrap();
        let delivered = received.lock().unwrap().clone();
        // A loaded test machine may cross the CPU or memory threshold too; only disk is ours.
        let disk = |list: &[Value]| -> Vec<Value> {
            list.iter()
                .filter(|a| a["kind"] == "disk")
                .cloned()
                .collect()
        };
        let alerts = disk(stats["alerts"].as_array().unwrap());
        let sent = disk(&delivered);
        if !alerts.is_empty() && !sent.is_empty() {
            assert_eq!(alerts[0]["cleared_at"], Value::Null);
            assert_eq!(sent[0]["event"], "raised");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no alert: {stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One alert, however many samples stay over the line.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all: Value = app
        .get("/api/system/alerts", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let disk_alerts = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "disk")
        .count();
    assert_eq!(disk_alerts, 1, "{all}");
    let disk_sent = received
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "disk")
        .count();
    assert_eq!(disk_sent, 1);
}

/// Checks the Prometheus/OpenMetrics text format line by line; returns the samples.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    assert!(text.trim_end().ends_with("# EOF"), "ends with # EOF");
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ")
            || line.starts_with("# TYPE ")
            || line.starts_with("# UNIT ")
            || line == "# EOF"
        {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample line: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "labels close in {line}");
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        samples.push((series.to_owned(), value));
    }
    samples
}

#[tokio::test]
async fn metrics_are_prometheus_text_for_admins_only() {
    let (app, token) = monitored(|_| {}).await;
    let id = start(&app, &token, "fake").await;
    app.login("admin", "not-the-password").await;
    wait_until(&app, &token, &id, "measured", |i| {
        i["memory_bytes"].as_u64().unwrap_or(0) > 0
    })
    .await;

    let response = app.get("/metrics", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics")
    );
    let samples = parse_metrics(&response.text().await.unwrap());
    let value = |prefix: &str| {
        samples
            .iter()
            .find(|(series, _)| series.starts_with(prefix))
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {prefix}"))
    };
    assert_eq!(value("pocketdev_instances{state=\"running\"}"), 1.0);
    assert!(
        value(&format!(
            "pocketdev_instance_memory_bytes{{instance=\"{id}\""
        )) > 0.0
    );
    assert!(value("pocketdev_sign_in_failures_total") >= 1.0);
    assert!(value("pocketdev_host{figure=\"memory_available_bytes\"}") > 0.0);
    assert!(
        value(
            "pocketdev_http_requests_total{method=\"GET\",route=\"/api/instances/{id}\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(
        value(
            "pocketdev_http_request_duration_seconds_count{method=\"POST\",route=\"/api/instances\"}"
        ) >= 1.0
    );
    value("pocketdev_terminal_viewers");

    expect_error(
        app.get("/metrics", None).await,
        StatusCode::UNAUTHORIZED,
        "anonymous",
    )
    .await;
    app.create_user("frank", "frank-password-1").await;
    let frank = app.token("frank", "frank-password-1").await;
    expect_error(
        app.get("/metrics", Some(&frank)).await,
        StatusCode::FORBIDDEN,
        "non-admin",
    )
    .await;

    let open =
        spawn_app_with(|config| config.metrics.allow_from = vec!["127.0.0.1/32".parse().unwrap()])
            .await;
    assert_eq!(
        open.get("/metrics", None).await.status(),
        StatusCode::OK,
        "a configured address needs no sign-in"
    );
}

#[tokio::test]
async fn status_goes_from_working_to_idle_to_needs_permission_to_exited() {
    let (app, token) = monitored(|_| {}).await;
    let id = start(&app, &token, "fake").await;
    let mut term = app.term(&token, &id).await;

    app.command(&token, &id, json!({ "text": "think" })).await;
    wait_until(&app, &token, &id, "working", |i| i["status"] == "working").await;
    wait_until(&app, &token, &id, "idle", |i| i["status"] == "idle").await;

    app.command(&token, &id, json!({ "text": "ask" })).await;
    let asking = wait_until(&app, &token, &id, "asking", |i| {
        i["status"] == "needs_permission"
    })
    .await;
    assert_eq!(asking["status_reason"], "Overwrite notes.txt? [y/N]");
    // The dashboard's one-line preview: the last words on the screen.
    assert_eq!(asking["preview"], "Overwrite notes.txt? [y/N]");
    // Viewers are told too.
    let pushed = term
        .wait_message(|m| m["type"] == "status" && m["status"] == "needs_permission")
        .await;
    assert_eq!(pushed["reason"], "Overwrite notes.txt? [y/N]");
    // A viewer opening the terminal now learns it at once, right after `hello`.
    let mut newcomer = app.term(&token, &id).await;
    // (Usually before the snapshot, which `term` waits for.)
    let told = match newcomer.messages.iter().find(|m| m["type"] == "status") {
        Some(told) => told.clone(),
        None => newcomer.wait_message(|m| m["type"] == "status").await,
    };
    assert_eq!(
        (told["status"].as_str(), told["reason"].as_str()),
        (Some("needs_permission"), Some("Overwrite notes.txt? [y/N]"))
    );
    assert_eq!(newcomer.messages[0]["type"], "hello");
    drop(newcomer);

    app.command(&token, &id, json!({ "text": "y" })).await;
    app.wait_for_output(&token, &id, "answered y").await;
    wait_until(&app, &token, &id, "idle again", |i| i["status"] == "idle").await;

    app.command(&token, &id, json!({ "text": "exit" })).await;
    let ended = wait_until(&app, &token, &id, "exited", |i| i["state"] == "exited").await;
    assert_eq!(ended["status"], Value::Null);
}

#[tokio::test]
async fn hook_reports_set_the_status_and_forged_ones_are_refused() {
    let (app, token) = monitored(|_| {}).await;
    let id = start(&app, &token, "fake").await;
    app.command(&token, &id, json!({ "text": "hooktoken" }))
        .await;
    let screen = app.wait_for_output(&token, &id, "hook-token=").await;
    let hook_token = screen
        .lines()
        .find_map(|l| l.strip_prefix("hook-token="))
        .unwrap()
        .trim()
        .to_owned();
    let report = |id: String, token: String, event: Value| {
        let url = app.url(&format!("/api/instances/{id}/hooks"));
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&event)
                .send()
                .await
                .unwrap()
        }
    };
    let response = report(
        id.clone(),
        hook_token.clone(),
        json!({ "hook_event_name": "PermissionRequest", "tool_name": "Bash" }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let asking = wait_until(&app, &token, &id, "asking", |i| {
        i["status"] == "needs_permission"
    })
    .await;
    assert_eq!(asking["status_reason"], "Bash wants permission");
    report(
        id.clone(),
        hook_token.clone(),
        json!({ "hook_event_name": "Stop" }),
    )
    .await;
    wait_until(&app, &token, &id, "waiting", |i| i["status"] == "waiting").await;

    // Another account's agent cannot speak for this instance, nor can a made-up token.
    app.create_user("grace", "grace-password-1").await;
    let grace = app.token("grace", "grace-password-1").await;
    let theirs = start(&app, &grace, "fake").await;
    app.command(&grace, &theirs, json!({ "text": "hooktoken" }))
        .await;
    let screen = app.wait_for_output(&grace, &theirs, "hook-token=").await;
    let their_token = screen
        .lines()
        .find_map(|l| l.strip_prefix("hook-token="))
        .unwrap()
        .trim()
        .to_owned();
    let forged = report(
        id.clone(),
        their_token,
        json!({ "hook_event_name": "PermissionRequest", "tool_name": "rm" }),
    )
    .await;
    expect_error(forged, StatusCode::UNAUTHORIZED, "another instance's token").await;
    let forged = report(
        id.clone(),
        "made-up".into(),
        json!({ "hook_event_name": "UserPromptSubmit" }),
    )
    .await;
    expect_error(forged, StatusCode::UNAUTHORIZED, "made-up token").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.instance(&token, &id).await["status"],
        "waiting",
        "nothing forged took effect"
    );
}
