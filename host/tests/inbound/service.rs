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
        if ids
            .keys()
            .all(|id| delivered.get(id).is_some_and(|line| done(line)))
        {
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
