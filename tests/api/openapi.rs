//! The OpenAPI description against the server it describes. A schema fuzzer once found statuses
//! no operation documented and schema-valid requests the server refused; this test keeps them in
//! step without Python: it reads the served document and calls every operation in it
//! - without credentials (a signed-in operation must answer 401),
//! - with a minimal valid request built from the document (required fields and parameters only,
//!   from the examples, or values that the schema allows),
//! - with path parameters that name nothing,
//! - with query parameters of the wrong type, and with wrongly typed, malformed and non-JSON
//!   bodies.
//!
//! Every answer must be a status the operation documents (or its `default`), never 500; error
//! answers must be JSON in the error shape; JSON answers must match the documented schema; and a
//! request the description allows (the minimal one, an optional body left out, a `null` body the
//! schema takes) must not be refused with 400, 415 or 422. Every operation must also succeed at
//! least once, except those in [`NO_SUCCESS_HERE`].
//!
//! No operation is left out. `GET /ws/instance/{id}` is called as plain HTTP: the handshake's
//! headers are documented parameters, so the minimal request gets its 101; what then flows over
//! the socket is tested in terminal.rs against docs/terminal-protocol.md, not here.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ADMIN, TestApp, spawn_app_with};

/// Operations this test calls in every way but cannot make succeed, and why.
const NO_SUCCESS_HERE: &[(&str, &str)] = &[
    (
        "POST /api/instances/{id}/hooks",
        "only the agent holds its instance's hook token (instances.rs and monitor.rs report with one)",
    ),
    (
        "POST /api/push/act",
        "answering from a notification waits for approvals (push.rs spends real tokens)",
    ),
    (
        "POST /api/instances/{id}/interrupted/retry",
        "only an agent killed mid-turn leaves a prompt to send again (claude.rs kills one)",
    ),
    (
        "POST /api/auth/password",
        "would change the admin's password under the other calls (auth.rs changes passwords)",
    ),
];

/// The minimal request of an operation, where the document's examples alone cannot make it
/// succeed (a resource must exist, or a secret must be known).
fn overrides(op: &str, fixtures: &Fixtures) -> Option<Override> {
    let path = |p: &str| Override::Query(vec![("path".into(), p.into())]);
    Some(match op {
        "POST /api/auth/login" => Override::Body(json!({
            "username": ADMIN, "password": fixtures.admin_password,
        })),
        "POST /api/auth/refresh" => {
            Override::Body(json!({ "refresh_token": fixtures.refresh_token }))
        }
        // The examples' `shell` runs a login shell; the test's agent is lighter.
        "POST /api/instances" => Override::Body(json!({ "profile": "fake" })),
        "GET /api/files/content" | "GET /api/files/download" => path("notes.txt"),
        "DELETE /api/files" => path("to-delete.txt"),
        "POST /api/files/mkdir" => Override::Body(json!({ "path": "new-folder" })),
        "POST /api/push/subscriptions" => Override::Body(push_subscription()),
        // A budget needs a cost or a number of tokens, either of which the schema leaves out.
        "PUT /api/admin/budgets" => Override::Body(json!({ "period": "month", "cost": 50 })),
        "POST /api/files/move" => {
            Override::Body(json!({ "from": "to-move.txt", "to": "moved.txt" }))
        }
        // A clone of the fixture's bare repository, which the account can read.
        "POST /api/git/clone" => Override::Body(json!({
            "url": fixtures.git_remote, "folder": "conformance-clone",
        })),
        "GET /api/git/repo/status" | "GET /api/git/repo/diff" => {
            Override::Query(vec![("folder".into(), "conformance-repo".into())])
        }
        _ => return None,
    })
}

/// A subscription to a loopback port where nothing listens: sending to it fails at once.
fn push_subscription() -> Value {
    json!({ "subscription": {
        "endpoint": "http://127.0.0.1:9/push/conformance",
        "expirationTime": null,
        "keys": {
            "p256dh": "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY",
            "auth": "_ordMnz7uTCmrpBTeUV4Bw",
        },
    }})
}

enum Override {
    Query(Vec<(String, String)>),
    Body(Value),
}

/// Resources that path parameters name, made before the calls.
struct Fixtures {
    admin_password: String,
    refresh_token: String,
    /// (method and path, parameter) → value; `*` for any method.
    params: BTreeMap<(String, String), String>,
    /// A bare repository in the admin's workspace (the git instance's `origin`).
    git_remote: String,
}

impl Fixtures {
    fn param(&self, method: &str, path: &str, name: &str) -> Option<String> {
        let key = |m: &str| (format!("{m} {path}"), name.to_owned());
        self.params
            .get(&key(method))
            .or_else(|| self.params.get(&key("*")))
            .cloned()
    }
}

#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    Raw(String, Vec<u8>),
}

/// One way of calling an operation: with the session's token or none; `valid` when the
/// description allows the request, so a 400, 415 or 422 is a refusal of a valid request.
struct Attempt {
    what: String,
    call: Call,
    signed_in: bool,
    valid: bool,
}

#[derive(Clone)]
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Body,
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

#[tokio::test]
async fn every_operation_answers_only_what_the_description_documents() {
    let app = spawn_app_with(|c| {
        c.auth.registration = pocketdev::config::Registration::Open;
        c.limits.max_per_user = 10;
        c.push.subject = Some("mailto:ops@example.org".into());
        c.push.allowed_hosts = vec!["127.0.0.1".into()];
        let mut resumable = crate::helpers::fake_profile();
        resumable.session_args = Some(vec!["--session-id".into(), "{session}".into()]);
        resumable.resume_args = Some(vec!["--resume".into(), "{session}".into()]);
        c.profiles.insert("fake-resumable".into(), resumable);
    })
    .await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .expect("the description is JSON");
    let fixtures = make_fixtures(&app, &doc).await;

    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 30, "the description lists the API");
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let operation = Operation {
                key: format!("{} {path}", method.to_uppercase()),
                path,
                method,
                op,
            };
            let statuses = exercise(&app, &doc, &fixtures, &operation, &mut problems).await;
            seen.insert(operation.key, statuses);
        }
    }

    for (op, reason) in NO_SUCCESS_HERE {
        assert!(
            seen.contains_key(*op),
            "{op} is listed but not described ({reason})"
        );
    }
    for (op, statuses) in &seen {
        let succeeded = statuses.iter().any(|s| *s < 400);
        let excused = NO_SUCCESS_HERE.iter().any(|(o, _)| o == op);
        if !succeeded && !excused {
            problems.push(format!(
                "{op}: never succeeded (answers {statuses:?}); fix its examples, add an override, \
                 or list it in NO_SUCCESS_HERE with the reason"
            ));
        }
    }
    let table: Vec<String> = seen.iter().map(|(op, s)| format!("{op}: {s:?}")).collect();
    eprintln!("answers seen:\n{}", table.join("\n"));
    assert!(
        problems.is_empty(),
        "the server and its description disagree:\n{}\n\nanswers seen:\n{}",
        problems.join("\n"),
        table.join("\n")
    );
}

/// One operation of the description: `METHOD /path`, its path, its method and its object.
struct Operation<'a> {
    key: String,
    path: &'a str,
    method: &'a str,
    op: &'a Value,
}

/// Calls one operation every way; returns the statuses it answered.
async fn exercise(
    app: &TestApp,
    doc: &Value,
    fixtures: &Fixtures,
    operation: &Operation<'_>,
    problems: &mut Vec<String>,
) -> BTreeSet<u16> {
    let Operation {
        key,
        path,
        method,
        op,
    } = operation;
    let (key, path, method, op) = (key.as_str(), *path, *method, *op);
    let mut statuses = BTreeSet::new();
    // A session of its own: logging out, or a password reset, ends only this one.
    let token = app.admin_token().await;
    let minimal = minimal_call(doc, fixtures, key, path, method, op);
    let attempt = |what: &str, call: Call, signed_in: bool, valid: bool| Attempt {
        what: what.to_owned(),
        call,
        signed_in,
        valid,
    };
    let mut attempts = vec![
        attempt("without credentials", minimal.clone(), false, true),
        attempt("minimal valid request", minimal.clone(), true, true),
    ];

    let parameters = parameters(doc, op);
    if parameters.iter().any(|p| p["in"] == "path") {
        let mut call = minimal.clone();
        call.path = path.to_owned();
        for p in &parameters {
            if p["in"] == "path" {
                let missing = if type_of(doc, &p["schema"]) == "integer" {
                    "987654321"
                } else {
                    "does-not-exist"
                };
                call.path = call
                    .path
                    .replace(&format!("{{{}}}", str_of(&p["name"])), missing);
            }
        }
        attempts.push(attempt("path parameters naming nothing", call, true, false));
    }
    let typed: Vec<&Value> = parameters
        .iter()
        .copied()
        .filter(|p| {
            p["in"] == "query"
                && matches!(type_of(doc, &p["schema"]), "integer" | "number" | "boolean")
        })
        .collect();
    if !typed.is_empty() {
        let mut call = minimal.clone();
        call.query
            .retain(|(name, _)| !typed.iter().any(|p| p["name"] == name.as_str()));
        for p in typed {
            call.query
                .push((str_of(&p["name"]).to_owned(), "not-a-number".into()));
        }
        attempts.push(attempt(
            "query parameters of the wrong type",
            call,
            true,
            false,
        ));
    }
    let body = &op["requestBody"];
    if let Some(content) = body["content"].as_object() {
        let mut with_body = |what: &str, body: Body, valid: bool| {
            let mut call = minimal.clone();
            call.body = body;
            attempts.push(attempt(what, call, true, valid));
        };
        if body["required"] != true {
            with_body("no body (it is optional)", Body::None, true);
        }
        with_body("a body of the wrong type", Body::Json(json!(42)), false);
        with_body(
            "malformed JSON",
            Body::Raw("application/json".into(), b"{\"".to_vec()),
            false,
        );
        with_body(
            "a body that is not JSON",
            Body::Raw("text/plain".into(), b"hello".to_vec()),
            false,
        );
        if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
            with_body(
                "required fields of the wrong type",
                Body::Json(wrongly_typed(doc, schema)),
                false,
            );
            if allows_null(doc, schema) {
                with_body(
                    "a `null` body (the schema allows it)",
                    Body::Json(Value::Null),
                    true,
                );
            }
        }
    }

    for Attempt {
        what,
        call,
        signed_in: with_token,
        valid,
    } in attempts
    {
        let requires_credentials = !with_token && signed_in(doc, op);
        let response = send(app, &call, with_token.then_some(token.as_str())).await;
        let status = response.status();
        statuses.insert(status.as_u16());
        let context = format!("{key} ({what}: {} {})", call.method, call.path);
        if valid && with_token && matches!(status.as_u16(), 400 | 415 | 422) {
            problems.push(format!(
                "{context}: a request the description allows was refused with {status}"
            ));
        }
        if requires_credentials && status != StatusCode::UNAUTHORIZED {
            problems.push(format!(
                "{context}: answered {status} without credentials, not 401"
            ));
        }
        check_answer(doc, op, &context, response, problems).await;
    }
    statuses
}

/// The documented status, the error shape, no 500, and JSON matching its schema.
async fn check_answer(
    doc: &Value,
    op: &Value,
    context: &str,
    response: reqwest::Response,
    problems: &mut Vec<String>,
) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = if status == StatusCode::SWITCHING_PROTOCOLS || content_type == "text/event-stream"
    {
        Vec::new() // the socket or the event stream is open: there is no end to wait for
    } else {
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default()
    };
    let text = String::from_utf8_lossy(&bytes);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        problems.push(format!("{context}: 500 {text}"));
    }
    let responses = &op["responses"];
    let Some(documented) = responses
        .get(status.as_str())
        .or_else(|| responses.get("default"))
    else {
        let listed: Vec<&String> = responses
            .as_object()
            .map(|r| r.keys().collect())
            .unwrap_or_default();
        problems.push(format!(
            "{context}: answered {status}, documented {listed:?}: {text}"
        ));
        return;
    };
    let documented = resolve(doc, documented);
    let is_json = content_type.starts_with("application/json");
    if status.as_u16() >= 400 {
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let shaped = body["error"]["code"].is_string()
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty());
        if !is_json || !shaped {
            problems.push(format!(
                "{context}: {status} is not a JSON error {{\"error\": {{code, message}}}} ({content_type}): {text}"
            ));
        }
    }
    let media = documented["content"].as_object();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if let Some(media) = media.filter(|m| !m.is_empty() && !bytes.is_empty())
        && !media.contains_key(essence)
    {
        let listed: Vec<&String> = media.keys().collect();
        problems.push(format!(
            "{context}: {status} came as {content_type:?}, documented {listed:?}"
        ));
    }
    if let Some(schema) = media
        .and_then(|m| m.get("application/json"))
        .map(|m| &m["schema"])
        && is_json
    {
        let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
            problems.push(format!("{context}: {status} says JSON but is not: {text}"));
            return;
        };
        let mut found = Vec::new();
        validate(doc, schema, &body, "body", &mut found);
        for problem in found {
            problems.push(format!(
                "{context}: {status} does not match its schema: {problem}"
            ));
        }
    }
}

async fn send(app: &TestApp, call: &Call, token: Option<&str>) -> reqwest::Response {
    let mut request = Client::new()
        .request(call.method.clone(), app.url(&call.path))
        .query(&call.query);
    for (name, value) in &call.headers {
        request = request.header(name, value);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request = match &call.body {
        Body::None => request,
        Body::Json(value) => request.json(value),
        Body::Raw(content_type, bytes) => request
            .header("content-type", content_type)
            .body(bytes.clone()),
    };
    request.send().await.expect("the server answers")
}

/// The request the document says is enough: required parameters and fields, with examples.
fn minimal_call(
    doc: &Value,
    fixtures: &Fixtures,
    key: &str,
    path: &str,
    method: &str,
    op: &Value,
) -> Call {
    let mut call = Call {
        method: method.to_uppercase().parse().expect("an HTTP method"),
        path: path.to_owned(),
        query: Vec::new(),
        headers: Vec::new(),
        body: Body::None,
    };
    for p in parameters(doc, op) {
        let name = str_of(&p["name"]);
        let at = format!("{key} parameter {name}");
        let value = || {
            let value = p
                .get("example")
                .cloned()
                .unwrap_or_else(|| sample(doc, &p["schema"], &at));
            match value {
                Value::String(s) => s,
                other => other.to_string(),
            }
        };
        match str_of(&p["in"]) {
            "path" => {
                let value = fixtures
                    .param(&method.to_uppercase(), path, name)
                    .unwrap_or_else(value);
                call.path = call.path.replace(&format!("{{{name}}}"), &value);
            }
            "query" if p["required"] == true => call.query.push((name.to_owned(), value())),
            "header" if p["required"] == true => call.headers.push((name.to_owned(), value())),
            _ => {}
        }
    }
    let body = &op["requestBody"];
    if let Some(content) = body["content"].as_object() {
        if let Some(media) = content.get("application/json") {
            call.body = Body::Json(sample(doc, &media["schema"], &format!("{key} body")));
        } else if let Some(media) = content.get("multipart/form-data") {
            call.body = multipart(doc, &media["schema"]);
        } else {
            panic!("{key}: a body of a kind this test cannot make: {content:?}");
        }
    }
    match overrides(key, fixtures) {
        Some(Override::Query(query)) => {
            for (name, value) in query {
                call.query.retain(|(n, _)| *n != name);
                call.query.push((name, value));
            }
        }
        Some(Override::Body(body)) => call.body = Body::Json(body),
        None => {}
    }
    call
}

/// A multipart form with the schema's required properties: binary ones as file parts.
fn multipart(doc: &Value, schema: &Value) -> Body {
    const BOUNDARY: &str = "conformance-boundary-7d9c";
    let schema = resolve(doc, schema);
    let mut form = Vec::new();
    for name in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let property = resolve(doc, &schema["properties"][name]);
        let binary = property["format"] == "binary"
            || resolve(doc, &property["items"])["format"] == "binary";
        let disposition = if binary {
            format!("form-data; name=\"{name}\"; filename=\"conformance.txt\"")
        } else {
            format!("form-data; name=\"{name}\"")
        };
        form.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\nconformance\r\n")
                .as_bytes(),
        );
    }
    form.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    Body::Raw(format!("multipart/form-data; boundary={BOUNDARY}"), form)
}

async fn make_fixtures(app: &TestApp, doc: &Value) -> Fixtures {
    let token = app.admin_token().await;
    let created = |response: reqwest::Response, what: &'static str| async move {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "fixture {what}: {status} {body}");
        body
    };
    let user = |name: &'static str| {
        let token = &token;
        async move {
            let response = app
                .post(
                    "/api/admin/users",
                    Some(token),
                    json!({ "username": name, "password": "conformance-password" }),
                )
                .await;
            created(response, "user").await["user"]["id"].to_string()
        }
    };
    let (kept_user, deleted_user) = (user("conformance").await, user("conformance-gone").await);
    let invite = created(
        app.post("/api/admin/invites", Some(&token), json!({}))
            .await,
        "invite",
    )
    .await;
    let instance = app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await;
    let deleted_instance = app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await;
    // Suspended and resumed (in either order): an agent that can resume.
    let suspendable = app
        .create_instance(&token, json!({ "profile": "fake-resumable" }))
        .await;
    let instance = str_of(&instance["id"]).to_owned();
    let deleted_instance = str_of(&deleted_instance["id"]).to_owned();
    let suspendable = str_of(&suspendable["id"]).to_owned();
    app.wait_for_state(&token, &suspendable, "running").await;
    app.wait_for_state(&token, &instance, "running").await;
    app.wait_for_state(&token, &deleted_instance, "running")
        .await;
    for (path, content) in [
        ("notes.txt", "notes"),
        ("to-delete.txt", "gone"),
        ("to-move.txt", "moved"),
    ] {
        created(
            app.post(
                "/api/files/save",
                Some(&token),
                json!({ "path": path, "content": content }),
            )
            .await,
            "file",
        )
        .await;
    }
    created(
        app.post("/api/files/mkdir", Some(&token), json!({ "path": "notes" }))
            .await,
        "folder",
    )
    .await;
    let secret = app
        .call(
            Method::PUT,
            "/api/secrets/ANTHROPIC_API_KEY",
            Some(&token),
            Some(json!({ "value": "sk-fixture" })),
        )
        .await;
    created(secret, "secret").await;

    // Every key the description offers must be one the server knows.
    let keys = &resolve(doc, &doc["components"]["schemas"]["Command"])["properties"]["keys"]["items"]
        ["enum"];
    assert!(
        keys.as_array().is_some_and(|k| !k.is_empty()),
        "Command.keys lists its names"
    );
    // Sent to the instance that is deleted anyway: `ctrl-d` and `ctrl-c` may end its agent.
    let pressed = app
        .command(
            &token,
            &deleted_instance,
            json!({ "keys": keys, "enter": false }),
        )
        .await;
    assert_eq!(
        pressed.status(),
        StatusCode::NO_CONTENT,
        "every documented key is known: {}",
        pressed.text().await.unwrap_or_default()
    );

    let subscription = created(
        app.post("/api/push/subscriptions", Some(&token), push_subscription())
            .await,
        "push subscription",
    )
    .await;

    // A repository with an `origin`, an instance on a branch of it pushed there (so pull has
    // an upstream), a change staged (so commit has something to commit, and merge then
    // something to merge) and one not.
    let admin_id = app.user_id(&token).await;
    let workspace = app.data_dir().join(format!("users/{admin_id}/workspace"));
    crate::git::make_repo(
        app,
        admin_id,
        "conformance-repo",
        &[("README.md", b"hello\n"), ("CHANGES.md", b"one\ntwo\n")],
    )
    .await;
    let remote = workspace.join("conformance-remote.git");
    let remote_path = remote.to_string_lossy().into_owned();
    crate::git::git_as(
        app,
        admin_id,
        &workspace,
        &[
            "clone",
            "-q",
            "--bare",
            "conformance-repo",
            "conformance-remote.git",
        ],
    )
    .await;
    crate::git::git_as(
        app,
        admin_id,
        &workspace.join("conformance-repo"),
        &["remote", "add", "origin", &remote_path],
    )
    .await;
    let git_instance = app
        .create_instance(
            &token,
            json!({ "profile": "fake", "repo": "conformance-repo", "branch": "conformance" }),
        )
        .await;
    let git_instance = str_of(&git_instance["id"]).to_owned();
    let worktree = "worktrees/conformance-repo/conformance";
    crate::git::git_as(
        app,
        admin_id,
        &workspace.join(worktree),
        &["push", "-q", "-u", "origin", "conformance"],
    )
    .await;
    crate::git::put(
        app,
        admin_id,
        &format!("{worktree}/README.md"),
        b"hello again\n",
    );
    // Left unstaged, so the diff has lines to check against its schema.
    crate::git::put(app, admin_id, &format!("{worktree}/CHANGES.md"), b"one\n2");
    created(
        app.post(
            &format!("/api/instances/{git_instance}/git/stage"),
            Some(&token),
            json!({ "paths": ["README.md"] }),
        )
        .await,
        "staged change",
    )
    .await;

    let refresh = app.sign_in(ADMIN, &app.admin_password).await["refresh_token"].clone();
    let mut params = BTreeMap::new();
    let mut set = |op: &str, name: &str, value: String| {
        params.insert((op.to_owned(), name.to_owned()), value);
    };
    set("* /api/admin/users/{id}", "id", kept_user.clone());
    set("DELETE /api/admin/users/{id}", "id", deleted_user);
    set("* /api/admin/invites/{id}", "id", invite["id"].to_string());
    // Two budgets: one to lift, one to remove (an account's: the PUT's own request replaces the
    // server's).
    for (path, user) in [
        ("POST /api/admin/budgets/{id}/lift", Value::Null),
        (
            "DELETE /api/admin/budgets/{id}",
            json!(kept_user.parse::<i64>().unwrap()),
        ),
    ] {
        let budget: Value = app
            .call(
                Method::PUT,
                "/api/admin/budgets",
                Some(&token),
                Some(json!({ "user_id": user, "period": "day", "tokens": 1_000_000 })),
            )
            .await
            .json()
            .await
            .unwrap();
        set(path, "id", budget["id"].to_string());
    }
    for path in [
        "/api/instances/{id}",
        "/api/instances/{id}/approvals/{approval_id}",
        "/api/instances/{id}/command",
        "/api/instances/{id}/history",
        "/api/instances/{id}/hooks",
        "/api/instances/{id}/interrupted",
        "/api/instances/{id}/interrupted/retry",
        "/api/instances/{id}/output",
        "/api/instances/{id}/restart",
        "/api/instances/{id}/stop",
        "/api/instances/{id}/ticket",
        "/api/instances/{id}/usage",
        "/ws/instance/{id}",
    ] {
        set(&format!("* {path}"), "id", instance.clone());
    }
    set("DELETE /api/instances/{id}", "id", deleted_instance);
    for what in [
        "status", "diff", "stage", "unstage", "discard", "commit", "push", "pull", "merge",
    ] {
        set(
            &format!("* /api/instances/{{id}}/git/{what}"),
            "id",
            git_instance.clone(),
        );
    }
    for path in ["/api/instances/{id}/suspend", "/api/instances/{id}/resume"] {
        set(&format!("* {path}"), "id", suspendable.clone());
    }
    // No dialog is up on the fake agent: the answer is `gone`.
    set(
        "* /api/instances/{id}/approvals/{approval_id}",
        "approval_id",
        "0123456789abcdef".into(),
    );
    set(
        "* /api/push/subscriptions/{id}",
        "id",
        subscription["id"].to_string(),
    );
    set("* /api/push/mutes/{id}", "id", instance.clone());
    Fixtures {
        admin_password: app.admin_password.clone(),
        refresh_token: str_of(&refresh).to_owned(),
        params,
        git_remote: remote_path,
    }
}

/// The operation's parameters, references resolved.
fn parameters<'a>(doc: &'a Value, op: &'a Value) -> Vec<&'a Value> {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| resolve(doc, p))
        .collect()
}

/// Whether the operation needs a credential: its `security` (or the document's) has no
/// anonymous alternative.
fn signed_in(doc: &Value, op: &Value) -> bool {
    let security = op.get("security").unwrap_or(&doc["security"]);
    let alternatives = security.as_array().cloned().unwrap_or_default();
    !alternatives.is_empty()
        && !alternatives
            .iter()
            .any(|a| a.as_object().is_some_and(|o| o.is_empty()))
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let target = doc
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{reference} is not in the description"));
            resolve(doc, target)
        }
        None => value,
    }
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The schema's type, the first that is not `null` (`""` when it has none).
fn type_of<'a>(doc: &'a Value, schema: &'a Value) -> &'a str {
    let schema = resolve(doc, schema);
    match &schema["type"] {
        Value::String(t) => t,
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "",
    }
}

/// A value the schema allows: its example, else the least it takes (required properties only).
fn sample(doc: &Value, schema: &Value, at: &str) -> Value {
    let schema = resolve(doc, schema);
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if let Some(example) = schema["examples"].as_array().and_then(|e| e.first()) {
        return example.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    for combinator in ["oneOf", "anyOf"] {
        if let Some(variants) = schema[combinator].as_array() {
            let variant = variants
                .iter()
                .find(|v| type_of(doc, v) != "null")
                .expect("a variant that is not null");
            return sample(doc, variant, at);
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let mut merged = serde_json::Map::new();
        for part in parts {
            if let Value::Object(fields) = sample(doc, part, at) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    match type_of(doc, schema) {
        "string" => {
            assert!(
                schema.get("pattern").is_none(),
                "{at} has a pattern but no example: give it one, so clients (and this test) see a valid value"
            );
            let length = schema["minLength"].as_u64().unwrap_or(1) as usize;
            Value::String("x".repeat(length.max(1)))
        }
        "integer" => json!(schema["minimum"].as_i64().unwrap_or(1)),
        "number" => json!(schema["minimum"].as_f64().unwrap_or(1.0)),
        "boolean" => json!(false),
        "array" => {
            let count = schema["minItems"].as_u64().unwrap_or(0) as usize;
            Value::Array(
                (0..count)
                    .map(|_| sample(doc, &schema["items"], at))
                    .collect(),
            )
        }
        "object" | "" => {
            let mut fields = serde_json::Map::new();
            for name in required(schema) {
                let field = sample(doc, &schema["properties"][name], &format!("{at}.{name}"));
                fields.insert(name.to_owned(), field);
            }
            Value::Object(fields)
        }
        other => panic!("{at}: no sample for type {other}"),
    }
}

/// Whether `null` is a value the schema allows.
fn allows_null(doc: &Value, schema: &Value) -> bool {
    let schema = resolve(doc, schema);
    let typed_null = match &schema["type"] {
        Value::String(t) => t == "null",
        Value::Array(ts) => ts.iter().any(|t| t == "null"),
        _ => false,
    };
    typed_null
        || ["oneOf", "anyOf"].iter().any(|c| {
            schema[*c]
                .as_array()
                .is_some_and(|vs| vs.iter().any(|v| allows_null(doc, v)))
        })
}

/// The object's required fields, each with a value of another type than its schema's.
fn wrongly_typed(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    let schema = schema["oneOf"]
        .as_array()
        .and_then(|v| v.iter().find(|v| type_of(doc, v) != "null"))
        .map_or(schema, |v| resolve(doc, v));
    let mut fields = serde_json::Map::new();
    for name in required(schema) {
        let wrong = match type_of(doc, &schema["properties"][name]) {
            "string" => json!(42),
            _ => json!("a string"),
        };
        fields.insert(name.to_owned(), wrong);
    }
    if fields.is_empty() {
        // Nothing required: a known field of the wrong type, else the whole body.
        match schema["properties"]
            .as_object()
            .and_then(|p| p.iter().next())
        {
            Some((name, property)) => {
                let wrong = if type_of(doc, property) == "string" {
                    json!(42)
                } else {
                    json!("a string")
                };
                fields.insert(name.clone(), wrong);
            }
            None => return json!([1, 2, 3]),
        }
    }
    Value::Object(fields)
}

/// Checks `value` against `schema` (types, required and unknown properties, enums, items,
/// combinators); adds what does not match to `problems`.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    for combinator in ["oneOf", "anyOf"] {
        if let Some(variants) = schema[combinator].as_array() {
            let fits = variants.iter().any(|v| {
                let mut found = Vec::new();
                validate(doc, v, value, at, &mut found);
                found.is_empty()
            });
            if !fits {
                problems.push(format!("{at}: {value} fits none of {combinator}"));
            }
        }
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        validate_parts(doc, part, value, at, problems);
    }
    let types: Option<Vec<&str>> = match &schema["type"] {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    };
    if let Some(types) = types
        && !types.iter().any(|t| has_type(value, t))
    {
        problems.push(format!("{at}: {value} is not {types:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !value.is_null()
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Value::Array(items) = value {
        for (i, item) in items.iter().enumerate() {
            if schema.get("items").is_some() {
                validate(doc, &schema["items"], item, &format!("{at}[{i}]"), problems);
            }
        }
    }
    if let Value::Object(fields) = value {
        validate_object(
            doc,
            schema,
            fields,
            at,
            problems,
            schema["allOf"].is_array(),
        );
    }
}

/// One `allOf` part: its own checks, without refusing the properties other parts declare.
fn validate_parts(doc: &Value, part: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let part = resolve(doc, part);
    match value {
        Value::Object(fields) => validate_object(doc, part, fields, at, problems, true),
        _ => validate(doc, part, value, at, problems),
    }
}

fn validate_object(
    doc: &Value,
    schema: &Value,
    fields: &serde_json::Map<String, Value>,
    at: &str,
    problems: &mut Vec<String>,
    in_all_of: bool,
) {
    for name in schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !fields.contains_key(name) {
            problems.push(format!("{at}: `{name}` is required and missing"));
        }
    }
    let properties = schema["properties"].as_object();
    for (name, field) in fields {
        match properties.and_then(|p| p.get(name)) {
            Some(property) => validate(doc, property, field, &format!("{at}.{name}"), problems),
            None if schema["additionalProperties"] == false && !in_all_of => {
                problems.push(format!("{at}: `{name}` is not in the schema"));
            }
            None => {
                if let Some(extra) = schema["additionalProperties"].as_object() {
                    validate(
                        doc,
                        &Value::Object(extra.clone()),
                        field,
                        &format!("{at}.{name}"),
                        problems,
                    );
                }
            }
        }
    }
}

fn has_type(value: &Value, t: &str) -> bool {
    match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

/// The names of an object schema's required fields.
fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}
