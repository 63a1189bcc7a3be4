//! What must survive a restart of the server: the database and the signing key.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ADMIN, spawn_app};

#[tokio::test]
async fn sessions_and_accounts_survive_a_restart() {
    let app = spawn_app().await;
    app.create_user("nina", "nina-password-1").await;
    let session = app.sign_in(ADMIN, &app.admin_password).await;
    let key_before = std::fs::read(app.data_dir().join("server/jwt.key")).unwrap();

    let app = app.restart().await;
    assert!(
        app.admin_password.len() >= 16,
        "the first admin is not created twice"
    );
    assert_eq!(
        std::fs::read(app.data_dir().join("server/jwt.key")).unwrap(),
        key_before,
        "signing key kept"
    );
    let me = app
        .get("/api/auth/me", session["access_token"].as_str())
        .await;
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "an access token from before the restart still works"
    );
    let refreshed = app
        .post(
            "/api/auth/refresh",
            None,
            json!({ "refresh_token": session["refresh_token"] }),
        )
        .await;
    assert_eq!(
        refreshed.status(),
        StatusCode::OK,
        "so does the refresh token"
    );
    assert_eq!(
        app.login("nina", "nina-password-1").await.status(),
        StatusCode::OK,
        "accounts are kept"
    );
    let users: Vec<serde_json::Value> = app
        .get("/api/admin/users", Some(&app.admin_token().await))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(users.len(), 2, "no second admin was created");
}
