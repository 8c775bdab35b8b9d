//! The wire encoding of a batch column (see `column` in the WIT): a tag and a 64-bit
//! payload per record in two flat integer lists, which cross the component boundary as
//! block copies. Host code reads and writes columns through typed [`Value`]s; only this
//! module knows the tag numbers and payload packing.

use super::types::Column;

/// A slice of a batch's shared text buffer: bytes `[offset, offset + len)`, as the WIT
/// `span` describes it. On the wire a span is packed into one 64-bit payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: u32,
    pub len: u32,
}

/// One field value of one record, as the WIT `value` variant describes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// The record does not carry the field: leave the target as it is.
    Absent,
    /// The field is empty: clear the target.
    Null,
    Boolean(bool),
    Integer(i64),
    Number(f64),
    Text(Span),
    /// Days since 1970-01-01.
    Date(i32),
    /// Milliseconds since the Unix epoch.
    Datetime(i64),
    /// Milliseconds since midnight.
    Time(u32),
    /// A compound value as JSON text.
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

pub(crate) fn span_payload(span: Span) -> u64 {
    u64::from(span.offset) | (u64::from(span.len) << 32)
}

/// The span a text or JSON payload (or a dedup key's packed name or value) holds.
pub fn payload_span(payload: u64) -> Span {
    Span {
        offset: payload as u32,
        len: (payload >> 32) as u32,
    }
}

fn encode(value: Value) -> (u8, u64) {
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

/// The value of a (tag, payload) pair; `None` for a tag the contract does not define.
fn decode(tag: u8, payload: u64) -> Option<Value> {
    Some(match tag {
        tag::ABSENT => Value::Absent,
        tag::NULL => Value::Null,
        tag::BOOLEAN => Value::Boolean(payload != 0),
        tag::INTEGER => Value::Integer(payload as i64),
        tag::NUMBER => Value::Number(f64::from_bits(payload)),
        tag::TEXT => Value::Text(payload_span(payload)),
        tag::DATE => Value::Date(payload as i64 as i32),
        tag::DATETIME => Value::Datetime(payload as i64),
        tag::TIME => Value::Time(payload as u32),
        tag::JSON => Value::Json(payload_span(payload)),
        _ => return None,
    })
}

impl Column {
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            tags: Vec::with_capacity(rows),
            payloads: Vec::with_capacity(rows),
        }
    }

    /// Records the column fully holds (a malformed column may have lists of unequal
    /// length; [`super::output`] rejects those).
    pub fn len(&self) -> usize {
        self.tags.len().min(self.payloads.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, value: Value) {
        let (tag, payload) = encode(value);
        self.tags.push(tag);
        self.payloads.push(payload);
    }

    /// Sets record `row`, padding the records before it with absent values.
    pub fn set(&mut self, row: usize, value: Value) {
        if self.tags.len() == row && self.payloads.len() == row {
            self.push(value);
            return;
        }
        if self.len() <= row {
            self.tags.resize(row + 1, tag::ABSENT);
            self.payloads.resize(row + 1, 0);
        }
        let (tag, payload) = encode(value);
        if let (Some(t), Some(p)) = (self.tags.get_mut(row), self.payloads.get_mut(row)) {
            *t = tag;
            *p = payload;
        }
    }

    /// The value of record `row`: `None` past the end or for an undefined tag.
    pub fn get(&self, row: usize) -> Option<Value> {
        decode(*self.tags.get(row)?, *self.payloads.get(row)?)
    }

    /// Every value in record order; undefined tags read as `None`.
    pub fn values(&self) -> impl Iterator<Item = Option<Value>> + '_ {
        self.tags
            .iter()
            .zip(&self.payloads)
            .map(|(&tag, &payload)| decode(tag, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_survives_a_column() {
        let span = Span {
            offset: 3,
            len: u32::MAX,
        };
        let values = [
            Value::Absent,
            Value::Null,
            Value::Boolean(false),
            Value::Integer(-42),
            Value::Number(f64::MAX),
            Value::Text(span),
            Value::Date(-1),
            Value::Datetime(i64::MIN),
            Value::Time(1),
            Value::Json(span),
        ];
        let mut column = Column::with_capacity(values.len());
        values.iter().for_each(|v| column.push(*v));
        let back: Vec<_> = column.values().collect();
        assert_eq!(back, values.map(Some));
        column.set(12, Value::Null);
        assert_eq!(column.get(11), Some(Value::Absent));
        assert_eq!(column.len(), 13);
        column.tags[0] = 10;
        assert_eq!(column.get(0), None);
    }
}
