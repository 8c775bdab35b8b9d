//! Single REST records read as JSON trees (a count, the newest row). Pages of rows are read
//! into columns instead: see `page`.

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
        .and_then(crate::stamp::parse)
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
}
