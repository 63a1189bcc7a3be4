//! Registration under each policy, invites, and the rules for names and passwords.

use pocketdev::config::Registration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{expect_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn closed_registration_answers_403() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "ivan", "password": "ivan-password-1" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("registration is closed"),
        "{body}"
    );
}

#[tokio::test]
async fn open_registration_creates_and_signs_in_a_plain_user() {
    let app = spawn_app_with(|c| c.auth.registration = Registration::Open).await;
    let response = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "judy", "password": "judy-password-1" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["role"], "user");
    assert_eq!(
        app.get("/api/auth/me", body["access_token"].as_str())
            .await
            .status(),
        StatusCode::OK
    );
    let again = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "Judy", "password": "judy-password-2" }),
        )
        .await;
    expect_error(again, StatusCode::CONFLICT, "duplicate username").await;
    assert_eq!(app.audit("user.register").await.len(), 1);
}

#[tokio::test]
async fn invite_registration_needs_a_valid_unused_code() {
    let app = spawn_app_with(|c| c.auth.registration = Registration::Invite).await;
    let admin = app.admin_token().await;
    let no_code = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "kim", "password": "kim-password-1" }),
        )
        .await;
    expect_error(no_code, StatusCode::FORBIDDEN, "no invite").await;
    let bad_code = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "kim", "password": "kim-password-1", "invite": "nope" }),
        )
        .await;
    expect_error(bad_code, StatusCode::FORBIDDEN, "unknown invite").await;

    let invite = app
        .post(
            "/api/admin/invites",
            Some(&admin),
            json!({ "expires_in_hours": 2 }),
        )
        .await;
    assert_eq!(invite.status(), StatusCode::CREATED);
    let invite: Value = invite.json().await.unwrap();
    let code = invite["code"].as_str().unwrap();
    assert_eq!(invite["role"], "user");

    // A request that must fail does not spend the invite.
    let taken = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "admin", "password": "kim-password-1", "invite": code }),
        )
        .await;
    expect_error(taken, StatusCode::CONFLICT, "taken name with a good invite").await;
    let short = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "kim", "password": "short", "invite": code }),
        )
        .await;
    expect_error(
        short,
        StatusCode::UNPROCESSABLE_ENTITY,
        "short password with a good invite",
    )
    .await;

    let ok = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "kim", "password": "kim-password-1", "invite": code }),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::CREATED);
    let reuse = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "lee", "password": "lee-password-1", "invite": code }),
        )
        .await;
    expect_error(reuse, StatusCode::FORBIDDEN, "invite reuse").await;

    let admin_invite: Value = app
        .post(
            "/api/admin/invites",
            Some(&admin),
            json!({ "role": "admin" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let promoted = app
        .post("/api/auth/register", None, json!({ "username": "lee", "password": "lee-password-1", "invite": admin_invite["code"] }))
        .await;
    let promoted: Value = promoted.json().await.unwrap();
    assert_eq!(
        promoted["user"]["role"], "admin",
        "an invite can grant the admin role"
    );
    let bad_ttl = app
        .post(
            "/api/admin/invites",
            Some(&admin),
            json!({ "expires_in_hours": 0 }),
        )
        .await;
    expect_error(bad_ttl, StatusCode::UNPROCESSABLE_ENTITY, "zero lifetime").await;
}

#[tokio::test]
async fn expired_invites_are_refused() {
    let app = spawn_app_with(|c| c.auth.registration = Registration::Invite).await;
    let admin = app.admin_token().await;
    let invite: Value = app
        .post("/api/admin/invites", Some(&admin), json!({}))
        .await
        .json()
        .await
        .unwrap();
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.data_dir().join("server/pocketdev.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE invites SET expires_at = ?")
        .bind(time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .execute(&db)
        .await
        .unwrap();
    let response = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "mona", "password": "mona-password-1", "invite": invite["code"] }),
        )
        .await;
    expect_error(response, StatusCode::FORBIDDEN, "expired invite").await;
}

#[tokio::test]
async fn invalid_usernames_and_passwords_are_422() {
    let app = spawn_app_with(|c| c.auth.registration = Registration::Open).await;
    let long = "a".repeat(200);
    let cases: &[(&str, &str, &str)] = &[
        ("../etc", "good-password-1", "path characters"),
        ("a/b", "good-password-1", "slash"),
        ("has space", "good-password-1", "space"),
        (&long, "good-password-1", "200 characters"),
        ("", "good-password-1", "empty"),
        ("x", "good-password-1", "one character"),
        ("nul\u{0}name", "good-password-1", "NUL"),
        ("$(reboot)", "good-password-1", "shell syntax"),
        ("validname", "short", "too-short password"),
        ("validname", "", "empty password"),
    ];
    for (username, password, what) in cases {
        let response = app
            .post(
                "/api/auth/register",
                None,
                json!({ "username": username, "password": password }),
            )
            .await;
        let code = expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, what).await;
        assert_eq!(code, "invalid_input", "{what}");
    }
    let users = app
        .get("/api/admin/users", Some(&app.admin_token().await))
        .await
        .json::<Vec<Value>>()
        .await
        .unwrap();
    assert_eq!(users.len(), 1, "nothing was created");
}
