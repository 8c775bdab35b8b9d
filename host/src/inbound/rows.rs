//! Single REST records read as JSON trees (a count, the newest row), and Salesforce's
//! datetime text. Pages of rows are read into columns instead: see `page`.

use jiff::Timestamp;
use serde_json::{Map, Value};

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

/// The row's `SystemModstamp`.
pub fn modstamp(row: &Map<String, Value>) -> Option<Timestamp> {
    row.get("SystemModstamp")
        .and_then(Value::as_str)
        .and_then(parse_datetime)
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
