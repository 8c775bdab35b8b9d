//! Host-side validation of outgoing records against the org's describe, with Salesforce's
//! own error codes and messages.
//!
//! It checks what the org would refuse — unknown fields, fields not createable or not
//! updateable, required fields, types, string lengths, restricted picklists — so an invalid
//! record goes to the DLQ without costing an API call, and with the same `errorCode` an
//! operator would see from Salesforce. It never changes a value (that is the plugin's
//! coercer) and it is not the last word: the org still checks every write, and its verdict
//! reaches the DLQ the same way.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

/// A rule Salesforce enforces that a record breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Salesforce's `errorCode`.
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct FieldRule {
    name: String,
    label: String,
    kind: String,
    length: usize,
    nillable: bool,
    createable: bool,
    updateable: bool,
    defaulted_on_create: bool,
    restricted_picklist: bool,
    picklist_values: Vec<String>,
}

impl FieldRule {
    /// Salesforce demands a value on create for these; booleans are never "missing".
    fn required_on_create(&self) -> bool {
        !self.nillable && self.createable && !self.defaulted_on_create && self.kind != "boolean"
    }
}

/// One object's field rules, from its describe.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRules {
    object: String,
    /// By lower-case field name: Salesforce field names are case-insensitive.
    fields: HashMap<String, FieldRule>,
}

impl ObjectRules {
    /// Reads the rules from a describe response (`GET /sobjects/{X}/describe`).
    pub fn from_describe(describe: &Json) -> Self {
        let object = describe["name"].as_str().unwrap_or_default().to_owned();
        let flag = |v: &Json| v.as_bool().unwrap_or(false);
        let mut fields = HashMap::new();
        for field in describe["fields"].as_array().into_iter().flatten() {
            let Some(name) = field["name"].as_str() else {
                continue;
            };
            let picklist_values = field["picklistValues"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["active"].as_bool().unwrap_or(true))
                .filter_map(|v| v["value"].as_str().map(str::to_owned))
                .collect();
            let rule = FieldRule {
                name: name.to_owned(),
                label: field["label"].as_str().unwrap_or(name).to_owned(),
                kind: field["type"].as_str().unwrap_or_default().to_owned(),
                length: field["length"].as_u64().unwrap_or(0) as usize,
                nillable: flag(&field["nillable"]),
                createable: flag(&field["createable"]),
                updateable: flag(&field["updateable"]),
                defaulted_on_create: flag(&field["defaultedOnCreate"]),
                restricted_picklist: flag(&field["restrictedPicklist"]),
                picklist_values,
            };
            fields.insert(name.to_ascii_lowercase(), rule);
        }
        ObjectRules { object, fields }
    }

    fn rule(&self, field: &str) -> Option<&FieldRule> {
        self.fields.get(&field.to_ascii_lowercase())
    }

    /// The field's API name as the org spells it, if the object has it.
    pub fn field_name(&self, field: &str) -> Option<&str> {
        self.rule(field).map(|rule| rule.name.as_str())
    }

    /// Every rule `record` breaks. `exists` says whether the upsert updates an existing
    /// record (required fields and createable apply to creates only, updateable to
    /// updates only); `key_field` is the external id the upsert matches on, which Salesforce
    /// accepts on update even when it is not updateable.
    pub fn check_record(
        &self,
        record: &Map<String, Json>,
        exists: bool,
        key_field: &str,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        for (name, value) in record {
            let Some(rule) = self.rule(name) else {
                out.push(Violation {
                    code: "INVALID_FIELD",
                    message: format!("No such column '{name}' on sobject of type {}", self.object),
                    fields: vec![name.clone()],
                });
                continue;
            };
            let writable = if exists {
                rule.updateable || name.eq_ignore_ascii_case(key_field)
            } else {
                rule.createable
            };
            if !writable {
                out.push(Violation {
                    code: "INVALID_FIELD_FOR_INSERT_UPDATE",
                    message: format!(
                        "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                        rule.name
                    ),
                    fields: vec![rule.name.clone()],
                });
                continue;
            }
            out.extend(check_value(rule, value));
        }
        if !exists {
            let mut missing: Vec<String> = self
                .fields
                .values()
                .filter(|rule| rule.required_on_create())
                .filter(|rule| !record.keys().any(|k| k.eq_ignore_ascii_case(&rule.name)))
                .map(|rule| rule.name.clone())
                .collect();
            if !missing.is_empty() {
                missing.sort();
                out.push(Violation {
                    code: "REQUIRED_FIELD_MISSING",
                    message: format!("Required fields are missing: [{}]", missing.join(", ")),
                    fields: missing,
                });
            }
        }
        out
    }

    /// The rules one value breaks, independent of create or update: what explains why a
    /// plugin's coercer refused it.
    pub fn check_field(&self, field: &str, value: &Json) -> Option<Violation> {
        let rule = self.rule(field)?;
        check_value(rule, value)
    }
}

fn check_value(rule: &FieldRule, value: &Json) -> Option<Violation> {
    let kind = rule.kind.as_str();
    if value.is_null() {
        if !rule.nillable && kind != "boolean" {
            return Some(Violation {
                code: "REQUIRED_FIELD_MISSING",
                message: format!("Required fields are missing: [{}]", rule.name),
                fields: vec![rule.name.clone()],
            });
        }
        return None;
    }
    let type_ok = match kind {
        "boolean" => value.is_boolean(),
        "int" | "long" => value.as_i64().is_some(),
        "double" | "currency" | "percent" => value.is_number(),
        "address" | "location" | "anyType" | "complexvalue" => true,
        // Text, picklists, ids, references, dates and times all travel as JSON strings.
        _ => value.is_string(),
    };
    if !type_ok {
        return Some(Violation {
            code: "INVALID_TYPE_ON_FIELD_IN_RECORD",
            message: format!("{}: value not of required type: {value}", rule.label),
            fields: vec![rule.name.clone()],
        });
    }
    let text = value.as_str()?;
    let chars = text.chars().count();
    let has_length = !matches!(kind, "date" | "datetime" | "time" | "reference" | "id");
    if has_length && rule.length > 0 && chars > rule.length {
        let shown: String = text.chars().take(20).collect();
        return Some(Violation {
            code: "STRING_TOO_LONG",
            message: format!(
                "{}: data value too large: {shown}... (max length={})",
                rule.label, rule.length
            ),
            fields: vec![rule.name.clone()],
        });
    }
    if rule.restricted_picklist {
        let values: Vec<&str> = if kind == "multipicklist" {
            text.split(';').map(str::trim).collect()
        } else {
            vec![text]
        };
        if let Some(bad) = values
            .into_iter()
            .find(|v| !rule.picklist_values.iter().any(|allowed| allowed == v))
        {
            return Some(Violation {
                code: "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                message: format!(
                    "{}: bad value for restricted picklist field: {bad}",
                    rule.label
                ),
                fields: vec![rule.name.clone()],
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules() -> ObjectRules {
        ObjectRules::from_describe(&json!({
            "name": "Account",
            "fields": [
                {"name": "Id", "type": "id", "nillable": false, "createable": false, "updateable": false, "defaultedOnCreate": true},
                {"name": "Name", "label": "Account Name", "type": "string", "length": 10, "nillable": false, "createable": true, "updateable": true},
                {"name": "Ext__c", "type": "string", "length": 20, "nillable": true, "createable": true, "updateable": false},
                {"name": "Tier__c", "label": "Tier", "type": "picklist", "nillable": true, "createable": true, "updateable": true,
                 "restrictedPicklist": true, "picklistValues": [{"value": "Gold", "active": true}, {"value": "Old", "active": false}]},
                {"name": "Employees", "type": "int", "nillable": true, "createable": true, "updateable": true},
                {"name": "CreatedDate", "type": "datetime", "nillable": false, "createable": false, "updateable": false, "defaultedOnCreate": true}
            ]
        }))
    }

    fn codes(v: Vec<Violation>) -> Vec<&'static str> {
        v.into_iter().map(|v| v.code).collect()
    }

    fn rec(v: Json) -> Map<String, Json> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_valid_create_and_update_pass() {
        let r = rules();
        let record = rec(json!({"Ext__c": "a", "Name": "Acme", "Tier__c": "Gold", "Employees": 3}));
        assert!(r.check_record(&record, false, "Ext__c").is_empty());
        assert!(r.check_record(&record, true, "Ext__c").is_empty());
    }

    #[test]
    fn each_rule_has_salesforce_code() {
        let r = rules();
        let check = |v: Json, exists| codes(r.check_record(&rec(v), exists, "Ext__c"));
        assert_eq!(
            check(json!({"Ext__c": "a"}), false),
            ["REQUIRED_FIELD_MISSING"]
        );
        assert!(check(json!({"Ext__c": "a"}), true).is_empty());
        assert_eq!(
            check(json!({"Ext__c": "a", "Name": "a very long name"}), true),
            ["STRING_TOO_LONG"]
        );
        assert_eq!(
            check(json!({"Ext__c": "a", "Tier__c": "Old"}), true),
            ["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]
        );
        assert_eq!(
            check(json!({"Ext__c": "a", "Employees": "many"}), true),
            ["INVALID_TYPE_ON_FIELD_IN_RECORD"]
        );
        assert_eq!(
            check(json!({"Ext__c": "a", "Nope__c": 1}), true),
            ["INVALID_FIELD"]
        );
        assert_eq!(
            check(
                json!({"Ext__c": "a", "CreatedDate": "2020-01-01T00:00:00Z"}),
                true
            ),
            ["INVALID_FIELD_FOR_INSERT_UPDATE"]
        );
        assert_eq!(
            check(json!({"Ext__c": "a", "Name": null}), true),
            ["REQUIRED_FIELD_MISSING"]
        );
    }
}
