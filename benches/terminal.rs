//! Terminal bridge benchmark, beside its baseline in the same run, against a real `pocketdev
//! serve` process and real tmux:
//! - throughput of two large outputs (long lines of `yes`, and `seq`), through a tmux client in
//!   a local PTY (baseline) and through pocketdev's WebSocket bridge to a client that offers
//!   permessage-deflate as browsers do, with the bytes that crossed the socket;
//! - the snapshot a viewer gets on connect with 2,000 lines of history, raw and on the wire;
//! - keystroke echo latency, the same two ways;
//! - the server's memory idle and per idle viewer (tmux's processes counted separately);
//! - many instances printing 10 lines a second, each watched by a tmux client in a PTY
//!   (baseline, as ttyd runs one per viewer) and then by a pocketdev viewer, with echo latency
//!   measured meanwhile each way; and many viewers on a handful of instances. Errors are counted.
//!
//! Run: `cargo bench --bench terminal`. `-- --smoke` runs small sizes only (the test command
//! does that so the benchmark cannot rot); `-- soak echo` runs the sections named
//! (throughput, snapshot, echo, memory, soak, shared).

mod common;
#[path = "../tests/api/counting_stream.rs"]
mod counting_stream;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Compressed = yawc::WebSocket<counting_stream::CountingStream>;

const COLS: u16 = 120;
const ROWS: u16 = 40;

struct Sizes {
    seq_lines: u64,
    yes_bytes: u64,
    rounds: usize,
    keystrokes: usize,
    idle_viewers: usize,
    streaming_instances: usize,
    shared_instances: usize,
    viewers_per_shared: usize,
    soak: Duration,
}

struct Server {
    child: Child,
    pid: u32,
    base: String,
    ws_base: String,
    token: String,
    socket: PathBuf,
    client: reqwest::Client,
    _data: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = data.path().join("pocketdev.toml");
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
log = "warn"
[rate_limits]
login_per_minute = 1000
api_per_minute = 10000000
[limits]
max_per_user = 10000
max_total = 10000
memory_reserve_mb = 0
[terminal]
max_viewers_per_instance = 10000
# The terminal path itself; the instances benchmark measures isolation's cost.
[isolation]
mode = "none"
[profiles.bash]
name = "bash"
command = "bash"
args = ["--norc", "--noprofile"]
env = {{ PS1 = "$ " }}
memory_mb = 1
[profiles.ticker]
name = "ticker"
command = "bash"
args = ["--norc", "--noprofile", "-c", "i=0; while :; do echo tick $i; i=$((i+1)); read -rt 0.1; done"]
memory_mb = 1
"#,
                data = data.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pocketdev"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("pocketdev starts");
        let pid = child.id().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client
            .get(format!("{base}/api/health"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the server never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let server_dir = data.path().join("data/server");
        let saved = std::fs::read_to_string(server_dir.join("initial-admin-password")).unwrap();
        let password = saved
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .expect("the first admin's password")
            .to_owned();
        let token = common::sign_in(&client, &base, &password).await;
        Server {
            child,
            pid,
            ws_base: base.replacen("http", "ws", 1),
            base,
            token,
            socket: server_dir.canonicalize().unwrap().join("tmux.sock"),
            client,
            _data: data,
        }
    }

    async fn create(&self, profile: &str) -> String {
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
        created["id"]
            .as_str()
            .unwrap_or_else(|| panic!("instance created: {created}"))
            .to_owned()
    }

    async fn connect(&self, id: &str) -> Socket {
        let url = format!(
            "{}/ws/instance/{id}?token={}&cols={COLS}&rows={ROWS}",
            self.ws_base, self.token
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("socket opens");
        // hello, snapshot header, snapshot bytes
        let mut seen_snapshot = false;
        while let Some(Ok(message)) = ws.next().await {
            match message {
                Message::Text(text) if text.contains("\"snapshot\"") => seen_snapshot = true,
                Message::Binary(_) if seen_snapshot => break,
                _ => {}
            }
        }
        ws
    }

    /// Connects as a browser does, offering permessage-deflate, through a stream that counts
    /// the bytes received; returns the socket (after its first snapshot) and the count.
    async fn connect_compressed(
        &self,
        id: &str,
        cols: u16,
        rows: u16,
    ) -> (Compressed, Arc<AtomicUsize>, Vec<u8>) {
        let url = format!(
            "{}/ws/instance/{id}?token={}&cols={cols}&rows={rows}",
            self.ws_base, self.token
        );
        let address = self.base.trim_start_matches("http://").to_owned();
        let stream =
            counting_stream::CountingStream::new(TcpStream::connect(address).await.unwrap());
        let received = stream.received.clone();
        let options = yawc::Options::default().with_low_latency_compression();
        let mut ws = yawc::WebSocket::handshake(url.parse().unwrap(), stream, options)
            .await
            .expect("socket opens");
        let mut seen_snapshot = false;
        let snapshot = loop {
            let frame = ws.next().await.expect("the socket stays open");
            match frame.opcode() {
                yawc::OpCode::Text if frame.as_str().contains("\"snapshot\"") => {
                    seen_snapshot = true
                }
                yawc::OpCode::Binary if seen_snapshot => break frame.into_payload().to_vec(),
                _ => {}
            }
        };
        (ws, received, snapshot)
    }

    fn rss_kb(&self) -> u64 {
        common::resident_kb(self.pid)
    }
}

/// The resident memory of the server's tmux control clients (its `tmux` children), in kB.
fn tmux_children_kb(parent: u32) -> (usize, u64) {
    let mut count = 0;
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
        };
        if field("Name:").is_some_and(|n| n.starts_with("tmux"))
            && field("PPid:") == Some(parent.to_string())
        {
            count += 1;
            total += common::resident_kb(pid);
        }
    }
    (count, total)
}

/// A tmux client attached to `session` inside a fresh PTY: what a desktop terminal does.
struct Pty {
    writer: std::fs::File,
    output: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Killed when the PTY is dropped.
    _client: Child,
}

impl Pty {
    async fn attach(socket: &Path, session: &str) -> Pty {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("a pty");
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        rustix::termios::tcsetwinsize(
            &master,
            rustix::termios::Winsize {
                ws_row: ROWS,
                ws_col: COLS,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        let child = Command::new("tmux")
            .arg("-S")
            .arg(socket)
            .args(["attach-session", "-t", &format!("={session}")])
            .env("TERM", "xterm-256color")
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave)
            .kill_on_drop(true)
            .spawn()
            .expect("tmux attaches");
        let master = std::fs::File::from(master);
        let writer = master.try_clone().unwrap();
        let (tx, output) = mpsc::unbounded_channel();
        tokio::task::spawn_blocking(move || {
            let mut master = master;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut pty = Pty {
            writer,
            output,
            _client: child,
        };
        // Let the client draw its first screen.
        pty.drain_for(Duration::from_millis(500)).await;
        pty
    }

    async fn drain_for(&mut self, time: Duration) {
        let _ =
            tokio::time::timeout(time, async { while self.output.recv().await.is_some() {} }).await;
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Waits until `needle` has arrived; returns the bytes read.
    async fn wait_for(&mut self, needle: &[u8]) -> usize {
        let mut window = Vec::new();
        let mut total = 0;
        loop {
            let chunk = self.output.recv().await.expect("pty open");
            total += chunk.len();
            window.extend_from_slice(&chunk);
            if window.windows(needle.len()).any(|w| w == needle) {
                return total;
            }
            let keep = window.len().saturating_sub(needle.len());
            window.drain(..keep);
        }
    }
}

async fn ws_wait_for(ws: &mut Socket, needle: &[u8]) -> usize {
    let mut window = Vec::new();
    let mut total = 0;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(chunk))) => {
                total += chunk.len();
                window.extend_from_slice(&chunk);
                if window.windows(needle.len()).any(|w| w == needle) {
                    return total;
                }
                let keep = window.len().saturating_sub(needle.len());
                window.drain(..keep);
            }
            Some(Ok(_)) => {}
            other => panic!("the socket ended: {other:?}"),
        }
    }
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Bytes `seq 1 n` prints on a terminal (each line ends in CR LF).
fn seq_bytes(n: u64) -> u64 {
    (1..=n).map(|i| i.to_string().len() as u64 + 2).sum()
}

async fn compressed_wait_for(ws: &mut Compressed, needle: &[u8]) {
    let mut window = Vec::new();
    loop {
        let frame = ws.next().await.expect("the socket stays open");
        if frame.opcode() == yawc::OpCode::Binary {
            window.extend_from_slice(frame.payload());
            if window.windows(needle.len()).any(|w| w == needle) {
                return;
            }
            let keep = window.len().saturating_sub(needle.len());
            window.drain(..keep);
        }
    }
}

/// One workload printed through a tmux client in a PTY, then through pocketdev to a client
/// that offers permessage-deflate.
async fn throughput(server: &Server, what: &str, printed: u64, program: &str, rounds: usize) {
    let id = server.create("bash").await;
    let session = format!("pd-{id}");
    let command = format!("clear; {program}; echo TH$((6*7))RU\r");
    // Interleaved rounds, the median of each kept: the machine's other load comes and goes.
    let (mut ceiling, mut baseline, mut bridge) = (Vec::new(), Vec::new(), Vec::new());
    let mut on_wire = 0.0;
    for _ in 0..rounds {
        // tmux's own speed, with no client at all.
        ceiling.push(detached_run(&server.socket, &session, &command).await);

        let mut pty = Pty::attach(&server.socket, &session).await;
        let started = Instant::now();
        pty.send(command.as_bytes());
        pty.wait_for(b"TH42RU").await;
        baseline.push(started.elapsed());
        drop(pty);
        tokio::time::sleep(Duration::from_millis(300)).await;

        let (mut ws, received, _) = server.connect_compressed(&id, COLS, ROWS).await;
        let before = received.load(Ordering::Relaxed);
        let started = Instant::now();
        ws.send(yawc::Frame::binary(command.clone().into_bytes()))
            .await
            .unwrap();
        compressed_wait_for(&mut ws, b"TH42RU").await;
        bridge.push(started.elapsed());
        on_wire = (received.load(Ordering::Relaxed) - before) as f64;
        drop(ws);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (ceiling, baseline, bridge) = (
        percentile(&mut ceiling, 0.5),
        percentile(&mut baseline, 0.5),
        percentile(&mut bridge, 0.5),
    );
    let printed = printed as f64;
    let mb = |d: Duration| printed / d.as_secs_f64() / 1e6;
    println!(
        "throughput: {what} ({:.1} MB printed; median of {rounds} interleaved rounds)",
        printed / 1e6
    );
    println!(
        "  tmux alone, no client  {:>8.1} MB/s   ({:.2} x tmux in a PTY; its screen looked at every 50 ms)",
        mb(ceiling),
        baseline.as_secs_f64() / ceiling.as_secs_f64()
    );
    println!("  tmux client in a PTY   {:>8.1} MB/s", mb(baseline));
    println!(
        "  pocketdev WebSocket    {:>8.1} MB/s   ({:.2} x tmux alone; {:.2} MB on the socket, {:.2} MB per 100 MB printed)",
        mb(bridge),
        ceiling.as_secs_f64() / bridge.as_secs_f64(),
        on_wire / 1e6,
        on_wire / printed * 100.0
    );
    let ratio = baseline.as_secs_f64() / bridge.as_secs_f64();
    println!(
        "  ratio                  {ratio:>8.2} x  (target: at least 1.30 x, i.e. 1.15 x ttyd -> tmux: {})",
        common::verdict(ratio >= 1.3)
    );
}

/// Runs `command` in the session with no client attached, looking at the screen every 50 ms
/// until its marker shows; how long that took.
async fn detached_run(socket: &Path, session: &str, command: &str) -> Duration {
    let tmux = |args: &[&str]| {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(socket).args(args);
        command
    };
    let target = format!("={session}:");
    let line = command.trim_end_matches('\r');
    let started = Instant::now();
    tmux(&["send-keys", "-t", &target, "-l", line])
        .status()
        .await
        .unwrap();
    tmux(&["send-keys", "-t", &target, "Enter"])
        .status()
        .await
        .unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let screen = tmux(&["capture-pane", "-p", "-t", &target])
            .output()
            .await
            .unwrap();
        if String::from_utf8_lossy(&screen.stdout).contains("TH42RU") {
            return started.elapsed();
        }
    }
}

/// What a viewer gets on connect when the pane has 2,000 lines of history behind its screen.
async fn snapshot_size(server: &Server) {
    let id = server.create("bash").await;
    let mut ws = server.connect(&id).await;
    // Lines like an agent's transcript: words repeat, whole lines do not.
    let transcript = r#"clear; for i in $(seq 1 2100); do echo "step $i: read src/module_$((i % 37)).rs, edited fn_$((i * 7 % 101)) ($((i * 13 % 997)) lines)"; done; echo SN$((6*7))AP"#;
    ws.send(Message::Binary(
        format!("{transcript}\r").into_bytes().into(),
    ))
    .await
    .unwrap();
    ws_wait_for(&mut ws, b"SN42AP").await;
    drop(ws);
    println!("snapshot on connect, 2,000 lines of history");
    for (cols, rows) in [(80, 24), (45, 30)] {
        let (_ws, received, snapshot) = server.connect_compressed(&id, cols, rows).await;
        let on_wire = received.load(Ordering::Relaxed);
        println!(
            "  {cols}x{rows}: {:>6.1} KB, {:>5.1} KB on the socket with the handshake   (target: at most 30 KB: {})",
            snapshot.len() as f64 / 1024.0,
            on_wire as f64 / 1024.0,
            common::verdict(on_wire <= 30 * 1024)
        );
    }
}

/// Keys typed in the echo test: letters that the escape sequences of a redraw never contain.
const KEYS: &[u8] = b"abcdefgijknopsuvwxyz";

/// A bash turned into a plain echoing terminal: every byte typed comes straight back.
async fn echo_instance(server: &Server) -> String {
    let id = server.create("bash").await;
    let mut ws = server.connect(&id).await;
    ws.send(Message::Binary(
        b"stty -icanon; echo EC$((1+1))HO; exec cat >/dev/null\r"
            .to_vec()
            .into(),
    ))
    .await
    .unwrap();
    ws_wait_for(&mut ws, b"EC2HO").await;
    id
}

async fn ws_echo(ws: &mut Socket, keystrokes: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(keystrokes);
    for i in 0..keystrokes {
        let key = KEYS[i % KEYS.len()];
        let started = Instant::now();
        ws.send(Message::Binary(vec![key].into())).await.unwrap();
        ws_wait_for(ws, &[key]).await;
        samples.push(started.elapsed());
    }
    samples
}

async fn echo_latency(server: &Server, sizes: &Sizes) -> String {
    let id = echo_instance(server).await;
    let mut pty = Pty::attach(&server.socket, &format!("pd-{id}")).await;
    let mut baseline = Vec::new();
    for i in 0..sizes.keystrokes {
        let key = KEYS[i % KEYS.len()];
        let started = Instant::now();
        pty.send(&[key]);
        pty.wait_for(&[key]).await;
        baseline.push(started.elapsed());
    }
    drop(pty);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ws = server.connect(&id).await;
    let mut bridge = ws_echo(&mut ws, sizes.keystrokes).await;
    let (b50, b99) = (
        percentile(&mut baseline, 0.5),
        percentile(&mut baseline, 0.99),
    );
    let (w50, w99) = (percentile(&mut bridge, 0.5), percentile(&mut bridge, 0.99));
    println!("keystroke echo ({} keystrokes)", sizes.keystrokes);
    println!("  tmux client in a PTY   p50 {}  p99 {}", ms(b50), ms(b99));
    println!("  pocketdev WebSocket    p50 {}  p99 {}", ms(w50), ms(w99));
    println!(
        "  p50 difference         {}   (target: at most 0.2 ms more: {})",
        ms(w50.saturating_sub(b50)),
        common::verdict(w50.saturating_sub(b50) <= Duration::from_micros(200))
    );
    println!(
        "  p99 difference         {}   (target: at most 0.3 ms more: {})",
        ms(w99.saturating_sub(b99)),
        common::verdict(w99.saturating_sub(b99) <= Duration::from_micros(300))
    );
    id
}

async fn memory(server: &Server, sizes: &Sizes, idle_kb: u64) {
    let id = server.create("bash").await;
    // One viewer first: the hub and its tmux client exist before counting per-viewer cost.
    let first = server.connect(&id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kb();
    let mut viewers = Vec::new();
    for _ in 0..sizes.idle_viewers {
        viewers.push(server.connect(&id).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kb();
    let per_viewer = after.saturating_sub(before) as f64 / sizes.idle_viewers as f64;
    let (clients, clients_kb) = tmux_children_kb(server.pid);
    println!("memory");
    println!(
        "  server idle (signed in, no instances)   {:.1} MB   (target: under 20 MB: {})",
        idle_kb as f64 / 1024.0,
        common::verdict(idle_kb < 20 * 1024)
    );
    println!(
        "  per idle viewer ({} viewers)            {per_viewer:.0} KB   (target: under 200 KB: {})",
        sizes.idle_viewers,
        common::verdict(per_viewer < 200.0)
    );
    println!(
        "  tmux control clients (one per tmux server): {clients} using {:.1} MB in all",
        clients_kb as f64 / 1024.0
    );
    drop(viewers);
    drop(first);
}

/// Reads a viewer's stream until `stop`, counting bytes; an ended socket counts as an error.
fn watch(
    mut ws: Socket,
    bytes: Arc<AtomicU64>,
    errors: Arc<AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut mine = 0u64;
        loop {
            tokio::select! {
                () = stop.cancelled() => return mine,
                frame = ws.next() => match frame {
                    Some(Ok(Message::Binary(chunk))) => {
                        mine += chunk.len() as u64;
                        bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                    Some(Ok(Message::Text(text))) if text.contains("\"error\"") => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return mine;
                    }
                },
            }
        }
    })
}

/// CPU time (user and system) a process has used so far.
/// The pid of the tmux server behind `socket`.
async fn tmux_server_pid(socket: &Path) -> u32 {
    let out = Command::new("tmux")
        .arg("-S")
        .arg(socket)
        .args(["display-message", "-p", "#{pid}"])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

async fn pty_echo(pty: &mut Pty, keystrokes: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(keystrokes);
    for i in 0..keystrokes {
        let key = KEYS[i % KEYS.len()];
        let started = Instant::now();
        pty.send(&[key]);
        pty.wait_for(&[key]).await;
        samples.push(started.elapsed());
    }
    samples
}

async fn soak(server: &Server, sizes: &Sizes, echo_id: &str) {
    let mut tickers = Vec::new();
    for _ in 0..sizes.streaming_instances {
        tickers.push(server.create("ticker").await);
    }
    let echo_session = format!("pd-{echo_id}");

    // Baseline: a tmux client in a PTY on each instance, drained as it prints.
    let mut drains = Vec::new();
    for id in &tickers {
        let mut pty = Pty::attach(&server.socket, &format!("pd-{id}")).await;
        drains.push(tokio::spawn(async move {
            while pty.output.recv().await.is_some() {}
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tmux_pid = tmux_server_pid(&server.socket).await;
    let cpu = || {
        (
            common::cpu_time(server.pid),
            common::cpu_time(tmux_pid),
            Instant::now(),
        )
    };
    let mut pty = Pty::attach(&server.socket, &echo_session).await;
    let start = cpu();
    let mut baseline = pty_echo(&mut pty, sizes.keystrokes).await;
    let baseline_cpu = (cpu(), start);
    drop(pty);
    for drain in drains {
        drain.abort();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut watchers = Vec::new();
    for id in &tickers {
        let ws = server.connect(id).await;
        watchers.push(watch(ws, bytes.clone(), errors.clone(), stop.clone()));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut ws = server.connect(echo_id).await;
    let start = cpu();
    let mut echo = ws_echo(&mut ws, sizes.keystrokes).await;
    let bridge_cpu = (cpu(), start);
    tokio::time::sleep(sizes.soak).await;
    stop.cancel();
    let mut silent = 0;
    for watcher in watchers {
        if watcher.await.unwrap() == 0 {
            silent += 1;
        }
    }
    println!(
        "{} instances printing 10 lines a second, each watched; echo meanwhile",
        sizes.streaming_instances
    );
    let (b50, b99) = (
        percentile(&mut baseline, 0.5),
        percentile(&mut baseline, 0.99),
    );
    let (w50, w99) = (percentile(&mut echo, 0.5), percentile(&mut echo, 0.99));
    // Share of one core each process used while echo was measured.
    let load = |((server_end, tmux_end, end), (server_start, tmux_start, start)): (
        (Duration, Duration, Instant),
        (Duration, Duration, Instant),
    )| {
        let wall = end.duration_since(start).as_secs_f64();
        format!(
            "pocketdev {:.0} % CPU, tmux server {:.0} %",
            100.0 * (server_end - server_start).as_secs_f64() / wall,
            100.0 * (tmux_end - tmux_start).as_secs_f64() / wall
        )
    };
    println!(
        "  tmux clients in PTYs   p50 {}  p99 {}   ({})",
        ms(b50),
        ms(b99),
        load(baseline_cpu)
    );
    println!(
        "  pocketdev viewers      p50 {}  p99 {}   ({})",
        ms(w50),
        ms(w99),
        load(bridge_cpu)
    );
    // ttyd -> tmux ran at 2.0 x tmux-in-a-PTY's p99 under this load (10.7 ms against 5.4 ms);
    // the target is 1.5 x ttyd's, so 3.0 x the baseline measured here.
    let ratio = w99.as_secs_f64() / b99.as_secs_f64();
    println!(
        "  p99 ratio              {ratio:>6.2} x   (target: at most 3.0 x, i.e. 1.5 x ttyd -> tmux: {})",
        common::verdict(ratio <= 3.0)
    );
    println!(
        "  errors {}   viewers that received nothing {silent}   ({:.1} MB delivered)",
        errors.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed) as f64 / 1e6
    );
    println!("  server memory {:.1} MB", server.rss_kb() as f64 / 1024.0);
}

async fn shared(server: &Server, sizes: &Sizes) {
    let stop = tokio_util::sync::CancellationToken::new();
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut watchers = Vec::new();
    for _ in 0..sizes.shared_instances {
        let id = server.create("ticker").await;
        for _ in 0..sizes.viewers_per_shared {
            let ws = server.connect(&id).await;
            watchers.push(watch(ws, bytes.clone(), errors.clone(), stop.clone()));
        }
    }
    tokio::time::sleep(sizes.soak).await;
    stop.cancel();
    let total = watchers.len();
    let mut silent = 0;
    for watcher in watchers {
        if watcher.await.unwrap() == 0 {
            silent += 1;
        }
    }
    println!(
        "{total} viewers on {} instances printing 10 lines a second",
        sizes.shared_instances
    );
    println!(
        "  errors {}   viewers that received nothing {silent}   server memory {:.1} MB",
        errors.load(Ordering::Relaxed),
        server.rss_kb() as f64 / 1024.0
    );
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    // Sections named after `--` run alone: `cargo bench --bench terminal -- soak echo`.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |section: &str| only.is_empty() || only.iter().any(|a| a == section);
    let sizes = if smoke {
        Sizes {
            seq_lines: 100_000,
            yes_bytes: 5_000_000,
            rounds: 1,
            keystrokes: 100,
            idle_viewers: 20,
            streaming_instances: 10,
            shared_instances: 2,
            viewers_per_shared: 10,
            soak: Duration::from_secs(1),
        }
    } else {
        Sizes {
            seq_lines: 2_000_000,
            yes_bytes: 100_000_000,
            rounds: 5,
            keystrokes: 1000,
            idle_viewers: 200,
            streaming_instances: 200,
            shared_instances: 5,
            viewers_per_shared: 100,
            soak: Duration::from_secs(10),
        }
    };
    let mut server = Server::start().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kb = server.rss_kb();
    // 80-byte lines, as in an agent's or a build's long output.
    if wanted("throughput") {
        let line = "0123456789".repeat(8);
        let yes = format!("yes {} | head -c {}", &line[..79], sizes.yes_bytes);
        throughput(
            &server,
            "long lines of `yes`",
            sizes.yes_bytes,
            &yes,
            sizes.rounds,
        )
        .await;
        let seq = format!("seq 1 {}", sizes.seq_lines);
        let what = format!("`seq 1 {}`", sizes.seq_lines);
        throughput(
            &server,
            &what,
            seq_bytes(sizes.seq_lines),
            &seq,
            sizes.rounds,
        )
        .await;
    }
    if wanted("snapshot") {
        snapshot_size(&server).await;
    }
    let echo_id = if wanted("echo") {
        echo_latency(&server, &sizes).await
    } else {
        echo_instance(&server).await
    };
    if wanted("memory") {
        memory(&server, &sizes, idle_kb).await;
    }
    if wanted("soak") {
        soak(&server, &sizes, &echo_id).await;
    }
    if wanted("shared") {
        shared(&server, &sizes).await;
    }
    // A graceful stop ends pocketdev's own tmux clients with it; a kill would orphan them.
    if let Some(pid) = rustix::process::Pid::from_raw(server.pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .is_err()
    {
        let _ = server.child.start_kill();
        let _ = server.child.wait().await;
    }
    let _ = Command::new("tmux")
        .arg("-S")
        .arg(&server.socket)
        .arg("kill-server")
        .status()
        .await;
}
