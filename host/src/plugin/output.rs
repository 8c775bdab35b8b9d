//! Checks what a plugin returned before the host trusts any of it.
//!
//! A plugin is untrusted code: its output may have ragged columns, spans past the end of
//! its text, references to records that do not exist, or simply be enormous. Any of these
//! fails the whole batch as malformed, so nothing downstream ever indexes out of bounds.
//! It also enforces the contract that no record vanishes: each input record produces
//! output or a per-record error.

use super::bindings::chain::ChainResult;
use super::column::{Span, payload_span, tag};
use super::error::{OutputMeasure, PluginError};
use super::limits::CallLimits;
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

/// What a call's output will cost the host once decoded, counted from its shape before any
/// of it is decoded: every caller turns rows into records and text spans into strings, and
/// those copies, not the wire form, are what a hostile plugin amplifies. Counting is per
/// batch, field, key and error; the one per-value part (the text each value decodes to) is
/// summed in the bounds check that already reads every value.
#[derive(Debug, Default)]
struct Size {
    bytes: usize,
    rows: usize,
    values: usize,
}

impl Size {
    fn batch(&mut self, batch: &Batch) {
        let rows = batch.sources.len();
        self.rows = self.rows.saturating_add(rows);
        self.values = self
            .values
            .saturating_add(rows.saturating_mul(batch.fields.len()));
        self.bytes = self.bytes.saturating_add(batch_bytes(batch));
    }

    fn keys(&mut self, keys: &DedupKeys) {
        self.values = self.values.saturating_add(keys.records.len());
        self.bytes = self.bytes.saturating_add(keys_bytes(keys));
    }

    fn errors(&mut self, errors: &[RecordError]) {
        let reasons: usize = errors.iter().map(|e| e.reason.len()).sum();
        let each = std::mem::size_of::<RecordError>();
        self.bytes = self
            .bytes
            .saturating_add(reasons)
            .saturating_add(errors.len().saturating_mul(each));
    }

    /// Text values' own copies, once [`check_batch`] or [`check_keys`] has summed them.
    fn decoded(&mut self, text_bytes: usize) {
        self.bytes = self.bytes.saturating_add(text_bytes);
    }

    fn check(&self, limits: &CallLimits) -> Result<(), PluginError> {
        for (measure, count, cap) in [
            (OutputMeasure::Rows, self.rows, limits.max_output_rows),
            (OutputMeasure::Values, self.values, limits.max_output_values),
            (OutputMeasure::Bytes, self.bytes, limits.max_output_bytes),
        ] {
            if count > cap {
                return Err(PluginError::OutputTooLarge {
                    measure,
                    count,
                    cap,
                });
            }
        }
        Ok(())
    }
}

/// Bytes a batch occupies once lifted into the host: its buffers and the fixed cost of
/// each string, column and the batch itself.
fn batch_bytes(batch: &Batch) -> usize {
    let values: usize = batch
        .columns
        .iter()
        .map(|c| c.tags.len() + c.payloads.len() * 8 + std::mem::size_of::<Column>())
        .sum();
    let names: usize = batch
        .fields
        .iter()
        .map(|f| f.len() + std::mem::size_of::<String>())
        .sum();
    batch.text.len() + names + values + batch.sources.len() * 4 + std::mem::size_of::<Batch>()
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

/// Checks `batch`'s layout; returns the bytes its text values decode to.
fn check_batch(batch: &Batch, input_len: usize) -> Result<usize, PluginError> {
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
    let mut decoded = 0usize;
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
        match values_in_bounds(&column.tags, &column.payloads, &batch.text, text_is_ascii) {
            Some(text_bytes) => decoded = decoded.saturating_add(text_bytes),
            None => return Err(malformed(bad_value(field, column, &batch.text))),
        }
    }
    Ok(decoded)
}

/// Whether every tag is known and every text or JSON span lies in `text` on character
/// boundaries, and if so the bytes those spans cover, each counted as often as it is used
/// (the copies the host makes decoding them). Branch-free per value (the checks are or-ed,
/// not short-circuited), because it runs over every value of every batch; [`bad_value`]
/// finds the culprit afterwards.
///
/// `text_is_ascii` (of the whole buffer, checked once per batch) skips the boundary checks:
/// every offset of ASCII text is a boundary, and those checks are the costly part, a read
/// at a random place in a buffer of some hundred KiB for each end of each span.
fn values_in_bounds(
    tags: &[u8],
    payloads: &[u64],
    text: &str,
    text_is_ascii: bool,
) -> Option<usize> {
    let bytes = text.as_bytes();
    let text_len = bytes.len() as u64;
    // A UTF-8 continuation byte is 0b10xx_xxxx: below -0x40 as a signed byte. The end of
    // the text is a boundary; past it, the bounds check fails anyway.
    let boundary = |at: u64| bytes.get(at as usize).is_none_or(|&b| (b as i8) >= -0x40);
    let mut bad = false;
    // At most 2^32 values of at most 2^32 bytes each: a u64 sum cannot overflow.
    let mut decoded = 0u64;
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
        decoded += len;
    }
    (!bad).then(|| usize::try_from(decoded).unwrap_or(usize::MAX))
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

/// Which input records the output accounts for, and how many output records each became.
struct Coverage {
    rows: Vec<u32>,
    failed: Vec<bool>,
}

impl Coverage {
    fn new(input_len: usize) -> Self {
        Self {
            rows: vec![0; input_len],
            failed: vec![false; input_len],
        }
    }

    /// Counts `batch`'s rows; its sources must already be checked to be in range.
    fn rows(&mut self, batch: &Batch) {
        for &source in &batch.sources {
            if let Some(n) = self.rows.get_mut(source as usize) {
                *n = n.saturating_add(1);
            }
        }
    }

    /// Marks the records `errors` name; they must already be checked to be in range.
    fn errors(&mut self, errors: &[RecordError]) {
        for error in errors {
            if let Some(failed) = self.failed.get_mut(error.record as usize) {
                *failed = true;
            }
        }
    }

    /// No record vanished, and none fanned out past `max_fanout`.
    fn check(&self, max_fanout: usize) -> Result<(), PluginError> {
        let all = self.rows.iter().zip(&self.failed).enumerate();
        for (record, (&rows, &failed)) in all {
            if rows == 0 && !failed {
                return Err(malformed(format!(
                    "record {record} produced neither output nor an error"
                )));
            }
            if rows as usize > max_fanout {
                return Err(PluginError::FanoutExceeded {
                    record: u32::try_from(record).unwrap_or(u32::MAX),
                    rows: rows as usize,
                    cap: max_fanout,
                });
            }
        }
        Ok(())
    }
}

pub fn check_batch_result(
    result: &BatchResult,
    input_len: usize,
    limits: &CallLimits,
) -> Result<(), PluginError> {
    let mut size = Size::default();
    result.batches.iter().for_each(|b| size.batch(b));
    size.errors(&result.errors);
    size.check(limits)?;
    check_errors(&result.errors, input_len)?;
    let mut coverage = Coverage::new(input_len);
    for batch in &result.batches {
        size.decoded(check_batch(batch, input_len)?);
        coverage.rows(batch);
    }
    size.check(limits)?;
    coverage.errors(&result.errors);
    coverage.check(limits.max_fanout)
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
    limits: &CallLimits,
) -> Result<(), PluginError> {
    let mut size = Size::default();
    size.keys(&result.keys);
    size.errors(&result.errors);
    size.check(limits)?;
    check_errors(&result.errors, input_len)?;
    size.decoded(check_keys(&result.keys, input_len)?);
    size.check(limits)
}

/// Bytes dedup keys occupy once lifted, before their text is copied out per key.
fn keys_bytes(keys: &DedupKeys) -> usize {
    keys.text.len() + keys.records.len() * 4 + (keys.names.len() + keys.values.len()) * 8
}

/// Keys come in whole (one record, name and value each), name rows of a `rows`-record
/// batch, and point inside their text on character boundaries. Returns the bytes the keys
/// decode to: a name and a value string each.
fn check_keys(keys: &DedupKeys, rows: usize) -> Result<usize, PluginError> {
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
    let mut decoded = count.saturating_mul(2 * std::mem::size_of::<String>());
    for &packed in keys.names.iter().chain(&keys.values) {
        match span_text(&keys.text, payload_span(packed)) {
            Some(text) => decoded = decoded.saturating_add(text.len()),
            None => return Err(malformed("a dedup key points outside the text buffer")),
        }
    }
    Ok(decoded)
}

/// A chain call's output: every batch well formed with sources in the input, every key on
/// a row of its batch, every error on an input record, no input record unaccounted for or
/// fanned out past the cap, and the whole within the output caps.
pub fn check_chain(
    result: &ChainResult,
    input_len: usize,
    limits: &CallLimits,
) -> Result<(), PluginError> {
    let mut size = Size::default();
    for produced in &result.batches {
        size.batch(&produced.batch);
        size.keys(&produced.keys);
    }
    let reasons: usize = result.errors.iter().map(|e| e.reason.len()).sum();
    size.bytes = size.bytes.saturating_add(reasons);
    size.check(limits)?;
    let mut coverage = Coverage::new(input_len);
    if let Some(error) = result
        .errors
        .iter()
        .find(|e| e.record as usize >= input_len)
    {
        return Err(malformed(format!(
            "an error names record {} of a {input_len}-record batch",
            error.record
        )));
    }
    for error in &result.errors {
        if let Some(failed) = coverage.failed.get_mut(error.record as usize) {
            *failed = true;
        }
    }
    for produced in &result.batches {
        size.decoded(check_batch(&produced.batch, input_len)?);
        size.decoded(check_keys(&produced.keys, produced.batch.sources.len())?);
        coverage.rows(&produced.batch);
    }
    size.check(limits)?;
    coverage.check(limits.max_fanout)
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
            Ok(_) => None,
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

    /// A key as `(record, (name offset, length), (value offset, length))`.
    type Key = (u32, (u32, u32), (u32, u32));

    fn keys(text: &str, keys: &[Key]) -> DedupKeys {
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
            Ok(_) => None,
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
