//! `weft dlq` against a real store file, and through a running `weft serve`'s admin API.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use weft::store::{
    DlqOriginal, DlqStatus, NewDlqEntry, Operation, OutboundEvent, RedbStore, Stage, Store,
    StoreExt,
};

use crate::common::db_path;

pub(crate) fn weft(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .expect("weft runs")
}

fn lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn seed(db: &Path) -> (u64, u64, u64) {
    let store = RedbStore::open(db).unwrap();
    let event = |id: &str| OutboundEvent {
        id: id.into(),
        object: "company".into(),
        operation: Operation::Upsert,
        occurred_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        record: Map::from_iter([("id".to_owned(), json!(id))]),
    };
    store
        .transact(|txn| {
            txn.accept_events(
                "acme",
                &[event("e1"), event("e2"), event("e3")],
                Timestamp::now(),
            )
        })
        .unwrap();
    let put = |id: &str, stage: Stage, code: &str| {
        store
            .put_dlq(&NewDlqEntry {
                installation: "acme".into(),
                original: DlqOriginal::Event { event: event(id) },
                stage,
                error_code: code.into(),
                message: "Required fields are missing: [Name]".into(),
                fields: vec!["Name".into()],
                at: Timestamp::now(),
            })
            .unwrap()
    };
    (
        put("e1", Stage::Write, "REQUIRED_FIELD_MISSING"),
        put("e2", Stage::Validate, "INVALID_PICKLIST_VALUE"),
        put("e3", Stage::Write, "REQUIRED_FIELD_MISSING"),
    )
}

#[test]
fn list_show_replay_discard() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let (e1, e2, e3) = seed(&db);

    let listed = weft(&db, &["dlq", "list", "--stage", "write"]);
    assert!(listed.status.success(), "{listed:?}");
    let ids: Vec<u64> = lines(&listed)
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [e1, e3]);

    let bad_stage = weft(&db, &["dlq", "list", "--stage", "mapping"]);
    assert!(!bad_stage.status.success());
    assert!(String::from_utf8_lossy(&bad_stage.stderr).contains("unknown stage"));

    let shown = weft(&db, &["dlq", "show", &e2.to_string()]);
    assert!(shown.status.success());
    let entry: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(entry["original"]["event"]["id"], "e2");
    assert_eq!(entry["error_code"], "INVALID_PICKLIST_VALUE");

    let unnamed = weft(&db, &["dlq", "replay"]);
    assert!(!unnamed.status.success());
    assert!(String::from_utf8_lossy(&unnamed.stderr).contains("name the entries"));

    let replayed = weft(
        &db,
        &["dlq", "replay", "--error-code", "REQUIRED_FIELD_MISSING"],
    );
    assert!(replayed.status.success(), "{replayed:?}");
    assert_eq!(lines(&replayed).len(), 2);

    let discarded = weft(&db, &["dlq", "discard", &e2.to_string()]);
    assert!(discarded.status.success(), "{discarded:?}");
    let again = weft(&db, &["dlq", "discard", &e2.to_string()]);
    assert!(!again.status.success());

    let open = weft(&db, &["dlq", "list"]);
    assert!(lines(&open).is_empty());
    let all = weft(&db, &["dlq", "list", "--all", "--installation", "acme"]);
    assert_eq!(lines(&all).len(), 3);

    let store = RedbStore::open(&db).unwrap();
    assert_eq!(
        store.dlq_get(e1).unwrap().unwrap().status,
        DlqStatus::Replayed
    );
    assert_eq!(
        store.dlq_get(e2).unwrap().unwrap().status,
        DlqStatus::Discarded
    );
    let pending: Vec<String> = store
        .pending_events("acme", None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(pending, ["e1", "e3"]);
}

const TOKEN: &str = "test-admin-token-0123456789abcdef";

struct Serving {
    child: Child,
    url: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real `weft serve` on `db`, with the admin API unlocked by [`TOKEN`].
fn serve(db: &Path) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["serve", "--listen", "127.0.0.1:0", "--installation", "acme"])
        .arg("--db")
        .arg(db)
        .arg("--status-file")
        .arg(db.with_extension("status.json"))
        .env("WEFT_ADMIN_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("weft serve prints its address");
    let ready: Value = serde_json::from_str(&line).expect("a JSON line");
    let addr = ready["listening"].as_str().expect("an address").to_owned();
    Serving {
        child,
        url: format!("http://{addr}"),
    }
}

/// `weft dlq …` through the running host's admin API.
fn weft_url(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .arg("--url")
        .arg(url)
        .env("WEFT_ADMIN_TOKEN", token)
        .env_remove("WEFT_DB")
        .output()
        .expect("weft runs")
}

#[test]
fn weft_dlq_works_through_a_running_weft_serve() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let (e1, e2, e3) = seed(&db);
    let host = serve(&db);
    let url = host.url.as_str();

    // The file is held: the direct path says what to do instead.
    let direct = weft(&db, &["dlq", "list"]);
    assert!(!direct.status.success());
    let stderr = String::from_utf8_lossy(&direct.stderr);
    assert!(stderr.contains("--url"), "{stderr}");

    let listed = weft_url(url, TOKEN, &["dlq", "list", "--stage", "write"]);
    assert!(listed.status.success(), "{listed:?}");
    let ids: Vec<u64> = lines(&listed)
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [e1, e3]);

    let wrong = weft_url(url, "not-the-token-0123456789", &["dlq", "list"]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("refused the admin token"));

    let shown = weft_url(url, TOKEN, &["dlq", "show", &e2.to_string()]);
    assert!(shown.status.success(), "{shown:?}");
    let entry: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(entry["original"]["event"]["id"], "e2");
    let missing = weft_url(url, TOKEN, &["dlq", "show", "4242"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no DLQ entry 4242"));

    let replayed = weft_url(
        url,
        TOKEN,
        &["dlq", "replay", "--error-code", "REQUIRED_FIELD_MISSING"],
    );
    assert!(replayed.status.success(), "{replayed:?}");
    assert_eq!(lines(&replayed).len(), 2);

    let discarded = weft_url(url, TOKEN, &["dlq", "discard", &e2.to_string()]);
    assert!(discarded.status.success(), "{discarded:?}");
    let again = weft_url(url, TOKEN, &["dlq", "discard", &e2.to_string()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already discarded"));

    assert!(lines(&weft_url(url, TOKEN, &["dlq", "list"])).is_empty());
    let all = weft_url(url, TOKEN, &["dlq", "list", "--all"]);
    let statuses: Vec<(u64, String)> = lines(&all)
        .iter()
        .map(|l| {
            (
                l["id"].as_u64().unwrap(),
                l["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (e1, "replayed".to_owned()),
            (e2, "discarded".to_owned()),
            (e3, "replayed".to_owned())
        ]
    );

    // The raw API: the token is required, a second replay is a conflict, and the replayed
    // event is back in the running host's queue.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let anonymous = client
            .get(format!("{url}/v1/admin/dlq"))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);
        let twice = client
            .post(format!("{url}/v1/admin/dlq/{e1}/replay"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(twice.status(), 409);
        let body: Value = twice.json().await.unwrap();
        assert_eq!(body["error"], "dlq_entry_not_open");
        let bad_filter = client
            .get(format!("{url}/v1/admin/dlq?stage=mapping"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(bad_filter.status(), 400);
        let status: Value = client
            .get(format!("{url}/v1/installations/acme/events/e1"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status["status"], "accepted");
    });
    drop(host);

    let store = RedbStore::open(&db).unwrap();
    assert_eq!(
        store.dlq_get(e2).unwrap().unwrap().status,
        DlqStatus::Discarded
    );
    let pending: Vec<String> = store
        .pending_events("acme", None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(pending, ["e1", "e3"]);
}

#[tokio::test]
async fn admin_routes_are_off_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::common::start_with_admin(&db_path(&dir), None).await;
    let response = reqwest::Client::new()
        .get(format!("http://{}/v1/admin/dlq", server.local_addr()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "admin_disabled");
    server.stop().await.unwrap();
}
