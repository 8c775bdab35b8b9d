//! REST API routing under `/services/data/vNN.N/`, plus the query, `limits` and version
//! resources.
//!
//! Owns which resource a path names (for dispatch and for the per-kind call counts),
//! API-version gating (41.0 and up; Bulk 2.0 query from 47.0, collections from 42.0, upsert
//! collections from 46.0), and SOQL query paging through `nextRecordsUrl` (default and
//! maximum 2,000 records, `Sforce-Query-Options: batchSize` between 200 and 2,000; locators
//! accepted under both `/query/` and `/queryAll/`). Authentication, limits and faults are
//! applied before this module is reached (see `server`).

use crate::auth::Session;
use crate::error::ApiError;
use crate::http::{self, Req, Resp, is};
use crate::org::{Cursor, Org};
use crate::query;
use crate::render;
use crate::soql;
use std::sync::Arc;

/// Lowest API version served.
pub const MIN_VERSION: u32 = 41;
/// Highest version listed by `GET /services/data/` (any higher `vNN.N` is still served, so a
/// client pinned to a newer release keeps working).
pub const MAX_LISTED_VERSION: u32 = 64;
/// REST query page size: Salesforce's default and maximum.
pub const QUERY_BATCH_DEFAULT: usize = 2_000;
const QUERY_BATCH_MIN: usize = 200;

/// Parses `v60.0` → (60, "60.0").
pub fn parse_version(seg: &str) -> Option<(u32, String)> {
    let v = seg.strip_prefix('v')?;
    let (major, minor) = v.split_once('.')?;
    let m: u32 = major.parse().ok()?;
    if minor != "0" || !(MIN_VERSION..=999).contains(&m) {
        return None;
    }
    Some((m, v.to_string()))
}

/// `GET /services/data/`: the version list (not counted, no limit header).
pub fn versions() -> Resp {
    let list: Vec<serde_json::Value> = (MIN_VERSION..=MAX_LISTED_VERSION)
        .map(|v| {
            serde_json::json!({
                "label": format!("Release {v}"),
                "url": format!("/services/data/v{v}.0"),
                "version": format!("{v}.0"),
            })
        })
        .collect();
    http::json(200, &serde_json::Value::Array(list))
}

/// Names the resource of an API request (segments after the version) for stats.
pub fn classify(method: &str, segs: &[String]) -> &'static str {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method, s.as_slice()) {
        (_, ["query"]) => "query",
        (_, ["queryAll"]) => "queryAll",
        (_, ["query" | "queryAll", _]) => "queryMore",
        (_, ["limits"]) => "limits",
        (_, ["sobjects"]) => "describeGlobal",
        (_, ["sobjects", _, "describe"]) => "describe",
        (_, ["sobjects", _, "updated" | "deleted"]) => "getUpdatedDeleted",
        ("POST", ["sobjects", _]) => "sobject.create",
        (_, ["sobjects", _]) => "sobject.info",
        ("GET", ["sobjects", _, _]) => "sobject.read",
        ("PATCH", ["sobjects", _, _]) => "sobject.update",
        ("DELETE", ["sobjects", _, _]) => "sobject.delete",
        ("PATCH" | "POST", ["sobjects", _, _, _]) => "sobject.upsert",
        ("GET", ["sobjects", _, _, _]) => "sobject.readByExternalId",
        ("DELETE", ["sobjects", _, _, _]) => "sobject.deleteByExternalId",
        ("POST", ["composite"]) => "composite",
        ("POST", ["composite", "sobjects"]) => "collections.create",
        ("PATCH", ["composite", "sobjects"]) => "collections.update",
        ("DELETE", ["composite", "sobjects"]) => "collections.delete",
        ("PATCH", ["composite", "sobjects", _, _]) => "collections.upsert",
        ("GET", ["composite", "sobjects", _]) => "collections.retrieve",
        ("POST", ["jobs", "query"]) => "bulk.query.create",
        ("GET", ["jobs", "query"]) => "bulk.query.list",
        ("GET", ["jobs", "query", _]) => "bulk.query.info",
        ("PATCH", ["jobs", "query", _]) => "bulk.query.abort",
        ("DELETE", ["jobs", "query", _]) => "bulk.query.delete",
        ("GET", ["jobs", "query", _, "results"]) => "bulk.query.results",
        ("POST", ["jobs", "ingest"]) => "bulk.ingest.create",
        ("GET", ["jobs", "ingest"]) => "bulk.ingest.list",
        ("GET", ["jobs", "ingest", _]) => "bulk.ingest.info",
        ("PATCH", ["jobs", "ingest", _]) => "bulk.ingest.state",
        ("DELETE", ["jobs", "ingest", _]) => "bulk.ingest.delete",
        ("PUT", ["jobs", "ingest", _, "batches"]) => "bulk.ingest.upload",
        ("GET", ["jobs", "ingest", _, _]) => "bulk.ingest.results",
        _ => "other",
    }
}

/// Dispatches one authenticated API request.
pub async fn dispatch(
    org: &Arc<Org>,
    req: Req,
    major: u32,
    version: &str,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    let segs: Vec<String> = req.segs.clone();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method.as_str().to_string();
    let need = |v: u32| {
        if major >= v {
            Ok(())
        } else {
            Err(ApiError::not_found())
        }
    };
    match s.as_slice() {
        [] => Ok(http::json(200, &resources(version))),
        ["query" | "queryAll"] if is(&req.method, "GET") => {
            let q = req
                .param("q")
                .ok_or_else(|| ApiError::malformed_query("A query string has to be specified"))?;
            run_query(org, version, q, s[0] == "queryAll", batch_size(&req))
        }
        ["query" | "queryAll", locator] if is(&req.method, "GET") => {
            query_more(org, version, locator)
        }
        ["limits"] if is(&req.method, "GET") => Ok(http::json(200, &limits(org))),
        ["composite"] if is(&req.method, "POST") => {
            crate::composite::run(org, &req, session, origin).await
        }
        ["sobjects", ..] | ["composite", ..] => {
            if s.first() == Some(&"composite") {
                need(42)?;
                if matches!(s.as_slice(), ["composite", "sobjects", _, _]) {
                    need(46)?;
                }
            }
            crate::sobjects::dispatch(org, &req, &s, version, session, origin)
        }
        ["jobs", "query", ..] => {
            need(47)?;
            crate::bulk::dispatch_query(org, &req, &s, version, session).await
        }
        ["jobs", "ingest", ..] => {
            crate::bulk::dispatch_ingest(org, &req, &s, version, session, origin).await
        }
        _ => {
            if matches!(
                m.as_str(),
                "GET" | "POST" | "PATCH" | "DELETE" | "PUT" | "HEAD"
            ) {
                Err(ApiError::not_found())
            } else {
                Err(ApiError::method_not_allowed(&m))
            }
        }
    }
}

fn resources(version: &str) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for r in [
        "sobjects",
        "query",
        "queryAll",
        "limits",
        "composite",
        "jobs",
    ] {
        m.insert(r.into(), format!("/services/data/v{version}/{r}").into());
    }
    serde_json::Value::Object(m)
}

fn batch_size(req: &Req) -> usize {
    req.header("sforce-query-options")
        .and_then(|h| {
            h.split(',').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("batchSize")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
        })
        .map(|n| n.clamp(QUERY_BATCH_MIN, QUERY_BATCH_DEFAULT))
        .unwrap_or(QUERY_BATCH_DEFAULT)
}

fn run_query(
    org: &Arc<Org>,
    version: &str,
    text: &str,
    all: bool,
    batch: usize,
) -> Result<Resp, ApiError> {
    let parsed = soql::parse(text)?;
    let store = org
        .store
        .read()
        .map_err(|_| ApiError::new(500, "UNKNOWN_EXCEPTION", "store lock poisoned"))?;
    let plan = query::plan(&store, &parsed, all, org.today())?;
    if plan.is_aggregate() {
        let recs = crate::aggregate::run(&store, &plan)?;
        let mut out =
            format!("{{\"totalSize\":{},\"done\":true,\"records\":[", recs.len()).into_bytes();
        for (i, r) in recs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(r);
        }
        out.extend_from_slice(b"]}");
        return Ok(http::json_bytes(200, out));
    }
    let rows = query::execute(&store, &plan);
    if plan.count_only {
        // Hand-written to keep Salesforce's key order (serde_json maps sort keys).
        return Ok(http::json_bytes(
            200,
            format!(
                "{{\"totalSize\":{},\"done\":true,\"records\":[]}}",
                rows.len()
            )
            .into_bytes(),
        ));
    }
    let plan = Arc::new(plan);
    let rows = Arc::new(rows);
    let kids = Arc::new(query::execute_children(&store, &plan, &rows));
    let cursor = Cursor {
        plan,
        rows,
        batch,
        kids,
    };
    let id = if cursor.rows.len() > batch {
        org.cursors
            .lock()
            .map(|mut c| c.insert(cursor.clone()))
            .ok()
    } else {
        None
    };
    Ok(page(&store, &cursor, id.as_deref(), 0, batch, version))
}

fn query_more(org: &Arc<Org>, version: &str, locator: &str) -> Result<Resp, ApiError> {
    let invalid = || ApiError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
    let (id, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let cursor = org
        .cursors
        .lock()
        .ok()
        .and_then(|c| c.get(id))
        .ok_or_else(invalid)?;
    if offset > cursor.rows.len() {
        return Err(invalid());
    }
    let store = org
        .store
        .read()
        .map_err(|_| ApiError::new(500, "UNKNOWN_EXCEPTION", "store lock poisoned"))?;
    // The page size of follow-up pages is the one the locator was cut with.
    Ok(page(
        &store,
        &cursor,
        Some(id),
        offset,
        cursor.batch,
        version,
    ))
}

fn page(
    store: &crate::store::Store,
    c: &Cursor,
    id: Option<&str>,
    offset: usize,
    batch: usize,
    version: &str,
) -> Resp {
    let total = c.rows.len();
    let end = (offset + batch).min(total);
    let done = end >= total;
    let mut out = Vec::with_capacity(64 + (end - offset) * 300);
    out.extend_from_slice(format!("{{\"totalSize\":{total},\"done\":{done}").as_bytes());
    if let (false, Some(id)) = (done, id) {
        out.extend_from_slice(
            format!(",\"nextRecordsUrl\":\"/services/data/v{version}/query/{id}-{end}\"")
                .as_bytes(),
        );
    }
    out.extend_from_slice(b",\"records\":[");
    for (i, &r) in c.rows[offset..end].iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        render::write_record(&mut out, store, &c.plan, version, r, &c.kids);
    }
    out.extend_from_slice(b"]}");
    http::json_bytes(200, out)
}

/// `GET /limits`.
pub fn limits(org: &Org) -> serde_json::Value {
    let now = org.clock.now_ms();
    let max = org.limits.max();
    let used = org.limits.usage(now);
    let bulk_jobs_today = org.jobs.count_query_jobs() as u64;
    let store_rows: usize = org
        .store
        .read()
        .map(|s| s.tables.iter().map(|t| t.len()).sum())
        .unwrap_or(0);
    // Salesforce counts ~2 KB of data storage per record.
    let data_mb = (store_rows as u64 * 2 / 1024).max(1);
    let ml = |m: u64, r: u64| serde_json::json!({"Max": m, "Remaining": r});
    serde_json::json!({
        "ConcurrentAsyncGetReportInstances": ml(200, 200),
        "DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used),
            "Weft": {"Max": 0, "Remaining": 0}},
        "DailyAsyncApexExecutions": ml(250_000, 250_000),
        "DailyBulkApiBatches": ml(15_000, 15_000u64.saturating_sub(org.jobs.count_ingest_jobs() as u64)),
        "DailyBulkV2QueryFileStorageMB": ml(1_048_576, 1_048_576),
        "DailyBulkV2QueryJobs": ml(10_000, 10_000u64.saturating_sub(bulk_jobs_today)),
        "DailyDeliveredPlatformEvents": ml(50_000, 50_000u64.saturating_sub(org.cdc.latest_replay_id().min(50_000))),
        "DailyDurableStreamingApiEvents": ml(1_000_000, 1_000_000),
        "DataStorageMB": ml(data_mb * 4 + 1024, data_mb * 3 + 1024),
        "DurableStreamingApiConcurrentClients": ml(2_000, 2_000),
        "FileStorageMB": ml(10_240, 10_240),
        "HourlyPublishedPlatformEvents": ml(250_000, 250_000),
        "MassEmail": ml(5_000, 5_000),
        "MonthlyPlatformEventsUsageEntitlement": ml(0, 0),
        "PermissionSets": ml(1_500, 1_480),
        "SingleEmail": ml(5_000, 5_000),
    })
}
