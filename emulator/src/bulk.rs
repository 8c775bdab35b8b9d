//! Bulk API 2.0: query jobs and ingest jobs.
//!
//! Owns the job registry, the state machines (query: `UploadComplete → InProgress →
//! JobComplete | Failed | Aborted`; ingest: `Open → UploadComplete → InProgress → JobComplete
//! | Failed | Aborted`) with a configurable processing delay, paged CSV results streamed in
//! chunks straight from the store (`Sforce-Locator` — literally `null` on the last page —,
//! `Sforce-NumberOfRecords`, a header row on every page, gzip on request), and ingest
//! processing with per-record success / failed / unprocessed results. Records go through the
//! same validation as REST writes (`writes`). A result page is never built as one huge
//! string: memory per download stays at one chunk.

use crate::auth::Session;
use crate::error::{ApiError, RecordError};
use crate::http::{self, Req, Resp};
use crate::ids;
use crate::org::Org;
use crate::query::{self, Plan};
use crate::render::{self, CsvDialect};
use crate::schema::{FieldDef, Storage};
use crate::soql;
use crate::store::{Store, Value};
use crate::writes::{self, Change, Op};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value as J, json};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Rows rendered per streamed chunk: big enough to amortise the lock and the write call
/// (~256 KB for typical rows), small enough that readers never wait on a writer for long.
const CHUNK_ROWS: usize = 2_048;
/// Rows applied per write-lock acquisition in ingest, so REST readers interleave.
const INGEST_LOCK_ROWS: usize = 1_000;

#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub is_query: bool,
    pub operation: String,
    pub object: String,
    pub state: String,
    pub created_ms: i64,
    pub modstamp_ms: i64,
    pub api_version: String,
    pub column_delimiter: String,
    pub line_ending: String,
    pub dialect: CsvDialect,
    pub created_by: u32,
    pub processed: u64,
    pub failed: u64,
    pub error_message: Option<String>,
    pub external_id: Option<String>,
    pub plan: Option<Arc<Plan>>,
    pub rows: Option<Arc<Vec<u32>>>,
    pub data: Vec<u8>,
    pub success_csv: Vec<u8>,
    pub failed_csv: Vec<u8>,
    pub unprocessed_csv: Vec<u8>,
    pub started: Instant,
    pub processing_ms: u64,
    pub origin: String,
}

impl Job {
    fn info(&self) -> J {
        let mut v = json!({
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": ids::make_id(b"005", self.created_by),
            "createdDate": crate::clock::format_datetime(self.created_ms),
            "systemModstamp": crate::clock::format_datetime(self.modstamp_ms),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.api_version.parse::<f64>().unwrap_or(60.0),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        });
        if self.is_query {
            v["jobType"] = json!("V2Query");
            v["numberRecordsProcessed"] = json!(self.processed);
            v["retries"] = json!(0);
            v["totalProcessingTime"] = json!(self.processing_ms);
            v["isPkChunkingSupported"] = json!(true);
        } else {
            v["jobType"] = json!("V2Ingest");
            v["contentUrl"] = json!(format!(
                "services/data/v{}/jobs/ingest/{}/batches",
                self.api_version, self.id
            ));
            v["externalIdFieldName"] = json!(self.external_id);
            v["numberRecordsProcessed"] = json!(self.processed);
            v["numberRecordsFailed"] = json!(self.failed);
            v["retries"] = json!(0);
            v["totalProcessingTime"] = json!(self.processing_ms);
            v["apiActiveProcessingTime"] = json!(self.processing_ms);
            v["apexProcessingTime"] = json!(0);
        }
        if let Some(e) = &self.error_message {
            v["errorMessage"] = json!(e);
        }
        v
    }

    fn terminal(&self) -> bool {
        matches!(self.state.as_str(), "JobComplete" | "Failed" | "Aborted")
    }
}

type JobRef = Arc<Mutex<Job>>;

#[derive(Debug, Default)]
pub struct Jobs {
    map: Mutex<HashMap<String, JobRef>>,
    order: Mutex<Vec<String>>,
    counter: AtomicU32,
}

impl Jobs {
    fn insert(&self, job: Job) -> JobRef {
        let id = job.id.clone();
        let r = Arc::new(Mutex::new(job));
        if let Ok(mut m) = self.map.lock() {
            m.insert(id.clone(), r.clone());
        }
        if let Ok(mut o) = self.order.lock() {
            o.push(id);
        }
        r
    }

    fn get(&self, id: &str) -> Option<JobRef> {
        self.map.lock().ok()?.get(id).cloned()
    }

    fn remove(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
        if let Ok(mut o) = self.order.lock() {
            o.retain(|x| x != id);
        }
    }

    fn all(&self, query: bool) -> Vec<J> {
        let ids: Vec<String> = self.order.lock().map(|o| o.clone()).unwrap_or_default();
        ids.iter()
            .filter_map(|id| self.get(id))
            .filter_map(|j| {
                j.lock()
                    .ok()
                    .filter(|j| j.is_query == query)
                    .map(|j| j.info())
            })
            .collect()
    }

    pub fn count_query_jobs(&self) -> usize {
        self.all(true).len()
    }

    pub fn count_ingest_jobs(&self) -> usize {
        self.all(false).len()
    }

    /// One line per job for the admin stats.
    pub fn summaries(&self) -> Vec<J> {
        let mut v = self.all(true);
        v.extend(self.all(false));
        v
    }

    fn next_id(&self) -> String {
        ids::make_id(b"750", self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

fn job_or_404(org: &Org, id: &str) -> Result<JobRef, ApiError> {
    org.jobs
        .get(id)
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", "The requested resource does not exist"))
}

fn lock(j: &JobRef) -> Result<std::sync::MutexGuard<'_, Job>, ApiError> {
    j.lock()
        .map_err(|_| ApiError::new(500, "UNKNOWN_EXCEPTION", "job lock poisoned"))
}

fn dialect_of(body: &J) -> Result<(String, String, CsvDialect), ApiError> {
    let cd = body["columnDelimiter"]
        .as_str()
        .unwrap_or("COMMA")
        .to_string();
    let le = body["lineEnding"].as_str().unwrap_or("LF").to_string();
    if let Some(ct) = body["contentType"].as_str()
        && ct != "CSV"
    {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            format!("Unsupported content type: {ct}"),
        ));
    }
    let d = CsvDialect::from_names(&cd, &le)
        .ok_or_else(|| ApiError::new(400, "API_ERROR", "Invalid columnDelimiter or lineEnding"))?;
    Ok((cd, le, d))
}

// ---------------------------------------------------------------------------------------
// Query jobs

pub async fn dispatch_query(
    org: &Arc<Org>,
    req: &Req,
    s: &[&str],
    version: &str,
    session: &Session,
) -> Result<Resp, ApiError> {
    match (req.method.as_str(), s) {
        ("POST", ["jobs", "query"]) => create_query(org, req, version, session),
        ("GET", ["jobs", "query"]) => Ok(http::json(
            200,
            &json!({"done": true, "records": org.jobs.all(true), "nextRecordsUrl": null}),
        )),
        ("GET", ["jobs", "query", id]) => {
            let j = job_or_404(org, id)?;
            let info = lock(&j)?.info();
            Ok(http::json(200, &info))
        }
        ("PATCH", ["jobs", "query", id]) => {
            let body = req.json()?;
            let j = job_or_404(org, id)?;
            let mut job = lock(&j)?;
            if body["state"] != "Aborted" {
                return Err(ApiError::new(
                    400,
                    "INVALIDJOBSTATE",
                    "Only Aborted can be set on a query job",
                ));
            }
            if job.terminal() {
                return Err(ApiError::new(
                    400,
                    "INVALIDJOBSTATE",
                    format!("Job is already {}", job.state),
                ));
            }
            job.state = "Aborted".into();
            job.modstamp_ms = org.clock.now_audit_ms();
            Ok(http::json(200, &job.info()))
        }
        ("DELETE", ["jobs", "query", id]) => {
            job_or_404(org, id)?;
            org.jobs.remove(id);
            Ok(http::empty(204))
        }
        ("GET", ["jobs", "query", id, "results"]) => query_results(org, req, id, version),
        _ => Err(ApiError::not_found()),
    }
}

fn create_query(
    org: &Arc<Org>,
    req: &Req,
    version: &str,
    session: &Session,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let operation = body["operation"].as_str().unwrap_or("query").to_string();
    if operation != "query" && operation != "queryAll" {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            format!("Invalid operation: {operation}"),
        ));
    }
    let text = body["query"]
        .as_str()
        .ok_or_else(|| ApiError::new(400, "API_ERROR", "query is required"))?;
    let (cd, le, dialect) = dialect_of(&body)?;
    let parsed = soql::parse(text)?;
    let plan = {
        let store = org
            .store
            .read()
            .map_err(|_| ApiError::new(500, "UNKNOWN_EXCEPTION", "store lock poisoned"))?;
        query::plan(&store, &parsed, operation == "queryAll", org.today())?
    };
    if plan.count_only || !plan.children.is_empty() {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            "Aggregate Relationships not supported in Bulk Query with CSV content type",
        ));
    }
    let now = org.clock.now_audit_ms();
    let job = Job {
        id: org.jobs.next_id(),
        is_query: true,
        operation,
        object: plan.object.clone(),
        state: "UploadComplete".into(),
        created_ms: now,
        modstamp_ms: now,
        api_version: version.to_string(),
        column_delimiter: cd,
        line_ending: le,
        dialect,
        created_by: session.user_row,
        processed: 0,
        failed: 0,
        error_message: None,
        external_id: None,
        plan: Some(Arc::new(plan)),
        rows: None,
        data: Vec::new(),
        success_csv: Vec::new(),
        failed_csv: Vec::new(),
        unprocessed_csv: Vec::new(),
        started: Instant::now(),
        processing_ms: 0,
        origin: String::new(),
    };
    let info = job.info();
    let jref = org.jobs.insert(job);
    let org2 = org.clone();
    tokio::spawn(async move { run_query_job(org2, jref).await });
    Ok(http::json(200, &info))
}

async fn run_query_job(org: Arc<Org>, jref: JobRef) {
    let delay = org.cfg.bulk_processing_delay;
    tokio::time::sleep(delay / 2).await;
    let plan = match jref.lock() {
        Ok(mut j) if j.state == "UploadComplete" => {
            j.state = "InProgress".into();
            j.modstamp_ms = org.clock.now_audit_ms();
            j.plan.clone()
        }
        _ => return,
    };
    tokio::time::sleep(delay / 2).await;
    let fail = org.faults.bulk_fail();
    let rows = if fail {
        None
    } else {
        let Some(plan) = plan else { return };
        let org2 = org.clone();
        tokio::task::spawn_blocking(move || {
            org2.store.read().ok().map(|s| query::execute(&s, &plan))
        })
        .await
        .ok()
        .flatten()
    };
    if let Ok(mut j) = jref.lock() {
        if j.state != "InProgress" {
            return;
        }
        j.modstamp_ms = org.clock.now_audit_ms();
        j.processing_ms = j.started.elapsed().as_millis() as u64;
        match rows {
            Some(rows) => {
                j.processed = rows.len() as u64;
                j.rows = Some(Arc::new(rows));
                j.state = "JobComplete".into();
            }
            None => {
                org.stats.fault("bulk_failed");
                j.state = "Failed".into();
                j.error_message = Some(
                    "InternalServerError: the query job failed to complete after internal retries"
                        .into(),
                );
            }
        }
    }
}

fn query_results(org: &Arc<Org>, req: &Req, id: &str, version: &str) -> Result<Resp, ApiError> {
    let j = job_or_404(org, id)?;
    let (plan, rows, dialect) = {
        let job = lock(&j)?;
        if job.api_version != version {
            return Err(ApiError::new(
                409,
                "API_ERROR",
                format!(
                    "Job was created with API version {}; use the same version to get results",
                    job.api_version
                ),
            ));
        }
        if job.state != "JobComplete" {
            return Err(ApiError::new(
                400,
                "API_ERROR",
                format!("Job is not complete: {}", job.state),
            ));
        }
        match (&job.plan, &job.rows) {
            (Some(p), Some(r)) => (p.clone(), r.clone(), job.dialect),
            _ => return Err(ApiError::new(400, "API_ERROR", "Job has no results")),
        }
    };
    let offset = match req.param("locator") {
        None | Some("") => 0,
        Some(l) => STANDARD
            .decode(l)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&o| o <= rows.len())
            .ok_or_else(|| {
                ApiError::new(400, "INVALID_LOCATOR", format!("Invalid locator: {l}"))
            })?,
    };
    let max = match req.param("maxRecords") {
        Some(m) => m.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
            ApiError::new(400, "API_ERROR", "maxRecords must be a positive integer")
        })?,
        None => org.cfg.bulk_default_page_records.max(1),
    };
    let end = (offset + max).min(rows.len());
    let locator = if end < rows.len() {
        STANDARD.encode(end.to_string())
    } else {
        "null".to_string()
    };
    let gzip = req
        .header("accept-encoding")
        .is_some_and(|a| a.split(',').any(|e| e.trim().starts_with("gzip")));
    let stream = CsvStream {
        org: org.clone(),
        plan,
        rows,
        pos: offset,
        end,
        dialect,
        header_done: false,
        gz: gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())),
        finished: false,
    };
    let body =
        axum::body::Body::from_stream(futures_util::stream::unfold(stream, |mut s| async move {
            s.next_chunk().map(|c| (Ok::<Bytes, std::io::Error>(c), s))
        }));
    let mut r = http::bytes_response(200, "text/csv", body);
    http::set_header(&mut r, "Sforce-Locator", &locator);
    http::set_header(
        &mut r,
        "Sforce-NumberOfRecords",
        &(end - offset).to_string(),
    );
    if gzip {
        http::set_header(&mut r, "Content-Encoding", "gzip");
    }
    Ok(r)
}

struct CsvStream {
    org: Arc<Org>,
    plan: Arc<Plan>,
    rows: Arc<Vec<u32>>,
    pos: usize,
    end: usize,
    dialect: CsvDialect,
    header_done: bool,
    gz: Option<flate2::write::GzEncoder<Vec<u8>>>,
    finished: bool,
}

impl CsvStream {
    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        let mut out = Vec::with_capacity(256 * 1024);
        if !self.header_done {
            let headers: Vec<&str> = self
                .plan
                .columns
                .iter()
                .map(|c| c.header.as_str())
                .collect();
            render::write_csv_header(&mut out, &headers, self.dialect);
            self.header_done = true;
        }
        let stop = (self.pos + CHUNK_ROWS).min(self.end);
        if stop > self.pos {
            if let Ok(store) = self.org.store.read() {
                for &r in &self.rows[self.pos..stop] {
                    render::write_csv_row(&mut out, &store, &self.plan, r, self.dialect);
                }
            }
            self.pos = stop;
        }
        let last = self.pos >= self.end;
        match self.gz.as_mut() {
            None => {
                if last {
                    self.finished = true;
                }
                if out.is_empty() && last {
                    None
                } else {
                    Some(Bytes::from(out))
                }
            }
            Some(gz) => {
                let _ = gz.write_all(&out);
                let mut chunk = std::mem::take(gz.get_mut());
                if last {
                    self.finished = true;
                    if let Some(gz) = self.gz.take()
                        && let Ok(rest) = gz.finish()
                    {
                        chunk.extend_from_slice(&rest);
                    }
                }
                Some(Bytes::from(chunk))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Ingest jobs

pub async fn dispatch_ingest(
    org: &Arc<Org>,
    req: &Req,
    s: &[&str],
    version: &str,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    match (req.method.as_str(), s) {
        ("POST", ["jobs", "ingest"]) => create_ingest(org, req, version, session, origin),
        ("GET", ["jobs", "ingest"]) => Ok(http::json(
            200,
            &json!({"done": true, "records": org.jobs.all(false), "nextRecordsUrl": null}),
        )),
        ("GET", ["jobs", "ingest", id]) => {
            let j = job_or_404(org, id)?;
            let info = lock(&j)?.info();
            Ok(http::json(200, &info))
        }
        ("PUT", ["jobs", "ingest", id, "batches"]) => {
            let j = job_or_404(org, id)?;
            let mut job = lock(&j)?;
            if job.state != "Open" {
                return Err(ApiError::new(
                    400,
                    "INVALIDJOBSTATE",
                    format!("Job is not open for upload: {}", job.state),
                ));
            }
            if !job.data.is_empty() {
                return Err(ApiError::new(
                    400,
                    "INVALIDJOBSTATE",
                    "Only one upload is allowed per job",
                ));
            }
            job.data = req.body.to_vec();
            Ok(http::empty(201))
        }
        ("PATCH", ["jobs", "ingest", id]) => {
            let body = req.json()?;
            let j = job_or_404(org, id)?;
            let mut job = lock(&j)?;
            match body["state"].as_str() {
                Some("UploadComplete") if job.state == "Open" => {
                    job.state = "UploadComplete".into();
                    job.modstamp_ms = org.clock.now_audit_ms();
                    let info = job.info();
                    drop(job);
                    let org2 = org.clone();
                    let j2 = j.clone();
                    tokio::spawn(async move { run_ingest_job(org2, j2).await });
                    Ok(http::json(200, &info))
                }
                Some("Aborted") if !job.terminal() => {
                    job.state = "Aborted".into();
                    job.modstamp_ms = org.clock.now_audit_ms();
                    Ok(http::json(200, &job.info()))
                }
                other => Err(ApiError::new(
                    400,
                    "INVALIDJOBSTATE",
                    format!(
                        "Cannot change state from {} to {}",
                        job.state,
                        other.unwrap_or("?")
                    ),
                )),
            }
        }
        ("DELETE", ["jobs", "ingest", id]) => {
            job_or_404(org, id)?;
            org.jobs.remove(id);
            Ok(http::empty(204))
        }
        ("GET", ["jobs", "ingest", id, kind]) => {
            let j = job_or_404(org, id)?;
            let job = lock(&j)?;
            let body = match kind.to_ascii_lowercase().as_str() {
                "successfulresults" => job.success_csv.clone(),
                "failedresults" => job.failed_csv.clone(),
                "unprocessedrecords" => job.unprocessed_csv.clone(),
                _ => return Err(ApiError::not_found()),
            };
            if !job.terminal() && !kind.eq_ignore_ascii_case("unprocessedrecords") {
                return Err(ApiError::new(
                    400,
                    "API_ERROR",
                    format!("Job is not complete: {}", job.state),
                ));
            }
            Ok(http::bytes_response(200, "text/csv", body))
        }
        _ => Err(ApiError::not_found()),
    }
}

const INGEST_OPS: &[&str] = &["insert", "update", "upsert", "delete", "hardDelete"];

fn create_ingest(
    org: &Arc<Org>,
    req: &Req,
    version: &str,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let object = body["object"]
        .as_str()
        .ok_or_else(|| ApiError::new(400, "API_ERROR", "object is required"))?;
    let operation = body["operation"].as_str().unwrap_or_default().to_string();
    if !INGEST_OPS.contains(&operation.as_str()) {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            format!("Invalid operation: {operation}"),
        ));
    }
    let (cd, le, dialect) = dialect_of(&body)?;
    let (object, ext) = {
        let store = org
            .store
            .read()
            .map_err(|_| ApiError::new(500, "UNKNOWN_EXCEPTION", "store lock poisoned"))?;
        let t = store.table(object).ok_or_else(|| {
            ApiError::new(
                400,
                "INVALIDENTITY",
                format!("Entity '{object}' is not supported by the Bulk API"),
            )
        })?;
        let ext = if operation == "upsert" {
            let name = body["externalIdFieldName"].as_str().ok_or_else(|| {
                ApiError::new(
                    400,
                    "API_ERROR",
                    "externalIdFieldName is required for upsert",
                )
            })?;
            let f = t
                .def
                .field(name)
                .filter(|f| f.external_id || f.storage == Storage::Id)
                .ok_or_else(|| {
                    ApiError::new(
                        400,
                        "INVALIDFIELD",
                        format!("External ID field {name} is not valid for {}", t.def.name),
                    )
                })?;
            Some(f.name.clone())
        } else {
            None
        };
        (t.def.name.clone(), ext)
    };
    let now = org.clock.now_audit_ms();
    let job = Job {
        id: org.jobs.next_id(),
        is_query: false,
        operation,
        object,
        state: "Open".into(),
        created_ms: now,
        modstamp_ms: now,
        api_version: version.to_string(),
        column_delimiter: cd,
        line_ending: le,
        dialect,
        created_by: session.user_row,
        processed: 0,
        failed: 0,
        error_message: None,
        external_id: ext,
        plan: None,
        rows: None,
        data: Vec::new(),
        success_csv: Vec::new(),
        failed_csv: Vec::new(),
        unprocessed_csv: Vec::new(),
        started: Instant::now(),
        processing_ms: 0,
        origin: origin.replace("/rest/", "/bulkapi/"),
    };
    let info = job.info();
    org.jobs.insert(job);
    Ok(http::json(200, &info))
}

/// How one CSV column maps onto the object.
enum ColMap {
    Field(usize),
    /// `Account.External_Id__c`: (reference field index, target table, target field).
    Relation(usize, usize, FieldDef),
    Ignore,
}

fn write_csv_line(out: &mut Vec<u8>, lead: &[&str], cells: &[String], d: CsvDialect) {
    let mut first = true;
    for v in lead.iter().copied().chain(cells.iter().map(String::as_str)) {
        if !first {
            out.push(d.delimiter);
        }
        first = false;
        render::write_csv_quoted(out, v);
    }
    d.end_line(out);
}

async fn run_ingest_job(org: Arc<Org>, jref: JobRef) {
    let delay = org.cfg.bulk_processing_delay;
    tokio::time::sleep(delay / 2).await;
    let (data, dialect, op, object, ext, user, origin) = match jref.lock() {
        Ok(mut j) if j.state == "UploadComplete" => {
            j.state = "InProgress".into();
            j.modstamp_ms = org.clock.now_audit_ms();
            (
                std::mem::take(&mut j.data),
                j.dialect,
                j.operation.clone(),
                j.object.clone(),
                j.external_id.clone(),
                j.created_by,
                j.origin.clone(),
            )
        }
        _ => return,
    };
    tokio::time::sleep(delay / 2).await;
    let fail = org.faults.bulk_fail();
    let org2 = org.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        process_ingest(
            &org2,
            &data,
            dialect,
            &op,
            &object,
            ext.as_deref(),
            user,
            &origin,
            fail,
        )
    })
    .await;
    if let Ok(mut j) = jref.lock() {
        j.modstamp_ms = org.clock.now_audit_ms();
        j.processing_ms = j.started.elapsed().as_millis() as u64;
        match outcome {
            Ok(Ok(o)) => {
                j.processed = o.processed;
                j.failed = o.failed;
                j.success_csv = o.success;
                j.failed_csv = o.failed_csv;
                j.unprocessed_csv = o.unprocessed;
                if fail {
                    org.stats.fault("bulk_failed");
                    j.state = "Failed".into();
                    j.error_message = Some("InternalServerError: the job failed to complete after internal retries; all records are unprocessed".into());
                } else if j.state == "InProgress" {
                    j.state = "JobComplete".into();
                }
            }
            Ok(Err(e)) => {
                j.state = "Failed".into();
                j.error_message = Some(e);
            }
            Err(e) => {
                j.state = "Failed".into();
                j.error_message = Some(format!("InternalServerError: {e}"));
            }
        }
    }
}

struct IngestOutcome {
    processed: u64,
    failed: u64,
    success: Vec<u8>,
    failed_csv: Vec<u8>,
    unprocessed: Vec<u8>,
}

#[allow(clippy::too_many_arguments)]
fn process_ingest(
    org: &Org,
    data: &[u8],
    d: CsvDialect,
    op: &str,
    object: &str,
    ext: Option<&str>,
    user: u32,
    origin: &str,
    fail: bool,
) -> Result<IngestOutcome, String> {
    let rows =
        crate::csv_in::parse(data, d.delimiter).map_err(|e| format!("InvalidBatch : {e}"))?;
    let Some((header, body)) = rows.split_first() else {
        return Err("InvalidBatch : Empty CSV".into());
    };
    let hdr: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut success = Vec::new();
    let mut failed_csv = Vec::new();
    let mut unprocessed = Vec::new();
    let mut sh = vec!["sf__Id", "sf__Created"];
    sh.extend(&hdr);
    render::write_csv_header(&mut success, &sh, d);
    let mut fh = vec!["sf__Id", "sf__Error"];
    fh.extend(&hdr);
    render::write_csv_header(&mut failed_csv, &fh, d);
    render::write_csv_header(&mut unprocessed, &hdr, d);
    if fail {
        for r in body {
            write_csv_line(&mut unprocessed, &[], r, d);
        }
        return Ok(IngestOutcome {
            processed: 0,
            failed: 0,
            success,
            failed_csv,
            unprocessed,
        });
    }
    // Resolve the header once.
    let (table, maps) = {
        let store = org
            .store
            .read()
            .map_err(|_| "store lock poisoned".to_string())?;
        let t = store
            .table_index(object)
            .ok_or_else(|| format!("InvalidBatch : entity {object} no longer exists"))?;
        let def = &store.tables[t].def;
        let mut maps = Vec::new();
        for h in &hdr {
            if let Some((rel, field)) = h.split_once('.') {
                let rf = def.fields.iter().position(|f| {
                    f.relationship_name
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case(rel))
                });
                let target = rf
                    .and_then(|i| def.fields[i].reference_to.as_deref())
                    .and_then(|n| store.table_index(n));
                match (rf, target) {
                    (Some(i), Some(tt)) => match store.tables[tt].def.field(field) {
                        Some(f) if f.external_id || f.storage == Storage::Id => {
                            maps.push(ColMap::Relation(i, tt, f.clone()))
                        }
                        _ => return Err(format!("InvalidBatch : Field name not found : {h}")),
                    },
                    _ => return Err(format!("InvalidBatch : Field name not found : {h}")),
                }
            } else if let Some(i) = def.field_index(h) {
                maps.push(ColMap::Field(i));
            } else {
                return Err(format!("InvalidBatch : Field name not found : {h}"));
            }
        }
        let _ = ColMap::Ignore;
        (t, maps)
    };
    let id_col = hdr.iter().position(|h| h.eq_ignore_ascii_case("Id"));
    let ext_col = ext.and_then(|e| hdr.iter().position(|h| h.eq_ignore_ascii_case(e)));
    let (mut processed, mut failed) = (0u64, 0u64);
    for chunk in body.chunks(INGEST_LOCK_ROWS) {
        let Ok(mut store) = org.store.write() else {
            return Err("store lock poisoned".into());
        };
        let mut changes: Vec<Change> = Vec::new();
        for r in chunk {
            processed += 1;
            let res = if org.faults.lock_row() {
                org.stats.fault("lock_row");
                Err((
                    None,
                    RecordError::new(
                        "UNABLE_TO_LOCK_ROW",
                        "unable to obtain exclusive access to this record or 1 records",
                        vec![],
                    ),
                ))
            } else {
                ingest_row(
                    org, &mut store, table, &maps, r, op, id_col, ext_col, ext, user,
                )
            };
            match res {
                Ok((row, created, change)) => {
                    let id = ids::make_id(&store.tables[table].def.key_prefix, row);
                    write_csv_line(
                        &mut success,
                        &[&id, if created { "true" } else { "false" }],
                        r,
                        d,
                    );
                    changes.push(change);
                }
                Err((row, e)) => {
                    failed += 1;
                    let id = row
                        .map(|x| ids::make_id(&store.tables[table].def.key_prefix, x))
                        .unwrap_or_default();
                    let msg = format!("{}:{}:{} --", e.status_code, e.message, e.fields.join(","));
                    write_csv_line(&mut failed_csv, &[&id, &msg], r, d);
                }
            }
        }
        org.committed(&store, &changes, origin, user);
    }
    Ok(IngestOutcome {
        processed,
        failed,
        success,
        failed_csv,
        unprocessed,
    })
}

type RowResult = Result<(u32, bool, Change), (Option<u32>, RecordError)>;

#[allow(clippy::too_many_arguments)]
fn ingest_row(
    org: &Org,
    store: &mut Store,
    t: usize,
    maps: &[ColMap],
    cells: &[String],
    op: &str,
    id_col: Option<usize>,
    ext_col: Option<usize>,
    ext: Option<&str>,
    user: u32,
) -> RowResult {
    let ctx = org.write_ctx(user);
    let target_row = |store: &Store| -> Result<u32, (Option<u32>, RecordError)> {
        let id = id_col
            .and_then(|i| cells.get(i))
            .map(String::as_str)
            .unwrap_or_default();
        match store.resolve_id(id) {
            Some((tt, row)) if tt == t => Ok(row),
            _ => Err((
                None,
                RecordError::new(
                    "MALFORMED_ID",
                    format!("invalid id: {id}"),
                    vec!["Id".into()],
                ),
            )),
        }
    };
    if op == "delete" || op == "hardDelete" {
        let row = target_row(store)?;
        let r = if op == "delete" {
            writes::delete(store, t, row, ctx)
        } else {
            writes::purge(store, t, row, ctx)
        };
        return r.map(|c| (row, false, c)).map_err(|e| (Some(row), e));
    }
    let wop = if op == "insert" {
        Op::Create
    } else {
        Op::Update
    };
    let mut fields: Vec<(usize, Value)> = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        let Some(raw) = cells.get(i) else { continue };
        if raw.is_empty() {
            continue; // empty cell: leave unchanged
        }
        match m {
            ColMap::Field(fi) => {
                let f = &store.tables[t].def.fields[*fi];
                if f.storage == Storage::Id || Some(i) == ext_col && op == "upsert" {
                    continue;
                }
                let writable = if wop == Op::Create {
                    f.createable
                } else {
                    f.updateable
                };
                if !writable {
                    return Err((
                        None,
                        RecordError::new(
                            "INVALID_FIELD_FOR_INSERT_UPDATE",
                            format!("Unable to create/update fields: {}", f.name),
                            vec![f.name.clone()],
                        ),
                    ));
                }
                let v = if raw == "#N/A" {
                    Value::Null
                } else {
                    writes::coerce_text(store, f, raw).map_err(|e| (None, e))?
                };
                writes::check_value(f, &v).map_err(|e| (None, e))?;
                fields.push((*fi, v));
            }
            ColMap::Relation(fi, tt, tf) => {
                let row = writes::find_by_external_id(store, *tt, tf, raw).ok_or_else(|| {
                    (None, RecordError::new("INVALID_FIELD", format!("Foreign key external ID: {raw} not found for field {} in entity {}", tf.name, store.tables[*tt].def.name), vec![tf.name.clone()]))
                })?;
                fields.push((*fi, Value::Ref(row)));
            }
            ColMap::Ignore => {}
        }
    }
    match op {
        "insert" => writes::create(store, t, fields, ctx)
            .map(|(r, c)| (r, true, c))
            .map_err(|e| (None, e)),
        "update" => {
            let row = target_row(store)?;
            writes::update(store, t, row, fields, ctx)
                .map(|c| (row, false, c))
                .map_err(|e| (Some(row), e))
        }
        _ => {
            let (Some(col), Some(ext)) = (ext_col, ext) else {
                return Err((
                    None,
                    RecordError::new("MISSING_ARGUMENT", "external id column missing", vec![]),
                ));
            };
            let value = cells.get(col).cloned().unwrap_or_default();
            let f = store.tables[t].def.field(ext).cloned().ok_or_else(|| {
                (
                    None,
                    RecordError::new("INVALID_FIELD", "external id field removed", vec![]),
                )
            })?;
            match writes::find_by_external_id(store, t, &f, &value) {
                Some(row) => writes::update(store, t, row, fields, ctx)
                    .map(|c| (row, false, c))
                    .map_err(|e| (Some(row), e)),
                None => {
                    if f.storage != Storage::Id {
                        let fi = store.tables[t].def.field_index(&f.name).unwrap_or(0);
                        fields.push((fi, Value::Text(value)));
                    }
                    writes::create(store, t, fields, ctx)
                        .map(|(r, c)| (r, true, c))
                        .map_err(|e| (None, e))
                }
            }
        }
    }
}
