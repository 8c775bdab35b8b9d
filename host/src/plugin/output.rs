//! Checks what a plugin returned before the host trusts any of it.
//!
//! A plugin is untrusted code: its output may have ragged columns, spans past the end of
//! its text, references to records that do not exist, or simply be enormous. Any of these
//! fails the whole batch as malformed, so nothing downstream ever indexes out of bounds.
//! It also enforces the contract that no record vanishes: each input record produces
//! output or a per-record error.

use super::bindings::chain::ChainResult;
use super::column::tag;
use super::error::PluginError;
use super::types::{Batch, BatchResult, DedupKey, DedupResult, RecordError, Resolution, Span};

/// The text of `span` in `text`, if the span is in bounds and on character boundaries.
pub fn span_text(text: &str, span: Span) -> Option<&str> {
    let start = span.offset as usize;
    text.get(start..start.checked_add(span.len as usize)?)
}

fn malformed(reason: impl Into<String>) -> PluginError {
    PluginError::MalformedOutput {
        reason: reason.into(),
    }
}

/// Approximate bytes a batch occupies once lifted into the host.
fn batch_bytes(batch: &Batch) -> usize {
    let values: usize = batch
        .columns
        .iter()
        .map(|c| c.tags.len() + c.payloads.len() * 8)
        .sum();
    let names: usize = batch.fields.iter().map(String::len).sum();
    batch.text.len() + names + values + batch.sources.len() * 4
}

fn check_errors(errors: &[RecordError], input_len: usize) -> Result<(), PluginError> {
    match errors.iter().find(|e| e.record as usize >= input_len) {
        Some(e) => Err(malformed(format!(
            "an error names record {} of a {input_len}-record batch",
            e.record
        ))),
        None => Ok(()),
    }
}

fn check_batch(batch: &Batch, input_len: usize) -> Result<(), PluginError> {
    let rows = batch.sources.len();
    if batch.columns.len() != batch.fields.len() {
        return Err(malformed(format!(
            "batch of {} has {} field names but {} columns",
            batch.object,
            batch.fields.len(),
            batch.columns.len()
        )));
    }
    if let Some(source) = batch.sources.iter().find(|s| **s as usize >= input_len) {
        return Err(malformed(format!(
            "output names source record {source} of a {input_len}-record batch"
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(batch.fields.len());
    for (field, column) in batch.fields.iter().zip(&batch.columns) {
        if field.is_empty() || !seen.insert(field.as_str()) {
            return Err(malformed(format!("empty or repeated field name {field:?}")));
        }
        if column.tags.len() != rows || column.payloads.len() != rows {
            return Err(malformed(format!(
                "column {field} has {} tags and {} payloads for {rows} records",
                column.tags.len(),
                column.payloads.len()
            )));
        }
        let text_len = batch.text.len() as u64;
        for (&t, &payload) in column.tags.iter().zip(&column.payloads) {
            match t {
                tag::TEXT | tag::JSON => {
                    // Cheap bounds first; the character-boundary check only for text values
                    // whose bounds are fine.
                    let (offset, len) = (payload & 0xffff_ffff, payload >> 32);
                    if offset + len > text_len
                        || !batch.text.is_char_boundary(offset as usize)
                        || !batch.text.is_char_boundary((offset + len) as usize)
                    {
                        return Err(malformed(format!(
                            "a value of {field} points outside the text buffer"
                        )));
                    }
                }
                t if t > tag::JSON => {
                    return Err(malformed(format!("a value of {field} has unknown tag {t}")));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

pub fn check_batch_result(
    result: &BatchResult,
    input_len: usize,
    max_bytes: usize,
) -> Result<(), PluginError> {
    let bytes: usize = result.batches.iter().map(batch_bytes).sum();
    if bytes > max_bytes {
        return Err(PluginError::OutputTooLarge {
            bytes,
            cap: max_bytes,
        });
    }
    check_errors(&result.errors, input_len)?;
    let mut covered = vec![false; input_len];
    for batch in &result.batches {
        check_batch(batch, input_len)?;
        for &source in &batch.sources {
            covered[source as usize] = true;
        }
    }
    for error in &result.errors {
        covered[error.record as usize] = true;
    }
    match covered.iter().position(|c| !c) {
        Some(record) => Err(malformed(format!(
            "record {record} produced neither output nor an error"
        ))),
        None => Ok(()),
    }
}

pub fn check_resolution(result: &Resolution, incoming: &Batch) -> Result<(), PluginError> {
    let rows = incoming.sources.len();
    check_errors(&result.errors, rows)?;
    if result.decisions.len() != incoming.fields.len()
        || result.decisions.iter().any(|column| column.len() != rows)
    {
        return Err(malformed(format!(
            "resolution must hold one decision per field and record ({} × {rows})",
            incoming.fields.len()
        )));
    }
    Ok(())
}

pub fn check_dedup(
    result: &DedupResult,
    input_len: usize,
    max_bytes: usize,
) -> Result<(), PluginError> {
    let bytes = keys_bytes(&result.keys, &result.text);
    if bytes > max_bytes {
        return Err(PluginError::OutputTooLarge {
            bytes,
            cap: max_bytes,
        });
    }
    check_errors(&result.errors, input_len)?;
    check_keys(&result.keys, &result.text, input_len)
}

fn keys_bytes(keys: &[DedupKey], text: &str) -> usize {
    text.len() + std::mem::size_of_val(keys)
}

/// Keys name rows of a `rows`-record batch and point inside `text`.
fn check_keys(keys: &[DedupKey], text: &str, rows: usize) -> Result<(), PluginError> {
    for key in keys {
        if key.record as usize >= rows {
            return Err(malformed(format!(
                "a dedup key names record {} of {rows}",
                key.record
            )));
        }
        if span_text(text, key.name).is_none() || span_text(text, key.value).is_none() {
            return Err(malformed("a dedup key points outside the text buffer"));
        }
    }
    Ok(())
}

/// A chain call's output: every batch well formed with sources in the input, every key on
/// a row of its batch, every error on an input record, and no input record unaccounted for.
pub fn check_chain(
    result: &ChainResult,
    input_len: usize,
    max_bytes: usize,
) -> Result<(), PluginError> {
    let bytes: usize = result
        .batches
        .iter()
        .map(|b| batch_bytes(&b.batch) + keys_bytes(&b.keys, &b.key_text))
        .sum();
    if bytes > max_bytes {
        return Err(PluginError::OutputTooLarge {
            bytes,
            cap: max_bytes,
        });
    }
    let mut covered = vec![false; input_len];
    for error in &result.errors {
        match covered.get_mut(error.record as usize) {
            Some(slot) => *slot = true,
            None => {
                return Err(malformed(format!(
                    "an error names record {} of a {input_len}-record batch",
                    error.record
                )));
            }
        }
    }
    for produced in &result.batches {
        check_batch(&produced.batch, input_len)?;
        check_keys(
            &produced.keys,
            &produced.key_text,
            produced.batch.sources.len(),
        )?;
        for &source in &produced.batch.sources {
            covered[source as usize] = true;
        }
    }
    match covered.iter().position(|c| !c) {
        Some(record) => Err(malformed(format!(
            "record {record} produced neither output nor an error"
        ))),
        None => Ok(()),
    }
}
