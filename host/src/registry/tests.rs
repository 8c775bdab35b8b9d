//! The registry on a real redb file.

use std::path::PathBuf;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::store::{
    AuditAction, AuditEntry, DlqOriginal, NewDlqEntry, OutboundEvent, RedbStore, Stage, StateKind,
};

fn registry() -> (tempfile::TempDir, Arc<dyn Store>, Registry) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(&dir.path().join("weft.redb")).expect("store opens"));
    let registry = Registry::new(store.clone());
    (dir, store, registry)
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
}

fn spec(fields: &[&str]) -> Value {
    json!({"id": "acme", "inbound": {"objects": {"Account": {"fields": fields}}}})
}

#[test]
fn create_then_update_bumps_the_version_and_keeps_the_creation_time() {
    let (_dir, _store, registry) = registry();
    let created = registry
        .create("acme", spec(&["Name"]), PathBuf::from("/srv"), at(0))
        .expect("created");
    assert_eq!(created.version, 1);
    let updated = registry
        .update("acme", 1, spec(&["Name", "Phone"]), at(5))
        .expect("updated");
    assert_eq!(updated.version, 2);
    assert_eq!(updated.created_at, at(0));
    assert_eq!(updated.updated_at, at(5));
    assert_eq!(registry.get("acme").expect("read"), Some(updated));
}

#[test]
fn a_stale_version_changes_nothing() {
    let (_dir, _store, registry) = registry();
    registry
        .create("acme", spec(&["Name"]), PathBuf::from("/srv"), at(0))
        .expect("created");
    registry
        .update("acme", 1, spec(&["Name", "Phone"]), at(1))
        .expect("first update");
    let stale = registry.update("acme", 1, spec(&["Website"]), at(2));
    assert!(
        matches!(
            stale,
            Err(RegistryError::Stale {
                expected: 1,
                current: 2,
                ..
            })
        ),
        "{stale:?}"
    );
    let stored = registry.get("acme").expect("read").expect("exists");
    assert_eq!(stored.version, 2);
    assert_eq!(stored.spec, spec(&["Name", "Phone"]));
}

#[test]
fn creating_twice_and_updating_the_unknown_are_refused() {
    let (_dir, _store, registry) = registry();
    registry
        .create("acme", spec(&["Name"]), PathBuf::from("/srv"), at(0))
        .expect("created");
    let again = registry.create("acme", spec(&["Phone"]), PathBuf::from("/srv"), at(1));
    assert!(matches!(again, Err(RegistryError::Exists(_))), "{again:?}");
    assert_eq!(
        registry.get("acme").expect("read").expect("exists").spec,
        spec(&["Name"])
    );
    let unknown = registry.update("globex", 1, spec(&["Name"]), at(1));
    assert!(
        matches!(unknown, Err(RegistryError::NotFound(_))),
        "{unknown:?}"
    );
}

#[test]
fn applying_the_same_declared_spec_again_keeps_the_version() {
    let (_dir, _store, registry) = registry();
    let base = PathBuf::from("/etc/weft");
    let (first, applied) = registry
        .apply_declared("acme", spec(&["Name"]), base.clone(), at(0))
        .expect("applied");
    assert_eq!((first.version, applied), (1, Applied::Created));
    let (same, applied) = registry
        .apply_declared("acme", spec(&["Name"]), base.clone(), at(9))
        .expect("applied");
    assert_eq!((same.version, applied), (1, Applied::Unchanged));
    assert_eq!(same.updated_at, at(0));
    let (changed, applied) = registry
        .apply_declared("acme", spec(&["Name", "Phone"]), base, at(10))
        .expect("applied");
    assert_eq!((changed.version, applied), (2, Applied::Updated));
}

#[test]
fn specs_survive_reopening_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weft.redb");
    {
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("store opens"));
        let registry = Registry::new(store);
        for id in ["acme", "globex"] {
            registry
                .create(id, json!({"id": id}), PathBuf::from("/srv"), at(0))
                .expect("created");
        }
        registry
            .update("globex", 1, json!({"id": "globex", "x": 1}), at(1))
            .expect("updated");
    }
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("store reopens"));
    let listed: Vec<(String, u64)> = Registry::new(store)
        .list()
        .expect("listed")
        .into_iter()
        .map(|r| {
            let r = r.expect("readable");
            (r.id, r.version)
        })
        .collect();
    assert_eq!(listed, [("acme".to_owned(), 1), ("globex".to_owned(), 2)]);
}

/// Something of every kind the store keeps for an installation.
fn populate(store: &dyn Store, installation: &str) {
    let event: OutboundEvent = serde_json::from_value(json!({
        "id": format!("{installation}-e1"),
        "object": "Account",
        "operation": "upsert",
        "occurred_at": "2027-01-15T08:00:00Z",
        "record": {"Name": "Acme"},
    }))
    .expect("event");
    store
        .write(&mut |txn| {
            txn.accept_events(installation, std::slice::from_ref(&event), at(0))?;
            txn.put_checkpoint(installation, "Account", &json!({"page": 3}))?;
            txn.set_synced_ids(installation, "Account", &["001A", "001B"], &[])?;
            txn.append_audit(&[&AuditEntry {
                installation: installation.to_owned(),
                event_id: Some(event.id.clone()),
                object: "Account".into(),
                record_key: "001A".into(),
                changes: Vec::new(),
                skipped: Vec::new(),
                action: AuditAction::Upsert,
                at: at(0),
            }])?;
            txn.put_dlq(&NewDlqEntry {
                installation: installation.to_owned(),
                original: DlqOriginal::Event {
                    event: event.clone(),
                },
                stage: Stage::Write,
                error_code: "REQUIRED_FIELD_MISSING".into(),
                message: "Name missing".into(),
                fields: vec!["Name".into()],
                at: at(0),
            })?;
            Ok(())
        })
        .expect("populated");
}

#[test]
fn delete_with_purge_removes_only_that_installations_rows() {
    let (_dir, store, registry) = registry();
    for id in ["acme", "acme2", "globex"] {
        registry
            .create(id, json!({"id": id}), PathBuf::from("/srv"), at(0))
            .expect("created");
        populate(&*store, id);
    }
    let purged = registry
        .delete("acme", true)
        .expect("deleted")
        .expect("purge counts");
    assert_eq!(purged.events, 1);
    assert_eq!(purged.dlq_entries, 1);
    assert_eq!(purged.audit_entries, 1);
    assert!(purged.state_rows >= 3, "{purged:?}");
    assert_eq!(registry.get("acme").expect("read"), None);
    assert!(store.events("acme", None, 10).expect("events").is_empty());
    assert_eq!(
        store
            .state_raw("acme", "Account", StateKind::Checkpoint)
            .expect("state"),
        None
    );
    // A neighbour whose id starts with the deleted one's keeps everything.
    for id in ["acme2", "globex"] {
        assert!(registry.get(id).expect("read").is_some(), "{id}");
        assert_eq!(store.events(id, None, 10).expect("events").len(), 1, "{id}");
        assert_eq!(store.audit(id, None, 10).expect("audit").len(), 1, "{id}");
        assert!(
            store
                .state_raw(id, "Account", StateKind::Checkpoint)
                .expect("state")
                .is_some(),
            "{id}"
        );
    }
    let listing = store
        .dlq_list(&crate::store::DlqFilter::default())
        .expect("dlq");
    let owners: Vec<&str> = listing
        .entries
        .iter()
        .map(|e| e.installation.as_str())
        .collect();
    assert_eq!(owners, ["acme2", "globex"]);
}

#[test]
fn delete_without_purge_keeps_the_dlq_and_audit() {
    let (_dir, store, registry) = registry();
    registry
        .create("acme", json!({"id": "acme"}), PathBuf::from("/srv"), at(0))
        .expect("created");
    populate(&*store, "acme");
    assert_eq!(registry.delete("acme", false).expect("deleted"), None);
    assert_eq!(registry.get("acme").expect("read"), None);
    assert_eq!(store.audit("acme", None, 10).expect("audit").len(), 1);
    let again = registry.delete("acme", false);
    assert!(
        matches!(again, Err(RegistryError::NotFound(_))),
        "{again:?}"
    );
}

#[test]
fn a_pause_is_kept_apart_from_the_document_and_its_version() {
    let (_dir, _store, registry) = registry();
    registry
        .create("acme", spec(&["Name"]), PathBuf::from("/srv"), at(0))
        .expect("created");
    let pause = Pause {
        objects: vec!["Account".into()],
        note: Some("customer's data migration".into()),
        since: at(10),
    };
    let paused = registry
        .set_pause("acme", Some(pause.clone()))
        .expect("paused");
    assert_eq!((paused.version, paused.paused.as_ref()), (1, Some(&pause)));
    // A change of the document keeps the pause; re-applying the same file does too.
    let updated = registry
        .update("acme", 1, spec(&["Name", "Phone"]), at(20))
        .expect("updated");
    assert_eq!(updated.paused, Some(pause));
    let resumed = registry.set_pause("acme", None).expect("resumed");
    assert_eq!((resumed.version, resumed.paused), (2, None));
    assert!(matches!(
        registry.set_pause("nobody", None),
        Err(RegistryError::NotFound(_))
    ));
}
