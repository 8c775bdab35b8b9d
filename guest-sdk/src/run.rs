//! The batch drivers behind every export, public so a plugin's `*_batch` override can
//! reuse them around its own logic: build the context, configure the plugin, run its
//! per-record methods over the batch, and turn failures into per-record errors.
//!
//! Invariant the host relies on: every input record either produces output or appears in
//! `errors` — a driver never loses a record silently. A record that fails halfway leaves no
//! partial output behind.

use std::collections::HashMap;

use crate::batch::{BatchView, Emit, Record, Val};
use crate::bindings::exports::weft::plugin::chain::{ChainBatch, ChainResult, Stage, StageError};
use crate::bindings::weft::plugin::types::{
    Batch, BatchResult, CallContext, Column as RawColumn, Decision, DedupKeys, DedupResult,
    Direction, FieldSchema, ObjectSchema, RecordError, Resolution,
};
use crate::coerce::Coerced;
use crate::context::Cx;
use crate::layout::{self, TextSink, tag};
use crate::plugin::{KeySink, Plugin, fail_all};

fn configured<P: Plugin>(cx: &Cx) -> Result<P, String> {
    let mut plugin = P::default();
    plugin
        .configure(cx)
        .map_err(|reason| format!("plugin configuration: {reason}"))?;
    Ok(plugin)
}

fn batch_failure(len: usize, reason: &str) -> BatchResult {
    BatchResult {
        batches: Vec::new(),
        errors: fail_all(len, reason),
    }
}

/// Entry points used by [`crate::export_plugin!`] and the native harness.
pub fn map_inbound_with<P: Plugin>(cx: &Cx, input: &Batch) -> BatchResult {
    match configured::<P>(cx) {
        Ok(plugin) => plugin.map_inbound_batch(cx, input),
        Err(reason) => batch_failure(input.sources.len(), &reason),
    }
}

pub fn map_outbound_with<P: Plugin>(cx: &Cx, input: &Batch) -> BatchResult {
    match configured::<P>(cx) {
        Ok(plugin) => plugin.map_outbound_batch(cx, input),
        Err(reason) => batch_failure(input.sources.len(), &reason),
    }
}

pub fn coerce_with<P: Plugin>(cx: &Cx, schema: &ObjectSchema, input: &Batch) -> BatchResult {
    match configured::<P>(cx) {
        Ok(plugin) => plugin.coerce_batch(cx, schema, input),
        Err(reason) => batch_failure(input.sources.len(), &reason),
    }
}

pub fn resolve_with<P: Plugin>(
    cx: &Cx,
    incoming: &Batch,
    incoming_at: &[i64],
    current: &Batch,
    current_modified_at: &[Option<i64>],
) -> Resolution {
    match configured::<P>(cx) {
        Ok(plugin) => plugin.resolve_batch(cx, incoming, incoming_at, current, current_modified_at),
        Err(reason) => Resolution {
            decisions: Vec::new(),
            errors: fail_all(incoming.sources.len(), &reason),
        },
    }
}

pub fn dedup_keys_with<P: Plugin>(cx: &Cx, input: &Batch) -> DedupResult {
    match configured::<P>(cx) {
        Ok(plugin) => plugin.dedup_batch(cx, input),
        Err(reason) => DedupResult {
            keys: DedupKeys::default(),
            errors: fail_all(input.sources.len(), &reason),
        },
    }
}

pub fn map_inbound<P: Plugin>(ctx: &CallContext, input: &Batch) -> BatchResult {
    map_inbound_with::<P>(&Cx::from_host(ctx), input)
}

pub fn map_outbound<P: Plugin>(ctx: &CallContext, input: &Batch) -> BatchResult {
    map_outbound_with::<P>(&Cx::from_host(ctx), input)
}

pub fn coerce<P: Plugin>(ctx: &CallContext, schema: &ObjectSchema, input: &Batch) -> BatchResult {
    coerce_with::<P>(&Cx::from_host(ctx), schema, input)
}

pub fn resolve<P: Plugin>(
    ctx: &CallContext,
    incoming: &Batch,
    incoming_at: &[i64],
    current: &Batch,
    current_modified_at: &[Option<i64>],
) -> Resolution {
    resolve_with::<P>(
        &Cx::from_host(ctx),
        incoming,
        incoming_at,
        current,
        current_modified_at,
    )
}

pub fn dedup_keys<P: Plugin>(ctx: &CallContext, input: &Batch) -> DedupResult {
    dedup_keys_with::<P>(&Cx::from_host(ctx), input)
}

/// Map → coerce → dedup keys of one batch, composed the way the host composes the three
/// separate calls: the plugin is configured once, each mapped object is coerced to the
/// schema of its name (unchanged without one), and every output row and failure is traced
/// back to the input record it came from. A source this driver cannot trace (a plugin's
/// own `*_batch` override returned one out of range) is passed on as `u32::MAX`, which the
/// host rejects as malformed output.
pub fn chain_with<P: Plugin>(
    cx: &Cx,
    input: &Batch,
    schemas: &[ObjectSchema],
    dedup: bool,
) -> ChainResult {
    let plugin = match configured::<P>(cx) {
        Ok(plugin) => plugin,
        Err(reason) => {
            return ChainResult {
                batches: Vec::new(),
                errors: stage_errors(Stage::Map, fail_all(input.sources.len(), &reason), |r| r)
                    .collect(),
            };
        }
    };
    let mapped = match cx.direction() {
        Direction::Inbound => plugin.map_inbound_batch(cx, input),
        Direction::Outbound => plugin.map_outbound_batch(cx, input),
    };
    let mut errors: Vec<StageError> = stage_errors(Stage::Map, mapped.errors, |r| r).collect();
    let mut batches = Vec::new();
    for batch in mapped.batches {
        let to_input = |row: u32| batch.sources.get(row as usize).copied().unwrap_or(u32::MAX);
        let coerced = match schemas.iter().find(|s| s.name == batch.object) {
            Some(schema) => plugin.coerce_batch(cx, schema, &batch),
            None => {
                let schema = ObjectSchema {
                    name: batch.object.clone(),
                    fields: Vec::new(),
                };
                plugin.coerce_batch(cx, &schema, &batch)
            }
        };
        errors.extend(stage_errors(Stage::Coerce, coerced.errors, to_input));
        for mut result in coerced.batches {
            let keys = if dedup {
                plugin.dedup_batch(cx, &result)
            } else {
                DedupResult {
                    keys: DedupKeys::default(),
                    errors: Vec::new(),
                }
            };
            let through = |row: u32| {
                result
                    .sources
                    .get(row as usize)
                    .map_or(u32::MAX, |&mapped_row| to_input(mapped_row))
            };
            errors.extend(stage_errors(Stage::Dedup, keys.errors, through));
            for source in &mut result.sources {
                *source = to_input(*source);
            }
            batches.push(ChainBatch {
                batch: result,
                keys: keys.keys,
            });
        }
    }
    ChainResult { batches, errors }
}

pub fn chain<P: Plugin>(
    ctx: &CallContext,
    input: &Batch,
    schemas: &[ObjectSchema],
    dedup: bool,
) -> ChainResult {
    chain_with::<P>(&Cx::from_host(ctx), input, schemas, dedup)
}

fn stage_errors(
    stage: Stage,
    errors: Vec<RecordError>,
    to_input: impl Fn(u32) -> u32,
) -> impl Iterator<Item = StageError> {
    errors.into_iter().map(move |e| StageError {
        record: to_input(e.record),
        stage,
        reason: e.reason,
    })
}

/// Runs a per-record mapping over a batch.
pub fn map_each(
    cx: &Cx,
    input: &Batch,
    mut map: impl FnMut(&Cx, Record<'_>, &mut Emit<'_>) -> Result<(), String>,
) -> BatchResult {
    let view = BatchView::new(input);
    let mut emit = Emit::new(&view);
    let mut errors = Vec::new();
    for rec in view.records() {
        let row = rec.index() as u32;
        emit.begin(row);
        if let Err(reason) = map(cx, rec, &mut emit) {
            emit.rollback();
            errors.push(RecordError {
                record: row,
                reason,
            });
        }
    }
    BatchResult {
        batches: emit.finish(),
        errors,
    }
}

/// Runs a per-value coercion over a batch against `schema`. Fields the schema does not
/// know pass through unchanged: whether they may be written is the validator's call.
///
/// Works a column at a time: each column is one sequential sweep over memory, where a
/// record at a time would jump between every column for each record. A record fails with
/// the first of its fields (in batch order) that does not coerce; its later fields are not
/// offered to `coerce`. The output's text starts as a copy of the input's, so a value
/// `coerce` keeps, or one that comes back borrowed from the input, keeps its span instead
/// of being copied again.
pub fn coerce_each(
    cx: &Cx,
    schema: &ObjectSchema,
    input: &Batch,
    mut coerce: impl for<'a> FnMut(&Cx, &FieldSchema, &Val<'a>) -> Result<Coerced<'a>, String>,
) -> BatchResult {
    let by_name: HashMap<&str, &FieldSchema> =
        schema.fields.iter().map(|f| (f.name.as_str(), f)).collect();
    let rows = input.sources.len();
    let mut text = input.text.clone();
    let mut columns = Vec::with_capacity(input.fields.len());
    let mut failed = vec![false; rows];
    let mut errors = Vec::new();
    let empty = RawColumn::with_capacity(0);
    for (f, name) in input.fields.iter().enumerate() {
        let column = input.columns.get(f).unwrap_or(&empty);
        let Some(field) = by_name.get(name.as_str()).copied() else {
            let mut copy = column.clone();
            copy.resize(rows);
            columns.push(copy);
            continue;
        };
        let mut out = RawColumn::with_capacity(rows);
        let mut sink = TextSink {
            text: &mut text,
            shared: &input.text,
        };
        for (row, failed) in failed.iter_mut().enumerate() {
            if *failed {
                out.put(row, tag::ABSENT, 0);
                continue;
            }
            let (t, p) = match (column.tags.get(row), column.payloads.get(row)) {
                (Some(&t), Some(&p)) => (t, p),
                _ => (tag::ABSENT, 0),
            };
            let value = layout::read(&input.text, t, p);
            match coerce(cx, field, &value) {
                // Text keeps its span into the output's copy of the input text; anything
                // else is encoded again, which also turns a tag this SDK does not know
                // into the null it read as.
                Ok(Coerced::Keep) if t == tag::TEXT || t == tag::JSON => out.put(row, t, p),
                Ok(Coerced::Keep) => {
                    let (t, p) = sink.write(&value);
                    out.put(row, t, p);
                }
                Ok(Coerced::To(value)) => {
                    let (t, p) = sink.write(&value);
                    out.put(row, t, p);
                }
                Err(reason) => {
                    *failed = true;
                    errors.push(RecordError {
                        record: row as u32,
                        reason: format!("{name}: {reason}"),
                    });
                    out.put(row, tag::ABSENT, 0);
                }
            }
        }
        columns.push(out);
    }
    let mut sources: Vec<u32> = (0..rows as u32).collect();
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.record);
        retain_rows(&mut sources, &failed);
        for column in &mut columns {
            retain_rows(&mut column.tags, &failed);
            retain_rows(&mut column.payloads, &failed);
        }
    }
    BatchResult {
        batches: vec![Batch {
            object: input.object.clone(),
            fields: input.fields.clone(),
            columns,
            sources,
            text,
        }],
        errors,
    }
}

/// Drops the entries of failed rows.
fn retain_rows<T>(values: &mut Vec<T>, failed: &[bool]) {
    let mut row = 0;
    values.retain(|_| {
        row += 1;
        !failed.get(row - 1).copied().unwrap_or(true)
    });
}

pub fn resolve_each<P: Plugin>(
    cx: &Cx,
    incoming: &Batch,
    incoming_at: &[i64],
    current: &Batch,
    current_modified_at: &[Option<i64>],
    plugin: &P,
) -> Resolution {
    let incoming_view = BatchView::new(incoming);
    let current_view = BatchView::new(current);
    let len = incoming_view.len();
    if current_view.len() != len {
        let reason = format!(
            "resolver got {len} incoming and {} current records; they must pair up",
            current_view.len()
        );
        return Resolution {
            decisions: Vec::new(),
            errors: fail_all(len, &reason),
        };
    }
    let mut decisions = vec![Vec::with_capacity(len); incoming.fields.len()];
    let mut errors = Vec::new();
    for (inc, cur) in incoming_view.records().zip(current_view.records()) {
        let row = inc.index();
        let Some(&incoming_at) = incoming_at.get(row) else {
            errors.push(RecordError {
                record: row as u32,
                reason: "no change timestamp for this record".to_owned(),
            });
            decisions
                .iter_mut()
                .for_each(|column| column.push(Decision::Skip));
            continue;
        };
        let current_at = current_modified_at.get(row).copied().flatten();
        for ((name, value), column) in inc.fields().zip(decisions.iter_mut()) {
            // An absent incoming value has nothing to write; the plugin is not asked.
            if value.is_absent() {
                column.push(Decision::Skip);
                continue;
            }
            let current_value = cur.get(name);
            column.push(plugin.resolve_field(
                cx,
                name,
                &value,
                &current_value,
                incoming_at,
                current_at,
            ));
        }
    }
    Resolution { decisions, errors }
}

pub fn dedup_each(
    cx: &Cx,
    input: &Batch,
    mut keys_of: impl FnMut(&Cx, Record<'_>, &mut KeySink) -> Result<(), String>,
) -> DedupResult {
    let view = BatchView::new(input);
    let mut sink = KeySink::default();
    let mut errors = Vec::new();
    for rec in view.records() {
        let row = rec.index() as u32;
        sink.record = row;
        let mark = sink.mark();
        if let Err(reason) = keys_of(cx, rec, &mut sink) {
            sink.rollback(mark);
            errors.push(RecordError {
                record: row,
                reason,
            });
        }
    }
    DedupResult {
        keys: sink.keys,
        errors,
    }
}
