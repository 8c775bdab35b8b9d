//! The plugin stages of the outbound pipeline: product events → map → coerce → Salesforce
//! records, each traced back to the event it came from. Events' records are read from the
//! JSON text the store keeps straight into the map call's batch.
//!
//! Plugin calls are synchronous and CPU-bound, so each runs on the blocking pool; the
//! org's describe (which coercion needs) is fetched between them. A record the plugin
//! refuses goes to the DLQ with the plugin's reason; when the coercer refused a value
//! the org would refuse too, the entry carries Salesforce's code for it (the host's
//! validator judges the mapped value), so operators see one vocabulary whichever side
//! caught the problem. A whole-batch plugin failure (trap, timeout, quarantine) fails
//! every event of that batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::plugin::{
    Batch, BatchResult, Direction, InstalledPlugins, MAX_BATCH_CELLS, PluginError,
    batches_from_texts, record_to_json,
};
use crate::salesforce::{SalesforceClient, SalesforceError};
use crate::store::{OutboundEvent, RecordText, Stage};

use super::outcome::{Problem, Tally};
use super::schemas::{Described, Schemas};
use super::validate::ObjectRules;

/// One Salesforce record an event maps to, coerced to the org's schema.
#[derive(Debug, Clone)]
pub struct MappedRecord {
    /// Index of the event in the round.
    pub event: usize,
    /// The Salesforce object, e.g. `Account`.
    pub object: String,
    pub fields: Map<String, Json>,
}

/// Runs map → coerce for `events` (indexed like the round); failures land in `tally`.
pub async fn transform(
    installation: &str,
    plugins: &Arc<InstalledPlugins>,
    client: &SalesforceClient,
    schemas: &mut Schemas,
    events: &[(usize, &OutboundEvent<RecordText>)],
    tally: &mut Tally,
) -> Vec<MappedRecord> {
    // One map call per product object: a batch holds one object.
    let mut by_object: BTreeMap<&str, Vec<(usize, &OutboundEvent<RecordText>)>> = BTreeMap::new();
    for &(index, event) in events {
        by_object
            .entry(event.object.as_str())
            .or_default()
            .push((index, event));
    }
    let mut out = Vec::new();
    for (object, group) in by_object {
        // The records stay the text the store kept; the copy is one buffer per event.
        let records: Vec<RecordText> = group.iter().map(|(_, e)| e.record.clone()).collect();
        let object_name = object.to_owned();
        // Reading records into batches is CPU work proportional to the events' size, so it
        // runs with the plugin calls on the blocking pool, never on an async worker. Wide
        // events are cut into several bounded batches rather than one quadratic one.
        let read = call_plugin(installation, plugins, move |p, id| {
            let read = batches_from_texts(
                &object_name,
                records.iter().map(RecordText::as_str),
                MAX_BATCH_CELLS,
            );
            let mapped = read
                .batches
                .into_iter()
                .map(|input| {
                    let mapped = p.map_outbound(id, &input.batch);
                    (input.records, mapped)
                })
                .collect::<Vec<_>>();
            Ok((mapped, read.unreadable))
        })
        .await;
        let (chunks, unreadable) = match read {
            Ok(read) => read,
            Err(error) => ((vec![((0..group.len()).collect(), Err(error))]), Vec::new()),
        };
        for (member, reason) in unreadable {
            if let Some((index, _)) = group.get(member) {
                tally.fail(
                    *index,
                    Problem::permanent(
                        Stage::Map,
                        "EVENT_UNREADABLE",
                        format!("the stored event's record could not be read: {reason}"),
                    ),
                );
            }
        }
        for (rows, mapped) in chunks {
            // Row `r` of this chunk's input is record `rows[r]` of the group.
            let event_of = |row: u32| {
                let member = *rows.get(row as usize)?;
                group.get(member).map(|(index, _)| *index)
            };
            let mapped = match mapped {
                Ok(result) => result,
                Err(error) => {
                    let problem = plugin_failure(Stage::Map, &error);
                    for member in &rows {
                        if let Some((index, _)) = group.get(*member) {
                            tally.fail(*index, problem.clone());
                        }
                    }
                    continue;
                }
            };
            for error in &mapped.errors {
                if let Some(index) = event_of(error.record) {
                    tally.fail(
                        index,
                        Problem::permanent(Stage::Map, "MAPPING_REJECTED", error.reason.clone()),
                    );
                }
            }
            for batch in mapped.batches {
                let events: Vec<Option<usize>> =
                    batch.sources.iter().map(|&s| event_of(s)).collect();
                let described = schemas.get(client, &batch.object).await;
                coerce_batch(
                    installation,
                    plugins,
                    described,
                    batch,
                    events,
                    tally,
                    &mut out,
                )
                .await;
            }
        }
    }
    out
}

/// Coerces one mapped batch whose row `r` came from round event `events[r]`, against its
/// object's describe as read.
async fn coerce_batch(
    installation: &str,
    plugins: &Arc<InstalledPlugins>,
    described: Result<Described, SalesforceError>,
    batch: Batch,
    events: Vec<Option<usize>>,
    tally: &mut Tally,
    out: &mut Vec<MappedRecord>,
) {
    let fail_all = |tally: &mut Tally, problem: &Problem| {
        for index in events.iter().flatten() {
            tally.fail(*index, problem.clone());
        }
    };
    let described = match described {
        Ok(described) => described,
        Err(error) => {
            fail_all(tally, &Problem::from_salesforce(Stage::Coerce, &error));
            return;
        }
    };
    let schema = match described.schema {
        Ok(schema) => schema,
        Err(reason) => {
            fail_all(
                tally,
                &Problem::permanent(Stage::Coerce, "DESCRIBE_UNREADABLE", reason),
            );
            return;
        }
    };
    let rules = described.rules;
    let row_events = events.clone();
    // The call and the conversion of its output to JSON are CPU work: both on the
    // blocking pool.
    let coerced = call_plugin(installation, plugins, move |p, id| {
        let coerced = p.coerce(id, Direction::Outbound, &schema, &batch)?;
        Ok(coerced_records(&rules, &batch, &coerced, &row_events))
    })
    .await;
    match coerced {
        Ok((records, failures)) => {
            for (index, problem) in failures {
                tally.fail(index, problem);
            }
            out.extend(records);
        }
        Err(error) => fail_all(tally, &plugin_failure(Stage::Coerce, &error)),
    }
}

/// The records a coerce call produced, and the events whose values it refused.
fn coerced_records(
    rules: &ObjectRules,
    mapped: &Batch,
    coerced: &BatchResult,
    events: &[Option<usize>],
) -> (Vec<MappedRecord>, Vec<(usize, Problem)>) {
    let mut failures = Vec::new();
    for error in &coerced.errors {
        let Some(Some(index)) = events.get(error.record as usize) else {
            continue;
        };
        let row = error.record as usize;
        failures.push((*index, coerce_problem(rules, mapped, row, &error.reason)));
    }
    let mut records = Vec::new();
    for result in &coerced.batches {
        for (row, &source) in result.sources.iter().enumerate() {
            let Some(Some(index)) = events.get(source as usize) else {
                continue;
            };
            records.push(MappedRecord {
                event: *index,
                object: result.object.clone(),
                fields: record_to_json(result, row),
            });
        }
    }
    (records, failures)
}

/// The DLQ reason for a value the coercer refused. The guest SDK reports `"{field}:
/// {reason}"`; when the host's validator finds a Salesforce rule the mapped value breaks,
/// its code and message are used.
fn coerce_problem(rules: &ObjectRules, mapped: &Batch, row: usize, reason: &str) -> Problem {
    let field = reason.split_once(": ").map(|(field, _)| field);
    let violation = field.and_then(|field| {
        let value = record_to_json(mapped, row).get(field).cloned()?;
        rules.check_field(field, &value)
    });
    match violation {
        Some(v) => Problem::permanent(Stage::Coerce, v.code, v.message).with_fields(v.fields),
        None => Problem::permanent(Stage::Coerce, "COERCION_REJECTED", reason)
            .with_fields(field.map(str::to_owned).into_iter().collect()),
    }
}

/// A whole plugin batch failed: the DLQ code names what happened (`PLUGIN_TIMEOUT`,
/// `PLUGIN_QUARANTINED`, …). Not retried: a plugin is deterministic, so the same batch would
/// fail the same way; the fix is a new plugin version, then a replay.
fn plugin_failure(stage: Stage, error: &PluginError) -> Problem {
    Problem::permanent(stage, error.dlq_code(), error.to_string())
}

/// Runs one plugin call on the blocking pool.
pub async fn call_plugin<R: Send + 'static>(
    installation: &str,
    plugins: &Arc<InstalledPlugins>,
    call: impl FnOnce(&InstalledPlugins, &str) -> Result<R, PluginError> + Send + 'static,
) -> Result<R, PluginError> {
    let plugins = plugins.clone();
    let id = installation.to_owned();
    crate::plugin::off_the_runtime(move || call(&plugins, &id))
        .await
        .and_then(|called| called)
}
