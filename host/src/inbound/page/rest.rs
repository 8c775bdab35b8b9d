//! A REST query page's JSON body → a page, read as a stream: each value goes into its
//! column as the reader meets it, with no JSON tree per record.
//!
//! Rows come out as the parsed-record path has always made them: `attributes` dropped, a
//! nested parent record (an object with `attributes`) flattened into dotted fields
//! (`Account.Owner.Alias`), a null parent kept as a null field of its own name, any other
//! object or array kept whole as JSON text, numbers as integers when they fit an `i64`.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

use super::{Page, sorted};
use crate::plugin::{BatchBuilder, Value};

/// The body is not a query page.
#[derive(Debug, thiserror::Error)]
#[error("reading a query page: {0}")]
pub struct RestPageError(#[from] serde_json::Error);

/// The page of the records in the query response `body`.
pub fn from_rest(object: &str, body: &[u8]) -> Result<Page, RestPageError> {
    let mut fill = Fill {
        builder: BatchBuilder::new(object),
        name: String::new(),
    };
    let mut reader = serde_json::Deserializer::from_slice(body);
    reader.deserialize_map(Body(&mut fill))?;
    reader.end()?;
    Ok(Page::of(sorted(fill.builder.finish())))
}

struct Fill {
    builder: BatchBuilder,
    /// The dotted name of the field being read; reused, so a name costs no allocation.
    name: String,
}

impl Fill {
    /// Points `name` at `key` under the first `prefix` bytes of the current name.
    fn enter(&mut self, prefix: usize, key: &str) {
        self.name.truncate(prefix);
        if prefix > 0 {
            self.name.push('.');
        }
        self.name.push_str(key);
    }

    fn set(&mut self, row: usize, value: Value) {
        self.builder.set_value(row, &self.name, value);
    }

    /// Flattens a parent record read whole (its `attributes` came after other keys).
    fn flatten(&mut self, row: usize, prefix: usize, record: Map<String, Json>) {
        for (key, value) in record {
            if key == "attributes" {
                continue;
            }
            self.enter(prefix, &key);
            match value {
                Json::Object(parent) if parent.contains_key("attributes") => {
                    let nested = self.name.len();
                    self.flatten(row, nested, parent);
                }
                other => self.builder.set_json(row, &self.name, &other),
            }
        }
    }
}

/// The response object: `records` is read, the rest skipped.
struct Body<'a>(&'a mut Fill);

impl<'de> Visitor<'de> for Body<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a query response object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            if key.is("records") {
                map.next_value_seed(Records(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A key, borrowed from the body when it has no escapes.
enum KeyText<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl KeyText<'_> {
    fn as_str(&self) -> &str {
        match self {
            KeyText::Borrowed(s) => s,
            KeyText::Owned(s) => s,
        }
    }

    fn is(&self, name: &str) -> bool {
        self.as_str() == name
    }
}

struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = KeyText<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyText<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = KeyText<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<KeyText<'de>, E> {
        Ok(KeyText::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KeyText<'de>, E> {
        Ok(KeyText::Owned(v.to_owned()))
    }
}

struct Records<'a>(&'a mut Fill);

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Record(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One record: a new row.
struct Record<'a>(&'a mut Fill);

impl<'de> DeserializeSeed<'de> for Record<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Record<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let row = self.0.builder.push_record();
        fields(self.0, row, 0, map)
    }
}

/// The fields of a record or of a parent record under the name prefix `prefix`.
fn fields<'de, A: MapAccess<'de>>(
    fill: &mut Fill,
    row: usize,
    prefix: usize,
    mut map: A,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key_seed(Key)? {
        if key.is("attributes") {
            map.next_value::<IgnoredAny>()?;
            continue;
        }
        fill.enter(prefix, key.as_str());
        map.next_value_seed(Field {
            fill: &mut *fill,
            row,
        })?;
    }
    Ok(())
}

/// The value of the field `fill.name` names.
struct Field<'a> {
    fill: &'a mut Fill,
    row: usize,
}

impl<'de> DeserializeSeed<'de> for Field<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Field<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.fill.set(self.row, Value::Null);
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.fill.set(self.row, Value::Boolean(v));
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.fill.set(self.row, Value::Integer(v));
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        let value = i64::try_from(v).map_or(Value::Number(v as f64), Value::Integer);
        self.fill.set(self.row, value);
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.fill.set(self.row, Value::Number(v));
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.fill.builder.set_text(self.row, &self.fill.name, v);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Json>()? {
            items.push(item);
        }
        self.fill
            .builder
            .set_json(self.row, &self.fill.name, &Json::Array(items));
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let prefix = self.fill.name.len();
        let Some(first) = map.next_key_seed(Key)? else {
            let empty = Json::Object(Map::new());
            self.fill
                .builder
                .set_json(self.row, &self.fill.name, &empty);
            return Ok(());
        };
        if first.is("attributes") {
            // A parent record: Salesforce writes `attributes` first.
            map.next_value::<IgnoredAny>()?;
            return fields(self.fill, self.row, prefix, map);
        }
        // Anything else is read whole, then judged as the tree path judged it.
        let mut whole = Map::new();
        whole.insert(first.as_str().to_owned(), map.next_value::<Json>()?);
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            whole.insert(key, value);
        }
        if whole.contains_key("attributes") {
            self.fill.flatten(self.row, prefix, whole);
        } else {
            self.fill
                .builder
                .set_json(self.row, &self.fill.name, &Json::Object(whole));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::batch_to_json;

    /// The tree path: parse the page, flatten each record, build the batch from the maps.
    fn by_tree(body: &str) -> Vec<Map<String, Json>> {
        let page: Json = serde_json::from_str(body).expect("json");
        let records: Vec<Map<String, Json>> = page["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r.as_object().expect("object").clone())
            .collect();
        batch_to_json(&Page::from_records("Contact", records).batch)
    }

    #[test]
    fn streamed_rows_equal_the_tree_path_for_every_kind_of_value() {
        let body = r#"{"totalSize": 3, "done": true, "records": [
            {"attributes": {"type": "Contact", "url": "/x"}, "Id": "003A", "Name": "Zoë \"Z\", jr.\nline 2",
             "Account": {"attributes": {"type": "Account"}, "Name": "Acme", "Owner": {"attributes": {}, "Alias": "jd"}},
             "Count": 12, "Big": 18446744073709551615, "Share": 0.25, "Whole": 3.0, "Active": true, "Gone": null,
             "Address": {"city": "Paris", "street": null}, "Tags": ["a", 1]},
            {"attributes": {"type": "Contact"}, "Id": "003B", "Account": null, "Count": -4,
             "Late": {"Name": "parent with attributes last", "attributes": {"type": "Account"}}},
            {"Id": "003C", "Empty": {}, "Escaped\u0041": "x\u00e9"}
        ]}"#;
        let streamed = from_rest("Contact", body.as_bytes()).expect("page");
        assert_eq!(batch_to_json(&streamed.batch), by_tree(body));
        assert_eq!(streamed.batch.fields, {
            let mut sorted = streamed.batch.fields.clone();
            sorted.sort();
            sorted
        });
        assert_eq!(streamed.last_id(), Some("003C"));
    }

    #[test]
    fn a_body_that_is_not_a_query_page_is_an_error() {
        for body in [
            &b"[1]"[..],
            b"{\"records\": 5}",
            b"{\"records\": [{\"Id\": }]}",
            b"{} x",
        ] {
            assert!(from_rest("Account", body).is_err(), "{body:?}");
        }
        let empty = from_rest(
            "Account",
            b"{\"totalSize\": 0, \"done\": true, \"records\": []}",
        )
        .expect("empty page");
        assert_eq!(empty.len(), 0);
    }
}
