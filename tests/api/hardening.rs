//! Attacks on the boundaries between accounts, the server and the internet, each one a way in
//! that was open once (docs/security.md lists them with the measure that closes each).

use std::time::Duration;

use futures::SinkExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::spawn_app;

/// Every operation of the OpenAPI description that changes something: (method, path with its
/// parameters filled in).
async fn unsafe_operations(app: &crate::helpers::TestApp) -> Vec<(Method, String)> {
    let spec: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                let filled = path
                    .split('/')
                    .map(|part| if part.starts_with('{') { "1" } else { part })
                    .collect::<Vec<_>>()
                    .join("/");
                operations.push((
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    filled,
                ));
            }
        }
    }
    assert!(operations.len() > 20, "{operations:?}");
    operations
}

#[tokio::test]
async fn a_page_of_another_site_cannot_act_with_the_session_cookie() {
    let app = spawn_app().await;
    let signed_in = app
        .browser
        .post(app.url("/api/auth/login"))
        .json(&json!({ "username": "admin", "password": app.admin_password }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);
    let own = format!("http://{}", app.addr);

    for (method, path) in unsafe_operations(&app).await {
        // A form or a fetch from another site, or a request that says nowhere.
        for origin in [Some("https://evil.example"), Some("null"), None] {
            let mut request = app
                .browser
                .request(method.clone(), app.url(&path))
                .header("content-type", "text/plain")
                .body("{}");
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} from {origin:?} was not refused: {body}"
            );
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("another site")),
                "{method} {path}: {body}"
            );
        }
    }

    // The session survived all of it (logout from another site was refused), and the app's
    // own page still acts with it.
    let me = app
        .browser
        .get(app.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    for fetch_site in [("origin", own.as_str()), ("sec-fetch-site", "same-origin")] {
        let refreshed = app
            .browser
            .post(app.url("/api/auth/refresh"))
            .header(fetch_site.0, fetch_site.1)
            .send()
            .await
            .unwrap();
        assert_eq!(refreshed.status(), StatusCode::OK, "{fetch_site:?}");
    }

    // A bearer token is no ambient credential: scripts need no Origin.
    let token = app.admin_token().await;
    let created = app
        .post(
            "/api/admin/invites",
            Some(&token),
            json!({ "role": "user" }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn disabling_an_account_stops_its_agents_closes_its_terminals_and_kills_its_hook_tokens() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ann_id = app.create_user("ann", "ann-password-1").await;
    let ann = app.token("ann", "ann-password-1").await;
    let created = app
        .create_instance(&ann, json!({ "profile": "shell" }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_output(&ann, &id, "$").await;
    app.command(
        &ann,
        &id,
        json!({ "text": "echo token=$POCKETDEV_HOOK_TOKEN" }),
    )
    .await;
    let screen = app.wait_for_output(&ann, &id, "token=").await;
    let hook_token = screen
        .rsplit("token=")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(hook_token.len() > 10, "{screen}");

    // An open terminal, typing all the time.
    let mut term = app.term(&ann, &id).await;
    let typing = tokio::spawn(async move {
        let mut sent = 0u32;
        loop {
            let ok = term
                .ws_mut()
                .send(Message::Binary(b"x".to_vec().into()))
                .await
                .is_ok();
            if !ok {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (sent, term.wait_closed().await)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let disabled_at = std::time::Instant::now();
    let response = app
        .call(
            Method::PATCH,
            &format!("/api/admin/users/{ann_id}"),
            Some(&admin),
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (_, closed) = tokio::time::timeout(Duration::from_secs(5), typing)
        .await
        .expect("the terminal closed")
        .unwrap();
    assert!(
        disabled_at.elapsed() < Duration::from_secs(2),
        "the terminal stayed open {:?} after the account was disabled",
        disabled_at.elapsed()
    );
    let closed = closed.expect("a close frame");
    assert_eq!(closed.reason.as_str(), "signed out");

    // Its agent is stopped, and its hook token answers nothing.
    let instance = app.instance(&admin, &id).await;
    assert_ne!(instance["state"], "running", "{instance}");
    let report = reqwest::Client::new()
        .post(app.url(&format!("/api/instances/{id}/hooks")))
        .bearer_auth(&hook_token)
        .json(&json!({ "hook_event_name": "Stop" }))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_out_closes_that_devices_terminals_at_once_and_a_password_change_the_others() {
    let app = spawn_app().await;
    app.create_user("bea", "bea-password-1").await;
    let phone = app.token("bea", "bea-password-1").await;
    let laptop = app.token("bea", "bea-password-1").await;
    let created = app
        .create_instance(&phone, json!({ "profile": "shell" }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut on_phone = app.term(&phone, &id).await;
    let mut on_laptop = app.term(&laptop, &id).await;

    let started = std::time::Instant::now();
    let out = app.post("/api/auth/logout", Some(&phone), json!({})).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let closed = on_phone.wait_closed().await.expect("a close frame");
    assert_eq!(closed.reason.as_str(), "signed out");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The laptop's terminal went on; a password change made elsewhere ends it.
    on_laptop.run("echo still-$((40+2))", "still-42").await;
    let tablet = app.token("bea", "bea-password-1").await;
    let started = std::time::Instant::now();
    let changed = app
        .post(
            "/api/auth/password",
            Some(&tablet),
            json!({ "current_password": "bea-password-1", "new_password": "bea-password-2" }),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let closed = on_laptop.wait_closed().await.expect("a close frame");
    assert_eq!(closed.reason.as_str(), "signed out");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
