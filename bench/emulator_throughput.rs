//! Emulator throughput on loopback: Bulk 2.0 result streaming and REST query paging over a
//! seeded org of 1,000,000 Accounts, measured with a plain HTTP client.
//!
//! The org runs on its own single-worker Tokio runtime (one core serves), the client on
//! another. Prints RSS after seeding, then records/s and MB/s for each path.
//!
//! Run: `cargo bench -p weft-emulator --bench emulator_throughput`
//! Knobs (env): `WEFT_BENCH_ACCOUNTS` (default 1000000), `WEFT_BENCH_REST_PAGES` (default all).

use std::time::{Duration, Instant};
use weft_emulator::{Emulator, EmulatorConfig};

const FIELDS: &str = "Id, Name, Type, Industry, BillingCity, BillingCountry, Phone, AnnualRevenue, NumberOfEmployees, External_Id__c, Tier__c, SystemModstamp";

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn main() {
    let accounts: usize = std::env::var("WEFT_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rest_pages: Option<usize> = std::env::var("WEFT_BENCH_REST_PAGES")
        .ok()
        .and_then(|v| v.parse().ok());
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");

    let rss0 = rss_mib();
    let t = Instant::now();
    let cfg = EmulatorConfig {
        accounts,
        bulk_processing_delay: Duration::from_millis(10),
        api_daily_max: 10_000_000,
        ..Default::default()
    };
    let org = server_rt.block_on(Emulator::start(cfg)).expect("start");
    let seed_s = t.elapsed().as_secs_f64();
    let rss = rss_mib();
    println!("Emulator bench: {accounts} Accounts (+ default Contacts/Leads/Opportunities/Users)");
    println!("  seeding: {seed_s:.2} s; RSS after seeding: {rss:.0} MiB (baseline {rss0:.0} MiB)");

    let base = org.base_url().to_string();
    let token = org.access_token().to_string();
    let http = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client");

    client_rt.block_on(async {
        // Bulk 2.0 query: create, poll, stream every page.
        let t_job = Instant::now();
        let job: serde_json::Value = http
            .post(format!("{base}/services/data/v60.0/jobs/query"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"operation": "query", "query": format!("SELECT {FIELDS} FROM Account")}))
            .send().await.expect("create").json().await.expect("job json");
        let id = job["id"].as_str().unwrap_or_default().to_string();
        loop {
            let j: serde_json::Value = http.get(format!("{base}/services/data/v60.0/jobs/query/{id}")).bearer_auth(&token).send().await.expect("poll").json().await.expect("poll json");
            if j["state"] == "JobComplete" {
                break;
            }
            assert_ne!(j["state"], "Failed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let job_s = t_job.elapsed().as_secs_f64();
        let t = Instant::now();
        let (mut records, mut bytes, mut pages) = (0u64, 0u64, 0u32);
        let mut locator: Option<String> = None;
        loop {
            let url = match &locator {
                None => format!("{base}/services/data/v60.0/jobs/query/{id}/results?maxRecords=250000"),
                Some(l) => format!("{base}/services/data/v60.0/jobs/query/{id}/results?maxRecords=250000&locator={l}"),
            };
            let mut r = http.get(url).bearer_auth(&token).send().await.expect("results");
            let n: u64 = r.headers()["sforce-numberofrecords"].to_str().ok().and_then(|v| v.parse().ok()).unwrap_or(0);
            let next = r.headers()["sforce-locator"].to_str().unwrap_or("null").to_string();
            while let Some(chunk) = r.chunk().await.expect("chunk") {
                bytes += chunk.len() as u64;
            }
            records += n;
            pages += 1;
            if next == "null" {
                break;
            }
            locator = Some(next);
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "  Bulk 2.0 results: {records} records, {pages} pages, {:.1} MB in {s:.2} s -> {:.0} records/s, {:.1} MB/s (job ran {job_s:.2} s)",
            bytes as f64 / 1e6,
            records as f64 / s,
            bytes as f64 / 1e6 / s
        );

        // REST query paging: 2,000-record pages through nextRecordsUrl. The client reads only
        // the page envelope (totalSize, nextRecordsUrl) so the figure is the server's, not a
        // JSON parser's; a second pass parses every page fully for comparison.
        for parse in [false, true] {
            let t = Instant::now();
            let q: String = form_urlencoded::byte_serialize(format!("SELECT {FIELDS} FROM Account").as_bytes()).collect();
            let mut url = format!("{base}/services/data/v60.0/query?q={q}");
            let (mut bytes, mut pages, mut offset, mut total) = (0u64, 0usize, 0u64, 0u64);
            let mut parsed_records = 0u64;
            loop {
                let body = http.get(&url).bearer_auth(&token).send().await.expect("page").bytes().await.expect("page body");
                bytes += body.len() as u64;
                pages += 1;
                if parse {
                    let v: serde_json::Value = serde_json::from_slice(&body).expect("page json");
                    parsed_records += v["records"].as_array().map(|a| a.len() as u64).unwrap_or(0);
                }
                let head = std::str::from_utf8(&body[..body.len().min(400)]).unwrap_or_default();
                if total == 0 {
                    total = head.split("\"totalSize\":").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
                }
                let next = head.split("\"nextRecordsUrl\":\"").nth(1).and_then(|r| r.split('"').next()).map(str::to_string);
                match next {
                    Some(next) if rest_pages.is_none_or(|p| pages < p) => {
                        offset = next.rsplit('-').next().and_then(|o| o.parse().ok()).unwrap_or(offset);
                        url = format!("{base}{next}");
                    }
                    _ => {
                        offset = if next.is_some() { offset } else { total };
                        break;
                    }
                }
            }
            let s = t.elapsed().as_secs_f64();
            let records = if parse { parsed_records } else { offset };
            println!(
                "  REST query paging ({}): {records} records, {pages} pages, {:.1} MB in {s:.2} s -> {:.0} records/s, {:.1} MB/s",
                if parse { "client parses every page with serde_json" } else { "envelope only" },
                bytes as f64 / 1e6,
                records as f64 / s,
                bytes as f64 / 1e6 / s
            );
        }
    });
    println!("  RSS at end: {:.0} MiB", rss_mib());
    drop(org);
}
