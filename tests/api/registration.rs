//! Registration under each policy, invites, and the rules for names and passwords.

use pocketdev::config::Registration;
use reqwest::{Method, StatusCode};
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

/// An invite is the admin's decision: it opens an account while registration is closed, once.
#[tokio::test]
async fn an_invite_opens_an_account_while_registration_is_closed() {
    let app = spawn_app().await;
    let invite = new_invite(&app).await;
    let code = invite["code"].as_str().unwrap();
    let register = |username: &'static str| {
        app.post(
            "/api/auth/register",
            None,
            json!({ "username": username, "password": "kim-password-1", "invite": code }),
        )
    };
    let response = register("kim").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["role"], "user");
    let again = register("lou").await;
    assert_eq!(
        again.status(),
        StatusCode::FORBIDDEN,
        "an invite works once"
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
    let invite = new_invite(&app).await;
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
    let listed: Value = app
        .get("/api/admin/invites", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["state"], "expired", "{listed}");
}

#[tokio::test]
async fn admins_list_invites_without_their_codes_and_revoke_unused_ones() {
    let app = spawn_app_with(|c| c.auth.registration = Registration::Invite).await;
    let admin = app.admin_token().await;
    let create = |body: Value| {
        let app = &app;
        let admin = &admin;
        async move {
            let response = app.post("/api/admin/invites", Some(admin), body).await;
            assert_eq!(response.status(), StatusCode::CREATED);
            response.json::<Value>().await.unwrap()
        }
    };
    let for_kim = create(json!({})).await;
    let for_lee = create(json!({ "role": "admin", "expires_in_hours": 5 })).await;
    let registered = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "kim", "password": "kim-password-1", "invite": for_kim["code"] }),
        )
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);

    let listed = app.get("/api/admin/invites", Some(&admin)).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await.unwrap();
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{listed}");
    // Newest first.
    assert_eq!(rows[0]["id"], for_lee["id"]);
    assert_eq!(
        (&rows[0]["state"], &rows[0]["role"], &rows[0]["created_by"]),
        (&json!("pending"), &json!("admin"), &json!("admin"))
    );
    assert_eq!(rows[0]["expires_at"], for_lee["expires_at"]);
    assert_eq!(
        (&rows[1]["state"], &rows[1]["used_by"]),
        (&json!("used"), &json!("kim"))
    );
    assert!(rows[1]["used_at"].is_string());
    for code in [&for_kim["code"], &for_lee["code"]] {
        assert!(
            !listed.to_string().contains(code.as_str().unwrap()),
            "codes are shown once, never listed"
        );
    }

    // A used invite cannot be revoked; an unknown or malformed id is a clear error.
    let path = |invite: &Value| format!("/api/admin/invites/{}", invite["id"]);
    let used = app
        .call(Method::DELETE, &path(&for_kim), Some(&admin), None)
        .await;
    expect_error(used, StatusCode::CONFLICT, "revoking a used invite").await;
    let unknown = app
        .call(Method::DELETE, "/api/admin/invites/999", Some(&admin), None)
        .await;
    expect_error(unknown, StatusCode::NOT_FOUND, "unknown invite").await;
    let malformed = app
        .call(Method::DELETE, "/api/admin/invites/abc", Some(&admin), None)
        .await;
    expect_error(malformed, StatusCode::BAD_REQUEST, "a malformed invite id").await;

    let revoked = app
        .call(Method::DELETE, &path(&for_lee), Some(&admin), None)
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let refused = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "lee", "password": "lee-password-1", "invite": for_lee["code"] }),
        )
        .await;
    expect_error(refused, StatusCode::FORBIDDEN, "a revoked invite").await;
    let again = app
        .call(Method::DELETE, &path(&for_lee), Some(&admin), None)
        .await;
    expect_error(again, StatusCode::NOT_FOUND, "revoking twice").await;
    let listed: Value = app
        .get("/api/admin/invites", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let audit = app.audit("invite.revoke").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["target"], format!("invite:{}", for_lee["id"]));
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

/// A fresh invite from the first admin: its id, code and expiry.
async fn new_invite(app: &crate::helpers::TestApp) -> Value {
    let admin = app.admin_token().await;
    app.post("/api/admin/invites", Some(&admin), json!({}))
        .await
        .json()
        .await
        .unwrap()
}
