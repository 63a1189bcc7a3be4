//! Admin endpoints: accounts, invites, the audit log, and who may call them.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN, expect_error, spawn_app};

#[tokio::test]
async fn admin_creates_lists_updates_and_deletes_users() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;

    let created = app
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({ "username": "Dave" }),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let id = created["user"]["id"].as_i64().unwrap();
    assert_eq!(
        created["user"]["username"], "dave",
        "usernames are lowercased"
    );
    let generated = created["password"]
        .as_str()
        .expect("a password is generated when none is given");
    assert_eq!(app.login("dave", generated).await.status(), StatusCode::OK);
    let data = app.data_dir();
    assert!(
        data.join(format!("users/{id}/workspace")).is_dir(),
        "workspace is created under the user id"
    );
    assert!(data.join(format!("users/{id}/home")).is_dir());

    let list: Vec<Value> = app
        .get("/api/admin/users", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "dave"]);

    let promoted = app
        .call(
            Method::PATCH,
            &format!("/api/admin/users/{id}"),
            Some(&admin),
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(promoted.status(), StatusCode::OK);
    assert_eq!(promoted.json::<Value>().await.unwrap()["role"], "admin");

    let reset = app
        .call(
            Method::PATCH,
            &format!("/api/admin/users/{id}"),
            Some(&admin),
            Some(json!({ "password": "reset-password-1" })),
        )
        .await;
    assert_eq!(reset.status(), StatusCode::OK);
    assert_eq!(
        app.login("dave", generated).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let dave = app.token("dave", "reset-password-1").await;

    std::fs::write(
        data.join(format!("users/{id}/workspace/notes.md")),
        "keep me",
    )
    .unwrap();
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/admin/users/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    expect_error(
        app.get("/api/auth/me", Some(&dave)).await,
        StatusCode::UNAUTHORIZED,
        "deleted user's token",
    )
    .await;
    assert!(!data.join(format!("users/{id}")).exists());
    let archived: Vec<_> = std::fs::read_dir(data.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(archived.len(), 1);
    assert_eq!(
        std::fs::read_to_string(archived[0].join("workspace/notes.md")).unwrap(),
        "keep me"
    );

    // The id is never reused, even though the name is free again.
    let again: Value = app
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({ "username": "dave" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(again["user"]["id"].as_i64().unwrap() > id);

    let actions: Vec<String> = app
        .audit("user.delete")
        .await
        .iter()
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, [format!("user:{id}:dave")]);
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_at_once() {
    let app = spawn_app().await;
    let id = app.create_user("erin", "erin-password-1").await;
    let session = app.sign_in("erin", "erin-password-1").await;
    let admin = app.admin_token().await;

    let disabled = app
        .call(
            Method::PATCH,
            &format!("/api/admin/users/{id}"),
            Some(&admin),
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);
    expect_error(
        app.get("/api/auth/me", session["access_token"].as_str())
            .await,
        StatusCode::UNAUTHORIZED,
        "access",
    )
    .await;
    let refresh = app
        .post(
            "/api/auth/refresh",
            None,
            json!({ "refresh_token": session["refresh_token"] }),
        )
        .await;
    expect_error(
        refresh,
        StatusCode::UNAUTHORIZED,
        "refresh of a disabled user",
    )
    .await;
    let login = app.login("erin", "erin-password-1").await;
    let code = expect_error(login, StatusCode::FORBIDDEN, "disabled user signs in").await;
    assert_eq!(code, "forbidden");

    let enabled = app
        .call(
            Method::PATCH,
            &format!("/api/admin/users/{id}"),
            Some(&admin),
            Some(json!({ "disabled": false })),
        )
        .await;
    assert_eq!(enabled.status(), StatusCode::OK);
    assert_eq!(
        app.login("erin", "erin-password-1").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_last_admin_cannot_be_removed() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let me: Value = app
        .get("/api/auth/me", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let id = me["id"].as_i64().unwrap();
    for (body, what) in [
        (json!({ "role": "user" }), "demote"),
        (json!({ "disabled": true }), "disable"),
    ] {
        let response = app
            .call(
                Method::PATCH,
                &format!("/api/admin/users/{id}"),
                Some(&admin),
                Some(body),
            )
            .await;
        expect_error(response, StatusCode::CONFLICT, what).await;
    }
    let delete = app
        .call(
            Method::DELETE,
            &format!("/api/admin/users/{id}"),
            Some(&admin),
            None,
        )
        .await;
    expect_error(delete, StatusCode::CONFLICT, "delete self").await;
}

#[tokio::test]
async fn non_admins_get_403_and_strangers_401_on_every_admin_endpoint() {
    let app = spawn_app().await;
    app.create_user("frank", "frank-password-1").await;
    let frank = app.token("frank", "frank-password-1").await;
    let endpoints = [
        (Method::GET, "/api/admin/users", None),
        (
            Method::POST,
            "/api/admin/users",
            Some(json!({ "username": "x1" })),
        ),
        (
            Method::PATCH,
            "/api/admin/users/1",
            Some(json!({ "disabled": true })),
        ),
        (Method::DELETE, "/api/admin/users/1", None),
        (Method::POST, "/api/admin/invites", Some(json!({}))),
        (Method::GET, "/api/admin/invites", None),
        (Method::DELETE, "/api/admin/invites/1", None),
        (Method::GET, "/api/admin/audit", None),
    ];
    for (method, path, body) in endpoints {
        let response = app
            .call(method.clone(), path, Some(&frank), body.clone())
            .await;
        expect_error(
            response,
            StatusCode::FORBIDDEN,
            &format!("{method} {path} as a user"),
        )
        .await;
        let response = app.call(method.clone(), path, None, body).await;
        expect_error(
            response,
            StatusCode::UNAUTHORIZED,
            &format!("{method} {path} signed out"),
        )
        .await;
    }
    // Nothing happened to the admin.
    assert_eq!(
        app.login(ADMIN, &app.admin_password).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_user_errors() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    app.create_user("gina", "gina-password-1").await;
    let duplicate = app
        .post(
            "/api/admin/users",
            Some(&admin),
            json!({ "username": "GINA", "password": "another-password" }),
        )
        .await;
    expect_error(duplicate, StatusCode::CONFLICT, "duplicate username").await;
    let missing = app
        .call(
            Method::PATCH,
            "/api/admin/users/999",
            Some(&admin),
            Some(json!({ "disabled": true })),
        )
        .await;
    expect_error(missing, StatusCode::NOT_FOUND, "unknown user").await;
    let bad_id = app
        .call(Method::DELETE, "/api/admin/users/abc", Some(&admin), None)
        .await;
    expect_error(bad_id, StatusCode::BAD_REQUEST, "non-numeric id").await;
    let unknown_field = app
        .call(
            Method::PATCH,
            "/api/admin/users/2",
            Some(&admin),
            Some(json!({ "rol": "admin" })),
        )
        .await;
    expect_error(
        unknown_field,
        StatusCode::UNPROCESSABLE_ENTITY,
        "misspelled field",
    )
    .await;
    let bad_role = app
        .call(
            Method::PATCH,
            "/api/admin/users/2",
            Some(&admin),
            Some(json!({ "role": "root" })),
        )
        .await;
    expect_error(bad_role, StatusCode::UNPROCESSABLE_ENTITY, "unknown role").await;
}

#[tokio::test]
async fn audit_log_pages_newest_first() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.login(ADMIN, "wrong-password").await;
    }
    let admin = app.admin_token().await;
    let page: Vec<Value> = app
        .get("/api/admin/audit?limit=2", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["action"], "login.success");
    let before = page[1]["id"].as_i64().unwrap();
    let next: Vec<Value> = app
        .get(&format!("/api/admin/audit?before={before}"), Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert!(next.iter().all(|e| e["id"].as_i64().unwrap() < before));
    assert!(next.iter().all(|e| e["action"] == "login.failure"));
    let bad = app.get("/api/admin/audit?limit=lots", Some(&admin)).await;
    expect_error(bad, StatusCode::BAD_REQUEST, "non-numeric limit").await;
}
