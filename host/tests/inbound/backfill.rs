//! Backfill over REST and over Bulk, and a Bulk backfill whose job is gone on resume.

use std::collections::HashSet;

use weft::inbound::Backfill;
use weft::salesforce::BulkCursor;
use weft::store::{RedbStore, Store, StoreExt};

use crate::common::{INSTALLATION, SINK, inbound, org, org_rows, sink_lines, write_config};

const ACCOUNT_QUERY: &str = r#"query = "SELECT Id, Name, Website, GoldenAccountID__c, MasterRecordId, External_Id__c FROM Account""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_backfill_delivers_every_row_with_plugin_output_and_keys() {
    let org = org(1_500, 300).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nbulk_threshold = 100000\npage_size = 500\n\n[inbound.objects.Account]\n{ACCOUNT_QUERY}\n\n[inbound.objects.Contact]\nfields = [\"FirstName\", \"LastName\", \"Account.Name\"]\n{SINK}"
    );
    let config = write_config(
        dir.path(),
        &org,
        "golden-dedup",
        "\"external.system\" = \"External_Id__c\"",
        &body,
    );
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    let report = sync.pass().await.expect("pass");
    assert_eq!(report.objects[0].object, "Account", "Account syncs first");
    // The seeded org keeps some rows in its recycle bin; a backfill reads live rows.
    assert_eq!(
        report.objects[0].backfilled as usize,
        org_rows(&org, "Account", false).len()
    );
    assert_eq!(
        report.objects[1].backfilled as usize,
        org_rows(&org, "Contact", false).len()
    );

    for object in ["Account", "Contact"] {
        let lines = sink_lines(dir.path(), object);
        let org = org_rows(&org, object, false);
        let ids: HashSet<&str> = lines
            .iter()
            .map(|l| l["id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids.len(), org.len(), "{object}: every row once");
        for line in &lines {
            let id = line["id"].as_str().expect("id");
            assert_eq!(
                line["system_modstamp"].as_str(),
                org.get(id).map(String::as_str),
                "{id}"
            );
            assert_eq!(line["op"], "upsert");
        }
    }
    let accounts = sink_lines(dir.path(), "Account");
    let with_keys = accounts
        .iter()
        .filter(|l| {
            l["output"][0]["keys"]
                .as_object()
                .is_some_and(|k| !k.is_empty())
        })
        .count();
    assert!(
        with_keys > 1_000,
        "golden-dedup keyed {with_keys} of 1500 Accounts"
    );
    let contact = &sink_lines(dir.path(), "Contact")[0];
    assert!(
        contact["output"][0]["fields"].get("Account.Name").is_some(),
        "parent fields arrive flattened: {contact}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_backfill_whose_job_is_gone_is_recreated_from_the_checkpoint() {
    let org = org(5_000, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nbulk_threshold = 1000\n\n[inbound.objects.Account]\n{ACCOUNT_QUERY}\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let db = dir.path().join("weft.redb");

    // A backfill that got through the first 2,000 rows (in Id order) of a Bulk job that
    // no longer exists — results expire, jobs get deleted.
    // In the org's own Id order, which is what `ORDER BY Id` and `Id >` follow.
    let ids: Vec<String> = org
        .query("SELECT Id FROM Account ORDER BY Id", false)
        .expect("ids")
        .iter()
        .map(|r| r["Id"].as_str().expect("id").to_owned())
        .collect();
    plant(
        &db,
        Backfill {
            bulk: Some(BulkCursor {
                job_id: "750000000000000AAA".into(),
                locator: Some("MjAwMA".into()),
                skip: 0,
            }),
            use_bulk: true,
            ..delivered_up_to(&ids, 2_000)
        },
    );
    let mut sync = inbound(&config, &db);
    let report = sync.pass().await.expect("pass");
    assert_eq!(
        report.objects[0].backfilled as usize,
        ids.len() - 2_000,
        "only the rows after the checkpoint"
    );
    // The backfill's lines come first (the incremental step after it re-reads from the
    // planted checkpoint's zero high-water mark and may append more).
    let delivered: Vec<String> = sink_lines(dir.path(), "Account")
        .iter()
        .take(ids.len() - 2_000)
        .map(|l| l["id"].as_str().expect("id").to_owned())
        .collect();
    let first_wrong = delivered
        .iter()
        .zip(&ids[2_000..])
        .position(|(a, b)| a != b);
    assert_eq!(first_wrong, None, "exactly the rest, in Id order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_dead_letters_its_rows_and_the_sync_goes_on() {
    let org = org(700, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nbulk_threshold = 100000\npage_size = 500\n\n[inbound.objects.Account]\nfields = [\"Name\"]\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "hostile", "mode = \"wrong-count\"", &body);
    let db = dir.path().join("weft.redb");
    let mut sync = inbound(&config, &db);
    let report = sync
        .pass()
        .await
        .expect("a failing plugin does not stop the sync");
    let live = org_rows(&org, "Account", false).len();
    assert_eq!(report.objects[0].failed as usize, live);
    drop(sync);
    let store = RedbStore::open(&db).expect("store");
    let dead = store.dlq_list(&Default::default()).expect("dlq").entries;
    assert_eq!(dead.len(), live, "every row is in the DLQ");
    assert!(
        dead.iter()
            .all(|d| d.error_code == "PLUGIN_MALFORMED_OUTPUT"),
        "{:?}",
        dead[0]
    );
    assert!(sink_lines(dir.path(), "Account").is_empty());
    let watermark: Option<weft::inbound::Watermark> = store
        .get_watermark(INSTALLATION, "Account")
        .expect("watermark");
    assert!(
        watermark.is_some(),
        "the backfill completed past the failed rows"
    );
}

/// A record that fans out past the installation's `plugin.max_fanout` dead-letters its page
/// with the same code the outbound pipeline gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_fanning_out_past_max_fanout_dead_letters_with_its_code() {
    let org = org(300, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    // `max_fanout` lands in the `[plugin]` table `write_config` ends with.
    let body = format!(
        "max_fanout = 2\n\n[inbound]\nbulk_threshold = 100000\n\n[inbound.objects.Account]\nfields = [\"Name\"]\n{SINK}"
    );
    let plugin = r#"mode = "fanout", "fanout.rows" = "3""#;
    let config = write_config(dir.path(), &org, "hostile", plugin, &body);
    let db = dir.path().join("weft.redb");
    let mut sync = inbound(&config, &db);
    sync.pass()
        .await
        .expect("a failing plugin does not stop the sync");
    drop(sync);
    let store = RedbStore::open(&db).expect("store");
    let dead = store.dlq_list(&Default::default()).expect("dlq").entries;
    assert_eq!(dead.len(), org_rows(&org, "Account", false).len());
    assert!(
        dead.iter()
            .all(|d| d.error_code == "PLUGIN_FANOUT_EXCEEDED"),
        "{:?}",
        dead[0]
    );
    assert!(sink_lines(dir.path(), "Account").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_fails_does_not_hold_up_the_others() {
    let org = org(300, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\norder = [\"Gone__c\", \"Account\"]\n\n[inbound.objects.Gone__c]\n\n[inbound.objects.Account]\nfields = [\"Name\"]\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    let report = sync.pass().await.expect("pass");
    let gone = &report.objects[0];
    assert!(
        gone.error.as_deref().is_some_and(|e| e.contains("Gone__c")),
        "{gone:?}"
    );
    assert_eq!(report.objects[1].error, None);
    assert_eq!(
        report.objects[1].backfilled as usize,
        org_rows(&org, "Account", false).len()
    );
    assert_eq!(report.failed_objects().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_job_stuck_in_progress_is_aborted_and_created_again() {
    let org = org(3_000, 0).await;
    org.set_faults(weft_emulator::FaultConfig {
        bulk_stuck_rate: 1.0,
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nbulk_threshold = 100\n\n[inbound.objects.Account]\nfields = [\"Name\"]\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "client_secret_file = \"secret\"",
            "client_secret_file = \"secret\"\nbulk_job_timeout_secs = 1",
        ),
    )
    .expect("config");
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    let progress = sync.progress();
    // The first job sticks; once it has, the org heals, so the re-created job completes.
    let heal = async {
        loop {
            let stuck = org
                .stats()
                .faults_injected
                .get("bulk_stuck")
                .copied()
                .unwrap_or(0);
            if stuck >= 1 {
                org.set_faults(weft_emulator::FaultConfig::default());
                return stuck;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let (report, stuck) = tokio::join!(sync.pass(), heal);
    let report = report.expect("pass");
    assert_eq!(stuck, 1);
    assert_eq!(report.objects[0].error, None);
    assert_eq!(
        report.objects[0].backfilled as usize,
        org_rows(&org, "Account", false).len()
    );
    let note = progress.snapshot()["Account"]
        .note
        .clone()
        .unwrap_or_default();
    assert!(
        note.contains("re-created"),
        "the stuck job is reported: {note:?}"
    );
    let ids: HashSet<String> = sink_lines(dir.path(), "Account")
        .iter()
        .map(|l| l["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), org_rows(&org, "Account", false).len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_backfill_cuts_the_sink_back_to_its_checkpoint() {
    let org = org(3_000, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nbulk_threshold = 100000\npage_size = 500\n\n[inbound.objects.Account]\n{ACCOUNT_QUERY}\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let db = dir.path().join("weft.redb");
    let ids: Vec<String> = org
        .query("SELECT Id FROM Account ORDER BY Id", false)
        .expect("ids")
        .iter()
        .map(|r| r["Id"].as_str().expect("id").to_owned())
        .collect();
    // The sink as a crash left it: what the checkpoint covers, then lines of pages whose
    // checkpoint never committed (delivered while it was being written).
    let kept = "{\"kept\":true}\n";
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out");
    std::fs::write(
        out.join("Account.ndjson"),
        format!("{kept}{{\"past_the_checkpoint\":1}}\n{{\"past_the_checkpoint\":2}}\n"),
    )
    .expect("sink file");
    plant(
        &db,
        Backfill {
            sink_end: Some(kept.len() as u64),
            ..delivered_up_to(&ids, 1_000)
        },
    );
    let mut sync = inbound(&config, &db);
    sync.pass().await.expect("pass");
    let lines = sink_lines(dir.path(), "Account");
    assert_eq!(lines[0], serde_json::json!({"kept": true}));
    assert!(
        lines.iter().all(|l| l.get("past_the_checkpoint").is_none()),
        "the lines past the checkpoint are cut"
    );
    let delivered: Vec<&str> = lines[1..]
        .iter()
        .take(ids.len() - 1_000)
        .map(|l| l["id"].as_str().expect("id"))
        .collect();
    assert_eq!(delivered, ids[1_000..], "then the rest, once, in Id order");
}

/// A REST backfill of Accounts (the fields of `ACCOUNT_QUERY`) that has delivered the
/// first `done` of `ids`, in Id order.
fn delivered_up_to(ids: &[String], done: usize) -> Backfill {
    Backfill {
        fields: [
            "Id",
            "SystemModstamp",
            "IsDeleted",
            "Name",
            "Website",
            "GoldenAccountID__c",
            "MasterRecordId",
            "External_Id__c",
        ]
        .map(String::from)
        .to_vec(),
        reason: "initial".into(),
        last_id: Some(ids[done - 1].clone()),
        bulk: None,
        use_bulk: false,
        done: done as u64,
        total: ids.len() as u64,
        failed: 0,
        high_water_ms: 0,
        started_ms: jiff::Timestamp::now().as_millisecond(),
        recent: Default::default(),
        recent_saved: 0,
        sink_end: None,
    }
}

/// Stores `plan` as the Account checkpoint, as a run that stopped there left it.
fn plant(db: &std::path::Path, plan: Backfill) {
    RedbStore::open(db)
        .expect("store")
        .put_checkpoint(INSTALLATION, "Account", &Some(plan))
        .expect("checkpoint");
}
