//! The SOQL Weft sends for an object: which fields, and the backfill, incremental and
//! count queries built around the configured filter.
//!
//! Every query it builds is keyset-paged (`ORDER BY Id` or `ORDER BY SystemModstamp, Id`
//! with a strict `>` on the cursor), so any page can be re-issued after a crash from the
//! last checkpointed key, and no row is read twice or skipped.

use jiff::Timestamp;

use crate::config::SoqlSource;
use crate::salesforce::SObjectDescribe;

/// Read on every object: the cursor keys and the delete flag.
pub const ALWAYS: [&str; 3] = ["Id", "SystemModstamp", "IsDeleted"];

/// Field types describe reports that Bulk API 2.0 cannot return or that are compounds of
/// fields selected on their own (`BillingAddress` = `BillingStreet`, …).
const UNSELECTABLE: [&str; 4] = ["address", "location", "base64", "complexvalue"];

/// Compound types: read as their component fields, never as themselves.
const COMPOUND: [&str; 2] = ["address", "location"];

/// The components every standard address has (`Billing` + `City` = `BillingCity`), for
/// compounds reached through a relationship path, whose describe is not at hand here.
const ADDRESS_PARTS: [&str; 8] = [
    "Street",
    "City",
    "State",
    "PostalCode",
    "Country",
    "Latitude",
    "Longitude",
    "GeocodeAccuracy",
];

/// The standard compound addresses of the objects a sync usually reads (Account, Contact,
/// Lead and their parents' lookups).
const STANDARD_ADDRESSES: [&str; 5] = [
    "BillingAddress",
    "ShippingAddress",
    "MailingAddress",
    "OtherAddress",
    "Address",
];

/// What a configured name stands for in the query: itself, or — for a compound field
/// (`BillingAddress`, a geolocation `Location__c`) — its component fields, in describe
/// order. Bulk API 2.0 refuses any query that selects a compound, and REST would nest it,
/// so Weft asks for the components on both APIs and rows carry them as flat fields.
fn expand(name: &str, describe: &SObjectDescribe) -> Vec<String> {
    if let Some((path, last)) = name.rsplit_once('.') {
        return if STANDARD_ADDRESSES
            .iter()
            .any(|a| a.eq_ignore_ascii_case(last))
        {
            let stem = &last[..last.len() - "Address".len()];
            ADDRESS_PARTS
                .iter()
                .map(|p| format!("{path}.{stem}{p}"))
                .collect()
        } else {
            vec![name.to_owned()]
        };
    }
    match describe.field(name) {
        Some(f) if COMPOUND.contains(&f.field_type.as_str()) => {
            let parts = components(describe, &f.name);
            // Without components the compound stays as named, and `resolve` reports it.
            if parts.is_empty() {
                vec![name.to_owned()]
            } else {
                parts
            }
        }
        _ => vec![name.to_owned()],
    }
}

/// The fields describe names as parts of `compound` (their `compoundFieldName`).
fn components(describe: &SObjectDescribe, compound: &str) -> Vec<String> {
    let raw = describe.raw();
    raw.get("fields")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter(|f| {
            f.get("compoundFieldName")
                .and_then(serde_json::Value::as_str)
                == Some(compound)
        })
        .filter_map(|f| f.get("name").and_then(serde_json::Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// The fields an object is read with, after matching the configuration with describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// In query order: [`ALWAYS`] first, then the rest as configured (or as described).
    pub fields: Vec<String>,
    /// Configured fields the org no longer has; reported, and not requested.
    pub missing: Vec<String>,
}

impl Selection {
    /// Matches `source` against the object's describe. A conservative default selection
    /// takes every scalar field; a configured one keeps its order, with each compound field
    /// replaced by its components (see `expand`). A compound describe lists without any
    /// component is reported missing rather than requested.
    pub fn resolve(source: &SoqlSource, describe: &SObjectDescribe) -> Selection {
        let wanted: Vec<String> = match source {
            SoqlSource::Described => describe
                .fields
                .iter()
                .filter(|f| !UNSELECTABLE.contains(&f.field_type.as_str()))
                .map(|f| f.name.clone())
                .collect(),
            SoqlSource::Fields(fields) => fields.iter().flat_map(|f| expand(f, describe)).collect(),
            SoqlSource::Query { select, .. } => {
                select.iter().flat_map(|f| expand(f, describe)).collect()
            }
        };
        let mut fields: Vec<String> = ALWAYS
            .iter()
            .filter(|f| describe.field(f).is_some() || **f == "Id")
            .map(|f| f.to_string())
            .collect();
        let mut missing = Vec::new();
        for name in wanted {
            if fields.iter().any(|f| f.eq_ignore_ascii_case(&name)) {
                continue;
            }
            // A relationship path (`Owner.Name`) is checked by its first hop.
            let head = name.split('.').next().unwrap_or(&name);
            let known = if name.contains('.') {
                describe.fields.iter().any(|f| {
                    f.field_type == "reference"
                        && relationship_name(&f.name).eq_ignore_ascii_case(head)
                })
            } else {
                describe
                    .field(&name)
                    .is_some_and(|f| !COMPOUND.contains(&f.field_type.as_str()))
            };
            if known {
                fields.push(name);
            } else {
                missing.push(name);
            }
        }
        Selection { fields, missing }
    }

    pub fn has_deleted_flag(&self) -> bool {
        self.fields.iter().any(|f| f == "IsDeleted")
    }
}

/// `AccountId` → `Account`, `Parent__c` → `Parent__r`.
fn relationship_name(field: &str) -> String {
    if let Some(stem) = field.strip_suffix("__c") {
        format!("{stem}__r")
    } else if let Some(stem) = field.strip_suffix("Id") {
        stem.to_owned()
    } else {
        field.to_owned()
    }
}

/// The configured filter, if any.
pub fn filter(source: &SoqlSource) -> Option<&str> {
    match source {
        SoqlSource::Query { filter, .. } => filter.as_deref(),
        _ => None,
    }
}

fn conditions(parts: impl IntoIterator<Item = Option<String>>) -> String {
    let parts: Vec<String> = parts.into_iter().flatten().collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    }
}

/// A SOQL string literal; Salesforce ids never need escaping, but a filter value might.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A SOQL datetime literal (UTC, millisecond precision).
pub fn datetime(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `SELECT COUNT() FROM object [WHERE filter]`.
pub fn count(object: &str, filter: Option<&str>) -> String {
    format!(
        "SELECT COUNT() FROM {object}{}",
        conditions([filter.map(|f| format!("({f})"))])
    )
}

/// The newest `SystemModstamp` of the object (the backfill's upper bound).
pub fn newest(object: &str, filter: Option<&str>) -> String {
    format!(
        "SELECT Id, SystemModstamp FROM {object}{} ORDER BY SystemModstamp DESC, Id DESC LIMIT 1",
        conditions([filter.map(|f| format!("({f})"))])
    )
}

/// Backfill rows after `after_id` in Id order; `limit` for REST pages, none for Bulk.
pub fn backfill(
    object: &str,
    fields: &[String],
    filter: Option<&str>,
    after_id: Option<&str>,
    limit: Option<usize>,
) -> String {
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    format!(
        "SELECT {} FROM {object}{} ORDER BY Id{limit}",
        fields.join(", "),
        conditions([
            filter.map(|f| format!("({f})")),
            after_id.map(|id| format!("Id > {}", quote(id))),
        ])
    )
}

/// Rows changed after the cursor `(since, after_id)`, oldest first. Rows stamped exactly
/// `since` are included only past `after_id`, so rows sharing the boundary timestamp are
/// neither missed nor repeated.
pub fn changed_since(
    object: &str,
    fields: &[String],
    filter: Option<&str>,
    since: Timestamp,
    after_id: &str,
    limit: usize,
) -> String {
    let at = datetime(since);
    let cursor = if after_id.is_empty() {
        format!("SystemModstamp >= {at}")
    } else {
        format!(
            "(SystemModstamp > {at} OR (SystemModstamp = {at} AND Id > {}))",
            quote(after_id)
        )
    };
    format!(
        "SELECT {} FROM {object}{} ORDER BY SystemModstamp, Id LIMIT {limit}",
        fields.join(", "),
        conditions([filter.map(|f| format!("({f})")), Some(cursor)])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn backfill_pages_resume_after_the_last_id_and_keep_the_filter() {
        let q = backfill(
            "Account",
            &fields(&["Id", "Name"]),
            Some("Type = 'Customer'"),
            Some("001000000000001AAA"),
            Some(2000),
        );
        assert_eq!(
            q,
            "SELECT Id, Name FROM Account WHERE (Type = 'Customer') AND Id > '001000000000001AAA' ORDER BY Id LIMIT 2000"
        );
    }

    #[test]
    fn the_incremental_cursor_splits_ties_on_id() {
        let since = Timestamp::from_millisecond(1_700_000_000_123).expect("ts");
        let q = changed_since("Lead", &fields(&["Id"]), None, since, "00Q1", 500);
        assert_eq!(
            q,
            "SELECT Id FROM Lead WHERE (SystemModstamp > 2023-11-14T22:13:20.123Z OR (SystemModstamp = 2023-11-14T22:13:20.123Z AND Id > '00Q1')) ORDER BY SystemModstamp, Id LIMIT 500"
        );
        let first = changed_since("Lead", &fields(&["Id"]), None, since, "", 500);
        assert!(first.contains("WHERE SystemModstamp >= 2023-11-14T22:13:20.123Z ORDER"));
    }

    fn account() -> SObjectDescribe {
        let raw = serde_json::json!({"name": "Account", "fields": [
            {"name": "Id", "type": "id", "compoundFieldName": null},
            {"name": "SystemModstamp", "type": "datetime", "compoundFieldName": null},
            {"name": "Name", "type": "string", "compoundFieldName": null},
            {"name": "BillingCity", "type": "string", "compoundFieldName": "BillingAddress"},
            {"name": "BillingLatitude", "type": "double", "compoundFieldName": "BillingAddress"},
            {"name": "BillingAddress", "type": "address", "compoundFieldName": null},
            {"name": "Lonely__c", "type": "location", "compoundFieldName": null},
            {"name": "OwnerId", "type": "reference", "compoundFieldName": null},
        ]});
        SObjectDescribe::from_json("Account", raw).expect("describe")
    }

    #[test]
    fn compound_fields_are_selected_as_their_components() {
        let sel = Selection::resolve(
            &SoqlSource::Fields(fields(&[
                "Name",
                "BillingAddress",
                "BillingCity",
                "Owner.MailingAddress",
                "Lonely__c",
            ])),
            &account(),
        );
        assert_eq!(
            sel.fields,
            fields(&[
                "Id",
                "SystemModstamp",
                "Name",
                "BillingCity",
                "BillingLatitude",
                "Owner.MailingStreet",
                "Owner.MailingCity",
                "Owner.MailingState",
                "Owner.MailingPostalCode",
                "Owner.MailingCountry",
                "Owner.MailingLatitude",
                "Owner.MailingLongitude",
                "Owner.MailingGeocodeAccuracy",
            ])
        );
        assert_eq!(sel.missing, fields(&["Lonely__c"]));
        let default = Selection::resolve(&SoqlSource::Described, &account());
        assert!(
            !default
                .fields
                .iter()
                .any(|f| f == "BillingAddress" || f == "Lonely__c")
        );
        assert!(default.fields.iter().any(|f| f == "BillingLatitude"));
    }

    #[test]
    fn quotes_are_escaped() {
        assert_eq!(quote("O'Brien\\"), "'O\\'Brien\\\\'");
    }
}
