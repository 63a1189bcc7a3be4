//! The diff a phone reads: a change of 100 files and 5,000 changed lines (2,500 added, 2,500
//! deleted, as `git diff --shortstat` counts them) in an agent's worktree, fetched page by page
//! through `GET /api/instances/{id}/git/diff` as a phone would (every page, one after another,
//! `Accept-Encoding: gzip` offered), median and p90: the time, the bytes on the wire and the
//! JSON's bytes. Baseline in the same run, alternating round by round: `git diff` itself, run
//! as a child process in the same worktree with the arguments the server gives it: its time and
//! its output's bytes. Then the same for `GET …/git/status` against `git status --porcelain=v2`.
//!
//! Run: `cargo bench --bench git`. `-- --smoke` runs 3 rounds.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use pocketdev::instances::profiles::Profile;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const FILES: usize = 100;
const LINES_PER_FILE: usize = 200;
/// Each file gets this many blocks of rewritten lines (a hunk each)…
const BLOCKS: usize = 5;
/// …of this many lines: 100 files × 5 × 5 = 2,500 lines rewritten, 5,000 changed.
const BLOCK_LINES: usize = 5;
/// The whole diff, every page, as the phone fetches it.
const TARGET_DIFF: Duration = Duration::from_millis(500);

/// `git diff` as the server runs it (`src/git/ops.rs`), so both sides do the same git work.
const DIFF_ARGS: &[&str] = &[
    "-c",
    "core.quotePath=false",
    "diff",
    "--patch",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "-M",
    "--unified=3",
    "--src-prefix=a/",
    "--dst-prefix=b/",
];
const STATUS_ARGS: &[&str] = &["status", "--porcelain=v2"];

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// git with a clean environment (no user or system config), as the API tests run it.
fn git(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("git");
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args([
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.org",
        ])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

/// Runs git to the end; panics unless it succeeds; answers its output.
async fn git_ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = git(dir, args).output().await.expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Identifiers the lines are made of, so that they vary as code does (gzip would find a
/// repeated template far easier to squeeze than real code).
const WORDS: &[&str] = &[
    "buffer", "config", "cursor", "delta", "entry", "error", "frame", "handle", "header", "index",
    "input", "item", "key", "length", "limit", "line", "map", "message", "name", "node", "offset",
    "output", "page", "parser", "path", "queue", "reader", "record", "request", "result", "row",
    "session", "size", "slot", "state", "stream", "task", "text", "token", "value", "window",
    "writer",
];

/// Line `n` of file `file` as committed, or as rewritten: a statement of code built from
/// identifiers picked by a hash of where it is.
fn line(file: usize, n: usize, changed: bool) -> String {
    let mut seed = (file as u64) << 32 | (n as u64) << 1 | u64::from(changed);
    let mut word = || {
        // splitmix64
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        WORDS[((z ^ (z >> 31)) % WORDS.len() as u64) as usize]
    };
    let indent = "    ".repeat(1 + n % 3);
    format!(
        "{indent}let {}_{} = {}.{}_{}(&{}, {n}){};\n",
        word(),
        word(),
        word(),
        word(),
        word(),
        word(),
        if changed { "?" } else { "" }
    )
}

/// File `file`'s text: its 200 lines, with the rewritten blocks if `changed`.
fn text(file: usize, changed: bool) -> String {
    let spacing = LINES_PER_FILE / BLOCKS;
    (0..LINES_PER_FILE)
        .map(|n| {
            // Each block sits in the middle of its stretch, so the hunks stay apart.
            let rewritten = n % spacing >= spacing / 2 && n % spacing < spacing / 2 + BLOCK_LINES;
            line(file, n, changed && rewritten)
        })
        .collect()
}

fn path_of(file: usize) -> String {
    format!("src/module_{:02}/file_{file:03}.rs", file % 10)
}

/// Pipes `input` through `gzip` with `args`; answers what comes out.
async fn gzip(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = tokio::process::Command::new("gzip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        stdin.write_all(&input).await.unwrap();
    });
    let out = child.wait_with_output().await.unwrap();
    writer.await.unwrap();
    assert!(out.status.success(), "gzip {args:?}");
    out.stdout
}

/// One response as the phone receives it.
struct Fetched {
    /// Its status line, headers and body as sent (the body possibly compressed).
    wire: usize,
    /// The body as sent.
    body: bytes::Bytes,
    /// Its `Content-Encoding`, if any.
    encoding: Option<String>,
}

impl Fetched {
    /// The JSON, decoded if it came compressed (after the clock stops: decoding takes a child
    /// process here, which a phone's browser does not).
    async fn json(&self) -> Vec<u8> {
        match self.encoding.as_deref() {
            None | Some("identity") => self.body.to_vec(),
            Some("gzip") => gzip(&["-dc"], &self.body).await,
            Some(other) => panic!("an encoding this benchmark cannot read: {other}"),
        }
    }
}

async fn fetch(running: &common::Running, url: &str) -> Fetched {
    let response = running
        .client
        .get(url)
        .bearer_auth(&running.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    // "HTTP/1.1 200 OK\r\n", each "name: value\r\n", the blank line.
    let head = 17
        + response
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
            .sum::<usize>()
        + 2;
    let encoding = response
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.unwrap();
    Fetched {
        wire: head + body.len(),
        body,
        encoding,
    }
}

/// Every page of the diff, one after another; the time to the first page and to the last.
async fn fetch_diff(running: &common::Running, id: &str) -> (Duration, Duration, Vec<Fetched>) {
    let url = |page: u64| format!("{}/api/instances/{id}/git/diff?page={page}", running.base);
    let started = Instant::now();
    let first = fetch(running, &url(0)).await;
    let first_took = started.elapsed();
    // A compressed page is decoded by a child process here (a phone's browser decodes on the
    // way in); the API does not compress today, so this is a copy.
    let pages = serde_json::from_slice::<Value>(&first.json().await).unwrap()["pages"]
        .as_u64()
        .unwrap();
    let mut fetched = vec![first];
    for page in 1..pages {
        fetched.push(fetch(running, &url(page)).await);
    }
    (first_took, started.elapsed(), fetched)
}

/// Runs git once to the end, its output collected; its time and the output.
async fn timed_git(dir: &Path, args: &[&str]) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let out = git(dir, args).stderr(Stdio::null()).output().await.unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "git {args:?}");
    (took, out.stdout)
}

fn row(what: &str, samples: &[Duration]) {
    println!(
        "  {what:<44} median {:>8.2} ms   p90 {:>8.2} ms",
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.9))
    );
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let rounds = if smoke { 3 } else { 30 };
    let tmp = tempfile::tempdir().unwrap();
    let mut config = common::config(tmp.path());
    config.rate_limits.api_per_minute = 1_000_000;
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

    // The account's workspace, made by the server; the repository in it, committed on main.
    let made = client
        .post(format!("{base}/api/files/mkdir"))
        .bearer_auth(token)
        .json(&json!({ "path": "scratch" }))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "mkdir: {}", made.status());
    let me: Value = client
        .get(format!("{base}/api/auth/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let workspace = tmp
        .path()
        .join("data/users")
        .join(me["id"].to_string())
        .join("workspace");
    let repo = workspace.join("proj");
    for file in 0..FILES {
        let path = repo.join(path_of(file));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text(file, false)).unwrap();
    }
    git_ok(&repo, &["init", "-q", "-b", "main"]).await;
    git_ok(&repo, &["add", "-A"]).await;
    git_ok(&repo, &["commit", "-q", "-m", "initial"]).await;

    // An agent on a branch in its own worktree, which then changes every file.
    let created = client
        .post(format!("{base}/api/instances"))
        .bearer_auth(token)
        .json(&json!({ "profile": "fake", "repo": "proj", "branch": "bench", "base": "main" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "create");
    let instance: Value = created.json().await.unwrap();
    let id = instance["id"].as_str().unwrap().to_owned();
    let worktree = workspace.join(instance["workdir"].as_str().unwrap());
    for file in 0..FILES {
        std::fs::write(worktree.join(path_of(file)), text(file, true)).unwrap();
    }
    let shortstat = String::from_utf8(git_ok(&worktree, &["diff", "--shortstat"]).await).unwrap();
    assert_eq!(
        shortstat.trim(),
        "100 files changed, 2500 insertions(+), 2500 deletions(-)"
    );

    // One round each to warm caches, then rounds alternating server and git.
    fetch_diff(&running, &id).await;
    timed_git(&worktree, DIFF_ARGS).await;
    let status_url = format!("{base}/api/instances/{id}/git/status");
    fetch(&running, &status_url).await;
    timed_git(&worktree, STATUS_ARGS).await;

    let (mut first_page, mut all_pages, mut git_diff) = (vec![], vec![], vec![]);
    let (mut api_status, mut git_status) = (vec![], vec![]);
    let mut last_diff = Vec::new();
    let (mut git_diff_out, mut git_status_out) = (Vec::new(), Vec::new());
    let mut status_fetched = None;
    for _ in 0..rounds {
        let (first, all, fetched) = fetch_diff(&running, &id).await;
        first_page.push(first);
        all_pages.push(all);
        last_diff = fetched;
        let (took, out) = timed_git(&worktree, DIFF_ARGS).await;
        git_diff.push(took);
        git_diff_out = out;

        let started = Instant::now();
        let fetched = fetch(&running, &status_url).await;
        api_status.push(started.elapsed());
        status_fetched = Some(fetched);
        let (took, out) = timed_git(&worktree, STATUS_ARGS).await;
        git_status.push(took);
        git_status_out = out;
    }

    // What the phone received: every page's JSON, and that together it is the whole change.
    let pages = last_diff.len();
    let wire: usize = last_diff.iter().map(|f| f.wire).sum();
    let mut json_bytes = 0;
    let mut all_json = Vec::new();
    let (mut added, mut deleted, mut lines) = (0, 0, 0);
    let mut files = std::collections::BTreeSet::new();
    for page in &last_diff {
        let body = page.json().await;
        json_bytes += body.len();
        let diff: Value = serde_json::from_slice(&body).unwrap();
        for file in diff["files"].as_array().unwrap() {
            files.insert(file["path"].as_str().unwrap().to_owned());
            for hunk in file["hunks"].as_array().unwrap() {
                for l in hunk["lines"].as_array().unwrap() {
                    lines += 1;
                    match l["kind"].as_str() {
                        Some("add") => added += 1,
                        Some("del") => deleted += 1,
                        _ => {}
                    }
                }
            }
        }
        all_json.extend_from_slice(&body);
    }
    assert_eq!(
        (files.len(), added, deleted),
        (FILES, 2500, 2500),
        "the pages hold the whole change"
    );
    let gzipped = gzip(&["-6", "-c"], &all_json).await.len();
    let encoding = last_diff[0].encoding.clone();
    let status = status_fetched.unwrap();
    let status_json = status.json().await.len();
    let git_bytes = git_diff_out.len();

    println!(
        "diff of {FILES} files, 2,500 lines added and 2,500 deleted ({} hunks, {lines} diff lines with context), {rounds} rounds",
        FILES * BLOCKS
    );
    println!(
        "  server: {pages} pages; Content-Encoding: {}",
        encoding
            .as_deref()
            .unwrap_or("none (the API did not compress its JSON)")
    );
    row(&format!("GET …/git/diff, all {pages} pages"), &all_pages);
    row("GET …/git/diff, the first page", &first_page);
    row("git diff (child process, same worktree)", &git_diff);
    let (api_med, git_med) = (percentile(&all_pages, 0.5), percentile(&git_diff, 0.5));
    println!(
        "  server time / git diff time        {:>8.1}x (median; p90 {:.1}x)",
        api_med.as_secs_f64() / git_med.as_secs_f64(),
        percentile(&all_pages, 0.9).as_secs_f64() / percentile(&git_diff, 0.9).as_secs_f64()
    );
    println!(
        "  (each page runs git diff again and parses all of it: {pages} git diffs for the whole diff)"
    );
    println!(
        "  the whole diff, median {:.0} ms   (target: under {} ms: {})",
        ms(api_med),
        TARGET_DIFF.as_millis(),
        common::verdict(api_med < TARGET_DIFF)
    );
    println!("  bytes                              (no target set)");
    println!("    git diff output       {git_bytes:>10}");
    println!(
        "    JSON, decoded         {json_bytes:>10}   {:.2}x git diff",
        json_bytes as f64 / git_bytes as f64
    );
    println!(
        "    on the wire           {wire:>10}   {:.2}x git diff   (status lines, headers and bodies of the {pages} responses)",
        wire as f64 / git_bytes as f64
    );
    println!(
        "    the JSON gzipped (-6) {gzipped:>10}   {:.2}x git diff   (gzip -6 of the same JSON, to compare with the wire)",
        gzipped as f64 / git_bytes as f64
    );

    println!("status of the same worktree ({FILES} changed files), {rounds} rounds");
    row("GET …/git/status", &api_status);
    row("git status --porcelain=v2", &git_status);
    println!(
        "  server time / git status time      {:>8.1}x (median; the server also counts ahead/behind with git rev-list)",
        percentile(&api_status, 0.5).as_secs_f64() / percentile(&git_status, 0.5).as_secs_f64()
    );
    println!(
        "  bytes: JSON {status_json}, on the wire {}, git status {}   ({:.2}x, {:.2}x; no target set)",
        status.wire,
        git_status_out.len(),
        status_json as f64 / git_status_out.len() as f64,
        status.wire as f64 / git_status_out.len() as f64
    );

    running.stop().await;
    let _ = tokio::process::Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .arg("kill-server")
        .status()
        .await;
}
