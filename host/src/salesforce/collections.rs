//! sObject Collections upsert by external id (`PATCH /composite/sobjects/{X}/{extField}`).
//!
//! Owns chunking (≤ 200 records per call, Salesforce's cap), `allOrNone=false` so one bad
//! record fails alone, and per-record results in input order. A 200 response can hold
//! failures: each record's result is inspected, and records that failed only with a row lock
//! (`UNABLE_TO_LOCK_ROW`) are re-sent after a backoff — upsert by external id is idempotent,
//! so a re-send can never duplicate. Every input record gets exactly one result. Chunks go
//! one at a time and their results are handed back per chunk
//! ([`SalesforceClient::upsert_collection_chunks`]), so callers can persist outcomes as they
//! come rather than after the last of 20,000 records.

use std::borrow::Borrow;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::Method;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

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

/// A Collections upsert request: `{"allOrNone": false, "records": [...]}`, each record
/// with `"attributes": {"type": object}` first (in place of any it carries).
struct UpsertBody<'a> {
    object: &'a str,
    records: Vec<&'a Map<String, Value>>,
}

impl Serialize for UpsertBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Attributes<'a>(&'a str);
        impl Serialize for Attributes<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("type", self.0)?;
                map.end()
            }
        }
        struct Record<'a>(&'a str, &'a Map<String, Value>);
        impl Serialize for Record<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(None)?;
                map.serialize_entry("attributes", &Attributes(self.0))?;
                for (field, value) in self.1 {
                    if field != "attributes" {
                        map.serialize_entry(field, value)?;
                    }
                }
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("allOrNone", &false)?;
        let records: Vec<Record<'_>> = self
            .records
            .iter()
            .map(|fields| Record(self.object, fields))
            .collect();
        map.serialize_entry("records", &records)?;
        map.end()
    }
}

/// The outcome of one chunk of at most [`MAX_COLLECTION_RECORDS`] records.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkOutcome {
    /// Index in the caller's input of this chunk's first record.
    pub offset: usize,
    /// One result per record of the chunk, in input order: `results[i]` belongs to input
    /// record `offset + i`.
    pub results: Vec<RecordResult>,
}

impl SalesforceClient {
    /// Upserts `records` into `object` matching on `ext_field`. Returns one result per input
    /// record, in order. Records must carry the external id field and no `Id`.
    ///
    /// Every result is held until the last chunk is done; to persist outcomes as they come
    /// (and lose at most one chunk's worth on a crash), use [`Self::upsert_collection_chunks`].
    pub async fn upsert_collection<R: Borrow<Map<String, Value>> + Sync>(
        &self,
        project: Project,
        object: &str,
        ext_field: &str,
        records: &[R],
    ) -> Result<Vec<RecordResult>, SalesforceError> {
        let chunks = self.upsert_collection_chunks(project, object, ext_field, records);
        futures_util::pin_mut!(chunks);
        let mut results = Vec::with_capacity(records.len());
        while let Some(chunk) = chunks.next().await {
            results.extend(chunk.results);
        }
        Ok(results)
    }

    /// Upserts `records` like [`Self::upsert_collection`], one chunk of ≤ 200 at a time, and
    /// yields each chunk's results as soon as that chunk is settled (row-lock re-sends
    /// included). The next chunk is sent only when the stream is polled again, so a caller
    /// that commits each chunk's outcomes before asking for the next never has more than one
    /// chunk unrecorded, and dropping the stream sends nothing further.
    ///
    /// Never fails as a whole: a request that fails for good (retries exhausted, a final
    /// error) gives every record of its chunk a failed result carrying that error, so each
    /// can go to the DLQ with the reason, and the stream goes on with the next chunk.
    pub fn upsert_collection_chunks<'a, R: Borrow<Map<String, Value>> + Sync>(
        &'a self,
        project: Project,
        object: &'a str,
        ext_field: &'a str,
        records: &'a [R],
    ) -> impl Stream<Item = ChunkOutcome> + Send + 'a {
        let path = self.data_path(&format!(
            "composite/sobjects/{}/{}",
            path_segment(object),
            path_segment(ext_field)
        ));
        futures_util::stream::iter(records.chunks(MAX_COLLECTION_RECORDS).enumerate()).then(
            move |(chunk_no, chunk)| {
                let path = path.clone();
                async move {
                    ChunkOutcome {
                        offset: chunk_no * MAX_COLLECTION_RECORDS,
                        results: self.upsert_chunk(project, object, &path, chunk).await,
                    }
                }
            },
        )
    }

    /// Sends one chunk until every record has a final result: records that failed only on a
    /// row lock are re-sent (alone) after a backoff, up to the policy's attempts.
    async fn upsert_chunk<R: Borrow<Map<String, Value>> + Sync>(
        &self,
        project: Project,
        object: &str,
        path: &str,
        chunk: &[R],
    ) -> Vec<RecordResult> {
        let mut results: Vec<Option<RecordResult>> = vec![None; chunk.len()];
        let telemetry = self.inner.governor.telemetry().clone();
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        let max_attempts = self.inner.governor.backoff_policy().max_attempts.max(1);
        let mut round = 0u32;
        while !pending.is_empty() {
            round += 1;
            let body = UpsertBody {
                object,
                records: pending
                    .iter()
                    .filter_map(|&i| chunk.get(i))
                    .map(Borrow::borrow)
                    .collect(),
            };
            // Written straight from the caller's records: nothing is copied to add the
            // `attributes` each record needs. Maps with string keys always serialise.
            let body = serde_json::to_vec(&body).unwrap_or_default();
            let call = Call::new(
                project,
                "collections.upsert",
                Method::PATCH,
                path.to_string(),
            )
            .body(Bytes::from(body), "application/json");
            let got: Result<Vec<RecordResult>, SalesforceError> =
                match self.inner.execute(&call).await {
                    Ok(reply) => {
                        reply
                            .json("collections upsert results")
                            .and_then(|v: Vec<RecordResult>| {
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
                            })
                    }
                    Err(e) => Err(e),
                };
            let got = match got {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(installation = %self.inner.config.installation, object, records = pending.len(), error = %e, "collections upsert request failed; its records get the error");
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
        results
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
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_body_names_the_object_on_every_record() {
        let plain = json!({"Name": "Acme \"One\"", "Ext__c": "K-1", "Employees": 3, "Gone": null});
        let carried = json!({"Name": "Two", "attributes": {"type": "Contact", "url": "/x"}});
        let records: Vec<&Map<String, Value>> = [&plain, &carried]
            .into_iter()
            .filter_map(Value::as_object)
            .collect();
        let body = UpsertBody {
            object: "Account",
            records,
        };
        let text = serde_json::to_string(&body).expect("serialises");
        let read: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            read,
            json!({
                "allOrNone": false,
                "records": [
                    {"attributes": {"type": "Account"}, "Name": "Acme \"One\"", "Ext__c": "K-1", "Employees": 3, "Gone": null},
                    {"attributes": {"type": "Account"}, "Name": "Two"},
                ],
            })
        );
        assert_eq!(text.matches("attributes").count(), 2, "{text}");
    }
}
