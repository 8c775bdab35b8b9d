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

use crate::plugin::{BatchBuilder, Decision, InstalledPlugins, Resolution};
use crate::store::{SkippedField, Stage};

use super::outcome::Problem;
use super::transform::call_plugin;

/// One record to decide. The maps are shared with the round (the resolver's work runs on
/// the blocking pool, and needs no copy of them to get there).
#[derive(Debug, Clone)]
pub struct Contest {
    pub incoming: Arc<Map<String, Json>>,
    pub incoming_at: Timestamp,
    /// Salesforce's values now; `None` for a record it does not have.
    pub current: Option<Arc<Map<String, Json>>>,
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
    contests: Vec<Contest>,
) -> Vec<Result<Decided, Problem>> {
    if contests.is_empty() {
        return Vec::new();
    }
    let count = contests.len();
    let key_field = key_field.to_owned();
    // Building the batches, the call and applying its answer are CPU work that grows with
    // the round: all of it on the blocking pool, none on an async worker.
    let decided = call_plugin(installation, plugins, move |p, id| {
        let mut incoming = BatchBuilder::new("incoming");
        let mut current = BatchBuilder::new("current");
        for contest in &contests {
            incoming.push_json(&contest.incoming);
            match &contest.current {
                Some(record) => current.push_json(record),
                None => {
                    current.push_record();
                }
            }
        }
        let incoming = incoming.finish();
        let current = current.finish();
        let incoming_at: Vec<i64> = contests
            .iter()
            .map(|c| c.incoming_at.as_millisecond())
            .collect();
        let current_at: Vec<Option<i64>> = contests
            .iter()
            .map(|c| c.changed_at.map(Timestamp::as_millisecond))
            .collect();
        let resolution = p.resolve(id, &incoming, &incoming_at, &current, &current_at)?;
        Ok(decide(&contests, &incoming.fields, &resolution, &key_field))
    })
    .await;
    decided.unwrap_or_else(|error| {
        let problem = Problem::permanent(Stage::Conflict, error.dlq_code(), error.to_string());
        vec![Err(problem); count]
    })
}

/// Applies the resolver's answer: per contest, the fields to write and those held back.
fn decide(
    contests: &[Contest],
    fields: &[String],
    resolution: &Resolution,
    key_field: &str,
) -> Vec<Result<Decided, Problem>> {
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
                    .as_ref()
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

fn skip_reason(contest: &Contest, decided: bool) -> String {
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
