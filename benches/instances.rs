//! Instance benchmarks, each beside a baseline measured in the same run:
//! - create: `POST /api/instances` until the agent's process runs, against starting the same
//!   command with a bare `tmux new-session`;
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

async fn tmux(socket: &Path, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(args)
        .output()
        .await
        .expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn pane_pid(socket: &Path, session: &str) -> u32 {
    tmux(
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

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (creates, lists) = if smoke { (5, 20) } else { (100, 500) };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data.clone(),
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
    let app = pocketdev::App::build(config).await.expect("app builds");
    let running = common::Running::start(app).await;
    let (base, token, client) = (&running.base, &running.token, &running.client);
    let socket = data.canonicalize().unwrap().join("server/tmux.sock");

    // Warm-up: the first session also starts the tmux server.
    client
        .post(format!("{base}/api/instances"))
        .bearer_auth(token)
        .json(&json!({ "profile": "sleeper" }))
        .send()
        .await
        .unwrap();

    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for n in 0..creates {
        let started = Instant::now();
        let created: Value = client
            .post(format!("{base}/api/instances"))
            .bearer_auth(token)
            .json(&json!({ "profile": "sleeper" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = format!("pd-{}", created["id"].as_str().expect("created"));
        wait_for_exec(pane_pid(&socket, &session).await).await;
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
        wait_for_exec(pane_pid(&socket, &session).await).await;
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
        "  ratio          {:.2}x  (target: pocketdev median under 100 ms)",
        ours.median.as_secs_f64() / bare.median.as_secs_f64()
    );

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
        "  ratio               {:.2}x  (target: list median under 5 ms)",
        list.median.as_secs_f64() / me.median.as_secs_f64()
    );

    running.stop().await;
    let _ = Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .arg("kill-server")
        .status()
        .await;
}
