//! The wire encoding of a column: one tag and one 64-bit payload per record, in two flat
//! integer lists that cross the component boundary as block copies (see `column` in the
//! WIT). This module is the only place that knows the tag numbers and payload packing.
//!
//! Decoding never panics: an unknown tag reads as null and a span that does not fit the
//! text reads as empty, so a host bug cannot crash a plugin mid-batch.

use std::borrow::Cow;

use crate::batch::Val;
use crate::bindings::weft::plugin::types::Column;

/// A slice of a batch's shared text buffer: bytes `[offset, offset + len)`, as the WIT
/// `span` describes it. On the wire a span is packed into one 64-bit payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: u32,
    pub len: u32,
}

/// One raw field value, as the WIT `value` variant describes it: what one (tag, payload)
/// pair of a [`Column`] holds. Plugin code reads [`Val`]s instead; this is for the rare
/// plugin that builds raw batches by hand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Absent,
    Null,
    Boolean(bool),
    Integer(i64),
    Number(f64),
    Text(Span),
    Date(i32),
    Datetime(i64),
    Time(u32),
    Json(Span),
}

/// Case indices of the WIT `value` variant, as carried in `column.tags`.
pub(crate) mod tag {
    pub const ABSENT: u8 = 0;
    pub const NULL: u8 = 1;
    pub const BOOLEAN: u8 = 2;
    pub const INTEGER: u8 = 3;
    pub const NUMBER: u8 = 4;
    pub const TEXT: u8 = 5;
    pub const DATE: u8 = 6;
    pub const DATETIME: u8 = 7;
    pub const TIME: u8 = 8;
    pub const JSON: u8 = 9;
}

#[inline]
pub(crate) fn span_payload(span: Span) -> u64 {
    u64::from(span.offset) | (u64::from(span.len) << 32)
}

#[inline]
pub(crate) fn payload_span(payload: u64) -> Span {
    Span {
        offset: payload as u32,
        len: (payload >> 32) as u32,
    }
}

/// Reads a span of `text`; a span that does not fit reads as empty.
#[inline]
pub(crate) fn span_text(text: &str, span: Span) -> &str {
    let start = span.offset as usize;
    text.get(start..start.saturating_add(span.len as usize))
        .unwrap_or_default()
}

/// The typed value of one (tag, payload) pair, borrowing text from `text`.
#[inline]
pub(crate) fn read<'a>(text: &'a str, tag: u8, payload: u64) -> Val<'a> {
    match tag {
        tag::ABSENT => Val::Absent,
        tag::BOOLEAN => Val::Bool(payload != 0),
        tag::INTEGER => Val::Int(payload as i64),
        tag::NUMBER => Val::Num(f64::from_bits(payload)),
        tag::TEXT => Val::Text(Cow::Borrowed(span_text(text, payload_span(payload)))),
        tag::DATE => Val::Date(payload as i64 as i32),
        tag::DATETIME => Val::DateTime(payload as i64),
        tag::TIME => Val::Time(payload as u32),
        tag::JSON => Val::Json(Cow::Borrowed(span_text(text, payload_span(payload)))),
        // Null, or a tag this SDK does not know.
        _ => Val::Null,
    }
}

/// Appends `s` to `text` and returns its span. Forced inline, like the field write that
/// calls it (see `BatchBuilder::set`).
#[inline(always)]
pub(crate) fn append_span(text: &mut String, s: &str) -> Span {
    // Offsets are u32 by contract; a batch cannot reach 4 GiB inside a sandbox whose
    // memory is capped far lower, and the host rejects any span that does not fit.
    let offset = u32::try_from(text.len()).unwrap_or(u32::MAX);
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    text.push_str(s);
    Span { offset, len }
}

/// Where the text of a value being written goes.
pub(crate) struct TextSink<'t> {
    pub text: &'t mut String,
    /// Text the sink's buffer starts with, byte for byte: a value that borrows from it
    /// keeps its span instead of being copied again.
    pub shared: &'t str,
}

impl TextSink<'_> {
    #[inline]
    fn span(&mut self, s: &str) -> Span {
        let base = self.shared.as_ptr() as usize;
        let start = s.as_ptr() as usize;
        if !s.is_empty() && start >= base && start + s.len() <= base + self.shared.len() {
            // `s` lies inside `shared`, so it sits at the same offset of `text`.
            return Span {
                offset: (start - base) as u32,
                len: s.len() as u32,
            };
        }
        append_span(self.text, s)
    }

    /// Encodes `value`, appending its text if it has any.
    #[inline]
    pub fn write(&mut self, value: &Val<'_>) -> (u8, u64) {
        match value {
            Val::Absent => (tag::ABSENT, 0),
            Val::Null => (tag::NULL, 0),
            Val::Bool(b) => (tag::BOOLEAN, u64::from(*b)),
            Val::Int(i) => (tag::INTEGER, *i as u64),
            Val::Num(n) => (tag::NUMBER, n.to_bits()),
            Val::Text(s) => (tag::TEXT, span_payload(self.span(s))),
            Val::Date(d) => (tag::DATE, i64::from(*d) as u64),
            Val::DateTime(t) => (tag::DATETIME, *t as u64),
            Val::Time(t) => (tag::TIME, u64::from(*t)),
            Val::Json(s) => (tag::JSON, span_payload(self.span(s))),
        }
    }
}

/// Helpers for plugins that build raw batches themselves (rare: the SDK's builders do it).
impl Column {
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            tags: Vec::with_capacity(rows),
            payloads: Vec::with_capacity(rows),
        }
    }

    /// Records in the column; a malformed column with lists of unequal length counts
    /// only the records it fully holds.
    pub fn len(&self) -> usize {
        self.tags.len().min(self.payloads.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one value.
    pub fn push(&mut self, value: Value) {
        let (tag, payload) = encode(value);
        self.tags.push(tag);
        self.payloads.push(payload);
    }

    /// The value of record `row`, if the column holds it.
    pub fn get(&self, row: usize) -> Option<Value> {
        Some(decode(*self.tags.get(row)?, *self.payloads.get(row)?))
    }

    /// Sets the length to `rows`, padding with absent values.
    pub(crate) fn resize(&mut self, rows: usize) {
        self.tags.resize(rows, tag::ABSENT);
        self.payloads.resize(rows, 0);
    }

    /// Writes record `row`, padding the rows before it with absent values.
    #[inline]
    pub(crate) fn put(&mut self, row: usize, tag: u8, payload: u64) {
        if self.tags.len() == row && self.payloads.len() == row {
            self.tags.push(tag);
            self.payloads.push(payload);
            return;
        }
        if self.len() <= row {
            self.resize(row + 1);
        }
        if let (Some(t), Some(p)) = (self.tags.get_mut(row), self.payloads.get_mut(row)) {
            *t = tag;
            *p = payload;
        }
    }
}

/// The (tag, payload) of a raw WIT value.
pub(crate) fn encode(value: Value) -> (u8, u64) {
    match value {
        Value::Absent => (tag::ABSENT, 0),
        Value::Null => (tag::NULL, 0),
        Value::Boolean(b) => (tag::BOOLEAN, u64::from(b)),
        Value::Integer(i) => (tag::INTEGER, i as u64),
        Value::Number(n) => (tag::NUMBER, n.to_bits()),
        Value::Text(span) => (tag::TEXT, span_payload(span)),
        Value::Date(d) => (tag::DATE, i64::from(d) as u64),
        Value::Datetime(t) => (tag::DATETIME, t as u64),
        Value::Time(t) => (tag::TIME, u64::from(t)),
        Value::Json(span) => (tag::JSON, span_payload(span)),
    }
}

/// The raw WIT value of a (tag, payload) pair; an unknown tag reads as null.
pub(crate) fn decode(tag: u8, payload: u64) -> Value {
    match tag {
        tag::ABSENT => Value::Absent,
        tag::BOOLEAN => Value::Boolean(payload != 0),
        tag::INTEGER => Value::Integer(payload as i64),
        tag::NUMBER => Value::Number(f64::from_bits(payload)),
        tag::TEXT => Value::Text(payload_span(payload)),
        tag::DATE => Value::Date(payload as i64 as i32),
        tag::DATETIME => Value::Datetime(payload as i64),
        tag::TIME => Value::Time(payload as u32),
        tag::JSON => Value::Json(payload_span(payload)),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_survives_encoding() {
        let span = Span {
            offset: 7,
            len: u32::MAX,
        };
        for value in [
            Value::Absent,
            Value::Null,
            Value::Boolean(true),
            Value::Integer(i64::MIN),
            Value::Number(-0.5),
            Value::Text(span),
            Value::Date(-719_468),
            Value::Datetime(-1),
            Value::Time(86_399_999),
            Value::Json(span),
        ] {
            let (tag, payload) = encode(value);
            assert_eq!(decode(tag, payload), value);
        }
        assert_eq!(decode(200, 1), Value::Null);
    }

    #[test]
    fn borrowed_text_keeps_its_span() {
        let shared = "hello world";
        let mut text = shared.to_owned();
        let mut sink = TextSink {
            text: &mut text,
            shared,
        };
        let (_, inside) = sink.write(&Val::from(&shared[6..]));
        assert_eq!(payload_span(inside), Span { offset: 6, len: 5 });
        let (_, outside) = sink.write(&Val::from("!"));
        assert_eq!(payload_span(outside), Span { offset: 11, len: 1 });
        assert_eq!(text, "hello world!");
    }
}
