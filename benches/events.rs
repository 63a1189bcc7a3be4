//! What open live event streams cost the server: resident memory and CPU of the real
//! `pocketdev serve` with 100 streams open (10 users, 10 tabs each) against the same server
//! idle without any, measured over the same window in the same run.
//!
//! Run: `cargo bench --bench events`. `-- --smoke` uses a short window.

mod common;

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

const USERS: usize = 10;
const TABS: usize = 10;

/// CPU time process `pid` has used (user + system).
/// The server's resident memory at the end of `window` and the CPU it used during it.
async fn measure(pid: u32, window: Duration) -> (u64, Duration) {
    let before = common::cpu_time(pid);
    tokio::time::sleep(window).await;
    (common::resident_kb(pid), common::cpu_time(pid) - before)
}

async fn token(client: &reqwest::Client, base: &str, username: &str, password: &str) -> String {
    let login: Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"]
        .as_str()
        .expect("signed in")
        .to_owned()
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let window = Duration::from_secs(if smoke { 2 } else { 20 });
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = tmp.path().join("pocketdev.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
             [rate_limits]\nlogin_per_minute = 1000\napi_per_minute = 100000\n\
             [isolation]\nmode = \"none\"\n",
            tmp.path().join("data").display()
        ),
    )
    .unwrap();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_pocketdev"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("pocketdev starts");
    let pid = server.id().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // The server writes the admin's password, then listens.
    let mut tries = 0;
    while client
        .get(format!("{base}/api/health"))
        .send()
        .await
        .is_err()
    {
        tries += 1;
        assert!(tries < 400, "pocketdev never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let password_file =
        std::fs::read_to_string(tmp.path().join("data/server/initial-admin-password")).unwrap();
    let password = password_file
        .split("password:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the initial admin password");
    let admin = token(&client, &base, "admin", password).await;
    let mut tokens = Vec::new();
    for n in 0..USERS {
        let username = format!("bench{n}");
        let created = client
            .post(format!("{base}/api/admin/users"))
            .bearer_auth(&admin)
            .json(&json!({ "username": username, "password": "bench-password-1" }))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "creating {username}");
        tokens.push(token(&client, &base, &username, "bench-password-1").await);
    }

    let (idle_kb, idle_cpu) = measure(pid, window).await;

    // Each stream on a connection of its own, as tabs have; read until its snapshot.
    let mut streams = Vec::new();
    for token in &tokens {
        for _ in 0..TABS {
            let response = reqwest::Client::new()
                .get(format!("{base}/api/events"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "a stream opens");
            let mut body = response.bytes_stream();
            let first = body.next().await.expect("a first chunk").unwrap();
            assert!(
                String::from_utf8_lossy(&first).contains("event: snapshot"),
                "the snapshot comes first"
            );
            streams.push(body);
        }
    }
    let open = streams.len();
    let (streams_kb, streams_cpu) = measure(pid, window).await;
    drop(streams);

    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let per_stream_kb = streams_kb.saturating_sub(idle_kb) as f64 / open as f64;
    println!(
        "{open} open event streams, over {} s windows",
        window.as_secs()
    );
    println!("  idle server (baseline)   {idle_kb} kB resident, {idle_cpu:?} CPU");
    println!("  with {open} streams        {streams_kb} kB resident, {streams_cpu:?} CPU");
    println!(
        "  memory ratio             {:.2}x  ({per_stream_kb:.1} kB a stream; target under 64 kB: {})",
        ratio(streams_kb as f64, idle_kb as f64),
        common::verdict(per_stream_kb < 64.0)
    );
    let extra = streams_cpu.saturating_sub(idle_cpu).as_secs_f64() / window.as_secs_f64();
    println!(
        "  CPU ratio                {}  (the streams' own: {:.2} % of a core; target under 1 %: {})",
        if idle_cpu.is_zero() {
            "n/a (the idle server used no measurable CPU)".to_owned()
        } else {
            format!(
                "{:.2}x",
                ratio(streams_cpu.as_secs_f64(), idle_cpu.as_secs_f64())
            )
        },
        100.0 * extra,
        common::verdict(extra < 0.01)
    );

    let _ = server.start_kill();
    let _ = server.wait().await;
}
