//! The batch drivers behind every export, public so a plugin's `*_batch` override can
//! reuse them around its own logic: build the context, configure the plugin, run its
//! per-record methods over the batch, and turn failures into per-record errors.
//!
//! Invariant the host relies on: every input record either produces output or appears in
//! `errors` — a driver never loses a record silently. A record that fails halfway leaves no
//! partial output behind.

use std::collections::HashMap;

use crate::batch::{BatchBuilder, BatchView, Emit, Record, Val};
use crate::bindings::weft::plugin::types::{
    Batch, BatchResult, CallContext, Decision, DedupResult, FieldSchema, ObjectSchema, RecordError,
    Resolution, Span,
};
use crate::context::Cx;
use crate::plugin::{KeySink, Plugin, fail_all};

pub(crate) fn append_span(text: &mut String, s: &str) -> Span {
    let offset = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    text.push_str(s);
    Span { offset, len }
}

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
            keys: Vec::new(),
            text: String::new(),
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

/// Runs a per-record mapping over a batch.
pub fn map_each(
    cx: &Cx,
    input: &Batch,
    mut map: impl FnMut(&Cx, Record<'_>, &mut Emit) -> Result<(), String>,
) -> BatchResult {
    let view = BatchView::new(input);
    let mut emit = Emit::new(view.len());
    let mut errors = Vec::new();
    let mut marks = Vec::new();
    for rec in view.records() {
        let row = rec.index() as u32;
        emit.set_source(row);
        emit.mark_into(&mut marks);
        if let Err(reason) = map(cx, rec, &mut emit) {
            emit.rollback(&marks);
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
pub fn coerce_each(
    cx: &Cx,
    schema: &ObjectSchema,
    input: &Batch,
    mut coerce: impl for<'a> FnMut(&Cx, &FieldSchema, Val<'a>) -> Result<Val<'a>, String>,
) -> BatchResult {
    let by_name: HashMap<&str, &FieldSchema> =
        schema.fields.iter().map(|f| (f.name.as_str(), f)).collect();
    let targets: Vec<Option<&FieldSchema>> = input
        .fields
        .iter()
        .map(|f| by_name.get(f.as_str()).copied())
        .collect();

    let view = BatchView::new(input);
    let mut out = BatchBuilder::with_fields(input.object.clone(), &input.fields, view.len());
    let mut errors = Vec::new();
    for rec in view.records() {
        let row = rec.index() as u32;
        let mark = out.mark();
        let mut failure = None;
        let mut writer = out.push(row);
        for ((name, value), target) in rec.fields().zip(&targets) {
            let coerced = match target {
                Some(field) => match coerce(cx, field, value) {
                    Ok(v) => v,
                    Err(reason) => {
                        failure = Some(format!("{name}: {reason}"));
                        break;
                    }
                },
                None => value,
            };
            writer.set(name, coerced);
        }
        if let Some(reason) = failure {
            out.rollback(mark);
            errors.push(RecordError {
                record: row,
                reason,
            });
        }
    }
    BatchResult {
        batches: vec![out.finish()],
        errors,
    }
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
        let (keys_before, text_before) = (sink.keys.len(), sink.text.len());
        if let Err(reason) = keys_of(cx, rec, &mut sink) {
            sink.keys.truncate(keys_before);
            sink.text.truncate(text_before);
            errors.push(RecordError {
                record: row,
                reason,
            });
        }
    }
    DedupResult {
        keys: sink.keys,
        text: sink.text,
        errors,
    }
}
