//! The admin surface under `/__admin/` (HTTP) and its in-process twin on `EmulatorHandle`.
//!
//! Owns test-only controls: stats, faults, schema evolution (add/remove custom fields and
//! custom objects at run time), the change generator, webhook target, limits, clock, token
//! expiry, the change-event log and the credentials — per org: `/__admin/…` addresses org 0,
//! `/__admin/orgs/{k}/…` org `k`, `/__admin/orgs` lists them. These endpoints need no session and
//! never count against the API allocation — they are not part of the emulated org's surface.

use crate::config::FaultConfig;
use crate::error::ApiError;
use crate::http::{self, Req, Resp};
use crate::org::Org;
use crate::orgs::Orgs;
use crate::schema::{FieldDef, FieldType, ObjectDef};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// A custom field to add at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldSpec {
    /// API name; must end with `__c`.
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub label: Option<String>,
    /// Max characters for text types (default 255).
    #[serde(default)]
    pub length: Option<u32>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub external_id: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub picklist_values: Vec<String>,
    #[serde(default)]
    pub restricted_picklist: bool,
    /// Target object of a `reference` field.
    #[serde(default)]
    pub reference_to: Option<String>,
}

impl FieldSpec {
    pub fn new(name: &str, field_type: FieldType) -> Self {
        FieldSpec {
            name: name.to_string(),
            field_type,
            label: None,
            length: None,
            required: false,
            external_id: false,
            unique: false,
            picklist_values: Vec::new(),
            restricted_picklist: false,
            reference_to: None,
        }
    }
}

/// A custom object to add at run time (it gets `Name`, `OwnerId` and the system fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSpec {
    /// API name; must end with `__c`.
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    /// Whether the replication resources (`updated`/`deleted`) serve the object. Real orgs
    /// have objects that are queryable but not replicable; clients must find their deletes
    /// another way.
    #[serde(default = "replicateable_by_default")]
    pub replicateable: bool,
}

fn replicateable_by_default() -> bool {
    true
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum AdminError {
    #[error("unknown object {0}")]
    UnknownObject(String),
    #[error("unknown field {0}")]
    UnknownField(String),
    #[error("custom names must end with __c: {0}")]
    NotCustom(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("invalid field spec: {0}")]
    Invalid(String),
    #[error("store lock poisoned")]
    Poisoned,
}

fn build_field(spec: &FieldSpec) -> Result<FieldDef, AdminError> {
    if !spec.name.ends_with("__c")
        || !spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(AdminError::NotCustom(spec.name.clone()));
    }
    if spec.field_type.is_compound() {
        return Err(AdminError::Invalid(
            "compound fields come with their components; they cannot be added alone".into(),
        ));
    }
    if matches!(spec.field_type, FieldType::Id) {
        return Err(AdminError::Invalid(
            "a custom field cannot be of type id".into(),
        ));
    }
    let mut f = FieldDef::new(&spec.name, spec.field_type);
    if let Some(l) = &spec.label {
        f.label = l.clone();
    }
    if let Some(n) = spec.length
        && spec.field_type.is_text()
    {
        f.length = n.clamp(1, 131_072);
    }
    if spec.required && spec.field_type != FieldType::Boolean {
        f.nillable = false;
    }
    if spec.external_id {
        if !matches!(
            spec.field_type,
            FieldType::String | FieldType::Email | FieldType::Int | FieldType::Double
        ) {
            return Err(AdminError::Invalid(
                "external ids must be text, email or number fields".into(),
            ));
        }
        f.external_id = true;
        f.unique = true;
    }
    f.unique |= spec.unique;
    if !spec.picklist_values.is_empty() {
        f.picklist = spec.picklist_values.clone();
        f.restricted = spec.restricted_picklist;
    }
    if spec.field_type == FieldType::Reference {
        let to = spec.reference_to.clone().ok_or_else(|| {
            AdminError::Invalid("referenceTo is required for reference fields".into())
        })?;
        f.relationship_name = Some(format!("{}__r", spec.name.trim_end_matches("__c")));
        f.reference_to = Some(to);
    }
    Ok(f)
}

/// Adds a custom field; describe and queries see it immediately, existing rows read null.
pub fn add_field(org: &Org, object: &str, spec: &FieldSpec) -> Result<(), AdminError> {
    let f = build_field(spec)?;
    let mut store = org.store.write().map_err(|_| AdminError::Poisoned)?;
    let t = store
        .table_index(object)
        .ok_or_else(|| AdminError::UnknownObject(object.into()))?;
    if store.tables[t].def.field(&f.name).is_some() {
        return Err(AdminError::Exists(f.name));
    }
    if let Some(to) = &f.reference_to {
        store
            .table_index(to)
            .ok_or_else(|| AdminError::UnknownObject(to.clone()))?;
    }
    store.add_field(t, f);
    store.schema_modified_ms = org.clock.now_audit_ms();
    Ok(())
}

/// Removes a custom field (standard fields cannot be removed, as in Salesforce).
pub fn remove_field(org: &Org, object: &str, field: &str) -> Result<(), AdminError> {
    let mut store = org.store.write().map_err(|_| AdminError::Poisoned)?;
    let t = store
        .table_index(object)
        .ok_or_else(|| AdminError::UnknownObject(object.into()))?;
    let idx = store.tables[t]
        .def
        .field_index(field)
        .ok_or_else(|| AdminError::UnknownField(field.into()))?;
    if !store.tables[t].def.fields[idx].custom {
        return Err(AdminError::NotCustom(field.into()));
    }
    store.remove_field(t, idx);
    store.schema_modified_ms = org.clock.now_audit_ms();
    Ok(())
}

pub fn add_object(org: &Org, spec: &ObjectSpec) -> Result<(), AdminError> {
    if !spec.name.ends_with("__c")
        || !spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(AdminError::NotCustom(spec.name.clone()));
    }
    let fields = spec
        .fields
        .iter()
        .map(build_field)
        .collect::<Result<Vec<_>, _>>()?;
    let mut store = org.store.write().map_err(|_| AdminError::Poisoned)?;
    if store.table_index(&spec.name).is_some() {
        return Err(AdminError::Exists(spec.name.clone()));
    }
    let mut all = vec![
        FieldDef::new("Name", FieldType::String)
            .len(80)
            .required()
            .name_field(),
        FieldDef::new("OwnerId", FieldType::Reference)
            .required()
            .defaulted()
            .refers("User", "Owner"),
    ];
    all.extend(fields);
    let prefix = store.next_custom_prefix();
    let mut def = ObjectDef::new(&spec.name, prefix, true, all);
    def.replicateable = spec.replicateable;
    if let Some(l) = &spec.label {
        def.label = l.clone();
        def.label_plural = format!("{l}s");
    }
    store.add_table(def);
    store.schema_modified_ms = org.clock.now_audit_ms();
    Ok(())
}

pub fn remove_object(org: &Org, name: &str) -> Result<(), AdminError> {
    let mut store = org.store.write().map_err(|_| AdminError::Poisoned)?;
    let t = store
        .table_index(name)
        .ok_or_else(|| AdminError::UnknownObject(name.into()))?;
    if !store.tables[t].def.custom {
        return Err(AdminError::NotCustom(name.into()));
    }
    store.remove_table(t);
    store.schema_modified_ms = org.clock.now_audit_ms();
    Ok(())
}

fn bad(e: impl std::fmt::Display) -> Resp {
    http::error(&ApiError::new(400, "BAD_REQUEST", e.to_string()))
}

fn admin_err(e: AdminError) -> Resp {
    let status = match e {
        AdminError::UnknownObject(_) | AdminError::UnknownField(_) => 404,
        AdminError::Exists(_) => 409,
        AdminError::Poisoned => 500,
        _ => 400,
    };
    http::error(&ApiError::new(status, "ADMIN_ERROR", e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(req: &Req) -> Result<T, serde_json::Error> {
    serde_json::from_slice(&req.body)
}

/// `GET /__admin/orgs`: every org's index, id and logins, without building (seeding) the
/// orgs nobody has used yet, so a load test can fetch a thousand logins in one call.
pub fn list_orgs(orgs: &Orgs) -> Resp {
    let list: Vec<serde_json::Value> = (0..orgs.len())
        .map(|k| {
            let c = orgs.credentials(k);
            json!({
                "org": k, "orgId": orgs.org_id(k), "built": orgs.built(k).is_some(),
                "clientId": c.client_id, "clientSecret": c.client_secret,
                "username": c.username, "password": c.password, "securityToken": c.security_token,
                "refreshToken": c.refresh_token,
            })
        })
        .collect();
    http::json(200, &json!({"count": orgs.len(), "orgs": list}))
}

/// The admin routes of one org (`/__admin/…` is org 0, `/__admin/orgs/{k}/…` org `k`).
pub async fn handle(org: &Arc<Org>, req: Req, segs: Vec<String>) -> Resp {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    let done = || http::json(200, &json!({"ok": true}));
    match (m, s.as_slice()) {
        ("GET", ["stats"]) => {
            http::json(200, &serde_json::to_value(org.stats()).unwrap_or_default())
        }
        ("POST", ["stats", "reset"]) => {
            org.stats.reset();
            done()
        }
        ("GET", ["faults"]) => http::json(
            200,
            &serde_json::to_value(org.faults.get()).unwrap_or_default(),
        ),
        ("PUT" | "POST", ["faults"]) => match parse::<FaultConfig>(&req) {
            Ok(f) => {
                org.faults.set(f.clone());
                http::json(200, &serde_json::to_value(f).unwrap_or_default())
            }
            Err(e) => bad(e),
        },
        ("POST", ["schema", object, "fields"]) => match parse::<FieldSpec>(&req) {
            Ok(spec) => add_field(org, object, &spec)
                .map(|_| done())
                .unwrap_or_else(admin_err),
            Err(e) => bad(e),
        },
        ("DELETE", ["schema", object, "fields", field]) => remove_field(org, object, field)
            .map(|_| done())
            .unwrap_or_else(admin_err),
        ("POST", ["schema", "objects"]) => match parse::<ObjectSpec>(&req) {
            Ok(spec) => add_object(org, &spec)
                .map(|_| done())
                .unwrap_or_else(admin_err),
            Err(e) => bad(e),
        },
        ("DELETE", ["schema", "objects", name]) => remove_object(org, name)
            .map(|_| done())
            .unwrap_or_else(admin_err),
        ("POST", ["changes"]) => {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let n = body["count"].as_u64().unwrap_or(100).min(1_000_000) as usize;
            let org2 = org.clone();
            let applied = tokio::task::spawn_blocking(move || org2.generate_changes(n))
                .await
                .unwrap_or(0);
            http::json(200, &json!({"applied": applied}))
        }
        ("GET", ["webhook"]) => http::json(200, &json!({"url": org.cdc.webhook()})),
        ("PUT" | "POST", ["webhook"]) => {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            org.cdc
                .set_webhook(body["url"].as_str().map(str::to_string));
            done()
        }
        ("GET", ["events"]) => {
            let after = req.param("after").and_then(|a| a.parse().ok()).unwrap_or(0);
            let limit = req
                .param("limit")
                .and_then(|a| a.parse().ok())
                .unwrap_or(1000);
            http::json(
                200,
                &json!({"events": org.cdc.events_after(after, limit), "latestReplayId": org.cdc.latest_replay_id()}),
            )
        }
        ("PUT" | "POST", ["limits"]) => {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            if let Some(v) = body["apiDailyMax"].as_u64() {
                org.limits.set_max(v);
            }
            if let Some(v) = body["otherIntegrationsPerDay"].as_u64() {
                org.limits.set_other_per_day(v);
            }
            if let Some(v) = body["addOtherUsage"].as_u64() {
                org.limits.add_other_usage(org.clock.now_ms(), v);
            }
            if let Some(v) = body["concurrentLongRunningMax"].as_u64() {
                org.limits.set_long_running_max(v as usize);
            }
            let now = org.clock.now_ms();
            http::json(
                200,
                &json!({"apiUsage": org.limits.usage(now), "apiDailyMax": org.limits.max(), "weftUsage": org.limits.ours(now)}),
            )
        }
        ("GET", ["limits"]) => {
            let now = org.clock.now_ms();
            let (inflight, long) = org.limits.inflight();
            http::json(
                200,
                &json!({"apiUsage": org.limits.usage(now), "apiDailyMax": org.limits.max(), "weftUsage": org.limits.ours(now),
                "otherIntegrationsPerDay": org.limits.other_per_day(), "inflight": inflight, "longRunning": long}),
            )
        }
        ("POST", ["clock", "advance"]) => {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let secs = body["seconds"].as_f64().unwrap_or(0.0).max(0.0);
            org.clock.advance_ms((secs * 1000.0) as i64);
            http::json(
                200,
                &json!({"now": crate::clock::format_datetime(org.clock.now_ms())}),
            )
        }
        ("GET", ["clock"]) => http::json(
            200,
            &json!({"now": crate::clock::format_datetime(org.clock.now_ms()), "scale": org.clock.scale()}),
        ),
        ("POST", ["tokens", "expire"]) => {
            org.auth.expire_all();
            done()
        }
        ("GET", ["credentials"]) => {
            let c = &org.cfg.credentials;
            let token = org.auth.issue(0, &c.client_id);
            http::json(
                200,
                &json!({
                    "instanceUrl": org.base_url(), "orgId": org.org_id, "clientId": c.client_id, "clientSecret": c.client_secret,
                    "username": c.username, "password": c.password, "securityToken": c.security_token,
                    "refreshToken": c.refresh_token, "accessToken": token,
                }),
            )
        }
        _ => http::error(&ApiError::not_found()),
    }
}
