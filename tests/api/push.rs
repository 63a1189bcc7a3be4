//! Web Push against the mock push service: subscribing through the API, a permission question
//! delivered encrypted with its token, coalescing, withdrawal, the action token's rules, 410
//! forgetting a device, the allow-list, and the sign-in notice.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_error, spawn_app_with};
use crate::mock_push::{MockPush, Received};

const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

pub async fn push_app(customize: impl FnOnce(&mut pocketdev::Config)) -> TestApp {
    spawn_app_with(|config| {
        config.monitor.interval_secs = 1;
        config.limits.max_per_user = 10;
        config.limits.max_total = 10;
        config.push.subject = Some("mailto:ops@example.org".into());
        // The mock listens on loopback; nothing else is allowed.
        config.push.allowed_hosts = vec!["127.0.0.1".into()];
        customize(config);
    })
    .await
}

/// Subscribes a "browser" of the mock for the user of `token`, from a device of `user_agent`.
pub async fn subscribe(app: &TestApp, mock: &MockPush, token: &str, user_agent: &str) -> Value {
    let config: Value = app
        .get("/api/push/config", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(config["enabled"], true, "{config}");
    let subscription = mock.subscribe(config["public_key"].as_str().unwrap());
    let response = Client::new()
        .post(app.url("/api/push/subscriptions"))
        .bearer_auth(token)
        .header("user-agent", user_agent)
        .json(&json!({ "subscription": subscription }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn start(app: &TestApp, token: &str) -> String {
    let id = app
        .create_instance(token, json!({ "profile": "fake" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_output(token, &id, "agent>").await;
    id
}

async fn act(app: &TestApp, instance: &str, token: &str, choice: &str) -> reqwest::Response {
    app.post(
        "/api/push/act",
        None,
        json!({ "instance": instance, "token": token, "choice": choice }),
    )
    .await
}

fn check_permission(message: &Received, id: &str) -> String {
    let payload = &message.payload;
    assert_eq!(payload["kind"], "permission", "{payload}");
    assert_eq!(payload["instance"], id);
    assert_eq!(payload["url"], format!("#/t/{id}"));
    assert_eq!(payload["tag"], format!("instance-{id}"));
    assert_eq!(payload["question"]["text"], "Overwrite notes.txt? [y/N]");
    let choices: Vec<&str> = payload["question"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(choices, ["allow", "deny"]);
    assert_eq!(message.urgency.as_deref(), Some("high"));
    assert_eq!(message.topic.as_ref().map(String::len), Some(32));
    payload["token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn a_permission_question_is_pushed_encrypted_with_a_single_use_token() {
    let app = push_app(|_| {}).await;
    let mock = MockPush::start().await;
    let token = app.admin_token().await;
    let device = subscribe(&app, &mock, &token, ANDROID).await;
    assert_eq!(device["device"], "Chrome on Android");
    let id = start(&app, &token).await;

    app.command(&token, &id, json!({ "text": "ask" })).await;
    let asked = mock.next_of("permission").await;
    let first = check_permission(&asked, &id);
    // A stale Allow is worse than none: the push service keeps it as long as the token lives.
    assert_eq!(asked.ttl, app.config.push.action_token_ttl_secs);
    assert_eq!(asked.claims["sub"], "mailto:ops@example.org");

    // A [y/N] prompt is no dialog pocketdev reads: answered in words, and the token is spent.
    let code = expect_error(
        act(&app, &id, &first, "allow").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "a question that is no dialog",
    )
    .await;
    assert_eq!(code, "not_available");
    let code = expect_error(
        act(&app, &id, &first, "allow").await,
        StatusCode::CONFLICT,
        "used twice",
    )
    .await;
    assert_eq!(code, "token_used");
    let code = expect_error(
        act(&app, &id, "made-up", "allow").await,
        StatusCode::FORBIDDEN,
        "made up",
    )
    .await;
    assert_eq!(code, "invalid_token");

    // Answered in the terminal: the notification is withdrawn under the same topic.
    app.command(&token, &id, json!({ "text": "y" })).await;
    let cleared = mock.next_of("clear").await;
    assert_eq!(cleared.payload["tag"], format!("instance-{id}"));
    assert_eq!(cleared.topic, asked.topic, "one topic per instance");

    app.command(&token, &id, json!({ "text": "ask" })).await;
    let second = check_permission(&mock.next_of("permission").await, &id);
    assert_ne!(second, first);
    let other = start(&app, &token).await;
    let code = expect_error(
        act(&app, &other, &second, "allow").await,
        StatusCode::FORBIDDEN,
        "another instance",
    )
    .await;
    assert_eq!(code, "invalid_token");
    let code = expect_error(
        act(&app, &id, &second, "maybe").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not a choice",
    )
    .await;
    assert_eq!(code, "unknown_choice");
    // Answered elsewhere: the token that was refused above (and not spent) is withdrawn.
    app.command(&token, &id, json!({ "text": "n" })).await;
    mock.next_of("clear").await;
    let code = expect_error(
        act(&app, &id, &second, "allow").await,
        StatusCode::GONE,
        "withdrawn",
    )
    .await;
    assert_eq!(code, "token_expired");

    // The agent crashes: one notification says so, in place of the instance's others.
    app.command(&token, &id, json!({ "text": "fail" })).await;
    let crashed = mock.next_of("exited").await;
    assert_eq!(
        crashed.payload["title"].as_str().unwrap(),
        format!(
            "{} crashed",
            app.instance(&token, &id).await["name"].as_str().unwrap()
        )
    );
    assert_eq!(crashed.topic, asked.topic);

    // The browser unsubscribed: the push service answers 410 and the device is forgotten.
    mock.expire(device["endpoint"].as_str().unwrap());
    app.command(&token, &other, json!({ "text": "ask" })).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let devices: Value = app
            .get("/api/push/subscriptions", Some(&token))
            .await
            .json()
            .await
            .unwrap();
        if devices.as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never forgotten: {devices}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn action_tokens_expire() {
    let app = push_app(|config| config.push.action_token_ttl_secs = 1).await;
    let mock = MockPush::start().await;
    let token = app.admin_token().await;
    subscribe(&app, &mock, &token, ANDROID).await;
    let id = start(&app, &token).await;
    app.command(&token, &id, json!({ "text": "ask" })).await;
    let action = check_permission(&mock.next_of("permission").await, &id);
    // A wrong choice is refused without spending the token, until the token is too old.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = act(&app, &id, &action, "maybe").await;
        if response.status() == StatusCode::GONE {
            break;
        }
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn only_known_push_services_and_well_formed_keys_are_accepted() {
    let app = push_app(|_| {}).await;
    let mock = MockPush::start().await;
    let token = app.admin_token().await;
    let key: Value = app
        .get("/api/push/config", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let good = mock.subscribe(key["public_key"].as_str().unwrap());
    let with = |field: &str, value: Value| {
        let mut s = good.clone();
        *s.pointer_mut(field).unwrap() = value;
        json!({ "subscription": s })
    };
    let cases = [
        (
            with("/endpoint", json!("https://evil.example/push/1")),
            "a host that is no push service",
        ),
        (
            with("/endpoint", json!("http://169.254.169.254/latest")),
            "a metadata address",
        ),
        (
            with("/keys/auth", json!("c2hvcnQ")),
            "an auth secret of 5 bytes",
        ),
        (
            with("/keys/p256dh", json!("AAAA")),
            "a key that is no P-256 point",
        ),
    ];
    for (body, why) in cases {
        expect_error(
            app.post("/api/push/subscriptions", Some(&token), body)
                .await,
            StatusCode::BAD_REQUEST,
            why,
        )
        .await;
    }
    let devices: Value = app
        .get("/api/push/subscriptions", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(devices, json!([]), "nothing was stored");

    // Without `push.subject` the server sends nothing and says so.
    let off = spawn_app_with(|_| {}).await;
    let token = off.admin_token().await;
    let config: Value = off
        .get("/api/push/config", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(config["enabled"], false);
    expect_error(
        off.post(
            "/api/push/subscriptions",
            Some(&token),
            json!({ "subscription": good }),
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "push off",
    )
    .await;
}

#[tokio::test]
async fn a_new_sign_in_is_pushed_naming_the_device_and_address() {
    let app = push_app(|_| {}).await;
    let mock = MockPush::start().await;
    let token = app.admin_token().await;
    subscribe(&app, &mock, &token, ANDROID).await;
    // The push service is busy, then failing: the notice is sent again, with backoff.
    mock.script(&[StatusCode::TOO_MANY_REQUESTS, StatusCode::BAD_GATEWAY]);
    let response = Client::new()
        .post(app.url("/api/auth/login"))
        .header("user-agent", IPHONE)
        .json(&json!({ "username": "admin", "password": app.admin_password }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let notice = mock.next_of("sign_in").await;
    assert_eq!(notice.payload["title"], "New sign-in to admin");
    let body = notice.payload["body"].as_str().unwrap();
    assert!(
        body.contains("Safari on iPhone") && body.contains("127.0.0.1"),
        "{body}"
    );
}

#[tokio::test]
async fn muted_instances_and_other_accounts_stay_silent_and_devices_can_be_revoked() {
    let app = push_app(|_| {}).await;
    let mock = MockPush::start().await;
    let admin = app.admin_token().await;
    app.create_user("grace", "grace-password-1").await;
    let grace = app.token("grace", "grace-password-1").await;
    // Subscribed after the sign-ins above, whose notices would come first.
    let device = subscribe(&app, &mock, &admin, ANDROID).await;

    // Grace's agent asks: nothing reaches the admin's device.
    let theirs = start(&app, &grace).await;
    let muted = start(&app, &admin).await;
    let app = &app;
    let call = |method, path: String, token: String| async move {
        app.call(method, &path, Some(&token), None).await
    };
    assert_eq!(
        call(
            reqwest::Method::PUT,
            format!("/api/push/mutes/{theirs}"),
            admin.clone()
        )
        .await
        .status(),
        StatusCode::NOT_FOUND,
        "another's instance"
    );
    assert_eq!(
        call(
            reqwest::Method::PUT,
            format!("/api/push/mutes/{muted}"),
            admin.clone()
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    let mutes: Value = app
        .get("/api/push/mutes", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mutes, json!([muted]));
    app.command(&grace, &theirs, json!({ "text": "ask" })).await;
    app.command(&admin, &muted, json!({ "text": "ask" })).await;
    for id in [&theirs, &muted] {
        let token = if id == &theirs { &grace } else { &admin };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while app.instance(token, id).await["status"] != "needs_permission" {
            assert!(tokio::time::Instant::now() < deadline, "never asked");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Unmuted, its next question comes through, and it is the first message the device gets.
    assert_eq!(
        call(
            reqwest::Method::DELETE,
            format!("/api/push/mutes/{muted}"),
            admin.clone()
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    app.command(&admin, &muted, json!({ "text": "n" })).await;
    // Asked again only once the answer was seen, or the status never left the question.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.instance(&admin, &muted).await["status"] == "needs_permission" {
        assert!(tokio::time::Instant::now() < deadline, "never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.command(&admin, &muted, json!({ "text": "ask" })).await;
    let first = mock.next().await;
    assert_eq!(
        (
            first.payload["kind"].as_str(),
            first.payload["instance"].as_str()
        ),
        (Some("permission"), Some(muted.as_str())),
        "{:?}",
        first.payload
    );

    // Revoked from Settings: gone from the list; another user cannot revoke it.
    let path = format!("/api/push/subscriptions/{}", device["id"]);
    assert_eq!(
        call(reqwest::Method::DELETE, path.clone(), grace.clone())
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(reqwest::Method::DELETE, path.clone(), admin.clone())
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let devices: Value = app
        .get("/api/push/subscriptions", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(devices, json!([]));
}

#[tokio::test]
async fn preferences_are_kept_and_checked() {
    let app = push_app(|_| {}).await;
    let token = app.admin_token().await;
    let prefs: Value = app
        .get("/api/push/preferences", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        prefs,
        json!({ "waiting_delay_secs": 60, "quiet_hours": null })
    );
    let wanted = json!({ "waiting_delay_secs": 300, "quiet_hours": { "start": "22:30", "end": "07:00", "utc_offset_minutes": 120 } });
    let saved = app
        .call(
            reqwest::Method::PUT,
            "/api/push/preferences",
            Some(&token),
            Some(wanted.clone()),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let prefs: Value = app
        .get("/api/push/preferences", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(prefs, wanted);
    for (body, why) in [
        (
            json!({ "waiting_delay_secs": 90000, "quiet_hours": null }),
            "over a day",
        ),
        (
            json!({ "waiting_delay_secs": 60, "quiet_hours": { "start": "25:00", "end": "07:00", "utc_offset_minutes": 0 } }),
            "no such hour",
        ),
        (
            json!({ "waiting_delay_secs": 60, "quiet_hours": { "start": "7:00", "end": "07:00", "utc_offset_minutes": 0 } }),
            "not HH:MM",
        ),
        (
            json!({ "waiting_delay_secs": 60, "quiet_hours": { "start": "22:00", "end": "07:00", "utc_offset_minutes": 5000 } }),
            "no such offset",
        ),
    ] {
        expect_error(
            app.call(
                reqwest::Method::PUT,
                "/api/push/preferences",
                Some(&token),
                Some(body),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            why,
        )
        .await;
    }
}
