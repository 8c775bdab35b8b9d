//! Regressions of the hardening issue (14): `weft config check` runs exactly the checks
//! `weft serve` runs, and serve starts every installation whose file loads even when
//! another's does not.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::{INSTALLATION, SINK, org, write_config};

fn check(config: &Path, online: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.args(["config", "check"]);
    if online {
        command.arg("--online");
    }
    command
        .arg(config)
        .output()
        .expect("weft config check runs")
}

/// The file with `from` replaced by `to`, written beside it as `name`.
fn variant(config: &Path, name: &str, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(config).expect("config");
    assert!(text.contains(from), "{from:?} not in the file");
    let path = config.with_file_name(name);
    std::fs::write(&path, text.replace(from, to)).expect("variant");
    path
}

const OUTBOUND: &str = "[outbound]\nbatch_size = 50\n\n[outbound.objects.Account]\nexternal_id = \"Name\"\ndelete = { policy = \"ignore\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_config_check_refuses_what_serve_refuses() {
    let org = org(5, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!("[inbound.objects.Account]\nfields = [\"Name\"]\n{SINK}\n{OUTBOUND}");
    let good = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let ok = check(&good, false);
    assert!(ok.status.success(), "{ok:?}");

    let not_a_component = dir.path().join("not-a-component.wasm");
    std::fs::write(&not_a_component, "this is not WebAssembly").expect("file");
    let component = weft_tests::plugin_wasm("golden-dedup")
        .display()
        .to_string();
    let cases = [
        (
            "unknown.toml",
            "batch_size = 50",
            "batchsize = 5",
            "batchsize",
        ),
        (
            "zero.toml",
            "batch_size = 50",
            "batch_size = 0",
            "outbound.batch_size",
        ),
        (
            "explode.toml",
            "policy = \"ignore\"",
            "policy = \"explode\"",
            "explode",
        ),
        (
            "component.toml",
            component.as_str(),
            not_a_component.to_str().expect("utf-8 path"),
            "plugin.component",
        ),
    ];
    for (name, from, to, named) in cases {
        let bad = variant(&good, name, from, to);
        let refused = check(&bad, false);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{name} passed the check");
        assert!(stderr.contains(named), "{name}: {stderr}");
    }

    // Online, an outbound object the org does not have is reported like an inbound one.
    let unknown_object = variant(
        &good,
        "object.toml",
        "[outbound.objects.Account]",
        "[outbound.objects.Not_An_Object__c]",
    );
    let org_check = tokio::task::spawn_blocking(move || check(&unknown_object, true))
        .await
        .expect("joined");
    assert!(!org_check.status.success(), "{org_check:?}");
    let lines: Vec<Value> = String::from_utf8_lossy(&org_check.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let outbound = lines
        .iter()
        .find(|l| l["outbound_object"] == "Not_An_Object__c")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(outbound["error"].is_string(), "{outbound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_one_bad_file_does_not_keep_the_other_installations_down() {
    let org = org(5, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!("[inbound.objects.Account]\nfields = [\"Name\"]\n{SINK}\n{OUTBOUND}");
    let good = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let bad = variant(&good, "globex.toml", "batch_size = 50", "batch_size = 0");
    let bad = variant(
        &bad,
        "globex.toml",
        &format!("id = \"{INSTALLATION}\""),
        "id = \"globex\"",
    );
    let (mut child, addr) = serve(dir.path(), &[&bad, &good]);
    let token = TOKEN;
    let client = reqwest::Client::new();
    let post = |installation: &str| {
        client
            .post(format!(
                "http://{addr}/v1/installations/{installation}/events"
            ))
            .bearer_auth(token)
            .json(
                &serde_json::json!([{"id": "e1", "object": "company", "operation": "upsert",
                "occurred_at": "2026-01-01T00:00:00Z", "record": {"name": "Acme"}}]),
            )
            .send()
    };
    assert_eq!(post(INSTALLATION).await.expect("post").status(), 202);
    assert_eq!(post("globex").await.expect("post").status(), 404);
    let _ = child.kill();
    let output = child.wait_with_output().expect("stopped");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not applying") && stderr.contains("outbound.batch_size"),
        "the refused file is reported: {stderr}"
    );
}

const TOKEN: &str = "operator-token-for-the-config-tests";

/// Starts `weft serve` on `dir`'s store with `configs`; the child and its address.
fn serve(dir: &Path, configs: &[&Path]) -> (std::process::Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    for config in configs {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .arg("--db")
        .arg(dir.join("weft.redb"))
        .arg("--status-file")
        .arg(dir.join("status.json"))
        .env("WEFT_ADMIN_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("weft serve prints its address");
    let ready: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("weft serve printed {line:?} instead of its address: {e}"));
    let addr = ready["listening"].as_str().expect("address").to_owned();
    (child, addr)
}

/// The registry is what the host runs: a file applied at one start keeps its installation
/// running at the next start without the file, and an invalid edit of the file leaves the
/// stored spec running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_installation_runs_from_the_registry_at_the_next_start() {
    let org = org(5, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!("[inbound.objects.Account]\nfields = [\"Name\"]\n{SINK}\n{OUTBOUND}");
    let good = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let client = reqwest::Client::new();
    let post = |addr: &str, event: &str| {
        client
            .post(format!(
                "http://{addr}/v1/installations/{INSTALLATION}/events"
            ))
            .bearer_auth(TOKEN)
            .json(
                &serde_json::json!([{"id": event, "object": "company", "operation": "upsert",
                "occurred_at": "2026-01-01T00:00:00Z", "record": {"name": "Acme"}}]),
            )
            .send()
    };
    let (mut first, addr) = serve(dir.path(), &[&good]);
    assert_eq!(post(&addr, "e1").await.expect("post").status(), 202);
    let _ = first.kill();
    let _ = first.wait();

    let (mut second, addr) = serve(dir.path(), &[]);
    assert_eq!(
        post(&addr, "e2").await.expect("post").status(),
        202,
        "the stored installation runs without its file"
    );
    let _ = second.kill();
    let _ = second.wait();

    let broken = variant(
        &good,
        "acme-broken.toml",
        "batch_size = 50",
        "batch_size = 0",
    );
    let (mut third, addr) = serve(dir.path(), &[&broken]);
    assert_eq!(
        post(&addr, "e3").await.expect("post").status(),
        202,
        "a file that does not check leaves the stored spec running"
    );
    let _ = third.kill();
    let output = third.wait_with_output().expect("stopped");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not applying"), "{stderr}");
}
