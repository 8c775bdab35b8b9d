//! The HTTP edge against slow, silent and greedy clients, over raw TCP sockets: heads and
//! bodies trickled byte by byte, connections that never speak, more connections than the
//! cap, an oversized head. Every bound is a correctness check ("closed within 5 s given a
//! 1 s timeout"), never a measurement.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft::api::{ConnLimits, Server};

use crate::common::{ACME_TOKEN, INSTALLATION, all_events, db_path, event, start_with_limits};

/// Far longer than any test runs: a limit a test does not exercise never fires.
const NEVER: Duration = Duration::from_secs(600);

/// What a test allows the host for a 1 s limit to take effect.
const GRACE: Duration = Duration::from_secs(5);

fn limits() -> ConnLimits {
    ConnLimits {
        header_read_timeout: NEVER,
        body_timeout: NEVER,
        idle_timeout: NEVER,
        ..ConnLimits::default()
    }
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.local_addr())
        .await
        .expect("connects")
}

/// Reads until the host closes the connection; `None` if it is still open after `within`.
/// What it sent before closing is returned.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| seen)
}

/// Writes `bytes` one at a time, `every` apart, until they run out or the host closes.
fn trickle(mut writer: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>, every: Duration) {
    tokio::spawn(async move {
        for byte in bytes {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
}

fn post_head(content_length: usize) -> String {
    format!(
        "POST /v1/installations/{INSTALLATION}/events HTTP/1.1\r\nhost: weft\r\n\
         authorization: Bearer {ACME_TOKEN}\r\ncontent-type: application/json\r\n\
         content-length: {content_length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_head_is_cut_off_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_limits(
        &db_path(&dir),
        ConnLimits {
            header_read_timeout: Duration::from_secs(1),
            ..limits()
        },
    )
    .await;
    let stream = connect(&server).await;
    let (mut reader, writer) = stream.into_split();
    // A head that never ends, one byte every 100 ms: it always looks alive.
    let mut head = b"GET /healthz HTTP/1.1\r\nx-pad: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 1000));
    trickle(writer, head, Duration::from_millis(100));
    let closed = tokio::time::timeout(GRACE, async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a trickled head kept its connection open");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start_with_limits(
        &db,
        ConnLimits {
            body_timeout: Duration::from_secs(1),
            ..limits()
        },
    )
    .await;
    let body = json!([event("slow")]).to_string();
    let stream = connect(&server).await;
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(post_head(body.len()).as_bytes())
        .await
        .unwrap();
    trickle(writer, body.into_bytes(), Duration::from_millis(100));
    let mut answer = Vec::new();
    let read = tokio::time::timeout(GRACE, async {
        let mut buf = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a trickled body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    server.stop().await.unwrap();
    assert!(all_events(&db, INSTALLATION).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_kept_alive_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_limits(
        &db_path(&dir),
        ConnLimits {
            idle_timeout: Duration::from_secs(1),
            ..limits()
        },
    )
    .await;
    // Connected and never a byte.
    let mut silent = connect(&server).await;
    assert!(
        read_until_closed(&mut silent, GRACE).await.is_some(),
        "a silent connection stayed open"
    );
    // One request answered, then nothing: the kept-alive connection goes too.
    let mut kept = connect(&server).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: weft\r\n\r\n")
        .await
        .unwrap();
    let seen = read_until_closed(&mut kept, GRACE)
        .await
        .expect("an idle kept-alive connection stayed open");
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_at_once_and_the_cap_frees_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_limits(
        &db_path(&dir),
        ConnLimits {
            max_connections: 2,
            ..limits()
        },
    )
    .await;
    // Two connections the host has taken (each answered a request), kept open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&server).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: weft\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    // A third is answered 503 (or just closed) straight away, not left hanging.
    let mut third = connect(&server).await;
    let seen = read_until_closed(&mut third, GRACE)
        .await
        .expect("a connection over the cap was kept open");
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        seen.is_empty() || seen.starts_with("HTTP/1.1 503"),
        "{seen}"
    );

    // Closing one frees its slot for the next client.
    held.pop();
    let client = reqwest::Client::new();
    let url = format!("http://{}/healthz", server.local_addr());
    let served = tokio::time::timeout(GRACE, async {
        loop {
            match client.get(&url).send().await {
                Ok(response) if response.status() == StatusCode::OK => return,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert!(served.is_ok(), "a freed slot was not reused");
    drop(held);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_head_gets_431() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_limits(&db_path(&dir), limits()).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/healthz", server.local_addr());
    let response = client
        .get(&url)
        .header("x-pad", "a".repeat(200 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    // An ordinary head still passes.
    let response = client
        .get(&url)
        .header("x-pad", "a".repeat(8 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_lets_an_in_flight_post_finish() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start_with_limits(&db, limits()).await;
    let body = json!([event("in-flight")]).to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = connect(&server).await;
    stream
        .write_all(post_head(body.len()).as_bytes())
        .await
        .unwrap();
    stream.write_all(first).await.unwrap();
    // Let the host start the request before it is told to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(rest).await.unwrap();
    let seen = read_until_closed(&mut stream, GRACE)
        .await
        .expect("the connection closes after its request");
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 202"), "{seen}");
    tokio::time::timeout(GRACE, stopping)
        .await
        .expect("stop returns")
        .unwrap()
        .unwrap();
    let ids: Vec<String> = all_events(&db, INSTALLATION)
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(ids, ["in-flight"]);
}
