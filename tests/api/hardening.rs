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
    let hook_token = hook_token_of(&app, &ann, &id).await;

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
    app.set_disabled(&admin, ann_id, true).await;
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

/// A small ext4 file system of the test's own, mounted for its life (needs root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    async fn mount(megabytes: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let run = |program: &str, args: Vec<String>| {
            let program = program.to_owned();
            async move {
                let output = tokio::process::Command::new(&program)
                    .args(&args)
                    .output()
                    .await
                    .unwrap();
                assert!(
                    output.status.success(),
                    "{program} {args:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        };
        run(
            "truncate",
            vec![
                "-s".into(),
                format!("{megabytes}M"),
                image.display().to_string(),
            ],
        )
        .await;
        run("mkfs.ext4", vec!["-q".into(), image.display().to_string()]).await;
        run(
            "mount",
            vec![
                "-o".into(),
                "loop".into(),
                image.display().to_string(),
                mount.display().to_string(),
            ],
        )
        .await;
        SmallDisk { dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }

    /// Takes every free block (root's reserve too).
    async fn fill(&self) {
        let _ = tokio::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=1M", "status=none"])
            .arg(format!("of={}", self.path().join("fill").display()))
            .status()
            .await;
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("fill")).unwrap();
    }
}

impl Drop for SmallDisk {
    #[allow(clippy::disallowed_methods)] // Drop cannot wait for a task
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.path())
            .status();
    }
}

#[tokio::test]
async fn on_a_full_disk_writes_are_refused_in_words_reads_go_on_and_nothing_acknowledged_is_lost() {
    if !crate::helpers::running_as_root() {
        eprintln!("skipped: mounting a small file system needs root (CI runs the tests as root)");
        return;
    }
    let disk = SmallDisk::mount(48).await;
    let data = disk.path().join("data");
    let app = crate::helpers::spawn_app_with(|c| {
        c.data_dir = data.clone();
        // No launcher copy (the debug binary is larger than this disk): no agents here.
        c.isolation.mode = pocketdev::config::IsolationMode::None;
    })
    .await;
    let token = app.admin_token().await;
    disk.fill().await;

    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for n in 0..40 {
        let name = format!("KEY_{n}");
        let response = app
            .call(
                Method::PUT,
                &format!("/api/secrets/{name}"),
                Some(&token),
                Some(json!({ "value": "x".repeat(4000) })),
            )
            .await;
        match response.status() {
            StatusCode::OK | StatusCode::CREATED | StatusCode::NO_CONTENT => {
                acknowledged.push(name)
            }
            StatusCode::INSUFFICIENT_STORAGE => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "disk_full", "{body}");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("disk is full"),
                    "{body}"
                );
                refused.push(name);
            }
            other => panic!("{name}: {other} {}", response.text().await.unwrap()),
        }
    }
    let invite = app
        .post(
            "/api/admin/invites",
            Some(&token),
            json!({ "role": "user" }),
        )
        .await;
    assert!(
        [StatusCode::CREATED, StatusCode::INSUFFICIENT_STORAGE].contains(&invite.status()),
        "{}",
        invite.status()
    );
    let invite_acknowledged = invite.status() == StatusCode::CREATED;
    // Reading goes on with a full disk.
    assert_eq!(
        app.get("/api/secrets", Some(&token)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/instances", Some(&token)).await.status(),
        StatusCode::OK
    );

    // Space again, and a fresh start: what was acknowledged is there, what was refused is not.
    disk.free();
    let app = app.restart().await;
    let token = app.admin_token().await;
    let stored: Vec<Value> = app
        .get("/api/secrets", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = stored.iter().filter_map(|s| s["name"].as_str()).collect();
    for name in &acknowledged {
        assert!(
            names.contains(&name.as_str()),
            "{name} was acknowledged but lost: {names:?}"
        );
    }
    for name in &refused {
        assert!(
            !names.contains(&name.as_str()),
            "{name} was refused but stored"
        );
    }
    let invites: Vec<Value> = app
        .get("/api/admin/invites", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        invites.len(),
        usize::from(invite_acknowledged),
        "{invites:?}"
    );
    // And the full disk was met (writes that only reuse space already taken may succeed).
    assert!(!refused.is_empty(), "no write was refused on the full disk");
    drop(app);
}

#[tokio::test]
async fn the_file_api_writes_as_the_account_without_roots_reserved_blocks() {
    if !crate::helpers::running_as_root() {
        eprintln!("skipped: needs root (CI runs the tests as root)");
        return;
    }
    // Big enough for the launcher's copy; ext4 keeps 5 % of it for root.
    let disk = SmallDisk::mount(400).await;
    std::fs::set_permissions(
        disk.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let data = disk.path().join("data");
    let app = crate::helpers::spawn_app_with(|c| c.data_dir = data.clone()).await;
    let ann_id = app.create_user("ann", "ann-password-1").await;
    let ann = app.token("ann", "ann-password-1").await;
    let uid = pocketdev::isolation::accounts::SystemIds::read()
        .unwrap()
        .user(&format!("{}{ann_id}", app.config.isolation.user_prefix))
        .expect("ann's Unix user")
        .uid;
    // The account fills the disk as far as it may: up to root's reserve.
    let workspace = app.data_dir().join(format!("users/{ann_id}/workspace"));
    // Big blocks first, then small ones for what an allocation of a big one leaves over.
    for (file, block) in [("fill", "bs=1M"), ("fill-rest", "bs=4k")] {
        let _ = tokio::process::Command::new("setpriv")
            .args([
                "--reuid",
                &uid.to_string(),
                "--regid",
                &uid.to_string(),
                "--clear-groups",
            ])
            .args(["dd", "if=/dev/zero", block, "status=none"])
            .arg(format!("of={}", workspace.join(file).display()))
            .status()
            .await;
    }
    // The file API writes with the account's rights, so the reserve stays root's.
    let saved = app
        .post(
            "/api/files/save",
            Some(&ann),
            json!({ "path": "more.txt", "content": "y".repeat(512 * 1024) }),
        )
        .await;
    let status = saved.status();
    let body: Value = saved.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    let left: Vec<String> = std::fs::read_dir(&workspace)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("more.txt"))
        .collect();
    assert!(left.is_empty(), "no half-written file: {left:?}");
    // The account filled what it may; the server (root) still has the blocks kept for it, so
    // everyone can still sign in, and the server still keeps what it is told.
    let again = app.token("ann", "ann-password-1").await;
    let admin = app.admin_token().await;
    let stored = app
        .call(
            Method::PUT,
            "/api/secrets/AFTER_THE_FILL",
            Some(&admin),
            Some(json!({ "value": "kept" })),
        )
        .await;
    assert!(stored.status().is_success(), "{}", stored.status());
    let listing = app.get("/api/instances", Some(&again)).await;
    assert_eq!(listing.status(), StatusCode::OK);
    drop(app);
}

#[tokio::test]
async fn refused_sign_ins_cost_one_audit_row_a_minute_and_old_entries_go() {
    let app = crate::helpers::spawn_app_with(|c| c.rate_limits.login_per_minute = 2).await;
    let admin = app.admin_token().await;
    for _ in 0..30 {
        let _ = app.login("admin", "a-wrong-password").await;
    }
    let refusals: Vec<Value> = app
        .get("/api/admin/audit?action=login.rate_limited", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refusals.len(), 1, "{refusals:?}");

    // An entry older than audit.retention_days (90) goes at the next housekeeping round.
    let db_file = app.data_dir().join("server/pocketdev.db");
    let app = {
        let mut app = app;
        app.stop().await;
        let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", db_file.display()))
            .await
            .unwrap();
        sqlx::query("INSERT INTO audit_log (at, action) VALUES (?, 'ancient.test')")
            .bind(time::OffsetDateTime::now_utc() - time::Duration::days(200))
            .execute(&db)
            .await
            .unwrap();
        db.close().await;
        app.restart().await
    };
    let admin = app.admin_token().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ancient: Vec<Value> = app
            .get("/api/admin/audit?action=ancient.test", Some(&admin))
            .await
            .json()
            .await
            .unwrap();
        if ancient.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old entry stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_request_body_that_trickles_in_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/files/save HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"path\":\"slow.txt\",\"content\":\"",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    // One byte every two seconds, for as long as the server listens.
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(40), async {
        let mut buf = [0u8; 4096];
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                () = tokio::time::sleep(Duration::from_secs(2)) => {
                    if stream.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the server still waited for the body after 40 s"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "cut off after {elapsed:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
}

/// The hook token an instance's agent was given (its shell prints its environment).
async fn hook_token_of(app: &crate::helpers::TestApp, token: &str, id: &str) -> String {
    app.wait_for_output(token, id, "$").await;
    app.command(
        token,
        id,
        json!({ "text": "echo token=$POCKETDEV_HOOK_TOKEN=" }),
    )
    .await;
    let screen = app.wait_for_output(token, id, "token=").await;
    screen
        .rsplit("token=")
        .find_map(|part| part.split_once('=').map(|(t, _)| t.to_owned()))
        .filter(|t| t.len() > 10 && !t.contains('$'))
        .unwrap_or_else(|| panic!("no hook token on screen: {screen}"))
}

#[tokio::test]
async fn one_agents_hook_reports_never_spend_another_agents_allowance() {
    // A small shared allowance per address (all agents are on loopback).
    let app = crate::helpers::spawn_app_with(|c| {
        c.rate_limits.api_per_minute = 300;
        c.limits.max_per_user = 5;
    })
    .await;
    app.create_user("ann", "ann-password-1").await;
    app.create_user("bob", "bob-password-1").await;
    let ann = app.token("ann", "ann-password-1").await;
    let bob = app.token("bob", "bob-password-1").await;
    let ann_id = app
        .create_instance(&ann, json!({ "profile": "shell" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_id = app
        .create_instance(&bob, json!({ "profile": "shell" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ann_hook = hook_token_of(&app, &ann, &ann_id).await;
    let bob_hook = hook_token_of(&app, &bob, &bob_id).await;

    let client = reqwest::Client::new();
    let report = |id: String, token: String| {
        let client = client.clone();
        let url = app.url(&format!("/api/instances/{id}/hooks"));
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "hook_event_name": "Notification", "message": "hi" }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Ann's agent floods.
    let flood: Vec<StatusCode> =
        futures::future::join_all((0..700).map(|_| report(ann_id.clone(), ann_hook.clone()))).await;
    let limited = flood
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(limited > 0, "the flood was never limited");
    // Bob's agent reports as usual.
    for _ in 0..5 {
        assert_eq!(
            report(bob_id.clone(), bob_hook.clone()).await,
            StatusCode::NO_CONTENT
        );
    }
}

#[tokio::test]
async fn temporary_files_of_interrupted_saves_are_swept_by_the_next_write() {
    let app = spawn_app().await;
    let ann_id = app.create_user("ann", "ann-password-1").await;
    let ann = app.token("ann", "ann-password-1").await;
    let saved = app
        .post(
            "/api/files/save",
            Some(&ann),
            json!({ "path": "f0.txt", "content": "first\n" }),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    // What a server killed between write and rename leaves (a day ago), and a save in progress.
    let folder = app.data_dir().join(format!("users/{ann_id}/workspace"));
    let owner = std::fs::metadata(&folder).unwrap();
    let left = folder.join(".f0.txt.pocketdev-q7Rk2z.tmp");
    let writing = folder.join(".f2.txt.pocketdev-Lm4pQ0.tmp");
    for path in [&left, &writing] {
        std::fs::write(path, "half a file").unwrap();
        std::os::unix::fs::chown(
            path,
            Some(std::os::unix::fs::MetadataExt::uid(&owner)),
            Some(std::os::unix::fs::MetadataExt::gid(&owner)),
        )
        .unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&left)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(86_400))
        .unwrap();

    let saved = app
        .post(
            "/api/files/save",
            Some(&ann),
            json!({ "path": "f1.txt", "content": "second\n" }),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    assert!(!left.exists(), "the interrupted save's file is still there");
    assert!(writing.exists(), "a save in progress lost its file");
}

#[tokio::test]
async fn a_workdir_tells_nothing_of_what_exists_outside_the_workspace() {
    let app = spawn_app().await;
    let ann_id = app.create_user("ann", "ann-password-1").await;
    let ann = app.token("ann", "ann-password-1").await;
    // Links an agent could plant: to a folder of the server's that exists, and to one that
    // does not.
    let workspace = app.data_dir().join(format!("users/{ann_id}/workspace"));
    let server = app.data_dir().join("server");
    std::os::unix::fs::symlink(&server, workspace.join("there")).unwrap();
    std::os::unix::fs::symlink(server.join("nothing-here"), workspace.join("nowhere")).unwrap();
    let mut answers = Vec::new();
    for link in ["there", "nowhere"] {
        let response = app
            .post(
                "/api/instances",
                Some(&ann),
                json!({ "profile": "fake", "workdir": link }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = response.json().await.unwrap();
        answers.push(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .replace(link, "LINK"),
        );
    }
    assert_eq!(answers[0], answers[1], "the answers differ: {answers:?}");
}
