//! Rows as the plugin and the sink see them, whichever API read them.
//!
//! REST returns typed JSON with nested parent objects and an `attributes` key; Bulk API 2.0
//! returns CSV text with dotted column names. Both become one flat JSON object per row with
//! dotted keys for parent fields and values typed by describe, so a plugin's output does not
//! depend on how large the object happened to be.

use jiff::Timestamp;
use serde_json::{Map, Number, Value};

use crate::salesforce::SObjectDescribe;
use crate::salesforce::csv::Row;

/// Flattens a REST record: drops `attributes`, turns `{"Owner": {"Name": …}}` into
/// `"Owner.Name"`.
pub fn from_rest(record: Map<String, Value>) -> Map<String, Value> {
    let mut flat = Map::with_capacity(record.len());
    flatten_into(&mut flat, "", record);
    flat
}

fn flatten_into(out: &mut Map<String, Value>, prefix: &str, record: Map<String, Value>) {
    for (key, value) in record {
        if key == "attributes" {
            continue;
        }
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(parent) if parent.contains_key("attributes") => {
                flatten_into(out, &name, parent)
            }
            other => {
                out.insert(name, other);
            }
        }
    }
}

/// Types a Bulk CSV row by describe. Bulk writes every value as text and a null as an
/// empty cell; numbers and booleans get their JSON types back, the rest stays text.
pub fn from_bulk(columns: &[String], row: Row, describe: &SObjectDescribe) -> Map<String, Value> {
    let mut out = Map::with_capacity(columns.len());
    for (column, cell) in columns.iter().zip(row) {
        let value = match cell {
            None => Value::Null,
            Some(text) if text.is_empty() => Value::Null,
            Some(text) => {
                let kind = describe
                    .field(column)
                    .map(|f| f.field_type.as_str())
                    .unwrap_or("string");
                typed(kind, text)
            }
        };
        out.insert(column.clone(), value);
    }
    out
}

fn typed(kind: &str, text: String) -> Value {
    match kind {
        "boolean" => match text.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text),
        },
        "int" | "long" => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(text)),
        "double" | "currency" | "percent" => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(text)),
        _ => Value::String(text),
    }
}

/// The row's `Id`.
pub fn id(row: &Map<String, Value>) -> Option<&str> {
    row.get("Id").and_then(Value::as_str)
}

/// The row's `SystemModstamp`.
pub fn modstamp(row: &Map<String, Value>) -> Option<Timestamp> {
    row.get("SystemModstamp")
        .and_then(Value::as_str)
        .and_then(parse_datetime)
}

pub fn is_deleted(row: &Map<String, Value>) -> bool {
    matches!(row.get("IsDeleted"), Some(Value::Bool(true)))
        || matches!(row.get("IsDeleted"), Some(Value::String(s)) if s == "true")
}

/// Salesforce datetimes: `2026-11-23T18:20:58.000+0000` (REST, Bulk) or with `Z`.
pub fn parse_datetime(s: &str) -> Option<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    // `+0000` → `+00:00`: RFC 3339 wants the colon.
    let (head, offset) = s.split_at(s.len().checked_sub(5)?);
    if offset.starts_with(['+', '-']) && offset[1..].bytes().all(|b| b.is_ascii_digit()) {
        format!("{head}{}:{}", &offset[..3], &offset[3..])
            .parse()
            .ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rest_records_flatten_parents_and_drop_attributes() {
        let record = json!({
            "attributes": {"type": "Contact"},
            "Id": "003",
            "Account": {"attributes": {"type": "Account"}, "Name": "Acme", "Owner": {"attributes": {}, "Alias": "jd"}},
            "Address": {"city": "Paris"},
        });
        let Value::Object(record) = record else {
            unreachable!()
        };
        let flat = from_rest(record);
        assert_eq!(
            Value::Object(flat),
            json!({"Id": "003", "Account.Name": "Acme", "Account.Owner.Alias": "jd", "Address": {"city": "Paris"}})
        );
    }

    #[test]
    fn salesforce_datetimes_parse_with_either_offset_form() {
        let a = parse_datetime("2026-11-23T18:20:58.000+0000");
        let b = parse_datetime("2026-11-23T18:20:58Z");
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(parse_datetime("2026-11-23T20:20:58.000+0200"), b);
        assert_eq!(parse_datetime("yesterday"), None);
    }
}
