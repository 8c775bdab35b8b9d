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

use crate::error::ApiError;
use crate::ids;
use crate::org::Org;
use crate::query::Plan;
use crate::render::CsvDialect;
use serde_json::{Value as J, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod ingest;
mod query;

pub use ingest::dispatch_ingest;
pub use query::dispatch_query;

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
    pub(crate) fn info(&self) -> J {
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

    pub(crate) fn terminal(&self) -> bool {
        matches!(self.state.as_str(), "JobComplete" | "Failed" | "Aborted")
    }
}

pub(crate) type JobRef = Arc<Mutex<Job>>;

#[derive(Debug, Default)]
pub struct Jobs {
    map: Mutex<HashMap<String, JobRef>>,
    order: Mutex<Vec<String>>,
    counter: AtomicU32,
}

impl Jobs {
    pub(crate) fn insert(&self, job: Job) -> JobRef {
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

    pub(crate) fn get(&self, id: &str) -> Option<JobRef> {
        self.map.lock().ok()?.get(id).cloned()
    }

    pub(crate) fn remove(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
        if let Ok(mut o) = self.order.lock() {
            o.retain(|x| x != id);
        }
    }

    pub(crate) fn all(&self, query: bool) -> Vec<J> {
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

    pub(crate) fn next_id(&self) -> String {
        ids::make_id(b"750", self.counter.fetch_add(1, Ordering::Relaxed))
    }
}

pub(crate) fn job_or_404(org: &Org, id: &str) -> Result<JobRef, ApiError> {
    org.jobs
        .get(id)
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", "The requested resource does not exist"))
}

pub(crate) fn lock(j: &JobRef) -> Result<std::sync::MutexGuard<'_, Job>, ApiError> {
    j.lock()
        .map_err(|_| ApiError::new(500, "UNKNOWN_EXCEPTION", "job lock poisoned"))
}

pub(crate) fn dialect_of(body: &J) -> Result<(String, String, CsvDialect), ApiError> {
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
