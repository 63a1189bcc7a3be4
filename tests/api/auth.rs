//! Sign-in, tokens, sessions and their failure modes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN, expect_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn first_admin_signs_in_and_reads_itself() {
    let app = spawn_app().await;
    let body = app.sign_in(ADMIN, &app.admin_password).await;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 32)
    );
    assert_eq!(body["user"]["username"], ADMIN);
    assert_eq!(body["user"]["role"], "admin");

    let me = app.get("/api/auth/me", body["access_token"].as_str()).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["username"], ADMIN);
    assert!(me["last_login_at"].is_string(), "sign-in is recorded");
    assert!(me.get("password_hash").is_none(), "no hash leaks");
}

#[tokio::test]
async fn first_admin_password_file_is_private_and_matches() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    let path = app.data_dir().join("server/initial-admin-password");
    let content = std::fs::read_to_string(&path).unwrap();
    assert!(content.contains(&app.admin_password));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = spawn_app().await;
    let wrong = app.login(ADMIN, "not-the-password").await;
    let code = expect_error(wrong, StatusCode::UNAUTHORIZED, "wrong password").await;
    assert_eq!(code, "unauthorized");

    let unknown = app.login("nobody-here", "whatever-password").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["message"], "wrong username or password");

    let failures = app.audit("login.failure").await;
    assert_eq!(failures.len(), 2, "both failures are audited: {failures:?}");
    assert_eq!(failures[0]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn usernames_are_case_insensitive_at_sign_in() {
    let app = spawn_app().await;
    let response = app.login("  ADMIN ", &app.admin_password).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn browser_session_uses_httponly_strict_cookies() {
    let app = spawn_app().await;
    let response = app
        .browser
        .post(app.url("/api/auth/login"))
        .json(&json!({ "username": ADMIN, "password": app.admin_password }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for cookie in &cookies {
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
        assert!(
            !cookie.contains("Secure"),
            "plain HTTP from an untrusted peer is not marked Secure: {cookie}"
        );
    }
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("pd_refresh=") && c.contains("Path=/api/auth/"))
    );

    // The cookie alone authenticates, and refresh works from the cookie.
    let me = app
        .browser
        .get(app.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // The browser says which page sent it (a cookie alone changes nothing: see hardening.rs).
    let origin = format!("http://{}", app.addr);
    let refreshed = app
        .browser
        .post(app.url("/api/auth/refresh"))
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);

    // Logout clears the cookies and ends the session.
    let logout = app
        .browser
        .post(app.url("/api/auth/logout"))
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let me = app
        .browser
        .get(app.url("/api/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me.headers().get("www-authenticate").unwrap(), "Bearer");
}

#[tokio::test]
async fn secure_cookies_and_hsts_behind_a_trusted_tls_proxy() {
    // The proxy (nginx) comes in through its own socket, which agents cannot open.
    let app = spawn_app_with(|c| {
        c.proxy_socket = Some(c.isolation.run_dir.join("http.sock"));
        c.proxy_socket_group = "root".into();
    })
    .await;
    let (status, head, body) = app
        .call_via_proxy_socket(
            "POST",
            "/api/auth/login",
            &[
                ("x-forwarded-for", "198.51.100.20"),
                ("x-forwarded-proto", "https"),
            ],
            Some(json!({ "username": ADMIN, "password": app.admin_password })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("strict-transport-security"), "{head}");
    let cookies: Vec<&str> = head
        .lines()
        .filter(|l| l.starts_with("set-cookie"))
        .collect();
    assert_eq!(cookies.len(), 2, "{head}");
    for cookie in cookies {
        assert!(cookie.contains("secure"), "{cookie}");
    }
    let success = app.audit("login.success").await;
    // Newest first: [0] is the helper's own sign-in to read the log, [1] the proxied one.
    assert_eq!(
        success[1]["ip"], "198.51.100.20",
        "client IP comes from X-Forwarded-For of the proxy"
    );
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", "198.51.100.20")
        .header("x-forwarded-proto", "https")
        .json(&json!({ "username": ADMIN, "password": "wrong-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
    let failures = app.audit("login.failure").await;
    assert_eq!(failures[0]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = spawn_app().await;
    let first = app.sign_in(ADMIN, &app.admin_password).await;
    let old_refresh = first["refresh_token"].as_str().unwrap();

    let rotated = app
        .post(
            "/api/auth/refresh",
            None,
            json!({ "refresh_token": old_refresh }),
        )
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated: Value = rotated.json().await.unwrap();
    let new_refresh = rotated["refresh_token"].as_str().unwrap();
    let new_access = rotated["access_token"].as_str().unwrap();
    assert_ne!(new_refresh, old_refresh);
    assert_eq!(
        app.get("/api/auth/me", Some(new_access)).await.status(),
        StatusCode::OK
    );

    // Replaying the exchanged token means it was copied: the whole session ends.
    let replay = app
        .post(
            "/api/auth/refresh",
            None,
            json!({ "refresh_token": old_refresh }),
        )
        .await;
    expect_error(replay, StatusCode::UNAUTHORIZED, "replayed refresh token").await;
    let after = app
        .post(
            "/api/auth/refresh",
            None,
            json!({ "refresh_token": new_refresh }),
        )
        .await;
    expect_error(
        after,
        StatusCode::UNAUTHORIZED,
        "newest token of a revoked family",
    )
    .await;
    let me = app.get("/api/auth/me", Some(new_access)).await;
    expect_error(
        me,
        StatusCode::UNAUTHORIZED,
        "access token of a revoked family",
    )
    .await;
    assert_eq!(app.audit("token.reuse").await.len(), 1);
}

#[tokio::test]
async fn refresh_without_a_token_or_with_garbage_is_401() {
    let app = spawn_app().await;
    let none = app
        .call(reqwest::Method::POST, "/api/auth/refresh", None, None)
        .await;
    expect_error(none, StatusCode::UNAUTHORIZED, "no refresh token").await;
    let garbage = app
        .post(
            "/api/auth/refresh",
            None,
            json!({ "refresh_token": "garbage" }),
        )
        .await;
    expect_error(garbage, StatusCode::UNAUTHORIZED, "unknown refresh token").await;
}

fn forge(secret: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[tokio::test]
async fn expired_foreign_and_unsigned_tokens_are_refused() {
    let app = spawn_app().await;
    let valid = app.admin_token().await;
    let secret = std::fs::read_to_string(app.data_dir().join("server/jwt.key")).unwrap();
    let session = {
        let payload = valid.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["sid"].as_str().unwrap().to_owned()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let expired = forge(
        secret.trim().as_bytes(),
        json!({ "sub": "1", "sid": session, "iat": now - 7200, "exp": now - 3600 }),
    );
    let other_key = forge(
        b"some-other-key-some-other-key-1234",
        json!({ "sub": "1", "sid": session, "iat": now, "exp": now + 600 }),
    );
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD
        .encode(json!({ "sub": "1", "sid": session, "iat": now, "exp": now + 600 }).to_string());
    let alg_none = format!("{header}.{payload}.");
    let right_key_unknown_session = forge(
        secret.trim().as_bytes(),
        json!({ "sub": "1", "sid": "made-up", "iat": now, "exp": now + 600 }),
    );

    for (token, what) in [
        (expired, "expired token"),
        (other_key, "token signed with another key"),
        (alg_none, "token with alg none"),
        (
            right_key_unknown_session,
            "token for a session that does not exist",
        ),
        ("not.a.jwt".to_owned(), "garbage token"),
    ] {
        let response = app.get("/api/auth/me", Some(&token)).await;
        expect_error(response, StatusCode::UNAUTHORIZED, what).await;
    }
    // The genuine token still works.
    assert_eq!(
        app.get("/api/auth/me", Some(&valid)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn password_change_signs_out_other_sessions_only() {
    let app = spawn_app().await;
    app.create_user("carol", "carol-password-1").await;
    let phone = app.token("carol", "carol-password-1").await;
    let laptop = app.sign_in("carol", "carol-password-1").await;

    let wrong = app
        .post(
            "/api/auth/password",
            Some(&phone),
            json!({ "current_password": "nope", "new_password": "carol-password-2" }),
        )
        .await;
    expect_error(wrong, StatusCode::FORBIDDEN, "wrong current password").await;
    let short = app
        .post(
            "/api/auth/password",
            Some(&phone),
            json!({ "current_password": "carol-password-1", "new_password": "short" }),
        )
        .await;
    expect_error(
        short,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too-short new password",
    )
    .await;

    let changed = app
        .post(
            "/api/auth/password",
            Some(&phone),
            json!({ "current_password": "carol-password-1", "new_password": "carol-password-2" }),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/auth/me", Some(&phone)).await.status(),
        StatusCode::OK,
        "own session stays"
    );
    let other = app
        .get("/api/auth/me", laptop["access_token"].as_str())
        .await;
    expect_error(other, StatusCode::UNAUTHORIZED, "other session is revoked").await;
    let other_refresh = app
        .post(
            "/api/auth/refresh",
            None,
            json!({ "refresh_token": laptop["refresh_token"] }),
        )
        .await;
    expect_error(
        other_refresh,
        StatusCode::UNAUTHORIZED,
        "other session cannot refresh",
    )
    .await;
    expect_error(
        app.login("carol", "carol-password-1").await,
        StatusCode::UNAUTHORIZED,
        "old password",
    )
    .await;
    assert_eq!(
        app.login("carol", "carol-password-2").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn changing_the_first_admin_password_removes_its_file() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let file = app.data_dir().join("server/initial-admin-password");
    assert!(file.exists());
    let response = app
        .post(
            "/api/auth/password",
            Some(&token),
            json!({ "current_password": app.admin_password, "new_password": "a-brand-new-password" }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(!file.exists(), "the stale password file is removed");
}

#[tokio::test]
async fn login_rate_limit_answers_429_with_retry_after_and_is_audited() {
    let app = spawn_app_with(|c| c.rate_limits.login_per_minute = 3).await;
    for attempt in 0..3 {
        let response = app.login(ADMIN, "wrong-password").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt} is within the limit"
        );
    }
    let limited = app.login(ADMIN, &app.admin_password).await;
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "retry after {retry_after} s"
    );
    let code = expect_error(limited, StatusCode::TOO_MANY_REQUESTS, "brute force").await;
    assert_eq!(code, "rate_limited");
    // Registration shares the per-IP budget.
    let register = app
        .post(
            "/api/auth/register",
            None,
            json!({ "username": "eve", "password": "eve-password-1" }),
        )
        .await;
    expect_error(
        register,
        StatusCode::TOO_MANY_REQUESTS,
        "registration is limited too",
    )
    .await;

    // The audit log (read directly, since signing in is itself limited now) holds the refusals:
    // one a minute per address, however many there were (a flood must not fill it).
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.data_dir().join("server/pocketdev.db").display()
    ))
    .await
    .unwrap();
    let limited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'login.rate_limited'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(limited, 1);
}

#[tokio::test]
async fn general_api_limit_applies_per_user() {
    let app = spawn_app_with(|c| c.rate_limits.api_per_minute = 5).await;
    let token = app.admin_token().await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(app.get("/api/auth/me", Some(&token)).await.status());
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(statuses[0], StatusCode::OK);
}

#[tokio::test]
async fn auth_config_is_public() {
    let app =
        spawn_app_with(|c| c.auth.registration = pocketdev::config::Registration::Invite).await;
    let response = app.get("/api/auth/config", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["registration"], "invite");
    assert_eq!(body["min_password_length"], 10);
}

#[tokio::test]
async fn me_says_how_many_instances_the_user_may_run() {
    for exempt in [false, true] {
        let app = spawn_app_with(|c| {
            c.limits.max_per_user = 3;
            c.limits.admins_exempt = exempt;
        })
        .await;
        app.create_user("bob", "bob-password-123").await;
        let admin = app.admin_token().await;
        let signed_in = app.sign_in("bob", "bob-password-123").await;
        assert_eq!(signed_in["user"]["max_instances"], 3, "sign-in says it too");
        let bob = signed_in["access_token"].as_str().unwrap().to_owned();
        let admin_me: Value = app
            .get("/api/auth/me", Some(&admin))
            .await
            .json()
            .await
            .unwrap();
        let bob_me: Value = app
            .get("/api/auth/me", Some(&bob))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            admin_me["username"], ADMIN,
            "the user's own fields stay at the top level"
        );
        assert_eq!(
            admin_me["max_instances"],
            if exempt { Value::Null } else { json!(3) },
            "an admin's limit with admins_exempt = {exempt}"
        );
        assert_eq!(
            bob_me["max_instances"], 3,
            "a user's limit with admins_exempt = {exempt}"
        );
    }
}

#[tokio::test]
async fn me_without_any_credential_says_no_refresh_can_help() {
    let app = spawn_app().await;
    // Nothing at all: the browser has no session to refresh.
    let none = app.get("/api/auth/me", None).await;
    assert_eq!(none.headers().get("www-authenticate").unwrap(), "Bearer");
    assert_eq!(
        expect_error(none, StatusCode::UNAUTHORIZED, "no credential").await,
        "no_session"
    );
    // A refresh cookie without an access cookie (the access cookie expired first): refresh.
    let refresh_only = reqwest::Client::new()
        .get(app.url("/api/auth/me"))
        .header("cookie", "pd_refresh=something")
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(
            refresh_only,
            StatusCode::UNAUTHORIZED,
            "refresh cookie only"
        )
        .await,
        "unauthorized"
    );
    // A bad access token is its own answer, whatever else was sent.
    let bad = app.get("/api/auth/me", Some("not-a-token")).await;
    assert_eq!(
        expect_error(bad, StatusCode::UNAUTHORIZED, "bad token").await,
        "unauthorized"
    );
}
