//! Bulk API 2.0 query and ingest.

use crate::common::{Api, small, start};
use serde_json::{Value, json};
use std::time::Duration;
use weft_emulator::FaultConfig;

async fn wait_for(api: &Api, path: &str, want: &[&str]) -> Value {
    for _ in 0..200 {
        let r = api.get(path).await;
        let state = r.body["state"].as_str().unwrap_or_default().to_string();
        if want.contains(&state.as_str()) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {path} never reached {want:?}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, data).expect("gzip");
    e.finish().expect("gzip")
}

async fn get_raw(api: &Api, path: &str, gzip: bool) -> reqwest::Response {
    let mut rb = api
        .http
        .get(api.url(path))
        .bearer_auth(&api.token)
        .header("Accept", "text/csv");
    if gzip {
        rb = rb.header("Accept-Encoding", "gzip");
    }
    rb.send().await.expect("results")
}

#[tokio::test]
async fn query_job_pages_csv_with_locators_until_literal_null() {
    let (_org, api) = start(small()).await;
    let total = api.count("SELECT COUNT() FROM Account").await;
    let r = api.post("jobs/query", json!({"operation": "query", "query": "SELECT Id, Name, Owner.Name, Description, AnnualRevenue FROM Account", "contentType": "CSV", "columnDelimiter": "COMMA", "lineEnding": "LF"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["state"], "UploadComplete");
    assert_eq!(r.body["jobType"], "V2Query");
    assert_eq!(r.body["apiVersion"], json!(60.0));
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    assert!(id.starts_with("750"));
    let info = wait_for(&api, &format!("jobs/query/{id}"), &["JobComplete"]).await;
    assert_eq!(info["numberRecordsProcessed"].as_u64(), Some(total));

    let mut locator: Option<String> = None;
    let mut rows = 0u64;
    let mut pages = 0;
    loop {
        let path = match &locator {
            None => format!("jobs/query/{id}/results?maxRecords=150"),
            Some(l) => format!("jobs/query/{id}/results?locator={l}&maxRecords=150"),
        };
        let r = get_raw(&api, &path, false).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap_or_default()
                .starts_with("text/csv")
        );
        let n: u64 = r.headers()["sforce-numberofrecords"]
            .to_str()
            .unwrap_or("x")
            .parse()
            .expect("count header");
        let next = r.headers()["sforce-locator"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        let body = r.text().await.unwrap_or_default();
        assert!(
            body.starts_with("\"Id\",\"Name\",\"Owner.Name\",\"Description\",\"AnnualRevenue\"\n"),
            "header on every page"
        );
        rows += n;
        pages += 1;
        if next == "null" {
            break;
        }
        locator = Some(next);
    }
    assert_eq!(rows, total);
    assert_eq!(pages, total.div_ceil(150));

    // gzip on request, same bytes once decoded.
    let r = get_raw(&api, &format!("jobs/query/{id}/results"), true).await;
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().await.unwrap_or_default();
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain)
        .expect("gunzip");
    let r = get_raw(&api, &format!("jobs/query/{id}/results"), false).await;
    assert_eq!(r.text().await.unwrap_or_default(), plain);

    // Other API versions get 409; unknown jobs 404; delete is 204.
    let r = api
        .get(&format!("/services/data/v59.0/jobs/query/{id}/results"))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(api.get("jobs/query/750RO0000000999AAA").await.status, 404);
    assert_eq!(api.delete(&format!("jobs/query/{id}")).await.status, 204);
}

#[tokio::test]
async fn query_jobs_can_be_aborted_and_reject_bad_soql() {
    let (_org, api) = start(weft_emulator::EmulatorConfig {
        bulk_processing_delay: Duration::from_secs(5),
        ..small()
    })
    .await;
    let r = api
        .post(
            "jobs/query",
            json!({"operation": "queryAll", "query": "SELECT Id FROM Account"}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    let r = api
        .patch(&format!("jobs/query/{id}"), json!({"state": "Aborted"}))
        .await;
    assert_eq!(r.body["state"], "Aborted", "{}", r.text);
    let r = api
        .post(
            "jobs/query",
            json!({"operation": "query", "query": "SELECT Nope FROM Account"}),
        )
        .await;
    assert_eq!(r.error_code(), "INVALID_FIELD");
    let r = api
        .post(
            "jobs/query",
            json!({"operation": "query", "query": "SELECT Id FROM"}),
        )
        .await;
    assert_eq!(r.error_code(), "MALFORMED_QUERY");
    assert_eq!(
        api.post(
            "/services/data/v46.0/jobs/query",
            json!({"operation": "query", "query": "SELECT Id FROM Account"})
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn ingest_job_reports_success_failed_and_unprocessed() {
    let (_org, api) = start(small()).await;
    let r = api.post("jobs/ingest", json!({"object": "Account", "operation": "upsert", "externalIdFieldName": "External_Id__c", "contentType": "CSV", "lineEnding": "LF"})).await;
    assert_eq!(r.body["state"], "Open", "{}", r.text);
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    let content_url = r.body["contentUrl"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        content_url,
        format!("services/data/v60.0/jobs/ingest/{id}/batches")
    );
    let csv = "External_Id__c,Name,Tier__c,Description,Parent.External_Id__c\nING-1,\"Ingest, One\",Gold,\"multi\nline\",ACC-7-00000001\nING-2,Two,Platinum,,\nACC-7-00000002,Updated Two,#N/A,,\nING-3,,,,\n";
    let r = api
        .http
        .put(format!("{}/{content_url}", api.base))
        .bearer_auth(&api.token)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let r = api
        .patch(
            &format!("jobs/ingest/{id}"),
            json!({"state": "UploadComplete"}),
        )
        .await;
    assert_eq!(r.body["state"], "UploadComplete");
    let info = wait_for(
        &api,
        &format!("jobs/ingest/{id}"),
        &["JobComplete", "Failed"],
    )
    .await;
    assert_eq!(info["state"], "JobComplete", "{info}");
    assert_eq!(info["numberRecordsProcessed"], 4);
    assert_eq!(info["numberRecordsFailed"], 2);
    let ok = get_raw(&api, &format!("jobs/ingest/{id}/successfulResults/"), false)
        .await
        .text()
        .await
        .unwrap_or_default();
    let lines: Vec<&str> = ok.lines().collect();
    assert!(
        lines[0].starts_with("\"sf__Id\",\"sf__Created\",\"External_Id__c\""),
        "{ok}"
    );
    assert!(ok.contains("\"true\",\"ING-1\""), "{ok}");
    assert!(ok.contains("\"false\",\"ACC-7-00000002\""), "{ok}");
    let failed = get_raw(&api, &format!("jobs/ingest/{id}/failedResults/"), false)
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(
        failed.contains("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        "{failed}"
    );
    assert!(failed.contains("REQUIRED_FIELD_MISSING"), "{failed}");
    let un = get_raw(
        &api,
        &format!("jobs/ingest/{id}/unprocessedrecords/"),
        false,
    )
    .await
    .text()
    .await
    .unwrap_or_default();
    assert_eq!(un.lines().count(), 1, "header only");
    let q = api.query("SELECT Name, Description, Parent.External_Id__c, Tier__c FROM Account WHERE External_Id__c IN ('ING-1', 'ACC-7-00000002')").await;
    assert_eq!(q.body["totalSize"], 2, "{}", q.text);
    let recs = q.body["records"].as_array().cloned().unwrap_or_default();
    let one = recs
        .iter()
        .find(|r| r["Name"] == "Ingest, One")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(one["Description"], "multi\nline");
    assert_eq!(one["Parent"]["External_Id__c"], "ACC-7-00000001");
    let two = recs
        .iter()
        .find(|r| r["Name"] == "Updated Two")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(two["Tier__c"], Value::Null, "#N/A nulls a field");
}

#[tokio::test]
async fn ingest_delete_and_hard_delete() {
    let (_org, api) = start(small()).await;
    let r = api.query("SELECT Id FROM Lead ORDER BY Id LIMIT 2").await;
    let ids: Vec<String> = r.body["records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| r["Id"].as_str().unwrap_or_default().to_string())
        .collect();
    for (op, id) in [("delete", &ids[0]), ("hardDelete", &ids[1])] {
        let r = api
            .post("jobs/ingest", json!({"object": "Lead", "operation": op}))
            .await;
        let job = r.body["id"].as_str().unwrap_or_default().to_string();
        let r = api
            .http
            .put(api.url(&format!("jobs/ingest/{job}/batches")))
            .bearer_auth(&api.token)
            .header("Content-Type", "text/csv")
            // The second upload is gzip-compressed, as large uploads often are.
            .header(
                "Content-Encoding",
                if op == "hardDelete" {
                    "gzip"
                } else {
                    "identity"
                },
            )
            .body(if op == "hardDelete" {
                gzip(format!("Id\n{id}\n").as_bytes())
            } else {
                format!("Id\n{id}\n").into_bytes()
            })
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 201);
        api.patch(
            &format!("jobs/ingest/{job}"),
            json!({"state": "UploadComplete"}),
        )
        .await;
        let info = wait_for(
            &api,
            &format!("jobs/ingest/{job}"),
            &["JobComplete", "Failed"],
        )
        .await;
        assert_eq!(
            (
                info["numberRecordsProcessed"].as_u64(),
                info["numberRecordsFailed"].as_u64()
            ),
            (Some(1), Some(0)),
            "{info}"
        );
    }
    assert_eq!(
        api.query_all(&format!(
            "SELECT IsDeleted FROM Lead WHERE Id = '{}'",
            ids[0]
        ))
        .await
        .body["records"][0]["IsDeleted"],
        true
    );
    assert_eq!(
        api.query_all(&format!("SELECT Id FROM Lead WHERE Id = '{}'", ids[1]))
            .await
            .body["totalSize"],
        0,
        "purged rows are gone even from queryAll"
    );
}

#[tokio::test]
async fn concurrent_readers_writers_and_bulk_jobs_do_not_block_each_other() {
    let (org, api) = start(weft_emulator::EmulatorConfig {
        change_rate_per_sec: 200.0,
        ..small()
    })
    .await;
    let api = std::sync::Arc::new(api);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let a = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for j in 0..5 {
                let r = match (i + j) % 3 {
                    0 => a.query("SELECT Id, Name, Owner.Name FROM Account WHERE Tier__c = 'Gold' ORDER BY SystemModstamp DESC LIMIT 500").await,
                    1 => a.post("composite/sobjects", json!({"records": [{"attributes": {"type": "Contact"}, "LastName": format!("C{i}-{j}")}]})).await,
                    _ => a.post("jobs/query", json!({"operation": "queryAll", "query": "SELECT Id FROM Contact"})).await,
                };
                if r.status == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("no deadlock")
            .unwrap_or(0);
    }
    assert_eq!(total, 80);
    // The background change generator has been editing the org meanwhile.
    assert!(!org.events_after(0).is_empty());
}

#[tokio::test]
async fn multipart_ingest_creates_an_upload_complete_job() {
    let (_org, api) = start(small()).await;
    let boundary = "BOUNDARY42";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"job\"\r\nContent-Type: application/json\r\n\r\n{}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"content\"\r\nContent-Type: text/csv\r\n\r\nName,Tier__c\nMultipart One,Gold\nMultipart Two,Silver\n\r\n--{boundary}--\r\n",
        json!({"object": "Account", "operation": "insert", "contentType": "CSV", "lineEnding": "LF"})
    );
    let r = api
        .http
        .post(api.url("jobs/ingest"))
        .bearer_auth(&api.token)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("multipart");
    assert_eq!(r.status(), 200);
    let info: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(info["state"], "UploadComplete", "{info}");
    let id = info["id"].as_str().unwrap_or_default().to_string();
    let done = wait_for(
        &api,
        &format!("jobs/ingest/{id}"),
        &["JobComplete", "Failed"],
    )
    .await;
    assert_eq!(
        (
            done["state"].as_str(),
            done["numberRecordsProcessed"].as_u64()
        ),
        (Some("JobComplete"), Some(2)),
        "{done}"
    );
    assert_eq!(
        api.count("SELECT COUNT() FROM Account WHERE Name LIKE 'Multipart%'")
            .await,
        2
    );
}

/// Reads a body until it ends or breaks; returns the bytes and whether it ended cleanly.
async fn read_until_break(mut r: reqwest::Response) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

#[tokio::test]
async fn body_reset_fault_breaks_a_result_page_off_part_way() {
    let (org, api) = start(small()).await;
    let r = api
        .post(
            "jobs/query",
            json!({"operation": "query", "query": "SELECT Id, Name FROM Account"}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    wait_for(&api, &format!("jobs/query/{id}"), &["JobComplete"]).await;
    let path = format!("jobs/query/{id}/results?maxRecords=400");
    let (full, clean) = read_until_break(get_raw(&api, &path, false).await).await;
    assert!(clean);
    assert_eq!(full.iter().filter(|&&b| b == b'\n').count(), 401);

    org.set_faults(FaultConfig {
        body_reset_rate: 1.0,
        ..Default::default()
    });
    let r = get_raw(&api, &path, false).await;
    assert_eq!(r.status(), 200, "the status and headers arrive");
    assert_eq!(r.headers()["sforce-numberofrecords"], "400");
    let (part, clean) = read_until_break(r).await;
    assert!(!clean, "the body must break off");
    assert!(part.len() < full.len());
    assert!(
        full.starts_with(&part),
        "what arrived is a prefix of the page"
    );
    // Compressed pages break off too, and what arrived decodes to a prefix.
    let (gz_part, clean) = read_until_break(get_raw(&api, &path, true).await).await;
    assert!(!clean);
    let mut prefix = Vec::new();
    let _ =
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz_part[..]), &mut prefix);
    assert!(full.starts_with(&prefix));
    assert_eq!(org.stats().faults_injected.get("body_reset"), Some(&2));

    // The same fault on an ingest result download.
    org.set_faults(FaultConfig::default());
    let r = api
        .post(
            "jobs/ingest",
            json!({"object": "Account", "operation": "insert"}),
        )
        .await;
    let job = r.body["id"].as_str().unwrap_or_default().to_string();
    let csv: String = std::iter::once("Name\n".to_string())
        .chain((0..50).map(|i| format!("Cut {i}\n")))
        .collect();
    let up = api
        .http
        .put(api.url(&format!("jobs/ingest/{job}/batches")))
        .bearer_auth(&api.token)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("upload");
    assert_eq!(up.status(), 201);
    api.patch(
        &format!("jobs/ingest/{job}"),
        json!({"state": "UploadComplete"}),
    )
    .await;
    wait_for(&api, &format!("jobs/ingest/{job}"), &["JobComplete"]).await;
    let results = format!("jobs/ingest/{job}/successfulResults");
    let (full, clean) = read_until_break(get_raw(&api, &results, false).await).await;
    assert!(clean && full.len() > 100);
    org.set_faults(FaultConfig {
        body_reset_rate: 1.0,
        ..Default::default()
    });
    let (part, clean) = read_until_break(get_raw(&api, &results, false).await).await;
    assert!(!clean);
    assert!(part.len() < full.len() && full.starts_with(&part));
}
