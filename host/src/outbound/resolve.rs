//! The conflict decision: for each field of each record, does the product's value overwrite
//! Salesforce's? The installation's plugin decides (its resolver export; the SDK's default
//! skips a field when Salesforce changed the record after the event occurred).
//!
//! The host only supplies the facts — incoming values and when the event occurred,
//! current values and when Salesforce last changed the record *by someone other than
//! Weft* — and applies the answer. The external id is always written: it is the upsert's
//! key, not data.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Map, Value as Json};

use crate::plugin::{BatchBuilder, Decision, InstalledPlugins};
use crate::store::{SkippedField, Stage};

use super::outcome::Problem;
use super::transform::call_plugin;

/// One record to decide.
#[derive(Debug, Clone)]
pub struct Contest<'a> {
    pub incoming: &'a Map<String, Json>,
    pub incoming_at: Timestamp,
    /// Salesforce's values now; `None` for a record it does not have.
    pub current: Option<&'a Map<String, Json>>,
    /// When someone other than Weft last changed the record, if after Weft's last write.
    pub changed_at: Option<Timestamp>,
}

/// What to write of one record, and what was held back.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub write: Map<String, Json>,
    pub skipped: Vec<SkippedField>,
}

/// Asks the plugin about every field of `contests`; one result per contest, in order.
pub async fn resolve(
    installation: &str,
    plugins: &Arc<InstalledPlugins>,
    key_field: &str,
    contests: &[Contest<'_>],
) -> Vec<Result<Decided, Problem>> {
    if contests.is_empty() {
        return Vec::new();
    }
    // Owned copies, so the batches are built on the blocking pool with the call: building
    // is CPU work that grows with the round, and async workers must stay free for I/O.
    let owned: Vec<(Map<String, Json>, Option<Map<String, Json>>)> = contests
        .iter()
        .map(|c| (c.incoming.clone(), c.current.cloned()))
        .collect();
    let incoming_at: Vec<i64> = contests
        .iter()
        .map(|c| c.incoming_at.as_millisecond())
        .collect();
    let current_at: Vec<Option<i64>> = contests
        .iter()
        .map(|c| c.changed_at.map(Timestamp::as_millisecond))
        .collect();
    let resolution = call_plugin(installation, plugins, move |p, id| {
        let mut incoming = BatchBuilder::new("incoming");
        let mut current = BatchBuilder::new("current");
        for (incoming_record, current_record) in &owned {
            incoming.push_json(incoming_record);
            match current_record {
                Some(record) => current.push_json(record),
                None => {
                    current.push_record();
                }
            }
        }
        let incoming = incoming.finish();
        let current = current.finish();
        let resolution = p.resolve(id, &incoming, &incoming_at, &current, &current_at)?;
        Ok((incoming.fields, resolution))
    })
    .await;
    let (fields, resolution) = match resolution {
        Ok(answer) => answer,
        Err(error) => {
            let problem = Problem::permanent(Stage::Conflict, error.dlq_code(), error.to_string());
            return contests.iter().map(|_| Err(problem.clone())).collect();
        }
    };
    let mut out = Vec::with_capacity(contests.len());
    for (row, contest) in contests.iter().enumerate() {
        if let Some(error) = resolution.errors.iter().find(|e| e.record as usize == row) {
            out.push(Err(Problem::permanent(
                Stage::Conflict,
                "RESOLVER_REJECTED",
                error.reason.clone(),
            )));
            continue;
        }
        let mut decided = Decided {
            write: Map::new(),
            skipped: Vec::new(),
        };
        for (f, field) in fields.iter().enumerate() {
            let Some(value) = contest.incoming.get(field) else {
                continue;
            };
            let decision = resolution
                .decisions
                .get(f)
                .and_then(|column| column.get(row));
            let write =
                field.eq_ignore_ascii_case(key_field) || matches!(decision, Some(Decision::Write));
            if write {
                decided.write.insert(field.clone(), value.clone());
            } else {
                let current = contest
                    .current
                    .and_then(|c| c.get(field))
                    .cloned()
                    .unwrap_or(Json::Null);
                decided.skipped.push(SkippedField {
                    field: field.clone(),
                    incoming: value.clone(),
                    current,
                    reason: skip_reason(contest, decision.is_some()),
                });
            }
        }
        out.push(Ok(decided));
    }
    out
}

fn skip_reason(contest: &Contest<'_>, decided: bool) -> String {
    if !decided {
        return "the resolver gave no decision for this field; kept Salesforce's value".into();
    }
    match contest.changed_at {
        Some(at) if at > contest.incoming_at => format!(
            "Salesforce changed the record at {at}, after the event occurred at {}",
            contest.incoming_at
        ),
        _ => "the resolver kept Salesforce's value".into(),
    }
}
