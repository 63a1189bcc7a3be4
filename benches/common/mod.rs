//! What the benchmarks share: running the real `App` in process and signing in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Signs in as the first admin; returns the access token.
pub async fn sign_in(client: &reqwest::Client, base: &str, password: &str) -> String {
    let login: Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "username": "admin", "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"].as_str().unwrap().to_owned()
}

/// The app serving in this process, signed in as its first admin.
#[allow(dead_code)] // not every benchmark runs the server in process
pub struct Running {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

#[allow(dead_code)]
impl Running {
    pub async fn start(app: pocketdev::App) -> Running {
        let base = format!("http://{}", app.local_addr());
        let password = app.initial_admin_password.clone().unwrap();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let server = tokio::spawn(app.run(async move { stop.cancelled().await }));
        let client = reqwest::Client::new();
        let token = sign_in(&client, &base, &password).await;
        Running {
            base,
            token,
            client,
            shutdown,
            server,
        }
    }

    /// Creates an instance of `profile`; returns its tmux session's name.
    pub async fn create_instance(&self, profile: &str) -> String {
        let created: Value = self
            .client
            .post(format!("{}/api/instances", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "profile": profile }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        format!("pd-{}", created["id"].as_str().expect("created"))
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
    }
}

/// The resident memory of process `pid`, in kB (0 once it is gone).
#[allow(dead_code)]
pub fn resident_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Said beside every figure that has a target, so a reader knows what the number means.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "within target"
    } else {
        "MISSES target"
    }
}

/// A benchmark's in-process server: its data dir in `dir`, any free port, no isolation (the
/// instances benchmark measures that), no memory held back, the launcher just built.
#[allow(dead_code)]
pub fn config(dir: &Path) -> pocketdev::Config {
    let mut config = pocketdev::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.join("data"),
        ..pocketdev::Config::default()
    };
    config.isolation.mode = pocketdev::config::IsolationMode::None;
    config.limits.memory_reserve_mb = 0;
    config.tmux.launcher = Some(PathBuf::from(env!("CARGO_BIN_EXE_pocketdev")));
    config
}

/// CPU time (user and system) process `pid` has used; nothing once it is gone.
#[allow(dead_code)]
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which sits in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}
