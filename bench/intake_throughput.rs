//! Outbound intake throughput: sustained accepted events/s and the latency of the `202`,
//! with durable (fsync) group commits, over loopback HTTP.
//!
//! Starts `weft::api::Server` in-process on a temp redb file and drives it with N
//! concurrent keep-alive HTTP/1.1 clients posting ~1 KB events, in two shapes: one event
//! per request, and 50 events per request. The load generator is a minimal hand-written
//! HTTP client (pre-rendered bodies, one read per response) because it shares this
//! machine's two cores with the server: a heavier client would measure itself.
//!
//! Run: `cargo bench -p weft --bench intake_throughput`
//! Knobs (env): `INTAKE_BENCH_SECS` (measured seconds per variant, default 10),
//! `INTAKE_BENCH_CLIENTS_SINGLE` (default 64), `INTAKE_BENCH_CLIENTS_BATCHED` (default 16).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft::api::{IntakeLimits, ServeConfig, Server, TokenHash};
use weft::store::GroupCommitConfig;

const EVENT_BYTES: usize = 1024;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One ~1 KB event (the JSON of the event object itself is padded to EVENT_BYTES).
fn event_json(id: &str, padding: &str) -> String {
    let head = format!(
        r#"{{"id":"{id}","object":"company","operation":"upsert","occurred_at":"2026-01-01T00:00:00Z","record":{{"id":"{id}","name":"Acme Corp","industry":"Manufacturing","employees":4200,"notes":""#
    );
    let tail = r#""}}"#;
    let pad = EVENT_BYTES.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", &padding[..pad.min(padding.len())])
}

struct ClientResult {
    latencies_us: Vec<u32>,
    events: u64,
}

async fn client(
    addr: SocketAddr,
    client_no: usize,
    batch: usize,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    tag: &'static str,
) -> ClientResult {
    let padding = "x".repeat(EVENT_BYTES);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 64 * 1024];
    let mut latencies_us = Vec::with_capacity(1 << 16);
    let mut events = 0u64;
    let mut n = 0u64;
    let mut request = Vec::with_capacity(batch * (EVENT_BYTES + 8) + 256);
    while !stop.load(Ordering::Relaxed) {
        let mut body = String::with_capacity(batch * (EVENT_BYTES + 1) + 2);
        body.push('[');
        for i in 0..batch {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&event_json(&format!("{tag}-{client_no}-{n}"), &padding));
            n += 1;
        }
        body.push(']');
        request.clear();
        request.extend_from_slice(
            format!(
                "POST /v1/installations/acme/events HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {BENCH_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        request.extend_from_slice(body.as_bytes());
        let started = Instant::now();
        stream.write_all(&request).await.expect("write");
        // Read one response: headers, then content-length bytes of body.
        let mut filled = 0usize;
        let (status, body_start, body_len) = loop {
            let read = stream.read(&mut buf[filled..]).await.expect("read");
            assert!(read > 0, "server closed the connection");
            filled += read;
            if let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end]).expect("ascii headers");
                let status: u16 = head[9..12].parse().expect("status");
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                break (status, end + 4, len);
            }
        };
        while filled < body_start + body_len {
            let read = stream.read(&mut buf[filled..]).await.expect("read");
            assert!(read > 0, "server closed the connection");
            filled += read;
        }
        let elapsed = started.elapsed();
        assert_eq!(
            status,
            202,
            "{}",
            String::from_utf8_lossy(&buf[body_start..filled])
        );
        if measuring.load(Ordering::Relaxed) {
            latencies_us.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
            events += batch as u64;
        }
    }
    ClientResult {
        latencies_us,
        events,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {BENCH_ADMIN_TOKEN}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn variant(addr: SocketAddr, tag: &'static str, batch: usize, clients: usize, secs: u64) {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..clients)
        .map(|c| tokio::spawn(client(addr, c, batch, measuring.clone(), stop.clone(), tag)))
        .collect();
    // Warm-up: fill the file's first pages and the connection pool before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let commits_before = metric(addr, "weft_intake_commits_total").await;
    let micros_before = metric(addr, "weft_intake_commit_microseconds_total").await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let commits = metric(addr, "weft_intake_commits_total").await - commits_before;
    let commit_micros = metric(addr, "weft_intake_commit_microseconds_total").await - micros_before;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut events = 0u64;
    for task in tasks {
        let result = task.await.expect("client");
        latencies.extend(result.latencies_us);
        events += result.events;
    }
    latencies.sort_unstable();
    let requests = latencies.len() as f64;
    println!(
        "{tag:>8}: {batch:>3} event(s)/request, {clients:>3} clients: {:>8.0} events/s, {:>7.0} requests/s, 202 latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.0} commits/s, {:.1} events/commit, {:.2} ms/commit",
        events as f64 / elapsed,
        requests / elapsed,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
        commits / elapsed,
        if commits > 0.0 {
            events as f64 / commits
        } else {
            0.0
        },
        if commits > 0.0 {
            commit_micros / commits / 1000.0
        } else {
            0.0
        },
    );
}

/// The installation's intake token: the bench authenticates like a real sender.
const BENCH_TOKEN: &str = "weft_intake_bench_token";
/// The operator token, for reading the commit counters from `/metrics`.
const BENCH_ADMIN_TOKEN: &str = "weft_intake_bench_operator_token";

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run us too: do nothing then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let secs = env_or("INTAKE_BENCH_SECS", 10);
    let single_clients = env_or("INTAKE_BENCH_CLIENTS_SINGLE", 64) as usize;
    let batched_clients = env_or("INTAKE_BENCH_CLIENTS_BATCHED", 16) as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("bench.redb");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = Server::start(
            ServeConfig {
                db: db.clone(),
                listen: "127.0.0.1:0".parse().expect("literal"),
                installations: BTreeMap::from([(
                    "acme".to_owned(),
                    Some(TokenHash::of(BENCH_TOKEN)),
                )]),
                group_commit: GroupCommitConfig::default(),
                limits: IntakeLimits::default(),
                admin_token: Some(
                    weft::api::AdminToken::new(BENCH_ADMIN_TOKEN).expect("operator token"),
                ),
                conn: weft::api::ConnLimits::default(),
            },
            None,
        )
        .await
        .expect("server");
        let addr = server.local_addr();
        println!(
            "intake_throughput: {EVENT_BYTES}-byte events, durable group commits, {secs} s per variant, store {}",
            db.display()
        );
        variant(addr, "single", 1, single_clients, secs).await;
        variant(addr, "batched", 50, batched_clients, secs).await;
        server.stop().await.expect("stop");
    });
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "store file after both variants: {:.1} MiB",
        size as f64 / (1024.0 * 1024.0)
    );
}
