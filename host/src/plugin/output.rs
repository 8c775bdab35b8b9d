//! Checks what a plugin returned before the host trusts any of it.
//!
//! A plugin is untrusted code: its output may have ragged columns, spans past the end of
//! its text, references to records that do not exist, or simply be enormous. Any of these
//! fails the whole batch as malformed, so nothing downstream ever indexes out of bounds.
//! It also enforces the contract that no record vanishes: each input record produces
//! output or a per-record error.

use super::bindings::chain::ChainResult;
use super::column::{Span, payload_span, tag};
use super::error::PluginError;
use super::types::{Batch, BatchResult, Column, DedupKeys, DedupResult, RecordError, Resolution};

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
    let text_is_ascii = batch.text.is_ascii();
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
        if !values_in_bounds(&column.tags, &column.payloads, &batch.text, text_is_ascii) {
            return Err(malformed(bad_value(field, column, &batch.text)));
        }
    }
    Ok(())
}

/// Whether every tag is known and every text or JSON span lies in `text` on character
/// boundaries. Branch-free per value (the checks are or-ed, not short-circuited), because
/// it runs over every value of every batch; [`bad_value`] finds the culprit afterwards.
///
/// `text_is_ascii` (of the whole buffer, checked once per batch) skips the boundary checks:
/// every offset of ASCII text is a boundary, and those checks are the costly part, a read
/// at a random place in a buffer of some hundred KiB for each end of each span.
fn values_in_bounds(tags: &[u8], payloads: &[u64], text: &str, text_is_ascii: bool) -> bool {
    let bytes = text.as_bytes();
    let text_len = bytes.len() as u64;
    // A UTF-8 continuation byte is 0b10xx_xxxx: below -0x40 as a signed byte. The end of
    // the text is a boundary; past it, the bounds check fails anyway.
    let boundary = |at: u64| bytes.get(at as usize).is_none_or(|&b| (b as i8) >= -0x40);
    let mut bad = false;
    for (&t, &payload) in tags.iter().zip(payloads) {
        let spans_text = (t == tag::TEXT) | (t == tag::JSON);
        // Non-text payloads are numbers: look at offset 0 for them, not at random bytes.
        let span = if spans_text { payload } else { 0 };
        let (offset, len) = (span & 0xffff_ffff, span >> 32);
        let end = offset + len;
        bad |= (t > tag::JSON) | (end > text_len);
        if !text_is_ascii {
            bad |= !boundary(offset) | !boundary(end);
        }
    }
    !bad
}

/// Why [`values_in_bounds`] refused `column`.
fn bad_value(field: &str, column: &Column, text: &str) -> String {
    for (&t, &payload) in column.tags.iter().zip(&column.payloads) {
        if t > tag::JSON {
            return format!("a value of {field} has unknown tag {t}");
        }
        if (t == tag::TEXT || t == tag::JSON) && span_text(text, payload_span(payload)).is_none() {
            return format!("a value of {field} points outside the text buffer");
        }
    }
    format!("a value of {field} is malformed")
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
    let bytes = keys_bytes(&result.keys);
    if bytes > max_bytes {
        return Err(PluginError::OutputTooLarge {
            bytes,
            cap: max_bytes,
        });
    }
    check_errors(&result.errors, input_len)?;
    check_keys(&result.keys, input_len)
}

fn keys_bytes(keys: &DedupKeys) -> usize {
    keys.text.len() + keys.records.len() * 4 + (keys.names.len() + keys.values.len()) * 8
}

/// Keys come in whole (one record, name and value each), name rows of a `rows`-record
/// batch, and point inside their text on character boundaries.
fn check_keys(keys: &DedupKeys, rows: usize) -> Result<(), PluginError> {
    let count = keys.records.len();
    if keys.names.len() != count || keys.values.len() != count {
        return Err(malformed(format!(
            "dedup keys have {count} records, {} names and {} values",
            keys.names.len(),
            keys.values.len()
        )));
    }
    if let Some(record) = keys.records.iter().find(|&&r| r as usize >= rows) {
        return Err(malformed(format!(
            "a dedup key names record {record} of {rows}"
        )));
    }
    let in_text = |&packed: &u64| span_text(&keys.text, payload_span(packed)).is_some();
    if !keys.names.iter().all(in_text) || !keys.values.iter().all(in_text) {
        return Err(malformed("a dedup key points outside the text buffer"));
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
        .map(|b| batch_bytes(&b.batch) + keys_bytes(&b.keys))
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
        check_keys(&produced.keys, produced.batch.sources.len())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text_span(offset: u32, len: u32) -> (u8, u64) {
        (tag::TEXT, u64::from(offset) | (u64::from(len) << 32))
    }

    /// A one-field batch of `values` over `text`.
    fn batch(text: &str, values: &[(u8, u64)]) -> Batch {
        Batch {
            object: "Account".into(),
            fields: vec!["Name".into()],
            columns: vec![Column {
                tags: values.iter().map(|v| v.0).collect(),
                payloads: values.iter().map(|v| v.1).collect(),
            }],
            sources: (0..values.len() as u32).collect(),
            text: text.into(),
        }
    }

    fn reason(text: &str, values: &[(u8, u64)]) -> Option<String> {
        match check_batch(&batch(text, values), values.len()) {
            Ok(()) => None,
            Err(PluginError::MalformedOutput { reason }) => Some(reason),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn spans_inside_the_text_on_character_boundaries_pass() {
        let text = "Zoë Acme";
        let values = [
            text_span(0, 4),          // "Zoë", ë is two bytes
            text_span(4, 5),          // " Acme", ending at the text's end
            text_span(9, 0),          // empty, at the end
            (tag::JSON, 0),           // empty JSON at the start
            (tag::INTEGER, u64::MAX), // numbers are not spans, however large
            (tag::NUMBER, f64::MAX.to_bits()),
            (tag::ABSENT, 0),
        ];
        assert_eq!(reason(text, &values), None);
    }

    #[test]
    fn a_bad_span_or_tag_anywhere_fails_the_batch_naming_it() {
        let text = "Zoë Acme";
        let outside = "a value of Name points outside the text buffer";
        for (bad, expected) in [
            (text_span(5, 5), outside),        // one past the end
            (text_span(u32::MAX, 2), outside), // offset near the top
            (text_span(3, 1), outside),        // starts inside ë
            (text_span(0, 3), outside),        // ends inside ë
            ((tag::JSON, 1 << 40), outside),   // JSON is checked too
            ((tag::JSON + 1, 0), "a value of Name has unknown tag 10"),
            ((u8::MAX, 0), "a value of Name has unknown tag 255"),
        ] {
            // Wherever the bad value sits among good ones.
            for at in 0..3 {
                let mut values = vec![text_span(0, 4); 3];
                values[at] = bad;
                assert_eq!(
                    reason(text, &values).as_deref(),
                    Some(expected),
                    "{bad:?} at {at}"
                );
            }
        }
        // All-ASCII text skips the boundary reads; bounds and tags are still checked.
        let ascii = "Acme Corp";
        assert_eq!(reason(ascii, &[text_span(5, 4), text_span(9, 0)]), None);
        for bad in [text_span(5, 5), text_span(10, 0), (tag::JSON + 1, 0)] {
            assert!(reason(ascii, &[text_span(0, 4), bad]).is_some(), "{bad:?}");
        }
    }

    fn keys(text: &str, keys: &[(u32, (u32, u32), (u32, u32))]) -> DedupKeys {
        let pack = |(offset, len): (u32, u32)| u64::from(offset) | (u64::from(len) << 32);
        DedupKeys {
            records: keys.iter().map(|k| k.0).collect(),
            names: keys.iter().map(|k| pack(k.1)).collect(),
            values: keys.iter().map(|k| pack(k.2)).collect(),
            text: text.into(),
        }
    }

    fn key_reason(keys: &DedupKeys, rows: usize) -> Option<String> {
        match check_keys(keys, rows) {
            Ok(()) => None,
            Err(PluginError::MalformedOutput { reason }) => Some(reason),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn dedup_keys_must_be_whole_on_real_rows_and_inside_their_text() {
        // "golden-id" once, then two values: "GA-1" and "Zoë".
        let text = "golden-idGA-1Zoë";
        let good = [(0, (0, 9), (9, 4)), (1, (0, 9), (13, 4))];
        assert_eq!(key_reason(&keys(text, &good), 2), None);
        assert_eq!(key_reason(&keys("", &[]), 0), None);

        assert_eq!(
            key_reason(&keys(text, &good), 1).as_deref(),
            Some("a dedup key names record 1 of 1")
        );
        let outside = Some("a dedup key points outside the text buffer");
        for bad in [
            (1, (0, 9), (13, 5)),       // one past the end
            (1, (0, 9), (16, 1)),       // starts inside ë
            (1, (17, 1), (9, 4)),       // a name past the end
            (1, (u32::MAX, 2), (9, 4)), // an offset near the top
        ] {
            let mut all = good.to_vec();
            all[1] = bad;
            assert_eq!(
                key_reason(&keys(text, &all), 2).as_deref(),
                outside,
                "{bad:?}"
            );
        }

        let mut ragged = keys(text, &good);
        ragged.values.pop();
        assert_eq!(
            key_reason(&ragged, 2).as_deref(),
            Some("dedup keys have 2 records, 2 names and 1 values")
        );
        let mut ragged = keys(text, &good);
        ragged.names.push(0);
        assert!(key_reason(&ragged, 2).is_some());
    }
}
