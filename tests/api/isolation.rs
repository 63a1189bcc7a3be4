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

/// An account with a shell instance ready for commands: (id, token, instance).
async fn account_with_shell(app: &TestApp, name: &str) -> (i64, String, String) {
    let (id, token) = account(app, name).await;
    let instance = shell(app, &token).await;
    (id, token, instance)
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
    // (Its /proc hides the server from the agent: Landlock lets a sandbox look only inward.)
    let server = run(&app, &amy_token, &instance, "tmux display -p '#{pid}'").await;
    let server_uid = std::fs::metadata(format!("/proc/{server}")).unwrap().uid();
    assert_eq!(server_uid, uid, "tmux server {server} runs as amy");

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
    let (_, ann, instance) = account_with_shell(&app, "ann").await;
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

#[tokio::test]
async fn nothing_an_agent_makes_its_tmux_server_or_pocketdevs_clients_do_leaves_its_sandbox() {
    if skip_unless_root() || pocketdev::isolation::landlock_abi() < 2 {
        eprintln!("skipped: needs root and Landlock ABI 2");
        return;
    }
    let app = spawn_app().await;
    let (ann_id, ann, instance) = account_with_shell(&app, "ann").await;
    // Anyone may write here: only a sandbox keeps a process out.
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        open.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let o = open.path().display().to_string();
    let ws = app.data_dir().join(format!("users/{ann_id}/workspace"));

    // A viewer attaches, so a control client runs for the account.
    let _viewer = app.term(&ann, &instance).await;

    // The account's own tmux server runs commands for the agent; hooks make pocketdev's
    // routine clients (listings, captures, input) save files. (A failing hook also fails the
    // client's own command, so from here on the test reads files, not the API's output.)
    let armed = ws.join("armed");
    let script = format!(
        "tmux run-shell 'touch {o}/run-shell 2>/dev/null; true'; \
         tmux run-shell 'cat /proc/self/cgroup > {w}/run-shell.cgroup'; \
         tmux new-window -d 'touch {o}/new-window'; \
         tmux new-window -d -n spare 'sleep 60'; tmux respawn-pane -k -t :spare 'touch {o}/respawn-pane 2>/dev/null'; \
         tmux set-buffer from-a-hook; \
         tmux set-hook -g after-capture-pane[0] 'save-buffer {w}/hook-in-workspace'; \
         tmux set-hook -g after-capture-pane[1] 'save-buffer {o}/hook-capture-pane'; \
         for c in list-panes send-keys display-message; do tmux set-hook -g after-$c 'save-buffer {o}/hook-'$c; done; \
         echo armed > {a}",
        w = ws.display(),
        a = armed.display(),
    );
    app.command(&ann, &instance, json!({ "text": script }))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !armed.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never armed its hooks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Reconciliation and the monitor run their clients every second; input and output too.
    let _ = app
        .command(&ann, &instance, json!({ "text": "true" }))
        .await;
    let _ = app
        .get(&format!("/api/instances/{instance}/output"), Some(&ann))
        .await;
    while !ws.join("hook-in-workspace").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pocketdev's capture never ran the hook (so the test proves nothing)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The new windows ran their commands by now; give the listings a second more.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written: Vec<_> = std::fs::read_dir(open.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        written.is_empty(),
        "the account's tmux server or a client wrote outside its sandbox: {written:?}"
    );

    // Everything that ran for the account ran in its cgroup: what the server ran, and
    // pocketdev's control client.
    let group = format!(
        "/{}/{}{ann_id}",
        app.config.isolation.cgroup, app.config.isolation.user_prefix
    );
    let server_side = std::fs::read_to_string(ws.join("run-shell.cgroup")).unwrap();
    assert!(server_side.contains(&group), "{server_side}");
    let uid = passwd_entry(&format!("{}{ann_id}", app.config.isolation.user_prefix))
        .unwrap()
        .0;
    let clients: Vec<i32> = pocketdev::isolation::accounts::processes_of(uid)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains("attach-session"))
        })
        .collect();
    assert!(
        !clients.is_empty(),
        "the control client runs as the account"
    );
    for pid in clients {
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(cgroup.contains(&group), "control client {pid}: {cgroup}");
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
    let (_, ann, ann_shell) = account_with_shell(&app, "ann").await;
    let (_, bob, bob_shell) = account_with_shell(&app, "bob").await;
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
async fn agents_started_while_another_accounts_server_is_silent_are_never_given_up_for_lost() {
    if skip_unless_root() {
        return;
    }
    // Every listing of all servers waits for the silent one (up to its timeout), so agents
    // other accounts start meanwhile are missing from listings that began before them.
    let app = spawn_app_with(|c| {
        c.tmux.command_timeout_secs = 2;
        c.limits.max_per_user = 10;
        c.limits.max_total = 10;
    })
    .await;
    let (_, ann) = account(&app, "ann").await;
    let (_, bob) = account(&app, "bob").await;
    let ann_shell = shell(&app, &ann).await;
    let server: u32 = run(&app, &ann, &ann_shell, "tmux display -p '#{pid}'")
        .await
        .parse()
        .expect("the server's pid");
    signal(server, rustix::process::Signal::STOP).expect("the server is stopped");
    let stopped = Stopped(server);

    let mut shells = Vec::new();
    for n in 0..5 {
        let id = shell(&app, &bob).await;
        assert_eq!(
            run(&app, &bob, &id, &format!("echo bob{n}-$((40+2))")).await,
            format!("bob{n}-42")
        );
        shells.push(id);
    }
    // Several listings later (each waits about 2 s for ann's server), all five still run and
    // answer.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (n, id) in shells.iter().enumerate() {
        let instance = app.instance(&bob, id).await;
        assert_eq!(instance["state"], "running", "bob's shell {n}: {instance}");
        assert_eq!(
            run(&app, &bob, id, &format!("echo again{n}-$((40+2))")).await,
            format!("again{n}-42")
        );
    }
    drop(stopped);
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
    let line_of = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in {text}"))
    };
    assert!(line_of("proxy").starts_with("ok"), "{text}");
    if running_as_root() {
        assert!(
            line.starts_with("ok") && line.contains("Landlock ABI"),
            "{line}"
        );
        // Each measure the running server put in force has its own line.
        assert_eq!(report["private_namespaces"], true, "{report}");
        let namespaces = line_of("namespaces");
        assert!(
            namespaces.starts_with("ok") && namespaces.contains("/proc"),
            "{namespaces}"
        );
        let sandbox = line_of("sandbox");
        assert!(
            sandbox.starts_with("ok") && sandbox.contains("tmux server"),
            "{sandbox}"
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
        c.monitor.interval_secs = 1;
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
    // Its agent is measured although tmux names it by a pid of the sandbox's own numbering:
    // the kernel's list of the instance's group is what counts.
    let admin = app.admin_token().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats: Value = app
            .get("/api/system/stats", Some(&admin))
            .await
            .json()
            .await
            .unwrap();
        let usage = stats["instances"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["id"] == instance.as_str()))
            .map(|i| i["usage"].clone())
            .unwrap_or_default();
        if usage["memory_bytes"].as_u64().unwrap_or(0) > 0
            && usage["processes"].as_u64().unwrap_or(0) > 0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sandboxed agent is never measured: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

/// A tmpfs mounted `noexec` at `dir` for the test's life, as Debian's and Ubuntu's initramfs
/// mount /run.
struct NoexecMount(std::path::PathBuf);

impl NoexecMount {
    #[allow(clippy::disallowed_methods)] // set-up before the server starts
    fn at(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "noexec,nosuid,nodev,mode=0755",
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(mounted.success(), "mount a tmpfs at {}", dir.display());
        Self(dir.to_owned())
    }
}

impl Drop for NoexecMount {
    #[allow(clippy::disallowed_methods)] // Drop cannot wait for a task
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn agents_start_when_the_runtime_folder_is_noexec_and_a_noexec_data_dir_is_refused_in_words()
{
    if skip_unless_root() {
        return;
    }
    // The sockets' folder on a noexec /run, as on a stock Debian 12 server: the launcher runs
    // from the data dir instead, so agents start.
    let base = tempfile::tempdir().unwrap();
    let run = NoexecMount::at(&base.path().join("run"));
    let app = spawn_app_with(|config| {
        config.isolation.run_dir = run.0.join("pocketdev");
    })
    .await;
    let token = app.admin_token().await;
    let id = shell(&app, &token).await;
    let printed = run_in(&app, &token, &id).await;
    assert!(printed.contains("ran-42"), "{printed}");
    drop(app);

    // A data dir on a noexec file system: the server does not start, and says why.
    let data = NoexecMount::at(&base.path().join("data"));
    let mut config = crate::helpers::test_config(&data.0.join("pocketdev"));
    crate::helpers::isolate_for_tests(&mut config, base.path());
    config.isolation.mode = pocketdev::config::IsolationMode::Landlock;
    std::fs::set_permissions(
        base.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let refused = match pocketdev::App::build(config.clone()).await {
        Ok(_) => panic!("a server whose launcher cannot run started"),
        Err(err) => format!("{err:#}"),
    };
    assert!(refused.contains("noexec"), "{refused}");
    pocketdev::isolation::cgroups::Cgroups::detect(&config.isolation.cgroup).remove_parents();
}

async fn run_in(app: &TestApp, token: &str, id: &str) -> String {
    run(app, token, id, "echo ran-$((40+2))").await
}

#[tokio::test]
async fn one_broken_account_never_keeps_the_server_from_starting() {
    if skip_unless_root() {
        return;
    }
    let app = spawn_app_with(|c| c.tmux.command_timeout_secs = 2).await;
    let prefix = app.config.isolation.user_prefix.clone();
    let (ann_id, ann) = account(&app, "ann").await;
    let (cat_id, cat) = account(&app, "cat").await;
    let (_, bob) = account(&app, "bob").await;
    // Ann's agent breaks what it owns: a dangling link where its TMPDIR was, and its stopped
    // tmux server.
    let ann_shell = shell(&app, &ann).await;
    run(
        &app,
        &ann,
        &ann_shell,
        "rm -rf ~/tmp; ln -s /nonexistent/x ~/tmp; echo done",
    )
    .await;
    let server: u32 = run(&app, &ann, &ann_shell, "tmux display -p '#{pid}'")
        .await
        .parse()
        .unwrap();
    // Cat's Unix user disappears and someone else takes its uid (a careless admin, another
    // install).
    let cat_name = format!("{prefix}{cat_id}");
    let (cat_uid, _) = passwd_entry(&cat_name).unwrap();
    let squatter = format!("{prefix}squat");
    let status = tokio::process::Command::new("userdel")
        .arg(&cat_name)
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let status = tokio::process::Command::new("useradd")
        .args(["--no-create-home", "--uid", &cat_uid.to_string(), &squatter])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    struct Removed(String);
    impl Drop for Removed {
        #[allow(clippy::disallowed_methods)] // Drop cannot wait for a task
        fn drop(&mut self) {
            let _ = std::process::Command::new("userdel").arg(&self.0).status();
        }
    }
    let _squatter = Removed(squatter);
    signal(server, rustix::process::Signal::STOP).unwrap();
    let stopped = Stopped(server);

    // The server starts all the same.
    let app = app.restart().await;
    let bob_shell = shell(&app, &bob).await;
    assert_eq!(
        run(&app, &bob, &bob_shell, "echo bob-$((40+2))").await,
        "bob-42"
    );
    let report = isolation_report(&app).await;
    let unavailable = report["unavailable"].as_array().unwrap();
    assert_eq!(unavailable.len(), 1, "{report}");
    assert_eq!(unavailable[0]["user_id"], cat_id);
    assert!(
        unavailable[0]["reason"]
            .as_str()
            .unwrap()
            .contains(&cat_name),
        "{report}"
    );
    // Cat hears why in words; ann's account answers once its server goes on.
    let refused = app
        .call(
            Method::POST,
            "/api/instances",
            Some(&app.token("cat", "cat-password-1").await),
            Some(json!({ "profile": "shell" })),
        )
        .await;
    expect_error_saying(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "cannot be used right now",
    )
    .await;
    let _ = cat;
    drop(stopped);
    assert_eq!(
        run(&app, &ann, &ann_shell, "echo ann-$((40+2))").await,
        "ann-42"
    );
    let _ = ann_id;
}

#[tokio::test]
async fn an_agent_cannot_speak_for_another_client_address_on_any_listener_it_reaches() {
    if skip_unless_root() {
        return;
    }
    // What earlier deploys wrote (loopback trusted), and the proxy socket of today's.
    let app = spawn_app_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.proxy_socket = Some(c.isolation.run_dir.join("http.sock"));
        c.proxy_socket_group = "root".into();
        c.rate_limits.login_per_minute = 5;
        c.metrics.allow_from = vec!["198.51.100.0/24".parse().unwrap()];
    })
    .await;
    let admin = app.admin_token().await;
    let (_, ann, agent) = account_with_shell(&app, "ann").await;
    let port = app.addr.port();
    let socket = app.config.proxy_socket.clone().unwrap();

    // Password guesses, each claiming another address, and a claim to a metrics address.
    let script = format!(
        "for n in 1 2 3 4 5 6 7 8; do curl -s -o /dev/null -w '%{{http_code}} ' \
           -H \"x-forwarded-for: 203.0.113.$n\" -H 'content-type: application/json' \
           --data '{{\"username\":\"admin\",\"password\":\"guess-number-'$n'\"}}' \
           http://127.0.0.1:{port}/api/auth/login; done; \
         curl -s -o /dev/null -w 'metrics:%{{http_code}} ' -H 'x-forwarded-for: 198.51.100.7' \
           http://127.0.0.1:{port}/metrics; \
         curl -s -o /dev/null -w 'socket:%{{http_code}}' --unix-socket {s} http://localhost/api/health",
        s = socket.display(),
    );
    let answers = run(&app, &ann, &agent, &script).await;
    let codes: Vec<&str> = answers.split_whitespace().collect();
    // One address, one limit (the test's own sign-ins from loopback counted too): the guesses
    // are refused before the eight are through, and from then on.
    let guesses = &codes[..8];
    let refused_from = guesses
        .iter()
        .position(|c| *c == "429")
        .unwrap_or_else(|| panic!("never rate limited: {answers}"));
    assert!(refused_from <= 5, "{answers}");
    assert!(
        guesses[..refused_from].iter().all(|c| *c == "401")
            && guesses[refused_from..].iter().all(|c| *c == "429"),
        "{answers}"
    );
    assert!(
        ["metrics:401", "metrics:403"].contains(&codes[8]),
        "the claim to a metrics address is not believed: {answers}"
    );
    assert_eq!(
        codes[9], "socket:000",
        "the agent cannot open the proxy socket: {answers}"
    );

    // The audit log names the agent's own address, not the ones it claimed. (Signing in again
    // from loopback would meet the same limit: the admin's token is from before.)
    let failures: Vec<Value> = app
        .get("/api/admin/audit?action=login.failure", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failures.len(), refused_from, "{failures:?}");
    assert!(
        failures.iter().all(|f| f["ip"] == "127.0.0.1"),
        "{failures:?}"
    );

    // The proxy's socket is believed (what nginx says is true).
    let (status, _, _) = app
        .call_via_proxy_socket(
            "GET",
            "/metrics",
            &[("x-forwarded-for", "198.51.100.7")],
            None,
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_second_server_on_the_host_never_takes_the_first_ones_accounts_or_sockets() {
    if skip_unless_root() {
        return;
    }
    let first = spawn_app().await;
    let (_, amy) = account(&first, "amy").await;
    let amy_shell = shell(&first, &amy).await;
    let shared = first.config.isolation.clone();

    // Another install told to use the same runtime folder would share the accounts' tmux
    // sockets: it does not start, and says why.
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        base.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let mut config = crate::helpers::test_config(&base.path().join("data"));
    config.isolation = shared.clone();
    let refused = match pocketdev::App::build(config).await {
        Ok(_) => panic!("a second server started on the first one's runtime folder"),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        refused.contains("belongs to another pocketdev server"),
        "{refused}"
    );

    // With a runtime folder of its own but the same user names, its accounts never adopt the
    // first server's Unix users: its admin (account 1, like the first's) is unavailable, with
    // the reason, and starts nothing.
    let second = spawn_app_with(|c| {
        c.isolation.user_prefix = shared.user_prefix.clone();
        c.isolation.cgroup = shared.cgroup.clone();
    })
    .await;
    let report = isolation_report(&second).await;
    let unavailable = report["unavailable"].as_array().unwrap();
    assert!(
        unavailable
            .iter()
            .any(|a| a["user_id"] == 1
                && a["reason"].as_str().unwrap().contains("did not create it")),
        "{report}"
    );
    let refused = second
        .post(
            "/api/instances",
            Some(&second.admin_token().await),
            json!({ "profile": "shell" }),
        )
        .await;
    expect_error_saying(
        refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "cannot be used right now",
    )
    .await;
    // The first server's agent never noticed.
    assert_eq!(
        run(&first, &amy, &amy_shell, "echo amy-$((40+2))").await,
        "amy-42"
    );
    // Both go at the end of the test, the second first: its clean-up removes the shared prefix's
    // users, the first server's included, which is what the first's own clean-up would do.
    drop(second);
}

/// Whether any process of `uid` runs `sleep <seconds>` (the marker a test started).
fn sleeping(uid: u32, seconds: &str) -> Vec<i32> {
    pocketdev::isolation::accounts::processes_of(uid)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split('\0').any(|arg| arg == seconds))
        })
        .collect()
}

async fn wait_until_gone(uid: u32, seconds: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !sleeping(uid, seconds).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes survived: {:?}",
            sleeping(uid, seconds)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_stopped_agent_is_gone_whole_with_everything_it_started() {
    if skip_unless_root() {
        return;
    }
    let app = spawn_app_with(|c| c.tmux.command_timeout_secs = 2).await;
    let admin = app.admin_token().await;
    let (ann_id, ann) = account(&app, "ann").await;
    let uid = passwd_entry(&format!("{}{ann_id}", app.config.isolation.user_prefix))
        .unwrap()
        .0;
    // What agents leave running: nohup, setsid, a background server.
    let leave_behind = |marker: &str| {
        format!(
            "nohup sleep {marker}1 >/dev/null 2>&1 & setsid sleep {marker}2 >/dev/null 2>&1 < /dev/null & \
             (python3 -m http.server 0 >/dev/null 2>&1 &) ; (sleep {marker}3 &) ; echo left"
        )
    };

    // Stop.
    let first = shell(&app, &ann).await;
    run(&app, &ann, &first, &leave_behind("100")).await;
    assert_eq!(
        sleeping(uid, "1001").len(),
        1,
        "the test's own processes run"
    );
    let stopped = app
        .post(
            &format!("/api/instances/{first}/stop"),
            Some(&ann),
            json!({}),
        )
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    for marker in ["1001", "1002", "1003"] {
        wait_until_gone(uid, marker).await;
    }

    // Delete.
    let second = shell(&app, &ann).await;
    run(&app, &ann, &second, &leave_behind("200")).await;
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/instances/{second}"),
            Some(&ann),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for marker in ["2001", "2002", "2003"] {
        wait_until_gone(uid, marker).await;
    }

    // Disabling the account.
    let third = shell(&app, &ann).await;
    run(&app, &ann, &third, &leave_behind("300")).await;
    app.set_disabled(&admin, ann_id, true).await;
    for marker in ["3001", "3002", "3003"] {
        wait_until_gone(uid, marker).await;
    }

    // Deleting an account whose tmux server it stopped itself.
    let (bob_id, bob) = account(&app, "bob").await;
    let bob_uid = passwd_entry(&format!("{}{bob_id}", app.config.isolation.user_prefix))
        .unwrap()
        .0;
    let fourth = shell(&app, &bob).await;
    run(&app, &bob, &fourth, &leave_behind("400")).await;
    // (The shell may also report its background jobs as done.)
    let server: u32 = run(&app, &bob, &fourth, "tmux display -p '#{pid}'")
        .await
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .expect("the server's pid");
    signal(server, rustix::process::Signal::STOP).unwrap();
    let _stopped = Stopped(server);
    let started = std::time::Instant::now();
    let removed = app
        .call(
            Method::DELETE,
            &format!("/api/admin/users/{bob_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        removed.status(),
        StatusCode::NO_CONTENT,
        "{:?}",
        started.elapsed()
    );
    assert!(
        pocketdev::isolation::accounts::processes_of(bob_uid).is_empty(),
        "nothing of the deleted account survives"
    );
}

#[tokio::test]
async fn what_one_account_types_never_shows_in_another_accounts_process_list() {
    if skip_unless_root() {
        return;
    }
    let app = spawn_app().await;
    let (_, ann, ann_shell) = account_with_shell(&app, "ann").await;
    let (bob_id, bob, bob_shell) = account_with_shell(&app, "bob").await;
    // Bob's agent watches every command line on the machine for ten seconds.
    let seen = app
        .data_dir()
        .join(format!("users/{bob_id}/workspace/seen"));
    let watcher = "import glob,time\\n\
        end=time.time()+10\\n\
        found=set()\\n\
        while time.time()<end:\\n\
        \\x20for f in glob.glob(\"/proc/[0-9]*/cmdline\"):\\n\
        \\x20\\x20try: c=open(f,\"rb\").read()\\n\
        \\x20\\x20except OSError: continue\\n\
        \\x20\\x20if b\"sekrit-\" in c: found.add(c)\\n\
        open(\"seen\",\"w\").write(repr(found))\\n";
    run(
        &app,
        &bob,
        &bob_shell,
        &format!("printf '{watcher}' > watch.py; (python3 watch.py &) ; echo watching"),
    )
    .await;
    // Meanwhile ann types (through the API) what must stay hers.
    for n in 0..40 {
        app.command(
            &ann,
            &ann_shell,
            json!({ "text": format!(": sekrit-{n}"), "enter": true }),
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let found = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(
        found.trim(),
        "set()",
        "typed text showed in a command line: {found}"
    );
}

#[tokio::test]
async fn accounts_share_no_shared_memory_ipc_or_process_list() {
    if skip_unless_root() {
        return;
    }
    let app = spawn_app().await;
    let (_, ann, ann_shell) = account_with_shell(&app, "ann").await;
    let (_, bob, bob_shell) = account_with_shell(&app, "bob").await;
    let report = isolation_report(&app).await;
    assert_eq!(report["private_namespaces"], true, "{report}");

    // Ann leaves a file in /dev/shm, a System V segment and a process with a telling command line.
    let ann_sees = run(
        &app,
        &ann,
        &ann_shell,
        "echo ann-only > /dev/shm/ann-shm; ipcmk -M 4096 >/dev/null; (sleep 4242 &); \
         sleep 0.2; ls /dev/shm; ipcs -m | grep -c '^0x'; \
         cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -o 'sleep 424[2]' | head -1",
    )
    .await;
    assert!(ann_sees.contains("ann-shm"), "{ann_sees}");
    assert!(ann_sees.contains("sleep 4242"), "{ann_sees}");

    let bob_sees = run(
        &app,
        &bob,
        &bob_shell,
        "ls -A /dev/shm | wc -l; ipcs -m | grep -c '^0x'; \
         cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c 'sleep 424[2]'; \
         ps -eo uid= | sort -u | tr '\\n' ' '; echo; id -u",
    )
    .await;
    let lines: Vec<&str> = bob_sees.lines().map(str::trim).collect();
    assert_eq!(
        lines.first(),
        Some(&"0"),
        "bob sees /dev/shm files: {bob_sees}"
    );
    assert_eq!(
        lines.get(1),
        Some(&"0"),
        "bob sees IPC segments: {bob_sees}"
    );
    assert_eq!(
        lines.get(2),
        Some(&"0"),
        "bob sees ann's process: {bob_sees}"
    );
    let uids: Vec<&str> = lines.get(3).unwrap_or(&"").split_whitespace().collect();
    assert_eq!(
        uids,
        [lines[4]],
        "bob's process list shows other users' processes: {bob_sees}"
    );
    // Nothing of it reached the host's own /dev/shm.
    assert!(!Path::new("/dev/shm/ann-shm").exists());
}

#[tokio::test]
async fn no_descriptor_of_whoever_started_the_server_reaches_an_account() {
    if skip_unless_root() {
        return;
    }
    // A root-only file held open (as a lock or a log would be) by the process that starts
    // pocketdev, without close-on-exec.
    let held = tempfile::tempdir().unwrap();
    let secret = held.path().join("root-only-held-open");
    std::fs::write(&secret, "root's\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = std::fs::File::open(&secret).unwrap();
    rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::empty()).unwrap();

    // Under Landlock an agent cannot look into its tmux server's descriptors at all; with Unix
    // users alone it can, so only closing them keeps the file out of reach.
    let app = spawn_app_with(|c| c.isolation.mode = pocketdev::config::IsolationMode::Users).await;
    let (_, ann, ann_shell) = account_with_shell(&app, "ann").await;
    let found = run(
        &app,
        &ann,
        &ann_shell,
        "ls -l /proc/[0-9]*/fd/ 2>/dev/null | grep -c root-only-held-open",
    )
    .await;
    assert_eq!(
        found, "0",
        "an account process holds the server's parent's file"
    );
    drop(file);
}
