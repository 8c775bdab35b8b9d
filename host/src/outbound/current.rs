//! The conflict read: Salesforce's current values and `LastModifiedDate` for a round's
//! records, one SOQL query per 200 external ids.
//!
//! What it answers: does the record exist (create or update, which decides the required
//! and createable checks), what are its values now (the audit's "old" and the resolver's
//! "current"), its `Id` (hard deletes), and when and by whom it last changed. It only
//! reads.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::TryStreamExt;
use jiff::Timestamp;
use serde_json::{Map, Value as Json};

use crate::salesforce::{SalesforceClient, SalesforceError};
use crate::throttle::Project;

use super::outcome::parse_salesforce_time;

/// External ids per query. Salesforce caps a GET URL at about 16 KB; 200 ids of up to 40
/// characters stay well under it, and match the Collections call they precede.
const IDS_PER_QUERY: usize = 200;

/// One record as Salesforce has it now.
#[derive(Debug, Clone)]
pub struct Current {
    pub id: Option<String>,
    pub last_modified: Option<Timestamp>,
    /// The user who made the last change (`LastModifiedById`).
    pub last_modified_by: Option<String>,
    /// Shared with the resolver's work on the blocking pool.
    pub values: Arc<Map<String, Json>>,
}

/// Reads `fields` (plus `Id`, `LastModifiedDate` and `LastModifiedById`) of the `object` records whose
/// `key_field` is one of `keys`. Records Salesforce does not have are absent from the map.
pub async fn read_current(
    client: &SalesforceClient,
    object: &str,
    key_field: &str,
    fields: &[String],
    keys: &[String],
) -> Result<HashMap<String, Current>, SalesforceError> {
    let mut select: Vec<&str> = vec!["Id", "LastModifiedDate", "LastModifiedById", key_field];
    for field in fields {
        if !select.iter().any(|s| s.eq_ignore_ascii_case(field)) {
            select.push(field);
        }
    }
    let select = select.join(", ");
    let mut out = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(IDS_PER_QUERY) {
        let list = chunk
            .iter()
            .map(|k| format!("'{}'", soql_escape(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let soql = format!("SELECT {select} FROM {object} WHERE {key_field} IN ({list})");
        let pages: Vec<_> = client.query(Project::Outbound, &soql).try_collect().await?;
        for page in pages {
            for mut record in page.records {
                record.remove("attributes");
                let Some(key) = record.get(key_field).and_then(key_text) else {
                    continue;
                };
                let id = record.get("Id").and_then(Json::as_str).map(str::to_owned);
                let last_modified = record
                    .get("LastModifiedDate")
                    .and_then(Json::as_str)
                    .and_then(parse_salesforce_time);
                let last_modified_by = record
                    .get("LastModifiedById")
                    .and_then(Json::as_str)
                    .map(str::to_owned);
                out.insert(
                    key,
                    Current {
                        id,
                        last_modified,
                        last_modified_by,
                        values: Arc::new(record),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// An external id value as text (Salesforce allows text and number external ids).
pub fn key_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Escapes a value for a single-quoted SOQL string literal.
fn soql_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_cannot_end_the_literal() {
        assert_eq!(soql_escape(r"O'Brien\x"), r"O\'Brien\\x");
    }
}
