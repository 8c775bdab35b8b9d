//! Conformance against real third-party clients: simple-salesforce (Python, over TLS — it
//! only speaks https) and jsforce (Node). The clients are installed by CI with
//! `pip install -r emulator/conformance/requirements.txt` and `npm ci` in
//! `emulator/conformance`; a missing client fails the test with those instructions.

use crate::common::small;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use weft_emulator::{Emulator, EmulatorConfig};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

fn cfg(tls: bool) -> EmulatorConfig {
    // More than one 2,000-record REST page and several Bulk pages.
    EmulatorConfig {
        accounts: 2_600,
        tls,
        ..small()
    }
}

async fn run(mut cmd: tokio::process::Command, what: &str) {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let out = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
        .unwrap_or_else(|e| panic!("{what} failed to run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
}

#[tokio::test]
async fn simple_salesforce_drives_the_emulator() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import simple_salesforce"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "simple-salesforce is not installed. Install it with:\n    pip install -r emulator/conformance/requirements.txt\n({:?})",
        probe.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
    );
    let org = Emulator::start(cfg(true)).await.expect("start");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(dir().join("simple_salesforce_check.py"))
        .env("WEFT_URL", org.base_url())
        .env("WEFT_TOKEN", org.access_token())
        .env("WEFT_CA", org.ca_cert_path().expect("tls on"));
    run(cmd, "simple-salesforce check").await;
    let s = org.stats();
    assert!(
        s.by_kind.get("bulk.query.results").copied().unwrap_or(0) >= 3,
        "{:?}",
        s.by_kind
    );
    assert!(
        s.by_kind.get("queryMore").copied().unwrap_or(0) >= 1,
        "{:?}",
        s.by_kind
    );
}

/// A Bulk query larger than one results page (100,000 rows by default), read by a client
/// that looks header names up case-sensitively: it must page on to the last row.
#[tokio::test]
async fn a_case_sensitive_client_reads_every_row_of_a_large_bulk_query() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import requests"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "requests is not installed. Install it with:\n    pip install -r emulator/conformance/requirements.txt"
    );
    let org = Emulator::start(EmulatorConfig {
        accounts: 120_000,
        ..small()
    })
    .await
    .expect("start");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(dir().join("case_sensitive_bulk_check.py"))
        .env("WEFT_URL", org.base_url())
        .env("WEFT_TOKEN", org.access_token())
        .env("WEFT_EXPECT_ROWS", "120000");
    run(cmd, "case-sensitive Bulk check").await;
    assert!(
        org.stats()
            .by_kind
            .get("bulk.query.results")
            .copied()
            .unwrap_or(0)
            >= 2,
        "{:?}",
        org.stats().by_kind
    );
}

#[tokio::test]
async fn jsforce_drives_the_emulator() {
    assert!(
        dir().join("node_modules").join("jsforce").exists(),
        "jsforce is not installed. Install it with:\n    (cd emulator/conformance && npm ci)"
    );
    let org = Emulator::start(cfg(false)).await.expect("start");
    let c = org.credentials().clone();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir().join("jsforce_check.js"))
        .current_dir(dir())
        .env("WEFT_URL", org.base_url())
        .env("WEFT_TOKEN", org.access_token())
        .env("WEFT_CLIENT_ID", &c.client_id)
        .env("WEFT_CLIENT_SECRET", &c.client_secret)
        .env("WEFT_USERNAME", &c.username)
        .env("WEFT_PASSWORD", &c.password);
    run(cmd, "jsforce check").await;
    let s = org.stats();
    assert!(
        s.by_kind.get("bulk.query.create").copied().unwrap_or(0) >= 1,
        "{:?}",
        s.by_kind
    );
    assert!(s.token_requests >= 1);
}

/// jsforce logs in to three orgs of one emulator (OAuth password flow and SOAP login) and
/// each connection sees its own org only.
#[tokio::test]
async fn jsforce_logs_in_to_each_of_many_orgs() {
    assert!(
        dir().join("node_modules").join("jsforce").exists(),
        "jsforce is not installed. Install it with:\n    (cd emulator/conformance && npm ci)"
    );
    let emu = Emulator::start(EmulatorConfig {
        orgs: 3,
        accounts: 20,
        contacts: 20,
        ..small()
    })
    .await
    .expect("start");
    let marker = "Only In The Last Org";
    let last = emu.org(2).expect("org 2");
    let client = reqwest::Client::new();
    let r = client
        .post(format!(
            "{}/services/data/v60.0/sobjects/Account",
            emu.base_url()
        ))
        .bearer_auth(last.new_access_token())
        .json(&serde_json::json!({"Name": marker}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    last.reset_stats();
    let orgs: Vec<serde_json::Value> = (0..3)
        .map(|k| {
            let c = emu.credentials_of(k).expect("org");
            serde_json::json!({"orgId": emu.org_id_of(k), "clientId": c.client_id,
                "clientSecret": c.client_secret, "username": c.username, "password": c.password})
        })
        .collect();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir().join("jsforce_orgs_check.js"))
        .current_dir(dir())
        .env("WEFT_URL", emu.base_url())
        .env("WEFT_ORGS", serde_json::Value::from(orgs).to_string())
        .env("WEFT_MARKER", marker);
    run(cmd, "jsforce many-org check").await;
    for k in 0..3 {
        let s = emu.org(k).expect("org").stats();
        assert_eq!(s.token_requests, 2, "org {k}: {s:?}");
    }
}
