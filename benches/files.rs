//! Workspace file benchmarks, each beside a baseline measured in the same run:
//! - listing a folder of 10,000 entries through `GET /api/files`, against reading the same
//!   folder with `std::fs` (names and metadata);
//! - uploading and downloading a large file through the API, against writing (with fsync) and
//!   reading the same amount on the same disk; with the process's memory growth.
//!
//! Run: `cargo bench --bench files`. `-- --smoke` runs small sizes only.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pocketdev::config::Config;
use serde_json::Value;

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

const CHUNK: usize = 1024 * 1024;

fn write_with_fsync(path: &std::path::Path, mb: usize) -> Duration {
    let block = vec![0x5au8; CHUNK];
    let started = Instant::now();
    let mut file = std::fs::File::create(path).unwrap();
    for _ in 0..mb {
        file.write_all(&block).unwrap();
    }
    file.sync_all().unwrap();
    let took = started.elapsed();
    std::fs::remove_file(path).unwrap();
    took
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (entries, runs, size_mb) = if smoke {
        (2_000, 5, 32)
    } else {
        (10_000, 50, 1024)
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: tmp.path().join("data"),
        ..Config::default()
    };
    config.rate_limits.api_per_minute = 1_000_000;
    config.files.max_upload_mb = 4096;
    // Measured as the server itself; the instances benchmark measures isolation's cost.
    config.isolation.mode = pocketdev::config::IsolationMode::None;
    let app = pocketdev::App::build(config).await.expect("app builds");
    let running = common::Running::start(app).await;
    let (base, token, client) = (&running.base, &running.token, &running.client);
    let me: Value = client
        .get(format!("{base}/api/auth/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    client
        .get(format!("{base}/api/files"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let workspace = tmp
        .path()
        .join("data/users")
        .join(me["id"].to_string())
        .join("workspace");

    // Listing.
    let big = workspace.join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..entries {
        std::fs::write(big.join(format!("file-{i:05}.txt")), b"x").unwrap();
    }
    let mut api = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let listing: Value = client
            .get(format!("{base}/api/files?path=big"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        api.push(started.elapsed());
        assert_eq!(listing["entries"].as_array().unwrap().len(), entries);
        let started = Instant::now();
        let mut names: Vec<(String, u64)> = std::fs::read_dir(&big)
            .unwrap()
            .flatten()
            .map(|e| {
                let meta = e.metadata().unwrap();
                (e.file_name().to_string_lossy().into_owned(), meta.len())
            })
            .collect();
        names.sort();
        direct.push(started.elapsed());
    }
    let (api, direct) = (median(api), median(direct));
    println!("list a folder of {entries} entries (median of {runs})");
    println!(
        "  GET /api/files     {:.2} ms   (target: under 50 ms: {})",
        api.as_secs_f64() * 1000.0,
        common::verdict(api.as_secs_f64() < 0.050)
    );
    println!(
        "  std::fs directly   {:.2} ms",
        direct.as_secs_f64() * 1000.0
    );

    // Disk baseline: write the same amount with fsync (before and after the API's turn; the
    // faster counts, so page-cache weather does not flatter pocketdev).
    let bytes = size_mb * CHUNK;
    let probe = workspace.join("disk-probe.bin");
    let disk_write_before = write_with_fsync(&probe, size_mb);

    // Upload, streamed from memory-light chunks.
    let boundary = "pocketdev-bench-boundary";
    let head = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let parts = std::iter::once(bytes::Bytes::from(head))
        .chain((0..size_mb).map(move |_| bytes::Bytes::from(vec![0x5au8; CHUNK])))
        .chain(std::iter::once(bytes::Bytes::from(tail)));
    let body =
        reqwest::Body::wrap_stream(futures::stream::iter(parts.map(Ok::<_, std::io::Error>)));
    let before = rss_mb();
    let started = Instant::now();
    let response = client
        .post(format!("{base}/api/files/upload"))
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let upload = started.elapsed();
    let upload_growth = rss_mb() - before;

    // Download, streamed; against reading the file directly.
    let before = rss_mb();
    let started = Instant::now();
    let mut stream = client
        .get(format!("{base}/api/files/download?path=big.bin"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len();
    }
    let download = started.elapsed();
    let download_growth = rss_mb() - before;
    assert_eq!(received, bytes);
    let started = Instant::now();
    let mut file = std::fs::File::open(workspace.join("big.bin")).unwrap();
    let mut buf = vec![0u8; CHUNK];
    while file.read(&mut buf).unwrap() > 0 {}
    let disk_read = started.elapsed();
    let disk_write = disk_write_before.min(write_with_fsync(&probe, size_mb));

    let rate = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    println!("upload and download {size_mb} MiB (this process holds client and server)");
    let share = 100.0 * disk_write.as_secs_f64() / upload.as_secs_f64();
    println!(
        "  upload      {:>8.0} MB/s   disk write with fsync {:>8.0} MB/s   {:.0} %  (target: at least 50 %: {})",
        rate(upload),
        rate(disk_write),
        share,
        common::verdict(share >= 50.0)
    );
    println!(
        "  download    {:>8.0} MB/s   disk read {:>8.0} MB/s",
        rate(download),
        rate(disk_read)
    );
    println!(
        "  memory growth: upload {upload_growth:.1} MB, download {download_growth:.1} MB   (target: under 20 MB: {})",
        common::verdict(upload_growth < 20.0 && download_growth < 20.0)
    );

    running.stop().await;
}
