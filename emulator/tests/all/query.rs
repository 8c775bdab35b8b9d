//! REST query: SOQL subset, paging, errors, queryAll, describe, versions.

use crate::common::{small, start};
use serde_json::Value;

#[tokio::test]
async fn pages_follow_next_records_url_under_query_and_query_all() {
    let (_org, api) = start(small()).await;
    let total = api.count("SELECT COUNT() FROM Account").await;
    let mut r = api
        .call(
            reqwest::Method::GET,
            "query/?q=SELECT+Id,Name+FROM+Account+ORDER+BY+Id",
            None,
            &[("Sforce-Query-Options", "batchSize=200")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("sforce-limit-info")
            .is_some_and(|h| h.starts_with("api-usage="))
    );
    assert_eq!(r.body["totalSize"].as_u64(), Some(total));
    let mut ids: Vec<String> = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        for rec in r.body["records"].as_array().cloned().unwrap_or_default() {
            ids.push(rec["Id"].as_str().unwrap_or_default().to_string());
            assert!(
                rec["attributes"]["url"]
                    .as_str()
                    .is_some_and(|u| u.contains("/sobjects/Account/"))
            );
        }
        if r.body["done"] == true {
            assert!(r.body.get("nextRecordsUrl").is_none());
            break;
        }
        let next = r.body["nextRecordsUrl"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(next.starts_with("/services/data/v60.0/query/01g"), "{next}");
        // jsforce rebuilds locators under /query/ even for queryAll; accept both.
        let path = if pages % 2 == 0 {
            next.replace("/query/", "/queryAll/")
        } else {
            next
        };
        r = api.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(ids.len() as u64, total);
    assert_eq!(pages, total.div_ceil(200));
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ORDER BY Id is id order");
}

#[tokio::test]
async fn soql_subset_filters_sorts_and_walks_parents() {
    let (_org, api) = start(small()).await;
    let all = api.count("SELECT COUNT() FROM Account").await;
    let gold = api
        .count("SELECT COUNT() FROM Account WHERE Tier__c = 'Gold'")
        .await;
    let not_gold = api
        .count("SELECT COUNT() FROM Account WHERE NOT Tier__c = 'Gold'")
        .await;
    assert_eq!(gold + not_gold, all);
    let inlist = api
        .count("SELECT COUNT() FROM Account WHERE Tier__c IN ('gold', 'Silver')")
        .await;
    let silver = api
        .count("SELECT COUNT() FROM Account WHERE Tier__c = 'Silver'")
        .await;
    assert_eq!(inlist, gold + silver, "string compare is case-insensitive");
    let or = api
        .count("SELECT COUNT() FROM Account WHERE Tier__c = 'Gold' OR Tier__c = 'Silver'")
        .await;
    assert_eq!(or, inlist);
    let like = api
        .count("SELECT COUNT() FROM Account WHERE Name LIKE 'acme%'")
        .await;
    assert!(like > 0 && like < all);
    let recent = api
        .count("SELECT COUNT() FROM Account WHERE SystemModstamp >= 2025-01-01T00:00:00Z")
        .await;
    let older = api
        .count("SELECT COUNT() FROM Account WHERE SystemModstamp < 2025-01-01T00:00:00.000+00:00")
        .await;
    assert_eq!(recent + older, all);
    let nulls = api
        .count("SELECT COUNT() FROM Account WHERE AnnualRevenue = null")
        .await;
    let non_nulls = api
        .count("SELECT COUNT() FROM Account WHERE AnnualRevenue != null")
        .await;
    assert_eq!(nulls + non_nulls, all);
    let big = api.count("SELECT COUNT() FROM Account WHERE AnnualRevenue > 100000000 AND NumberOfEmployees <= 25000").await;
    assert!(big > 0);

    let r = api.query("SELECT Id, Name, Account.Name, Account.Owner.Name, Birthdate FROM Contact WHERE AccountId != null ORDER BY LastName DESC, Id LIMIT 5 OFFSET 2").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let recs = r.body["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(recs.len(), 5);
    let acc = &recs[0]["Account"];
    assert_eq!(acc["attributes"]["type"], "Account");
    assert!(acc["Name"].is_string());
    assert_eq!(acc["Owner"]["attributes"]["type"], "User");
    assert!(
        recs[0]
            .as_object()
            .is_some_and(|o| o.contains_key("Birthdate")),
        "nulls are present, not omitted"
    );

    let r = api
        .query("SELECT Id, Parent.Name FROM Account WHERE ParentId = null LIMIT 1")
        .await;
    assert_eq!(r.body["records"][0]["Parent"], Value::Null);

    let r = api
        .query("SELECT Id, CreatedDate FROM Account WHERE CreatedDate = LAST_N_DAYS:100000 LIMIT 1")
        .await;
    let created = r.body["records"][0]["CreatedDate"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(created.len(), 28, "{created}");
    assert!(created.ends_with(".000+0000"));
}

/// `LIMIT` after `ORDER BY` keeps exactly the rows a full sort puts first, ties included
/// (they keep scan order), with and without `OFFSET`, ascending and descending.
#[tokio::test]
async fn a_limit_keeps_the_prefix_of_the_full_order() {
    let (_org, api) = start(small()).await;
    let ids = |r: &crate::common::Reply| -> Vec<String> {
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["records"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|rec| rec["Id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    for order in [
        "Tier__c DESC",
        "Tier__c, AnnualRevenue DESC",
        "SystemModstamp DESC, Id DESC",
    ] {
        let full = ids(&api
            .query(&format!(
                "SELECT Id FROM Account ORDER BY {order} LIMIT 2000"
            ))
            .await);
        assert!(full.len() > 400, "{order}: {} rows", full.len());
        for (limit, offset) in [(1, 0), (7, 0), (5, 3), (17, 40), (30, 490), (3, 600)] {
            let kept = ids(&api
                .query(&format!(
                    "SELECT Id FROM Account ORDER BY {order} LIMIT {limit} OFFSET {offset}"
                ))
                .await);
            let end = (offset + limit).min(full.len());
            let expected = full.get(offset..end).unwrap_or(&[]);
            assert_eq!(kept, expected, "{order} LIMIT {limit} OFFSET {offset}");
        }
    }
}

/// A bound on `Id` narrows the scan (rows are numbered in Id order) and a `LIMIT` in Id
/// order stops it: the rows must be exactly those a full scan finds, for every operator,
/// at the edges, under `AND` with another condition and with `OFFSET`.
#[tokio::test]
async fn an_id_bound_reads_exactly_the_rows_a_full_scan_finds() {
    let (_org, api) = start(small()).await;
    let ids = |r: &crate::common::Reply| -> Vec<String> {
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["records"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|rec| rec["Id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let all = ids(&api
        .query("SELECT Id FROM Account ORDER BY Id LIMIT 2000")
        .await);
    assert!(all.len() > 400, "{} rows", all.len());
    let named = ids(&api
        .query("SELECT Id FROM Account WHERE Tier__c = 'Gold' ORDER BY Id LIMIT 2000")
        .await);
    assert!(!named.is_empty() && named.len() < all.len());
    let last = all.len() - 1;
    for at in [0, 1, all.len() / 2, last - 1, last] {
        let pivot = &all[at];
        for (op, keep) in [
            (">", (at + 1)..all.len()),
            (">=", at..all.len()),
            ("<", 0..at),
            ("<=", 0..(at + 1)),
        ] {
            let expected = &all[keep.clone()];
            let got = ids(&api
                .query(&format!(
                    "SELECT Id FROM Account WHERE Id {op} '{pivot}' ORDER BY Id LIMIT 2000"
                ))
                .await);
            assert_eq!(got, expected, "Id {op} row {at}");
            let unordered = ids(&api
                .query(&format!("SELECT Id FROM Account WHERE Id {op} '{pivot}'"))
                .await);
            assert_eq!(
                unordered.len(),
                expected.len(),
                "Id {op} row {at}, no ORDER BY"
            );
            let page = ids(&api
                .query(&format!(
                    "SELECT Id FROM Account WHERE Id {op} '{pivot}' ORDER BY Id LIMIT 7 OFFSET 2"
                ))
                .await);
            let end = expected.len().min(9);
            assert_eq!(
                page,
                expected.get(2.min(end)..end).unwrap_or(&[]),
                "page of Id {op} row {at}"
            );
            let both: Vec<&String> = named.iter().filter(|id| expected.contains(id)).collect();
            let got = ids(&api
                .query(&format!(
                    "SELECT Id FROM Account WHERE Tier__c = 'Gold' AND Id {op} '{pivot}' ORDER BY Id LIMIT 2000"
                ))
                .await);
            assert_eq!(
                got.iter().collect::<Vec<_>>(),
                both,
                "Tier AND Id {op} row {at}"
            );
        }
    }
}

#[tokio::test]
async fn bad_queries_get_salesforce_error_codes() {
    let (_org, api) = start(small()).await;
    let cases = [
        ("SELECT FROM Account", 400, "MALFORMED_QUERY"),
        ("SELECT Id FROM Account WHERE", 400, "MALFORMED_QUERY"),
        ("SELECT Id FROM Account LIMIT x", 400, "MALFORMED_QUERY"),
        ("SELECT Nope__c FROM Account", 400, "INVALID_FIELD"),
        (
            "SELECT Id FROM Account WHERE CreatedDate > 2024-01-01",
            400,
            "INVALID_FIELD",
        ),
        (
            "SELECT Id FROM Account WHERE Name = 5",
            400,
            "INVALID_FIELD",
        ),
        ("SELECT Id, Foo.Name FROM Account", 400, "INVALID_FIELD"),
        ("SELECT Id FROM Nothing__c", 400, "INVALID_TYPE"),
    ];
    for (q, status, code) in cases {
        let r = api.query(q).await;
        assert_eq!(
            (r.status.as_u16(), r.error_code()),
            (status, code),
            "{q}: {}",
            r.text
        );
        assert!(r.body[0]["message"].is_string());
    }
    let r = api.get("query/01gRO0000000099AAA-2000").await;
    assert_eq!(r.error_code(), "INVALID_QUERY_LOCATOR");
}

#[tokio::test]
async fn query_all_sees_the_recycle_bin() {
    let (_org, api) = start(small()).await;
    let live = api.count("SELECT COUNT() FROM Account").await;
    let r = api
        .query_all("SELECT Id, IsDeleted, MasterRecordId FROM Account WHERE IsDeleted = true")
        .await;
    let merged = r.body["totalSize"].as_u64().unwrap_or(0);
    assert!(merged > 0, "seed merges some duplicates");
    assert!(
        r.body["records"][0]["MasterRecordId"]
            .as_str()
            .is_some_and(|m| m.starts_with("001"))
    );
    let r = api.query_all("SELECT COUNT() FROM Account").await;
    assert_eq!(r.body["totalSize"].as_u64(), Some(live + merged));
}

#[tokio::test]
async fn versions_describe_and_paths() {
    let (_org, api) = start(small()).await;
    let r = reqwest::get(format!("{}/services/data/", api.base))
        .await
        .expect("versions");
    assert!(r.headers().get("sforce-limit-info").is_none());
    let list: Value = r.json().await.unwrap_or(Value::Null);
    assert!(
        list.as_array()
            .is_some_and(|l| l.iter().any(|v| v["version"] == "59.0"))
    );
    assert_eq!(api.get("/services/data/v40.0/limits").await.status, 404);
    assert_eq!(api.get("/services/data/v62.0/limits/").await.status, 200);

    let g = api.get("sobjects/").await;
    let names: Vec<&str> = g.body["sobjects"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["name"].as_str()).collect())
        .unwrap_or_default();
    for n in ["Account", "Contact", "Lead", "Opportunity", "User"] {
        assert!(names.contains(&n), "{n}");
    }
    let d = api.get("sobjects/Account/describe/").await;
    assert_eq!(d.status, 200);
    let fields = d.body["fields"].as_array().cloned().unwrap_or_default();
    let f = |n: &str| {
        fields
            .iter()
            .find(|f| f["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(f("External_Id__c")["externalId"], true);
    assert_eq!(f("Tier__c")["restrictedPicklist"], true);
    assert_eq!(f("Name")["nillable"], false);
    assert_eq!(f("Name")["length"], 255);
    assert_eq!(f("OwnerId")["referenceTo"][0], "User");
    assert_eq!(f("OwnerId")["relationshipName"], "Owner");
    assert_eq!(f("SystemModstamp")["type"], "datetime");
    assert!(
        d.body["childRelationships"]
            .as_array()
            .is_some_and(|c| c.iter().any(|r| r["childSObject"] == "Contact"))
    );

    let l = api.get("limits").await;
    assert!(l.body["DailyApiRequests"]["Max"].as_u64().is_some());
    assert!(
        l.body["DailyBulkV2QueryJobs"]["Remaining"]
            .as_u64()
            .is_some()
    );
}

#[tokio::test]
async fn id_and_external_id_lookups_match_the_full_scan() {
    let (_org, api) = start(small()).await;
    let r = api
        .query("SELECT Id, External_Id__c FROM Account ORDER BY Id LIMIT 3")
        .await;
    let recs = r.body["records"].as_array().cloned().unwrap_or_default();
    let ids: Vec<String> = recs
        .iter()
        .map(|r| format!("'{}'", r["Id"].as_str().unwrap_or_default()))
        .collect();
    let exts: Vec<String> = recs
        .iter()
        .map(|r| {
            format!(
                "'{}'",
                r["External_Id__c"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase()
            )
        })
        .collect();
    assert_eq!(
        api.count(&format!(
            "SELECT COUNT() FROM Account WHERE Id IN ({})",
            ids.join(",")
        ))
        .await,
        3
    );
    assert_eq!(
        api.count(&format!(
            "SELECT COUNT() FROM Account WHERE External_Id__c IN ({}, 'nope')",
            exts.join(",")
        ))
        .await,
        3
    );
    assert_eq!(
        api.count(&format!(
            "SELECT COUNT() FROM Account WHERE Id = {} AND Tier__c = 'NoSuchTier'",
            ids[0]
        ))
        .await,
        0
    );
    // 15-character ids work too, and an id of another object matches nothing.
    let short = &ids[1][..16];
    assert_eq!(
        api.count(&format!("SELECT COUNT() FROM Account WHERE Id = {short}'"))
            .await,
        1
    );
    assert_eq!(
        api.count("SELECT COUNT() FROM Account WHERE Id = '003RO0000000001AAA'")
            .await,
        0
    );
    let r = api
        .query("SELECT Id FROM Account WHERE Id = 'not-an-id'")
        .await;
    assert_eq!(r.error_code(), "INVALID_QUERY_FILTER_OPERATOR");
}

#[tokio::test]
async fn child_relationship_subqueries_nest_query_results() {
    let (org, api) = start(small()).await;
    let r = api
        .query("SELECT AccountId FROM Contact WHERE AccountId != null ORDER BY AccountId LIMIT 1")
        .await;
    let acc = r.body["records"][0]["AccountId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let n = api
        .count(&format!(
            "SELECT COUNT() FROM Contact WHERE AccountId = '{acc}'"
        ))
        .await;
    let r = api
        .query(&format!("SELECT Id, Name, (SELECT Id, LastName, Account.Name FROM Contacts ORDER BY LastName) FROM Account WHERE Id = '{acc}'"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let kids = &r.body["records"][0]["Contacts"];
    assert_eq!(kids["totalSize"].as_u64(), Some(n), "{}", r.text);
    assert_eq!(kids["done"], true);
    assert_eq!(kids["records"][0]["attributes"]["type"], "Contact");
    assert_eq!(
        kids["records"][0]["Account"]["Name"],
        r.body["records"][0]["Name"]
    );
    let r = api
        .query(&format!(
            "SELECT Id, (SELECT Id FROM Contacts LIMIT 1) FROM Account WHERE Id = '{acc}'"
        ))
        .await;
    assert_eq!(r.body["records"][0]["Contacts"]["totalSize"], 1);

    // A parent without children carries `null`, as Salesforce does.
    let lonely = org
        .add_object(&weft_emulator::ObjectSpec {
            name: "Note__c".into(),
            label: None,
            replicateable: true,
            fields: vec![weft_emulator::FieldSpec {
                reference_to: Some("Account".into()),
                ..weft_emulator::FieldSpec::new("Account__c", weft_emulator::FieldType::Reference)
            }],
        })
        .is_ok();
    assert!(lonely);
    let r = api
        .query(&format!(
            "SELECT Id, (SELECT Id FROM Notes__r) FROM Account WHERE Id = '{acc}'"
        ))
        .await;
    assert_eq!(r.body["records"][0]["Notes__r"], Value::Null, "{}", r.text);

    assert_eq!(
        api.query("SELECT Id, (SELECT Id FROM Nope) FROM Account")
            .await
            .error_code(),
        "INVALID_TYPE"
    );
    assert_eq!(
        api.query("SELECT Id, (SELECT Id, (SELECT Id FROM Contacts) FROM Contacts) FROM Account")
            .await
            .error_code(),
        "MALFORMED_QUERY"
    );
    let r = api.post("jobs/query", serde_json::json!({"operation": "query", "query": "SELECT Id, (SELECT Id FROM Contacts) FROM Account"})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn rest_responses_are_gzipped_on_request_when_enabled() {
    let (_org, api) = start(weft_emulator::EmulatorConfig {
        gzip_responses: true,
        ..small()
    })
    .await;
    let r = api
        .http
        .get(api.url("query?q=SELECT+Id,Name+FROM+Account+LIMIT+50"))
        .bearer_auth(&api.token)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("query");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert!(
        r.headers()["sforce-limit-info"]
            .to_str()
            .unwrap_or_default()
            .starts_with("api-usage=")
    );
    let gz = r.bytes().await.unwrap_or_default();
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain)
        .expect("gunzip");
    let v: Value = serde_json::from_str(&plain).expect("json");
    assert_eq!(v["records"].as_array().map(|a| a.len()), Some(50));
    // Without Accept-Encoding the body is plain.
    let r = api.get("limits").await;
    assert!(r.headers.get("content-encoding").is_none());
    assert!(r.body["DailyApiRequests"].is_object());
}

#[tokio::test]
async fn aggregate_functions_and_group_by() {
    let (_org, api) = start(small()).await;
    let all = api.count("SELECT COUNT() FROM Account").await;
    let r = api.query("SELECT COUNT(Id), COUNT(AnnualRevenue) withRevenue, MAX(NumberOfEmployees), MIN(CreatedDate), SUM(AnnualRevenue), AVG(NumberOfEmployees) FROM Account").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rec = &r.body["records"][0];
    assert_eq!(rec["attributes"]["type"], "AggregateResult");
    assert_eq!(rec["expr0"].as_u64(), Some(all));
    let with_rev = api
        .count("SELECT COUNT() FROM Account WHERE AnnualRevenue != null")
        .await;
    assert_eq!(rec["withRevenue"].as_u64(), Some(with_rev));
    assert!(rec["expr1"].as_i64().is_some_and(|m| m > 0), "{rec}");
    assert!(rec["expr2"].as_str().is_some_and(|d| d.ends_with("+0000")));
    assert!(rec["expr3"].as_f64().is_some_and(|s| s > 0.0));
    assert!(rec["expr4"].as_f64().is_some());

    let r = api
        .query("SELECT Tier__c, COUNT(Id) n FROM Account GROUP BY Tier__c ORDER BY Tier__c")
        .await;
    let groups = r.body["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(groups.len(), 3, "{}", r.text);
    assert_eq!(groups[0]["Tier__c"], "Bronze");
    let total: u64 = groups.iter().filter_map(|g| g["n"].as_u64()).sum();
    assert_eq!(total, all);
    let gold = api
        .count("SELECT COUNT() FROM Account WHERE Tier__c = 'Gold'")
        .await;
    assert_eq!(
        groups
            .iter()
            .find(|g| g["Tier__c"] == "Gold")
            .and_then(|g| g["n"].as_u64()),
        Some(gold)
    );

    // Duplicate companies: names under more than one Account.
    let r = api
        .query("SELECT Name, COUNT(Id) FROM Account GROUP BY Name LIMIT 2000")
        .await;
    assert!(
        r.body["records"]
            .as_array()
            .is_some_and(|g| g.iter().any(|x| x["expr0"].as_u64().unwrap_or(0) > 1)),
        "seeded duplicates"
    );

    assert_eq!(
        api.query("SELECT Name, COUNT(Id) FROM Account")
            .await
            .error_code(),
        "MALFORMED_QUERY"
    );
    assert_eq!(
        api.query("SELECT SUM(Name) FROM Account")
            .await
            .error_code(),
        "MALFORMED_QUERY"
    );
    let r = api
        .post(
            "jobs/query",
            serde_json::json!({"operation": "query", "query": "SELECT COUNT(Id) FROM Account"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn fields_function_expands_the_select_list() {
    let (_org, api) = start(small()).await;
    let r = api.query("SELECT FIELDS(ALL) FROM Account LIMIT 5").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rec = r.body["records"][0]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for k in [
        "Id",
        "Name",
        "SystemModstamp",
        "External_Id__c",
        "GoldenAccountID__c",
    ] {
        assert!(rec.contains_key(k), "{k}");
    }
    let r = api
        .query("SELECT FIELDS(CUSTOM) FROM Account LIMIT 1")
        .await;
    let rec = r.body["records"][0]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(rec.contains_key("Tier__c") && !rec.contains_key("Name"));
    let r = api.query("SELECT FIELDS(STANDARD) FROM Account").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        api.query("SELECT FIELDS(ALL) FROM Account")
            .await
            .error_code(),
        "MALFORMED_QUERY"
    );
}

#[tokio::test]
async fn semi_and_anti_joins() {
    let (_org, api) = start(small()).await;
    let all = api.count("SELECT COUNT() FROM Account").await;
    let with = api
        .count("SELECT COUNT() FROM Account WHERE Id IN (SELECT AccountId FROM Contact)")
        .await;
    let without = api
        .count("SELECT COUNT() FROM Account WHERE Id NOT IN (SELECT AccountId FROM Contact)")
        .await;
    assert!(with > 0 && without > 0, "{with} {without}");
    assert_eq!(with + without, all);
    let titled = api.count("SELECT COUNT() FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE Title = 'CEO') AND Tier__c = 'Gold'").await;
    assert!(titled <= with);
    assert_eq!(
        api.query("SELECT Id FROM Account WHERE Name IN (SELECT Name FROM Contact)")
            .await
            .error_code(),
        "MALFORMED_QUERY"
    );
}
