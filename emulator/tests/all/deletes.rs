//! Deletes as a real org keeps them: the recycle bin (`queryAll`, `IsDeleted = true`) for 15
//! days, then gone for good; hard deletes and emptied recycle bins gone at once; every one
//! still listed by the replication `deleted` resource.

use crate::common::{Api, small, start};
use std::collections::HashSet;
use std::time::Duration;

const EVER: &str = "start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z";

async fn ids(api: &Api, all: bool, object: &str) -> HashSet<String> {
    let soql = format!("SELECT Id FROM {object}");
    let mut out = HashSet::new();
    let mut r = if all {
        api.query_all(&soql).await
    } else {
        api.query(&soql).await
    };
    loop {
        assert_eq!(r.status, 200, "{}", r.text);
        for rec in r.body["records"].as_array().expect("records") {
            out.insert(rec["Id"].as_str().expect("id").to_string());
        }
        match r.body["nextRecordsUrl"].as_str() {
            Some(next) => r = api.get(next).await,
            None => return out,
        }
    }
}

async fn listed_deleted(api: &Api, object: &str) -> HashSet<String> {
    let r = api.get(&format!("sobjects/{object}/deleted?{EVER}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["deletedRecords"]
        .as_array()
        .expect("deletedRecords")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn generated_changes_delete_some_records_for_good_and_the_deleted_resource_lists_them() {
    let (org, api) = start(small()).await;
    let before_acc = ids(&api, true, "Account").await;
    let before_con = ids(&api, true, "Contact").await;
    assert!(org.generate_changes(3_000) > 0);
    let mut purged_total = 0;
    for (object, before) in [("Account", before_acc), ("Contact", before_con)] {
        let all_after = ids(&api, true, object).await;
        let live_after = ids(&api, false, object).await;
        let purged: Vec<&String> = before
            .iter()
            .filter(|id| !all_after.contains(*id))
            .collect();
        let binned: Vec<&String> = all_after.difference(&live_after).collect();
        let listed = listed_deleted(&api, object).await;
        for id in &purged {
            assert!(
                listed.contains(*id),
                "{object} {id}: purged but not in `deleted`"
            );
        }
        for id in &binned {
            assert!(
                listed.contains(*id),
                "{object} {id}: in the bin but not in `deleted`"
            );
        }
        for id in &listed {
            assert!(
                !live_after.contains(id),
                "{object} {id}: listed deleted but live"
            );
        }
        purged_total += purged.len();
        assert!(
            !binned.is_empty(),
            "{object}: some deletes stay in the recycle bin"
        );
    }
    assert!(purged_total > 0, "some generated deletes are for good");
}

#[tokio::test]
async fn the_recycle_bin_keeps_a_record_fifteen_days() {
    let (org, api) = start(small()).await;
    let id = api
        .query("SELECT Id FROM Account ORDER BY Id LIMIT 1")
        .await
        .body["records"][0]["Id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = api.delete(&format!("sobjects/Account/{id}")).await;
    assert_eq!(r.status, 204);
    let in_bin = |all: &HashSet<String>| all.contains(&id);
    assert!(in_bin(&ids(&api, true, "Account").await));
    assert!(!ids(&api, false, "Account").await.contains(&id));

    org.advance_clock(Duration::from_secs(14 * 86_400));
    assert!(
        in_bin(&ids(&api, true, "Account").await),
        "still in the bin on day 14"
    );
    org.advance_clock(Duration::from_secs(86_400 + 60));
    assert!(
        !in_bin(&ids(&api, true, "Account").await),
        "purged after 15 days"
    );
    let q = org
        .query(&format!("SELECT Id FROM Account WHERE Id = '{id}'"), true)
        .expect("query");
    assert!(q.is_empty(), "gone in-process too: {q:?}");
    assert!(
        listed_deleted(&api, "Account").await.contains(&id),
        "the delete log keeps it"
    );
    let r = api.get(&format!("sobjects/Account/{id}")).await;
    assert_eq!(r.status, 404);
}
