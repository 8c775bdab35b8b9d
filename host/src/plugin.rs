//! The plugin runtime: loads customers' WebAssembly components, checks them against the
//! WIT contract, compiles them once, and runs batch calls in a fresh, capped sandbox.
//!
//! What it guarantees: a plugin that traps, loops, blows its memory, overflows its stack,
//! panics or returns malformed output fails *that batch* with a typed [`PluginError`];
//! no other installation and nothing in the host notices. It never lets a plugin reach
//! the filesystem, network, environment, a real clock or real randomness.

mod batch;
mod bindings;
mod cache;
mod chain;
mod clock;
mod column;
mod engine;
mod error;
mod installed;
mod json_text;
mod limits;
mod output;
mod sandbox;
mod schema;
mod session;
mod validate;

use bindings::types;

pub use batch::{
    BatchBuilder, MAX_BATCH_CELLS, batch_from_json, batch_to_json, record_to_json, value_to_json,
};
pub use bindings::chain::{ChainBatch, ChainResult, StageError};
pub use bindings::types::{
    Batch, BatchResult, CallContext, Column, Decision, DedupKeys, DedupResult, Direction,
    FieldKind, FieldSchema, ObjectSchema, RecordError, Resolution,
};
pub use chain::{ChainCalls, ChainError, ChainOutput, Failure, Stage, Transformed, run_chain};
pub use column::{Span, Value, payload_span};
pub use engine::{CallSpec, LoadedPlugin, PluginRuntime, RuntimeConfig};
pub use error::{LoadError, OutputMeasure, PluginError};
pub use installed::{
    InstalledPlugins, PluginConfig, PluginStatus, QuarantinePolicy, off_the_runtime,
    start_off_the_runtime,
};
pub use json_text::{TextBatch, TextBatches, batches_from_texts};
pub use limits::CallLimits;
pub use output::span_text;
pub use schema::schema_from_describe;
pub use session::BatchSession;
pub use validate::{ComponentReport, SUPPORTED_WIT_VERSIONS};
