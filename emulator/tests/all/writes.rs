//! sObject Rows, upsert, collections, validation, audit fields.

use crate::common::{small, start};
use serde_json::{Value, json};

#[tokio::test]
async fn create_read_update_delete_round_trip_with_audit_fields() {
    let (org, api) = start(small()).await;
    let r = api.post("sobjects/Account/", json!({"Name": "Weft Test Co", "Tier__c": "Gold", "NumberOfEmployees": 12, "AnnualRevenue": 1000})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["success"], true);
    assert_eq!(r.body["errors"], json!([]));
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    assert!(id.starts_with("001") && id.len() == 18);

    let g = api.get(&format!("sobjects/Account/{id}")).await;
    assert_eq!(g.body["Name"], "Weft Test Co");
    assert_eq!(g.body["AnnualRevenue"], json!(1000.0));
    assert_eq!(g.body["NumberOfEmployees"], json!(12));
    assert_eq!(g.body["IsDeleted"], false);
    let created = g.body["LastModifiedDate"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        g.body["SystemModstamp"]
            .as_str()
            .is_some_and(|s| s >= created.as_str())
    );

    let g = api
        .get(&format!("sobjects/Account/{id}?fields=Name,Tier__c"))
        .await;
    assert_eq!(g.body.as_object().map(|o| o.len()), Some(3));

    // A stale If-Unmodified-Since is refused with 412 and nothing is written.
    let r = api
        .call(
            reqwest::Method::PATCH,
            &format!("sobjects/Account/{id}"),
            Some(json!({"Name": "Stale"})),
            &[("If-Unmodified-Since", "Wed, 21 Oct 2015 07:28:00 GMT")],
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.text);
    let r = api
        .call(
            reqwest::Method::PATCH,
            &format!("sobjects/Account/{id}"),
            Some(json!({"Name": "Fresh"})),
            &[("If-Unmodified-Since", "Wed, 21 Oct 2099 07:28:00 GMT")],
        )
        .await;
    assert_eq!(r.status, 204);
    let r = api
        .patch(
            &format!("sobjects/Account/{id}"),
            json!({"Name": "Renamed", "Phone": null}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let q = api
        .query(&format!(
            "SELECT Name, SystemModstamp FROM Account WHERE Id = '{id}'"
        ))
        .await;
    assert_eq!(q.body["records"][0]["Name"], "Renamed");

    assert_eq!(
        api.delete(&format!("sobjects/Account/{id}")).await.status,
        204
    );
    let r = api
        .patch(&format!("sobjects/Account/{id}"), json!({"Name": "Zombie"}))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (404, "ENTITY_IS_DELETED")
    );
    let r = api.delete(&format!("sobjects/Account/{id}")).await;
    assert_eq!(r.error_code(), "ENTITY_IS_DELETED");
    let q = api
        .query_all(&format!("SELECT IsDeleted FROM Account WHERE Id = '{id}'"))
        .await;
    assert_eq!(q.body["records"][0]["IsDeleted"], true);
    assert_eq!(
        api.count(&format!("SELECT COUNT() FROM Account WHERE Id = '{id}'"))
            .await,
        0
    );
    // The in-process view agrees, without touching the API allocation.
    let usage = org.api_usage().0;
    let recs = org
        .query(
            &format!("SELECT Id, Name, IsDeleted FROM Account WHERE Id = '{id}'"),
            true,
        )
        .expect("soql");
    assert_eq!(recs[0]["Name"], "Renamed");
    assert_eq!(recs[0]["IsDeleted"], true);
    assert!(org.query("SELECT Nope FROM Account", false).is_err());
    assert_eq!(org.api_usage().0, usage);
}

#[tokio::test]
async fn validation_matches_a_real_org() {
    let (_org, api) = start(small()).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"Phone": "1"}), "REQUIRED_FIELD_MISSING"),
        (
            json!({"Name": "x", "Tier__c": "Platinum"}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (json!({"Name": "x".repeat(256)}), "STRING_TOO_LONG"),
        (
            json!({"Name": "x", "NumberOfEmployees": "many"}),
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
        ),
        (json!({"Name": "x", "Bogus__c": 1}), "INVALID_FIELD"),
        (
            json!({"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z"}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
        ),
        (
            json!({"Name": "x", "OwnerId": "001RO0000000001YAA"}),
            "FIELD_INTEGRITY_EXCEPTION",
        ),
        (
            json!({"Name": "x", "External_Id__c": "ACC-7-00000001"}),
            "DUPLICATE_VALUE",
        ),
    ];
    for (body, code) in cases {
        let r = api.post("sobjects/Account", body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (400, code),
            "{body}: {}",
            r.text
        );
    }
    let r = api
        .post(
            "sobjects/Contact",
            json!({"FirstName": "No", "Email": "not-an-email", "LastName": "X"}),
        )
        .await;
    assert_eq!(r.error_code(), "INVALID_EMAIL_ADDRESS");
    let r = api
        .post("sobjects/Opportunity", json!({"Name": "Deal"}))
        .await;
    assert_eq!(r.error_code(), "REQUIRED_FIELD_MISSING");
    assert!(
        r.body[0]["fields"].as_array().is_some_and(|f| f.len() == 2),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn upsert_by_external_id_inserts_then_updates() {
    let (_org, api) = start(small()).await;
    let r = api
        .patch(
            "sobjects/Account/External_Id__c/WEFT-1",
            json!({"Name": "Upserted"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["created"], true);
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    let r = api
        .patch(
            "sobjects/Account/External_Id__c/weft-1",
            json!({"Name": "Upserted again"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["created"], false);
    assert_eq!(
        r.body["id"],
        id.as_str(),
        "external ids match case-insensitively"
    );
    let r = api
        .patch(
            "/services/data/v45.0/sobjects/Account/External_Id__c/WEFT-1",
            json!({"Name": "old api"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = api
        .patch("sobjects/Account/Name/WEFT-1", json!({"Phone": "1"}))
        .await;
    assert_eq!(r.status, 404);
    let g = api.get("sobjects/Account/External_Id__c/WEFT-1").await;
    assert_eq!(g.body["Name"], "old api");

    // Lookups by the parent's external id.
    let r = api
        .patch(
            "sobjects/Contact/External_Id__c/WEFT-C1",
            json!({"LastName": "Child", "Account": {"External_Id__c": "WEFT-1"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let q = api
        .query("SELECT Account.External_Id__c FROM Contact WHERE External_Id__c = 'WEFT-C1'")
        .await;
    assert_eq!(q.body["records"][0]["Account"]["External_Id__c"], "WEFT-1");
    let r = api
        .post(
            "sobjects/Contact",
            json!({"LastName": "Orphan", "Account": {"External_Id__c": "NO-SUCH"}}),
        )
        .await;
    assert_eq!(r.error_code(), "INVALID_FIELD", "{}", r.text);
}

#[tokio::test]
async fn collections_report_per_record_results_and_honour_all_or_none() {
    let (_org, api) = start(small()).await;
    let recs = json!([
        {"attributes": {"type": "Account"}, "Name": "C1", "External_Id__c": "COL-1"},
        {"attributes": {"type": "Account"}, "Tier__c": "Gold"},
        {"attributes": {"type": "Contact"}, "LastName": "Mixed"},
    ]);
    let r = api
        .post(
            "composite/sobjects",
            json!({"allOrNone": false, "records": recs}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let res = r.body.as_array().cloned().unwrap_or_default();
    assert_eq!(res.len(), 3);
    assert_eq!(res[0]["success"], true);
    assert_eq!(res[1]["success"], false);
    assert_eq!(res[1]["errors"][0]["statusCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(res[2]["success"], true);

    let before = api.count("SELECT COUNT() FROM Account").await;
    let recs = json!([
        {"attributes": {"type": "Account"}, "Name": "Rollback me", "External_Id__c": "COL-2"},
        {"attributes": {"type": "Account"}, "Name": "dup", "External_Id__c": "COL-1"},
    ]);
    let r = api
        .post(
            "composite/sobjects",
            json!({"allOrNone": true, "records": recs}),
        )
        .await;
    let res = r.body.as_array().cloned().unwrap_or_default();
    assert_eq!(
        res[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(res[1]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    assert_eq!(
        api.count("SELECT COUNT() FROM Account").await,
        before,
        "nothing committed"
    );
    // The rolled-back external id is free again.
    let r = api
        .patch(
            "sobjects/Account/External_Id__c/COL-2",
            json!({"Name": "now it exists"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    let recs = json!([
        {"attributes": {"type": "Account"}, "External_Id__c": "COL-1", "Name": "C1 updated"},
        {"attributes": {"type": "Account"}, "External_Id__c": "COL-9", "Name": "C9"},
    ]);
    let r = api
        .patch(
            "composite/sobjects/Account/External_Id__c",
            json!({"allOrNone": false, "records": recs}),
        )
        .await;
    let res = r.body.as_array().cloned().unwrap_or_default();
    assert_eq!(
        (res[0]["created"].clone(), res[1]["created"].clone()),
        (json!(false), json!(true)),
        "{}",
        r.text
    );

    let id1 = res[0]["id"].as_str().unwrap_or_default().to_string();
    let id9 = res[1]["id"].as_str().unwrap_or_default().to_string();
    let r = api
        .patch(
            "composite/sobjects",
            json!({"records": [{"attributes": {"type": "Account"}, "id": id1, "Phone": "42"}]}),
        )
        .await;
    assert_eq!(r.body[0]["success"], true, "{}", r.text);
    let r = api
        .get(&format!(
            "composite/sobjects/Account?ids={id1},{id9}&fields=Id,Phone"
        ))
        .await;
    assert_eq!(r.body[0]["Phone"], "42");
    let r = api
        .delete(&format!(
            "composite/sobjects?ids={id1},{id9}&allOrNone=false"
        ))
        .await;
    assert_eq!(r.body[1]["success"], true, "{}", r.text);

    let too_many: Vec<Value> = (0..201)
        .map(|i| json!({"attributes": {"type": "Account"}, "Name": format!("n{i}")}))
        .collect();
    let r = api
        .post("composite/sobjects", json!({"records": too_many}))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn composite_chains_references_and_rolls_back_all_or_none() {
    let (org, api) = start(small()).await;
    let body = json!({"allOrNone": true, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v60.0/sobjects/Account", "referenceId": "acc", "body": {"Name": "Composite Co"}},
        {"method": "POST", "url": "/services/data/v60.0/sobjects/Contact", "referenceId": "con", "body": {"LastName": "Comp", "AccountId": "@{acc.id}"}},
        {"method": "GET", "url": "/services/data/v60.0/sobjects/Account/@{acc.id}?fields=Name", "referenceId": "read"},
        {"method": "GET", "url": "/services/data/v60.0/query?q=SELECT+Id+FROM+Contact+WHERE+AccountId+%3D+'@{acc.id}'", "referenceId": "q"},
    ]});
    let r = api.post("composite", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let res = r.body["compositeResponse"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(res[0]["httpStatusCode"], 201);
    assert_eq!(res[1]["httpStatusCode"], 201, "{}", r.text);
    assert_eq!(res[2]["body"]["Name"], "Composite Co");
    assert_eq!(res[3]["body"]["totalSize"], 1);
    let events_before = org.events_after(0).len();
    assert_eq!(
        events_before, 2,
        "events published once the composite committed"
    );

    let before = api.count("SELECT COUNT() FROM Account").await;
    let body = json!({"allOrNone": true, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v60.0/sobjects/Account", "referenceId": "ok", "body": {"Name": "Doomed"}},
        {"method": "PATCH", "url": "/services/data/v60.0/sobjects/Account/@{ok.id}", "referenceId": "upd", "body": {"Phone": "1"}},
        {"method": "POST", "url": "/services/data/v60.0/sobjects/Account", "referenceId": "bad", "body": {"Tier__c": "Gold"}},
        {"method": "POST", "url": "/services/data/v60.0/sobjects/Account", "referenceId": "never", "body": {"Name": "Never"}},
    ]});
    let r = api.post("composite", body).await;
    let res = r.body["compositeResponse"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(res[0]["httpStatusCode"], 400);
    assert_eq!(res[0]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(res[2]["body"][0]["errorCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(res[3]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(
        api.count("SELECT COUNT() FROM Account").await,
        before,
        "rolled back"
    );
    assert_eq!(
        org.events_after(0).len(),
        events_before,
        "no events for rolled-back work"
    );

    // Without allOrNone, independent subrequests still run; dependants of a failure halt.
    let body = json!({"compositeRequest": [
        {"method": "POST", "url": "/services/data/v60.0/sobjects/Account", "referenceId": "bad", "body": {"Tier__c": "Gold"}},
        {"method": "POST", "url": "/services/data/v60.0/sobjects/Contact", "referenceId": "dep", "body": {"LastName": "X", "AccountId": "@{bad.id}"}},
        {"method": "POST", "url": "/services/data/v60.0/sobjects/Account", "referenceId": "fine", "body": {"Name": "Fine"}},
    ]});
    let r = api.post("composite", body).await;
    let res = r.body["compositeResponse"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        res[1]["body"][0]["errorCode"], "PROCESSING_HALTED",
        "{}",
        r.text
    );
    assert_eq!(res[2]["httpStatusCode"], 201);
    assert_eq!(org.stats().by_kind.get("composite").copied(), Some(3));
}

#[tokio::test]
async fn gzip_request_bodies_are_decoded_and_bad_gzip_is_refused() {
    let (org, api) = start(small()).await;
    let recs: Vec<_> = (0..200)
        .map(|i| json!({"attributes": {"type": "Account"}, "External_Id__c": format!("GZ-{i:04}"), "Name": format!("Gzipped {i}")}))
        .collect();
    let body = serde_json::to_vec(&json!({"allOrNone": false, "records": recs})).expect("json");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &body).expect("gzip");
    let gz = enc.finish().expect("gzip");
    assert!(gz.len() < body.len());
    let send = |payload: Vec<u8>| {
        api.http
            .patch(api.url("composite/sobjects/Account/External_Id__c"))
            .bearer_auth(&api.token)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .body(payload)
            .send()
    };
    let r = send(gz).await.expect("sent");
    assert_eq!(r.status(), 200);
    let res: serde_json::Value = r.json().await.expect("results");
    let res = res.as_array().cloned().unwrap_or_default();
    assert_eq!(res.len(), 200);
    assert!(
        res.iter()
            .all(|r| r["success"] == true && r["created"] == true)
    );
    assert_eq!(
        api.count("SELECT COUNT() FROM Account WHERE External_Id__c LIKE 'GZ-%'")
            .await,
        200
    );
    assert_eq!(org.stats().gzip_request_bodies, 1);

    // A body that claims gzip but is not: refused, nothing written.
    let r = send(body).await.expect("sent");
    assert_eq!(r.status(), 400);
    let err: serde_json::Value = r.json().await.expect("error body");
    assert_eq!(err[0]["errorCode"], "INVALID_CONTENT_ENCODING");
    assert_eq!(org.stats().gzip_request_bodies, 1);
}
