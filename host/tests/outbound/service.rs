//! The running service: installations created, changed and deleted through the admin API
//! of the real `weft serve` binary, against the emulator, with the real acme-accounts
//! plugin — no restart between changes — and tenant tokens that reach only their own
//! installation.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{ADMIN_TOKEN, KEY, accounts, acme_org, bearer};
use crate::kill::company_event;

/// The key the service seals API-given secrets with.
const SECRETS_KEY: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

pub(crate) struct Service {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `weft serve` on `db` with no installation file: everything comes through the API.
/// Its log goes to `log`.
pub(crate) fn spawn_service(db: &Path, dir: &Path, log: &Path) -> Service {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["serve", "--listen", "127.0.0.1:0", "--worker-threads", "2"])
        .arg("--db")
        .arg(db)
        .arg("--status-file")
        .arg(dir.join("status.json"))
        .env("WEFT_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("WEFT_SECRETS_KEY", SECRETS_KEY)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("weft serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("weft serve prints its address");
    let ready: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("weft serve printed {line:?}: {e}"));
    let addr = ready["listening"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Service { child, addr }
}

/// The document of an outbound installation `id` on `org`, as a vendor would post it.
fn document(id: &str, org: &weft_emulator::EmulatorHandle, secret_file: &Path) -> Value {
    outbound_document(
        id,
        org.base_url(),
        &org.credentials().client_id,
        secret_file,
    )
}

/// An outbound installation `id` of the org at `login_url` that `client_id` and the
/// secret in `secret_file` log in to, with the real acme-accounts plugin.
pub(crate) fn outbound_document(
    id: &str,
    login_url: &str,
    client_id: &str,
    secret_file: &Path,
) -> Value {
    json!({
        "id": id,
        "salesforce": {
            "login_url": login_url,
            "auth": "client_credentials",
            "client_id": client_id,
            "client_secret_file": secret_file,
            "gzip_requests": false,
        },
        "plugin": {"component": weft_tests::plugin_wasm("acme-accounts")},
        "outbound": {
            "retry": {"base_ms": 50, "max_ms": 500},
            "objects": {"Account": {"external_id": KEY}},
        },
    })
}

/// Every response the test reads, kept to scan for secrets at the end.
#[derive(Default)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    seen: Vec<String>,
}

impl Api {
    pub(crate) fn new(addr: SocketAddr) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            seen: Vec::new(),
        }
    }

    pub(crate) async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.headers(bearer(token));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        if method == reqwest::Method::GET {
            self.seen.push(text.clone());
        }
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    pub(crate) async fn admin(
        &mut self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call(method, path, Some(ADMIN_TOKEN), headers, body)
            .await
    }

    pub(crate) async fn post_event(
        &mut self,
        installation: &str,
        token: &str,
        event: Value,
    ) -> StatusCode {
        let path = format!("/v1/installations/{installation}/events");
        self.call(
            reqwest::Method::POST,
            &path,
            Some(token),
            &[],
            Some(json!([event])),
        )
        .await
        .0
    }

    /// `PUT` of raw bytes (a plugin component) with the operator token.
    pub(crate) async fn admin_put_bytes(
        &mut self,
        path: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET /metrics` with the operator token, as text.
    pub(crate) async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics text")
    }

    pub(crate) async fn token(&mut self, installation: &str) -> String {
        let (status, headers, body) = self
            .admin(
                reqwest::Method::POST,
                &format!("/v1/installations/{installation}/token"),
                &[],
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        body["token"].as_str().expect("token").to_owned()
    }
}

pub(crate) async fn wait_for_account(
    org: &weft_emulator::EmulatorHandle,
    key: &str,
    what: &str,
) -> Value {
    for _ in 0..300 {
        if let Some(account) = accounts(org).get(key) {
            return account.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: account {key} never reached Salesforce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_created_changed_and_deleted_through_the_api_without_a_restart() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, &org.credentials().client_secret).expect("secret file");
    let db = dir.path().join("weft.redb");
    let log = dir.path().join("weft.log");
    let host = spawn_service(&db, dir.path(), &log);
    let mut api = Api::new(host.addr);
    use reqwest::Method;

    // Create: checked, saved at version 1, running at once.
    let doc = document("tenant-a", &org, &secret);
    let (status, headers, body) = api
        .admin(Method::POST, "/v1/installations", &[], Some(doc.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(
        (body["version"].as_u64(), body["running_version"].as_u64()),
        (Some(1), Some(1))
    );
    let (status, _, body) = api
        .admin(Method::POST, "/v1/installations", &[], Some(doc.clone()))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Its own token, shown once; events flow to the org.
    let token = api.token("tenant-a").await;
    assert_eq!(
        api.post_event("tenant-a", &token, company_event("a1"))
            .await,
        StatusCode::ACCEPTED
    );
    wait_for_account(&org, "K-a1", "first event").await;

    // The record: version 2 after the token, secrets only as references.
    let (status, headers, record) = api
        .admin(Method::GET, "/v1/installations/tenant-a", &[], None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(
        record["spec"]["salesforce"]["client_secret_file"],
        json!(secret)
    );

    // A change needs the version it was made against.
    let patch = json!({"outbound": {"batch_size": 50}});
    let (status, _, body) = api
        .admin(
            Method::PATCH,
            "/v1/installations/tenant-a",
            &[],
            Some(patch.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED, "{body}");
    let (status, _, body) = api
        .admin(
            Method::PATCH,
            "/v1/installations/tenant-a",
            &[("if-match", "\"1\"")],
            Some(patch.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");

    // Refused changes name the key or the field, and save nothing.
    let (status, _, body) = api
        .admin(
            Method::PATCH,
            "/v1/installations/tenant-a",
            &[("if-match", "\"2\"")],
            Some(json!({"outbound": {"batch_size": 0}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["key"], "outbound.batch_size", "{body}");
    let (status, _, body) = api
        .admin(
            Method::PATCH,
            "/v1/installations/tenant-a",
            &[("if-match", "\"2\"")],
            Some(json!({"outbound": {"objects": {"Account": {"external_id": "Nope_Id__c"}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "org_check_failed", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Nope_Id__c")),
        "{body}"
    );
    let (_, _, unchanged) = api
        .admin(Method::GET, "/v1/installations/tenant-a", &[], None)
        .await;
    assert_eq!(unchanged["version"], 2);
    assert_eq!(unchanged["spec"], record["spec"]);

    // A valid change runs at once: the soft-delete policy added here handles the next
    // delete event, no restart.
    let (status, headers, body) = api
        .admin(
            Method::PATCH,
            "/v1/installations/tenant-a",
            &[("if-match", "\"2\"")],
            Some(json!({"outbound": {"objects": {"Account": {
                "delete": {"policy": "soft_delete", "field": "Deleted__c", "value": true}
            }}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["etag"], "\"3\"");
    assert_eq!(body["running_version"], 3);
    let mut delete = company_event("a1");
    delete["id"] = json!("a1-delete");
    delete["operation"] = json!("delete");
    assert_eq!(
        api.post_event("tenant-a", &token, delete).await,
        StatusCode::ACCEPTED
    );
    let mut soft_deleted = false;
    for _ in 0..300 {
        if accounts(&org)
            .get("K-a1")
            .is_some_and(|a| a["Deleted__c"] == json!(true))
        {
            soft_deleted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        soft_deleted,
        "the changed delete policy applied without a restart"
    );

    // What the API created survives a crash of the host.
    drop(host);
    let host = spawn_service(&db, dir.path(), &log);
    let mut api = Api {
        seen: api.seen,
        ..Api::new(host.addr)
    };
    assert_eq!(
        api.post_event("tenant-a", &token, company_event("a2"))
            .await,
        StatusCode::ACCEPTED
    );
    wait_for_account(&org, "K-a2", "after the restart").await;
    let (_, _, listed) = api.admin(Method::GET, "/v1/installations", &[], None).await;
    assert_eq!(listed["installations"][0]["version"], 3, "{listed}");

    // Delete: the installation stops and its routes answer as an unknown id would.
    let (status, _, body) = api
        .admin(
            Method::DELETE,
            "/v1/installations/tenant-a?purge=true",
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["purged"]["events"].as_u64().is_some_and(|n| n >= 3),
        "{body}"
    );
    assert_eq!(
        api.post_event("tenant-a", &token, company_event("a3"))
            .await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, _) = api
        .admin(Method::GET, "/v1/installations/tenant-a", &[], None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let metrics = api.metrics().await;
    assert!(
        !metrics.contains(r#"installation="tenant-a""#),
        "a deleted installation's series are gone:\n{metrics}"
    );

    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let secret = &org.credentials().client_secret;
    assert!(
        !log.contains(secret.as_str()),
        "the client secret reached the log"
    );
    assert!(
        !log.contains(&token),
        "the installation token reached the log"
    );
    for body in &api.seen {
        assert!(
            !body.contains(secret.as_str()),
            "a GET answered the client secret: {body}"
        );
        assert!(!body.contains(&token), "a GET answered the token: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_token_reaches_only_its_own_installation() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, &org.credentials().client_secret).expect("secret file");
    let host = spawn_service(
        &dir.path().join("weft.redb"),
        dir.path(),
        &dir.path().join("log"),
    );
    let mut api = Api::new(host.addr);
    use reqwest::Method;
    for id in ["tenant-a", "tenant-b"] {
        let (status, _, body) = api
            .admin(
                Method::POST,
                "/v1/installations",
                &[],
                Some(document(id, &org, &secret)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let a = api.token("tenant-a").await;
    let b = api.token("tenant-b").await;
    assert_eq!(
        api.post_event("tenant-b", &b, company_event("b1")).await,
        StatusCode::ACCEPTED
    );

    // A's token on anything of B answers exactly as an id nobody has.
    let b_routes = [
        (
            Method::POST,
            "/v1/installations/tenant-b/events",
            Some(json!([company_event("x")])),
        ),
        (Method::GET, "/v1/installations/tenant-b/events/b1", None),
    ];
    for (method, path, body) in &b_routes {
        let (status, _, answer) = api
            .call(method.clone(), path, Some(&a), &[], body.clone())
            .await;
        let unknown = path.replace("tenant-b", "tenant-zz");
        let (_, _, unknown_answer) = api
            .call(
                method.clone(),
                &unknown,
                Some(ADMIN_TOKEN),
                &[],
                body.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_eq!(
            answer["error"], unknown_answer["error"],
            "{method} {path} with A's token looks like an unknown id"
        );
    }
    // The operator's routes are not a tenant's, and no route but /healthz is open.
    let operator_routes = [
        (Method::GET, "/v1/installations"),
        (Method::POST, "/v1/installations"),
        (Method::GET, "/v1/installations/tenant-a"),
        (Method::PATCH, "/v1/installations/tenant-a"),
        (Method::DELETE, "/v1/installations/tenant-a"),
        (Method::POST, "/v1/installations/tenant-a/token"),
        (Method::POST, "/v1/installations/tenant-a/pause"),
        (Method::POST, "/v1/installations/tenant-a/resume"),
        (Method::POST, "/v1/installations/tenant-a/sync"),
        (Method::GET, "/v1/admin/dlq"),
        (Method::GET, "/metrics"),
        (Method::GET, "/v1/plugins"),
        (Method::PUT, "/v1/plugins/acme/1"),
        (Method::GET, "/v1/plugins/acme/1"),
        (Method::DELETE, "/v1/plugins/acme/1"),
    ];
    for (method, path) in &operator_routes {
        for token in [Some(a.as_str()), None] {
            let (status, _, _) = api
                .call(method.clone(), path, token, &[], Some(json!({})))
                .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
        }
    }
    for (method, path, body) in &b_routes {
        let (status, _, _) = api
            .call(method.clone(), path, None, &[], body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token"
        );
    }
    let (status, _, _) = api.call(Method::GET, "/healthz", None, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    // B's own token reads B's event.
    let (status, _, body) = api
        .call(
            Method::GET,
            "/v1/installations/tenant-b/events/b1",
            Some(&b),
            &[],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A fresh token replaces the old one at once.
    let b2 = api.token("tenant-b").await;
    assert_eq!(
        api.post_event("tenant-b", &b, company_event("b2")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.post_event("tenant-b", &b2, company_event("b2")).await,
        StatusCode::ACCEPTED
    );
}

/// Where an event the installation accepted is: `accepted`, `processed` or `dlq`.
async fn event_state(api: &mut Api, installation: &str, token: &str, event: &str) -> Value {
    let path = format!("/v1/installations/{installation}/events/{event}");
    api.call(reqwest::Method::GET, &path, Some(token), &[], None)
        .await
        .2["status"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_installation_accepts_events_and_delivers_them_once_resumed() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, &org.credentials().client_secret).expect("secret file");
    let host = spawn_service(
        &dir.path().join("weft.redb"),
        dir.path(),
        &dir.path().join("log"),
    );
    let mut api = Api::new(host.addr);
    use reqwest::Method;
    let (status, _, body) = api
        .admin(
            Method::POST,
            "/v1/installations",
            &[],
            Some(document("tenant-p", &org, &secret)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = api.token("tenant-p").await;
    let (_, _, healthy) = api
        .call(
            Method::GET,
            "/v1/installations/tenant-p/status",
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(healthy["health"]["state"], "healthy", "{healthy}");

    let (status, headers, paused) = api
        .admin(
            Method::POST,
            "/v1/installations/tenant-p/pause",
            &[],
            Some(json!({"note": "customer's year-end freeze"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(
        headers["etag"], "\"2\"",
        "a pause does not version the spec"
    );
    assert_eq!(
        api.post_event("tenant-p", &token, company_event("p1"))
            .await,
        StatusCode::ACCEPTED
    );
    let (status, _, _) = api
        .admin(Method::POST, "/v1/installations/tenant-p/sync", &[], None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing runs while paused");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        event_state(&mut api, "tenant-p", &token, "p1").await,
        "accepted"
    );
    assert!(
        !accounts(&org).contains_key("K-p1"),
        "nothing was written while paused"
    );
    let (_, _, status_body) = api
        .call(
            Method::GET,
            "/v1/installations/tenant-p/status",
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(status_body["health"]["state"], "paused", "{status_body}");
    assert_eq!(
        status_body["health"]["reason"],
        "customer's year-end freeze"
    );
    assert_eq!(status_body["outbound"]["backlog"], 1, "{status_body}");
    // The same figures as Prometheus series.
    let metrics = api.metrics().await;
    for series in [
        r#"weft_installation_health{installation="tenant-p",state="paused"} 1"#,
        r#"weft_installation_health{installation="tenant-p",state="healthy"} 0"#,
        r#"weft_outbound_backlog_events{installation="tenant-p"} 1"#,
        r#"weft_dlq_open_entries{installation="tenant-p"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} in\n{metrics}"
        );
    }
    let (_, _, listed) = api
        .admin(Method::GET, "/v1/installations?paused=true", &[], None)
        .await;
    assert_eq!(listed["installations"][0]["id"], "tenant-p", "{listed}");

    let (status, _, body) = api
        .admin(Method::POST, "/v1/installations/tenant-p/resume", &[], None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_account(&org, "K-p1", "after the resume").await;
    // The account is in the org a moment before the host records the event as processed.
    let mut state = Value::Null;
    for _ in 0..100 {
        state = event_state(&mut api, "tenant-p", &token, "p1").await;
        if state == "processed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "processed");
    let (status, _, _) = api
        .admin(Method::POST, "/v1/installations/tenant-p/sync", &[], None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, _, status_body) = api
        .call(
            Method::GET,
            "/v1/installations/tenant-p/status",
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(status_body["health"]["state"], "healthy", "{status_body}");
    assert_eq!(status_body["outbound"]["backlog"], 0, "{status_body}");
    let metrics = api.metrics().await;
    for series in [
        r#"weft_installation_health{installation="tenant-p",state="healthy"} 1"#,
        r#"weft_outbound_backlog_events{installation="tenant-p"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} in\n{metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("weft_scheduler_turns_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let (_, _, audit) = api
        .call(
            Method::GET,
            "/v1/installations/tenant-p/audit",
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(1),
        "{audit}"
    );
}

/// `weft apply` against the running host; its stdout line (or stderr) and success.
fn weft_apply(file: &Path, addr: SocketAddr) -> (bool, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["apply", "-f"])
        .arg(file)
        .args(["--url", &format!("http://{addr}")])
        .env("WEFT_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("weft apply runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    (
        output.status.success(),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_apply_creates_updates_and_leaves_an_unchanged_file_alone() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let host = spawn_service(
        &dir.path().join("weft.redb"),
        dir.path(),
        &dir.path().join("log"),
    );
    let file = crate::kill::write_config(dir.path(), &org);
    let (ok, line, stderr) = weft_apply(&file, host.addr);
    assert!(ok, "{stderr}");
    assert_eq!(
        (line["applied"].as_str(), line["version"].as_u64()),
        (Some("created"), Some(1))
    );
    let (ok, line, _) = weft_apply(&file, host.addr);
    assert!(ok);
    assert_eq!(
        (line["applied"].as_str(), line["version"].as_u64()),
        (Some("unchanged"), Some(1))
    );

    // Relative paths (the secret file) resolved against the file's directory: it syncs.
    let mut api = Api::new(host.addr);
    assert_eq!(
        api.post_event(
            crate::common::INSTALLATION,
            crate::common::INTAKE_TOKEN,
            company_event("ap1")
        )
        .await,
        StatusCode::ACCEPTED
    );
    wait_for_account(&org, "K-ap1", "applied installation").await;

    let text = std::fs::read_to_string(&file).expect("file");
    std::fs::write(
        &file,
        text.replace("idle_poll_ms = 20", "idle_poll_ms = 30"),
    )
    .expect("edit");
    let (ok, line, stderr) = weft_apply(&file, host.addr);
    assert!(ok, "{stderr}");
    assert_eq!(
        (line["applied"].as_str(), line["version"].as_u64()),
        (Some("updated"), Some(2))
    );

    let text = std::fs::read_to_string(&file).expect("file");
    std::fs::write(
        &file,
        text.replace("field = \"Deleted__c\"", "field = \"Gone__c\""),
    )
    .expect("edit");
    let (ok, _, stderr) = weft_apply(&file, host.addr);
    assert!(!ok, "a field the org lacks is refused");
    assert!(stderr.contains("Gone__c"), "{stderr}");
    let (_, _, record) = api
        .admin(reqwest::Method::GET, "/v1/installations/acme", &[], None)
        .await;
    assert_eq!(record["version"], 2, "nothing saved: {record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_credential_is_tried_first_sealed_at_rest_and_never_shown() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("client_secret");
    let secret = org.credentials().client_secret.clone();
    std::fs::write(&secret_file, &secret).expect("secret file");
    let (db, log) = (dir.path().join("weft.redb"), dir.path().join("log"));
    let host = spawn_service(&db, dir.path(), &log);
    let mut api = Api::new(host.addr);
    use reqwest::Method;
    let (status, _, body) = api
        .admin(
            Method::POST,
            "/v1/installations",
            &[],
            Some(document("tenant-c", &org, &secret_file)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = api.token("tenant-c").await;

    // A secret the org refuses: 422, the old credential stays and sync goes on.
    let wrong = "not-the-secret-at-all";
    let (status, _, body) = api
        .admin(
            Method::PUT,
            "/v1/installations/tenant-c/credentials",
            &[],
            Some(json!({"client_secret": wrong})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "credential_refused", "{body}");
    assert!(
        !body.to_string().contains(wrong),
        "the refusal does not echo the secret"
    );
    assert_eq!(
        api.post_event("tenant-c", &token, company_event("c1"))
            .await,
        StatusCode::ACCEPTED
    );
    wait_for_account(&org, "K-c1", "after a refused rotation").await;
    let (_, _, record) = api
        .admin(Method::GET, "/v1/installations/tenant-c", &[], None)
        .await;
    assert_eq!(record["version"], 2, "nothing saved: {record}");

    // The right secret, given through the API: sealed, used, and the file no longer needed.
    let (status, _, body) = api
        .admin(
            Method::PUT,
            "/v1/installations/tenant-c/credentials",
            &[],
            Some(json!({"client_secret": secret})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["spec"]["salesforce"]["client_secret_sealed"], "(sealed)",
        "{body}"
    );
    assert!(
        body["spec"]["salesforce"]
            .get("client_secret_file")
            .is_none(),
        "{body}"
    );
    std::fs::remove_file(&secret_file).expect("secret file removed");
    drop(host);
    let host = spawn_service(&db, dir.path(), &log);
    let mut api = Api {
        seen: api.seen,
        ..Api::new(host.addr)
    };
    assert_eq!(
        api.post_event("tenant-c", &token, company_event("c2"))
            .await,
        StatusCode::ACCEPTED
    );
    wait_for_account(&org, "K-c2", "with the sealed credential, after a restart").await;
    let (_, _, record) = api
        .admin(Method::GET, "/v1/installations/tenant-c", &[], None)
        .await;
    assert_eq!(record["version"], 3, "{record}");
    drop(host);

    let stored = std::fs::read(&db).expect("store file");
    let needle = secret.as_bytes();
    assert!(
        !stored.windows(needle.len()).any(|w| w == needle),
        "the secret is not in the store file in the clear"
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log.contains(secret.as_str()) && !log.contains(wrong),
        "a secret reached the log"
    );
    for body in &api.seen {
        assert!(
            !body.contains(secret.as_str()),
            "a GET answered the secret: {body}"
        );
    }
}

/// Regression: `weft serve` stopped its installations one after the other, and each sat
/// out its transport's backoff first — a `Retry-After` of minutes held SIGTERM that long,
/// times the installations waiting. Now every installation is told at once, its waits end
/// and nothing more is sent: the host exits at once, and the interrupted events are
/// neither dead-lettered nor counted as an attempt — the next run delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_backoffs_at_once_and_the_interrupted_events_are_sent_by_the_next_run() {
    use reqwest::Method;
    const TENANTS: [&str; 3] = ["tenant-a", "tenant-b", "tenant-c"];
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, &org.credentials().client_secret).expect("secret file");
    let db = dir.path().join("weft.redb");
    let log = dir.path().join("weft.log");
    let mut host = spawn_service(&db, dir.path(), &log);
    let mut api = Api::new(host.addr);
    let mut tokens = Vec::new();
    for tenant in TENANTS {
        let (status, _, body) = api
            .admin(
                Method::POST,
                "/v1/installations",
                &[],
                Some(document(tenant, &org, &secret)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let token = api.token(tenant).await;
        let first = format!("{tenant}-1");
        assert_eq!(
            api.post_event(tenant, &token, company_event(&first)).await,
            StatusCode::ACCEPTED
        );
        wait_for_account(&org, &format!("K-{first}"), "before the outage").await;
        tokens.push(token);
    }

    // The org now asks every request to come back in ten minutes.
    org.set_faults(weft_emulator::FaultConfig {
        error_429_rate: 1.0,
        retry_after_secs: 600,
        ..Default::default()
    });
    for (tenant, token) in TENANTS.iter().zip(&tokens) {
        let second = format!("{tenant}-2");
        assert_eq!(
            api.post_event(tenant, token, company_event(&second)).await,
            StatusCode::ACCEPTED
        );
    }
    let retrying = |text: &str| text.matches("retrying").count();
    let started = std::time::Instant::now();
    while retrying(&std::fs::read_to_string(&log).unwrap_or_default()) < TENANTS.len() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the installations never met the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let terminated = Command::new("kill")
        .args(["-TERM", &host.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(terminated.success());
    let asked = std::time::Instant::now();
    let exited = loop {
        if let Some(status) = host.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "weft serve still running 20 s after SIGTERM: it waits out the backoff"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exited.success(), "{exited:?}");
    drop(host);
    {
        use weft::store::Store;
        let store = weft::store::RedbStore::open(&db).expect("store reopens");
        for tenant in TENANTS {
            let states = store.retry_states(tenant).expect("retry states");
            assert!(
                states.is_empty(),
                "{tenant}: a stop counted as an attempt: {states:?}"
            );
        }
        let dlq = store.dlq_list(&Default::default()).expect("dlq");
        assert!(dlq.entries.is_empty(), "{:?}", dlq.entries);
    }

    // The next run, with the org healthy again, delivers every interrupted event.
    org.set_faults(weft_emulator::FaultConfig::default());
    let host = spawn_service(&db, dir.path(), &log);
    let mut api = Api::new(host.addr);
    for (tenant, token) in TENANTS.iter().zip(&tokens) {
        let second = format!("{tenant}-2");
        wait_for_account(&org, &format!("K-{second}"), "after the restart").await;
        let mut state = Value::Null;
        for _ in 0..200 {
            state = event_state(&mut api, tenant, token, &second).await;
            if state == "processed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(state, "processed", "{tenant}: {second}");
    }
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("dead-lettered"), "{log}");
}
