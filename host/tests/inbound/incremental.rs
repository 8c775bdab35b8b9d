//! Incremental passes: changes, creations and deletes after the backfill, each delivered
//! once, and a sink that ends up matching the org.

use std::collections::HashMap;

use serde_json::Value;

use crate::common::{INSTALLATION, SINK, inbound, latest, org, org_rows, sink_lines, write_config};

async fn delete(org: &weft_emulator::EmulatorHandle, id: &str) {
    let url = format!(
        "{}/services/data/v62.0/sobjects/Account/{id}",
        org.base_url()
    );
    let response = reqwest::Client::new()
        .delete(url)
        .bearer_auth(org.access_token())
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status().as_u16(), 204, "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_and_deletes_after_the_backfill_arrive_once_each() {
    let org = org(1_200, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nbulk_threshold = 100000\npage_size = 300\nlookback_secs = 600\n\n[inbound.objects.Account]\nfields = [\"Name\", \"Website\", \"Phone\"]\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    let first = sync.pass().await.expect("backfill pass");
    assert_eq!(
        first.objects[0].backfilled as usize,
        org_rows(&org, "Account", false).len()
    );
    let after_backfill = sink_lines(dir.path(), "Account").len();

    // A pass with nothing new delivers nothing: the lookback re-reads recent rows and
    // drops the ones already delivered.
    for _ in 0..2 {
        let quiet = sync.pass().await.expect("quiet pass");
        assert_eq!(
            quiet.objects[0].changed, 0,
            "a quiet pass re-delivers nothing"
        );
        assert_eq!(
            quiet.objects[0].deleted, 0,
            "a quiet pass re-delivers nothing"
        );
    }

    let live_before = org_rows(&org, "Account", false);
    let changed = org.generate_changes(150);
    assert!(changed > 0);
    let mut victims: Vec<String> = org_rows(&org, "Account", false).into_keys().collect();
    victims.sort();
    victims.truncate(25);
    for id in &victims {
        delete(&org, id).await;
    }
    let busy = sync.pass().await.expect("pass with changes");
    let live = org_rows(&org, "Account", false);
    let gone = live_before
        .keys()
        .filter(|id| !live.contains_key(*id))
        .count();
    assert!(gone >= victims.len());
    assert_eq!(
        busy.objects[0].deleted as usize, gone,
        "each delete once: {busy:?}"
    );
    assert!(busy.objects[0].changed > 0);

    let lines = sink_lines(dir.path(), "Account");
    let mut versions: HashMap<(String, String), usize> = HashMap::new();
    for line in &lines[after_backfill..] {
        let key = (
            line["id"].as_str().expect("id").to_owned(),
            line["system_modstamp"].as_str().expect("stamp").to_owned(),
        );
        *versions.entry(key).or_default() += 1;
    }
    let repeated = versions.values().filter(|n| **n > 1).count();
    assert_eq!(
        repeated, 0,
        "no version delivered twice by incremental passes"
    );

    // The sink's latest version of every row is the org's.
    let sink = latest(&lines);
    for (id, stamp) in &live {
        let line = sink
            .get(id)
            .unwrap_or_else(|| panic!("{id} never delivered"));
        assert_eq!(
            line["system_modstamp"].as_str(),
            Some(stamp.as_str()),
            "{id}"
        );
        assert_eq!(line["op"], "upsert", "{id}");
    }
    for id in live_before.keys().filter(|id| !live.contains_key(*id)) {
        assert_eq!(sink[id]["op"], Value::from("delete"), "{id}");
    }
    assert_eq!(sink.len(), live.len() + gone, "nothing else was delivered");
}

/// Hard-deletes `ids` through a Bulk API 2.0 `hardDelete` job: gone even from `queryAll`.
async fn hard_delete(org: &weft_emulator::EmulatorHandle, object: &str, ids: &[String]) {
    let http = reqwest::Client::new();
    let base = format!("{}/services/data/v62.0/jobs/ingest", org.base_url());
    let job: Value = http
        .post(&base)
        .bearer_auth(org.access_token())
        .json(&serde_json::json!({"object": object, "operation": "hardDelete", "contentType": "CSV", "lineEnding": "LF"}))
        .send()
        .await
        .expect("create job")
        .json()
        .await
        .expect("job");
    let id = job["id"].as_str().expect("job id");
    let csv = format!("Id\n{}\n", ids.join("\n"));
    let put = http
        .put(format!("{base}/{id}/batches"))
        .bearer_auth(org.access_token())
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("upload");
    assert!(put.status().is_success(), "{:?}", put.status());
    http.patch(format!("{base}/{id}"))
        .bearer_auth(org.access_token())
        .json(&serde_json::json!({"state": "UploadComplete"}))
        .send()
        .await
        .expect("close");
    for _ in 0..200 {
        let info: Value = http
            .get(format!("{base}/{id}"))
            .bearer_auth(org.access_token())
            .send()
            .await
            .expect("poll")
            .json()
            .await
            .expect("info");
        if info["state"] == "JobComplete" {
            assert_eq!(info["numberRecordsProcessed"], ids.len());
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the hardDelete job did not complete");
}

/// Adds `Widget__c`, an object the replication resources do not serve, with `rows` rows.
async fn widgets(org: &weft_emulator::EmulatorHandle, rows: usize) {
    org.add_object(&weft_emulator::ObjectSpec {
        name: "Widget__c".into(),
        label: None,
        fields: Vec::new(),
        replicateable: false,
    })
    .expect("object");
    let http = reqwest::Client::new();
    for i in 0..rows {
        let created = http
            .post(format!(
                "{}/services/data/v62.0/sobjects/Widget__c",
                org.base_url()
            ))
            .bearer_auth(org.access_token())
            .json(&serde_json::json!({"Name": format!("widget {i}")}))
            .send()
            .await
            .expect("create");
        assert_eq!(created.status().as_u16(), 201);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_deleted_for_good_from_an_object_without_replication_are_found_by_reconciliation() {
    let org = org(10, 0).await;
    widgets(&org, 30).await;
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nreconcile_secs = 1\n\n[inbound.objects.Widget__c]\nfields = [\"Name\"]\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    let first = sync.pass().await.expect("backfill");
    assert_eq!(first.objects[0].backfilled, 30, "{first:?}");

    let mut ids: Vec<String> = org_rows(&org, "Widget__c", false).into_keys().collect();
    ids.sort();
    let (purged, rest) = ids.split_at(5);
    hard_delete(&org, "Widget__c", purged).await;
    for id in &rest[..3] {
        let url = format!(
            "{}/services/data/v62.0/sobjects/Widget__c/{id}",
            org.base_url()
        );
        let r = http
            .delete(url)
            .bearer_auth(org.access_token())
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status().as_u16(), 204);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let second = sync.pass().await.expect("pass");
    assert_eq!(second.objects[0].error, None);
    assert_eq!(
        second.objects[0].deleted, 8,
        "3 soft deletes + 5 found by reconciliation: {second:?}"
    );

    let lines = sink_lines(dir.path(), "Widget__c");
    let mut deletes: HashMap<&str, usize> = HashMap::new();
    for l in lines.iter().filter(|l| l["op"] == "delete") {
        *deletes.entry(l["id"].as_str().expect("id")).or_default() += 1;
    }
    for id in purged.iter().chain(&rest[..3]) {
        assert_eq!(deletes.get(id.as_str()), Some(&1), "{id} deleted once");
    }
    assert_eq!(deletes.len(), 8);

    // The next reconciliation finds nothing new.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let third = sync.pass().await.expect("pass");
    assert_eq!(third.objects[0].deleted, 0, "{third:?}");
}

/// Only reconciliation reads the Ids a sync delivered, and only an object without
/// replication is reconciled: a replicateable object's backfill keeps none (it cost a
/// B-tree insert per row and grew the store by every row), the other keeps every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_object_without_replication_keeps_the_ids_it_delivered() {
    use weft::store::{RedbStore, Store};

    let org = org(40, 0).await;
    widgets(&org, 12).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("weft.redb");
    let body = format!(
        "[inbound.objects.Account]\nfields = [\"Name\"]\n\n[inbound.objects.Widget__c]\nfields = [\"Name\"]\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    {
        let mut sync = inbound(&config, &db);
        let report = sync.pass().await.expect("backfill");
        let backfilled: Vec<u64> = report.objects.iter().map(|o| o.backfilled).collect();
        assert_eq!(backfilled[1], 12, "{report:?}");
        assert!(backfilled[0] > 0, "{report:?}");
    }
    let store = RedbStore::open(&db).expect("store");
    let kept = |object: &str| {
        store
            .synced_ids(INSTALLATION, object, None, 1_000)
            .expect("synced ids")
            .len()
    };
    assert_eq!(kept("Account"), 0);
    assert_eq!(kept("Widget__c"), 12);
}

/// The org's own churn deletes some rows for good (hard deletes, emptied recycle bin): gone
/// from `queryAll`, so only the replication `deleted` resource can tell Weft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_hard_deletes_arrive_as_deletes_through_the_deleted_resource() {
    let org = org(1_500, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nbulk_threshold = 100000\npage_size = 500\n\n[inbound.objects.Account]\nfields = [\"Name\"]\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    sync.pass().await.expect("backfill pass");
    sync.pass().await.expect("quiet pass");

    let live_before = org_rows(&org, "Account", false);
    assert!(org.generate_changes(2_000) > 0);
    let all_after = org_rows(&org, "Account", true);
    let purged: Vec<&String> = live_before
        .keys()
        .filter(|id| !all_after.contains_key(*id))
        .collect();
    assert!(!purged.is_empty(), "the churn deleted some rows for good");

    org.reset_stats();
    let busy = sync.pass().await.expect("pass with changes");
    assert_eq!(busy.objects[0].error, None, "{busy:?}");
    assert!(
        org.stats()
            .by_kind
            .get("getUpdatedDeleted")
            .copied()
            .unwrap_or(0)
            >= 1,
        "the deleted resource was asked"
    );
    let lines = sink_lines(dir.path(), "Account");
    let mut deletes: HashMap<&str, usize> = HashMap::new();
    for l in lines.iter().filter(|l| l["op"] == "delete") {
        *deletes.entry(l["id"].as_str().expect("id")).or_default() += 1;
    }
    for id in &purged {
        assert_eq!(
            deletes.get(id.as_str()),
            Some(&1),
            "{id}: deleted for good, delivered as one delete"
        );
    }
}
