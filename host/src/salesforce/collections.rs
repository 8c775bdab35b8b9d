//! sObject Collections upsert by external id (`PATCH /composite/sobjects/{X}/{extField}`).
//!
//! Owns chunking (≤ 200 records per call, Salesforce's cap), `allOrNone=false` so one bad
//! record fails alone, and per-record results in input order. A 200 response can hold
//! failures: each record's result is inspected, and records that failed only with a row lock
//! (`UNABLE_TO_LOCK_ROW`) are re-sent after a backoff — upsert by external id is idempotent,
//! so a re-send can never duplicate. Every input record gets exactly one result.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::RecordError;
use super::rest::path_segment;
use super::transport::Call;
use super::{SalesforceClient, SalesforceError};
use crate::throttle::Project;

/// Salesforce's limit on records per Collections call.
pub const MAX_COLLECTION_RECORDS: usize = 200;

/// The outcome of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordResult {
    #[serde(default)]
    pub id: Option<String>,
    pub success: bool,
    /// Upsert only: `true` when inserted, `false` when an existing record was updated.
    #[serde(default)]
    pub created: Option<bool>,
    #[serde(default)]
    pub errors: Vec<RecordError>,
}

impl RecordResult {
    fn retryable(&self) -> bool {
        !self.success
            && !self.errors.is_empty()
            && self.errors.iter().all(RecordError::is_retryable)
    }

    /// A whole request failed for good: every record in it gets that error, so each can go
    /// to the DLQ with the reason.
    fn request_failed(e: &SalesforceError) -> Self {
        RecordResult {
            id: None,
            success: false,
            created: None,
            errors: vec![RecordError {
                status_code: e.metric_code(),
                message: e.to_string(),
                fields: Vec::new(),
            }],
        }
    }
}

impl SalesforceClient {
    /// Upserts `records` into `object` matching on `ext_field`. Returns one result per input
    /// record, in order. Records must carry the external id field and no `Id`.
    pub async fn upsert_collection(
        &self,
        project: Project,
        object: &str,
        ext_field: &str,
        records: &[Map<String, Value>],
    ) -> Result<Vec<RecordResult>, SalesforceError> {
        let path = self.data_path(&format!(
            "composite/sobjects/{}/{}",
            path_segment(object),
            path_segment(ext_field)
        ));
        let mut results: Vec<Option<RecordResult>> = vec![None; records.len()];
        let telemetry = self.inner.governor.telemetry().clone();
        for (chunk_no, chunk) in records.chunks(MAX_COLLECTION_RECORDS).enumerate() {
            let base = chunk_no * MAX_COLLECTION_RECORDS;
            let mut pending: Vec<usize> = (base..base + chunk.len()).collect();
            let max_attempts = self.inner.governor.backoff_policy().max_attempts.max(1);
            let mut round = 0u32;
            while !pending.is_empty() {
                round += 1;
                let body = json!({
                    "allOrNone": false,
                    "records": pending.iter().filter_map(|&i| records.get(i)).map(|r| {
                        let mut r = r.clone();
                        r.insert("attributes".into(), json!({"type": object}));
                        Value::Object(r)
                    }).collect::<Vec<_>>(),
                });
                let call = Call::new(project, "collections.upsert", Method::PATCH, path.clone())
                    .json(&body);
                let got: Result<Vec<RecordResult>, SalesforceError> =
                    match self.inner.execute(&call).await {
                        Ok(reply) => reply.json("collections upsert results").and_then(
                            |v: Vec<RecordResult>| {
                                if v.len() == pending.len() {
                                    Ok(v)
                                } else {
                                    Err(SalesforceError::Decode {
                                        context: "collections upsert".into(),
                                        message: format!(
                                            "{} results for {} records",
                                            v.len(),
                                            pending.len()
                                        ),
                                    })
                                }
                            },
                        ),
                        Err(e) => Err(e),
                    };
                let got = match got {
                    Ok(v) => v,
                    Err(e) => {
                        for &i in &pending {
                            if let Some(slot) = results.get_mut(i) {
                                *slot = Some(RecordResult::request_failed(&e));
                            }
                        }
                        break;
                    }
                };
                let mut retry = Vec::new();
                for (&i, r) in pending.iter().zip(got) {
                    if r.retryable() && round < max_attempts {
                        retry.push(i);
                    }
                    if let Some(slot) = results.get_mut(i) {
                        *slot = Some(r);
                    }
                }
                if !retry.is_empty() {
                    telemetry.record_retries(retry.len() as u64);
                    let delay = self
                        .inner
                        .governor
                        .backoff(round - 1, None, "UNABLE_TO_LOCK_ROW");
                    self.inner.sleep(delay).await;
                }
                pending = retry;
            }
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| RecordResult {
                    id: None,
                    success: false,
                    created: None,
                    errors: vec![RecordError {
                        status_code: "NO_RESULT".into(),
                        message: "no result returned".into(),
                        fields: vec![],
                    }],
                })
            })
            .collect())
    }
}
