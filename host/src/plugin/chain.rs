//! The plugin stages a batch goes through — map → coerce → dedup keys — with every output
//! record and every failure traced back to the input record it came from.
//!
//! The three stages run as one call into the plugin (the WIT `chain` export, which the
//! guest SDK composes from the plugin's own stages), so a batch crosses the component
//! boundary once each way instead of once per stage. The plugin reports positions in the
//! batch the caller passed in; this module turns them into records and failures.

use serde_json::{Map, Value as Json};

use super::batch::record_to_json;
use super::bindings::chain::{ChainResult, Stage as WireStage};
use super::column::payload_span;
use super::engine::{CallSpec, LoadedPlugin};
use super::error::PluginError;
use super::installed::InstalledPlugins;
use super::output::span_text;
use super::types::{Batch, DedupKeys, Direction, ObjectSchema};

/// A plugin stage, for failure reports and DLQ filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Map,
    Coerce,
    Dedup,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Map => "map",
            Stage::Coerce => "coerce",
            Stage::Dedup => "dedup",
        })
    }
}

/// One output record of the chain.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Transformed {
    /// Position of the input record it came from.
    pub source: u32,
    pub object: String,
    pub fields: Map<String, Json>,
    /// Dedup and join keys as `(name, value)`.
    pub keys: Vec<(String, String)>,
}

/// One input record that failed a stage, with the plugin's reason.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Failure {
    pub source: u32,
    pub stage: Stage,
    pub reason: String,
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct ChainOutput {
    pub records: Vec<Transformed>,
    pub failures: Vec<Failure>,
}

/// A whole batch failed (trap, timeout, malformed output, quarantine, …). The stages run
/// in one plugin call, so a failure of the call as a whole is reported at the chain's
/// first stage, `map`; the error itself says what happened.
#[derive(Debug, thiserror::Error)]
#[error("{stage} stage failed: {error}")]
pub struct ChainError {
    pub stage: Stage,
    #[source]
    pub error: PluginError,
}

impl From<WireStage> for Stage {
    fn from(stage: WireStage) -> Self {
        match stage {
            WireStage::Map => Stage::Map,
            WireStage::Coerce => Stage::Coerce,
            WireStage::Dedup => Stage::Dedup,
        }
    }
}

/// What can run a batch's chain: a bare loaded plugin, one batch's sandbox, or an
/// installation's quarantine-guarded plugin.
pub trait ChainCalls {
    /// Map → coerce → dedup keys of `input` in one plugin call; see the WIT `chain`.
    fn chain(
        &self,
        direction: Direction,
        input: &Batch,
        schemas: &[ObjectSchema],
        dedup: bool,
    ) -> Result<ChainResult, PluginError>;
}

impl<T: ChainCalls> ChainCalls for &T {
    fn chain(
        &self,
        direction: Direction,
        input: &Batch,
        schemas: &[ObjectSchema],
        dedup: bool,
    ) -> Result<ChainResult, PluginError> {
        (**self).chain(direction, input, schemas, dedup)
    }
}

impl ChainCalls for (&LoadedPlugin, &CallSpec) {
    fn chain(
        &self,
        direction: Direction,
        input: &Batch,
        schemas: &[ObjectSchema],
        dedup: bool,
    ) -> Result<ChainResult, PluginError> {
        self.0.chain(self.1, direction, input, schemas, dedup)
    }
}

impl ChainCalls for (&InstalledPlugins, &str) {
    fn chain(
        &self,
        direction: Direction,
        input: &Batch,
        schemas: &[ObjectSchema],
        dedup: bool,
    ) -> Result<ChainResult, PluginError> {
        self.0.chain(self.1, direction, input, schemas, dedup)
    }
}

/// Runs map → coerce → dedup over `input`. Each mapped object is coerced to the schema of
/// its name in `schemas`; an object without one passes coercion unchanged.
pub fn run_chain(
    calls: &impl ChainCalls,
    direction: Direction,
    input: &Batch,
    schemas: &[ObjectSchema],
) -> Result<ChainOutput, ChainError> {
    let result = calls
        .chain(direction, input, schemas, true)
        .map_err(|error| ChainError {
            stage: Stage::Map,
            error,
        })?;
    let mut out = ChainOutput::default();
    for error in &result.errors {
        out.failures.push(Failure {
            source: error.record,
            stage: error.stage.into(),
            reason: error.reason.clone(),
        });
    }
    for produced in &result.batches {
        collect_records(&mut out, &produced.batch, &produced.keys);
    }
    // A record that failed anywhere fails whole: a mapping that emitted an Account and a
    // Contact must not half-land because only the Contact was invalid.
    let failed: std::collections::HashSet<u32> = out.failures.iter().map(|f| f.source).collect();
    out.records.retain(|r| !failed.contains(&r.source));
    out.failures.sort_by_key(|f| f.source);
    Ok(out)
}

fn collect_records(out: &mut ChainOutput, batch: &Batch, keys: &DedupKeys) {
    let mut keys_by_row: Vec<Vec<(String, String)>> = vec![Vec::new(); batch.sources.len()];
    let text = |packed: u64| span_text(&keys.text, payload_span(packed)).unwrap_or_default();
    let all = keys.records.iter().zip(&keys.names).zip(&keys.values);
    for ((&record, &name), &value) in all {
        if let Some(row) = keys_by_row.get_mut(record as usize) {
            row.push((text(name).to_owned(), text(value).to_owned()));
        }
    }
    for ((row, row_keys), &source) in keys_by_row.into_iter().enumerate().zip(&batch.sources) {
        out.records.push(Transformed {
            source,
            object: batch.object.clone(),
            fields: record_to_json(batch, row),
            keys: row_keys,
        });
    }
}
