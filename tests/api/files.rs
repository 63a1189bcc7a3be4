//! Workspace files over real HTTP: reading, saving with conflicts, folders, moves, deletes, and
//! the jail against a list of hostile paths and symlinks planted the way an agent would.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_error, expect_error_saying, spawn_app};

struct Setup {
    app: TestApp,
    token: String,
    workspace: PathBuf,
    /// Another user's workspace, with `secret.txt` in it.
    other: PathBuf,
}

async fn setup() -> Setup {
    let app = spawn_app().await;
    let alice = app.create_user("alice", "alice-password-1").await;
    let bob = app.create_user("bob", "bob-password-12").await;
    let token = app.token("alice", "alice-password-1").await;
    // Listing creates the workspace.
    let response = app.get("/api/files", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bob_token = app.token("bob", "bob-password-12").await;
    app.get("/api/files", Some(&bob_token)).await;
    let users = app.data_dir().join("users");
    let other = users.join(bob.to_string()).join("workspace");
    std::fs::write(other.join("secret.txt"), "bob's secret").unwrap();
    Setup {
        workspace: users.join(alice.to_string()).join("workspace"),
        other,
        app,
        token,
    }
}

impl Setup {
    async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        self.app
            .call(method, path_and_query, Some(&self.token), body)
            .await
    }

    async fn read(&self, path: &str) -> reqwest::Response {
        let url = reqwest::Url::parse_with_params("http://x/api/files/content", [("path", path)])
            .unwrap();
        self.request(
            Method::GET,
            &format!("/api/files/content?{}", url.query().unwrap()),
            None,
        )
        .await
    }

    async fn save(&self, body: Value) -> reqwest::Response {
        self.request(Method::POST, "/api/files/save", Some(body))
            .await
    }
}

fn encode(path: &str) -> String {
    let url = reqwest::Url::parse_with_params("http://x/", [("path", path)]).unwrap();
    url.query().unwrap().to_owned()
}

/// "New file" creates only: a name that is taken answers 409 and the file keeps its content.
#[tokio::test]
async fn creating_a_file_never_empties_an_existing_one() {
    let s = setup().await;
    std::fs::write(s.workspace.join("plan.md"), "the agent's plan\n").unwrap();
    let response = s
        .save(json!({ "path": "plan.md", "content": "", "if_absent": true }))
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{body}"
    );
    assert_eq!(
        std::fs::read_to_string(s.workspace.join("plan.md")).unwrap(),
        "the agent's plan\n"
    );
    let response = s
        .save(json!({ "path": "fresh.md", "content": "", "if_absent": true }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(std::fs::read(s.workspace.join("fresh.md")).unwrap(), b"");
}

#[tokio::test]
async fn read_edit_and_save_with_conflicts() {
    let s = setup().await;
    let response = s
        .save(json!({ "path": "notes.md", "content": "hello\n" }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let saved: Value = response.json().await.unwrap();

    let response = s.read("notes.md").await;
    assert_eq!(response.status(), StatusCode::OK);
    let header = response.headers()["etag"].to_str().unwrap().to_owned();
    let read: Value = response.json().await.unwrap();
    assert_eq!(read["content"], "hello\n");
    assert_eq!(read["encoding"], "utf-8");
    assert_eq!(read["etag"], saved["etag"]);
    assert_eq!(header, format!("\"{}\"", read["etag"].as_str().unwrap()));

    // The agent changes the file meanwhile: the user's save is refused and nothing is lost.
    std::fs::write(s.workspace.join("notes.md"), "agent was here\n").unwrap();
    let response = s
        .save(json!({ "path": "notes.md", "content": "mine\n", "expected_etag": read["etag"] }))
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let conflict: Value = response.json().await.unwrap();
    assert_eq!(conflict["error"]["code"], "conflict");
    let current = s.read("notes.md").await.json::<Value>().await.unwrap();
    assert_eq!(conflict["current_etag"], current["etag"]);
    assert_eq!(
        std::fs::read_to_string(s.workspace.join("notes.md")).unwrap(),
        "agent was here\n"
    );

    let response = s
        .save(
            json!({ "path": "notes.md", "content": "merged\n", "expected_etag": current["etag"] }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        std::fs::read_to_string(s.workspace.join("notes.md")).unwrap(),
        "merged\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&s.workspace)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("pocketdev"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files are left");

    // Binary and oversized files are refused with a clear status.
    std::fs::write(s.workspace.join("image.png"), b"\x89PNG\r\n\x1a\n\0\0\0").unwrap();
    expect_error(
        s.read("image.png").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "binary",
    )
    .await;
    std::fs::write(s.workspace.join("big.log"), vec![b'x'; 3 * 1024 * 1024]).unwrap();
    expect_error(
        s.read("big.log").await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too large",
    )
    .await;

    let audit = s.app.audit("file.save").await;
    assert_eq!(audit.len(), 2, "each successful save is audited: {audit:?}");
}

#[tokio::test]
async fn folders_moves_and_deletes() {
    let s = setup().await;
    let mkdir = |path: &'static str| {
        s.request(
            Method::POST,
            "/api/files/mkdir",
            Some(json!({ "path": path })),
        )
    };
    assert_eq!(mkdir("src").await.status(), StatusCode::CREATED);
    assert_eq!(mkdir("src").await.status(), StatusCode::CONFLICT);
    expect_error(
        mkdir("missing/deep").await,
        StatusCode::NOT_FOUND,
        "parent missing",
    )
    .await;
    s.save(json!({ "path": "src/main.rs", "content": "fn main() {}\n" }))
        .await;
    s.save(json!({ "path": "README.md", "content": "# hi\n" }))
        .await;
    s.save(json!({ "path": ".env", "content": "X=1\n" })).await;

    let listing: Value = s
        .request(Method::GET, "/api/files", None)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["src", "README.md"],
        "folders first, hidden files hidden"
    );
    let listing: Value = s
        .request(Method::GET, "/api/files?hidden=true", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listing["entries"].as_array().unwrap().len(), 3);
    assert_eq!(listing["truncated"], false);

    let moved = s
        .request(
            Method::POST,
            "/api/files/move",
            Some(json!({ "from": "README.md", "to": "src/README.md" })),
        )
        .await;
    assert_eq!(moved.status(), StatusCode::NO_CONTENT);
    assert!(s.workspace.join("src/README.md").exists());
    let clash = s
        .request(
            Method::POST,
            "/api/files/move",
            Some(json!({ "from": ".env", "to": "src/main.rs" })),
        )
        .await;
    expect_error(clash, StatusCode::CONFLICT, "move never replaces").await;
    assert_eq!(
        std::fs::read_to_string(s.workspace.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    let into_itself = s
        .request(
            Method::POST,
            "/api/files/move",
            Some(json!({ "from": "src", "to": "src/inner" })),
        )
        .await;
    expect_error(into_itself, StatusCode::BAD_REQUEST, "into itself").await;

    expect_error(
        s.request(Method::DELETE, "/api/files?path=", None).await,
        StatusCode::BAD_REQUEST,
        "root",
    )
    .await;
    expect_error(
        s.request(Method::DELETE, "/api/files?path=.", None).await,
        StatusCode::BAD_REQUEST,
        "root",
    )
    .await;
    assert_eq!(
        s.request(Method::DELETE, "/api/files?path=src", None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(!s.workspace.join("src").exists());
    assert!(s.workspace.exists());
    assert_eq!(s.app.audit("file.delete").await.len(), 1);
    assert_eq!(s.app.audit("file.move").await.len(), 1);
}

/// Paths that must never reach outside; relative to a workspace, as a client would send them.
/// JSON bodies are not percent-decoded, so a percent-encoded path there is a literal name: each
/// such entry ends in a folder that does not exist, so writes are refused rather than creating
/// an oddly named file inside.
fn attack_paths(data_dir: &Path, other: &Path) -> Vec<String> {
    let data = data_dir.display().to_string();
    let other_abs = other.display().to_string();
    let mut paths: Vec<String> = [
        "..",
        "../",
        "../..",
        "../../..",
        "../../../../../../etc/passwd",
        "/etc/passwd",
        "/",
        "//etc/passwd",
        "./../etc/passwd",
        "a/../../etc/passwd",
        "foo/../../x",
        "foo/./../../x",
        "....//....//etc/passwd",
        "....//etc/passwd",
        "..\\..\\etc\\passwd",
        "\\..\\",
        "..\\",
        "%2e%2e/%2e%2e/etc/passwd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd/x",
        "..%2f..%2fetc%2fpasswd/x",
        "%252e%252e/%252e%252e/etc/passwd",
        "..%252f..%252fetc/passwd",
        "..%c0%af../etc/passwd",
        "x/\u{0}/y",
        "secret\u{0}.txt",
        "\u{FF0E}\u{FF0E}/\u{FF0E}\u{FF0E}/etc/passwd",
        "\u{2025}/\u{2025}/etc/passwd",
        "..\u{2215}..\u{2215}etc\u{2215}passwd/x",
        "..\u{FF0F}..\u{FF0F}etc/passwd",
        "\u{FE52}\u{FE52}/x/y",
        "..;/etc/passwd",
        "../2/workspace/secret.txt",
        "../../users/2/workspace/secret.txt",
        "../../server/pocketdev.db",
        "../../server/jwt.key",
        "../../server/secrets.key",
        "../../server/tmux.sock",
        "../home/.claude.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paths.push(format!("{data}/server/pocketdev.db"));
    paths.push(format!("{data}/server/jwt.key"));
    paths.push(format!("{other_abs}/secret.txt"));
    paths.push(other_abs);
    paths.push("a/".repeat(2100));
    paths.push("n".repeat(300));
    paths.push(format!("{}/x", "d".repeat(256)));
    paths
}

/// A digest of everything outside the workspace that an escape could touch.
fn outside_state(data_dir: &Path, other: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = vec![
        data_dir.join("server/pocketdev.db"),
        data_dir.join("server/jwt.key"),
        other.join("secret.txt"),
    ];
    files.retain(|f| f.exists());
    let mut state: Vec<(PathBuf, Vec<u8>)> = files
        .into_iter()
        .map(|f| {
            let c = std::fs::read(&f).unwrap();
            (f, c)
        })
        .collect();
    let mut other_names: Vec<String> = std::fs::read_dir(other)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    other_names.sort();
    state.push((other.to_path_buf(), other_names.join("\n").into_bytes()));
    state
}

#[tokio::test]
async fn hostile_paths_are_refused_on_every_endpoint() {
    let s = setup().await;
    s.save(json!({ "path": "inside.txt", "content": "in" }))
        .await;
    let data_dir = s.app.data_dir();
    let before = outside_state(&data_dir, &s.other);
    let paths = attack_paths(&data_dir, &s.other);
    assert!(paths.len() >= 40, "{} paths", paths.len());
    let refused = [
        StatusCode::BAD_REQUEST,
        StatusCode::FORBIDDEN,
        StatusCode::NOT_FOUND,
    ];
    for path in &paths {
        let q = encode(path);
        let attempts = [
            (
                "list",
                s.request(Method::GET, &format!("/api/files?{q}"), None)
                    .await,
            ),
            (
                "content",
                s.request(Method::GET, &format!("/api/files/content?{q}"), None)
                    .await,
            ),
            (
                "save",
                s.save(json!({ "path": path, "content": "pwned" })).await,
            ),
            (
                "mkdir",
                s.request(
                    Method::POST,
                    "/api/files/mkdir",
                    Some(json!({ "path": path })),
                )
                .await,
            ),
            (
                "move from",
                s.request(
                    Method::POST,
                    "/api/files/move",
                    Some(json!({ "from": path, "to": "moved" })),
                )
                .await,
            ),
            (
                "move to",
                s.request(
                    Method::POST,
                    "/api/files/move",
                    Some(json!({ "from": "inside.txt", "to": path })),
                )
                .await,
            ),
            (
                "delete",
                s.request(Method::DELETE, &format!("/api/files?{q}"), None)
                    .await,
            ),
        ];
        for (endpoint, response) in attempts {
            assert!(
                refused.contains(&response.status()),
                "{endpoint} {path:?}: {}",
                response.status()
            );
        }
    }
    // The same traversal sent raw, decoded once by the server.
    for raw in [
        "%2e%2e/%2e%2e/etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "%2E%2E",
        "a%00b",
        "%5c..%5c",
    ] {
        let response = s
            .request(Method::GET, &format!("/api/files/content?path={raw}"), None)
            .await;
        assert!(
            refused.contains(&response.status()),
            "raw {raw}: {}",
            response.status()
        );
    }
    assert_eq!(
        before,
        outside_state(&data_dir, &s.other),
        "nothing outside changed"
    );
    assert!(
        s.workspace.join("inside.txt").exists(),
        "the decoy was never moved out"
    );
}

#[tokio::test]
async fn symlinks_planted_by_an_agent_lead_nowhere_outside() {
    let s = setup().await;
    let data_dir = s.app.data_dir();
    let ws = &s.workspace;
    let link =
        |target: &Path, name: &str| std::os::unix::fs::symlink(target, ws.join(name)).unwrap();
    link(Path::new("/"), "root");
    link(&s.other, "other");
    link(&data_dir.join("server/pocketdev.db"), "db");
    link(Path::new("/etc"), "etc");
    link(Path::new("../../../server"), "server");
    std::fs::create_dir(ws.join("real")).unwrap();
    std::fs::write(ws.join("real/file.txt"), "inside").unwrap();
    link(Path::new("real/file.txt"), "good");
    let before = outside_state(&data_dir, &s.other);

    for path in [
        "root/etc/passwd",
        "other/secret.txt",
        "db",
        "etc/passwd",
        "server/jwt.key",
    ] {
        expect_error(s.read(path).await, StatusCode::FORBIDDEN, path).await;
    }
    for folder in ["root", "other", "etc", "server"] {
        let response = s
            .request(Method::GET, &format!("/api/files?path={folder}"), None)
            .await;
        expect_error(response, StatusCode::FORBIDDEN, folder).await;
    }
    expect_error(
        s.save(json!({ "path": "other/secret.txt", "content": "pwned" }))
            .await,
        StatusCode::FORBIDDEN,
        "save through a link",
    )
    .await;
    expect_error(
        s.save(json!({ "path": "other/new.txt", "content": "pwned" }))
            .await,
        StatusCode::FORBIDDEN,
        "create through a link",
    )
    .await;
    let response = s
        .request(
            Method::POST,
            "/api/files/mkdir",
            Some(json!({ "path": "root/tmp/pocketdev-pwned" })),
        )
        .await;
    expect_error(response, StatusCode::FORBIDDEN, "mkdir through a link").await;
    let response = s
        .request(
            Method::POST,
            "/api/files/move",
            Some(json!({ "from": "real/file.txt", "to": "other/stolen.txt" })),
        )
        .await;
    expect_error(response, StatusCode::FORBIDDEN, "move out through a link").await;
    let response = s
        .request(
            Method::POST,
            "/api/files/move",
            Some(json!({ "from": "other/secret.txt", "to": "mine.txt" })),
        )
        .await;
    expect_error(response, StatusCode::FORBIDDEN, "move in through a link").await;
    let response = s
        .request(Method::DELETE, "/api/files?path=other/secret.txt", None)
        .await;
    expect_error(response, StatusCode::FORBIDDEN, "delete through a link").await;

    // A link that stays inside works, and the listing says where links point.
    assert_eq!(
        s.read("good").await.json::<Value>().await.unwrap()["content"],
        "inside"
    );
    let response = s
        .save(json!({ "path": "good", "content": "through the link" }))
        .await;
    expect_error(response, StatusCode::BAD_REQUEST, "save through a link").await;
    assert_eq!(
        std::fs::read_to_string(ws.join("real/file.txt")).unwrap(),
        "inside"
    );
    let listing: Value = s
        .request(Method::GET, "/api/files", None)
        .await
        .json()
        .await
        .unwrap();
    let entry = |name: &str| {
        listing["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(entry("good")["target"], "real/file.txt");
    assert_eq!(entry("good")["target_kind"], "file");
    assert_eq!(entry("other")["kind"], "symlink");
    assert_eq!(
        entry("other")["target"],
        Value::Null,
        "where an outside link points is not shown"
    );

    // Deleting a link removes the link, never what it points to.
    assert_eq!(
        s.request(Method::DELETE, "/api/files?path=other", None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(s.other.join("secret.txt").exists());

    // A folder swapped for a link after it was listed.
    std::fs::create_dir(ws.join("swap")).unwrap();
    std::fs::write(ws.join("swap/passwd"), "mine").unwrap();
    assert_eq!(s.read("swap/passwd").await.status(), StatusCode::OK);
    std::fs::remove_dir_all(ws.join("swap")).unwrap();
    link(Path::new("/etc"), "swap");
    expect_error(
        s.read("swap/passwd").await,
        StatusCode::FORBIDDEN,
        "swapped folder",
    )
    .await;

    assert_eq!(
        before,
        outside_state(&data_dir, &s.other),
        "nothing outside changed"
    );
}

#[tokio::test]
async fn names_that_are_not_utf8_are_listed() {
    use std::os::unix::ffi::OsStrExt;
    let s = setup().await;
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(s.workspace.join(name), "latin-1 name").unwrap();
    std::fs::write(s.workspace.join("plain.txt"), "x").unwrap();
    let response = s.request(Method::GET, "/api/files", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let listing: Value = response.json().await.unwrap();
    let entries = listing["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let odd = entries
        .iter()
        .find(|e| e["utf8"] == false)
        .expect("the odd name is listed");
    assert_eq!(odd["name"], "caf\u{FFFD}.txt");
}

/// A multipart/form-data body with one file part per `(name, bytes)`.
fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "pocketdev-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\ncontent-type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Setup {
    async fn upload(&self, query: &str, files: &[(&str, &[u8])]) -> reqwest::Response {
        upload_as(&self.app, &self.token, query, files).await
    }

    async fn download(&self, path: &str, range: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .get(
                self.app
                    .url(&format!("/api/files/download?{}", encode(path))),
            )
            .bearer_auth(&self.token);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        request.send().await.unwrap()
    }
}

pub async fn upload_as(
    app: &TestApp,
    token: &str,
    query: &str,
    files: &[(&str, &[u8])],
) -> reqwest::Response {
    let (content_type, body) = multipart(files);
    reqwest::Client::new()
        .post(app.url(&format!("/api/files/upload?{query}")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".pocketdev-"))
        .collect()
}

#[tokio::test]
async fn uploads_stream_to_disk_and_downloads_resume() {
    let s = setup().await;
    // Bigger than the JSON body limit: uploads are limited by their own setting.
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let response = s
        .upload("", &[("data.bin", &data), ("note.txt", b"hi")])
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let uploaded: Value = response.json().await.unwrap();
    assert_eq!(uploaded[0]["path"], "data.bin");
    assert_eq!(uploaded[0]["size"], data.len());
    assert_eq!(std::fs::read(s.workspace.join("data.bin")).unwrap(), data);
    assert_eq!(s.app.audit("file.upload").await.len(), 2);

    let response = s.download("data.bin", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["accept-ranges"], "bytes");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("data.bin")
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), data.as_slice());

    let response = s.download("data.bin", Some("bytes=1000-1999")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 1000-1999/{}", data.len()).as_str()
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), &data[1000..2000]);
    let tail = s
        .download("data.bin", Some("bytes=-10"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(tail.as_ref(), &data[data.len() - 10..]);
    let response = s.download("data.bin", Some("bytes=99999999-")).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // Existing files are not replaced unless asked.
    let response = s.upload("", &[("note.txt", b"changed")]).await;
    expect_error(response, StatusCode::CONFLICT, "exists").await;
    assert_eq!(std::fs::read(s.workspace.join("note.txt")).unwrap(), b"hi");
    assert_eq!(
        s.upload("replace=true", &[("note.txt", b"changed")])
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        std::fs::read(s.workspace.join("note.txt")).unwrap(),
        b"changed"
    );

    // A multi-file upload that fails on a later file keeps none of them.
    let response = s
        .upload("", &[("fresh.txt", b"new"), ("note.txt", b"clash")])
        .await;
    expect_error(response, StatusCode::CONFLICT, "second part exists").await;
    assert!(
        !s.workspace.join("fresh.txt").exists(),
        "the first file was not kept"
    );

    // A file name is only ever the name: `./a` and `a/` land as `a`, inside.
    let response = s.upload("", &[("./dot.txt", b"1")]).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(s.workspace.join("dot.txt").exists());
    let response = s.upload("", &[("slash.txt/", b"2")]).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(s.workspace.join("slash.txt").is_file());
    let parent = s.workspace.parent().unwrap();
    let strays: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("pocketdev"))
        .collect();
    assert!(
        strays.is_empty(),
        "nothing was written beside the workspace: {strays:?}"
    );

    // Bad names and folders outside are refused; nothing is left behind.
    expect_error(
        s.upload("", &[("../escape.txt", b"x")]).await,
        StatusCode::BAD_REQUEST,
        "name with ..",
    )
    .await;
    std::os::unix::fs::symlink(&s.other, s.workspace.join("bob")).unwrap();
    expect_error(
        s.upload("path=bob", &[("x.txt", b"x")]).await,
        StatusCode::FORBIDDEN,
        "folder outside",
    )
    .await;
    assert!(!s.other.join("x.txt").exists());
    // Not multipart at all, or without its boundary: a JSON error like any other.
    for content_type in ["multipart/form-data", "text/plain"] {
        let response = reqwest::Client::new()
            .post(s.app.url("/api/files/upload"))
            .bearer_auth(&s.token)
            .header("content-type", content_type)
            .body("garbage")
            .send()
            .await
            .unwrap();
        expect_error(response, StatusCode::BAD_REQUEST, content_type).await;
    }
    expect_error(
        s.download("bob/secret.txt", None).await,
        StatusCode::FORBIDDEN,
        "download outside",
    )
    .await;
    assert!(temp_files(&s.workspace).is_empty());
}

#[tokio::test]
async fn an_upload_over_the_limit_leaves_nothing() {
    let app = crate::helpers::spawn_app_with(|config| config.files.max_upload_mb = 1).await;
    app.create_user("carol", "carol-password-1").await;
    let token = app.token("carol", "carol-password-1").await;
    let response = upload_as(
        &app,
        &token,
        "",
        &[("big.bin", &vec![7u8; 2 * 1024 * 1024])],
    )
    .await;
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "over the limit").await;
    let listing: Value = app
        .get("/api/files?hidden=true", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        listing["entries"],
        json!([]),
        "no partial file and no temporary file"
    );
}

#[tokio::test]
async fn the_quota_is_reported_and_enforced() {
    let app = crate::helpers::spawn_app_with(|config| config.files.quota_mb = 1).await;
    app.create_user("dave", "dave-password-12").await;
    let token = app.token("dave", "dave-password-12").await;
    let usage: Value = app
        .get("/api/files/usage", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (usage["used"].as_u64(), usage["quota"].as_u64()),
        (Some(0), Some(1024 * 1024))
    );
    let response = app
        .post(
            "/api/files/save",
            Some(&token),
            json!({ "path": "a.txt", "content": "x".repeat(600_000) }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let usage: Value = app
        .get("/api/files/usage", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["used"], 600_000);
    let response = app
        .post(
            "/api/files/save",
            Some(&token),
            json!({ "path": "b.txt", "content": "y".repeat(600_000) }),
        )
        .await;
    let code = expect_error(response, StatusCode::INSUFFICIENT_STORAGE, "over quota").await;
    assert_eq!(code, "quota_exceeded");
    // Replacing a file counts only what it grows by.
    let response = app
        .post(
            "/api/files/save",
            Some(&token),
            json!({ "path": "a.txt", "content": "z".repeat(700_000) }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = upload_as(&app, &token, "", &[("c.bin", &vec![1u8; 700_000])]).await;
    expect_error(
        response,
        StatusCode::INSUFFICIENT_STORAGE,
        "upload over quota",
    )
    .await;
    let listing: Value = app
        .get("/api/files?hidden=true", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.txt"], "nothing of the refused writes is left");
}

#[tokio::test]
async fn folders_nested_too_deep_are_refused_clearly() {
    let s = setup().await;
    let mut deep = s.workspace.join("deep");
    for _ in 0..200 {
        deep = deep.join("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    let response = s.request(Method::GET, "/api/files/usage", None).await;
    expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "usage").await;
    let response = s
        .request(Method::DELETE, "/api/files?path=deep", None)
        .await;
    expect_error(response, StatusCode::UNPROCESSABLE_ENTITY, "delete").await;
    assert!(s.workspace.join("deep").exists());
}

/// Sends a request, failing the test rather than hanging if no answer comes.
async fn answered(
    request: impl std::future::Future<Output = reqwest::Response>,
) -> reqwest::Response {
    tokio::time::timeout(std::time::Duration::from_secs(20), request)
        .await
        .expect("an answer, not a hang")
}

#[tokio::test]
async fn pipes_and_sockets_in_the_workspace_are_refused_in_words_and_block_nothing() {
    use std::os::unix::fs::FileTypeExt;
    let s = setup().await;
    // An agent can make either; opening a pipe the usual way waits forever for a writer, and
    // opening a socket fails.
    let made = tokio::process::Command::new("mkfifo")
        .arg(s.workspace.join("pipe"))
        .status()
        .await
        .unwrap();
    assert!(made.success());
    let _listener = std::os::unix::net::UnixListener::bind(s.workspace.join("sock")).unwrap();

    let listed: Value = answered(s.request(Method::GET, "/api/files?path=.", None))
        .await
        .json()
        .await
        .unwrap();
    for name in ["pipe", "sock"] {
        let entry = listed["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} is listed: {listed}"));
        assert_eq!(entry["kind"], "other");
        for (response, what) in [
            (answered(s.read(name)).await, "reading"),
            (answered(s.download(name, None)).await, "downloading"),
        ] {
            let status = response.status();
            assert!(
                status == StatusCode::UNSUPPORTED_MEDIA_TYPE || status == StatusCode::CONFLICT,
                "{what} {name}: {status}"
            );
            expect_error(response, status, &format!("{what} {name}")).await;
        }
        let saved = answered(s.save(json!({ "path": name, "content": "x" }))).await;
        expect_error_saying(saved, StatusCode::CONFLICT, "not a regular file").await;
    }
    let kinds = ["pipe", "sock"].map(|name| {
        std::fs::symlink_metadata(s.workspace.join(name))
            .unwrap()
            .file_type()
    });
    assert!(
        kinds[0].is_fifo() && kinds[1].is_socket(),
        "both are still there"
    );
}
