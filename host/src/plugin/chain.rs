//! The plugin stages a batch goes through — map → coerce → dedup keys — with every output
//! record and every failure traced back to the input record it came from.
//!
//! Each stage's results index *its own* input; this module composes the `sources`
//! mappings so callers only ever see positions in the batch they passed in.

use serde_json::{Map, Value as Json};

use super::batch::record_to_json;
use super::engine::{CallSpec, LoadedPlugin};
use super::error::PluginError;
use super::installed::InstalledPlugins;
use super::output::span_text;
use super::types::{Batch, BatchResult, DedupResult, Direction, ObjectSchema};

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

/// A whole batch failed at a stage (trap, timeout, malformed output, quarantine, …).
#[derive(Debug, thiserror::Error)]
#[error("{stage} stage failed: {error}")]
pub struct ChainError {
    pub stage: Stage,
    #[source]
    pub error: PluginError,
}

/// The calls the chain makes; implemented for a bare loaded plugin and for an
/// installation's quarantine-guarded plugin.
pub trait StageCalls {
    fn map(&self, direction: Direction, input: &Batch) -> Result<BatchResult, PluginError>;
    fn coerce(
        &self,
        direction: Direction,
        schema: &ObjectSchema,
        input: &Batch,
    ) -> Result<BatchResult, PluginError>;
    fn dedup(&self, direction: Direction, input: &Batch) -> Result<DedupResult, PluginError>;

    /// The calls for the stages of one batch. Default: these calls, each on its own. A
    /// plugin runtime returns a [`super::BatchSession`], so the batch is instantiated once
    /// rather than once per stage. An error here fails the batch at the map stage.
    fn for_batch(&self) -> Result<impl StageCalls + '_, PluginError>
    where
        Self: Sized,
    {
        Ok(self)
    }
}

impl<T: StageCalls> StageCalls for &T {
    fn map(&self, direction: Direction, input: &Batch) -> Result<BatchResult, PluginError> {
        (**self).map(direction, input)
    }
    fn coerce(
        &self,
        direction: Direction,
        schema: &ObjectSchema,
        input: &Batch,
    ) -> Result<BatchResult, PluginError> {
        (**self).coerce(direction, schema, input)
    }
    fn dedup(&self, direction: Direction, input: &Batch) -> Result<DedupResult, PluginError> {
        (**self).dedup(direction, input)
    }
}

impl StageCalls for (&LoadedPlugin, &CallSpec) {
    fn map(&self, direction: Direction, input: &Batch) -> Result<BatchResult, PluginError> {
        match direction {
            Direction::Inbound => self.0.map_inbound(self.1, input),
            Direction::Outbound => self.0.map_outbound(self.1, input),
        }
    }
    fn coerce(
        &self,
        direction: Direction,
        schema: &ObjectSchema,
        input: &Batch,
    ) -> Result<BatchResult, PluginError> {
        self.0.coerce(self.1, direction, schema, input)
    }
    fn dedup(&self, direction: Direction, input: &Batch) -> Result<DedupResult, PluginError> {
        self.0.dedup_keys(self.1, direction, input)
    }
    fn for_batch(&self) -> Result<impl StageCalls + '_, PluginError> {
        self.0.batch_session(self.1)
    }
}

impl StageCalls for (&InstalledPlugins, &str) {
    fn map(&self, direction: Direction, input: &Batch) -> Result<BatchResult, PluginError> {
        match direction {
            Direction::Inbound => self.0.map_inbound(self.1, input),
            Direction::Outbound => self.0.map_outbound(self.1, input),
        }
    }
    fn coerce(
        &self,
        direction: Direction,
        schema: &ObjectSchema,
        input: &Batch,
    ) -> Result<BatchResult, PluginError> {
        self.0.coerce(self.1, direction, schema, input)
    }
    fn dedup(&self, direction: Direction, input: &Batch) -> Result<DedupResult, PluginError> {
        self.0.dedup_keys(self.1, direction, input)
    }
}

/// Runs map → coerce → dedup over `input`. `schema_for` gives the schema each mapped
/// object is coerced to; an object without one passes coercion unchanged.
pub fn run_chain(
    calls: &impl StageCalls,
    direction: Direction,
    input: &Batch,
    schema_for: impl Fn(&str) -> Option<ObjectSchema>,
) -> Result<ChainOutput, ChainError> {
    let at = |stage| move |error| ChainError { stage, error };
    let mut out = ChainOutput::default();
    let calls = calls.for_batch().map_err(at(Stage::Map))?;

    let mapped = calls.map(direction, input).map_err(at(Stage::Map))?;
    fail_records(&mut out, Stage::Map, &mapped.errors, |r| Some(r));

    for batch in &mapped.batches {
        let schema = schema_for(&batch.object).unwrap_or_else(|| ObjectSchema {
            name: batch.object.clone(),
            fields: Vec::new(),
        });
        let coerced = calls
            .coerce(direction, &schema, batch)
            .map_err(at(Stage::Coerce))?;
        let to_input = |row: u32| batch.sources.get(row as usize).copied();
        fail_records(&mut out, Stage::Coerce, &coerced.errors, to_input);

        for result in &coerced.batches {
            let keys = calls.dedup(direction, result).map_err(at(Stage::Dedup))?;
            let through = |row: u32| result.sources.get(row as usize).copied().and_then(to_input);
            fail_records(&mut out, Stage::Dedup, &keys.errors, through);
            collect_records(&mut out, result, &keys, through);
        }
    }
    // A record that failed anywhere fails whole: a mapping that emitted an Account and a
    // Contact must not half-land because only the Contact was invalid.
    let failed: std::collections::HashSet<u32> = out.failures.iter().map(|f| f.source).collect();
    out.records.retain(|r| !failed.contains(&r.source));
    out.failures.sort_by_key(|f| f.source);
    Ok(out)
}

fn fail_records(
    out: &mut ChainOutput,
    stage: Stage,
    errors: &[super::types::RecordError],
    to_input: impl Fn(u32) -> Option<u32>,
) {
    for error in errors {
        if let Some(source) = to_input(error.record) {
            out.failures.push(Failure {
                source,
                stage,
                reason: error.reason.clone(),
            });
        }
    }
}

fn collect_records(
    out: &mut ChainOutput,
    batch: &Batch,
    keys: &DedupResult,
    to_input: impl Fn(u32) -> Option<u32>,
) {
    let failed: std::collections::HashSet<u32> = keys.errors.iter().map(|e| e.record).collect();
    let mut keys_by_row: Vec<Vec<(String, String)>> = vec![Vec::new(); batch.sources.len()];
    for key in &keys.keys {
        let name = span_text(&keys.text, key.name).unwrap_or_default();
        let value = span_text(&keys.text, key.value).unwrap_or_default();
        if let Some(row) = keys_by_row.get_mut(key.record as usize) {
            row.push((name.to_owned(), value.to_owned()));
        }
    }
    for (row, row_keys) in keys_by_row.into_iter().enumerate() {
        let row_u32 = row as u32;
        let Some(source) = to_input(row_u32) else {
            continue;
        };
        if failed.contains(&row_u32) {
            continue;
        }
        let fields = record_to_json(batch, row);
        out.records.push(Transformed {
            source,
            object: batch.object.clone(),
            fields,
            keys: row_keys,
        });
    }
}
