//! Response header names on the wire, byte for byte: Salesforce's spelling
//! (`Sforce-NumberOfRecords`, `Content-Type`, …), not hyper's lower case, on one keep-alive
//! HTTP/1.1 connection that also carries chunked and gzip bodies.

use crate::common::{V, small};
use std::io::Read;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_emulator::{Emulator, EmulatorConfig, FaultConfig};

/// Every name the emulator may send, as Salesforce spells it.
const SPELLED: &[&str] = &[
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "Transfer-Encoding",
    "Date",
    "Sforce-Limit-Info",
    "Sforce-Locator",
    "Sforce-NumberOfRecords",
    "Retry-After",
    "Location",
    "Last-Modified",
    "ETag",
];

struct Raw {
    status: u16,
    /// Header names exactly as they came off the socket, in order.
    names: Vec<String>,
    values: Vec<String>,
    body: Vec<u8>,
}

impl Raw {
    fn get(&self, name: &str) -> Option<&str> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.values[i].as_str())
    }

    fn assert_spelled(&self, must: &[&str], what: &str) {
        for n in &self.names {
            assert!(
                SPELLED.contains(&n.as_str()),
                "{what}: header name {n:?} is not spelled as Salesforce spells it ({:?})",
                self.names
            );
        }
        for m in must {
            assert!(
                self.names.iter().any(|n| n == m),
                "{what}: no {m:?} among {:?}",
                self.names
            );
        }
    }
}

/// A raw HTTP/1.1 connection: requests written by hand, responses parsed by hand.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn fill(&mut self) {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed a keep-alive connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill().await;
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = self.take(i + 2).await;
                return String::from_utf8_lossy(&l[..i]).into_owned();
            }
            self.fill().await;
        }
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Raw {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: emulator\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        self.stream.write_all(req.as_bytes()).await.expect("write");
        self.stream.write_all(body).await.expect("write body");
        let status_line = self.line().await;
        let status: u16 = status_line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let (mut names, mut values) = (Vec::new(), Vec::new());
        loop {
            let l = self.line().await;
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("header line");
            names.push(n.to_string());
            values.push(v.trim().to_string());
        }
        let find = |name: &str| {
            names
                .iter()
                .position(|n: &String| n.eq_ignore_ascii_case(name))
                .map(|i| values[i].clone())
        };
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let size = usize::from_str_radix(self.line().await.trim(), 16).expect("chunk size");
                if size == 0 {
                    assert_eq!(self.line().await, "", "no trailers");
                    break;
                }
                body.extend(self.take(size).await);
                assert_eq!(self.take(2).await, b"\r\n");
            }
            body
        } else {
            let n: usize = find("content-length")
                .expect("a length")
                .parse()
                .expect("length");
            self.take(n).await
        };
        Raw {
            status,
            names,
            values,
            body,
        }
    }
}

fn json(r: &Raw) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("json body")
}

#[tokio::test]
async fn response_header_names_are_spelled_as_salesforce_spells_them() {
    let org = Emulator::start(EmulatorConfig {
        accounts: 2_500,
        ..small()
    })
    .await
    .expect("start");
    let c = org.credentials().clone();
    let mut conn = Conn::open(org.addr()).await;

    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        c.client_id, c.client_secret
    );
    let r = conn
        .send(
            "POST",
            "/services/oauth2/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200);
    r.assert_spelled(&["Content-Type", "Content-Length", "Date"], "token");
    let token = json(&r)["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];

    let r = conn
        .send(
            "GET",
            &format!("/services/data/v{V}/query?q=SELECT+Id+FROM+Account+LIMIT+3"),
            &auth,
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
    r.assert_spelled(&["Content-Type", "Sforce-Limit-Info"], "query");
    assert!(
        r.get("Sforce-Limit-Info")
            .is_some_and(|v| v.starts_with("api-usage="))
    );
    let id = json(&r)["records"][0]["Id"]
        .as_str()
        .expect("id")
        .to_string();

    let r = conn
        .send("GET", &format!("/services/data/v{V}/limits"), &auth, b"")
        .await;
    assert_eq!(r.status, 200);
    r.assert_spelled(&["Content-Type", "Sforce-Limit-Info"], "limits");

    let r = conn
        .send(
            "GET",
            &format!("/services/data/v{V}/sobjects/Account/{id}"),
            &auth,
            b"",
        )
        .await;
    r.assert_spelled(&["Last-Modified"], "record");
    let r = conn
        .send(
            "POST",
            &format!("/services/data/v{V}/sobjects/Account"),
            &[auth[0], ("Content-Type", "application/json")],
            br#"{"Name":"Spelled Inc."}"#,
        )
        .await;
    assert_eq!(r.status, 201);
    r.assert_spelled(&["Location"], "create");

    // Errors: unknown object, bad session, and an injected 429 with Retry-After.
    let r = conn
        .send(
            "GET",
            &format!("/services/data/v{V}/sobjects/Nope__c/describe"),
            &auth,
            b"",
        )
        .await;
    assert_eq!(r.status, 404);
    r.assert_spelled(&["Content-Type", "Sforce-Limit-Info"], "404");
    let r = conn
        .send(
            "GET",
            &format!("/services/data/v{V}/limits"),
            &[("Authorization", "Bearer nope")],
            b"",
        )
        .await;
    assert_eq!(r.status, 401);
    r.assert_spelled(&["Content-Type"], "401");
    org.set_faults(FaultConfig {
        error_429_rate: 1.0,
        retry_after_secs: 3,
        ..Default::default()
    });
    let r = conn
        .send("GET", &format!("/services/data/v{V}/limits"), &auth, b"")
        .await;
    org.set_faults(FaultConfig::default());
    assert_eq!(r.status, 429);
    r.assert_spelled(&["Retry-After", "Sforce-Limit-Info"], "429");
    assert_eq!(r.get("Retry-After"), Some("3"));

    // Bulk results, gzip and chunked, paged by the locator, all on the same connection.
    let r = conn
        .send(
            "POST",
            &format!("/services/data/v{V}/jobs/query"),
            &[auth[0], ("Content-Type", "application/json")],
            br#"{"operation":"query","query":"SELECT Id, Name FROM Account"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let job = json(&r)["id"].as_str().expect("job").to_string();
    for _ in 0..200 {
        let r = conn
            .send(
                "GET",
                &format!("/services/data/v{V}/jobs/query/{job}"),
                &auth,
                b"",
            )
            .await;
        if json(&r)["state"] == "JobComplete" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let total = org
        .query("SELECT COUNT() FROM Account", false)
        .expect("count")[0]["totalSize"]
        .as_u64()
        .expect("n");
    let (mut rows, mut pages) = (0u64, 0);
    let mut locator = String::new();
    loop {
        let q = if locator.is_empty() {
            "maxRecords=1000".to_string()
        } else {
            format!("maxRecords=1000&locator={locator}")
        };
        let r = conn
            .send(
                "GET",
                &format!("/services/data/v{V}/jobs/query/{job}/results?{q}"),
                &[auth[0], ("Accept-Encoding", "gzip")],
                b"",
            )
            .await;
        assert_eq!(r.status, 200);
        r.assert_spelled(
            &[
                "Content-Type",
                "Content-Encoding",
                "Transfer-Encoding",
                "Sforce-Locator",
                "Sforce-NumberOfRecords",
                "Sforce-Limit-Info",
            ],
            "bulk results",
        );
        let mut csv = String::new();
        flate2::read::GzDecoder::new(&r.body[..])
            .read_to_string(&mut csv)
            .expect("gzip");
        let page_rows = csv.lines().count() as u64 - 1;
        assert_eq!(
            r.get("Sforce-NumberOfRecords"),
            Some(page_rows.to_string().as_str())
        );
        rows += page_rows;
        pages += 1;
        locator = r.get("Sforce-Locator").expect("locator").to_string();
        if locator == "null" {
            break;
        }
    }
    assert_eq!(rows, total);
    assert_eq!(pages, total.div_ceil(1000));
}
