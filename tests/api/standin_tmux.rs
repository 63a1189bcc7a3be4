//! A stand-in tmux server, and the attack it makes possible (finding S5): an account owns its
//! tmux socket folder, so a hostile agent can kill its own tmux server and put on the socket a
//! program that speaks tmux's client protocol and answers `list-panes` with a pane of its
//! instance's session whose pid is any process it likes (pid 1, the server, another account's
//! agent). Root must never signal or measure such a pid without asking the kernel whose it is.
//!
//! The stand-in speaks just enough of tmux 3.3's protocol (version 8) for the system's tmux
//! client: it reads the client's messages up to `MSG_COMMAND`, runs a tiny model of the command
//! on its forged panes, and answers as a real server answers a command client: the output as a
//! file write to the client's stdout (`MSG_WRITE_OPEN`, `MSG_WRITE`, `MSG_WRITE_CLOSE`), then
//! `MSG_EXIT` with the exit status. See tmux's `tmux-protocol.h`, `client.c` and `file.c`.
//!
//! The first test holds the stand-in to the system's tmux client (no root needed); the second
//! is the attack, with accounts isolated (as root; skipped otherwise).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::helpers::{TestApp, running_as_root, spawn_app_with};

/// tmux's protocol version; each message carries it (in the header's `peerid`), and a peer
/// with another version is refused.
const PROTOCOL_VERSION: u32 = 8;
/// imsg's header: type (u32), length including the header (u16), flags (u16), peerid (u32),
/// pid (u32), in the machine's byte order.
const HEADER: usize = 16;
/// imsg's largest message, header included.
const MAX_MESSAGE: usize = 16384;

const MSG_COMMAND: u32 = 200;
const MSG_EXIT: u32 = 203;
const MSG_WRITE_OPEN: u32 = 303;
const MSG_WRITE: u32 = 304;
const MSG_WRITE_CLOSE: u32 = 306;

/// A pane the stand-in says it has: always alive, in `session`, its process `pid`.
#[derive(Debug, Clone)]
pub struct ForgedPane {
    pub session: String,
    pub pid: u32,
}

/// A fake tmux server listening on a socket until dropped.
pub struct StandIn {
    socket: PathBuf,
    panes: Arc<Mutex<Vec<ForgedPane>>>,
    /// Every command received, as its argument list.
    commands: Arc<Mutex<Vec<Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Listens on `socket` (replacing a stale file there), owned by `owner` (uid, gid) with
    /// mode 0600 when given, as a real server's socket is. Serves on the caller's tokio runtime.
    pub fn start(
        socket: &Path,
        owner: Option<(u32, u32)>,
        panes: Vec<ForgedPane>,
    ) -> std::io::Result<Self> {
        match std::fs::remove_file(socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(socket)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(socket, Some(uid), Some(gid))?;
            std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        }
        let panes = Arc::new(Mutex::new(panes));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let (shared_panes, shared_commands) = (panes.clone(), commands.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (panes, commands) = (shared_panes.clone(), shared_commands.clone());
                tokio::spawn(async move {
                    // A client that goes away early (pocketdev's "is anyone listening?" probe
                    // connects and closes) is no error here.
                    let _ = serve(stream, &panes, &commands).await;
                });
            }
        });
        Ok(Self {
            socket: socket.to_owned(),
            panes,
            commands,
            task,
        })
    }

    /// How many commands named `name` (`list-panes`, `kill-session`…) clients sent.
    pub fn count(&self, name: &str) -> usize {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .filter(|args| args.first().is_some_and(|a| a == name))
            .count()
    }

    /// The sessions the stand-in still lists.
    pub fn sessions(&self) -> Vec<String> {
        self.panes
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.session.clone())
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One client connection: its identify messages are skipped (the file descriptors it passes
/// with them are closed by the kernel, since no ancillary data is read), its command is
/// answered, and the connection is held until the client has written everything and closes.
async fn serve(
    mut stream: UnixStream,
    panes: &Mutex<Vec<ForgedPane>>,
    commands: &Mutex<Vec<Vec<String>>>,
) -> std::io::Result<()> {
    let args = loop {
        let (kind, body) = read_message(&mut stream).await?;
        if kind == MSG_COMMAND {
            break command_args(&body);
        }
    };
    // A command list (`kill-window … ; kill-session …`) runs command by command, as in tmux,
    // until one fails.
    let mut status = 0;
    let mut output = String::new();
    for command in args.split(|a| a == ";").filter(|c| !c.is_empty()) {
        commands.lock().unwrap().push(command.to_vec());
        let (code, printed) = run(command, panes);
        (status, output) = (code, output + &printed);
        if code != 0 {
            break;
        }
    }
    let mut reply = Vec::new();
    if !output.is_empty() {
        // Stream 1 is the client's stdout (fd 1); no path: the client writes to its own.
        let stream_id = 1i32.to_ne_bytes();
        let open = [stream_id, 1i32.to_ne_bytes(), 0i32.to_ne_bytes()].concat();
        message(&mut reply, MSG_WRITE_OPEN, &open);
        for chunk in output.as_bytes().chunks(MAX_MESSAGE - HEADER - 4) {
            message(&mut reply, MSG_WRITE, &[&stream_id[..], chunk].concat());
        }
        message(&mut reply, MSG_WRITE_CLOSE, &stream_id);
    }
    message(&mut reply, MSG_EXIT, &status.to_ne_bytes());
    stream.write_all(&reply).await?;
    // The client answers MSG_WRITE_READY and exits once its output is written; closing first
    // could cut that output short.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    Ok(())
}

async fn read_message(stream: &mut UnixStream) -> std::io::Result<(u32, Vec<u8>)> {
    let mut header = [0u8; HEADER];
    stream.read_exact(&mut header).await?;
    let kind = u32::from_ne_bytes(header[0..4].try_into().unwrap());
    let len = usize::from(u16::from_ne_bytes(header[4..6].try_into().unwrap()));
    let mut body = vec![0u8; len.saturating_sub(HEADER)];
    stream.read_exact(&mut body).await?;
    Ok((kind, body))
}

/// Appends one message, with no file descriptor, to `out`.
fn message(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let len = u16::try_from(HEADER + body.len()).expect("a message fits in imsg's limit");
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&PROTOCOL_VERSION.to_ne_bytes());
    // The sender's pid: -1, as tmux sends (no one reads it).
    out.extend_from_slice(&u32::MAX.to_ne_bytes());
    out.extend_from_slice(body);
}

/// `MSG_COMMAND`'s body: argc (i32), then the arguments, each ending with a NUL.
fn command_args(body: &[u8]) -> Vec<String> {
    let packed = body.get(4..).unwrap_or_default();
    packed
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The value of the argument after `flag`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

/// What the stand-in does with a command: (exit status, what it prints).
fn run(args: &[String], panes: &Mutex<Vec<ForgedPane>>) -> (i32, String) {
    let mut panes = panes.lock().unwrap();
    match args.first().map(String::as_str) {
        Some("list-panes") => {
            let format = flag_value(args, "-F").unwrap_or("#{session_name}");
            let rows: String = panes
                .iter()
                .map(|pane| format!("{}\n", expand(format, pane)))
                .collect();
            (0, rows)
        }
        Some("capture-pane") => (0, "a forged screen\n".into()),
        Some("kill-session") => {
            // `-t =pd-x`: an exact session name.
            if let Some(target) = flag_value(args, "-t") {
                let name = target.trim_start_matches('=').trim_end_matches(':');
                panes.retain(|p| p.session != name);
            }
            (0, String::new())
        }
        // Everything else (new-session, send-keys, load-buffer…) "works" and prints nothing.
        _ => (0, String::new()),
    }
}

/// A tmux format with the pane's variables filled in; unknown ones are empty (as for a pane
/// that has not died: no status, no signal).
fn expand(format: &str, pane: &ForgedPane) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(start) = rest.find("#{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&match &rest[start + 2..start + end] {
            "session_name" => pane.session.clone(),
            "pane_pid" => pane.pid.to_string(),
            "pane_dead" => "0".into(),
            _ => String::new(),
        });
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn the_stand_in_answers_the_system_tmux_client() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tmux.sock");
    let forged = |session: &str, pid| ForgedPane {
        session: session.into(),
        pid,
    };
    let stand_in = StandIn::start(&socket, None, vec![forged("pd-a", 1), forged("pd-b", 42)])
        .expect("the stand-in listens");
    let tmux = |args: &[&str]| {
        let mut command = tokio::process::Command::new("tmux");
        command
            .arg("-S")
            .arg(&socket)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    };
    let run = |args: &'static [&'static str]| {
        let mut command = tmux(args);
        async move {
            let output = tokio::time::timeout(Duration::from_secs(10), command.output())
                .await
                .expect("the client finishes")
                .expect("tmux runs");
            assert!(
                output.status.success(),
                "tmux {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap()
        }
    };
    let listed = run(&[
        "list-panes",
        "-a",
        "-F",
        "#{session_name}\t#{pane_dead}\t#{pane_dead_status}\t#{pane_pid}",
    ])
    .await;
    assert_eq!(listed, "pd-a\t0\t\t1\npd-b\t0\t\t42\n");
    assert_eq!(
        run(&["capture-pane", "-p", "-t", "=pd-a:"]).await,
        "a forged screen\n"
    );
    assert_eq!(run(&["kill-session", "-t", "=pd-a"]).await, "");
    assert_eq!(stand_in.sessions(), ["pd-b"]);
    assert_eq!(stand_in.count("list-panes"), 1);
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The command name may hold spaces and parentheses; fields resume after the last ')'.
        stat.rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Resident memory of `pid`, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn account(app: &TestApp, name: &str) -> (i64, String) {
    let password = format!("{name}-password-1");
    let id = app.create_user(name, &password).await;
    (id, app.token(name, &password).await)
}

/// A fake agent of the account, at its prompt.
async fn agent(app: &TestApp, token: &str) -> String {
    let created = app
        .create_instance(token, json!({ "profile": "fake" }))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.wait_for_output(token, &id, "agent>").await;
    id
}

/// The system stats once two samples have been taken from now on (so the last one began after
/// this call).
async fn stats_after_two_samples(app: &TestApp, admin: &str) -> Value {
    let stats = || async {
        let response = app.get("/api/system/stats", Some(admin)).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()
    };
    let mut seen = stats().await["sampled_at"].clone();
    let mut fresh = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = stats().await;
        if now["sampled_at"] != seen {
            seen = now["sampled_at"].clone();
            fresh += 1;
            if fresh == 2 {
                return now;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the monitor stopped sampling: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_forged_tmux_server_never_makes_root_signal_or_measure_someone_elses_process() {
    if !running_as_root() {
        eprintln!("skipped: isolation needs root (CI runs the tests as root)");
        return;
    }
    const BUDGET_MB: u64 = 100;
    let app = spawn_app_with(|c| {
        c.monitor.interval_secs = 1;
        c.limits.max_per_user = 10;
        c.limits.max_total = 10;
        // Honest accounting: ann's four agents and bob's two at 10 MB each fit.
        c.limits.memory_budget_mb = BUDGET_MB;
        c.tmux.stop_grace_secs = 1;
    })
    .await;
    let admin = app.admin_token().await;
    let prefix = app.config.isolation.user_prefix.clone();
    let (ann_id, ann) = account(&app, "ann").await;
    let (bob_id, bob) = account(&app, "bob").await;
    let identity = |user_id: i64| {
        pocketdev::isolation::accounts::SystemIds::read()
            .unwrap()
            .user(&format!("{prefix}{user_id}"))
            .expect("the account's Unix user")
    };

    // The processes ann's agent will name: bob's agent, a process of root's holding more
    // memory than the whole budget, the pocketdev server itself (this test process) and pid 1.
    let bob_agent = agent(&app, &bob).await;
    // Found with the kernel, not asked of bob's tmux server (whose pids may be those of a
    // namespace of its own).
    let agents_of_bob: Vec<i32> =
        pocketdev::isolation::accounts::processes_of(identity(bob_id).uid)
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.contains("fake-agent"))
            })
            .collect();
    assert_eq!(agents_of_bob.len(), 1, "bob's one agent: {agents_of_bob:?}");
    let bob_pid = agents_of_bob[0].unsigned_abs();
    let mut bystander = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import time; held = b'x' * (160 << 20); print('holding', flush=True); time.sleep(600)",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let bystander_pid = bystander.id().unwrap();
    {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        tokio::io::BufReader::new(bystander.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .await
            .unwrap();
        assert_eq!(line.trim(), "holding");
    }
    assert!(
        resident(bystander_pid) > BUDGET_MB << 20,
        "the bystander holds more than the budget, so counting it as ann's would refuse bob"
    );
    let server_pid = std::process::id();
    // In order of stopping: a stop that signals one fails the test before the next.
    let victims = [
        ("root's bystander", bystander_pid),
        ("bob's agent", bob_pid),
        ("the pocketdev server", server_pid),
        ("pid 1", 1),
    ];
    let mut ann_agents = Vec::new();
    for _ in &victims {
        ann_agents.push(agent(&app, &ann).await);
    }

    // Ann's agent kills its own tmux server and puts the stand-in on its socket, owned by ann
    // as the real one was, naming one victim as the process of each of ann's instances.
    let ann_identity = identity(ann_id);
    let socket = app
        .config
        .isolation
        .run_dir
        .join(format!("tmux/{ann_id}/tmux.sock"));
    assert_eq!(std::fs::metadata(&socket).unwrap().uid(), ann_identity.uid);
    let killed = app
        .tmux_client(ann_id)
        .arg("kill-server")
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    // tmux leaves its socket file behind; it is gone once nothing takes connections there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while UnixStream::connect(&socket).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "tmux never exited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let forged = ann_agents
        .iter()
        .zip(&victims)
        .map(|(id, (_, pid))| ForgedPane {
            session: format!("pd-{id}"),
            pid: *pid,
        })
        .collect();
    let stand_in = StandIn::start(&socket, Some((ann_identity.uid, ann_identity.gid)), forged)
        .expect("the stand-in listens on ann's socket");

    // The monitor samples with the stand-in's word: none of the victims is measured as ann's.
    let stats = stats_after_two_samples(&app, &admin).await;
    assert!(
        stand_in.count("list-panes") > 0,
        "pocketdev never asked the stand-in (so the test proves nothing)"
    );
    let instances = stats["instances"].as_array().unwrap();
    let usage_of = |id: &str| {
        instances
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("instance {id} is live: {stats}"))
            .clone()
    };
    for (id, (what, pid)) in ann_agents.iter().zip(&victims) {
        let instance = usage_of(id);
        assert_eq!(instance["state"], "running", "{instance}");
        assert_eq!(
            (
                &instance["usage"]["memory_bytes"],
                &instance["usage"]["processes"]
            ),
            (&json!(0), &json!(0)),
            "{what} (pid {pid}) was measured as ann's instance: {instance}"
        );
    }
    let bob_usage = usage_of(&bob_agent);
    assert!(
        bob_usage["usage"]["processes"].as_u64() >= Some(1),
        "bob's agent is still measured as his: {bob_usage}"
    );
    assert!(
        app.output(&ann, &ann_agents[0])
            .await
            .contains("a forged screen"),
        "ann's instances are served by the stand-in"
    );

    // Admission counts what was measured: bob can still start an agent.
    let second = app
        .post("/api/instances", Some(&bob), json!({ "profile": "fake" }))
        .await;
    let status = second.status();
    let body: Value = second.json().await.unwrap();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "admission was fooled by the forged panes: {body}"
    );

    // Stop. Where the host has a cgroup v2 hierarchy, each instance has a group of its own and
    // Stop signals only its members, whom the kernel put there: the pane's pid is never used.
    // Where it has none (cgroup v1 only, or no cgroups), that pid is all Stop has: take that
    // path by removing the groups ann's instances had (empty since their server went).
    let groups = pocketdev::isolation::cgroups::Cgroups::detect(&app.config.isolation.cgroup);
    for id in &ann_agents {
        if let Some(dir) = groups.instance_dir(&format!("{prefix}{ann_id}"), id) {
            let gone = dir.clone();
            tokio::task::spawn_blocking(move || {
                pocketdev::isolation::cgroups::kill_and_remove(&gone);
            })
            .await
            .unwrap();
            assert!(!dir.exists(), "{} is removed", dir.display());
        }
    }
    for (id, (what, pid)) in ann_agents.iter().zip(&victims) {
        let stopped = app
            .post(&format!("/api/instances/{id}/stop"), Some(&ann), json!({}))
            .await;
        assert_eq!(stopped.status(), StatusCode::OK, "stopping ann's {id}");
        let stopped: Value = stopped.json().await.unwrap();
        assert_eq!(stopped["state"], "stopped", "{stopped}");
        // Give a signal time to land, then check every victim, not just this one.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            bystander.try_wait().unwrap().is_none() && alive(bystander_pid),
            "root's bystander was killed by the stop of the instance naming {what} (pid {pid})"
        );
        assert!(
            alive(bob_pid),
            "bob's agent was killed by the stop of the instance naming {what} (pid {pid})"
        );
        // (The kernel drops signals to pid 1 that it has no handler for: this checks little.)
        assert!(alive(1));
        // A signal to the server, this test process, ends the test here.
        let health = app.get("/api/health", None).await;
        assert_eq!(health.status(), StatusCode::OK);
    }
    assert!(
        stand_in.count("kill-session") >= victims.len(),
        "each stop went to the stand-in"
    );

    // Bob's agent noticed nothing.
    assert_eq!(app.instance(&bob, &bob_agent).await["state"], "running");
    app.command(
        &bob,
        &bob_agent,
        json!({ "text": "still here", "enter": true }),
    )
    .await;
    app.wait_for_output(&bob, &bob_agent, "you said: still here")
        .await;

    drop(stand_in);
    bystander.kill().await.unwrap();
}
