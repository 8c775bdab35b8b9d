//! Bulk 2.0 query jobs: create (SOQL checked up front), run after the processing delay,
//! abort, and paged CSV results streamed chunk by chunk from the store.

use super::{Job, JobRef, dialect_of, job_or_404, lock};
use crate::auth::Session;
use crate::error::ApiError;
use crate::faults::BodyReset;
use crate::http::{self, Req, Resp};
use crate::org::Org;
use crate::query::{self, Plan};
use crate::render::{self, CsvDialect};
use crate::soql;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// Rows rendered per streamed chunk: big enough to amortise the lock and the write call
/// (~256 KB for typical rows), small enough that readers never wait on a writer for long.
const CHUNK_ROWS: usize = 2_048;

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
    // Bulk cannot select compound fields; a real org refuses the job at creation with this
    // exact text, which clients (Airbyte) match to fall back to REST.
    if plan.columns.iter().any(|c| c.is_compound()) {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            "Selecting compound data not supported in Bulk Query",
        ));
    }
    if plan.count_only || !plan.children.is_empty() || plan.is_aggregate() {
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
    if org.faults.bulk_stuck() {
        // It stays InProgress until aborted or deleted.
        org.stats.fault("bulk_stuck");
        return;
    }
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
    // A cut lands inside a row of this page: its first half is sent, then the reset.
    let cut = org
        .faults
        .body_reset()
        .filter(|_| end > offset)
        .map(|share| offset + ((end - offset) as f64 * share) as usize)
        .filter(|&c| c < end);
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
        cut,
        fail_next: false,
    };
    // Each chunk is rendered when asked for and is ready at once, so the stream pauses
    // after each one: otherwise the connection keeps taking chunks into its buffer, and
    // the first bytes leave only once most of the page is rendered. Salesforce sends a
    // page as it reads it.
    let body =
        axum::body::Body::from_stream(futures_util::stream::unfold(stream, |mut s| async move {
            let chunk = s.next_chunk()?;
            tokio::task::yield_now().await;
            Some((chunk, s))
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
    if cut.is_some() {
        r.extensions_mut().insert(BodyReset);
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
    /// Row at which a `body_reset` fault cuts the body (half of it is sent).
    cut: Option<usize>,
    /// The cut has been sent; the next poll ends the body with an error.
    fail_next: bool,
}

impl CsvStream {
    fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.finished {
            return None;
        }
        if self.fail_next {
            self.finished = true;
            self.org.stats.fault("body_reset");
            return Some(Err(crate::faults::body_reset_error()));
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
        let mut stop = (self.pos + CHUNK_ROWS).min(self.end);
        if let Some(c) = self.cut.filter(|&c| c < stop) {
            stop = c;
        }
        if let Ok(store) = self.org.store.read() {
            if stop > self.pos {
                for &r in &self.rows[self.pos..stop] {
                    render::write_csv_row(&mut out, &store, &self.plan, r, self.dialect);
                }
            }
            if self.cut == Some(stop) {
                if let Some(&r) = self.rows.get(stop) {
                    let mut row = Vec::new();
                    render::write_csv_row(&mut row, &store, &self.plan, r, self.dialect);
                    out.extend_from_slice(&row[..row.len() / 2]);
                }
                self.fail_next = true;
            }
        }
        self.pos = stop;
        let last = self.pos >= self.end && !self.fail_next;
        match self.gz.as_mut() {
            None => {
                if last {
                    self.finished = true;
                }
                if out.is_empty() && last {
                    None
                } else {
                    Some(Ok(Bytes::from(out)))
                }
            }
            Some(gz) => {
                let _ = gz.write_all(&out);
                if self.fail_next {
                    // Push out what has been compressed so far, as a server mid-stream would.
                    let _ = gz.flush();
                }
                let mut chunk = std::mem::take(gz.get_mut());
                if last {
                    self.finished = true;
                    if let Some(gz) = self.gz.take()
                        && let Ok(rest) = gz.finish()
                    {
                        chunk.extend_from_slice(&rest);
                    }
                }
                Some(Ok(Bytes::from(chunk)))
            }
        }
    }
}
