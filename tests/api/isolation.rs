//! Accounts kept apart by the OS (the tests run as root in CI, so every API test runs isolated;
//! these check the isolation itself): each account's Unix user and folders, agents that cannot
//! reach another account or the server's secrets, a file API that acts as the account, tmux
//! clients that never run as root against an account's server, and removal that keeps uids.
//! Without root they are skipped with a printed reason.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_error_saying, running_as_root, spawn_app, spawn_app_with};

fn skip_unless_root() -> bool {
    if running_as_root() {
        return false;
    }
    eprintln!("skipped: isolation needs root (CI runs the tests as root)");
    true
}

fn passwd_entry(name: &str) -> Option<(u32, u32)> {
    pocketdev::isolation::accounts::SystemIds::read()
        .unwrap()
        .user(name)
        .map(|id| (id.uid, id.gid))
}

async fn account(app: &TestApp, name: &str) -> (i64, String) {
    let password = format!("{name}-password-1");
    let id = app.create_user(name, &password).await;
    (id, app.token(name, &password).await)
}

/// Two accounts, ann and bob, where bob keeps a secret file: (ann's id, ann's token, bob's id,
/// bob's token, the path of bob's file).
async fn ann_and_bob_with_a_secret(
    app: &TestApp,
) -> (i64, String, i64, String, std::path::PathBuf) {
    let (ann_id, ann) = account(app, "ann").await;
    let (bob_id, bob) = account(app, "bob").await;
    let saved = app
        .post(
            "/api/files/save",
            Some(&bob),
            json!({ "path": "secret.txt", "content": "bob's secret\n" }),
        )
        .await;
    assert_eq!(saved.status(), StatusCode::OK);
    let bob_file = app
        .data_dir()
        .join(format!("users/{bob_id}/workspace/secret.txt"));
    assert!(bob_file.is_file());
    (ann_id, ann, bob_id, bob, bob_file)
}

/// A shell instance of the account, ready for commands (its prompt is on the screen, so
/// nothing is typed while its login scripts still run).
async fn shell(app: &TestApp, token: &str) -> String {
    let created = app
        .create_instance(token, json!({ "profile": "shell" }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_output(token, &id, "$").await;
    id
}

/// Runs `script` in the instance's shell and returns what it printed between two markers.
async fn run(app: &TestApp, token: &str, instance: &str, script: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // The markers are computed by the shell, so the echoed command line never matches them.
    let text = format!("echo BEGIN$(({n}+1000)); {script}; echo END$(({n}+1000))");
    app.command(token, instance, json!({ "text": text })).await;
    let end = format!("END{}", n + 1000);
    let screen = app.wait_for_output(token, instance, &end).await;
    let begin = format!("BEGIN{}", n + 1000);
    let start = screen
        .rfind(&begin)
        .unwrap_or_else(|| panic!("no {begin} in {screen:?}"))
        + begin.len();
    let stop = screen.rfind(&end).unwrap();
    screen[start..stop].trim().to_owned()
}

/// What admins are told about isolation (the `isolation` part of the system stats).
async fn isolation_report(app: &TestApp) -> Value {
    let admin = app.admin_token().await;
    let stats: Value = app
        .get("/api/system/stats", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    stats["isolation"].clone()
}

fn owner(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

#[tokio::test]
async fn accounts_get_their_own_unix_user_and_folders_and_deletion_keeps_the_uid() {
    if skip_unless_root() {
        return;
    }
    let app = spawn_app().await;
    let prefix = app.config.isolation.user_prefix.clone();
    let (amy, amy_token) = account(&app, "amy").await;
    let (uid, gid) = passwd_entry(&format!("{prefix}{amy}")).expect("amy's Unix user");
    assert!(
        (app.config.isolation.uid_min..=app.config.isolation.uid_max).contains(&uid),
        "uid {uid} from the configured range"
    );
    let data = app.data_dir();
    let user_dir = data.join(format!("users/{amy}"));
    assert_eq!(
        owner(&user_dir),
        (0, 0, 0o711),
        "root keeps the account folder"
    );
    assert_eq!(owner(&user_dir.join("workspace")), (uid, gid, 0o700));
    assert_eq!(owner(&user_dir.join("home")), (uid, gid, 0o700));
    assert_eq!(owner(&data.join("server")).2, 0o700);
    let socket_dir = app.config.isolation.run_dir.join(format!("tmux/{amy}"));
    assert_eq!(owner(&socket_dir), (uid, gid, 0o700));

    // Its agent runs as that user, and so does its tmux server.
    let instance = shell(&app, &amy_token).await;
    assert_eq!(
        run(&app, &amy_token, &instance, "id -u; id -G").await,
        format!("{uid}\n{gid}")
    );
    let server = run(
        &app,
        &amy_token,
        &instance,
        "ps -o user= -p $(tmux display -p '#{pid}')",
    )
    .await;
    assert!(
        server.starts_with(&prefix) || server == uid.to_string(),
        "tmux server runs as amy: {server}"
    );

    // Deleting the account kills everything of it and removes the user; the uid is never reused.
    let admin = app.admin_token().await;
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/admin/users/{amy}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(
        passwd_entry(&format!("{prefix}{amy}")).is_none(),
        "the Unix user is gone"
    );
    assert!(
        pocketdev::isolation::accounts::processes_of(uid).is_empty(),
        "no process of amy survives"
    );
    let (bea, _) = account(&app, "bea").await;
    let (bea_uid, _) = passwd_entry(&format!("{prefix}{bea}")).unwrap();
    assert_ne!(bea_uid, uid, "a deleted account's uid is never given again");
    assert!(bea_uid > uid);
}

#[tokio::test]
async fn an_agent_cannot_read_another_account_or_the_servers_secrets() {
    if skip_unless_root() {
        return;
    }
    let app = spawn_app().await;
    let (_, ann, bob_id, bob, bob_file) = ann_and_bob_with_a_secret(&app).await;
    let data = app.data_dir();

    let instance = shell(&app, &ann).await;
    for (what, target) in [
        ("bob's file", bob_file.clone()),
        (
            "bob's workspace",
            data.join(format!("users/{bob_id}/workspace")),
        ),
        ("bob's home", data.join(format!("users/{bob_id}/home"))),
        ("the database", data.join("server/pocketdev.db")),
        ("the signing key", data.join("server/jwt.key")),
        ("the secrets key", data.join("server/secrets.key")),
    ] {
        let out = run(
            &app,
            &ann,
            &instance,
            &format!(
                "cat '{0}' 2>&1 || ls '{0}' 2>&1; echo rc=$?",
                target.display()
            ),
        )
        .await;
        assert!(out.contains("Permission denied"), "{what}: {out}");
        assert!(!out.contains("bob's secret"), "{what}: {out}");
    }
    // Nor can it signal bob's processes or attach to bob's tmux server.
    let bob_instance = shell(&app, &bob).await;
    let bob_pid = run(&app, &bob, &bob_instance, "echo $$").await;
    let out = run(
        &app,
        &ann,
        &instance,
        &format!("kill -0 {bob_pid} 2>&1; echo rc=$?"),
    )
    .await;
    assert!(out.contains("rc=1"), "{out}");
    let bob_socket = app
        .config
        .isolation
        .run_dir
        .join(format!("tmux/{bob_id}/tmux.sock"));
    let out = run(
        &app,
        &ann,
        &instance,
        &format!("tmux -S '{}' ls 2>&1; echo rc=$?", bob_socket.display()),
    )
    .await;
    assert!(out.contains("rc=1") && !out.contains("pd-"), "{out}");
}

#[tokio::test]
async fn the_file_api_acts_as_the_account_so_planted_links_lead_nowhere() {
    if skip_unless_root() {
        return;
    }
    let app = spawn_app().await;
    let (ann_id, ann, _, _, bob_file) = ann_and_bob_with_a_secret(&app).await;
    let data = app.data_dir();
    let ws = data.join(format!("users/{ann_id}/workspace"));
    let instance = shell(&app, &ann).await;
    // The agent plants links to things outside; a hard link to bob's file is refused by the kernel.
    let out = run(
        &app,
        &ann,
        &instance,
        &format!(
            "cd '{ws}' && ln -s '{bob}' to-bob.txt && ln -s '{db}' to-db && ln -s /etc/shadow shadow && \
             ln '{bob}' hard-bob 2>&1; echo rc=$?",
            ws = ws.display(),
            bob = bob_file.display(),
            db = data.join("server/pocketdev.db").display(),
        ),
    )
    .await;
    assert!(out.contains("rc=1"), "the hard link is refused: {out}");
    for planted in ["to-bob.txt", "to-db", "shadow"] {
        let response = app
            .get(&format!("/api/files/content?path={planted}"), Some(&ann))
            .await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_client_error(), "{planted}: {status} {body}");
        assert!(
            !body.contains("bob's secret") && !body.contains("root:"),
            "{planted}: {body}"
        );
        let written = app
            .post(
                "/api/files/save",
                Some(&ann),
                json!({ "path": planted, "content": "overwritten" }),
            )
            .await;
        assert!(
            written.status().is_client_error(),
            "{planted}: {}",
            written.status()
        );
    }
    assert_eq!(
        std::fs::read_to_string(&bob_file).unwrap(),
        "bob's secret\n"
    );

    // What the API writes belongs to the account.
    let (uid, gid) =
        passwd_entry(&format!("{}{ann_id}", app.config.isolation.user_prefix)).unwrap();
    app.post(
        "/api/files/save",
        Some(&ann),
        json!({ "path": "made-by-api.txt", "content": "x" }),
    )
    .await;
    app.post(
        "/api/files/mkdir",
        Some(&ann),
        json!({ "path": "made-dir" }),
    )
    .await;
    let uploaded = crate::files::upload_as(&app, &ann, "path=", &[("up.bin", b"uploaded")]).await;
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    for made in ["made-by-api.txt", "made-dir", "up.bin"] {
        let (file_uid, file_gid, _) = owner(&ws.join(made));
        assert_eq!((file_uid, file_gid), (uid, gid), "{made} belongs to ann");
    }
}

#[tokio::test]
async fn tmux_tricks_from_an_agent_leave_no_root_owned_trace() {
    if skip_unless_root() {
        return;
    }
    let app = spawn_app().await;
    let (_, ann) = account(&app, "ann").await;
    let instance = shell(&app, &ann).await;
    // A folder only root may write to, and one anyone may: a root client would write in either.
    let root_only = tempfile::tempdir().unwrap();
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        open.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    std::fs::set_permissions(
        root_only.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let hook_file = root_only.path().join("hook-wrote-this");
    let mark = open.path().join("detach-mark");

    // A viewer attaches (the control client); then the agent arms hooks that make a client save
    // a buffer after the server's routine commands, and asks every client to run a command.
    let ticket: Value = app
        .post(
            &format!("/api/instances/{instance}/ticket"),
            Some(&ann),
            json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let url = format!(
        "ws://{}/ws/instance/{instance}?ticket={}",
        app.addr,
        ticket["ticket"].as_str().unwrap()
    );
    let (_socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("terminal opens");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ws = app
        .data_dir()
        .join(format!("users/{}/workspace", app.user_id(&ann).await));
    let armed = ws.join("armed");
    let script = format!(
        "tmux set-buffer owned-by-hook; \
         for c in list-panes capture-pane send-keys display-message; do tmux set-hook -g after-$c 'save-buffer {f}'; done; \
         tmux show-hooks -g > {a}.hooks; tmux detach-client -a -E 'id > {m}'; echo armed > {a}",
        f = hook_file.display(),
        m = mark.display(),
        a = armed.display(),
    );
    app.command(&ann, &instance, json!({ "text": script }))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !armed.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never armed its hooks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hooks = std::fs::read_to_string(ws.join("armed.hooks")).unwrap();
    assert!(
        hooks.contains("after-list-panes") && hooks.contains("save-buffer"),
        "the hooks are armed: {hooks}"
    );
    // Reconciliation (list-panes every second), the monitor (capture-pane) and input
    // (send-keys) run their clients meanwhile.
    let _ = app
        .command(&ann, &instance, json!({ "text": "true" }))
        .await;
    let _ = app.output(&ann, &instance).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert!(
        !hook_file.exists(),
        "a hook made a root client write into a root-only folder"
    );
    if mark.exists() {
        let (uid, _, _) = owner(&mark);
        assert_ne!(uid, 0, "detach-client -E ran a command as root");
    }
}

fn signal(pid: u32, signal: rustix::process::Signal) -> rustix::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    rustix::process::kill_process(pid, signal)
}

/// Lets a stopped process go on when dropped, so a failing test leaves nothing stopped.
struct Stopped(u32);

impl Drop for Stopped {
    fn drop(&mut self) {
        // It may be gone already when a test fails.
        let _ = signal(self.0, rustix::process::Signal::CONT);
    }
}

#[tokio::test]
async fn an_account_whose_tmux_server_stops_answering_holds_up_no_one_else() {
    if skip_unless_root() {
        return;
    }
    let app = spawn_app_with(|c| c.tmux.command_timeout_secs = 2).await;
    let (_, ann) = account(&app, "ann").await;
    let (_, bob) = account(&app, "bob").await;
    let ann_shell = shell(&app, &ann).await;
    let bob_shell = shell(&app, &bob).await;
    // An agent may stop its own account's processes, its tmux server among them.
    let server: u32 = run(&app, &ann, &ann_shell, "tmux display -p '#{pid}'")
        .await
        .parse()
        .expect("the server's pid");
    signal(server, rustix::process::Signal::STOP).expect("the server is stopped");
    let stopped = Stopped(server);

    let output = app
        .get(&format!("/api/instances/{ann_shell}/output"), Some(&ann))
        .await;
    expect_error_saying(output, StatusCode::SERVICE_UNAVAILABLE, "does not answer").await;

    // Bob notices nothing: his agent answers, and its exit is seen as before.
    assert_eq!(
        run(&app, &bob, &bob_shell, "echo bob-$((40+2))").await,
        "bob-42"
    );
    app.command(&bob, &bob_shell, json!({ "text": "exit 7" }))
        .await;
    let ended = app.wait_for_state(&bob, &bob_shell, "exited").await;
    assert_eq!(ended["exit_code"], 7, "{ended}");

    // Ann's agent was not given up for lost while her server was silent, and it answers
    // once the server goes on.
    assert_eq!(app.instance(&ann, &ann_shell).await["state"], "running");
    drop(stopped);
    assert_eq!(
        run(&app, &ann, &ann_shell, "echo ann-$((40+2))").await,
        "ann-42"
    );
}

#[tokio::test]
async fn isolation_is_reported_to_admins_and_by_doctor() {
    let app = spawn_app().await;
    let report = isolation_report(&app).await;
    let expected = if running_as_root() {
        ["users", "landlock"].as_slice()
    } else {
        ["none"].as_slice()
    };
    assert!(
        expected.contains(&report["mode"].as_str().unwrap()),
        "{report}"
    );
    assert!(
        report["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{report}"
    );
    assert!(report["landlock_abi"].is_u64());
    // The public health answer says nothing about it.
    let health: Value = app.get("/api/health", None).await.json().await.unwrap();
    assert!(health.get("isolation").is_none(), "{health}");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pocketdev"))
        .arg("doctor")
        .env("POCKETDEV_DATA_DIR", app.data_dir())
        .env(
            "POCKETDEV_ISOLATION__RUN_DIR",
            &app.config.isolation.run_dir,
        )
        .env_remove("POCKETDEV_CONFIG")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("isolation"))
        .expect("an isolation line");
    if running_as_root() {
        assert!(
            line.starts_with("ok") && line.contains("Landlock ABI"),
            "{line}"
        );
    } else {
        assert!(line.starts_with("warn") && line.contains("NONE"), "{line}");
    }

    // A mode asked for that cannot be enforced refuses to start, with the reason.
    if !running_as_root() {
        let refused = pocketdev::App::build({
            let mut config = app.config.clone();
            config.isolation.mode = pocketdev::config::IsolationMode::Users;
            config
        })
        .await;
        let err = refused.err().expect("refused").to_string();
        assert!(err.contains("needs pocketdev to run as root"), "{err}");
    }
}

#[tokio::test]
async fn landlock_keeps_an_agent_to_its_workspace_home_and_the_system() {
    if skip_unless_root() {
        return;
    }
    let app = spawn_app().await;
    let report = isolation_report(&app).await;
    if report["mode"] != "landlock" {
        return eprintln!("skipped: this kernel offers no Landlock ABI 2 or later ({report})");
    }
    let (_, ann) = account(&app, "ann").await;
    // A world-readable file in a world-readable folder: Unix permissions alone would allow it.
    let outside = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let public = outside.path().join("public.txt");
    std::fs::write(&public, "anyone may read this\n").unwrap();
    std::fs::set_permissions(&public, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();

    let instance = shell(&app, &ann).await;
    let checks = [
        (format!("cat '{}' 2>&1", public.display()), "Permission denied"),
        (format!("echo x > '{}/new' 2>&1", outside.path().display()), "Permission denied"),
        ("echo x > /tmp/pocketdev-landlock-probe 2>&1".to_owned(), "Permission denied"),
        ("ls /tmp >/dev/null 2>&1 || echo denied".to_owned(), "denied"),
        ("echo kept > in-workspace && cat in-workspace".to_owned(), "kept"),
        ("echo kept > \"$HOME/in-home\" && cat \"$HOME/in-home\"".to_owned(), "kept"),
        ("mktemp >/dev/null && echo tmpdir-ok".to_owned(), "tmpdir-ok"),
        ("head -n 1 /etc/os-release".to_owned(), "NAME"),
        // Renames across folders need Landlock ABI 2 rules (ABI 1 breaks them).
        (
            "mkdir -p d1 d2 && touch d1/f && perl -e 'rename(\"d1/f\", \"d2/f\") or die \"$!\"' && echo renamed".to_owned(),
            "renamed",
        ),
    ];
    for (script, expected) in checks {
        let out = run(&app, &ann, &instance, &script).await;
        assert!(out.contains(expected), "`{script}` printed: {out}");
    }
    assert!(!Path::new("/tmp/pocketdev-landlock-probe").exists());
}

/// The cgroup folders (per hierarchy) of an account's group.
fn group_dirs(app: &TestApp, user_id: i64) -> Vec<std::path::PathBuf> {
    let name = format!("{}{user_id}", app.config.isolation.user_prefix);
    ["memory", "pids", "cpu", "unified", ""]
        .iter()
        .map(|h| {
            Path::new("/sys/fs/cgroup")
                .join(h)
                .join(&app.config.isolation.cgroup)
                .join(&name)
        })
        .filter(|d| d.join("cgroup.procs").exists())
        .collect()
}

#[tokio::test]
async fn every_agent_process_is_in_its_accounts_group_and_limits_hold() {
    if skip_unless_root() {
        return;
    }
    let app = crate::helpers::spawn_app_with(|c| {
        c.isolation.memory_mb = 64;
        c.isolation.tasks_max = 24;
    })
    .await;
    let report = isolation_report(&app).await;
    if report["cgroups"] == "rlimit" {
        return eprintln!("skipped: no cgroup controllers on this host");
    }
    let (ann_id, ann) = account(&app, "ann").await;
    let (_, bob) = account(&app, "bob").await;
    // The shell, a child of it and the tmux server are all in ann's group.
    let instance = shell(&app, &ann).await;
    let dirs = group_dirs(&app, ann_id);
    assert!(!dirs.is_empty(), "ann's tmux server made her a cgroup");
    let pids = run(
        &app,
        &ann,
        &instance,
        "sleep 5 & echo $$ $! $(tmux display -p '#{pid}')",
    )
    .await;
    // The last line; bash may print a job line ("[1] 4711") before it.
    let pids = pids.lines().last().unwrap_or_default().to_owned();
    assert_eq!(pids.split_whitespace().count(), 3, "{pids}");
    for pid in pids.split_whitespace() {
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        for dir in &dirs {
            let relative = dir
                .strip_prefix("/sys/fs/cgroup")
                .unwrap()
                .components()
                .skip_while(|c| {
                    ["memory", "pids", "cpu", "unified"].contains(&c.as_os_str().to_str().unwrap())
                })
                .collect::<std::path::PathBuf>();
            assert!(
                cgroup.contains(&format!("/{}", relative.display())),
                "process {pid} is outside {}:\n{cgroup}\nprocs: {:?}",
                dir.display(),
                std::fs::read_to_string(dir.join("cgroup.procs"))
            );
        }
    }

    // A fork loop stops at the process limit, quickly, without harming anyone else.
    let forked = run(
        &app,
        &ann,
        &instance,
        "perl -e 'for (1..100) { my $p = fork; if (!defined $p) { print \"fork failed at $_\\n\"; last } if (!$p) { sleep 2; exit } }'",
    )
    .await;
    assert!(forked.contains("fork failed at"), "{forked}");
    let pids_dir = dirs
        .iter()
        .find(|d| d.join("pids.max").exists())
        .expect("a pids group");
    let current: u32 = std::fs::read_to_string(pids_dir.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 24, "{current} processes");
    let events = std::fs::read_to_string(pids_dir.join("pids.events")).unwrap();
    assert!(!events.contains("max 0"), "the limit was hit: {events}");
    // The loop's children (and the sleep above) end by themselves.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Bob is unaffected and so is the server.
    let bob_instance = shell(&app, &bob).await;
    assert_eq!(run(&app, &bob, &bob_instance, "echo fine").await, "fine");

    // An allocation over the memory limit is killed inside ann's group only.
    let fake = app
        .create_instance(&ann, json!({ "profile": "fake" }))
        .await;
    let fake = fake["id"].as_str().unwrap().to_owned();
    app.wait_for_output(&ann, &fake, "agent>").await;
    app.command(&ann, &fake, json!({ "text": "alloc" })).await;
    let ended = app.wait_for_state(&ann, &fake, "exited").await;
    assert_eq!(ended["exit_code"], 137, "killed by the OOM killer: {ended}");
    if let Some(memory) = dirs.iter().find(|d| d.join("memory.oom_control").exists()) {
        let oom = std::fs::read_to_string(memory.join("memory.oom_control")).unwrap();
        assert!(!oom.contains("oom_kill 0"), "{oom}");
    }
    assert_eq!(
        run(&app, &bob, &bob_instance, "echo still fine").await,
        "still fine"
    );
    let health = app.get("/api/health", None).await;
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn bwrap_mode_gives_each_account_a_sandbox_that_outlives_the_server() {
    if skip_unless_root() {
        return;
    }
    if !Path::new("/usr/bin/bwrap").exists() {
        return eprintln!("skipped: bubblewrap is not installed (scripts/test.sh installs it)");
    }
    let app = crate::helpers::spawn_app_with(|c| {
        c.isolation.mode = pocketdev::config::IsolationMode::Bwrap;
    })
    .await;
    let report = isolation_report(&app).await;
    assert_eq!(report["mode"], "bwrap", "{report}");
    let (ann_id, ann, bob_id, _, _) = ann_and_bob_with_a_secret(&app).await;
    let data = app.data_dir();
    let marker = format!("/tmp/pocketdev-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();

    let instance = shell(&app, &ann).await;
    let processes: usize = run(&app, &ann, &instance, "ps -e --no-headers | wc -l")
        .await
        .parse()
        .unwrap();
    assert!(processes < 10, "{processes} processes visible");
    let tmp = run(&app, &ann, &instance, "ls -A /tmp; echo listed").await;
    assert!(!tmp.contains("pocketdev-host-marker"), "{tmp}");
    for hidden in [
        data.join("server"),
        data.join(format!("users/{bob_id}")),
        data.join(format!("users/{bob_id}/workspace/secret.txt")),
    ] {
        let out = run(
            &app,
            &ann,
            &instance,
            &format!("ls '{}' 2>&1", hidden.display()),
        )
        .await;
        assert!(out.contains("No such file"), "{}: {out}", hidden.display());
    }
    let (uid, _) = passwd_entry(&format!("{}{ann_id}", app.config.isolation.user_prefix)).unwrap();
    assert_eq!(run(&app, &ann, &instance, "id -u").await, uid.to_string());
    assert_eq!(
        run(&app, &ann, &instance, "echo kept > f && cat f").await,
        "kept"
    );
    std::fs::remove_file(&marker).unwrap();

    // The sandbox, its tmux server and the agent outlive a restart of pocketdev.
    let app = app.restart().await;
    let ann = app.token("ann", "ann-password-1").await;
    assert_eq!(app.instance(&ann, &instance).await["state"], "running");
    assert_eq!(
        run(&app, &ann, &instance, "echo still here").await,
        "still here"
    );
}

#[tokio::test]
async fn a_data_dir_accounts_cannot_reach_turns_auto_off_loudly_and_refuses_a_chosen_mode() {
    if skip_unless_root() {
        return;
    }
    // A private parent, like a repository cloned into /root.
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        private.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut config = crate::helpers::test_config(&private.path().join("data"));
    crate::helpers::isolate_for_tests(&mut config, Path::new("/tmp"));
    config.isolation.run_dir = std::env::temp_dir().join(format!("pdt-run-{}", std::process::id()));
    let app = pocketdev::App::build(config.clone())
        .await
        .expect("auto still starts");
    let report = app.state().isolation.report().clone();
    assert_eq!(report.mode, pocketdev::isolation::Mode::None);
    assert!(
        report.reason.contains("cannot reach") && report.reason.contains("chmod o+x"),
        "{}",
        report.reason
    );
    drop(app);

    config.isolation.mode = pocketdev::config::IsolationMode::Users;
    let refused = pocketdev::App::build(config.clone()).await;
    let err = format!("{:#}", refused.err().expect("a chosen mode is refused"));
    assert!(err.contains("cannot reach"), "{err}");
    let _ = std::fs::remove_dir_all(&config.isolation.run_dir);
    crate::helpers::remove_test_accounts(&config.isolation.user_prefix);
}
