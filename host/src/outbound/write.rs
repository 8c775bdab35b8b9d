//! The write to Salesforce: upsert by external id through sObject Collections (200 records
//! a call), or a Bulk API 2.0 ingest job when a round holds many records of one object;
//! deletes through a Bulk delete job.
//!
//! Every record gets exactly one result, read from Salesforce's per-record answer (a `200`
//! can hold failures): created/updated, or a [`Problem`] with Salesforce's `errorCode`,
//! message and fields, marked transient when it is worth another round. It never decides
//! what to write; that was settled before.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value as Json};

use crate::salesforce::bulk_ingest::ResultSet;
use crate::salesforce::{
    IngestJob, IngestOperation, RecordResult, SalesforceClient, SalesforceError,
};
use crate::store::Stage;
use crate::throttle::Project;

use super::outcome::{Problem, is_transient_code};

/// `Ok(created)` (`Some(true)` for an insert), or why the record was not written.
pub type WriteResult = Result<Option<bool>, Problem>;

/// Upserts `records` (each carrying `key_field`) into `object`; one result per record.
pub async fn upsert(
    client: &SalesforceClient,
    object: &str,
    key_field: &str,
    records: &[&Map<String, Json>],
    bulk_threshold: usize,
) -> Vec<WriteResult> {
    if records.is_empty() {
        return Vec::new();
    }
    if records.len() >= bulk_threshold {
        return bulk_upsert(client, object, key_field, records).await;
    }
    match client
        .upsert_collection(Project::Outbound, object, key_field, records)
        .await
    {
        Ok(results) => {
            let mut out: Vec<WriteResult> = results.iter().map(record_result).collect();
            // The transport promises one result per record; never let a short answer
            // leave a record without an outcome.
            out.resize_with(records.len(), || Err(no_result()));
            out
        }
        Err(error) => {
            let problem = Problem::from_salesforce(Stage::Write, &error);
            records.iter().map(|_| Err(problem.clone())).collect()
        }
    }
}

fn record_result(result: &RecordResult) -> WriteResult {
    if result.success {
        return Ok(result.created);
    }
    let Some(error) = result.errors.first() else {
        return Err(no_result());
    };
    if error.status_code == SalesforceError::Stopped.metric_code() {
        // The transport did not send this record's chunk: the installation is stopping.
        return Err(Problem::from_salesforce(
            Stage::Write,
            &SalesforceError::Stopped,
        ));
    }
    Err(Problem {
        stage: Stage::Write,
        code: error.status_code.clone(),
        message: result
            .errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        fields: error.fields.clone(),
        retryable: is_transient_code(&error.status_code),
    })
}

/// Salesforce gave no result for a record: it may or may not be written, so it is sent
/// again (by external id, which cannot duplicate it).
fn no_result() -> Problem {
    Problem {
        stage: Stage::Write,
        code: "NO_RESULT".into(),
        message: "Salesforce returned no result for this record".into(),
        fields: Vec::new(),
        retryable: true,
    }
}

async fn bulk_upsert(
    client: &SalesforceClient,
    object: &str,
    key_field: &str,
    records: &[&Map<String, Json>],
) -> Vec<WriteResult> {
    let mut columns: Vec<&str> = vec![key_field];
    for record in records {
        for field in record.keys() {
            if !columns.contains(&field.as_str()) {
                columns.push(field);
            }
        }
    }
    let csv = to_csv(&columns, records);
    let job = IngestJob {
        object: object.to_owned(),
        operation: IngestOperation::Upsert {
            external_id_field: key_field.to_owned(),
        },
        csv: Bytes::from(csv),
    };
    let keys: Vec<Option<String>> = records
        .iter()
        .map(|r| r.get(key_field).and_then(super::current::key_text))
        .collect();
    bulk_results(client, job, key_field, &keys).await
}

/// Deletes the records with these Salesforce `ids` (to the recycle bin).
pub async fn delete(client: &SalesforceClient, object: &str, ids: &[String]) -> Vec<WriteResult> {
    if ids.is_empty() {
        return Vec::new();
    }
    let mut csv = String::from("Id\n");
    for id in ids {
        csv.push_str(&csv_cell(&Json::String(id.clone())));
        csv.push('\n');
    }
    let job = IngestJob {
        object: object.to_owned(),
        operation: IngestOperation::Delete,
        csv: Bytes::from(csv),
    };
    let keys: Vec<Option<String>> = ids.iter().map(|id| Some(id.clone())).collect();
    bulk_results(client, job, "Id", &keys).await
}

/// Runs a Bulk job and matches its three result sets back to the input records by
/// `key_column` (the external id, or `Id` for deletes).
async fn bulk_results(
    client: &SalesforceClient,
    job: IngestJob,
    key_column: &str,
    keys: &[Option<String>],
) -> Vec<WriteResult> {
    let outcome = match client.bulk_ingest(Project::Outbound, job).await {
        Ok(outcome) => outcome,
        Err(error) => {
            let problem = Problem::from_salesforce(Stage::Write, &error);
            return keys.iter().map(|_| Err(problem.clone())).collect();
        }
    };
    let mut by_key: HashMap<String, WriteResult> = HashMap::new();
    let key_of = |set: &ResultSet, row| {
        set.get(row, key_column)
            .or_else(|| set.get(row, "sf__Id"))
            .map(str::to_owned)
    };
    for row in &outcome.successful.rows {
        if let Some(key) = key_of(&outcome.successful, row) {
            let created = outcome
                .successful
                .get(row, "sf__Created")
                .map(|c| c.eq_ignore_ascii_case("true"));
            by_key.insert(key, Ok(created));
        }
    }
    for row in &outcome.failed.rows {
        if let Some(key) = key_of(&outcome.failed, row) {
            let text = outcome.failed.get(row, "sf__Error").unwrap_or_default();
            by_key.insert(key, Err(bulk_error(text)));
        }
    }
    for row in &outcome.unprocessed.rows {
        if let Some(key) = outcome.unprocessed.get(row, key_column) {
            by_key.insert(
                key.to_owned(),
                Err(Problem {
                    stage: Stage::Write,
                    code: "BULK_UNPROCESSED".into(),
                    message: format!(
                        "Bulk job {} ended {} before processing this record{}",
                        outcome.job_id,
                        outcome.state,
                        outcome
                            .error_message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ),
                    fields: Vec::new(),
                    retryable: true,
                }),
            );
        }
    }
    keys.iter()
        .map(|key| {
            key.as_ref()
                .and_then(|k| by_key.get(k).cloned())
                .unwrap_or_else(|| Err(no_result()))
        })
        .collect()
}

/// Reads Bulk's `sf__Error` (`CODE:message:field1,field2 --`).
fn bulk_error(text: &str) -> Problem {
    let text = text.trim().trim_end_matches("--").trim();
    let (code, rest) = text.split_once(':').unwrap_or((text, ""));
    let (message, fields) = match rest.rsplit_once(':') {
        Some((message, fields)) => (
            message,
            fields
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        None => (rest, Vec::new()),
    };
    Problem {
        stage: Stage::Write,
        code: code.to_owned(),
        message: message.to_owned(),
        fields,
        retryable: is_transient_code(code),
    }
}

/// Bulk CSV: a field a record does not carry is an empty cell (left unchanged); a null is
/// `#N/A`, Bulk's way to clear a field.
fn to_csv(columns: &[&str], records: &[&Map<String, Json>]) -> String {
    let mut out = String::new();
    let header: Vec<String> = columns
        .iter()
        .map(|c| csv_cell(&Json::String((*c).to_owned())))
        .collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for record in records {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match record.get(*c) {
                None => String::new(),
                Some(Json::Null) => "#N/A".to_owned(),
                Some(value) => csv_cell(value),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

fn csv_cell(value: &Json) -> String {
    let text = match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Regression: a Collections chunk the transport did not send because the installation
    /// was stopping came back as a record error with a code no rule knew, and its events
    /// were dead-lettered; they stay queued for the next run.
    #[test]
    fn a_chunk_not_sent_at_a_stop_leaves_its_events_queued() {
        let unsent = RecordResult {
            id: None,
            success: false,
            created: None,
            errors: vec![crate::salesforce::RecordError {
                status_code: SalesforceError::Stopped.metric_code(),
                message: SalesforceError::Stopped.to_string(),
                fields: Vec::new(),
            }],
        };
        let Err(problem) = record_result(&unsent) else {
            panic!("an unsent record is not written");
        };
        let mut tally = super::super::outcome::Tally::new(1);
        tally.start(0);
        tally.fail(0, problem);
        assert!(matches!(
            tally.into_outcomes().as_slice(),
            [super::super::outcome::EventOutcome::Interrupted]
        ));
    }

    #[test]
    fn reads_bulk_errors() {
        let p = bulk_error("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --");
        assert_eq!(p.code, "REQUIRED_FIELD_MISSING");
        assert_eq!(p.message, "Required fields are missing: [Name]");
        assert_eq!(p.fields, ["Name"]);
        assert!(!p.retryable);
        assert!(bulk_error("UNABLE_TO_LOCK_ROW:locked: --").retryable);
    }

    #[test]
    fn csv_keeps_absent_and_null_apart() {
        let records = [
            json!({"K": "a\"1", "N": null})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            json!({"K": "b", "M": 3})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ];
        assert_eq!(
            to_csv(&["K", "N", "M"], &records.iter().collect::<Vec<_>>()),
            "\"K\",\"N\",\"M\"\n\"a\"\"1\",#N/A,\n\"b\",,\"3\"\n"
        );
    }
}
