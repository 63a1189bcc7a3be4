//! What agents spend: the real Claude Code CLI against the mock Messages API, whose every reply
//! reports 12 input and 8 output tokens; the figures are read from the CLI's own transcript.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::claude::{PROFILE, app_with_claude, claude_binary};
use crate::helpers::TestApp;
use crate::mock_anthropic::MockAnthropic;

/// Tokens of one mock reply (12 in, 8 out) and its cost at Sonnet 4.5's $3 / $15 per million.
const REPLY_TOKENS: i64 = 20;
const REPLY_COST: f64 = (12.0 * 3.0 + 8.0 * 15.0) / 1e6;

async fn usage(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/api/instances/{id}/usage"), Some(token))
        .await
        .json()
        .await
        .unwrap()
}

/// Waits until the instance's total reaches `tokens`, then checks it stays there a few passes
/// (nothing counted twice).
async fn expect_total(app: &TestApp, token: &str, id: &str, tokens: i64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = usage(app, token, id).await;
        if now["total"]["tokens"] == tokens {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage never reached {tokens} tokens: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Three more passes of the reader (one a second here).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = usage(app, token, id).await;
    assert_eq!(settled["total"]["tokens"], tokens, "{settled}");
    settled
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap_or(f64::NAN) - b).abs() < 1e-9
}

async fn turn(app: &TestApp, token: &str, id: &str, text: &str) {
    app.command(token, id, json!({ "text": text })).await;
    app.wait_for_output_within(
        token,
        id,
        &format!("I read \"{text}\""),
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test]
async fn each_reply_counts_once_per_instance_account_and_day_across_a_restart_and_a_clear() {
    let Some(claude) = claude_binary() else {
        eprintln!(
            "SKIPPED: the Claude Code CLI is not installed (run scripts/test.sh, which installs it into .test-tools/)"
        );
        return;
    };
    let mock = MockAnthropic::start().await;
    let (app, token) = app_with_claude(&claude, &mock, |c| c.monitor.interval_secs = 1).await;
    app.create_user("dana", "dana-password-1").await;
    let dana = app.token("dana", "dana-password-1").await;

    let instance = app
        .create_instance(&token, json!({ "profile": PROFILE }))
        .await;
    let id = instance["id"].as_str().unwrap().to_owned();
    app.wait_for_output_within(&token, &id, "? for shortcuts", Duration::from_secs(30))
        .await;
    for text in ["First turn", "Second turn", "Third turn"] {
        turn(&app, &token, &id, text).await;
    }

    // The instance: three replies, exactly.
    let mine = expect_total(&app, &token, &id, 3 * REPLY_TOKENS).await;
    assert_eq!(mine["measured"], true);
    assert_eq!(mine["currency"], "USD");
    assert_eq!(mine["total"]["input_tokens"], 36);
    assert_eq!(mine["total"]["output_tokens"], 24);
    assert!(close(&mine["total"]["cost"], 3.0 * REPLY_COST), "{mine}");
    assert_eq!(mine["today"]["tokens"], 3 * REPLY_TOKENS);
    assert_eq!(mine["conversation"]["tokens"], 3 * REPLY_TOKENS);

    // The account, by model and by instance; another account spent nothing.
    let account: Value = app
        .get("/api/usage", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(account["today"]["tokens"], 3 * REPLY_TOKENS, "{account}");
    assert_eq!(account["month"]["tokens"], 3 * REPLY_TOKENS);
    assert_eq!(account["days"].as_array().unwrap().len(), 30);
    assert_eq!(account["days"][29]["tokens"], 3 * REPLY_TOKENS);
    assert_eq!(account["by_model"][0]["model"], PROFILE);
    assert_eq!(account["by_model"][0]["priced"], true);
    assert_eq!(account["by_instance"][0]["instance_id"], id.as_str());
    let theirs: Value = app
        .get("/api/usage", Some(&dana))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["month"]["tokens"], 0, "{theirs}");
    let forbidden = app
        .get(&format!("/api/instances/{id}/usage"), Some(&dana))
        .await;
    assert_eq!(forbidden.status(), StatusCode::NOT_FOUND);

    // The admin sees every account, and can export it.
    let admin = app.admin_token().await;
    let all: Value = app
        .get("/api/admin/usage", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let cleo = all["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["username"] == "cleo")
        .expect("cleo is listed");
    assert_eq!(cleo["today"]["tokens"], 3 * REPLY_TOKENS);
    let csv = app.get("/api/admin/usage?format=csv", Some(&admin)).await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    assert!(csv.contains(&format!(",cleo,{id},")), "{csv}");
    let metrics = app
        .get("/metrics", Some(&admin))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "pocketdev_tokens_total{{account=\"cleo\",model=\"{PROFILE}\",kind=\"output\"}} 24"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("pocketdev_cost_total{account=\"cleo\""));
    assert_eq!(
        app.get("/api/admin/usage", Some(&token)).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/admin/usage?format=xml", Some(&admin))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );

    // `/clear` starts another conversation: it counts from zero, the instance adds up.
    app.command(&token, &id, json!({ "text": "/clear" })).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    turn(&app, &token, &id, "After the clear").await;
    let after = expect_total(&app, &token, &id, 4 * REPLY_TOKENS).await;
    assert_eq!(after["conversation"]["tokens"], REPLY_TOKENS, "{after}");

    // A restart of pocketdev reads on from where it stopped (the test server comes back on
    // another port, which the running agent's hooks do not know: so the clear came first).
    let app = app.restart().await;
    let token = app.token("cleo", "cleo-password-1").await;
    let dana = app.token("dana", "dana-password-1").await;
    expect_total(&app, &token, &id, 4 * REPLY_TOKENS).await;

    // Lines the agent plants in its own transcript: malformed ones are skipped, an absurd
    // figure is cut to its bound, and all of it counts toward this account only.
    let session = app.instance(&token, &id).await["agent_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user_id = app.user_id(&token).await;
    let projects = app
        .data_dir()
        .join(format!("users/{user_id}/home/.claude/projects"));
    let transcript = std::fs::read_dir(&projects)
        .unwrap()
        .flatten()
        .map(|d| d.path().join(format!("{session}.jsonl")))
        .find(|p| p.exists())
        .expect("the conversation's transcript");
    let planted = [
        "not json at all",
        r#"{"type":"assistant","message":{"id":"planted-1","model":"claude-sonnet-4-5","usage":{"input_tokens":-4}}}"#,
        r#"{"type":"assistant","message":{"id":"planted-2","model":"gpt-x","usage":{"output_tokens":99999999999999}}}"#,
    ]
    .join("\n")
        + "\n";
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&transcript)
        .unwrap()
        .write_all(planted.as_bytes())
        .unwrap();
    let planted = expect_total(&app, &token, &id, 4 * REPLY_TOKENS + 10_000_000).await;
    assert_eq!(planted["total"]["unpriced_tokens"], 10_000_000, "{planted}");
    let theirs: Value = app
        .get("/api/usage", Some(&dana))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["month"]["tokens"], 0);
    let health = app.call(Method::GET, "/api/health", None, None).await;
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_spent_budget_stops_the_quiet_agent_and_refuses_new_ones_until_lifted() {
    let Some(claude) = claude_binary() else {
        eprintln!(
            "SKIPPED: the Claude Code CLI is not installed (run scripts/test.sh, which installs it into .test-tools/)"
        );
        return;
    };
    let mock = MockAnthropic::start().await;
    let (app, token) = app_with_claude(&claude, &mock, |c| c.monitor.interval_secs = 1).await;
    let admin = app.admin_token().await;
    let cleo_id = app.user_id(&token).await;

    // Bad budgets are refused in words.
    let put = |body: Value, who: String| {
        let app = &app;
        async move {
            app.call(Method::PUT, "/api/admin/budgets", Some(&who), Some(body))
                .await
        }
    };
    let refused = put(
        json!({ "user_id": cleo_id, "period": "day" }),
        admin.clone(),
    )
    .await;
    crate::helpers::expect_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "no limit").await;
    let refused = put(
        json!({ "user_id": cleo_id, "period": "day", "cost": -1 }),
        admin.clone(),
    )
    .await;
    crate::helpers::expect_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "negative").await;
    let refused = put(
        json!({ "user_id": 9999, "period": "day", "cost": 1 }),
        admin.clone(),
    )
    .await;
    crate::helpers::expect_error(refused, StatusCode::NOT_FOUND, "no such account").await;
    let refused = put(
        json!({ "user_id": cleo_id, "period": "week", "cost": 1 }),
        admin.clone(),
    )
    .await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    let refused = put(json!({ "period": "day", "cost": 1 }), token.clone()).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // Two mock replies cost 312 millionths of a dollar: a budget of 300 is spent by the second.
    let budget: Value = put(
        json!({ "user_id": cleo_id, "period": "day", "cost": 0.0003 }),
        admin.clone(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(budget["state"], "ok", "{budget}");
    let budget_id = budget["id"].as_i64().unwrap();

    let instance = app
        .create_instance(&token, json!({ "profile": PROFILE }))
        .await;
    let id = instance["id"].as_str().unwrap().to_owned();
    app.wait_for_output_within(&token, &id, "? for shortcuts", Duration::from_secs(30))
        .await;
    turn(&app, &token, &id, "First turn").await;
    expect_total(&app, &token, &id, REPLY_TOKENS).await;
    assert_eq!(app.instance(&token, &id).await["state"], "running");
    turn(&app, &token, &id, "Second turn").await;

    // Once the reader has the second reply, the agent (at its prompt) is paused: Claude Code
    // resumes, so it is suspended, its conversation kept.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let paused = loop {
        let now = app.instance(&token, &id).await;
        if now["state"] == "suspended" {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent over its budget was not paused: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(paused["suspend_reason"], "budget", "{paused}");

    // New agents and restarts are refused, saying which budget and when it starts again.
    let usage: Value = app
        .get("/api/usage", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["budgets"][0]["state"], "exceeded", "{usage}");
    let refused = app
        .post(
            "/api/instances",
            Some(&token),
            json!({ "profile": PROFILE }),
        )
        .await;
    crate::helpers::expect_error_saying(refused, StatusCode::CONFLICT, "daily budget").await;
    for way_back in ["restart", "resume"] {
        let refused = app
            .post(
                &format!("/api/instances/{id}/{way_back}"),
                Some(&token),
                json!({}),
            )
            .await;
        crate::helpers::expect_error_saying(refused, StatusCode::CONFLICT, "starts again at").await;
    }
    let typed = app
        .command(&token, &id, json!({ "text": "one more turn" }))
        .await;
    crate::helpers::expect_error_saying(typed, StatusCode::CONFLICT, "starts again at").await;
    assert_eq!(app.instance(&token, &id).await["state"], "suspended");

    // The admins were alerted.
    let alerts: Value = app
        .get("/api/system/alerts", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "budget:cleo"),
        "{alerts}"
    );

    // Lifted for today, agents may start again.
    let lifted: Value = app
        .post(
            &format!("/api/admin/budgets/{budget_id}/lift"),
            Some(&admin),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(lifted["state"], "lifted", "{lifted}");
    let resumed = app
        .post(
            &format!("/api/instances/{id}/resume"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(resumed.status(), StatusCode::OK);
    let removed = app
        .call(
            Method::DELETE,
            &format!("/api/admin/budgets/{budget_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn another_agents_json_lines_are_read_through_its_profiles_pointers() {
    // An agent that logs its usage as JSON lines in a file of its own, then waits.
    let script = r#"mkdir -p "$HOME/.agent-log" && printf '%s\n' '{"u":{"in":100,"out":7}}' 'not json' '{"u":{"in":50,"out":3}}' >> "$HOME/.agent-log/run-$$.jsonl" && exec sleep 3600"#;
    let app = crate::helpers::spawn_app_with(|c| {
        c.monitor.interval_secs = 1;
        c.limits.max_per_user = 5;
        let logger = |usage| pocketdev::instances::profiles::Profile {
            name: "Logger".into(),
            command: "bash".into(),
            args: vec!["-c".into(), script.into()],
            memory_mb: 10,
            usage,
            ..pocketdev::instances::profiles::Profile::default()
        };
        c.profiles.insert(
            "logger".into(),
            logger(Some(
                toml::from_str(
                    r#"reader = "jsonl"
                    files = ".agent-log/*.jsonl"
                    input = "/u/in"
                    output = "/u/out"
                    model_name = "logger-1""#,
                )
                .unwrap(),
            )),
        );
        c.profiles.insert("silent".into(), logger(None));
    })
    .await;
    app.create_user("lou", "lou-password-1").await;
    let token = app.token("lou", "lou-password-1").await;
    let first = app
        .create_instance(&token, json!({ "profile": "logger" }))
        .await;
    let first = first["id"].as_str().unwrap().to_owned();
    let measured = expect_total(&app, &token, &first, 160).await;
    assert_eq!(measured["measured"], true);
    // No price for this model: tokens only, and said so.
    assert_eq!(measured["total"]["unpriced_tokens"], 160, "{measured}");
    assert_eq!(measured["total"]["cost"], 0.0);

    // A second instance of the profile counts its own file, not the first one's again.
    let second = app
        .create_instance(&token, json!({ "profile": "logger" }))
        .await;
    let second = second["id"].as_str().unwrap().to_owned();
    expect_total(&app, &token, &second, 160).await;
    assert_eq!(usage(&app, &token, &first).await["total"]["tokens"], 160);
    let account: Value = app
        .get("/api/usage", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(account["today"]["tokens"], 320, "{account}");
    assert_eq!(account["by_model"][0]["model"], "logger-1");
    assert_eq!(account["by_model"][0]["priced"], false);

    // A profile that names no source is not measured: not 0, unknown.
    let silent = app
        .create_instance(&token, json!({ "profile": "silent" }))
        .await;
    let silent = usage(&app, &token, silent["id"].as_str().unwrap()).await;
    assert_eq!(silent["measured"], false, "{silent}");
}
