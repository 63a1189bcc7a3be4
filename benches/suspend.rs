//! Suspending idle agents, measured on the real Claude Code CLI against the API tests' mock
//! Messages API, each figure beside its baseline from the same run:
//! - memory: the PSS of an agent's process tree (the sum of `Pss:` in
//!   `/proc/<pid>/smaps_rollup` over the tree) at its idle prompt, after one turn and once
//!   suspended, and the `freed_bytes` the server reports;
//! - resume: from `POST …/resume` until the idle prompt and the conversation's last reply are
//!   on screen, median and p99, against a fresh start (create until the idle prompt);
//! - agents per 4 GB: N agents used in turn (a prompt each, its reply awaited) under
//!   `limits.memory_budget_mb = 4096`, with suspension (admission suspends the longest idle to
//!   make room; every agent is then used again, resumed with its conversation) and without
//!   (`idle_policy = "off"`: creation is refused once the budget is full).
//!
//! The CLI comes from `.test-tools/` (`scripts/test.sh` installs it) or `POCKETDEV_TEST_CLAUDE`;
//! without it (or with `POCKETDEV_TEST_CLAUDE` set empty), the fake agent with
//! `--session-id`/`--resume` stands in, so the paths still run.
//!
//! Run: `cargo bench --bench suspend`. `-- --smoke` runs 2 resume rounds and 3 agents, with the
//! budget scaled to hold 2 of them so that making room is exercised too.

mod common;
// The API tests' mock Messages API; this benchmark uses its plain replies only.
#[allow(dead_code)]
#[path = "../tests/api/mock_anthropic.rs"]
mod mock_anthropic;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mock_anthropic::MockAnthropic;
use pocketdev::instances::profiles::{IdlePolicy, Profile};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const API_KEY: &str = "sk-ant-api03-pocketdev-bench-key-0123456789";
const MB: f64 = 1024.0 * 1024.0;
/// How long a start, a resume or a reply may take before the agent counts as not usable.
const PATIENCE: Duration = Duration::from_secs(60);
/// How often the screen is read while waiting for it (each read is a `tmux capture-pane`).
const POLL: Duration = Duration::from_millis(50);

/// The agent program the instances run.
enum Cli {
    /// The real Claude Code CLI.
    Claude(PathBuf),
    /// The stand-in shell script, for machines without the CLI.
    Fake(PathBuf),
}

impl Cli {
    fn detect() -> Cli {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let fake = Cli::Fake(root.join("tests/fixtures/fake-agent.sh"));
        // Set but empty: the fake agent even where the CLI is installed.
        if let Some(path) = std::env::var_os("POCKETDEV_TEST_CLAUDE") {
            return if path.is_empty() {
                fake
            } else {
                Cli::Claude(PathBuf::from(path))
            };
        }
        let bundled = root.join(".test-tools/node_modules/.bin/claude");
        if bundled.exists() {
            Cli::Claude(bundled)
        } else {
            fake
        }
    }

    fn is_claude(&self) -> bool {
        matches!(self, Cli::Claude(_))
    }

    /// A profile running it: suspended when idle or to make room (`suspend`), or never.
    fn profile(&self, mock: &MockAnthropic, memory_mb: u64, suspend: bool) -> Profile {
        let mut profile = match self {
            Cli::Claude(path) => {
                let mut p =
                    pocketdev::instances::profiles::defaults()["claude-sonnet-4-5-20250929"]
                        .clone();
                p.command = path.display().to_string();
                p.env.insert("ANTHROPIC_BASE_URL".into(), mock.url.clone());
                p
            }
            Cli::Fake(path) => Profile {
                name: "Fake agent".into(),
                command: path.display().to_string(),
                session_args: Some(vec!["--session-id".into(), "{session}".into()]),
                resume_args: Some(vec!["--resume".into(), "{session}".into()]),
                ..Profile::default()
            },
        };
        profile.memory_mb = memory_mb;
        if !suspend {
            // Never suspended, for idleness nor to make room. (A Claude profile always knows
            // `--resume`; the fake agent is made unable to resume, as the issue puts it.)
            profile.idle_policy = Some(IdlePolicy::Off);
            if !self.is_claude() {
                profile.session_args = None;
                profile.resume_args = None;
            }
        }
        profile
    }

    /// What its screen shows at the idle prompt.
    fn ready(&self) -> &'static str {
        if self.is_claude() {
            "? for shortcuts"
        } else {
            "agent>"
        }
    }

    /// Its answer to `prompt`.
    fn reply(&self, prompt: &str) -> String {
        if self.is_claude() {
            format!("I read \"{prompt}\"")
        } else {
            format!("you said: {prompt}")
        }
    }

    /// What a resumed agent shows of a turn on `prompt`: Claude Code its transcript, the fake
    /// agent the words it was told.
    fn replayed(&self, prompt: &str) -> String {
        if self.is_claude() {
            self.reply(prompt)
        } else {
            format!("earlier: {prompt}")
        }
    }

    async fn describe(&self) -> String {
        match self {
            Cli::Claude(path) => {
                let version = tokio::process::Command::new(path)
                    .arg("--version")
                    .output()
                    .await
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .unwrap_or_default();
                format!("the real Claude Code CLI {version}, against the mock Messages API")
            }
            Cli::Fake(_) => "the fake agent (tests/fixtures/fake-agent.sh with --session-id/--resume): \
                 the Claude Code CLI is not installed (scripts/test.sh installs it into .test-tools/) \
                 or POCKETDEV_TEST_CLAUDE is set empty, \
                 so these figures are not Claude Code's"
                .into(),
        }
    }
}

/// A pocketdev serving in this process, with its agents' tmux server.
struct Server {
    running: common::Running,
    socket: PathBuf,
}

impl Server {
    /// A server in `dir` whose profile `agent` is `profile`, monitoring every second.
    async fn start(
        dir: &Path,
        cli: &Cli,
        profile: Profile,
        customize: impl FnOnce(&mut pocketdev::Config),
    ) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let mut config = common::config(dir);
        config.monitor.interval_secs = 1;
        config.rate_limits.api_per_minute = 1_000_000;
        config.limits.max_total = 200;
        config.limits.max_per_user = 200;
        // Nothing suspends by the clock: the benchmark suspends, or admission does.
        config.limits.idle_timeout_minutes = 0.0;
        config.profiles.insert("agent".into(), profile);
        customize(&mut config);
        let app = pocketdev::App::build(config).await.expect("app builds");
        let running = common::Running::start(app).await;
        let socket = dir
            .join("data")
            .canonicalize()
            .unwrap()
            .join("server/tmux.sock");
        let server = Server { running, socket };
        if cli.is_claude() {
            let (status, body) = server
                .call(
                    Method::PUT,
                    "/api/secrets/ANTHROPIC_API_KEY",
                    Some(json!({ "value": API_KEY })),
                )
                .await;
            assert!(status.is_success(), "the API key is stored: {body}");
        }
        server
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let r = &self.running;
        let mut request = r
            .client
            .request(method, format!("{}{path}", r.base))
            .bearer_auth(&r.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(json!({}))).await
    }

    async fn create(&self) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/api/instances",
            Some(json!({ "profile": "agent" })),
        )
        .await
    }

    async fn instance(&self, id: &str) -> Value {
        self.call(Method::GET, &format!("/api/instances/{id}"), None)
            .await
            .1
    }

    async fn screen(&self, id: &str) -> String {
        let (_, output) = self
            .call(Method::GET, &format!("/api/instances/{id}/output"), None)
            .await;
        output["output"].as_str().unwrap_or_default().to_owned()
    }

    /// Reads the screen until every one of `needles` is on it.
    async fn wait_screen(&self, id: &str, needles: &[&str]) -> Result<String, String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen(id).await;
            if needles.iter().all(|n| screen.contains(n)) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                return Err(format!("never showed {needles:?}; the screen:\n{screen}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Types `prompt` and waits for the reply.
    async fn turn(&self, cli: &Cli, id: &str, prompt: &str) -> Result<(), String> {
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/api/instances/{id}/command"),
                Some(json!({ "text": prompt })),
            )
            .await;
        if !status.is_success() {
            return Err(format!("the prompt was refused ({status}): {body}"));
        }
        self.wait_screen(id, &[&cli.reply(prompt)]).await.map(drop)
    }

    /// Waits until the monitor shows the agent at its prompt (`waiting`, or `idle` for an agent
    /// whose prompt it cannot read).
    async fn wait_at_rest(&self, id: &str) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let instance = self.instance(id).await;
            if matches!(instance["status"].as_str(), Some("waiting" | "idle")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("never at rest: {instance}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `wait_at_rest`, then two more of the monitor's samples, so that it has counted the agent
    /// among those at rest (which admission may suspend) and measured its memory: a user
    /// reading the reply before moving on.
    async fn wait_settled(&self, id: &str) -> Result<(), String> {
        self.wait_at_rest(id).await?;
        for _ in 0..2 {
            let seen = self.sampled_at().await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.sampled_at().await == seen {
                if Instant::now() > deadline {
                    return Err("the monitor stopped sampling".into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    async fn sampled_at(&self) -> Value {
        self.call(Method::GET, "/api/system/stats", None).await.1["sampled_at"].clone()
    }

    /// Each live instance's pane process, by instance id.
    async fn panes(&self) -> HashMap<String, u32> {
        let out = tokio::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["list-panes", "-a", "-F", "#{session_name} #{pane_pid}"])
            .output()
            .await
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (session, pid) = line.split_once(' ')?;
                Some((session.strip_prefix("pd-")?.to_owned(), pid.parse().ok()?))
            })
            .collect()
    }

    async fn pane(&self, id: &str) -> Option<u32> {
        self.panes().await.get(id).copied()
    }

    async fn stop(self) {
        self.running.stop().await;
        let _ = tokio::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status()
            .await;
    }
}

/// Every process's children, from `/proc/<pid>/stat`.
fn children() -> HashMap<u32, Vec<u32>> {
    let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The parent is the second field after the command name, which sits in parentheses.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(parent) = parent {
            map.entry(parent).or_default().push(pid);
        }
    }
    map
}

/// The proportional set size of `pid`, in bytes (0 once it is gone).
fn pss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// The PSS of `roots` and everything under them, in bytes.
fn tree_pss(roots: impl IntoIterator<Item = u32>) -> u64 {
    let children = children();
    let mut stack: Vec<u32> = roots.into_iter().collect();
    let mut total = 0;
    while let Some(pid) = stack.pop() {
        total += pss(pid);
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    total
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / MB)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn id_of(created: &Value) -> String {
    created["id"].as_str().expect("an instance id").to_owned()
}

/// Ends, on every way out (a failed assertion too), the tmux servers and agent processes the
/// benchmark started: those working in its temporary folder.
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    #[allow(clippy::disallowed_methods)] // in Drop: there is no runtime to await a child on
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let socket = entry.path().join("data/server/tmux.sock");
            if socket.exists() {
                let _ = std::process::Command::new("tmux")
                    .arg("-S")
                    .arg(&socket)
                    .arg("kill-server")
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let inside = std::fs::read_link(entry.path().join("cwd"))
                .is_ok_and(|cwd| cwd.starts_with(&self.0));
            if inside
                && pid != std::process::id() as i32
                && let Some(pid) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// What one agent's memory is, and what suspending it frees.
struct Memory {
    at_prompt: u64,
    after_turn: u64,
    suspended: u64,
    resident: u64,
    freed_reported: Option<u64>,
    resumed: u64,
}

/// The memory and resume-latency sections, on one server: one agent suspended and resumed
/// `rounds` times, each resume beside a fresh start.
async fn memory_and_resume(
    cli: &Cli,
    mock: &MockAnthropic,
    dir: &Path,
    rounds: usize,
) -> (Memory, Vec<Duration>, Vec<Duration>) {
    let server = Server::start(dir, cli, cli.profile(mock, 500, true), |_| {}).await;
    // Warm-up: the first instance also starts the tmux server and fills caches.
    let (_, warm) = server.create().await;
    let warm = id_of(&warm);
    server.wait_screen(&warm, &[cli.ready()]).await.unwrap();
    server
        .call(Method::DELETE, &format!("/api/instances/{warm}"), None)
        .await;

    let (status, created) = server.create().await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = id_of(&created);
    server.wait_screen(&id, &[cli.ready()]).await.unwrap();
    server.wait_settled(&id).await.unwrap();
    let pid = server.pane(&id).await.expect("the agent's pane");
    let at_prompt = tree_pss([pid]);
    let mut last = "Remember the word pocketdev".to_owned();
    server.turn(cli, &id, &last).await.unwrap();
    server.wait_settled(&id).await.unwrap();
    let after_turn = tree_pss([pid]);
    let resident = server.instance(&id).await["memory_bytes"]
        .as_u64()
        .unwrap_or(0);
    let (status, suspended) = server.post(&format!("/api/instances/{id}/suspend")).await;
    assert_eq!(status, StatusCode::OK, "{suspended}");
    let freed_reported = suspended["freed_bytes"].as_u64();
    assert!(
        server.pane(&id).await.is_none(),
        "a suspended agent has no pane"
    );
    let suspended_pss = tree_pss([pid]);

    let mut fresh = Vec::new();
    let mut resumed = Vec::new();
    let mut resumed_pss = 0;
    for round in 0..rounds {
        let started = Instant::now();
        let (status, created) = server.create().await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let other = id_of(&created);
        server.wait_screen(&other, &[cli.ready()]).await.unwrap();
        fresh.push(started.elapsed());
        server
            .call(Method::DELETE, &format!("/api/instances/{other}"), None)
            .await;

        let started = Instant::now();
        let (status, body) = server.post(&format!("/api/instances/{id}/resume")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        server
            .wait_screen(&id, &[cli.ready(), &cli.replayed(&last)])
            .await
            .unwrap();
        resumed.push(started.elapsed());

        // It works where it was: one more turn, then it rests and is suspended again.
        last = format!("Round {round}, still there?");
        server.turn(cli, &id, &last).await.unwrap();
        server.wait_at_rest(&id).await.unwrap();
        if round == 0 {
            resumed_pss = tree_pss(server.pane(&id).await);
        }
        let (status, body) = server.post(&format!("/api/instances/{id}/suspend")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    server.stop().await;
    let memory = Memory {
        at_prompt,
        after_turn,
        suspended: suspended_pss,
        resident,
        freed_reported,
        resumed: resumed_pss,
    };
    (memory, resumed, fresh)
}

/// How the agents-per-budget simulation went.
#[derive(Default)]
struct Simulation {
    created: usize,
    usable: usize,
    made_room: usize,
    resumed: usize,
    peak_alive: usize,
    peak_pss: u64,
    refusal: Option<String>,
    failures: Vec<String>,
}

/// `agents` agents used in turn under a memory budget; with `suspend`, each is then used again.
async fn simulate(
    cli: &Cli,
    mock: &MockAnthropic,
    dir: &Path,
    agents: usize,
    budget_mb: u64,
    estimate_mb: u64,
    suspend: bool,
) -> Simulation {
    let profile = cli.profile(mock, estimate_mb, suspend);
    let server = Server::start(dir, cli, profile, |config| {
        config.limits.memory_budget_mb = budget_mb;
    })
    .await;
    let mut sim = Simulation::default();
    let mut answered = Vec::new();
    for n in 0..agents {
        let (status, created) = server.create().await;
        if status != StatusCode::CREATED {
            let message = created["error"]["message"].as_str().unwrap_or_default();
            sim.refusal = Some(format!("agent {} refused ({status}): {message}", n + 1));
            break;
        }
        sim.created += 1;
        sim.made_room += created["made_room"].as_array().map_or(0, Vec::len);
        let id = id_of(&created);
        let prompt = format!("Agent {n}, first question");
        let used = async {
            server.wait_screen(&id, &[cli.ready()]).await?;
            server.turn(cli, &id, &prompt).await?;
            server.wait_settled(&id).await
        }
        .await;
        match used {
            Ok(()) => answered.push((n, id)),
            Err(err) => sim.failures.push(format!("agent {n}: {err}")),
        }
        let panes = server.panes().await;
        sim.peak_alive = sim.peak_alive.max(panes.len());
        sim.peak_pss = sim.peak_pss.max(tree_pss(panes.into_values()));
    }
    if !suspend {
        sim.usable = answered.len();
        server.stop().await;
        return sim;
    }
    // Every agent again, in the same order: the suspended ones resume for the prompt (and
    // others are suspended to make room for them), with their conversation.
    for (n, id) in answered {
        let was_suspended = server.instance(&id).await["state"] == "suspended";
        let (first, second) = (
            format!("Agent {n}, first question"),
            format!("Agent {n}, second question"),
        );
        let used = async {
            server.turn(cli, &id, &second).await?;
            let kept = if cli.is_claude() {
                // The turn's request carries the conversation so far.
                mock.requests().iter().any(|r| {
                    let messages = r.body["messages"].to_string();
                    messages.contains(&second) && messages.contains(&first)
                })
            } else {
                server.screen(&id).await.contains(&first)
            };
            if !kept {
                return Err("answered without its conversation".to_owned());
            }
            server.wait_settled(&id).await
        }
        .await;
        match used {
            Ok(()) => {
                sim.usable += 1;
                sim.resumed += usize::from(was_suspended);
            }
            Err(err) => sim.failures.push(format!("agent {n} again: {err}")),
        }
        let panes = server.panes().await;
        sim.peak_alive = sim.peak_alive.max(panes.len());
        sim.peak_pss = sim.peak_pss.max(tree_pss(panes.into_values()));
    }
    server.stop().await;
    sim
}

/// The machine's load average over the last minute.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn machine_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (rounds, agents) = if smoke { (2, 3) } else { (20, 24) };
    let cli = Cli::detect();
    let mock = MockAnthropic::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let _leftovers = Leftovers(root.clone());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "suspend: {} ({cpus} CPUs, {} MB of memory, no isolation)",
        cli.describe().await,
        machine_memory_mb()
    );

    let load_before = load_average();
    let (memory, resumed, fresh) = memory_and_resume(&cli, &mock, &root.join("a"), rounds).await;
    println!(
        "memory of one agent: PSS of its process tree (the sum of Pss: in /proc/<pid>/smaps_rollup)"
    );
    println!("  at its idle prompt       {}", mb(memory.at_prompt));
    println!("  after one turn           {}", mb(memory.after_turn));
    println!(
        "  suspended                {}  (its processes are gone)",
        mb(memory.suspended)
    );
    println!(
        "  freed by suspending      {}",
        mb(memory.after_turn - memory.suspended)
    );
    println!(
        "  server's freed_bytes     {}  (the resident size it last sampled, shared pages counted whole: {})",
        memory.freed_reported.map_or("none".to_owned(), mb),
        mb(memory.resident)
    );
    println!("  resumed, after a turn    {}", mb(memory.resumed));

    let (mut resumed, mut fresh) = (resumed, fresh);
    resumed.sort();
    fresh.sort();
    let (resume_median, resume_p99) = (percentile(&resumed, 0.5), percentile(&resumed, 0.99));
    let (fresh_median, fresh_p99) = (percentile(&fresh, 0.5), percentile(&fresh, 0.99));
    println!(
        "resume until the idle prompt and the last reply are on screen ({rounds} rounds, screen read every {} ms)",
        POLL.as_millis()
    );
    println!(
        "  resume (POST …/resume)     median {}  p90 {}  p99 {}",
        secs(resume_median),
        secs(percentile(&resumed, 0.9)),
        secs(resume_p99)
    );
    println!(
        "  fresh start (create)       median {}  p90 {}  p99 {}",
        secs(fresh_median),
        secs(percentile(&fresh, 0.9)),
        secs(fresh_p99)
    );
    println!(
        "  machine load (1-minute average) {load_before:.2} before the rounds, {:.2} after: other work on this machine's {cpus} CPUs shows in the slowest rounds",
        load_average()
    );
    println!(
        "  ratio                      {:.2}x median, {:.2}x p99  (target: resume p99 under 2 s: {})",
        resume_median.as_secs_f64() / fresh_median.as_secs_f64(),
        resume_p99.as_secs_f64() / fresh_p99.as_secs_f64(),
        common::verdict(resume_p99 < Duration::from_secs(2))
    );

    // The profile's estimate: the measured PSS after a turn, rounded up to 50 MB.
    let estimate_mb = (memory.after_turn.div_ceil(50 << 20) * 50).max(50);
    // Smoke runs scale the budget to hold about two agents, so that making room happens.
    let budget_mb = if smoke { estimate_mb * 5 / 2 } else { 4096 };
    let on = simulate(
        &cli,
        &mock,
        &root.join("on"),
        agents,
        budget_mb,
        estimate_mb,
        true,
    )
    .await;
    let off = simulate(
        &cli,
        &mock,
        &root.join("off"),
        agents,
        budget_mb,
        estimate_mb,
        false,
    )
    .await;
    println!(
        "agents per {budget_mb} MB: {agents} agents used in turn (a prompt each, its reply awaited)"
    );
    println!(
        "  limits.memory_budget_mb = {budget_mb}: pocketdev's admission budget, not this machine's memory{}; profile memory_mb = {estimate_mb} (the PSS after a turn, rounded up); admission counts a running agent at its sampled resident size when that is more",
        if smoke {
            " (smoke: scaled to hold about two agents)"
        } else {
            ""
        }
    );
    println!(
        "  suspension on    {} of {agents} usable (created, answered, then prompted again and answered with their conversation; {} of those resumed for it); {} suspended to make room at creation; at most {} alive at once, {} PSS together",
        on.usable,
        on.resumed,
        on.made_room,
        on.peak_alive,
        mb(on.peak_pss)
    );
    println!(
        "  suspension off   {} of {agents} usable (idle_policy = \"off\"); at most {} alive at once, {} PSS together{}",
        off.usable,
        off.peak_alive,
        mb(off.peak_pss),
        off.refusal
            .as_deref()
            .map_or(String::new(), |r| format!("; {r}"))
    );
    if let Some(refusal) = &on.refusal {
        println!("  suspension on: {refusal}");
    }
    for failure in on.failures.iter().chain(&off.failures) {
        println!("  failed: {failure}");
    }
    let wanted = if smoke { agents } else { 20 };
    println!(
        "  ratio            {:.1}x the agents  (target: at least {wanted} usable with suspension: {})",
        on.usable as f64 / off.usable.max(1) as f64,
        common::verdict(on.usable >= wanted)
    );
}
