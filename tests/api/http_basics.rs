//! Health, OpenAPI, error shape for bad requests, security headers, body limits, base path.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{ADMIN, expect_error, spawn_app, spawn_app_with};

#[tokio::test]
async fn health_reports_database_and_tmux() {
    let app = spawn_app().await;
    let response = app.get("/api/health", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let tmux = body["checks"]["tmux"].as_str().unwrap();
    assert!(
        tmux.starts_with(|c: char| c.is_ascii_digit()),
        "tmux version reported, got {tmux}"
    );
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn openapi_lists_every_endpoint() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut listed = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            listed.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let expected: BTreeSet<String> = [
        "GET /api/health",
        "GET /api/auth/config",
        "POST /api/auth/register",
        "POST /api/auth/login",
        "POST /api/auth/refresh",
        "POST /api/auth/logout",
        "GET /api/auth/me",
        "POST /api/auth/password",
        "GET /api/admin/users",
        "POST /api/admin/users",
        "PATCH /api/admin/users/{id}",
        "DELETE /api/admin/users/{id}",
        "POST /api/admin/invites",
        "GET /api/admin/invites",
        "DELETE /api/admin/invites/{id}",
        "GET /api/admin/audit",
        "GET /api/models",
        "GET /api/instances",
        "POST /api/instances",
        "GET /api/instances/{id}",
        "PATCH /api/instances/{id}",
        "DELETE /api/instances/{id}",
        "POST /api/instances/{id}/stop",
        "POST /api/instances/{id}/restart",
        "POST /api/instances/{id}/command",
        "GET /api/instances/{id}/output",
        "POST /api/instances/{id}/hooks",
        "GET /api/secrets",
        "PUT /api/secrets/{name}",
        "DELETE /api/secrets/{name}",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let missing: Vec<_> = expected.difference(&listed).collect();
    assert!(missing.is_empty(), "missing from OpenAPI: {missing:?}");
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("bearer") && schemes.contains_key("cookie"));
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let login = app.url("/api/auth/login");
    let cases = [
        (
            client
                .post(&login)
                .header("content-type", "application/json")
                .body("{\"username\":"),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            client
                .post(&login)
                .header("content-type", "text/plain")
                .body("username=admin"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong content type",
        ),
        (
            client.post(&login).body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "no content type",
        ),
        (
            client
                .post(&login)
                .header("content-type", "application/json")
                .body("{\"username\":\"admin\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field",
        ),
        (
            client
                .post(&login)
                .header("content-type", "application/json")
                .body("{\"username\":1,\"password\":2}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong types",
        ),
        (
            client
                .post(&login)
                .header("content-type", "application/json")
                .body("[]"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "array instead of object",
        ),
        (
            client.get(app.url("/api/no-such-thing")),
            StatusCode::NOT_FOUND,
            "unknown endpoint",
        ),
        (
            client.delete(app.url("/api/health")),
            StatusCode::METHOD_NOT_ALLOWED,
            "wrong method",
        ),
    ];
    for (request, status, what) in cases {
        let response = request.send().await.unwrap();
        expect_error(response, status, what).await;
    }
}

#[tokio::test]
async fn a_10_mb_body_is_refused_with_413() {
    let app = spawn_app().await;
    let padding = "x".repeat(10 * 1024 * 1024);
    let body = format!("{{\"username\":\"admin\",\"password\":\"{padding}\"}}");
    let response = reqwest::Client::new()
        .post(app.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "10 MB body").await;
    assert_eq!(code, "payload_too_large");
    // The server is fine afterwards.
    assert_eq!(
        app.login(ADMIN, &app.admin_password).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn responses_carry_security_headers_and_a_request_id() {
    let app = spawn_app().await;
    let response = app.get("/api/health", None).await;
    let headers = response.headers();
    let csp = headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"),
        "{csp}"
    );
    assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(headers.get("referrer-policy").unwrap(), "no-referrer");
    assert!(headers.get("x-request-id").is_some());
    assert!(
        headers.get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
}

#[tokio::test]
async fn the_whole_app_can_live_under_a_base_path() {
    let app = spawn_app_with(|c| c.base_path = "/pocketdev/".into()).await;
    // `app.url` already prefixes the base path.
    assert_eq!(app.get("/api/health", None).await.status(), StatusCode::OK);
    let response = app
        .browser
        .post(app.url("/api/auth/login"))
        .json(&serde_json::json!({ "username": ADMIN, "password": app.admin_password }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookies: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("pd_access=") && c.contains("Path=/pocketdev/")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("pd_refresh=") && c.contains("Path=/pocketdev/api/auth/")),
        "{cookies:?}"
    );
    assert_eq!(
        app.browser
            .get(app.url("/api/auth/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let outside = reqwest::get(format!("http://{}/api/health", app.addr))
        .await
        .unwrap();
    expect_error(
        outside,
        StatusCode::NOT_FOUND,
        "paths outside the base path",
    )
    .await;
    let root = reqwest::get(app.url("/")).await.unwrap();
    assert_eq!(root.status(), StatusCode::OK);
}

#[tokio::test]
async fn unauthenticated_api_calls_get_401_with_www_authenticate() {
    let app = spawn_app().await;
    let response = app.call(Method::GET, "/api/auth/me", None, None).await;
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer"
    );
    expect_error(response, StatusCode::UNAUTHORIZED, "no credentials").await;
    let bad_scheme = reqwest::Client::new()
        .get(app.url("/api/auth/me"))
        .header("authorization", "Basic YWRtaW46eA==")
        .send()
        .await
        .unwrap();
    expect_error(
        bad_scheme,
        StatusCode::UNAUTHORIZED,
        "basic auth is not accepted",
    )
    .await;
}

/// JSON answers come gzipped to a client that takes gzip; files keep their bytes and their
/// byte ranges (a download resumes), and nothing is compressed for a client that did not ask.
#[tokio::test]
async fn json_is_gzipped_for_clients_that_accept_it_and_files_are_not() {
    use std::io::Read;
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let text = "a line of a file that repeats, as source code does\n".repeat(200);
    let saved = app
        .post(
            "/api/files/save",
            Some(&token),
            serde_json::json!({ "path": "notes.txt", "content": text }),
        )
        .await;
    assert!(saved.status().is_success(), "{}", saved.status());
    let get = |path: &'static str, gzip: bool| {
        let mut request = reqwest::Client::new()
            .get(app.url(path))
            .bearer_auth(&token);
        if gzip {
            request = request.header("accept-encoding", "gzip");
        }
        async move { request.send().await.expect("the server answers") }
    };

    let plain = get("/api/files/content?path=notes.txt", false).await;
    assert!(plain.headers().get("content-encoding").is_none());
    let plain: Value = plain.json().await.unwrap();
    let zipped = get("/api/files/content?path=notes.txt", true).await;
    assert_eq!(zipped.status(), StatusCode::OK);
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let bytes = zipped.bytes().await.unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut json)
        .expect("a gzip stream");
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), plain);
    assert!(
        bytes.len() * 5 < json.len(),
        "{} bytes for {} of JSON",
        bytes.len(),
        json.len()
    );

    let download = get("/api/files/download?path=notes.txt", true).await;
    assert!(download.headers().get("content-encoding").is_none());
    assert_eq!(download.headers()["accept-ranges"], "bytes");
    assert_eq!(download.bytes().await.unwrap(), text.as_bytes());
}
