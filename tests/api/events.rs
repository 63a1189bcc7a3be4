//! `GET /api/events` read as a browser's EventSource reads it: a snapshot first, then the user's
//! own instances as they are created, change status, are renamed and deleted; "signed out" when
//! the account is disabled or the session ends; refusals without credentials or over the limit.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_error, spawn_app_with};

/// A reader of one event stream.
struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
    /// Every event read so far: (name, data).
    seen: Vec<(String, Value)>,
}

impl Events {
    async fn open(app: &TestApp, token: &str) -> Events {
        let response = app.get("/api/events", Some(token)).await;
        assert_eq!(response.status(), StatusCode::OK, "the stream opens");
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["x-accel-buffering"], "no");
        Events {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
            seen: Vec::new(),
        }
    }

    /// The next event, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.strip_prefix(' ').unwrap_or(value));
                    }
                }
                // Comments (keep-alives) and the retry hint alone carry no data.
                if data.is_empty() {
                    continue;
                }
                let data: Value = serde_json::from_str(&data).expect("event data is JSON");
                self.seen.push((name.clone(), data.clone()));
                return Some((name, data));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("an event within 30 s")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.expect("the stream reads")).unwrap());
        }
    }

    /// Reads until an event matches; panics if the stream ends first or nothing matches in 30 s.
    async fn wait(&mut self, what: &str, check: impl Fn(&str, &Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout_at(deadline, self.next()).await;
            match next {
                Ok(Some((name, data))) if check(&name, &data) => return data,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended before {what}; seen: {:?}", self.seen),
                Err(_) => panic!("no {what} within 30 s; seen: {:?}", self.seen),
            }
        }
    }
}

async fn with_user() -> (TestApp, String, String) {
    let app = spawn_app_with(|config| {
        config.monitor.interval_secs = 1;
        config.limits.max_per_user = 10;
        config.limits.max_total = 20;
    })
    .await;
    app.create_user("alice", "alice-password-1").await;
    let alice = app.token("alice", "alice-password-1").await;
    let admin = app.admin_token().await;
    (app, alice, admin)
}

fn instance_id(instance: &Value) -> String {
    instance["id"].as_str().expect("an instance id").to_owned()
}

#[tokio::test]
async fn the_stream_follows_the_users_own_instances_from_a_snapshot_on() {
    let (app, alice, admin) = with_user().await;
    let before = instance_id(
        &app.create_instance(&alice, json!({ "profile": "fake" }))
            .await,
    );
    let mut events = Events::open(&app, &alice).await;

    let (name, snapshot) = events.next().await.expect("a first event");
    assert_eq!(name, "snapshot", "the first event is the snapshot");
    let listed: Value = app
        .get("/api/instances", Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    let ids = |list: &Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(instance_id).collect()
    };
    assert_eq!(
        ids(&snapshot),
        ids(&listed),
        "the snapshot lists what GET /api/instances lists"
    );
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&snapshot[0]), keys(&listed[0]), "in the same shape");

    // Someone else's instance, started first, never arrives.
    let others = instance_id(
        &app.create_instance(&admin, json!({ "profile": "fake" }))
            .await,
    );

    let id = instance_id(
        &app.create_instance(&alice, json!({ "profile": "fake", "name": "new one" }))
            .await,
    );
    let created = events
        .wait("the new instance", |name, data| {
            name == "created" && data["id"] == id
        })
        .await;
    assert_eq!(created["name"], "new one");
    let single = app.instance(&alice, &id).await;
    assert_eq!(
        keys(&created),
        keys(&single),
        "a delta is shaped as GET /api/instances/{{id}}"
    );

    // The fake agent waits at its prompt: quiet, so idle.
    events
        .wait("idle", |name, data| {
            name == "changed" && data["id"] == id && data["status"] == "idle"
        })
        .await;
    app.command(&alice, &id, json!({ "text": "ask" })).await;
    let asking = events
        .wait("the question", |name, data| {
            name == "changed" && data["id"] == id && data["status"] == "needs_permission"
        })
        .await;
    assert_eq!(asking["status_reason"], "Overwrite notes.txt? [y/N]");
    // Figures follow each sample when they changed: perhaps already, while it started.
    let has_usage = |name: &str, data: &Value| {
        name == "usage" && data.as_array().unwrap().iter().any(|u| u["id"] == id)
    };
    let usage = match events
        .seen
        .iter()
        .find(|(name, data)| has_usage(name, data))
    {
        Some((_, data)) => data.clone(),
        None => events.wait("usage figures", has_usage).await,
    };
    let mine = usage
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
        .unwrap();
    assert!(
        mine["memory_bytes"].is_u64(),
        "usage carries memory: {mine}"
    );

    let renamed = app
        .call(
            Method::PATCH,
            &format!("/api/instances/{id}"),
            Some(&alice),
            Some(json!({ "name": "renamed" })),
        )
        .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    events
        .wait("the rename", |name, data| {
            name == "changed" && data["id"] == id && data["name"] == "renamed"
        })
        .await;

    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/instances/{before}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = events.wait("the delete", |name, _| name == "deleted").await;
    assert_eq!(gone, json!({ "id": before }));

    // The admin's instance changed meanwhile too (it started and became idle), unseen here.
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/instances/{others}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    // An event after the other's delete proves the stream went past it.
    app.call(
        Method::PATCH,
        &format!("/api/instances/{id}"),
        Some(&alice),
        Some(json!({ "name": "last" })),
    )
    .await;
    events
        .wait("the last rename", |name, data| {
            name == "changed" && data["name"] == "last"
        })
        .await;
    let leaked: Vec<_> = events
        .seen
        .iter()
        .filter(|(_, data)| data.to_string().contains(&others) || data["id"] == others)
        .collect();
    assert!(
        leaked.is_empty(),
        "another user's instance reached the stream: {leaked:?}"
    );
    assert!(
        events.seen.iter().all(|(name, _)| name != "alert"),
        "alerts are for admins only"
    );
}

#[tokio::test]
async fn disabling_the_user_ends_the_stream_with_signed_out() {
    let (app, alice, admin) = with_user().await;
    let mut events = Events::open(&app, &alice).await;
    assert_eq!(events.next().await.expect("snapshot").0, "snapshot");
    let user_id = app.user_id(&alice).await;
    app.set_disabled(&admin, user_id, true).await;
    let (name, data) = events.next().await.expect("an event before the end");
    assert_eq!(name, "signed_out");
    assert!(data["reason"].is_string(), "{data}");
    assert!(
        events.next().await.is_none(),
        "the stream ends after signed_out"
    );
    expect_error(
        app.get("/api/events", Some(&alice)).await,
        StatusCode::UNAUTHORIZED,
        "a disabled user",
    )
    .await;
}

#[tokio::test]
async fn signing_out_ends_that_sessions_stream_only() {
    let (app, alice, _) = with_user().await;
    let other_session = app.token("alice", "alice-password-1").await;
    let mut ending = Events::open(&app, &alice).await;
    let mut staying = Events::open(&app, &other_session).await;
    assert_eq!(ending.next().await.unwrap().0, "snapshot");
    assert_eq!(staying.next().await.unwrap().0, "snapshot");
    let out = app.post("/api/auth/logout", Some(&alice), json!({})).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(ending.next().await.expect("signed_out").0, "signed_out");
    assert!(ending.next().await.is_none());
    // The other session's stream goes on: it still hears of a new instance.
    let id = instance_id(
        &app.create_instance(&other_session, json!({ "profile": "fake" }))
            .await,
    );
    staying
        .wait("the new instance", |name, data| {
            name == "created" && data["id"] == id
        })
        .await;
    assert!(staying.seen.iter().all(|(name, _)| name != "signed_out"));
}

#[tokio::test]
async fn missing_or_bad_credentials_are_refused() {
    let (app, _, _) = with_user().await;
    let cases: [(&str, Option<(&str, &str)>); 4] = [
        ("no credentials", None),
        (
            "a bearer token that is not one",
            Some(("authorization", "Bearer not-a-token")),
        ),
        (
            "an unknown scheme",
            Some(("authorization", "Basic YWxpY2U6eA==")),
        ),
        (
            "a forged access cookie",
            Some(("cookie", "pd_access=forged")),
        ),
    ];
    for (what, header) in cases {
        let mut request = reqwest::Client::new().get(app.url("/api/events"));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        expect_error(response, StatusCode::UNAUTHORIZED, what).await;
    }
}

#[tokio::test]
async fn a_user_holds_at_most_sixteen_streams() {
    let (app, alice, admin) = with_user().await;
    let mut open = Vec::new();
    for _ in 0..pocketdev::events::MAX_STREAMS_PER_USER {
        open.push(Events::open(&app, &alice).await);
    }
    let refused = app.get("/api/events", Some(&alice)).await;
    let body =
        crate::helpers::expect_error(refused, StatusCode::CONFLICT, "one stream too many").await;
    assert_eq!(body, "conflict");
    // Others are not affected, and a closed stream frees its place.
    drop(Events::open(&app, &admin).await);
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.get("/api/events", Some(&alice)).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's place never came free"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn admins_hear_of_alerts() {
    let app = spawn_app_with(|config| {
        config.monitor.interval_secs = 1;
        // Any disk is more than 1 % used.
        config.alerts.disk_percent = 1.0;
        config.alerts.grace_secs = 0;
    })
    .await;
    let admin = app.admin_token().await;
    let mut events = Events::open(&app, &admin).await;
    let alert = events
        .wait("a disk alert", |name, data| {
            name == "alert" && data["kind"] == "disk"
        })
        .await;
    assert_eq!(alert["event"], "raised");
    assert!(
        alert["threshold"].is_number() && alert["at"].is_string(),
        "{alert}"
    );
}
