//! The monitor's cost: one sample of the host and 10 running instances (their whole process
//! trees and tmux's activity times), as CPU time, and what that costs at the configured
//! interval. Baseline in the same run: reading `/proc/<pid>/stat` of just the 10 agents.
//!
//! Run: `cargo bench --bench monitor`. `-- --smoke` runs a few samples only.

mod common;

use std::time::Duration;

use pocketdev::config::Config;
use pocketdev::instances::profiles::Profile;
use serde_json::json;

/// CPU time of this process's children that have been waited for (the tmux clients it ran).
fn children_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[13].parse::<u64>().unwrap() + fields[14].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / 100.0)
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let samples = if smoke { 20 } else { 500 };
    let tmp = tempfile::tempdir().unwrap();
    let mut config = common::config(tmp.path());
    config.limits.max_total = 100;
    config.limits.max_per_user = 100;
    // One shared tmux server to sample; the instances benchmark measures isolation's cost.
    // The benchmark drives the sampler itself.
    config.monitor.interval_secs = 3600;
    config.profiles.insert(
        "sleeper".into(),
        Profile {
            name: "Sleeper".into(),
            command: "sleep".into(),
            args: vec!["infinity".into()],
            memory_mb: 1,
            ..Profile::default()
        },
    );
    let interval = Duration::from_secs(Config::default().monitor.interval_secs);
    let app = pocketdev::App::build(config).await.expect("app builds");
    let monitor = app.state().monitor.clone();
    let socket = tmp
        .path()
        .join("data")
        .canonicalize()
        .unwrap()
        .join("server/tmux.sock");
    let running = common::Running::start(app).await;
    let (base, token, client) = (&running.base, &running.token, &running.client);
    for _ in 0..10 {
        client
            .post(format!("{base}/api/instances"))
            .bearer_auth(token)
            .json(&json!({ "profile": "sleeper" }))
            .send()
            .await
            .unwrap();
    }
    monitor.sample().await.unwrap();
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .take(10)
        .collect();

    let (cpu, children) = (common::cpu_time(std::process::id()), children_cpu_time());
    for _ in 0..samples {
        monitor.sample().await.unwrap();
    }
    let per_sample = (common::cpu_time(std::process::id()) - cpu
        + (children_cpu_time() - children))
        .as_secs_f64()
        / samples as f64;

    let cpu = common::cpu_time(std::process::id());
    let rounds = samples * 10;
    for _ in 0..rounds {
        for pid in &pids {
            let _ = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        }
    }
    let baseline = (common::cpu_time(std::process::id()) - cpu).as_secs_f64() / rounds as f64;

    println!("one sample of the host and 10 instances ({samples} samples)");
    println!(
        "  pocketdev sampler    {:.2} ms CPU per sample (tmux's list-panes included)",
        per_sample * 1000.0
    );
    println!(
        "  baseline             {:.3} ms CPU to read /proc/<pid>/stat of the 10 agents",
        baseline * 1000.0
    );
    let share = 100.0 * per_sample / interval.as_secs_f64();
    println!(
        "  at one sample every {} s: {:.3} % of one core   (target: under 1 %: {})",
        interval.as_secs(),
        share,
        common::verdict(share < 1.0)
    );
    running.stop().await;
    let _ = tokio::process::Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .arg("kill-server")
        .status()
        .await;
}
