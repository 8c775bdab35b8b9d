//! Bulk API 2.0 ingest: create → upload CSV → close → poll → results.
//!
//! Owns one ingest job's lifecycle and the three result sets Salesforce keeps for it:
//! successful (`sf__Id`, `sf__Created` + the input columns), failed (`sf__Id`, `sf__Error` +
//! input) and unprocessed (input only). Every input row ends up in exactly one of them, and
//! all three are returned so the caller can audit successes and send failures to the DLQ.
//! It never splits or re-submits data on its own: resubmitting a failed row is the caller's
//! decision (row locks included), because a second job is another 10,000-row batch of quota.

use bytes::Bytes;
use reqwest::Method;
use serde_json::json;

use super::csv::{CsvParser, Row};
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
    /// Runs one ingest job to the end and returns every record's result.
    pub async fn bulk_ingest(
        &self,
        project: Project,
        job: IngestJob,
    ) -> Result<IngestOutcome, SalesforceError> {
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
        let job_path = self.data_path(&format!("jobs/ingest/{}", path_segment(&id)));
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
        let (state, error_message, processed, failed) =
            match self.wait_for_job(project, "ingest", &id).await {
                Ok(i) => (
                    i.state,
                    i.error_message,
                    i.records_processed,
                    i.records_failed,
                ),
                // A Failed job still has results worth reading; everything else is final.
                Err(SalesforceError::BulkJob { state, message, .. }) if state == "Failed" => {
                    (state, Some(message), None, None)
                }
                Err(e) => return Err(e),
            };
        let successful = self
            .ingest_results(project, &job_path, "successfulResults")
            .await?;
        let failed_set = self
            .ingest_results(project, &job_path, "failedResults")
            .await?;
        let unprocessed = self
            .ingest_results(project, &job_path, "unprocessedrecords")
            .await?;
        Ok(IngestOutcome {
            job_id: id,
            state,
            error_message,
            records_processed: processed
                .unwrap_or((successful.rows.len() + failed_set.rows.len()) as u64),
            records_failed: failed.unwrap_or(failed_set.rows.len() as u64),
            successful,
            failed: failed_set,
            unprocessed,
        })
    }

    async fn ingest_results(
        &self,
        project: Project,
        job_path: &str,
        which: &str,
    ) -> Result<ResultSet, SalesforceError> {
        let call = Call::new(
            project,
            "bulk.ingest.results",
            Method::GET,
            format!("{job_path}/{which}"),
        )
        .accept("text/csv");
        let reply = self.inner.execute(&call).await?;
        let mut p = CsvParser::new(b',');
        let mut rows = Vec::new();
        let err = |e: super::csv::CsvError| SalesforceError::Decode {
            context: format!("ingest {which}"),
            message: e.to_string(),
        };
        p.push(&reply.body, &mut rows).map_err(err)?;
        p.finish(&mut rows).map_err(err)?;
        let mut it = rows.into_iter();
        let columns = it
            .next()
            .map(|h| h.into_iter().map(Option::unwrap_or_default).collect())
            .unwrap_or_default();
        Ok(ResultSet {
            columns,
            rows: it.collect(),
        })
    }
}
