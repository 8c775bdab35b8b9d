//! DLQ replay: after the org is fixed, replaying the dead-lettered events sends the
//! original events through the current pipeline, and they are written.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use weft::store::{DlqStatus, StoreExt};
use weft_emulator::FieldSpec;

use crate::common::{ROLES, accept, accounts, acme_config, company, drain, event, open_dlq, rig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_entries_are_written_after_the_fix() {
    let mut rig = rig(acme_config()).await;
    let now = Timestamp::now();
    let events: Vec<_> = (0..10)
        .map(|i| {
            let mut record = company(i);
            if i % 3 == 0 {
                record.insert("account_manager_role".into(), json!("Customer Success"));
            }
            event(&format!("e{i}"), record, now)
        })
        .collect();
    accept(&rig.store, &events);
    drain(&mut rig, Duration::from_secs(30)).await;
    let dlq = open_dlq(&rig.store);
    assert_eq!(dlq.len(), 4);
    assert_eq!(accounts(&rig.org).len(), 6);

    // The admin adds the missing picklist value; the pipeline re-reads describe.
    let mut role = FieldSpec::new(
        "Account_Manager_Role__c",
        weft_emulator::FieldType::Picklist,
    );
    role.picklist_values = ROLES
        .iter()
        .map(|r| (*r).to_owned())
        .chain(["Customer Success".to_owned()])
        .collect();
    role.restricted_picklist = true;
    rig.org
        .remove_field("Account", "Account_Manager_Role__c")
        .expect("remove");
    rig.org
        .add_field("Account", &role)
        .expect("re-add with the new value");
    rig.pipeline.refresh_schemas();

    for entry in &dlq {
        rig.store
            .replay_dlq(entry.id, Timestamp::now())
            .expect("replay");
    }
    drain(&mut rig, Duration::from_secs(30)).await;
    assert!(
        open_dlq(&rig.store).is_empty(),
        "{:#?}",
        open_dlq(&rig.store)
    );
    let written = accounts(&rig.org);
    assert_eq!(written.len(), 10);
    assert_eq!(
        written["C-00003"]["Account_Manager_Role__c"],
        "Customer Success"
    );
    for entry in &dlq {
        let after = weft::store::Store::dlq_get(&*rig.store, entry.id)
            .expect("get")
            .expect("kept");
        assert_eq!(after.status, DlqStatus::Replayed);
    }
}
