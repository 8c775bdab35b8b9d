//! Describe: the global object list and per-object metadata.
//!
//! Owns the JSON shapes of `GET /sobjects` and `GET /sobjects/{X}/describe`, with every key
//! typed clients expect present (false/null defaults) and child relationships derived from
//! other objects' lookups. It reads the live schema on every call, so a field added at run
//! time shows at once. It never reports a field type outside the partner WSDL's list.

use crate::schema::{FieldDef, FieldType, ObjectDef};
use crate::store::Store;
use serde_json::{Value, json};

fn urls(def: &ObjectDef, version: &str) -> Value {
    let base = format!("/services/data/v{version}/sobjects/{}", def.name);
    json!({
        "sobject": base,
        "describe": format!("{base}/describe"),
        "rowTemplate": format!("{base}/{{ID}}"),
    })
}

fn object_flags(def: &ObjectDef, version: &str) -> serde_json::Map<String, Value> {
    let v = json!({
        "activateable": false,
        "associateEntityType": null,
        "associateParentEntity": null,
        "createable": true,
        "custom": def.custom,
        "customSetting": false,
        "dataTranslationEnabled": false,
        "deepCloneable": false,
        "deletable": true,
        "deprecatedAndHidden": false,
        "feedEnabled": false,
        "hasSubtypes": false,
        "idEnabled": true,
        "isInterface": false,
        "isSubtype": false,
        "keyPrefix": def.key_prefix_str(),
        "label": def.label,
        "labelPlural": def.label_plural,
        "layoutable": true,
        "mergeable": matches!(def.name.as_str(), "Account" | "Contact" | "Lead"),
        "mruEnabled": true,
        "name": def.name,
        "queryable": true,
        "replicateable": def.replicateable,
        "retrieveable": true,
        "searchable": true,
        "triggerable": true,
        "undeletable": true,
        "updateable": true,
        "urls": urls(def, version),
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// `GET /sobjects`.
pub fn global(store: &Store, version: &str) -> Value {
    let sobjects: Vec<Value> = store
        .tables
        .iter()
        .filter(|t| t.active)
        .map(|t| Value::Object(object_flags(&t.def, version)))
        .collect();
    json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})
}

/// `GET /sobjects/{X}`: basic info.
pub fn basic(def: &ObjectDef, version: &str) -> Value {
    json!({"objectDescribe": Value::Object(object_flags(def, version)), "recentItems": []})
}

fn field_json(f: &FieldDef) -> Value {
    let is_text = f.ftype.is_text() && !matches!(f.ftype, FieldType::Id | FieldType::Reference);
    let picklist: Vec<Value> = f
        .picklist
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"active": true, "defaultValue": f.name == "Status" && i == 0, "label": p, "validFor": null, "value": p}))
        .collect();
    let (digits, precision, scale) = match f.ftype {
        FieldType::Int => (9, 0, 0),
        FieldType::Double | FieldType::Currency | FieldType::Percent => (0, f.precision, f.scale),
        _ => (0, 0, 0),
    };
    let compound = f.ftype.is_compound();
    // Compound values are read-only structures: never filtered, sorted, grouped or summed.
    let plain = !compound && (f.ftype != FieldType::Textarea || f.length <= 255);
    let length = if compound {
        0
    } else if is_text || matches!(f.ftype, FieldType::Id | FieldType::Reference) {
        f.length
    } else {
        0
    };
    json!({
        "aggregatable": plain,
        "aiPredictionField": false,
        "autoNumber": false,
        "byteLength": length * 3,
        "calculated": f.name == "Name" && !f.createable,
        "calculatedFormula": null,
        "cascadeDelete": false,
        "caseSensitive": false,
        "compoundFieldName": f.compound.as_ref().map(|(c, _)| c.as_str()),
        "controllerName": null,
        "createable": f.createable,
        "custom": f.custom,
        "defaultValue": null,
        "defaultValueFormula": null,
        "defaultedOnCreate": f.defaulted_on_create,
        "dependentPicklist": false,
        "deprecatedAndHidden": false,
        "digits": digits,
        "displayLocationInDecimal": false,
        "encrypted": false,
        "externalId": f.external_id,
        "extraTypeInfo": null,
        "filterable": plain,
        "filteredLookupInfo": null,
        "groupable": !compound && !matches!(f.ftype, FieldType::Double | FieldType::Currency | FieldType::Percent | FieldType::Datetime),
        "highScaleNumber": false,
        "htmlFormatted": false,
        "idLookup": f.name == "Id" || f.external_id || f.unique,
        "inlineHelpText": null,
        "label": f.label,
        "length": length,
        "mask": null,
        "maskType": null,
        "name": f.name,
        "nameField": f.name_field || (f.name == "Name"),
        "namePointing": false,
        "nillable": f.nillable,
        "permissionable": f.nillable && f.custom,
        "picklistValues": picklist,
        "polymorphicForeignKey": false,
        "precision": precision,
        "queryByDistance": false,
        "referenceTargetField": null,
        "referenceTo": f.reference_to.iter().collect::<Vec<_>>(),
        "relationshipName": f.relationship_name,
        "relationshipOrder": null,
        "restrictedDelete": false,
        "restrictedPicklist": f.restricted,
        "scale": scale,
        "searchPrefilterable": false,
        "soapType": f.ftype.soap(),
        "sortable": plain,
        "type": f.ftype.wire(),
        "unique": f.unique,
        "updateable": f.updateable,
        "writeRequiresMasterRead": false,
    })
}

/// `GET /sobjects/{X}/describe`.
pub fn object(store: &Store, def: &ObjectDef, version: &str) -> Value {
    let mut m = object_flags(def, version);
    let fields: Vec<Value> = def.fields.iter().map(field_json).collect();
    let mut children = Vec::new();
    for t in store.tables.iter().filter(|t| t.active) {
        for f in &t.def.fields {
            if f.reference_to.as_deref() == Some(def.name.as_str())
                && !f.name.ends_with("ById")
                && f.name != "MasterRecordId"
            {
                let rel = crate::schema::child_relationship_name(&t.def, f).unwrap_or_default();
                children.push(json!({
                    "cascadeDelete": false, "childSObject": t.def.name, "deprecatedAndHidden": false,
                    "field": f.name, "junctionIdListNames": [], "junctionReferenceTo": [],
                    "relationshipName": rel, "restrictedDelete": false,
                }));
            }
        }
    }
    m.insert("actionOverrides".into(), json!([]));
    m.insert("childRelationships".into(), Value::Array(children));
    m.insert("compactLayoutable".into(), json!(true));
    m.insert("fields".into(), Value::Array(fields));
    m.insert("listviewable".into(), Value::Null);
    m.insert("lookupLayoutable".into(), Value::Null);
    m.insert("namedLayoutInfos".into(), json!([]));
    m.insert("networkScopeFieldName".into(), Value::Null);
    m.insert(
        "recordTypeInfos".into(),
        json!([{"active": true, "available": true, "defaultRecordTypeMapping": true, "developerName": "Master",
                "master": true, "name": "Master", "recordTypeId": "012000000000000AAA",
                "urls": {"layout": format!("/services/data/v{version}/sobjects/{}/describe/layouts/012000000000000AAA", def.name)}}]),
    );
    m.insert("searchLayoutable".into(), json!(true));
    m.insert(
        "supportedScopes".into(),
        json!([{"label": "All", "name": "everything"}, {"label": "My", "name": "mine"}]),
    );
    Value::Object(m)
}
