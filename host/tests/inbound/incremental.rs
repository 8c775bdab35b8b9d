//! Incremental passes: changes, creations and deletes after the backfill, each delivered
//! once, and a sink that ends up matching the org.

use std::collections::HashMap;

use serde_json::Value;

use crate::common::{SINK, inbound, latest, org, org_rows, sink_lines, write_config};

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
