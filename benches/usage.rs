//! What following agents' usage costs: 20 Claude-kind instances, each with a 20 MB transcript
//! that keeps growing by a reply a second, read by the usage follower at the monitor's interval.
//! Baseline in the same run: the same appends with nothing reading them. Also the catch-up of
//! the 20 × 20 MB already there, and the memory it took.
//!
//! Run: `cargo bench --bench usage`. `-- --smoke` uses small files and a short run.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use pocketdev::config::Config;
use pocketdev::instances::profiles::{Profile, ProfileKind};
use serde_json::Value;

/// One reply as Claude Code writes it: about 1.5 KB with its text.
fn reply(n: u64) -> String {
    format!(
        r#"{{"parentUuid":"p{n}","isSidechain":false,"type":"assistant","timestamp":"2026-12-07T10:00:00.000Z","message":{{"id":"msg_{n}","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{{"type":"text","text":"{}"}}],"usage":{{"input_tokens":1200,"output_tokens":300,"cache_creation_input_tokens":40,"cache_read_input_tokens":9000}}}}}}"#,
        "lorem ipsum dolor sit amet ".repeat(50)
    ) + "\n"
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (agents, megabytes, seconds) = if smoke { (4, 1, 5) } else { (20, 20, 60) };
    let tmp = tempfile::tempdir().unwrap();
    let mut config = common::config(tmp.path());
    config.limits.max_total = 100;
    config.limits.max_per_user = 100;
    // The benchmark drives the follower itself.
    config.monitor.interval_secs = 3600;
    config.profiles.insert(
        "writer".into(),
        Profile {
            name: "Writer".into(),
            kind: ProfileKind::Claude,
            command: "sleep".into(),
            args: vec!["infinity".into()],
            memory_mb: 1,
            ..Profile::default()
        },
    );
    let interval = Duration::from_secs(Config::default().monitor.interval_secs);
    let app = pocketdev::App::build(config).await.expect("app builds");
    let usage = app.state().usage.clone();
    let data = tmp.path().join("data").canonicalize().unwrap();
    let running = common::Running::start(app).await;
    let (base, token, client) = (&running.base, &running.token, &running.client);

    // Each instance's transcript, already `megabytes` long.
    let mut files = Vec::new();
    let mut next = 0u64;
    let line_len = reply(0).len();
    for _ in 0..agents {
        let created: Value = client
            .post(format!("{base}/api/instances"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "profile": "writer" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["agent_session_id"]
            .as_str()
            .expect("a conversation id");
        let folder = data.join(format!(
            "users/{}/home/.claude/projects/bench",
            created["owner"]
        ));
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join(format!("{session}.jsonl"));
        let mut text = String::with_capacity(megabytes << 20);
        while text.len() < megabytes << 20 {
            next += 1;
            text.push_str(&reply(next));
        }
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    let total_mb = (agents * megabytes) as f64;

    // Catch-up: everything already there, read at a pass's pace.
    let rss = common::resident_kb(std::process::id());
    let (cpu, wall) = (common::cpu_time(std::process::id()), Instant::now());
    let mut passes = 0;
    loop {
        usage.pass().await.unwrap();
        passes += 1;
        let counted: Value = client
            .get(format!("{base}/api/usage"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if counted["today"]["output_tokens"].as_i64() == Some(300 * next as i64) {
            break;
        }
        assert!(passes < 1000, "the follower never caught up: {counted}");
    }
    let catch_up_cpu = (common::cpu_time(std::process::id()) - cpu).as_secs_f64();
    let catch_up_wall = wall.elapsed().as_secs_f64();
    let grown_kb = common::resident_kb(std::process::id()).saturating_sub(rss);

    // Steady state: a reply a second to every transcript; with the follower, then without.
    let mut steady = |follow: bool| {
        let files = files.clone();
        let usage = usage.clone();
        let start_next = next;
        next += (seconds * agents) as u64;
        async move {
            let (cpu, mut n) = (common::cpu_time(std::process::id()), start_next);
            for second in 0..seconds {
                let tick = Instant::now();
                for path in &files {
                    n += 1;
                    append(path, &reply(n));
                }
                if follow && (second + 1) % interval.as_secs() as usize == 0 {
                    usage.pass().await.unwrap();
                }
                tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
            }
            (common::cpu_time(std::process::id()) - cpu).as_secs_f64()
        }
    };
    let without = steady(false).await;
    let with = steady(true).await;
    let share = 100.0 * (with - without).max(0.0) / seconds as f64;

    println!(
        "following usage: {agents} agents, {megabytes} MB transcripts of {line_len}-byte replies"
    );
    println!(
        "  catch-up of {total_mb:.0} MB     {catch_up_cpu:.2} s CPU, {catch_up_wall:.1} s in {passes} passes ({:.0} MB per CPU second), memory +{:.1} MB",
        total_mb / catch_up_cpu.max(0.001),
        grown_kb as f64 / 1024.0
    );
    println!(
        "  {seconds} s, a reply a second each, read every {} s: {with:.2} s CPU; the same appends unread: {without:.2} s CPU",
        interval.as_secs()
    );
    println!(
        "  following costs {share:.3} % of one core   (target: under 1 %: {})",
        common::verdict(share < 1.0)
    );
    running.stop().await;
    let _ = tokio::process::Command::new("tmux")
        .arg("-S")
        .arg(data.join("server/tmux.sock"))
        .arg("kill-server")
        .status()
        .await;
}
