//! Bulk API 2.0 query: create → poll → stream results page by page, resumable.
//!
//! Owns the query job lifecycle (create, poll with growing intervals, a deadline after which
//! the job is aborted instead of polled forever) and [`BulkQueryStream`], which downloads one
//! result page (`Sforce-Locator`) at a time and parses its CSV incrementally as bytes arrive:
//! memory holds one network chunk and one batch of rows, never a page or the result. Every
//! batch carries a [`BulkCursor`] — job id, page locator, rows of that page already handed
//! out — so a caller that checkpoints cursors resumes exactly where it stopped, after a crash
//! or a failed download, without re-reading or skipping a record.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use bytes::Bytes;

use super::csv::{CsvParser, CsvTable};
use super::error::Disposition;
use super::rest::path_segment;
use super::transport::Call;
use super::{SalesforceClient, SalesforceError};
use crate::throttle::{Permit, Project};

/// Bulk knobs (query and ingest).
#[derive(Debug, Clone, PartialEq)]
pub struct BulkConfig {
    /// First wait between job status polls. 100 ms: a job over a small result can finish
    /// in a fraction of a second, and a first wait of 500 ms was most of such a backfill.
    pub poll_initial: Duration,
    /// Polls slow down by this factor each time (2: polls at 0, 0.1, 0.3, 0.7, 1.5, 3.1 s —
    /// a job that takes a second costs five polls, two more than from 500 ms by 1.5)…
    pub poll_factor: f64,
    /// …up to this interval (10 s): a job that runs for an hour costs a few hundred polls,
    /// not thousands of API calls.
    pub poll_max: Duration,
    /// A job still not finished after this is aborted and reported (`BulkTimeout`) rather
    /// than polled forever. 2 h: far beyond a healthy job of any size we run.
    pub job_timeout: Duration,
    /// `maxRecords` per result page. 50,000 keeps a page's download well under the 10-minute
    /// request limit and a re-download after a failure cheap; `None` lets Salesforce choose.
    pub page_records: Option<u64>,
    /// Values (rows × columns) per [`BulkBatch`] handed to the caller, and so per plugin
    /// call and per checkpoint: 120,000 — 10,000 rows of a dozen fields, 600 rows of 200.
    /// Fewer, larger batches cost fewer fsyncs and commits per row; a bound on values
    /// rather than rows keeps a wide object's batch within a plugin call's output caps.
    pub batch_values: usize,
    /// At most this many rows per batch (10,000), at least 200 (REST's smallest page).
    pub batch_records: usize,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            poll_initial: Duration::from_millis(100),
            poll_factor: 2.0,
            poll_max: Duration::from_secs(10),
            job_timeout: Duration::from_secs(2 * 3600),
            page_records: Some(50_000),
            batch_values: 120_000,
            batch_records: 10_000,
        }
    }
}

/// Where a Bulk query result stream stands: checkpoint this after the sink committed the
/// batch that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkCursor {
    pub job_id: String,
    /// Locator of the page to read (`None` = the first page).
    pub locator: Option<String>,
    /// Rows of that page already handed out.
    pub skip: u64,
}

/// A batch of rows from a Bulk query result.
#[derive(Debug, Clone)]
pub struct BulkBatch {
    /// Column names (`Id`, `Name`, `Account.Name`, …) of every row.
    pub columns: Arc<[String]>,
    /// The rows, their cells as spans of one text buffer.
    pub rows: CsvTable,
    /// Resume point right after this batch.
    pub cursor: BulkCursor,
    /// No rows follow this batch.
    pub last: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct JobInfo {
    pub id: String,
    pub state: String,
    #[serde(rename = "errorMessage", default)]
    pub error_message: Option<String>,
    #[serde(rename = "numberRecordsProcessed", default)]
    pub records_processed: Option<u64>,
    #[serde(rename = "numberRecordsFailed", default)]
    pub records_failed: Option<u64>,
}

struct OpenPage {
    response: reqwest::Response,
    permit: Option<Permit>,
    parser: CsvParser,
    /// The header row while it is being parsed; `None` once seen.
    header: Option<CsvTable>,
    /// Data rows of this page still to drop (already handed out before a re-download).
    to_skip: u64,
    /// Rows being dropped.
    skipped: CsvTable,
    /// Data rows of this page skipped or handed out.
    parsed: u64,
    /// The part of the last chunk not parsed yet: parsing stops at a full batch.
    leftover: Bytes,
    expected: Option<u64>,
    next_locator: Option<String>,
    ended: bool,
}

/// Rows per batch for a result of `columns`: about `batch_values` values, at least 200 rows
/// (fewer only if `batch_records` says so) and at most `batch_records`.
fn batch_rows(config: &BulkConfig, columns: Option<&[String]>) -> usize {
    let max = config.batch_records.max(1);
    match columns {
        Some(columns) => (config.batch_values / columns.len().max(1)).clamp(200.min(max), max),
        None => max,
    }
}

/// The column names of a page's header row, which every page of a result repeats.
fn check_header(
    seen: &Option<Arc<[String]>>,
    header: &CsvTable,
) -> Result<Arc<[String]>, SalesforceError> {
    let columns: Arc<[String]> = header
        .owned_row(0)
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    match seen {
        Some(c) if **c != *columns => Err(SalesforceError::Decode {
            context: "bulk query CSV".into(),
            message: "the header changed between pages".into(),
        }),
        _ => Ok(columns),
    }
}

/// A resumable stream of a Bulk query's result rows.
pub struct BulkQueryStream {
    client: SalesforceClient,
    project: Project,
    job_id: String,
    locator: Option<String>,
    /// Rows of the page at `locator` handed out so far.
    consumed: u64,
    columns: Option<Arc<[String]>>,
    page: Option<OpenPage>,
    /// Rows parsed and not handed out yet: at most one batch.
    pending: CsvTable,
    body_failures: u32,
    done: bool,
}

impl std::fmt::Debug for BulkQueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkQueryStream")
            .field("job_id", &self.job_id)
            .field("locator", &self.locator)
            .field("consumed", &self.consumed)
            .field("done", &self.done)
            .finish()
    }
}

impl SalesforceClient {
    /// Creates a query job for `soql` (`queryAll` includes deleted rows), waits for it to
    /// complete, and returns its result stream from the first row.
    pub async fn bulk_query(
        &self,
        project: Project,
        soql: &str,
        query_all: bool,
    ) -> Result<BulkQueryStream, SalesforceError> {
        let body = json!({
            "operation": if query_all { "queryAll" } else { "query" },
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        });
        let call = Call::new(
            project,
            "bulk.query.create",
            Method::POST,
            self.data_path("jobs/query"),
        )
        .json(&body);
        let job: JobInfo = self.inner.execute(&call).await?.json("query job")?;
        tracing::info!(installation = %self.inner.config.installation, job_id = %job.id, "bulk query job created");
        self.resume_bulk_query(
            project,
            BulkCursor {
                job_id: job.id,
                locator: None,
                skip: 0,
            },
        )
        .await
    }

    /// Resumes a result stream at `cursor` (from a checkpoint). Waits for the job if it is
    /// still running; a job Salesforce has purged (7 days after completion) answers
    /// `NOT_FOUND`, and the caller starts a new one.
    pub async fn resume_bulk_query(
        &self,
        project: Project,
        cursor: BulkCursor,
    ) -> Result<BulkQueryStream, SalesforceError> {
        self.wait_for_job(project, "query", &cursor.job_id).await?;
        Ok(BulkQueryStream {
            client: self.clone(),
            project,
            job_id: cursor.job_id,
            locator: cursor.locator,
            consumed: cursor.skip,
            columns: None,
            page: None,
            pending: CsvTable::default(),
            body_failures: 0,
            done: false,
        })
    }

    /// Polls `jobs/{kind}/{id}` with growing intervals until the job is terminal.
    pub(crate) async fn wait_for_job(
        &self,
        project: Project,
        kind: &'static str,
        job_id: &str,
    ) -> Result<JobInfo, SalesforceError> {
        let cfg = &self.inner.config.bulk;
        let path = self.data_path(&format!("jobs/{kind}/{}", path_segment(job_id)));
        let metric = if kind == "query" {
            "bulk.query.info"
        } else {
            "bulk.ingest.info"
        };
        let clock = self.inner.governor.clock().clone();
        let started = clock.now();
        let mut interval = cfg.poll_initial;
        loop {
            let info: JobInfo = self
                .inner
                .execute(&Call::new(project, metric, Method::GET, path.clone()))
                .await?
                .json("job info")?;
            match info.state.as_str() {
                "JobComplete" => return Ok(info),
                "Failed" | "Aborted" => {
                    return Err(SalesforceError::BulkJob {
                        job_id: info.id,
                        state: info.state,
                        message: info.error_message.unwrap_or_default(),
                    });
                }
                _ => {}
            }
            let waited =
                Duration::try_from(clock.now().duration_since(started)).unwrap_or_default();
            if waited >= cfg.job_timeout {
                let abort = Call::new(project, metric, Method::PATCH, path.clone())
                    .json(&json!({"state": "Aborted"}));
                if let Err(e) = self.inner.execute(&abort).await {
                    tracing::warn!(job_id, error = %e, "could not abort a timed-out job");
                }
                return Err(SalesforceError::BulkTimeout {
                    job_id: job_id.to_string(),
                    state: info.state,
                    waited,
                });
            }
            self.inner.sleep(interval).await;
            interval = interval.mul_f64(cfg.poll_factor.max(1.0)).min(cfg.poll_max);
        }
    }
}

impl BulkQueryStream {
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The resume point before the next batch.
    pub fn cursor(&self) -> BulkCursor {
        BulkCursor {
            job_id: self.job_id.clone(),
            locator: self.locator.clone(),
            skip: self.consumed,
        }
    }

    async fn open_page(&mut self) -> Result<(), SalesforceError> {
        let c = &self.client;
        let mut call = Call::new(
            self.project,
            "bulk.query.results",
            Method::GET,
            c.data_path(&format!(
                "jobs/query/{}/results",
                path_segment(&self.job_id)
            )),
        )
        .accept("text/csv");
        if let Some(l) = &self.locator {
            call = call.query("locator", l.clone());
        }
        if let Some(n) = c.inner.config.bulk.page_records {
            call = call.query("maxRecords", n.to_string());
        }
        let reply = c.inner.execute_stream(&call).await?;
        let header = |name: &str| {
            reply
                .response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let next_locator = header("sforce-locator").filter(|l| !l.is_empty() && l != "null");
        let expected = header("sforce-numberofrecords").and_then(|n| n.trim().parse().ok());
        self.page = Some(OpenPage {
            response: reply.response,
            permit: Some(reply.permit),
            parser: CsvParser::new(b','),
            header: Some(CsvTable::default()),
            to_skip: self.consumed,
            skipped: CsvTable::default(),
            parsed: 0,
            leftover: Bytes::new(),
            expected,
            next_locator,
            ended: false,
        });
        Ok(())
    }

    /// Reads from the open page until a batch's rows are pending or the page ends.
    async fn fill(&mut self) -> Result<(), SalesforceError> {
        let Some(page) = self.page.as_mut() else {
            return Ok(());
        };
        let config = &self.client.inner.config.bulk;
        let csv_err = |e: super::csv::CsvError| SalesforceError::Decode {
            context: "bulk query CSV".into(),
            message: e.to_string(),
        };
        loop {
            let want = batch_rows(config, self.columns.as_deref());
            if self.pending.len() >= want || page.ended {
                break;
            }
            let chunk = if page.leftover.is_empty() {
                page.response
                    .chunk()
                    .await
                    .map_err(|e| SalesforceError::transport(&e))?
            } else {
                Some(std::mem::take(&mut page.leftover))
            };
            let Some(bytes) = chunk else {
                let table = match (&mut page.header, page.to_skip) {
                    (Some(header), _) => header,
                    (None, 0) => &mut self.pending,
                    (None, _) => &mut page.skipped,
                };
                page.parser.finish_rows(table).map_err(csv_err)?;
                page.ended = true;
                if let Some(header) = page.header.take() {
                    self.columns = Some(check_header(&self.columns, &header)?);
                }
                page.parsed += page.skipped.len() as u64;
                break;
            };
            let mut used = 0;
            if let Some(header) = &mut page.header {
                used += page.parser.push_rows(&bytes, header, 1).map_err(csv_err)?;
                if header.is_empty() {
                    continue;
                }
                self.columns = Some(check_header(&self.columns, header)?);
                page.header = None;
            }
            // Known now if it was not: the header came with this chunk.
            let want = batch_rows(config, self.columns.as_deref());
            while page.to_skip > 0 && used < bytes.len() {
                let limit = page.to_skip.min(want as u64) as usize;
                used += page
                    .parser
                    .push_rows(&bytes[used..], &mut page.skipped, limit)
                    .map_err(csv_err)?;
                if page.skipped.len() == limit {
                    page.to_skip -= limit as u64;
                    page.parsed += limit as u64;
                    page.skipped.clear();
                }
            }
            if page.to_skip == 0 {
                used += page
                    .parser
                    .push_rows(&bytes[used..], &mut self.pending, want)
                    .map_err(csv_err)?;
            }
            page.leftover = bytes.slice(used..);
        }
        if page.ended {
            let parsed = page.parsed + self.pending.len() as u64;
            if let Some(expected) = page.expected
                && expected != parsed
            {
                return Err(SalesforceError::Decode {
                    context: "bulk query results".into(),
                    message: format!("page announced {expected} records but held {parsed}"),
                });
            }
            if let Some(p) = page.permit.take() {
                p.success();
            }
        }
        Ok(())
    }

    /// The next batch of rows, or `None` when the result is exhausted. A download that
    /// breaks off is re-requested at the same locator and the rows already handed out are
    /// skipped, so no row is lost or repeated.
    pub async fn next_batch(&mut self) -> Result<Option<BulkBatch>, SalesforceError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.page.is_none() {
                self.pending.clear();
                self.open_page().await?;
            }
            if let Err(e) = self.fill().await {
                // The rows parsed but not yet handed out are re-read after the re-download.
                self.page = None;
                self.pending.clear();
                let max = self
                    .client
                    .inner
                    .governor
                    .backoff_policy()
                    .max_attempts
                    .max(1);
                let retryable = matches!(e.disposition(), Disposition::Retry { .. })
                    || matches!(e, SalesforceError::Decode { .. });
                self.body_failures += 1;
                let telemetry = self.client.inner.governor.telemetry().clone();
                telemetry.api_error(&e.metric_code());
                if !retryable || self.body_failures >= max {
                    telemetry.final_failure();
                    return Err(SalesforceError::RetriesExhausted {
                        attempts: self.body_failures,
                        last: Box::new(e),
                    });
                }
                let d =
                    self.client
                        .inner
                        .governor
                        .backoff(self.body_failures - 1, None, "bulk_body");
                tracing::warn!(job_id = %self.job_id, error = %e, "result download broke off; re-reading the page");
                self.client.inner.sleep(d).await;
                continue;
            }
            let (page_ended, next) = match &self.page {
                Some(p) => (p.ended, p.next_locator.clone()),
                None => (true, None),
            };
            // `fill` stops at a batch's rows: the pending rows are one batch.
            let room = self.pending.empty_like();
            let rows = std::mem::replace(&mut self.pending, room);
            self.consumed += rows.len() as u64;
            if let Some(page) = &mut self.page {
                page.parsed += rows.len() as u64;
            }
            let page_done = page_ended;
            if page_done {
                self.page = None;
                self.body_failures = 0;
                match next {
                    Some(l) => {
                        self.locator = Some(l);
                        self.consumed = 0;
                    }
                    None => self.done = true,
                }
            }
            if rows.is_empty() {
                continue;
            }
            let columns = self
                .columns
                .clone()
                .unwrap_or_else(|| Arc::from(Vec::new()));
            return Ok(Some(BulkBatch {
                columns,
                rows,
                cursor: self.cursor(),
                last: self.done,
            }));
        }
    }

    /// Deletes the job (after the caller has everything). Salesforce purges jobs after 7
    /// days anyway; deleting frees result storage early at the cost of one API call.
    pub async fn delete_job(self) -> Result<(), SalesforceError> {
        let c = &self.client;
        let path = c.data_path(&format!("jobs/query/{}", path_segment(&self.job_id)));
        c.inner
            .execute(&Call::new(
                self.project,
                "bulk.query.delete",
                Method::DELETE,
                path,
            ))
            .await
            .map(|_| ())
    }
}
