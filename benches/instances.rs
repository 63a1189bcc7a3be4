//! Instance benchmarks, each beside a baseline measured in the same run:
//! - create: `POST /api/instances` until the agent's process runs, against starting the same
//!   command with a bare `tmux new-session`; as root, also with isolation on (the account's own
//!   Unix user, tmux server, cgroup and Landlock), to show what it adds, and the memory of an
//!   account's tmux server;
//! - list: `GET /api/instances` with 100 instances, against `GET /api/auth/me` (the cost of any
//!   authenticated request).
//!
//! Run: `cargo bench --bench instances`. `-- --smoke` runs a few iterations only (the test
//! command does that so the benchmark cannot rot).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pocketdev::config::Config;
use pocketdev::instances::profiles::Profile;
use serde_json::{Value, json};
use tokio::process::Command;

struct Stats {
    median: Duration,
    p90: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p90: at(0.9),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Waits until `pid` has exec'd `sleep` (the agent command runs).
async fn wait_for_exec(pid: u32) {
    let comm = format!("/proc/{pid}/comm");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&comm)
        .map(|c| c.trim() != "sleep")
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "the agent never started");
        tokio::task::yield_now().await;
    }
}

/// A tmux client, as `uid` when given (never root against an account's server).
async fn tmux_as(uid: Option<u32>, socket: &Path, args: &[&str]) -> String {
    let mut command = Command::new("tmux");
    command.arg("-S").arg(socket).args(args);
    if let Some(uid) = uid {
        command.uid(uid).gid(uid).current_dir("/");
    }
    let out = command.output().await.expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn tmux(socket: &Path, args: &[&str]) -> String {
    tmux_as(None, socket, args).await
}

async fn pane_pid(uid: Option<u32>, socket: &Path, session: &str) -> u32 {
    tmux_as(
        uid,
        socket,
        &[
            "display",
            "-p",
            "-t",
            &format!("={session}:"),
            "#{pane_pid}",
        ],
    )
    .await
    .trim()
    .parse()
    .expect("pane pid")
}

fn config_in(data: &Path) -> Config {
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data.to_path_buf(),
        ..Config::default()
    };
    config.rate_limits.api_per_minute = 1_000_000;
    config.limits.max_total = 1000;
    config.limits.max_per_user = 1000;
    config.limits.memory_reserve_mb = 0;
    config.tmux.launcher = Some(PathBuf::from(env!("CARGO_BIN_EXE_pocketdev")));
    let sleeper = Profile {
        name: "Sleeper".into(),
        command: "sleep".into(),
        args: vec!["infinity".into()],
        memory_mb: 1,
        ..Profile::default()
    };
    config.profiles.insert("sleeper".into(), sleeper);
    config
}

/// Creates `count` instances and times each until its agent runs; the tmux server is found at
/// `socket` and spoken to as the Unix user `account` when given.
async fn time_creates(
    running: &common::Running,
    count: usize,
    account: Option<&str>,
    socket: &Path,
) -> Vec<Duration> {
    let mut samples = Vec::new();
    for _ in 0..count {
        let started = Instant::now();
        let session = running.create_instance("sleeper").await;
        let uid = account.map(|name| {
            pocketdev::isolation::accounts::SystemIds::read()
                .unwrap()
                .user(name)
                .expect("the account's user")
                .uid
        });
        wait_for_exec(pane_pid(uid, socket, &session).await).await;
        samples.push(started.elapsed());
    }
    samples
}

/// With isolation on (as root): the first instance of an account (its Unix user, cgroup and
/// tmux server are made), then further ones; the account's tmux server's memory.
async fn isolated(creates: usize, plain: &Stats) {
    use pocketdev::isolation::accounts;
    if !rustix::process::geteuid().is_root() {
        println!("create instance with isolation: skipped (needs root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let mut config = config_in(&tmp.path().join("data"));
    let prefix = format!("pdb{}x-", std::process::id());
    config.isolation.run_dir = tmp.path().join("run");
    config.isolation.user_prefix = prefix.clone();
    config.isolation.cgroup = format!("{prefix}cg");
    let run_dir = config.isolation.run_dir.clone();
    let app = pocketdev::App::build(config).await.expect("app builds");
    let mode = app.state().isolation.report().mode;
    let running = common::Running::start(app).await;
    // The first admin is account 1.
    let socket = run_dir.join("tmux/1/tmux.sock");
    let account = format!("{prefix}1");
    let first = time_creates(&running, 1, Some(&account), &socket).await;
    let more = stats(time_creates(&running, creates, Some(&account), &socket).await);
    let uid = accounts::SystemIds::read()
        .unwrap()
        .user(&account)
        .map(|i| i.uid);
    let server: u32 = tmux_as(uid, &socket, &["display", "-p", "#{pid}"])
        .await
        .trim()
        .parse()
        .unwrap_or(0);
    println!(
        "create instance with isolation ({mode:?}: own user, tmux server, cgroup; {creates} runs)"
    );
    println!("  first of an account  {}", ms(first[0]));
    println!(
        "  pocketdev      median {}  p90 {}",
        ms(more.median),
        ms(more.p90)
    );
    println!(
        "  added by isolation   {:+.2} ms per instance (median against the run without it)",
        (more.median.as_secs_f64() - plain.median.as_secs_f64()) * 1000.0
    );
    println!(
        "  account's tmux server  {} kB resident",
        common::resident_kb(server)
    );
    running.stop().await;
    if let Some(uid) = uid {
        accounts::kill_all(uid, Duration::from_secs(5));
    }
    if let Ok(_lock) = accounts::AccountsLock::acquire() {
        let _ = accounts::remove_user(&account);
    }
    let groups = pocketdev::isolation::cgroups::Cgroups::detect(&format!("{prefix}cg"));
    groups.remove(&account);
    groups.remove_parents();
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (creates, lists) = if smoke { (5, 20) } else { (100, 500) };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut config = config_in(&data);
    // The shared server, as without root; the isolated run below shows what isolation adds.
    config.isolation.mode = pocketdev::config::IsolationMode::None;
    let app = pocketdev::App::build(config).await.expect("app builds");
    let running = common::Running::start(app).await;
    let (base, token, client) = (&running.base, &running.token, &running.client);
    let socket = data.canonicalize().unwrap().join("server/tmux.sock");

    // Warm-up: the first session also starts the tmux server.
    running.create_instance("sleeper").await;

    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for n in 0..creates {
        let started = Instant::now();
        let session = running.create_instance("sleeper").await;
        wait_for_exec(pane_pid(None, &socket, &session).await).await;
        ours.push(started.elapsed());

        let session = format!("baseline-{n}");
        let started = Instant::now();
        tmux(
            &socket,
            &[
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "120",
                "-y",
                "40",
                "--",
                "sleep",
                "infinity",
            ],
        )
        .await;
        wait_for_exec(pane_pid(None, &socket, &session).await).await;
        bare.push(started.elapsed());
    }
    let (ours, bare) = (stats(ours), stats(bare));
    println!("create instance until the agent runs ({creates} runs)");
    println!(
        "  pocketdev      median {}  p90 {}",
        ms(ours.median),
        ms(ours.p90)
    );
    println!(
        "  bare tmux      median {}  p90 {}",
        ms(bare.median),
        ms(bare.p90)
    );
    println!(
        "  ratio          {:.2}x  (target: pocketdev median under 100 ms: {})",
        ours.median.as_secs_f64() / bare.median.as_secs_f64(),
        common::verdict(ours.median.as_secs_f64() < 0.100)
    );
    isolated(creates, &ours).await;

    // Fill up to 100 instances, then time listing them.
    let existing: Vec<Value> = client
        .get(format!("{base}/api/instances"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for _ in existing.len()..100 {
        client
            .post(format!("{base}/api/instances"))
            .bearer_auth(token)
            .json(&json!({ "profile": "sleeper" }))
            .send()
            .await
            .unwrap();
    }
    let mut list = Vec::new();
    let mut me = Vec::new();
    for _ in 0..lists {
        let started = Instant::now();
        let body = client
            .get(format!("{base}/api/instances"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        list.push(started.elapsed());
        assert!(serde_json::from_slice::<Vec<Value>>(&body).unwrap().len() >= 100);
        let started = Instant::now();
        client
            .get(format!("{base}/api/auth/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        me.push(started.elapsed());
    }
    let (list, me) = (stats(list), stats(me));
    println!("list 100 instances ({lists} runs)");
    println!(
        "  GET /api/instances  median {}  p90 {}",
        ms(list.median),
        ms(list.p90)
    );
    println!(
        "  GET /api/auth/me    median {}  p90 {}",
        ms(me.median),
        ms(me.p90)
    );
    println!(
        "  ratio               {:.2}x  (target: list median under 5 ms: {})",
        list.median.as_secs_f64() / me.median.as_secs_f64(),
        common::verdict(list.median.as_secs_f64() < 0.005)
    );

    running.stop().await;
    let _ = Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .arg("kill-server")
        .status()
        .await;
}
