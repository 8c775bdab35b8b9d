//! sObject Rows: single-record CRUD, upsert by external id, describe routes, and the
//! `updated`/`deleted` replication helpers; routes `composite/sobjects` to `collections`.
//!
//! Owns the request and response shapes of these resources: `201 {id, success, errors}`,
//! `204` on update/delete, upsert's `created` flag (v46+), `If-Unmodified-Since` → `412`,
//! `If-Modified-Since` → `304`. Validation itself lives in `writes`; this module never
//! writes a cell directly.

use crate::auth::Session;
use crate::collections;
use crate::describe;
use crate::error::{ApiError, RecordError};
use crate::http::{self, Req, Resp};
use crate::ids;
use crate::org::Org;
use crate::render::cell_to_json;
use crate::schema::Storage;
use crate::store::{DELETED, LIVE, PURGED, Store};
use crate::writes::{self, Change, Op};
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub(crate) fn poisoned() -> ApiError {
    ApiError::new(500, "UNKNOWN_EXCEPTION", "store lock poisoned")
}

pub(crate) fn table_of(store: &Store, name: &str) -> Result<usize, ApiError> {
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
                return Ok(dated(org, http::empty(304)));
            }
            Ok(dated(
                org,
                http::json(200, &describe::global(&store, version)),
            ))
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
            let t = table_of(&store, obj)?;
            if schema_unchanged(req, &store)? {
                return Ok(dated(org, http::empty(304)));
            }
            Ok(dated(
                org,
                http::json(
                    200,
                    &describe::object(&store, &store.tables[t].def, version),
                ),
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
            collections::write(org, req, collections::CollOp::Create, session, origin)
        }
        ("PATCH", ["composite", "sobjects"]) => {
            collections::write(org, req, collections::CollOp::Update, session, origin)
        }
        ("DELETE", ["composite", "sobjects"]) => collections::delete(org, req, session, origin),
        ("PATCH", ["composite", "sobjects", obj, field]) => collections::write(
            org,
            req,
            collections::CollOp::Upsert(obj.to_string(), field.to_string()),
            session,
            origin,
        ),
        ("GET" | "POST", ["composite", "sobjects", obj]) => {
            collections::retrieve(org, req, obj, version)
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

/// Stamps a describe response with `Date` on the org's own clock, so a client that sends it
/// back as `If-Modified-Since` compares against the clock schema changes are stamped with
/// (the server's own `Date` would be the host machine's, which a scaled clock leaves).
fn dated(org: &Arc<Org>, mut r: Resp) -> Resp {
    let now =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(org.clock.now_ms().max(0) as u64);
    http::set_header(&mut r, "Date", &httpdate::fmt_http_date(now));
    r
}

/// `If-Modified-Since` on describe: `304` while the schema has not changed since.
fn schema_unchanged(req: &Req, store: &Store) -> Result<bool, ApiError> {
    match req.header("if-modified-since") {
        Some(h) => Ok(store.schema_modified_ms <= http_date_ms(h)?),
        None => Ok(false),
    }
}

pub(crate) fn ext_field(
    store: &Store,
    t: usize,
    field: &str,
) -> Result<crate::schema::FieldDef, ApiError> {
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

pub(crate) fn ok_body(id: &str, created: Option<bool>) -> Value {
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
    let value = |f: &crate::schema::FieldDef| {
        if f.storage != Storage::Compound {
            return cell_to_json(&table.cell(&store.tables, f, row), f.ftype);
        }
        let mut buf = Vec::new();
        let parts = table.def.compound_parts(&f.name);
        crate::render::write_compound(&mut buf, store, table, &parts, row);
        serde_json::from_slice(&buf).unwrap_or(Value::Null)
    };
    match fields {
        Some(names) => {
            for n in names {
                let f = table.def.field(n).ok_or_else(|| {
                    ApiError::invalid_field(format!("No such column '{n}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", table.def.name))
                })?;
                m.insert(f.name.clone(), value(f));
            }
        }
        None => {
            for f in &table.def.fields {
                m.insert(f.name.clone(), value(f));
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
pub(crate) fn upsert_record(
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
    if !table.def.replicateable {
        return Err(ApiError::new(
            400,
            "INVALID_TYPE",
            format!("Object type {} is not replicable", table.def.name),
        ));
    }
    let slot = match table.def.field("SystemModstamp").map(|f| f.storage) {
        Some(Storage::Column(s)) => s,
        _ => return Err(ApiError::not_found()),
    };
    let mut out = Vec::new();
    for r in 0..table.len() as u32 {
        let Some(ms) = table.datetime(slot, r) else {
            continue;
        };
        if ms < start || ms >= end {
            continue;
        }
        let state = table.state[r as usize];
        if kind == "updated" && state == LIVE {
            out.push(json!(ids::make_id(&table.def.key_prefix, r)));
        } else if kind == "deleted" && (state == DELETED || state == PURGED) {
            out.push(json!({"id": ids::make_id(&table.def.key_prefix, r), "deletedDate": crate::clock::format_datetime(ms)}));
        }
    }
    let covered = crate::clock::format_datetime(end.min(org.clock.now_audit_ms()));
    let v = if kind == "updated" {
        json!({"ids": out, "latestDateCovered": covered})
    } else {
        json!({"deletedRecords": out, "earliestDateAvailable": crate::clock::format_datetime(crate::seed::SEED_ANCHOR_MS - 730 * crate::clock::MS_PER_DAY), "latestDateCovered": covered})
    };
    Ok(http::json(200, &v))
}
