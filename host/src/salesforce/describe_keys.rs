//! What the host keeps of a describe response.
//!
//! A describe of a standard object in a real org runs to hundreds of kilobytes of JSON —
//! every field's sixty-odd properties, child relationships, layouts, URLs — and a JSON tree
//! of it takes several times that. One is cached for every object of every installation, so
//! a host serving thousands of installations would hold gigabytes of properties it never
//! reads. The cached describe keeps only the keys the host reads: [`schema_from_describe`],
//! `ObjectRules::from_describe`, the online check, compound-field expansion and the
//! replication check. Code that reads another key of `SObjectDescribe::raw` adds it here.
//!
//! [`schema_from_describe`]: crate::plugin::schema_from_describe

use serde_json::Value;

/// Keys of the describe itself.
const OBJECT: &[&str] = &["name", "fields", "replicateable"];

/// Keys of each field.
const FIELD: &[&str] = &[
    "name",
    "label",
    "type",
    "length",
    "scale",
    "nillable",
    "createable",
    "updateable",
    "defaultedOnCreate",
    "externalId",
    "picklistValues",
    "restrictedPicklist",
    "referenceTo",
    "compoundFieldName",
];

/// Keys of each picklist value.
const PICKLIST_VALUE: &[&str] = &["active", "value"];

/// `describe` with only the keys the host reads.
pub(super) fn kept(mut describe: Value) -> Value {
    retain(&mut describe, OBJECT);
    let fields = describe.get_mut("fields").and_then(Value::as_array_mut);
    for field in fields.into_iter().flatten() {
        retain(field, FIELD);
        let values = field
            .get_mut("picklistValues")
            .and_then(Value::as_array_mut);
        for value in values.into_iter().flatten() {
            retain(value, PICKLIST_VALUE);
        }
    }
    describe
}

fn retain(object: &mut Value, keys: &[&str]) {
    if let Some(map) = object.as_object_mut() {
        map.retain(|key, _| keys.contains(&key.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::validate::ObjectRules;
    use crate::plugin::schema_from_describe;
    use serde_json::json;

    /// A describe with the properties a real org sends besides the ones the host reads.
    fn full() -> Value {
        let field = |name: &str, kind: &str| {
            json!({
                "name": name, "label": format!("{name} label"), "type": kind,
                "length": 80, "scale": 2, "precision": 18, "digits": 0, "byteLength": 240,
                "nillable": true, "createable": true, "updateable": false,
                "defaultedOnCreate": false, "externalId": name.ends_with("__c"),
                "restrictedPicklist": kind == "picklist", "referenceTo": ["User"],
                "compoundFieldName": if name.starts_with("Billing") { json!("BillingAddress") } else { Value::Null },
                "picklistValues": [
                    {"active": true, "value": "Hot", "label": "Hot", "defaultValue": false, "validFor": null},
                    {"active": false, "value": "Old", "label": "Old", "defaultValue": false, "validFor": null},
                ],
                "inlineHelpText": "a long help text that nobody reads", "calculatedFormula": null,
                "soapType": "xsd:string", "filterable": true, "sortable": true, "unique": false,
            })
        };
        json!({
            "name": "Account", "label": "Account", "keyPrefix": "001", "replicateable": true,
            "childRelationships": [{"childSObject": "Contact", "field": "AccountId", "relationshipName": "Contacts"}],
            "recordTypeInfos": [{"name": "Master", "available": true}],
            "urls": {"describe": "/services/data/v62.0/sobjects/Account/describe"},
            "fields": [
                field("Name", "string"), field("Rating", "picklist"), field("BillingCity", "string"),
                field("ERP_Id__c", "string"), field("OwnerId", "reference"), field("AnnualRevenue", "currency"),
            ],
        })
    }

    #[test]
    fn what_the_host_reads_of_a_describe_is_the_same_after_trimming() {
        let (full, trimmed) = (full(), kept(full()));
        assert!(trimmed.to_string().len() < full.to_string().len());
        assert!(trimmed.get("childRelationships").is_none());
        assert_eq!(schema_from_describe(&trimmed), schema_from_describe(&full));
        assert_eq!(
            ObjectRules::from_describe(&trimmed),
            ObjectRules::from_describe(&full)
        );
        assert_eq!(trimmed["replicateable"], full["replicateable"]);
        for (kept, all) in trimmed["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(full["fields"].as_array().into_iter().flatten())
        {
            // Picklist values lose their labels and defaults; the rest is as sent.
            for key in FIELD.iter().filter(|k| **k != "picklistValues") {
                assert_eq!(kept.get(*key), all.get(*key), "{key}");
            }
            assert_eq!(
                kept["picklistValues"],
                json!([{"active": true, "value": "Hot"}, {"active": false, "value": "Old"}])
            );
        }
    }
}
