//! sObject Rows and sObject Collections: single-record CRUD, upsert by external id,
//! `updated`/`deleted` replication helpers, and batched create/update/upsert/delete/retrieve
//! of up to 200 records.
//!
//! Owns the request and response shapes of these resources: `201 {id, success, errors}`,
//! `204` on update/delete, upsert's `created` flag (v46+), `If-Unmodified-Since` → `412`,
//! `If-Modified-Since` → `304`, and collections' per-record results inside a `200` — with
//! `allOrNone` rolling every applied record back and reporting
//! `ALL_OR_NONE_OPERATION_ROLLED_BACK` for the good ones. Validation itself lives in
//! `writes`; this module never writes a cell directly.

use crate::auth::Session;
use crate::describe;
use crate::error::{ApiError, RecordError};
use crate::http::{self, Req, Resp, is};
use crate::ids;
use crate::org::Org;
use crate::render::cell_to_json;
use crate::schema::Storage;
use crate::store::{DELETED, Store};
use crate::writes::{self, Change, Op, Undo};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// sObject Collections cap per request (Salesforce's limit).
pub const COLLECTION_MAX: usize = 200;

fn poisoned() -> ApiError {
    ApiError::new(500, "UNKNOWN_EXCEPTION", "store lock poisoned")
}

fn table_of(store: &Store, name: &str) -> Result<usize, ApiError> {
    store
        .table_index(name)
        .ok_or_else(|| ApiError::new(404, "NOT_FOUND", "The requested resource does not exist"))
}

pub fn dispatch(
    org: &Arc<Org>,
    req: &Req,
    s: &[&str],
    version: &str,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    let m = req.method.as_str();
    match (m, s) {
        ("GET", ["sobjects"]) => {
            let store = org.store.read().map_err(|_| poisoned())?;
            if schema_unchanged(req, &store)? {
                return Ok(http::empty(304));
            }
            Ok(http::json(200, &describe::global(&store, version)))
        }
        ("GET", ["sobjects", obj]) => {
            let store = org.store.read().map_err(|_| poisoned())?;
            let t = table_of(&store, obj)?;
            Ok(http::json(
                200,
                &describe::basic(&store.tables[t].def, version),
            ))
        }
        ("GET", ["sobjects", obj, "describe"]) => {
            let store = org.store.read().map_err(|_| poisoned())?;
            if schema_unchanged(req, &store)? {
                return Ok(http::empty(304));
            }
            let t = table_of(&store, obj)?;
            Ok(http::json(
                200,
                &describe::object(&store, &store.tables[t].def, version),
            ))
        }
        ("GET", ["sobjects", obj, kind @ ("updated" | "deleted")]) => {
            updated_deleted(org, req, obj, kind)
        }
        ("POST", ["sobjects", obj]) => create_one(org, req, obj, session, origin),
        ("GET" | "HEAD", ["sobjects", obj, id]) => read_one(org, req, obj, id, version),
        ("PATCH", ["sobjects", obj, id]) => update_one(org, req, obj, id, session, origin),
        ("DELETE", ["sobjects", obj, id]) => delete_one(org, obj, id, session, origin),
        ("PATCH" | "POST", ["sobjects", obj, field, value]) => {
            upsert_one(org, req, obj, field, value, session, origin, version)
        }
        ("GET", ["sobjects", obj, field, value]) => {
            let row = {
                let store = org.store.read().map_err(|_| poisoned())?;
                let t = table_of(&store, obj)?;
                let f = ext_field(&store, t, field)?;
                let row = writes::find_by_external_id(&store, t, &f, value)
                    .ok_or_else(ApiError::not_found)?;
                ids::make_id(&store.tables[t].def.key_prefix, row)
            };
            read_one(org, req, obj, &row, version)
        }
        ("DELETE", ["sobjects", obj, field, value]) => {
            let id = {
                let store = org.store.read().map_err(|_| poisoned())?;
                let t = table_of(&store, obj)?;
                let f = ext_field(&store, t, field)?;
                let row = writes::find_by_external_id(&store, t, &f, value)
                    .ok_or_else(ApiError::not_found)?;
                ids::make_id(&store.tables[t].def.key_prefix, row)
            };
            delete_one(org, obj, &id, session, origin)
        }
        ("POST", ["composite", "sobjects"]) => {
            collection_write(org, req, CollOp::Create, session, origin)
        }
        ("PATCH", ["composite", "sobjects"]) => {
            collection_write(org, req, CollOp::Update, session, origin)
        }
        ("DELETE", ["composite", "sobjects"]) => collection_delete(org, req, session, origin),
        ("PATCH", ["composite", "sobjects", obj, field]) => collection_write(
            org,
            req,
            CollOp::Upsert(obj.to_string(), field.to_string()),
            session,
            origin,
        ),
        ("GET" | "POST", ["composite", "sobjects", obj]) => {
            collection_retrieve(org, req, obj, version)
        }
        _ => {
            if matches!(m, "GET" | "POST" | "PATCH" | "DELETE") {
                Err(ApiError::not_found())
            } else {
                Err(ApiError::method_not_allowed(m))
            }
        }
    }
}

/// `If-Modified-Since` on describe: `304` while the schema has not changed since.
fn schema_unchanged(req: &Req, store: &Store) -> Result<bool, ApiError> {
    match req.header("if-modified-since") {
        Some(h) => Ok(store.schema_modified_ms <= http_date_ms(h)?),
        None => Ok(false),
    }
}

fn ext_field(store: &Store, t: usize, field: &str) -> Result<crate::schema::FieldDef, ApiError> {
    let def = &store.tables[t].def;
    match def.field(field) {
        Some(f) if f.external_id || f.storage == Storage::Id => Ok(f.clone()),
        _ => Err(ApiError::new(
            404,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {field}"),
        )),
    }
}

fn body_object(req: &Req) -> Result<Map<String, Value>, ApiError> {
    match req.json()? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::json_parser(
            "Cannot deserialize instance of sObject from non-object value",
        )),
    }
}

fn ok_body(id: &str, created: Option<bool>) -> Value {
    let mut v = json!({"id": id, "success": true, "errors": []});
    if let Some(c) = created {
        v["created"] = json!(c);
    }
    v
}

fn create_one(
    org: &Arc<Org>,
    req: &Req,
    obj: &str,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    let body = body_object(req)?;
    let mut store = org.store.write().map_err(|_| poisoned())?;
    let t = table_of(&store, obj)?;
    if body.keys().any(|k| k.eq_ignore_ascii_case("Id")) {
        return Err(ApiError::new(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Id. Please check the security settings of this field and verify that it is read/write for your profile or permission set.").with_fields(vec!["Id".into()]));
    }
    let fields = writes::fields_from_json(&store, t, &body, Op::Create, &[])?;
    let (row, change) = writes::create(&mut store, t, fields, org.write_ctx(session.user_row))?;
    org.committed(&store, &[change], origin, session.user_row);
    let id = ids::make_id(&store.tables[t].def.key_prefix, row);
    let mut r = http::json(201, &ok_body(&id, None));
    http::set_header(
        &mut r,
        "Location",
        &format!("/services/data/sobjects/{}/{id}", store.tables[t].def.name),
    );
    Ok(r)
}

fn locate(store: &Store, obj: &str, id: &str) -> Result<(usize, u32), ApiError> {
    let t = table_of(store, obj)?;
    if !ids::looks_like_id(id) {
        return Err(ApiError::not_found());
    }
    match store.resolve_id(id) {
        Some((tt, row)) if tt == t => match store.tables[t].state.get(row as usize) {
            Some(&crate::store::LIVE) => Ok((t, row)),
            Some(&DELETED) => Err(ApiError::new(404, "ENTITY_IS_DELETED", "entity is deleted")),
            _ => Err(ApiError::not_found()),
        },
        Some(_) => Err(ApiError::new(
            400,
            "MALFORMED_ID",
            format!("Id in URL is not of a valid type for {obj}: {id}"),
        )),
        None => Err(ApiError::not_found()),
    }
}

/// A whole record (or chosen fields) as JSON with `attributes`.
pub fn record_json(
    store: &Store,
    t: usize,
    row: u32,
    fields: Option<&[String]>,
    version: &str,
) -> Result<Value, ApiError> {
    let table = &store.tables[t];
    let mut m = Map::new();
    m.insert(
        "attributes".into(),
        json!({"type": table.def.name, "url": format!("/services/data/v{version}/sobjects/{}/{}", table.def.name, ids::make_id(&table.def.key_prefix, row))}),
    );
    match fields {
        Some(names) => {
            for n in names {
                let f = table.def.field(n).ok_or_else(|| {
                    ApiError::invalid_field(format!("No such column '{n}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", table.def.name))
                })?;
                m.insert(
                    f.name.clone(),
                    cell_to_json(&table.cell(&store.tables, f, row), f.ftype),
                );
            }
        }
        None => {
            for f in &table.def.fields {
                m.insert(
                    f.name.clone(),
                    cell_to_json(&table.cell(&store.tables, f, row), f.ftype),
                );
            }
        }
    }
    Ok(Value::Object(m))
}

fn last_modified(store: &Store, t: usize, row: u32) -> i64 {
    let table = &store.tables[t];
    table
        .def
        .field("LastModifiedDate")
        .and_then(|f| match f.storage {
            Storage::Column(s) => table.datetime(s, row),
            _ => None,
        })
        .unwrap_or(0)
}

fn http_date_ms(v: &str) -> Result<i64, ApiError> {
    httpdate::parse_http_date(v)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            ApiError::new(
                400,
                "INVALID_HEADER",
                format!("Invalid date in conditional header: {v}"),
            )
        })
}

fn read_one(
    org: &Arc<Org>,
    req: &Req,
    obj: &str,
    id: &str,
    version: &str,
) -> Result<Resp, ApiError> {
    let store = org.store.read().map_err(|_| poisoned())?;
    let (t, row) = locate(&store, obj, id)?;
    if let Some(h) = req.header("if-modified-since") {
        let since = http_date_ms(h)?;
        if last_modified(&store, t, row) <= since {
            return Ok(http::empty(304));
        }
    }
    let fields: Option<Vec<String>> = req.param("fields").map(|f| {
        f.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let v = record_json(&store, t, row, fields.as_deref(), version)?;
    let mut r = http::json(200, &v);
    http::set_header(
        &mut r,
        "Last-Modified",
        &httpdate::fmt_http_date(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(last_modified(&store, t, row).max(0) as u64),
        ),
    );
    Ok(r)
}

fn update_one(
    org: &Arc<Org>,
    req: &Req,
    obj: &str,
    id: &str,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    let body = body_object(req)?;
    let mut store = org.store.write().map_err(|_| poisoned())?;
    let (t, row) = locate(&store, obj, id)?;
    if let Some(h) = req.header("if-unmodified-since") {
        let since = http_date_ms(h)?;
        if last_modified(&store, t, row) > since {
            return Err(ApiError::new(
                412,
                "PRECONDITION_FAILED",
                "The requested resource has been modified since the specified If-Unmodified-Since date.",
            ));
        }
    }
    let fields = writes::fields_from_json(&store, t, &body, Op::Update, &["Id"])?;
    let change = writes::update(&mut store, t, row, fields, org.write_ctx(session.user_row))?;
    org.committed(&store, &[change], origin, session.user_row);
    Ok(http::empty(204))
}

fn delete_one(
    org: &Arc<Org>,
    obj: &str,
    id: &str,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    let mut store = org.store.write().map_err(|_| poisoned())?;
    let (t, row) = locate(&store, obj, id)?;
    let change = writes::delete(&mut store, t, row, org.write_ctx(session.user_row))?;
    org.committed(&store, &[change], origin, session.user_row);
    Ok(http::empty(204))
}

/// One upsert, shared by the single-record route and collections.
#[allow(clippy::too_many_arguments)] // each argument is a distinct part of the upsert call
fn upsert_record(
    org: &Org,
    store: &mut Store,
    t: usize,
    f: &crate::schema::FieldDef,
    value: &str,
    body: &Map<String, Value>,
    update_only: bool,
    user_row: u32,
) -> Result<(u32, bool, Change), RecordError> {
    if body.keys().any(|k| k.eq_ignore_ascii_case("Id")) && f.storage != Storage::Id {
        return Err(RecordError::new(
            "INVALID_FIELD",
            "Id not allowed in upsert body",
            vec!["Id".into()],
        ));
    }
    let ctx = org.write_ctx(user_row);
    match writes::find_by_external_id(store, t, f, value) {
        Some(row) => {
            let fields = writes::fields_from_json(store, t, body, Op::Update, &[&f.name, "Id"])?;
            let change = writes::update(store, t, row, fields, ctx)?;
            Ok((row, false, change))
        }
        None if update_only || f.storage == Storage::Id && !value.is_empty() => Err(
            RecordError::new("NOT_FOUND", "The requested resource does not exist", vec![]),
        ),
        None => {
            let mut fields =
                writes::fields_from_json(store, t, body, Op::Create, &[&f.name, "Id"])?;
            if f.storage != Storage::Id {
                let idx = store.tables[t].def.field_index(&f.name).unwrap_or(0);
                let v = writes::coerce_text(store, f, value)?;
                writes::check_value(f, &v)?;
                fields.push((idx, v));
            }
            let (row, change) = writes::create(store, t, fields, ctx)?;
            Ok((row, true, change))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn upsert_one(
    org: &Arc<Org>,
    req: &Req,
    obj: &str,
    field: &str,
    value: &str,
    session: &Session,
    origin: &str,
    version: &str,
) -> Result<Resp, ApiError> {
    let body = body_object(req)?;
    let mut store = org.store.write().map_err(|_| poisoned())?;
    let t = table_of(&store, obj)?;
    let f = ext_field(&store, t, field)?;
    if let Some(v) = body
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&f.name))
        .map(|(_, v)| v)
        && v.as_str() != Some(value)
    {
        return Err(ApiError::new(
            400,
            "INVALID_FIELD",
            format!(
                "The value of {} in the request body must match the value in the URL",
                f.name
            ),
        ));
    }
    let update_only = req
        .param("updateOnly")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let (row, created, change) = upsert_record(
        org,
        &mut store,
        t,
        &f,
        value,
        &body,
        update_only,
        session.user_row,
    )?;
    org.committed(&store, &[change], origin, session.user_row);
    let id = ids::make_id(&store.tables[t].def.key_prefix, row);
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    if created {
        Ok(http::json(201, &ok_body(&id, Some(true))))
    } else if major >= 46 {
        Ok(http::json(200, &ok_body(&id, Some(false))))
    } else {
        Ok(http::empty(204))
    }
}

fn updated_deleted(org: &Arc<Org>, req: &Req, obj: &str, kind: &str) -> Result<Resp, ApiError> {
    let start = req
        .param("start")
        .and_then(crate::clock::parse_datetime)
        .ok_or_else(|| ApiError::new(400, "INVALID_REPLICATION_DATE", "start date is invalid"))?;
    let end = req
        .param("end")
        .and_then(crate::clock::parse_datetime)
        .ok_or_else(|| ApiError::new(400, "INVALID_REPLICATION_DATE", "end date is invalid"))?;
    let store = org.store.read().map_err(|_| poisoned())?;
    let t = table_of(&store, obj)?;
    let table = &store.tables[t];
    let slot = match table.def.field("SystemModstamp").map(|f| f.storage) {
        Some(Storage::Column(s)) => s,
        _ => return Err(ApiError::not_found()),
    };
    let mut out = Vec::new();
    let mut latest = start;
    for r in 0..table.len() as u32 {
        let Some(ms) = table.datetime(slot, r) else {
            continue;
        };
        if ms < start || ms >= end {
            continue;
        }
        let deleted = table.state[r as usize] == DELETED;
        latest = latest.max(ms);
        if kind == "updated" && !deleted {
            out.push(json!(ids::make_id(&table.def.key_prefix, r)));
        } else if kind == "deleted" && deleted {
            out.push(json!({"id": ids::make_id(&table.def.key_prefix, r), "deletedDate": crate::clock::format_datetime(ms)}));
        }
    }
    let covered = crate::clock::format_datetime(end.min(org.clock.now_audit_ms()));
    let v = if kind == "updated" {
        json!({"ids": out, "latestDateCovered": covered})
    } else {
        json!({"deletedRecords": out, "earliestDateAvailable": crate::clock::format_datetime(crate::seed::SEED_ANCHOR_MS - 730 * crate::clock::MS_PER_DAY), "latestDateCovered": covered})
    };
    let _ = latest;
    Ok(http::json(200, &v))
}

/// Per-record outcome of a collections write: (id, created) or (id if known, error).
type CollResult = Result<(String, Option<bool>), (Option<String>, RecordError)>;

enum CollOp {
    Create,
    Update,
    Upsert(String, String),
}

fn fail_json(id: Option<String>, e: &RecordError) -> Value {
    let mut v = json!({"success": false, "errors": [e]});
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    v
}

fn rolled_back() -> RecordError {
    RecordError::new(
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "Record rolled back because not all records were valid and the request was using AllOrNone header",
        vec![],
    )
}

fn collection_write(
    org: &Arc<Org>,
    req: &Req,
    op: CollOp,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let all_or_none = body["allOrNone"].as_bool().unwrap_or(false);
    let records = body["records"]
        .as_array()
        .cloned()
        .ok_or_else(|| ApiError::json_parser("records is required"))?;
    if records.len() > COLLECTION_MAX {
        return Err(ApiError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            format!(
                "record limit reached. cannot submit more than {COLLECTION_MAX} records into this call"
            ),
        ));
    }
    let mut store = org.store.write().map_err(|_| poisoned())?;
    let upsert_target = match &op {
        CollOp::Upsert(obj, field) => {
            let t = table_of(&store, obj)?;
            Some((t, ext_field(&store, t, field)?))
        }
        _ => None,
    };
    let mut results: Vec<CollResult> = Vec::new();
    let mut undo: Vec<Undo> = Vec::new();
    let mut changes = Vec::new();
    for rec in &records {
        let Some(map) = rec.as_object() else {
            results.push(Err((
                None,
                RecordError::new("JSON_PARSER_ERROR", "record is not an object", vec![]),
            )));
            continue;
        };
        if org.faults.lock_row() {
            org.stats.fault("lock_row");
            let id = map
                .get("id")
                .or_else(|| map.get("Id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            results.push(Err((
                id,
                RecordError::new(
                    "UNABLE_TO_LOCK_ROW",
                    "unable to obtain exclusive access to this record or 1 records",
                    vec![],
                ),
            )));
            continue;
        }
        let type_name = map
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str);
        let r = match &op {
            CollOp::Create => (|| {
                let tn = type_name.ok_or_else(|| {
                    RecordError::new("INVALID_TYPE", "Must specify a type in attributes", vec![])
                })?;
                let t = store.table_index(tn).ok_or_else(|| {
                    RecordError::new(
                        "INVALID_TYPE",
                        format!("sObject type '{tn}' is not supported."),
                        vec![],
                    )
                })?;
                if map.keys().any(|k| k.eq_ignore_ascii_case("id")) {
                    return Err(RecordError::new(
                        "INVALID_FIELD",
                        "cannot specify Id in an insert call",
                        vec!["Id".into()],
                    ));
                }
                let fields = writes::fields_from_json(&store, t, map, Op::Create, &[])?;
                let (row, c) =
                    writes::create(&mut store, t, fields, org.write_ctx(session.user_row))?;
                undo.push(Undo::Created { table: t, row });
                changes.push(c);
                Ok((ids::make_id(&store.tables[t].def.key_prefix, row), None))
            })()
            .map_err(|e| (None, e)),
            CollOp::Update => {
                let id = map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("id"))
                    .and_then(|(_, v)| v.as_str())
                    .map(str::to_string);
                (|| {
                    let id = id.clone().ok_or_else(|| {
                        RecordError::new(
                            "MISSING_ARGUMENT",
                            "Id not specified in an update call",
                            vec![],
                        )
                    })?;
                    let (t, row) = store.resolve_id(&id).ok_or_else(|| {
                        RecordError::new("MALFORMED_ID", format!("malformed id {id}"), vec![])
                    })?;
                    if let Some(tn) = type_name
                        && !store.tables[t].def.name.eq_ignore_ascii_case(tn)
                    {
                        return Err(RecordError::new(
                            "MALFORMED_ID",
                            format!("Id {id} is not of type {tn}"),
                            vec![],
                        ));
                    }
                    writes::check_writable(&store, t, row)?;
                    let fields = writes::fields_from_json(&store, t, map, Op::Update, &["Id"])?;
                    let snap = writes::snapshot(&store, t, row);
                    let c = writes::update(
                        &mut store,
                        t,
                        row,
                        fields,
                        org.write_ctx(session.user_row),
                    )?;
                    undo.push(snap);
                    changes.push(c);
                    Ok((id.clone(), None))
                })()
                .map_err(|e| (id.clone(), e))
            }
            CollOp::Upsert(..) => (|| {
                let (t, f) = upsert_target
                    .as_ref()
                    .ok_or_else(|| RecordError::new("INVALID_TYPE", "no target", vec![]))?;
                let value = map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&f.name))
                    .and_then(|(_, v)| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        RecordError::new(
                            "MISSING_ARGUMENT",
                            format!("{} not specified", f.name),
                            vec![f.name.clone()],
                        )
                    })?;
                let existing = writes::find_by_external_id(&store, *t, f, &value);
                let snap = existing.map(|row| writes::snapshot(&store, *t, row));
                let (row, created, c) =
                    upsert_record(org, &mut store, *t, f, &value, map, false, session.user_row)?;
                undo.push(if created {
                    Undo::Created { table: *t, row }
                } else {
                    snap.unwrap_or(Undo::Created { table: *t, row })
                });
                changes.push(c);
                Ok((
                    ids::make_id(&store.tables[*t].def.key_prefix, row),
                    Some(created),
                ))
            })()
            .map_err(|e| (None, e)),
        };
        results.push(r);
    }
    let any_failed = results.iter().any(Result::is_err);
    let out: Vec<Value> = if all_or_none && any_failed {
        writes::rollback(&mut store, undo);
        results
            .into_iter()
            .map(|r| match r {
                Ok((_, _)) => fail_json(None, &rolled_back()),
                Err((id, e)) => fail_json(id, &e),
            })
            .collect()
    } else {
        org.committed(&store, &changes, origin, session.user_row);
        results
            .into_iter()
            .map(|r| match r {
                Ok((id, created)) => ok_body(&id, created),
                Err((id, e)) => fail_json(id, &e),
            })
            .collect()
    };
    Ok(http::json(200, &Value::Array(out)))
}

fn collection_delete(
    org: &Arc<Org>,
    req: &Req,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    let ids_param = req.param("ids").unwrap_or_default();
    let all_or_none = req
        .param("allOrNone")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let list: Vec<String> = ids_param
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if list.len() > COLLECTION_MAX {
        return Err(ApiError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            format!(
                "record limit reached. cannot submit more than {COLLECTION_MAX} records into this call"
            ),
        ));
    }
    let mut store = org.store.write().map_err(|_| poisoned())?;
    let mut results = Vec::new();
    let mut undo = Vec::new();
    let mut changes = Vec::new();
    for id in &list {
        if org.faults.lock_row() {
            org.stats.fault("lock_row");
            results.push(Err((
                id.clone(),
                RecordError::new(
                    "UNABLE_TO_LOCK_ROW",
                    "unable to obtain exclusive access to this record or 1 records",
                    vec![],
                ),
            )));
            continue;
        }
        let r = (|| {
            let (t, row) = store.resolve_id(id).ok_or_else(|| {
                RecordError::new("MALFORMED_ID", format!("malformed id {id}"), vec![])
            })?;
            let snap = writes::snapshot(&store, t, row);
            let c = writes::delete(&mut store, t, row, org.write_ctx(session.user_row))?;
            undo.push(snap);
            changes.push(c);
            Ok(())
        })();
        results.push(r.map(|_| id.clone()).map_err(|e| (id.clone(), e)));
    }
    let any_failed = results.iter().any(Result::is_err);
    let out: Vec<Value> = if all_or_none && any_failed {
        writes::rollback(&mut store, undo);
        results
            .into_iter()
            .map(|r| match r {
                Ok(id) => fail_json(Some(id), &rolled_back()),
                Err((id, e)) => fail_json(Some(id), &e),
            })
            .collect()
    } else {
        org.committed(&store, &changes, origin, session.user_row);
        results
            .into_iter()
            .map(|r| match r {
                Ok(id) => ok_body(&id, None),
                Err((id, e)) => fail_json(Some(id), &e),
            })
            .collect()
    };
    Ok(http::json(200, &Value::Array(out)))
}

fn collection_retrieve(
    org: &Arc<Org>,
    req: &Req,
    obj: &str,
    version: &str,
) -> Result<Resp, ApiError> {
    let (ids_list, fields): (Vec<String>, Vec<String>) = if is(&req.method, "POST") {
        let b = req.json()?;
        let strs = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        (strs(&b["ids"]), strs(&b["fields"]))
    } else {
        let split = |s: Option<&str>| {
            s.unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        };
        (split(req.param("ids")), split(req.param("fields")))
    };
    if fields.is_empty() {
        return Err(ApiError::new(
            400,
            "MISSING_ARGUMENT",
            "fields must be specified",
        ));
    }
    let store = org.store.read().map_err(|_| poisoned())?;
    let t = table_of(&store, obj)?;
    let mut out = Vec::new();
    for id in &ids_list {
        match store.resolve_id(id) {
            Some((tt, row))
                if tt == t
                    && store.tables[t].state.get(row as usize) == Some(&crate::store::LIVE) =>
            {
                out.push(record_json(&store, t, row, Some(&fields), version)?);
            }
            _ => out.push(Value::Null),
        }
    }
    Ok(http::json(200, &Value::Array(out)))
}
