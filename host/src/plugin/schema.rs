//! Salesforce describe → the schema plugins coerce against.

use serde_json::Value as Json;

use super::types::{FieldKind, FieldSchema, ObjectSchema};

fn kind_of(sf_type: &str) -> Option<FieldKind> {
    Some(match sf_type {
        "id" => FieldKind::Id,
        "string" | "encryptedstring" => FieldKind::String,
        "textarea" => FieldKind::Textarea,
        "email" => FieldKind::Email,
        "phone" => FieldKind::Phone,
        "url" => FieldKind::Url,
        "picklist" => FieldKind::Picklist,
        "multipicklist" => FieldKind::Multipicklist,
        "combobox" => FieldKind::Combobox,
        "reference" => FieldKind::Reference,
        "boolean" => FieldKind::Boolean,
        "int" => FieldKind::Int,
        "long" => FieldKind::Long,
        "double" => FieldKind::Double,
        "currency" => FieldKind::Currency,
        "percent" => FieldKind::Percent,
        "date" => FieldKind::Date,
        "datetime" => FieldKind::Datetime,
        "time" => FieldKind::Time,
        "base64" => FieldKind::Base64,
        "address" => FieldKind::Address,
        "location" => FieldKind::Location,
        "anyType" | "complexvalue" | "json" => FieldKind::AnyType,
        _ => return None,
    })
}

/// Converts a describe response (`GET /sobjects/{name}/describe`) into an object schema.
/// Field types this host does not know are reported, not guessed.
pub fn schema_from_describe(describe: &Json) -> Result<ObjectSchema, String> {
    let name = describe["name"]
        .as_str()
        .ok_or("describe has no object name")?;
    let fields = describe["fields"]
        .as_array()
        .ok_or("describe has no fields array")?;
    let text = |v: &Json| v.as_str().map(str::to_owned);
    let flag = |v: &Json| v.as_bool().unwrap_or(false);
    let mut out = Vec::with_capacity(fields.len());
    for field in fields {
        let field_name = field["name"]
            .as_str()
            .ok_or("a describe field has no name")?;
        let sf_type = field["type"].as_str().unwrap_or_default();
        let kind = kind_of(sf_type)
            .ok_or_else(|| format!("field {field_name} has unknown type {sf_type:?}"))?;
        let picklist_values = field["picklistValues"]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter(|v| v["active"].as_bool().unwrap_or(true))
                    .filter_map(|v| text(&v["value"]))
                    .collect()
            })
            .unwrap_or_default();
        out.push(FieldSchema {
            name: field_name.to_owned(),
            kind,
            length: field["length"]
                .as_u64()
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(0),
            scale: field["scale"]
                .as_u64()
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(0),
            nillable: flag(&field["nillable"]),
            createable: flag(&field["createable"]),
            updateable: flag(&field["updateable"]),
            external_id: flag(&field["externalId"]),
            picklist_values,
            restricted_picklist: flag(&field["restrictedPicklist"]),
            reference_to: field["referenceTo"]
                .as_array()
                .map(|r| r.iter().filter_map(text).collect())
                .unwrap_or_default(),
        });
    }
    Ok(ObjectSchema {
        name: name.to_owned(),
        fields: out,
    })
}
