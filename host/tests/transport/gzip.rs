//! Request bodies are gzipped (`Content-Encoding: gzip`) once they are large enough, and the
//! org decodes them: the records written are the records sent.

use futures_util::TryStreamExt;
use weft::throttle::Project;

use crate::common::{org, rig, roomy};
use crate::upsert::account;

#[tokio::test]
async fn large_bodies_are_gzipped_and_arrive_intact() {
    let org = org(roomy(10)).await;
    let r = rig(&org, "gzip");
    assert!(r.client.config().gzip_requests, "on by default");
    let small: Vec<_> = (0..3).map(account).collect();
    let big: Vec<_> = (3..203).map(account).collect();
    let r1 = r
        .client
        .upsert_collection(Project::Outbound, "Account", "External_Id__c", &small)
        .await
        .expect("small");
    assert_eq!(
        org.stats().gzip_request_bodies,
        0,
        "a few hundred bytes are sent as they are"
    );
    let r2 = r
        .client
        .upsert_collection(Project::Outbound, "Account", "External_Id__c", &big)
        .await
        .expect("big");
    assert_eq!(
        org.stats().gzip_request_bodies,
        1,
        "a 200-record body is gzipped"
    );
    assert!(
        r1.iter()
            .chain(&r2)
            .all(|x| x.success && x.created == Some(true))
    );

    let pages: Vec<_> = r
        .client
        .query(
            Project::Outbound,
            "SELECT External_Id__c, Name, NumberOfEmployees, BillingCity FROM Account WHERE External_Id__c LIKE 'WEFT-%'",
        )
        .try_collect()
        .await
        .expect("read back");
    let mut written: Vec<_> = pages.into_iter().flat_map(|p| p.records).collect();
    assert_eq!(written.len(), 203);
    written.sort_by(|a, b| {
        a["External_Id__c"]
            .as_str()
            .cmp(&b["External_Id__c"].as_str())
    });
    for (got, sent) in written.iter().zip(small.iter().chain(&big)) {
        for (k, v) in sent {
            assert_eq!(&got[k], v, "{k}");
        }
    }
}
