//! `weft dlq` against a real store file.

use std::path::Path;
use std::process::{Command, Output};

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use weft::store::{
    DlqOriginal, DlqStatus, NewDlqEntry, Operation, OutboundEvent, RedbStore, Stage, Store,
    StoreExt,
};

use crate::common::db_path;

fn weft(db: &Path, args: &[&str]) -> Output {
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
