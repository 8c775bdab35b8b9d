//! Bulk API 2.0 ingest: create → upload CSV → close → poll → results.
//!
//! Owns one ingest job's lifecycle and the three result sets Salesforce keeps for it:
//! successful (`sf__Id`, `sf__Created` + the input columns), failed (`sf__Id`, `sf__Error` +
//! input) and unprocessed (input only). Every input row ends up in exactly one of them, and
//! all three are returned so the caller can audit successes and send failures to the DLQ.
//! It never splits or re-submits data on its own: resubmitting a failed row is the caller's
//! decision (row locks included), because a second job is another 10,000-row batch of quota.
//!
//! Result CSVs are parsed as they come off the wire, never held whole. [`SalesforceClient::bulk_ingest`]
//! keeps the parsed rows of all three sets in its [`IngestOutcome`]: that is bounded by the
//! job itself — every input row comes back once, with at most two `sf__` columns added, and
//! one job's upload is capped at 150 MB by Salesforce (100 MB raw CSV by us) — so the
//! outcome is about the size of the CSV the caller already held to submit it. A caller that
//! wants less in memory runs [`SalesforceClient::bulk_ingest_job`] and reads each set with
//! [`SalesforceClient::bulk_ingest_results`], which hands over rows a network chunk at a time.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use serde_json::json;

use super::csv::{CsvParser, Row};
use super::error::Disposition;
use super::rest::path_segment;
use super::transport::Call;
use super::{SalesforceClient, SalesforceError};
use crate::throttle::Project;

/// What an ingest job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOperation {
    Insert,
    Update,
    Upsert { external_id_field: String },
    Delete,
    HardDelete,
}

/// One ingest job: `csv` holds a header row of field API names and the records
/// (≤ 100 MB raw, Salesforce's cap after encoding is 150 MB).
#[derive(Debug, Clone)]
pub struct IngestJob {
    pub object: String,
    pub operation: IngestOperation,
    pub csv: Bytes,
}

/// A finished ingest job and its per-record results.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    pub job_id: String,
    /// `JobComplete` or `Failed` (a failed job still reports what it processed).
    pub state: String,
    pub error_message: Option<String>,
    pub records_processed: u64,
    pub records_failed: u64,
    pub successful: ResultSet,
    pub failed: ResultSet,
    pub unprocessed: ResultSet,
}

/// A finished ingest job, before its results are read.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestSummary {
    pub job_id: String,
    /// `JobComplete` or `Failed` (a failed job still has results to read).
    pub state: String,
    pub error_message: Option<String>,
    /// As Salesforce reported them; `None` when it did not (a `Failed` job).
    pub records_processed: Option<u64>,
    pub records_failed: Option<u64>,
}

/// One of the three result sets of an ingest job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestResultKind {
    /// `sf__Id`, `sf__Created`, then the input columns.
    Successful,
    /// `sf__Id`, `sf__Error`, then the input columns.
    Failed,
    /// The input columns of rows the job never reached.
    Unprocessed,
}

impl IngestResultKind {
    fn resource(self) -> &'static str {
        match self {
            IngestResultKind::Successful => "successfulResults",
            IngestResultKind::Failed => "failedResults",
            IngestResultKind::Unprocessed => "unprocessedrecords",
        }
    }
}

/// A parsed result CSV.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

impl ResultSet {
    /// Value of `column` in `row`.
    pub fn get<'a>(&'a self, row: &'a Row, column: &str) -> Option<&'a str> {
        let i = self.columns.iter().position(|c| c == column)?;
        row.get(i)?.as_deref()
    }
}

impl SalesforceClient {
    /// Runs one ingest job to the end and returns every record's result (see the module docs
    /// for what that holds in memory).
    pub async fn bulk_ingest(
        &self,
        project: Project,
        job: IngestJob,
    ) -> Result<IngestOutcome, SalesforceError> {
        let summary = self.bulk_ingest_job(project, job).await?;
        let mut sets = Vec::with_capacity(3);
        for kind in [
            IngestResultKind::Successful,
            IngestResultKind::Failed,
            IngestResultKind::Unprocessed,
        ] {
            let mut set = ResultSet::default();
            let mut have_columns = false;
            self.bulk_ingest_results(project, &summary.job_id, kind, |columns, rows| {
                if !have_columns {
                    set.columns = columns.to_vec();
                    have_columns = true;
                }
                set.rows.extend(rows);
            })
            .await?;
            sets.push(set);
        }
        let mut sets = sets.into_iter();
        let (successful, failed_set, unprocessed) = (
            sets.next().unwrap_or_default(),
            sets.next().unwrap_or_default(),
            sets.next().unwrap_or_default(),
        );
        Ok(IngestOutcome {
            records_processed: summary
                .records_processed
                .unwrap_or((successful.rows.len() + failed_set.rows.len()) as u64),
            records_failed: summary
                .records_failed
                .unwrap_or(failed_set.rows.len() as u64),
            job_id: summary.job_id,
            state: summary.state,
            error_message: summary.error_message,
            successful,
            failed: failed_set,
            unprocessed,
        })
    }

    /// Creates an ingest job, uploads its CSV, closes it and waits until it is done, without
    /// reading its results (read them with [`Self::bulk_ingest_results`]).
    pub async fn bulk_ingest_job(
        &self,
        project: Project,
        job: IngestJob,
    ) -> Result<IngestSummary, SalesforceError> {
        let (operation, ext) = match &job.operation {
            IngestOperation::Insert => ("insert", None),
            IngestOperation::Update => ("update", None),
            IngestOperation::Upsert { external_id_field } => {
                ("upsert", Some(external_id_field.clone()))
            }
            IngestOperation::Delete => ("delete", None),
            IngestOperation::HardDelete => ("hardDelete", None),
        };
        let mut body = json!({
            "object": job.object,
            "operation": operation,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        });
        if let Some(e) = ext {
            body["externalIdFieldName"] = json!(e);
        }
        let create = Call::new(
            project,
            "bulk.ingest.create",
            Method::POST,
            self.data_path("jobs/ingest"),
        )
        .json(&body);
        let info: super::bulk_query::JobInfo =
            self.inner.execute(&create).await?.json("ingest job")?;
        let id = info.id;
        let job_path = self.ingest_job_path(&id);
        tracing::info!(installation = %self.inner.config.installation, job_id = %id, "bulk ingest job created");
        let upload = Call::new(
            project,
            "bulk.ingest.upload",
            Method::PUT,
            format!("{job_path}/batches"),
        )
        .body(job.csv, "text/csv");
        self.inner.execute(&upload).await?;
        let close = Call::new(
            project,
            "bulk.ingest.state",
            Method::PATCH,
            job_path.clone(),
        )
        .json(&json!({"state": "UploadComplete"}));
        self.inner.execute(&close).await?;
        match self.wait_for_job(project, "ingest", &id).await {
            Ok(i) => Ok(IngestSummary {
                job_id: id,
                state: i.state,
                error_message: i.error_message,
                records_processed: i.records_processed,
                records_failed: i.records_failed,
            }),
            // A Failed job still has results worth reading; everything else is final.
            Err(SalesforceError::BulkJob { state, message, .. }) if state == "Failed" => {
                Ok(IngestSummary {
                    job_id: id,
                    state,
                    error_message: Some(message),
                    records_processed: None,
                    records_failed: None,
                })
            }
            Err(e) => Err(e),
        }
    }

    fn ingest_job_path(&self, job_id: &str) -> String {
        self.data_path(&format!("jobs/ingest/{}", path_segment(job_id)))
    }

    /// Reads one result set of a finished ingest job, handing `on_rows` the column names and
    /// the rows parsed from each network chunk as it arrives; returns how many rows were
    /// handed over. Memory holds one chunk and its rows, whatever the size of the set.
    ///
    /// A download that breaks off is requested again and the rows already handed over are
    /// skipped, so `on_rows` sees every row exactly once, in order. Salesforce does not page
    /// these sets, so a retry re-reads from the start; a failure after retries leaves
    /// `on_rows` with a prefix of the set and returns the error.
    pub async fn bulk_ingest_results(
        &self,
        project: Project,
        job_id: &str,
        kind: IngestResultKind,
        mut on_rows: impl FnMut(&[String], Vec<Row>),
    ) -> Result<u64, SalesforceError> {
        let which = kind.resource();
        let call = Call::new(
            project,
            "bulk.ingest.results",
            Method::GET,
            format!("{}/{which}", self.ingest_job_path(job_id)),
        )
        .accept("text/csv");
        let max = self.inner.governor.backoff_policy().max_attempts.max(1);
        let telemetry = self.inner.governor.telemetry().clone();
        let mut columns: Option<Arc<[String]>> = None;
        let mut delivered = 0u64;
        let mut failures = 0u32;
        loop {
            let reply = self.inner.execute_stream(&call).await?;
            let mut response = reply.response;
            let mut parser = CsvParser::new(b',');
            let mut header_seen = false;
            let mut skip = delivered;
            let mut rows = Vec::new();
            let outcome: Result<(), SalesforceError> = loop {
                let chunk = match response.chunk().await {
                    Ok(c) => c,
                    Err(e) => break Err(SalesforceError::transport(&e)),
                };
                rows.clear();
                let parsed = match &chunk {
                    Some(bytes) => parser.push(bytes, &mut rows),
                    None => parser.finish(&mut rows),
                };
                if let Err(e) = parsed {
                    break Err(SalesforceError::Decode {
                        context: format!("ingest {which}"),
                        message: e.to_string(),
                    });
                }
                let mut fresh = Vec::with_capacity(rows.len());
                let mut header_changed = false;
                for row in rows.drain(..) {
                    if !header_seen {
                        header_seen = true;
                        let cols: Arc<[String]> =
                            row.into_iter().map(Option::unwrap_or_default).collect();
                        header_changed = columns.as_ref().is_some_and(|c| **c != *cols);
                        columns = Some(cols);
                        continue;
                    }
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    fresh.push(row);
                }
                if header_changed {
                    // Skipping by count is only sound over the same rows: final.
                    telemetry.final_failure();
                    return Err(SalesforceError::Decode {
                        context: format!("ingest {which}"),
                        message: "the header changed between downloads".into(),
                    });
                }
                if !fresh.is_empty() {
                    delivered += fresh.len() as u64;
                    let cols = columns.as_deref().unwrap_or(&[]);
                    on_rows(cols, fresh);
                }
                if chunk.is_none() {
                    break Ok(());
                }
            };
            let e = match outcome {
                Ok(()) => {
                    reply.permit.success();
                    return Ok(delivered);
                }
                Err(e) => e,
            };
            drop(reply.permit);
            failures += 1;
            telemetry.api_error(&e.metric_code());
            let retryable = matches!(e.disposition(), Disposition::Retry { .. })
                || matches!(e, SalesforceError::Decode { .. });
            if !retryable || failures >= max {
                telemetry.final_failure();
                return Err(SalesforceError::RetriesExhausted {
                    attempts: failures,
                    last: Box::new(e),
                });
            }
            let d = self.inner.governor.backoff(failures - 1, None, "bulk_body");
            tracing::warn!(installation = %self.inner.config.installation, job_id, which, error = %e, "ingest result download broke off; reading it again");
            self.inner.sleep(d).await;
        }
    }
}
