//! Validated writes: create, update, delete, undelete and purge of single records.
//!
//! Owns what a real org checks before it commits a record — unknown fields, read-only
//! fields, types, required fields, string lengths, restricted picklists, email shape,
//! lookups that must point at a live record of the right type, unique/external-id values
//! (`DUPLICATE_VALUE`), deleted targets (`ENTITY_IS_DELETED`) — and the audit fields it stamps
//! on every write (`LastModifiedDate`, `SystemModstamp`, …). Every successful write returns a
//! `Change` so the caller can publish a change event. A write either fully applies or leaves
//! the record untouched; batching and all-or-none live in the callers.

use crate::error::RecordError;
use crate::ids;
use crate::schema::{FieldDef, FieldType, Storage};
use crate::store::{Cell, DELETED, LIVE, PURGED, Store, VOID, Value};

/// Who writes, and when (simulated epoch ms, second precision).
#[derive(Debug, Clone, Copy)]
pub struct WriteCtx {
    pub now_ms: i64,
    pub user_row: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
}

/// A committed write, as change-data-capture sees it.
#[derive(Debug, Clone)]
pub struct Change {
    pub table: usize,
    pub row: u32,
    pub kind: ChangeKind,
    /// Field names whose values changed (UPDATE) or were populated (CREATE).
    pub changed: Vec<String>,
}

/// Which operation a field list is being prepared for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
}

fn bad_type(f: &FieldDef, v: &str) -> RecordError {
    RecordError::new(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        format!("{}: value not of required type: {v}", f.label),
        vec![f.name.clone()],
    )
}

/// Converts text (CSV cell, or a JSON string for a non-text field) into a typed value.
pub fn coerce_text(store: &Store, f: &FieldDef, s: &str) -> Result<Value, RecordError> {
    use FieldType as T;
    match f.ftype {
        T::Boolean => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(bad_type(f, s)),
        },
        T::Int => s.trim().parse::<i64>().map(Value::Int).or_else(|_| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.fract() == 0.0 && v.is_finite())
                .map(|v| Value::Int(v as i64))
                .ok_or_else(|| bad_type(f, s))
        }),
        T::Double | T::Currency | T::Percent => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Value::Num)
            .ok_or_else(|| bad_type(f, s)),
        T::Date => crate::clock::parse_date(s)
            .or_else(|| {
                crate::clock::parse_datetime(s).map(|ms| ms.div_euclid(crate::clock::MS_PER_DAY))
            })
            .map(|d| Value::Date(d as i32))
            .ok_or_else(|| bad_type(f, s)),
        T::Datetime => crate::clock::parse_datetime(s)
            .or_else(|| crate::clock::parse_date(s).map(|d| d * crate::clock::MS_PER_DAY))
            .map(Value::DateTime)
            .ok_or_else(|| bad_type(f, s)),
        T::Reference | T::Id => coerce_ref(store, f, s),
        _ => Ok(Value::Text(s.to_string())),
    }
}

fn coerce_ref(store: &Store, f: &FieldDef, s: &str) -> Result<Value, RecordError> {
    if s.is_empty() {
        return Ok(Value::Null);
    }
    if !ids::looks_like_id(s) {
        return Err(RecordError::new(
            "MALFORMED_ID",
            format!("{}: id value of incorrect type: {s}", f.label),
            vec![f.name.clone()],
        ));
    }
    let target = f.reference_to.as_deref().and_then(|n| store.table_index(n));
    match (store.resolve_id(s), target) {
        (Some((t, row)), Some(want)) if t == want => {
            if !matches!(
                store.tables[t].state.get(row as usize),
                Some(&LIVE | &DELETED)
            ) {
                return Err(RecordError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    vec![f.name.clone()],
                ));
            }
            Ok(Value::Ref(row))
        }
        (Some(_), _) => Err(RecordError::new(
            "FIELD_INTEGRITY_EXCEPTION",
            format!("{}: id value of incorrect type: {s}", f.label),
            vec![f.name.clone()],
        )),
        (None, _) => Err(RecordError::new(
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            vec![f.name.clone()],
        )),
    }
}

/// Converts a JSON value into a typed value for `f`.
pub fn coerce_json(
    store: &Store,
    f: &FieldDef,
    v: &serde_json::Value,
) -> Result<Value, RecordError> {
    use serde_json::Value as J;
    match v {
        J::Null => Ok(Value::Null),
        J::Bool(b) if f.ftype == FieldType::Boolean => Ok(Value::Bool(*b)),
        J::Number(n) => match f.ftype {
            FieldType::Int => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64))
                .map(Value::Int)
                .ok_or_else(|| bad_type(f, &n.to_string())),
            FieldType::Double | FieldType::Currency | FieldType::Percent => n
                .as_f64()
                .map(Value::Num)
                .ok_or_else(|| bad_type(f, &n.to_string())),
            // Salesforce accepts a JSON number for a text field and stores its text.
            t if t.is_text() && t != FieldType::Id => Ok(Value::Text(n.to_string())),
            _ => Err(bad_type(f, &n.to_string())),
        },
        J::String(s) => coerce_text(store, f, s),
        J::Bool(b) if f.ftype.is_text() => Ok(Value::Text(b.to_string())),
        other => Err(bad_type(f, &other.to_string())),
    }
}

/// Checks a typed value against the field's constraints (length, picklist, email).
pub fn check_value(f: &FieldDef, v: &Value) -> Result<(), RecordError> {
    let Value::Text(s) = v else { return Ok(()) };
    let chars = s.chars().count() as u32;
    if f.length > 0 && chars > f.length {
        let shown: String = s.chars().take(20).collect();
        return Err(RecordError::new(
            "STRING_TOO_LONG",
            format!(
                "{}: data value too large: {shown}... (max length={})",
                f.label, f.length
            ),
            vec![f.name.clone()],
        ));
    }
    if f.restricted && !f.picklist.is_empty() {
        let values: Vec<&str> = if f.ftype == FieldType::Multipicklist {
            s.split(';').collect()
        } else {
            vec![s.as_str()]
        };
        for one in values {
            if !f.picklist.iter().any(|p| p == one) {
                return Err(RecordError::new(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    format!(
                        "{}: bad value for restricted picklist field: {one}",
                        f.label
                    ),
                    vec![f.name.clone()],
                ));
            }
        }
    }
    if f.ftype == FieldType::Email && !is_email(s) {
        return Err(RecordError::new(
            "INVALID_EMAIL_ADDRESS",
            format!("{}: invalid email address: {s}", f.label),
            vec![f.name.clone()],
        ));
    }
    Ok(())
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.contains(char::is_whitespace)
}

/// Resolves a JSON record body into (field index, value) pairs, checking names, writability,
/// types and constraints. `skip` names fields the caller handles itself (e.g. the external id
/// of an upsert, `Id` of a collections update).
pub fn fields_from_json(
    store: &Store,
    table: usize,
    body: &serde_json::Map<String, serde_json::Value>,
    op: Op,
    skip: &[&str],
) -> Result<Vec<(usize, Value)>, RecordError> {
    let def = &store.tables[table].def;
    let mut out = Vec::with_capacity(body.len());
    for (k, v) in body {
        if k == "attributes" || skip.iter().any(|s| s.eq_ignore_ascii_case(k)) {
            continue;
        }
        // A relationship given by the parent's external id:
        // `"Account": {"External_Id__c": "ACC-1"}` sets `AccountId`.
        if let (None, serde_json::Value::Object(parent)) = (def.field_index(k), v)
            && let Some(idx) = def.fields.iter().position(|f| {
                f.relationship_name
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(k))
            })
        {
            out.push((idx, parent_by_external_id(store, &def.fields[idx], parent)?));
            continue;
        }
        let idx = def
            .field_index(k)
            .ok_or_else(|| RecordError::invalid_field(k, &def.name))?;
        let f = &def.fields[idx];
        let writable = match op {
            Op::Create => f.createable,
            Op::Update => f.updateable,
        };
        if !writable {
            return Err(RecordError::new(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                format!(
                    "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                    f.name
                ),
                vec![f.name.clone()],
            ));
        }
        let value = coerce_json(store, f, v)?;
        check_value(f, &value)?;
        out.push((idx, value));
    }
    Ok(out)
}

/// Resolves `{"Ext__c": "value"}` (plus an optional `attributes`) to the parent's row.
fn parent_by_external_id(
    store: &Store,
    f: &FieldDef,
    parent: &serde_json::Map<String, serde_json::Value>,
) -> Result<Value, RecordError> {
    let target = f
        .reference_to
        .as_deref()
        .and_then(|n| store.table_index(n))
        .ok_or_else(|| RecordError::invalid_field(&f.name, "relationship"))?;
    let mut keys = parent.iter().filter(|(k, _)| *k != "attributes");
    let (Some((ext_name, ext_value)), None) = (keys.next(), keys.next()) else {
        return Err(RecordError::new(
            "INVALID_FIELD",
            format!(
                "{}: a relationship must name exactly one external id field",
                f.label
            ),
            vec![f.name.clone()],
        ));
    };
    let t = &store.tables[target];
    let ext = t
        .def
        .field(ext_name)
        .filter(|x| x.external_id || x.storage == Storage::Id)
        .ok_or_else(|| RecordError::invalid_field(ext_name, &t.def.name))?;
    let value = match ext_value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    find_by_external_id(store, target, ext, &value)
        .map(Value::Ref)
        .ok_or_else(|| {
            RecordError::new(
                "INVALID_FIELD",
                format!(
                    "Foreign key external ID: {value} not found for field {} in entity {}",
                    ext.name, t.def.name
                ),
                vec![f.name.clone()],
            )
        })
}

fn slot_of(f: &FieldDef) -> Option<usize> {
    match f.storage {
        Storage::Column(s) => Some(s),
        _ => None,
    }
}

fn audit(store: &Store, table: usize, ctx: WriteCtx, create: bool) -> Vec<(usize, Value)> {
    let def = &store.tables[table].def;
    let mut out = Vec::new();
    let mut put = |name: &str, v: Value| {
        if let Some(s) = def.field(name).and_then(slot_of) {
            out.push((s, v));
        }
    };
    if create {
        put("CreatedDate", Value::DateTime(ctx.now_ms));
        put("CreatedById", Value::Ref(ctx.user_row));
    }
    put("LastModifiedDate", Value::DateTime(ctx.now_ms));
    put("LastModifiedById", Value::Ref(ctx.user_row));
    put("SystemModstamp", Value::DateTime(ctx.now_ms));
    out
}

fn check_unique(
    store: &Store,
    table: usize,
    fields: &[(usize, Value)],
    self_row: Option<u32>,
) -> Result<(), RecordError> {
    let t = &store.tables[table];
    for (idx, v) in fields {
        let f = &t.def.fields[*idx];
        if !f.unique {
            continue;
        }
        let (Some(slot), Value::Text(s)) = (slot_of(f), v) else {
            continue;
        };
        if let Some(other) = t.lookup_unique(slot, s)
            && Some(other) != self_row
            && t.state.get(other as usize) == Some(&LIVE)
        {
            return Err(RecordError::new(
                "DUPLICATE_VALUE",
                format!(
                    "duplicate value found: {} duplicates value on record with id: {}",
                    f.name,
                    ids::make_id(&t.def.key_prefix, other)
                ),
                vec![f.name.clone()],
            ));
        }
    }
    Ok(())
}

/// Inserts a record. `fields` come from `fields_from_json` or the Bulk CSV reader.
pub fn create(
    store: &mut Store,
    table: usize,
    fields: Vec<(usize, Value)>,
    ctx: WriteCtx,
) -> Result<(u32, Change), RecordError> {
    let def = &store.tables[table].def;
    let mut missing = Vec::new();
    let mut values: Vec<(usize, Value)> = Vec::with_capacity(fields.len() + 6);
    let mut changed = Vec::new();
    for f in def.fields.iter() {
        let given = fields
            .iter()
            .find(|(i, _)| def.fields[*i].name == f.name)
            .map(|(_, v)| v);
        let value = match given {
            Some(v) if *v != Value::Null => v.clone(),
            _ => {
                if f.is_required() {
                    missing.push(f.name.clone());
                }
                // Defaults a real org applies on insert.
                match f.name.as_str() {
                    "OwnerId" => Value::Ref(ctx.user_row),
                    "Status" if !f.picklist.is_empty() => Value::Text(f.picklist[0].clone()),
                    "IsActive" => Value::Bool(true),
                    _ => continue,
                }
            }
        };
        if let Some(slot) = slot_of(f) {
            changed.push(f.name.clone());
            values.push((slot, value));
        }
    }
    if !missing.is_empty() {
        return Err(RecordError::new(
            "REQUIRED_FIELD_MISSING",
            format!("Required fields are missing: [{}]", missing.join(", ")),
            missing,
        ));
    }
    check_unique(store, table, &fields, None)?;
    values.extend(audit(store, table, ctx, true));
    let row = store.tables[table].push_row(&values);
    journal(|| Undo::Created { table, row });
    Ok((
        row,
        Change {
            table,
            row,
            kind: ChangeKind::Create,
            changed,
        },
    ))
}

/// Checks that `row` can be written: it exists and is not in the recycle bin.
pub fn check_writable(store: &Store, table: usize, row: u32) -> Result<(), RecordError> {
    match store.tables[table].state.get(row as usize) {
        Some(&LIVE) => Ok(()),
        Some(&DELETED) => Err(RecordError::deleted()),
        _ => Err(RecordError::new(
            "NOT_FOUND",
            "The requested resource does not exist",
            vec![],
        )),
    }
}

/// Updates fields of a live record.
pub fn update(
    store: &mut Store,
    table: usize,
    row: u32,
    fields: Vec<(usize, Value)>,
    ctx: WriteCtx,
) -> Result<Change, RecordError> {
    check_writable(store, table, row)?;
    let t = &store.tables[table];
    let mut values = Vec::with_capacity(fields.len() + 3);
    let mut changed = Vec::new();
    for (idx, v) in &fields {
        let f = &t.def.fields[*idx];
        if *v == Value::Null && f.is_required() {
            return Err(RecordError::new(
                "REQUIRED_FIELD_MISSING",
                format!("Required fields are missing: [{}]", f.name),
                vec![f.name.clone()],
            ));
        }
        let Some(slot) = slot_of(f) else { continue };
        let old = t.slot_cell(&store.tables, slot, row);
        if !same(&old, v) {
            changed.push(f.name.clone());
        }
        values.push((slot, v.clone()));
    }
    check_unique(store, table, &fields, Some(row))?;
    values.extend(audit(store, table, ctx, false));
    changed.push("LastModifiedDate".to_string());
    journal(|| snapshot(store, table, row));
    store.tables[table].set_cells(row, &values);
    Ok(Change {
        table,
        row,
        kind: ChangeKind::Update,
        changed,
    })
}

fn same(old: &Cell<'_>, new: &Value) -> bool {
    match (old, new) {
        (Cell::Null, Value::Null) => true,
        (Cell::Bool(a), Value::Bool(b)) => a == b,
        (Cell::Int(a), Value::Int(b)) => a == b,
        (Cell::Num(a), Value::Num(b)) => a == b,
        (Cell::Text(a), Value::Text(b)) => a == b,
        (Cell::Date(a), Value::Date(b)) => a == b,
        (Cell::DateTime(a), Value::DateTime(b)) => a == b,
        (Cell::Id(_, a), Value::Ref(b)) => a == b,
        _ => false,
    }
}

/// Moves a record to the recycle bin (`IsDeleted = true`, still visible to `queryAll`).
pub fn delete(
    store: &mut Store,
    table: usize,
    row: u32,
    ctx: WriteCtx,
) -> Result<Change, RecordError> {
    check_writable(store, table, row)?;
    let values = audit(store, table, ctx, false);
    journal(|| snapshot(store, table, row));
    let t = &mut store.tables[table];
    t.set_cells(row, &values);
    t.state[row as usize] = DELETED;
    t.recycle.push_back((ctx.now_ms, row));
    Ok(Change {
        table,
        row,
        kind: ChangeKind::Delete,
        changed: vec![],
    })
}

/// Removes a record for good (Bulk `hardDelete`, an emptied recycle bin): invisible even
/// to `queryAll`, listed by the `deleted` resource. A live record is stamped as deleted now;
/// one already in the recycle bin keeps the stamp of its deletion, which is when the
/// `deleted` resource says it went.
pub fn purge(
    store: &mut Store,
    table: usize,
    row: u32,
    ctx: WriteCtx,
) -> Result<Change, RecordError> {
    let was = match store.tables[table].state.get(row as usize) {
        Some(&s @ (LIVE | DELETED)) => s,
        _ => {
            return Err(RecordError::new(
                "NOT_FOUND",
                "The requested resource does not exist",
                vec![],
            ));
        }
    };
    let values = if was == LIVE {
        audit(store, table, ctx, false)
    } else {
        Vec::new()
    };
    journal(|| snapshot(store, table, row));
    let t = &mut store.tables[table];
    t.set_cells(row, &values);
    t.state[row as usize] = PURGED;
    Ok(Change {
        table,
        row,
        kind: ChangeKind::Delete,
        changed: vec![],
    })
}

/// Finds the live row whose external-id field `field` equals `value`.
/// `Ok(None)` = no match (an upsert inserts).
pub fn find_by_external_id(
    store: &Store,
    table: usize,
    field: &FieldDef,
    value: &str,
) -> Option<u32> {
    let t = &store.tables[table];
    if field.storage == Storage::Id {
        return store
            .resolve_id(value)
            .filter(|(tt, r)| *tt == table && t.state.get(*r as usize) == Some(&LIVE))
            .map(|(_, r)| r);
    }
    let slot = slot_of(field)?;
    t.lookup_unique(slot, value)
        .filter(|r| t.state.get(*r as usize) == Some(&LIVE))
}

/// Undo information for one applied write, so an all-or-none batch can roll back.
#[derive(Debug, Clone)]
pub enum Undo {
    /// A row was inserted: void it and drop its unique-index entries.
    Created { table: usize, row: u32 },
    /// Cells were overwritten (and maybe the lifecycle changed): put them back.
    Changed {
        table: usize,
        row: u32,
        old: Vec<(usize, Value)>,
        state: u8,
    },
}

fn cell_value(c: Cell<'_>) -> Value {
    match c {
        Cell::Null => Value::Null,
        Cell::Bool(b) => Value::Bool(b),
        Cell::Int(i) => Value::Int(i),
        Cell::Num(n) => Value::Num(n),
        Cell::Text(s) => Value::Text(s.into_owned()),
        Cell::Date(d) => Value::Date(d),
        Cell::DateTime(d) => Value::DateTime(d),
        Cell::Id(_, r) => Value::Ref(r),
    }
}

/// Captures every stored cell and the lifecycle of `row` before a write.
pub fn snapshot(store: &Store, table: usize, row: u32) -> Undo {
    let t = &store.tables[table];
    let old = (0..t.cols.len())
        .filter(|s| t.cols[*s].is_some())
        .map(|s| (s, cell_value(t.slot_cell(&store.tables, s, row))))
        .collect();
    Undo::Changed {
        table,
        row,
        old,
        state: t.state.get(row as usize).copied().unwrap_or(LIVE),
    }
}

/// Reverts writes, newest first.
pub fn rollback(store: &mut Store, undo: Vec<Undo>) {
    for u in undo.into_iter().rev() {
        match u {
            Undo::Created { table, row } => {
                let t = &mut store.tables[table];
                let nulls: Vec<(usize, Value)> =
                    t.unique.keys().map(|s| (*s, Value::Null)).collect();
                t.set_cells(row, &nulls);
                if let Some(s) = t.state.get_mut(row as usize) {
                    *s = VOID;
                }
            }
            Undo::Changed {
                table,
                row,
                old,
                state,
            } => {
                let t = &mut store.tables[table];
                t.set_cells(row, &old);
                if let Some(s) = t.state.get_mut(row as usize) {
                    *s = state;
                }
            }
        }
    }
}

/// An open transaction of the current task (the Composite API with `allOrNone`): undo
/// records for every write, and changes whose events wait for the commit.
#[derive(Debug, Default)]
pub struct Tx {
    pub undo: Vec<Undo>,
    pub deferred: Vec<(Change, String, u32)>,
}

tokio::task_local! {
    static TX: std::cell::RefCell<Tx>;
}

/// Records undo information when the current task runs inside `transaction`. Task-local,
/// so concurrent requests are never journaled into someone else's transaction.
fn journal(undo: impl FnOnce() -> Undo) {
    if TX.try_with(|_| ()).is_ok() {
        let u = undo();
        let _ = TX.try_with(|t| t.borrow_mut().undo.push(u));
    }
}

/// Inside a transaction, holds committed changes back (no change events for work that may
/// still roll back). Returns false outside a transaction.
pub fn defer_changes(changes: &[Change], origin: &str, user_row: u32) -> bool {
    TX.try_with(|t| {
        t.borrow_mut().deferred.extend(
            changes
                .iter()
                .map(|c| (c.clone(), origin.to_string(), user_row)),
        )
    })
    .is_ok()
}

/// Runs `f` as one transaction scope; returns its output and the journal.
pub async fn transaction<F: std::future::Future>(f: F) -> (F::Output, Tx) {
    TX.scope(std::cell::RefCell::new(Tx::default()), async move {
        let out = f.await;
        let tx = TX.with(|t| std::mem::take(&mut *t.borrow_mut()));
        (out, tx)
    })
    .await
}
