//! sObject Collections: create, update, upsert, delete and retrieve of up to 200 records per
//! call, with per-record results inside a `200`.
//!
//! Owns the batch semantics: records are applied in order; a failure (validation, injected
//! `UNABLE_TO_LOCK_ROW`) fails that record alone, unless `allOrNone`, which rolls every
//! applied record back and reports `ALL_OR_NONE_OPERATION_ROLLED_BACK` for the good ones.
//! Single-record validation and upsert matching are shared with `sobjects`.

use crate::auth::Session;
use crate::error::{ApiError, RecordError};
use crate::http::{self, Req, Resp, is};
use crate::ids;
use crate::org::Org;
use crate::sobjects::{ext_field, ok_body, poisoned, record_json, table_of, upsert_record};
use crate::writes::{self, Op, Undo};
use serde_json::{Value, json};
use std::sync::Arc;

/// sObject Collections cap per request (Salesforce's limit).
pub const COLLECTION_MAX: usize = 200;

/// Per-record outcome of a collections write: (id, created) or (id if known, error).
type CollResult = Result<(String, Option<bool>), (Option<String>, RecordError)>;

pub(crate) enum CollOp {
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

pub(crate) fn write(
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

pub(crate) fn delete(
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

pub(crate) fn retrieve(
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
