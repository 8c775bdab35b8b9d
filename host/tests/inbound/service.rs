//! Inbound under `weft serve`, for an installation created through the admin API: it
//! backfills at once; a `PATCH` that adds a field makes the next pass deliver it for every
//! record, without a restart; a `PATCH` naming a field the org lacks is refused with the
//! field named and nothing saved.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{latest, org, org_rows, sink_lines};

const OPERATOR: &str = "operator-token-for-the-service-tests";

struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> (Host, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--db")
        .arg(dir.join("weft.redb"))
        .arg("--status-file")
        .arg(dir.join("status.json"))
        .env("WEFT_ADMIN_TOKEN", OPERATOR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("weft serve prints its address");
    let ready: Value = serde_json::from_str(&line).expect("address line");
    let addr = ready["listening"].as_str().expect("address").to_owned();
    (Host(child), addr)
}

/// Waits until every live Account's latest delivery satisfies `done`.
async fn wait_for_every_account(
    dir: &Path,
    org: &weft_emulator::EmulatorHandle,
    what: &str,
    done: impl Fn(&Value) -> bool,
) {
    let ids = org_rows(org, "Account", false);
    for _ in 0..400 {
        let delivered = latest(&sink_lines(dir, "Account"));
        if ids.keys().all(|id| delivered.get(id).is_some_and(&done)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not every Account was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_created_by_api_backfills_and_a_patched_field_reaches_every_record() {
    let org = org(40, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, &org.credentials().client_secret).expect("secret");
    let (_host, addr) = serve(dir.path());
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("http://{addr}{path}"))
            .bearer_auth(OPERATOR)
    };
    let document = json!({
        "id": "tenant-in",
        "salesforce": {
            "login_url": org.base_url(),
            "auth": "client_credentials",
            "client_id": org.credentials().client_id,
            "client_secret_file": secret,
        },
        "throttle": {"schedule": {"time_zone": "UTC", "default_ceiling_percent": 100.0}},
        "plugin": {"component": weft_tests::plugin_wasm("golden-dedup")},
        "inbound": {
            "poll_secs": 1,
            "objects": {"Account": {"fields": ["Name"]}},
            "sink": {"kind": "ndjson", "dir": dir.path().join("out")},
        },
    });
    let created = admin(reqwest::Method::POST, "/v1/installations")
        .json(&document)
        .send()
        .await
        .expect("create");
    assert_eq!(
        created.status(),
        201,
        "{}",
        created.text().await.unwrap_or_default()
    );
    wait_for_every_account(dir.path(), &org, "backfill", |_| true).await;

    // A field the org lacks: refused with its name, nothing saved.
    let refused = admin(reqwest::Method::PATCH, "/v1/installations/tenant-in")
        .header("if-match", "1")
        .json(&json!({"inbound": {"objects": {"Account": {"fields": ["Name", "Nope__c"]}}}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(refused.status(), 422);
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Nope__c")),
        "{body}"
    );
    assert_eq!(
        body["objects"][0]["missing_fields"],
        json!(["Nope__c"]),
        "{body}"
    );

    // A field the org has: the next pass delivers it for every existing record.
    let changed = admin(reqwest::Method::PATCH, "/v1/installations/tenant-in")
        .header("if-match", "1")
        .json(&json!({"inbound": {"objects": {"Account": {"fields": ["Name", "Phone"]}}}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(
        changed.status(),
        200,
        "{}",
        changed.text().await.unwrap_or_default()
    );
    wait_for_every_account(dir.path(), &org, "added field", |line| {
        line["output"][0]["fields"].get("Phone").is_some()
    })
    .await;
    let shown: Value = admin(reqwest::Method::GET, "/v1/installations/tenant-in")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (shown["version"].as_u64(), shown["running_version"].as_u64()),
        (Some(2), Some(2))
    );
}

async fn status(http: &reqwest::Client, addr: &str, id: &str) -> Value {
    http.get(format!("http://{addr}/v1/installations/{id}/status"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// Polls the status until `done` holds.
async fn wait_for_status(
    http: &reqwest::Client,
    addr: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        last = status(http, addr, id).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ongoing_credential_takes_over_once_every_backfill_is_complete() {
    let org = org(30, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, &org.credentials().client_secret).expect("secret");
    let wrong = dir.path().join("wrong-refresh-token");
    std::fs::write(&wrong, "not-a-refresh-token").expect("token file");
    let right = dir.path().join("refresh-token");
    std::fs::write(&right, &org.credentials().refresh_token).expect("token file");
    let (_host, addr) = serve(dir.path());
    let http = reqwest::Client::new();
    let document = json!({
        "id": "tenant-cred",
        "salesforce": {
            "login_url": org.base_url(),
            "auth": "client_credentials",
            "client_id": org.credentials().client_id,
            "client_secret_file": secret,
            "ongoing": {"auth": "refresh_token", "refresh_token_file": wrong},
        },
        "throttle": {"schedule": {"time_zone": "UTC", "default_ceiling_percent": 100.0}},
        "plugin": {"component": weft_tests::plugin_wasm("golden-dedup")},
        "inbound": {
            "poll_secs": 1,
            "objects": {"Account": {"fields": ["Name"]}},
            "sink": {"kind": "ndjson", "dir": dir.path().join("out")},
        },
    });
    let created = http
        .post(format!("http://{addr}/v1/installations"))
        .bearer_auth(OPERATOR)
        .json(&document)
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);

    // The backfill runs on the setup credential; the ongoing one is refused, so the setup
    // one stays and the status says why.
    let refused = wait_for_status(&http, &addr, "tenant-cred", "a refused switch", |s| {
        s["credential"]["switch_error"].is_string()
    })
    .await;
    assert_eq!(refused["credential"]["in_use"], "setup", "{refused}");
    assert_eq!(refused["health"]["state"], "degraded", "{refused}");
    wait_for_every_account(dir.path(), &org, "backfill", |_| true).await;

    // With a working ongoing credential, the next caught-up pass switches to it.
    let grants_before = org
        .stats()
        .tokens_by_grant
        .get("refresh_token")
        .copied()
        .unwrap_or(0);
    let changed = http
        .patch(format!("http://{addr}/v1/installations/tenant-cred"))
        .bearer_auth(OPERATOR)
        .header("if-match", "1")
        .json(&json!({"salesforce": {"ongoing": {"refresh_token_file": right}}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(changed.status(), 200);
    let switched = wait_for_status(&http, &addr, "tenant-cred", "the switch", |s| {
        s["credential"]["in_use"] == "ongoing"
    })
    .await;
    assert!(
        switched["credential"]["switch_error"].is_null(),
        "{switched}"
    );
    let grants = org
        .stats()
        .tokens_by_grant
        .get("refresh_token")
        .copied()
        .unwrap_or(0);
    assert!(
        grants >= grants_before + 2,
        "the new credential was tried, then the rebuilt client logged in with it ({grants_before} → {grants})"
    );
    // Incremental passes go on with it.
    let more = wait_for_status(
        &http,
        &addr,
        "tenant-cred",
        "a pass on the ongoing credential",
        |s| {
            s["inbound"]["Account"]["last_success"].is_string()
                && s["credential"]["in_use"] == "ongoing"
        },
    )
    .await;
    assert_eq!(more["health"]["state"], "healthy", "{more}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_backfill_stops_within_a_page_and_resumes_from_its_checkpoint() {
    let org = org(4_000, 0).await;
    // 4,320,000 a day at a 10% ceiling: five requests a second, so the backfill's 20 pages
    // of 200 take a few seconds and the pause lands in the middle of them.
    org.set_api_daily_max(4_320_000);
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, &org.credentials().client_secret).expect("secret");
    let (_host, addr) = serve(dir.path());
    let http = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("http://{addr}{path}"))
            .bearer_auth(OPERATOR)
    };
    let document = json!({
        "id": "tenant-pause",
        "salesforce": {
            "login_url": org.base_url(),
            "auth": "client_credentials",
            "client_id": org.credentials().client_id,
            "client_secret_file": secret,
        },
        "throttle": {
            "burst_share": 0.0,
            "burst_min_calls": 1,
            "schedule": {"time_zone": "UTC", "default_ceiling_percent": 10.0},
        },
        "plugin": {"component": weft_tests::plugin_wasm("golden-dedup")},
        "inbound": {
            "page_size": 200,
            "objects": {"Account": {"fields": ["Name"]}},
            "sink": {"kind": "ndjson", "dir": dir.path().join("out")},
        },
    });
    let created = admin(reqwest::Method::POST, "/v1/installations")
        .json(&document)
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let live = org_rows(&org, "Account", false).len();
    let mut delivered = 0;
    for _ in 0..400 {
        delivered = sink_lines(dir.path(), "Account").len();
        if delivered >= 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        (400..live).contains(&delivered),
        "{delivered} of {live}: mid-backfill"
    );

    let paused = admin(
        reqwest::Method::POST,
        "/v1/installations/tenant-pause/pause",
    )
    .json(&json!({"note": "customer's change freeze"}))
    .send()
    .await
    .expect("pause");
    assert_eq!(paused.status(), 200);
    // The page in hand may still land; after that, nothing.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let at_pause = sink_lines(dir.path(), "Account").len();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        sink_lines(dir.path(), "Account").len(),
        at_pause,
        "nothing delivered while paused"
    );
    assert!(at_pause < live, "paused before the backfill finished");
    let shown = status(&http, &addr, "tenant-pause").await;
    assert_eq!(shown["health"]["state"], "paused", "{shown}");

    let resumed = admin(
        reqwest::Method::POST,
        "/v1/installations/tenant-pause/resume",
    )
    .send()
    .await
    .expect("resume");
    assert_eq!(resumed.status(), 200);
    wait_for_every_account(dir.path(), &org, "after the resume", |_| true).await;
    // From the checkpoint: every Account once, at most the page in flight twice. Starting
    // over would have delivered the first 400 again.
    let lines = sink_lines(dir.path(), "Account").len();
    assert!(
        lines >= live && lines <= live + 200,
        "{lines} deliveries for {live} Accounts"
    );
}
