//! How fast a permission question reaches the push service: from the agent's dialog appearing
//! (its `PermissionRequest` hook reaching the server) to the encrypted push request arriving at
//! a mock push service on loopback, median and p99. Baselines in the same run: the hook's own
//! round trip, and when the API first shows `needs_permission` (polled every 2 ms): the
//! monitor's debounce, which every client waits for alike, is in both.
//!
//! Run: `cargo bench --bench push`. `-- --smoke` runs a few rounds only.

mod common;
// The API tests' mock push service; they use the parts this benchmark does not.
#[allow(dead_code)]
#[path = "../tests/api/mock_push.rs"]
mod mock_push;

use std::path::Path;
use std::time::{Duration, Instant};

use pocketdev::instances::profiles::Profile;
use serde_json::{Value, json};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let rounds = if smoke { 5 } else { 50 };
    let tmp = tempfile::tempdir().unwrap();
    let mut config = common::config(tmp.path());
    // The hooks alone say the status; no screen sample comes between.
    config.monitor.interval_secs = 3600;
    config.push.subject = Some("mailto:ops@example.org".into());
    config.push.allowed_hosts = vec!["127.0.0.1".into()];
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-agent.sh");
    config.profiles.insert(
        "fake".into(),
        Profile {
            name: "Fake agent".into(),
            command: agent.to_string_lossy().into_owned(),
            memory_mb: 10,
            ..Profile::default()
        },
    );
    let socket = tmp.path().join("data/server/tmux.sock");
    let app = pocketdev::App::build(config).await.expect("app builds");
    let running = common::Running::start(app).await;
    let (base, token, client) = (&running.base, &running.token, &running.client);
    let mock = mock_push::MockPush::start().await;

    let key: Value = client
        .get(format!("{base}/api/push/config"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let subscription = mock.subscribe(key["public_key"].as_str().unwrap());
    let subscribed = client
        .post(format!("{base}/api/push/subscriptions"))
        .bearer_auth(token)
        .json(&json!({ "subscription": subscription }))
        .send()
        .await
        .unwrap();
    assert!(subscribed.status().is_success());
    let session = running.create_instance("fake").await;
    let id = session.trim_start_matches("pd-").to_owned();
    let output = |id: String| async move {
        let out: Value = client
            .get(format!("{base}/api/instances/{id}/output"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out["output"].as_str().unwrap_or_default().to_owned()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !output(id.clone()).await.contains("agent>") {
        assert!(Instant::now() < deadline, "the agent never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .post(format!("{base}/api/instances/{id}/command"))
        .bearer_auth(token)
        .json(&json!({ "text": "hooktoken" }))
        .send()
        .await
        .unwrap();
    let hook_token = loop {
        let screen = output(id.clone()).await;
        if let Some(found) = screen
            .lines()
            .find_map(|l| l.strip_prefix("hook-token="))
            .filter(|t| !t.trim().is_empty())
        {
            break found.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "no hook token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let hook = |event: &'static str| {
        client
            .post(format!("{base}/api/instances/{id}/hooks"))
            .bearer_auth(&hook_token)
            .json(&json!({ "hook_event_name": event, "tool_name": "Bash" }))
            .send()
    };

    let mut push = Vec::with_capacity(rounds);
    let mut round_trip = Vec::with_capacity(rounds);
    let mut shown = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Answered: the status leaves the question (the first round has nothing to withdraw).
        hook("Stop").await.unwrap();
        if round > 0 {
            mock.next_of("clear").await;
        }
        let asked = Instant::now();
        let response = hook("PermissionRequest").await.unwrap();
        round_trip.push(asked.elapsed());
        assert!(response.status().is_success());
        let poll = async {
            loop {
                let instance: Value = client
                    .get(format!("{base}/api/instances/{id}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if instance["status"] == "needs_permission" {
                    return asked.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        let (status_seen, message) = tokio::join!(poll, mock.next_of("permission"));
        shown.push(status_seen);
        push.push(message.at - asked);
    }
    push.sort();
    round_trip.sort();
    shown.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("permission dialog to push request ({rounds} rounds)");
    println!(
        "  push arrives at the service   median {:.2} ms   p99 {:.2} ms",
        ms(percentile(&push, 0.5)),
        ms(percentile(&push, 0.99))
    );
    println!(
        "  baseline: the hook's round trip   median {:.2} ms   p99 {:.2} ms",
        ms(percentile(&round_trip, 0.5)),
        ms(percentile(&round_trip, 0.99))
    );
    println!(
        "  baseline: the API shows the status   median {:.2} ms   p99 {:.2} ms",
        ms(percentile(&shown, 0.5)),
        ms(percentile(&shown, 0.99))
    );
    let ratio = percentile(&push, 0.5).as_secs_f64() / percentile(&shown, 0.5).as_secs_f64();
    println!(
        "  ratio push / status shown (median): {ratio:.2}x   (target: push within 1 s at p99: {})",
        common::verdict(percentile(&push, 0.99) < Duration::from_secs(1))
    );
    running.stop().await;
    let _ = tokio::process::Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .arg("kill-server")
        .status()
        .await;
}
