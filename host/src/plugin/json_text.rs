//! Records read from their JSON text straight into batches, with no JSON tree per record:
//! how stored outbound events reach the map call.
//!
//! Values land as [`BatchBuilder::set_json`] puts a parsed value: null, booleans, numbers
//! (an integer when it fits an `i64`), strings as text, objects and arrays as their JSON
//! text. That text is the record's own; records written by `serde_json` (every stored
//! event) are compact, so it is what serialising the parsed value gives.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Number;
use serde_json::value::RawValue;

use super::batch::BatchBuilder;
use super::column::Value;
use super::types::Batch;

/// A batch and where its rows came from.
#[derive(Debug)]
pub struct TextBatch {
    pub batch: Batch,
    /// Row `r` of the batch is record `records[r]` of the input.
    pub records: Vec<usize>,
}

/// The batches read from a list of records, and the records that could not be read.
#[derive(Debug, Default)]
pub struct TextBatches {
    pub batches: Vec<TextBatch>,
    /// Input index and why; such a record is in no batch.
    pub unreadable: Vec<(usize, String)>,
}

/// Batches of `object` from records given as JSON object text, in order, none holding more
/// than `max_cells` values (fields × records; see [`super::MAX_BATCH_CELLS`]). A record
/// wider than `max_cells` still gets a batch of its own.
pub fn batches_from_texts<'a>(
    object: &str,
    records: impl IntoIterator<Item = &'a str>,
    max_cells: usize,
) -> TextBatches {
    let mut out = TextBatches::default();
    let mut builder = BatchBuilder::new(object);
    let mut rows: Vec<usize> = Vec::new();
    // One record's members, reused: a record is read whole before any of it is set, so
    // the batch can be cut before a record that would overfill it.
    let mut members: Vec<(Cow<'a, str>, &'a RawValue)> = Vec::new();
    for (index, text) in records.into_iter().enumerate() {
        members.clear();
        if let Err(error) = read_members(text, &mut members) {
            out.unreadable.push((index, error.to_string()));
            continue;
        }
        let cells = |new_fields: usize| {
            (builder.field_count() + new_fields).saturating_mul(builder.len() + 1)
        };
        // Counting the record's new fields takes a lookup per field; only a batch near its
        // bound needs it.
        let overfull = cells(members.len()) > max_cells && {
            let new_fields = members
                .iter()
                .filter(|(field, _)| !builder.has_field(field))
                .count();
            cells(new_fields) > max_cells
        };
        if !builder.is_empty() && overfull {
            let full = std::mem::replace(&mut builder, BatchBuilder::new(object));
            out.batches.push(TextBatch {
                batch: full.finish(),
                records: std::mem::take(&mut rows),
            });
        }
        let row = builder.push_record();
        rows.push(index);
        for (field, value) in &members {
            if let Err(error) = set_raw(&mut builder, row, field, value) {
                // Cannot happen for text that parsed as a value; the record still goes in,
                // with this field null, rather than vanish.
                tracing::warn!(%field, %error, "a record value could not be read");
                builder.set_value(row, field, Value::Null);
            }
        }
    }
    if !builder.is_empty() {
        out.batches.push(TextBatch {
            batch: builder.finish(),
            records: rows,
        });
    }
    out
}

/// Sets one value from its JSON text.
fn set_raw(
    builder: &mut BatchBuilder,
    row: usize,
    field: &str,
    raw: &RawValue,
) -> Result<(), serde_json::Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'n') => builder.set_value(row, field, Value::Null),
        Some(b't') => builder.set_value(row, field, Value::Boolean(true)),
        Some(b'f') => builder.set_value(row, field, Value::Boolean(false)),
        Some(b'"') => match text.get(1..text.len() - 1) {
            Some(inner) if !inner.contains('\\') => builder.set_text(row, field, inner),
            _ => builder.set_text(row, field, &serde_json::from_str::<String>(text)?),
        },
        Some(b'{' | b'[') => builder.set_json_text(row, field, text),
        _ => {
            let number: Number = serde_json::from_str(text)?;
            let value = match number.as_i64() {
                Some(i) => Value::Integer(i),
                None => Value::Number(number.as_f64().unwrap_or(f64::NAN)),
            };
            builder.set_value(row, field, value);
        }
    }
    Ok(())
}

/// The members of the JSON object `text`, in order, values as their text.
fn read_members<'a>(
    text: &'a str,
    out: &mut Vec<(Cow<'a, str>, &'a RawValue)>,
) -> Result<(), serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_str(text);
    reader.deserialize_map(Members(out))?;
    reader.end()
}

struct Members<'o, 'a>(&'o mut Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Visitor<'a> for Members<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            let value: &'a RawValue = map.next_value()?;
            self.0.push((key, value));
        }
        Ok(())
    }
}

/// A member name, borrowed from the text when it has no escapes.
struct Key;

impl<'a> DeserializeSeed<'a> for Key {
    type Value = Cow<'a, str>;

    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<Cow<'a, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'a> Visitor<'a> for Key {
    type Value = Cow<'a, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'a str) -> Result<Cow<'a, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cow<'a, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value as Json, json};

    use super::*;
    use crate::plugin::{MAX_BATCH_CELLS, batch_from_json, batch_to_json};

    fn texts(records: &[Map<String, Json>]) -> Vec<String> {
        records
            .iter()
            .map(|r| Json::Object(r.clone()).to_string())
            .collect()
    }

    fn read(records: &[String], max_cells: usize) -> TextBatches {
        batches_from_texts("company", records.iter().map(String::as_str), max_cells)
    }

    #[test]
    fn a_record_reads_as_its_parsed_value_would() {
        let record = json!({
            "name": "Zoë \"Z\" O'Neil\n, Ltd.",
            "plain": "ascii",
            "n": 42,
            "big": 18_446_744_073_709_551_615u64,
            "negative": -7,
            "ratio": 0.1,
            "whole": 3.0,
            "flag": true,
            "off": false,
            "gone": null,
            "address": {"city": "Köln", "lines": ["a", "b\"c"]},
            "tags": [1, "two", null],
            "empty": {},
        });
        let Json::Object(record) = record else {
            unreachable!()
        };
        let records = [record];
        let read = read(&texts(&records), MAX_BATCH_CELLS);
        assert!(read.unreadable.is_empty());
        assert_eq!(read.batches.len(), 1);
        let batch = &read.batches[0].batch;
        let expected = batch_from_json("company", &records);
        assert_eq!(batch.fields, expected.fields);
        assert_eq!(batch_to_json(batch), batch_to_json(&expected));
        assert_eq!(
            format!("{:?}", batch.columns),
            format!("{:?}", expected.columns)
        );
        assert_eq!(batch.text, expected.text);
    }

    #[test]
    fn disjoint_wide_records_are_cut_into_bounded_batches() {
        // Each record brings 1,000 fields no other record has: one batch of all 50 would
        // hold 50,000 fields × 50 records = 2.5 million values.
        let records: Vec<Map<String, Json>> = (0..50)
            .map(|r| {
                (0..1_000)
                    .map(|f| (format!("r{r}f{f}"), Json::from(f)))
                    .collect()
            })
            .collect();
        let max_cells = 100_000;
        let read = read(&texts(&records), max_cells);
        let mut next = 0;
        for TextBatch {
            batch,
            records: rows,
        } in &read.batches
        {
            let cells = batch.fields.len() * batch.sources.len();
            assert!(cells <= max_cells, "{cells} values in one batch");
            assert_eq!(
                rows,
                &(next..next + batch.sources.len()).collect::<Vec<_>>()
            );
            assert_eq!(batch_to_json(batch), records[next..next + rows.len()]);
            next += rows.len();
        }
        assert_eq!(next, records.len(), "every record is in a batch");
    }

    #[test]
    fn a_record_wider_than_the_bound_still_gets_its_own_batch() {
        let wide: Map<String, Json> = (0..30).map(|f| (format!("f{f}"), Json::Null)).collect();
        let read = read(&texts(&[wide.clone(), wide]), 10);
        assert_eq!(read.batches.len(), 2);
        assert_eq!(read.batches[1].records, [1]);
        assert_eq!(read.batches[1].batch.fields.len(), 30);
    }

    #[test]
    fn an_unreadable_record_is_named_and_the_others_keep_their_places() {
        let records = [
            r#"{"name":"a"}"#.to_owned(),
            r#"{"name":"#.to_owned(),
            r#"["not", "an", "object"]"#.to_owned(),
            r#"{"name":"d"}"#.to_owned(),
        ];
        let read = read(&records, MAX_BATCH_CELLS);
        let unreadable: Vec<usize> = read.unreadable.iter().map(|(i, _)| *i).collect();
        assert_eq!(unreadable, [1, 2]);
        assert_eq!(read.batches.len(), 1);
        assert_eq!(read.batches[0].records, [0, 3]);
        assert_eq!(
            batch_to_json(&read.batches[0].batch),
            [
                json!({"name": "a"}).as_object().cloned().unwrap(),
                json!({"name": "d"}).as_object().cloned().unwrap()
            ]
        );
    }
}
