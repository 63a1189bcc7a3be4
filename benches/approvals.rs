//! Approval benchmark: from a tap on Allow (`POST /api/instances/{id}/approvals/{approval_id}`)
//! until the dialog is gone, with the fake agent drawing Claude Code's dialog; the baseline, in
//! the same run, is sending the same digit with `POST /api/instances/{id}/command` and reading
//! the screen until the dialog is gone. What approving adds: reading the screen first to check
//! the question, and watching it go.
//!
//! Run: `cargo bench --bench approvals`. `-- --smoke` runs a few iterations only.

mod common;

use std::time::{Duration, Instant};

use pocketdev::instances::approvals::{ApprovalRules, Rules, parse};
use pocketdev::instances::profiles::Profile;
use serde_json::{Value, json};

fn at(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Agent<'a> {
    running: &'a common::Running,
    id: String,
    rules: Rules,
}

impl Agent<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/api/instances/{}{path}", self.running.base, self.id)
    }

    async fn screen(&self) -> String {
        let body: Value = self
            .running
            .client
            .get(self.url("/output?lines=0"))
            .bearer_auth(&self.running.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["output"].as_str().unwrap_or_default().to_owned()
    }

    async fn command(&self, body: Value) {
        let response = self
            .running
            .client
            .post(self.url("/command"))
            .bearer_auth(&self.running.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// Has the agent draw its dialog; returns the dialog's id once it shows.
    async fn ask(&self) -> String {
        self.command(json!({ "text": "dialog" })).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(approval) = parse(&self.rules, &self.screen().await) {
                return approval.id;
            }
            assert!(Instant::now() < deadline, "the dialog never showed");
        }
    }
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let runs = if smoke { 5 } else { 50 };
    let tmp = tempfile::tempdir().unwrap();
    let mut config = common::config(tmp.path());
    config.rate_limits.api_per_minute = 1_000_000;
    // The fake agent takes keys at once: no pause is needed before them.
    let rules = ApprovalRules {
        pause_ms: 0,
        ..ApprovalRules::default()
    };
    let fake = Profile {
        name: "Fake agent".into(),
        command: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake-agent.sh").into(),
        memory_mb: 10,
        approval: Some(rules.clone()),
        ..Profile::default()
    };
    config.profiles.insert("fake".into(), fake);
    let socket = tmp.path().join("data/server/tmux.sock");
    let app = pocketdev::App::build(config).await.expect("app builds");
    let running = common::Running::start(app).await;
    let session = running.create_instance("fake").await;
    let agent = Agent {
        running: &running,
        id: session.trim_start_matches("pd-").to_owned(),
        rules: Rules::compile(&rules).unwrap(),
    };

    // Warm-up, then alternate: an approval, then the plain command.
    let first = agent.ask().await;
    let answer = |approval: String| {
        let agent = &agent;
        async move {
            let response: Value = agent
                .running
                .client
                .post(agent.url(&format!("/approvals/{approval}")))
                .bearer_auth(&agent.running.token)
                .json(&json!({ "choice": "1" }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(response["outcome"], "done", "{response}");
        }
    };
    answer(first).await;
    let (mut approvals, mut commands) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let approval = agent.ask().await;
        let started = Instant::now();
        answer(approval).await;
        approvals.push(started.elapsed());

        agent.ask().await;
        let started = Instant::now();
        agent.command(json!({ "text": "1", "enter": false })).await;
        while parse(&agent.rules, &agent.screen().await).is_some() {}
        commands.push(started.elapsed());
    }
    println!("answer a permission dialog until it is gone ({runs} runs)");
    println!(
        "  POST approvals/{{id}}    median {}  p99 {}",
        ms(at(&mut approvals, 0.5)),
        ms(at(&mut approvals, 0.99))
    );
    println!(
        "  POST command + reads   median {}  p99 {}",
        ms(at(&mut commands, 0.5)),
        ms(at(&mut commands, 0.99))
    );
    let ratio = at(&mut approvals, 0.5).as_secs_f64() / at(&mut commands, 0.5).as_secs_f64();
    println!(
        "  ratio                  {ratio:.2}x  (target: approval median under 150 ms: {})",
        common::verdict(at(&mut approvals, 0.5).as_secs_f64() < 0.150)
    );
    running.stop().await;
    let _ = tokio::process::Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .arg("kill-server")
        .status()
        .await;
}
