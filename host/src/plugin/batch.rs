//! Building columnar batches on the host side and turning them back into JSON.
//!
//! JSON is how records arrive from webhooks and the CLI and how they leave for sinks;
//! the columnar batch is how they cross into plugins. Typed values map as: null, booleans,
//! integers and floats to themselves; strings to text; objects and arrays to `json`;
//! dates, datetimes and times to their ISO 8601 text. A key a record does not carry is
//! `absent` (leave the target untouched), never `null` (clear it), and absent values are
//! left out of the JSON again on the way back.

use std::collections::HashMap;

use serde_json::{Map, Number, Value as Json};

use super::column::{Span, Value};
use super::output::span_text;
use super::types::{Batch, Column};

/// The most values (fields × records) one batch built from records holds
/// ([`super::batches_from_texts`]):
/// 1,048,576, about 9 MiB of tags and payloads. A batch is as wide as the union of its
/// records' fields, so records with disjoint field names make it grow with the square of
/// the record count; cutting the batch there keeps host memory and plugin time linear in
/// the input. Ordinary batches (200 records × 30 fields is 6,000 values) never reach it.
pub const MAX_BATCH_CELLS: usize = 1 << 20;

/// Builds a batch record by record; fields are added as they first appear and earlier
/// records read absent for them. Fields are found through an index, so building is linear
/// in the values set however many distinct fields the records carry.
#[derive(Debug)]
pub struct BatchBuilder {
    batch: Batch,
    columns_by_field: HashMap<String, usize>,
    /// The column after the one last set: records of one kind carry their fields in the
    /// same order, so this is nearly always the next field's, found without hashing.
    next_column: usize,
}

impl BatchBuilder {
    pub fn new(object: &str) -> Self {
        Self {
            batch: Batch {
                object: object.to_owned(),
                fields: Vec::new(),
                columns: Vec::new(),
                sources: Vec::new(),
                text: String::new(),
            },
            columns_by_field: HashMap::new(),
            next_column: 0,
        }
    }

    /// Starts with a known field list, reserving room for `rows` records.
    pub fn with_fields(object: &str, fields: &[&str], rows: usize) -> Self {
        let mut builder = Self::new(object);
        builder.batch.sources.reserve(rows);
        for field in fields {
            builder.column(field);
        }
        builder
    }

    pub fn len(&self) -> usize {
        self.batch.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.sources.is_empty()
    }

    /// Appends a record; returns its index. Its fields are absent until set.
    pub fn push_record(&mut self) -> usize {
        self.next_column = 0;
        let row = self.batch.sources.len();
        self.batch.sources.push(row as u32);
        row
    }

    /// Fields the batch has so far.
    pub fn field_count(&self) -> usize {
        self.batch.fields.len()
    }

    /// Whether the batch already has a column for `field`.
    pub fn has_field(&self, field: &str) -> bool {
        self.columns_by_field.contains_key(field)
    }

    fn column(&mut self, field: &str) -> usize {
        let i = self.find_column(field);
        self.next_column = i + 1;
        i
    }

    fn find_column(&mut self, field: &str) -> usize {
        if self
            .batch
            .fields
            .get(self.next_column)
            .is_some_and(|next| next == field)
        {
            return self.next_column;
        }
        if let Some(&i) = self.columns_by_field.get(field) {
            return i;
        }
        let i = self.batch.columns.len();
        self.batch.fields.push(field.to_owned());
        self.batch
            .columns
            .push(Column::with_capacity(self.batch.sources.capacity()));
        self.columns_by_field.insert(field.to_owned(), i);
        i
    }

    /// Columns grow lazily to the last record that set them; [`BatchBuilder::finish`]
    /// pads them, so starting a record costs nothing per field.
    fn put(&mut self, row: usize, field: &str, value: Value) {
        let column = self.column(field);
        if let Some(column) = self.batch.columns.get_mut(column) {
            column.set(row, value);
        }
    }

    fn span(&mut self, s: &str) -> Span {
        let offset = u32::try_from(self.batch.text.len()).unwrap_or(u32::MAX);
        self.batch.text.push_str(s);
        Span {
            offset,
            len: u32::try_from(s.len()).unwrap_or(u32::MAX),
        }
    }

    pub fn set_text(&mut self, row: usize, field: &str, text: &str) {
        let span = self.span(text);
        self.put(row, field, Value::Text(span));
    }

    /// Sets a scalar (non-text) value.
    pub fn set_value(&mut self, row: usize, field: &str, value: Value) {
        self.put(row, field, value);
    }

    /// Sets a JSON object or array from its text.
    pub fn set_json_text(&mut self, row: usize, field: &str, json: &str) {
        let span = self.span(json);
        self.put(row, field, Value::Json(span));
    }

    pub fn set_json(&mut self, row: usize, field: &str, value: &Json) {
        let value = match value {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Boolean(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Integer(i),
                None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => Value::Text(self.span(s)),
            compound => Value::Json(self.span(&compound.to_string())),
        };
        self.put(row, field, value);
    }

    /// Appends a record with every key of `record` as a field.
    pub fn push_json(&mut self, record: &Map<String, Json>) {
        let row = self.push_record();
        for (field, value) in record {
            self.set_json(row, field, value);
        }
    }

    pub fn finish(mut self) -> Batch {
        let rows = self.batch.sources.len();
        for column in &mut self.batch.columns {
            if column.len() < rows {
                column.set(rows - 1, Value::Absent);
            }
        }
        self.batch
    }
}

/// A batch of `object` from JSON objects; every key becomes a field.
pub fn batch_from_json(object: &str, records: &[Map<String, Json>]) -> Batch {
    let mut builder = BatchBuilder::new(object);
    builder.batch.sources.reserve(records.len());
    for record in records {
        builder.push_json(record);
    }
    builder.finish()
}

/// One value as JSON. Out-of-range spans (which checked output never has) read as null.
pub fn value_to_json(text: &str, value: &Value) -> Json {
    match *value {
        Value::Absent | Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Integer(i) => Json::from(i),
        Value::Number(n) => Number::from_f64(n).map_or(Json::Null, Json::Number),
        Value::Text(span) => {
            span_text(text, span).map_or(Json::Null, |s| Json::String(s.to_owned()))
        }
        Value::Json(span) => span_text(text, span)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Json::Null),
        Value::Date(days) => Json::String(format_date(days)),
        Value::Datetime(ms) => Json::String(format_datetime(ms)),
        Value::Time(ms) => Json::String(format!(
            "{:02}:{:02}:{:02}.{:03}Z",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )),
    }
}

fn format_date(days: i32) -> String {
    let epoch = jiff::civil::date(1970, 1, 1);
    epoch
        .checked_add(jiff::Span::new().days(i64::from(days)))
        .map_or_else(|_| format!("invalid-date({days})"), |d| d.to_string())
}

fn format_datetime(ms: i64) -> String {
    crate::stamp::format_ms(ms)
}

/// One record of a batch as a JSON object: null fields included (as Salesforce sends
/// them), absent ones left out.
pub fn record_to_json(batch: &Batch, row: usize) -> Map<String, Json> {
    batch
        .fields
        .iter()
        .zip(&batch.columns)
        .filter_map(|(field, column)| match column.get(row) {
            None | Some(Value::Absent) => None,
            Some(value) => Some((field.clone(), value_to_json(&batch.text, &value))),
        })
        .collect()
}

/// The records of a batch as JSON objects; see [`record_to_json`].
pub fn batch_to_json(batch: &Batch) -> Vec<Map<String, Json>> {
    (0..batch.sources.len())
        .map(|row| record_to_json(batch, row))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[(&str, Json)]) -> Map<String, Json> {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn records_with_the_same_fields_share_one_batch() {
        let records: Vec<_> = (0..200)
            .map(|i| record(&[("name", Json::from(format!("n{i}"))), ("n", Json::from(i))]))
            .collect();
        let batch = batch_from_json("company", &records);
        assert_eq!(batch.fields, ["n", "name"]);
        assert_eq!(batch.sources.len(), 200);
        assert_eq!(batch_to_json(&batch), records);
    }

    #[test]
    fn a_field_set_again_in_a_later_record_keeps_its_column() {
        let mut builder = BatchBuilder::with_fields("company", &["a", "b"], 2);
        let row = builder.push_record();
        builder.set_text(row, "b", "x");
        let row = builder.push_record();
        builder.set_text(row, "c", "y");
        builder.set_text(row, "a", "z");
        let batch = builder.finish();
        assert_eq!(batch.fields, ["a", "b", "c"]);
        let rows = batch_to_json(&batch);
        assert_eq!(rows[0], record(&[("b", Json::from("x"))]));
        assert_eq!(
            rows[1],
            record(&[("a", Json::from("z")), ("c", Json::from("y"))])
        );
    }
}
