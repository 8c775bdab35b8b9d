//! The store's operations directly: pending queue, DLQ, audit, checkpoints in one
//! transaction with other writes.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use weft::store::{
    AuditAction, AuditEntry, DlqFilter, DlqOriginal, DlqStatus, EncodedEvent, EventState,
    FieldChange, NewDlqEntry, Operation, OutboundEvent, RedbStore, Stage, Store, StoreError,
    StoreExt,
};

use crate::common::db_path;

fn outbound(id: &str) -> OutboundEvent {
    let mut record = Map::new();
    record.insert("id".into(), json!(format!("c-{id}")));
    OutboundEvent {
        id: id.into(),
        object: "company".into(),
        operation: Operation::Upsert,
        occurred_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        record,
    }
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn failure(installation: &str, event: OutboundEvent, stage: Stage, code: &str) -> NewDlqEntry {
    NewDlqEntry {
        installation: installation.into(),
        original: DlqOriginal::Event { event },
        stage,
        error_code: code.into(),
        message: format!("{code}: Required fields are missing: [Name]"),
        fields: vec!["Name".into()],
        at: now(),
    }
}

#[test]
fn pending_queue_drains_in_order_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    {
        let store = RedbStore::open(&db).unwrap();
        let admitted = store
            .transact(|txn| {
                txn.accept_events(
                    "acme",
                    &[outbound("a"), outbound("b"), outbound("c")],
                    now(),
                )
            })
            .unwrap();
        assert!(admitted.iter().all(|a| !a.duplicate));
        let page = store.pending_events("acme", None, 2).unwrap();
        assert_eq!(page.len(), 2);
        store
            .mark_processed("acme", page[0].seq, &page[0].event.id)
            .unwrap();
        let rest = store.pending_events("acme", Some(page[1].seq), 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].event.id, "c");
    }
    let store = RedbStore::open(&db).unwrap();
    let pending: Vec<String> = store
        .pending_events("acme", None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(pending, ["b", "c"]);
    assert_eq!(
        store.event_status("acme", "a").unwrap().unwrap().state,
        EventState::Processed
    );
    assert!(matches!(
        store.mark_processed("acme", 999, "z"),
        Err(StoreError::EventNotFound { .. })
    ));
}

#[test]
fn dlq_entries_record_failures_filter_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&db_path(&dir)).unwrap();
    let seqs = store
        .transact(|txn| txn.accept_events("acme", &[outbound("e1"), outbound("e2")], now()))
        .unwrap();

    let first = store
        .put_dlq(&failure(
            "acme",
            outbound("e1"),
            Stage::Write,
            "REQUIRED_FIELD_MISSING",
        ))
        .unwrap();
    // The same event failing again while its entry is open bumps attempts.
    let again = store
        .put_dlq(&failure(
            "acme",
            outbound("e1"),
            Stage::Write,
            "REQUIRED_FIELD_MISSING",
        ))
        .unwrap();
    assert_eq!(first, again);
    let second = store
        .put_dlq(&failure(
            "acme",
            outbound("e2"),
            Stage::Validate,
            "INVALID_PICKLIST_VALUE",
        ))
        .unwrap();
    let inbound = store
        .put_dlq(&NewDlqEntry {
            installation: "globex".into(),
            original: DlqOriginal::Record {
                object: "Account".into(),
                record: Map::new(),
            },
            stage: Stage::Map,
            error_code: "PLUGIN_TRAP".into(),
            message: "plugin trapped".into(),
            fields: vec![],
            at: now(),
        })
        .unwrap();

    let entry = store.dlq_get(first).unwrap().unwrap();
    assert_eq!(entry.attempts, 2);
    assert!(entry.first_seen <= entry.last_seen);
    assert_eq!(entry.fields, ["Name"]);
    assert_eq!(entry.status, DlqStatus::Open);

    // Dead-lettered events leave the pending queue.
    assert!(store.pending_events("acme", None, 10).unwrap().is_empty());
    assert_eq!(
        store.event_status("acme", "e1").unwrap().unwrap().state,
        EventState::Dlq
    );

    let by_code = store
        .dlq_list(&DlqFilter {
            error_code: Some("INVALID_PICKLIST_VALUE".into()),
            ..DlqFilter::default()
        })
        .unwrap()
        .entries;
    assert_eq!(by_code.iter().map(|e| e.id).collect::<Vec<_>>(), [second]);
    let by_stage = store
        .dlq_list(&DlqFilter {
            stage: Some(Stage::Map),
            ..DlqFilter::default()
        })
        .unwrap()
        .entries;
    assert_eq!(by_stage.iter().map(|e| e.id).collect::<Vec<_>>(), [inbound]);
    let acme = store
        .dlq_list(&DlqFilter {
            installation: Some("acme".into()),
            ..DlqFilter::default()
        })
        .unwrap()
        .entries;
    assert_eq!(acme.len(), 2);

    // Replay re-enqueues the original event under a new seq and closes the entry.
    let new_seq = store.replay_dlq(first, now()).unwrap().unwrap();
    assert!(new_seq > seqs[1].seq);
    let pending = store.pending_events("acme", None, 10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event.to_parsed().unwrap(), outbound("e1"));
    assert_eq!(pending[0].seq, new_seq);
    assert_eq!(
        store.dlq_get(first).unwrap().unwrap().status,
        DlqStatus::Replayed
    );
    // Only open entries are acted on: a second replay re-enqueues nothing.
    assert!(matches!(
        store.replay_dlq(first, now()),
        Err(StoreError::DlqNotOpen {
            status: DlqStatus::Replayed,
            ..
        })
    ));
    assert!(matches!(
        store.discard_dlq(first),
        Err(StoreError::DlqNotOpen { .. })
    ));
    assert_eq!(store.pending_events("acme", None, 10).unwrap().len(), 1);
    // A record original cannot be replayed as an event.
    assert_eq!(store.replay_dlq(inbound, now()).unwrap(), None);
    // Failing again after replay opens a fresh entry.
    let third = store
        .put_dlq(&failure(
            "acme",
            outbound("e1"),
            Stage::Conflict,
            "CONFLICT",
        ))
        .unwrap();
    assert_ne!(third, first);

    store
        .transact(|txn| txn.set_dlq_status(second, DlqStatus::Discarded))
        .unwrap();
    let open = store
        .dlq_list(&DlqFilter {
            status: Some(DlqStatus::Open),
            ..DlqFilter::default()
        })
        .unwrap()
        .entries;
    assert_eq!(
        open.iter().map(|e| e.id).collect::<Vec<_>>(),
        [inbound, third]
    );
    assert!(matches!(
        store.replay_dlq(4242, now()),
        Err(StoreError::DlqNotFound(4242))
    ));
}

#[test]
fn audit_entries_append_per_installation() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&db_path(&dir)).unwrap();
    let entry = |key: &str| AuditEntry {
        installation: "acme".into(),
        event_id: Some("e1".into()),
        object: "Account".into(),
        record_key: key.into(),
        changes: vec![FieldChange {
            field: "Name".into(),
            old: json!("Acme"),
            new: json!("Acme Corp"),
        }],
        skipped: Vec::new(),
        action: AuditAction::Upsert,
        at: now(),
    };
    store.append_audit(&entry("k1")).unwrap();
    store
        .append_audit(&AuditEntry {
            installation: "globex".into(),
            ..entry("g1")
        })
        .unwrap();
    let id = store.append_audit(&entry("k2")).unwrap();
    let log = store.audit("acme", None, 10).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].0, id);
    assert_eq!(log[1].1.changes[0].new, json!("Acme Corp"));
    assert_eq!(store.audit("acme", Some(log[0].0), 10).unwrap().len(), 1);

    // A round's commit appends many at once: consecutive ids, in order, after the others.
    let (a, b, c) = (entry("k3"), entry("k4"), entry("k5"));
    let ids = store
        .transact(|txn| {
            txn.append_audit(&[])?;
            txn.append_audit(&[&a, &b, &c])
        })
        .unwrap();
    assert_eq!(ids, id + 1..id + 4);
    let log = store.audit("acme", Some(id), 10).unwrap();
    let keys: Vec<(u64, &str)> = log
        .iter()
        .map(|(id, e)| (*id, e.record_key.as_str()))
        .collect();
    assert_eq!(keys, [(id + 1, "k3"), (id + 2, "k4"), (id + 3, "k5")]);
    assert_eq!(store.append_audit(&entry("k6")).unwrap(), id + 4);
}

/// A round finishes its events in one call: each leaves the queue as `processed`, once
/// more is harmless, and an event the store never had fails the whole transaction.
#[test]
fn a_round_marks_its_events_processed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&db_path(&dir)).unwrap();
    store
        .transact(|txn| {
            txn.accept_events(
                "acme",
                &[outbound("a"), outbound("b"), outbound("c")],
                now(),
            )
        })
        .unwrap();
    let page = store.pending_events("acme", None, 10).unwrap();
    let done: Vec<(u64, &str)> = page[..2]
        .iter()
        .map(|e| (e.seq, e.event.id.as_str()))
        .collect();
    store
        .transact(|txn| txn.mark_processed("acme", &done))
        .unwrap();
    store
        .transact(|txn| txn.mark_processed("acme", &done[..1]))
        .unwrap();
    let left: Vec<String> = store
        .pending_events("acme", None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(left, ["c"]);
    for (id, state) in [
        ("a", EventState::Processed),
        ("b", EventState::Processed),
        ("c", EventState::Accepted),
    ] {
        assert_eq!(
            store.event_status("acme", id).unwrap().unwrap().state,
            state,
            "{id}"
        );
    }
    let c = (page[2].seq, "c");
    assert!(matches!(
        store.transact(|txn| txn.mark_processed("acme", &[c, (999, "z")])),
        Err(StoreError::EventNotFound { seq: 999, .. })
    ));
    assert_eq!(
        store.event_status("acme", "c").unwrap().unwrap().state,
        EventState::Accepted,
        "nothing of a failed transaction lands"
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BulkCheckpoint {
    job_id: String,
    locator: Option<String>,
    records: u64,
}

#[test]
fn a_checkpoint_commits_with_other_writes_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&db_path(&dir)).unwrap();
    let checkpoint = BulkCheckpoint {
        job_id: "750xx0000000001".into(),
        locator: Some("MTAwMDA".into()),
        records: 10_000,
    };
    store
        .transact(|txn| {
            txn.accept_events("acme", &[outbound("x")], now())?;
            txn.put_checkpoint("acme", "Account", &checkpoint)?;
            // Read-your-writes inside the transaction.
            let seen: Option<BulkCheckpoint> = txn.get_checkpoint("acme", "Account")?;
            assert_eq!(seen.as_ref(), Some(&checkpoint));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        store
            .get_checkpoint::<BulkCheckpoint>("acme", "Account")
            .unwrap(),
        Some(checkpoint.clone())
    );

    // A failing transaction keeps neither the checkpoint nor the other write.
    let failed = store.transact(|txn| {
        txn.put_checkpoint(
            "acme",
            "Account",
            &BulkCheckpoint {
                records: 20_000,
                ..checkpoint.clone()
            },
        )?;
        txn.accept_events("acme", &[outbound("y")], now())?;
        txn.mark_processed("acme", &[(12345, "y")])
    });
    assert!(failed.is_err());
    assert_eq!(
        store
            .get_checkpoint::<BulkCheckpoint>("acme", "Account")
            .unwrap()
            .unwrap()
            .records,
        10_000
    );
    assert!(store.event_status("acme", "y").unwrap().is_none());

    // Watermarks are kept apart from checkpoints.
    store
        .transact(|txn| txn.put_watermark("acme", "Account", &"2026-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(
        store.get_watermark::<String>("acme", "Account").unwrap(),
        Some("2026-01-01T00:00:00Z".into())
    );
    assert_eq!(
        store
            .get_checkpoint::<BulkCheckpoint>("acme", "Contact")
            .unwrap(),
        None
    );
}

/// The writer splices seq and accept time around each event's pre-encoded bytes; what it
/// stores must read back as exactly the event that was offered, whatever the names hold.
#[test]
fn encoded_events_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&db_path(&dir)).unwrap();
    let installation = "odd \"name\" \\ ü";
    let mut event = outbound("e\"1\"");
    event
        .record
        .insert("note".into(), json!("line\nbreak \u{1F600} \"quoted\""));
    let at = now();
    let encoded = vec![
        EncodedEvent::new(&event).unwrap(),
        EncodedEvent::new(&outbound("e2")).unwrap(),
        EncodedEvent::new(&event).unwrap(),
    ];
    let admitted = store
        .transact(|txn| {
            txn.accept_encoded(&[(installation, &encoded), ("acme", &encoded[1..2])], at)
        })
        .unwrap();
    let flags: Vec<bool> = admitted.iter().map(|a| a.duplicate).collect();
    assert_eq!(flags, [false, false, true, false]);
    assert_eq!(
        admitted[2].seq, admitted[0].seq,
        "the first of two equal ids wins"
    );
    let stored = store.events(installation, None, 10).unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].event, event);
    assert_eq!(stored[0].installation, installation);
    assert_eq!(stored[0].accepted_at, at);
    assert_eq!(stored[0].seq, admitted[0].seq);
    assert_eq!(
        store.events("acme", None, 10).unwrap()[0].event,
        outbound("e2")
    );
}

/// Regression: an existing zero-length store file opened as a new, empty store without a
/// word, silently dropping whatever the file was meant to hold.
#[test]
fn a_zero_length_store_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    std::fs::write(&db, b"").unwrap();
    let refused = RedbStore::open(&db)
        .err()
        .expect("an empty file is refused");
    assert!(
        matches!(&refused, StoreError::Empty { path } if path == &db),
        "{refused}"
    );
    let message = refused.to_string();
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert!(message.contains("empty"), "{message}");
    // Nothing was written into it.
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
}

/// Regression: random damage inside a store file made redb panic (a backtrace from `weft
/// dlq`, a dead intake writer in `weft serve`); it must be reported as corruption, naming
/// the file, with a non-zero exit.
#[test]
fn a_damaged_store_file_is_reported_as_corrupt_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    // Fixed times, so the file (and so each trial's damage) is the same on every run.
    let at: Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
    {
        let store = RedbStore::open(&db).unwrap();
        for batch in 0..20 {
            let events: Vec<OutboundEvent> = (0..50)
                .map(|i| outbound(&format!("e{batch}-{i}")))
                .collect();
            store
                .transact(|txn| txn.accept_events("acme", &events, at))
                .unwrap();
        }
        let mut entry = failure("acme", outbound("e1-1"), Stage::Write, "X");
        entry.at = at;
        store.put_dlq(&entry).unwrap();
    }
    let original = std::fs::read(&db).unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut for_the_binary = None;
    let mut corrupt = 0;
    for trial in 0..60 {
        let mut bytes = original.clone();
        for _ in 0..32 {
            let at = (random() as usize) % bytes.len();
            bytes[at] = random() as u8;
        }
        let path = dir.path().join(format!("damaged-{trial}.redb"));
        std::fs::write(&path, &bytes).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            let store = RedbStore::open(&path)?;
            let listed = store.dlq_list(&DlqFilter::default());
            let events = store.events("acme", None, usize::MAX);
            let pending = store.pending_events("acme", None, usize::MAX);
            listed.map(|_| ())?;
            events.map(|_| ())?;
            pending.map(|_| ())
        });
        let result = outcome.unwrap_or_else(|_| panic!("trial {trial}: the store panicked"));
        if let Err(StoreError::Corrupt { path: named, .. }) = &result {
            assert_eq!(named, &path);
            corrupt += 1;
            let dlq_alone = RedbStore::open(&path).and_then(|s| s.dlq_list(&DlqFilter::default()));
            if matches!(dlq_alone, Err(StoreError::Corrupt { .. })) {
                for_the_binary.get_or_insert(path.clone());
            }
        }
    }
    assert!(corrupt > 0, "no trial reached redb's panicking paths");
    let damaged = for_the_binary.expect("a trial whose DLQ listing fails on damage");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["dlq", "list", "--all", "--db"])
        .arg(&damaged)
        .env_remove("WEFT_URL")
        .output()
        .expect("weft runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("store file {} is corrupt", damaged.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A file written before the DLQ had its per-installation index: the first open builds
/// it, so each tenant's listing, open count and purge find every one of its entries, and
/// the index follows later status changes.
#[test]
fn a_dlq_written_before_its_installation_index_is_indexed_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let (acme, globex) = {
        let store = RedbStore::open(&db).unwrap();
        let acme: Vec<u64> = ["a1", "a2", "a3"]
            .iter()
            .map(|id| {
                store
                    .put_dlq(&failure("acme", outbound(id), Stage::Write, "X"))
                    .unwrap()
            })
            .collect();
        let globex = store
            .put_dlq(&failure("globex", outbound("g1"), Stage::Write, "X"))
            .unwrap();
        (acme, globex)
    };
    {
        // What an older host left: no index table and no mark that it was built.
        let file = redb::Database::create(&db).unwrap();
        let txn = file.begin_write().unwrap();
        let index: redb::TableDefinition<(&str, u64), u8> =
            redb::TableDefinition::new("dlq_by_installation");
        txn.delete_table(index).unwrap();
        let counters: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("counters");
        txn.open_table(counters)
            .unwrap()
            .remove("dlq_by_installation_built")
            .unwrap();
        txn.commit().unwrap();
    }

    let store = RedbStore::open(&db).unwrap();
    let listed = |installation: &str, status: Option<DlqStatus>| -> Vec<u64> {
        store
            .dlq_list(&DlqFilter {
                installation: Some(installation.into()),
                status,
                ..DlqFilter::default()
            })
            .unwrap()
            .entries
            .iter()
            .map(|e| e.id)
            .collect()
    };
    assert_eq!(listed("acme", None), acme);
    assert_eq!(listed("globex", None), [globex]);
    assert_eq!(store.dlq_open_count("acme").unwrap(), 3);

    store.discard_dlq(acme[1]).unwrap();
    assert_eq!(listed("acme", Some(DlqStatus::Open)), [acme[0], acme[2]]);
    assert_eq!(listed("acme", Some(DlqStatus::Discarded)), [acme[1]]);
    assert_eq!(store.dlq_open_count("acme").unwrap(), 2);

    let purged = store
        .transact(|txn| txn.purge_installation("acme"))
        .unwrap();
    assert_eq!(purged.dlq_entries, 3);
    assert!(listed("acme", None).is_empty());
    assert_eq!(store.dlq_open_count("acme").unwrap(), 0);
    assert_eq!(listed("globex", None), [globex]);
    assert_eq!(
        store.dlq_list(&DlqFilter::default()).unwrap().entries.len(),
        1
    );
}
