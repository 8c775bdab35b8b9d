//! Record storage: one columnar table per sObject.
//!
//! Owns record data and the uniqueness indexes. Each field is a typed column (text cells
//! are 8-byte spans into one byte arena per column; numbers and dates are plain vectors with a
//! sentinel for null; lookups are row numbers), ids are derived from row numbers, and a row
//! lifecycle byte says live / recycle bin / purged. That keeps a million Accounts well under
//! a gigabyte. The store never validates: callers (`writes`, `seed`) decide what may be
//! written; the store only keeps columns, ids and unique indexes consistent.

use crate::ids;
use crate::schema::{ColumnKind, FieldDef, ObjectDef, Storage};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

const NULL_SPAN: u64 = u64::MAX;
pub const NULL_I64: i64 = i64::MIN;
pub const NULL_I32: i32 = i32::MIN;
pub const NULL_REF: u32 = u32::MAX;

/// A text column: every string lives in one arena; a cell is `offset << 24 | len`.
/// Overwritten strings leave garbage in the arena: writes are rare next to reads, and never
/// compacting keeps spans stable for concurrent readers of a page.
#[derive(Debug, Default)]
pub struct TextCol {
    data: Vec<u8>,
    spans: Vec<u64>,
}

impl TextCol {
    fn span_of(&mut self, v: Option<&str>) -> u64 {
        match v {
            None => NULL_SPAN,
            Some(s) => {
                let off = self.data.len() as u64;
                // Lengths are validated far below 2^24 (the longest Salesforce text is 131,072).
                let len = s.len().min((1 << 24) - 1);
                self.data.extend_from_slice(&s.as_bytes()[..len]);
                (off << 24) | len as u64
            }
        }
    }

    pub fn push(&mut self, v: Option<&str>) {
        let s = self.span_of(v);
        self.spans.push(s);
    }

    pub fn set(&mut self, row: usize, v: Option<&str>) {
        let s = self.span_of(v);
        if let Some(slot) = self.spans.get_mut(row) {
            *slot = s;
        }
    }

    pub fn get(&self, row: usize) -> Option<&str> {
        let span = *self.spans.get(row)?;
        if span == NULL_SPAN {
            return None;
        }
        let off = (span >> 24) as usize;
        let len = (span & 0xFF_FFFF) as usize;
        let bytes = self.data.get(off..off + len)?;
        // Spans are only ever made from whole `&str`s, but a truncated long value could end
        // inside a code point; fall back to the checked path rather than trust it.
        std::str::from_utf8(bytes).ok()
    }
}

/// One field's values for every row of a table.
#[derive(Debug)]
pub enum Column {
    Text(TextCol),
    /// 0 = false, 1 = true (Salesforce booleans are never null).
    Bool(Vec<u8>),
    Int(Vec<i64>),
    /// `NaN` = null (Salesforce cannot store NaN).
    Num(Vec<f64>),
    /// Days since the epoch; `NULL_I32` = null.
    Date(Vec<i32>),
    /// Epoch milliseconds; `NULL_I64` = null.
    DateTime(Vec<i64>),
    /// Row number in the `target` table; `NULL_REF` = null.
    Ref {
        target: usize,
        rows: Vec<u32>,
    },
}

/// An owned value on its way into a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Text(String),
    Date(i32),
    DateTime(i64),
    /// Row number in the referenced table.
    Ref(u32),
}

/// A borrowed value read out of the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Text(Cow<'a, str>),
    Date(i32),
    DateTime(i64),
    /// A record id: key prefix and row number.
    Id([u8; 3], u32),
}

impl Column {
    pub fn new(kind: ColumnKind, target: usize, len: usize) -> Column {
        match kind {
            ColumnKind::Text => Column::Text(TextCol {
                data: Vec::new(),
                spans: vec![NULL_SPAN; len],
            }),
            ColumnKind::Bool => Column::Bool(vec![0; len]),
            ColumnKind::Int => Column::Int(vec![NULL_I64; len]),
            ColumnKind::Num => Column::Num(vec![f64::NAN; len]),
            ColumnKind::Date => Column::Date(vec![NULL_I32; len]),
            ColumnKind::DateTime => Column::DateTime(vec![NULL_I64; len]),
            ColumnKind::Ref => Column::Ref {
                target,
                rows: vec![NULL_REF; len],
            },
        }
    }

    fn push(&mut self, v: &Value) {
        match self {
            Column::Text(c) => c.push(match v {
                Value::Text(s) => Some(s.as_str()),
                _ => None,
            }),
            Column::Bool(c) => c.push(matches!(v, Value::Bool(true)) as u8),
            Column::Int(c) => c.push(match v {
                Value::Int(i) => *i,
                _ => NULL_I64,
            }),
            Column::Num(c) => c.push(match v {
                Value::Num(n) => *n,
                Value::Int(i) => *i as f64,
                _ => f64::NAN,
            }),
            Column::Date(c) => c.push(match v {
                Value::Date(d) => *d,
                _ => NULL_I32,
            }),
            Column::DateTime(c) => c.push(match v {
                Value::DateTime(d) => *d,
                _ => NULL_I64,
            }),
            Column::Ref { rows, .. } => rows.push(match v {
                Value::Ref(r) => *r,
                _ => NULL_REF,
            }),
        }
    }

    fn set(&mut self, row: usize, v: &Value) {
        macro_rules! put {
            ($vec:expr, $val:expr) => {
                if let Some(slot) = $vec.get_mut(row) {
                    *slot = $val;
                }
            };
        }
        match self {
            Column::Text(c) => c.set(
                row,
                match v {
                    Value::Text(s) => Some(s.as_str()),
                    _ => None,
                },
            ),
            Column::Bool(c) => put!(c, matches!(v, Value::Bool(true)) as u8),
            Column::Int(c) => put!(
                c,
                match v {
                    Value::Int(i) => *i,
                    _ => NULL_I64,
                }
            ),
            Column::Num(c) => put!(
                c,
                match v {
                    Value::Num(n) => *n,
                    Value::Int(i) => *i as f64,
                    _ => f64::NAN,
                }
            ),
            Column::Date(c) => put!(
                c,
                match v {
                    Value::Date(d) => *d,
                    _ => NULL_I32,
                }
            ),
            Column::DateTime(c) => put!(
                c,
                match v {
                    Value::DateTime(d) => *d,
                    _ => NULL_I64,
                }
            ),
            Column::Ref { rows, .. } => put!(
                rows,
                match v {
                    Value::Ref(r) => *r,
                    _ => NULL_REF,
                }
            ),
        }
    }
}

/// Row lifecycle.
pub const LIVE: u8 = 0;
/// In the recycle bin: `IsDeleted = true`, seen by `queryAll`.
pub const DELETED: u8 = 1;
/// Deleted for good (hard delete, emptied recycle bin, retention): invisible to every
/// query, still listed by the replication `deleted` resource.
pub const PURGED: u8 = 2;
/// An insert rolled back with its transaction: it never existed, and nothing lists it.
pub const VOID: u8 = 3;

/// How long a deleted record stays in the recycle bin before it is purged: Salesforce's
/// 15 days. Shorter would make `queryAll` miss soft deletes a slow sync still has to see;
/// longer would hide the purges a sync must pick up from the `deleted` resource.
pub const RECYCLE_BIN_RETENTION_MS: i64 = 15 * 86_400_000;

/// One sObject's records.
#[derive(Debug)]
pub struct Table {
    /// Shared by every org built from the same schema until one of them changes it
    /// (`Arc::make_mut` copies on the first add/remove field): a thousand small orgs then
    /// hold one copy of the standard objects' ~100 KB of field metadata, not a thousand.
    pub def: Arc<ObjectDef>,
    pub cols: Vec<Option<Column>>,
    pub state: Vec<u8>,
    /// Unique indexes by column slot: lower-cased value → row (external ids are
    /// case-insensitive by default in Salesforce).
    pub unique: HashMap<usize, HashMap<Box<str>, u32>>,
    /// False once a custom object has been removed; its slot stays so table numbers hold.
    pub active: bool,
    /// Rows moved to the recycle bin through a write, oldest first, with the instant they
    /// were deleted: what ages out of the bin after `RECYCLE_BIN_RETENTION_MS`. Seeded
    /// recycle-bin rows (merged duplicates) are not here, so seeded data stays as seeded.
    pub recycle: VecDeque<(i64, u32)>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.state.len()
    }

    pub fn col(&self, slot: usize) -> Option<&Column> {
        self.cols.get(slot).and_then(Option::as_ref)
    }

    pub fn text(&self, slot: usize, row: u32) -> Option<&str> {
        match self.col(slot)? {
            Column::Text(c) => c.get(row as usize),
            _ => None,
        }
    }

    pub fn ref_row(&self, slot: usize, row: u32) -> Option<(usize, u32)> {
        match self.col(slot)? {
            Column::Ref { target, rows } => match rows.get(row as usize) {
                Some(&r) if r != NULL_REF => Some((*target, r)),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn datetime(&self, slot: usize, row: u32) -> Option<i64> {
        match self.col(slot)? {
            Column::DateTime(c) => c.get(row as usize).copied().filter(|&v| v != NULL_I64),
            _ => None,
        }
    }

    /// Appends a row; `values` are by column slot, missing slots are null.
    pub fn push_row(&mut self, values: &[(usize, Value)]) -> u32 {
        let mut dense: Vec<Value> = vec![Value::Null; self.cols.len()];
        for (slot, v) in values {
            if let Some(d) = dense.get_mut(*slot) {
                *d = v.clone();
            }
        }
        self.push_dense(dense)
    }

    /// Appends a row given one value per column slot (the seeding fast path).
    pub fn push_dense(&mut self, values: Vec<Value>) -> u32 {
        let row = self.state.len() as u32;
        for (slot, col) in self.cols.iter_mut().enumerate() {
            if let Some(col) = col {
                col.push(values.get(slot).unwrap_or(&Value::Null));
            }
        }
        self.state.push(LIVE);
        for (slot, idx) in self.unique.iter_mut() {
            if let Some(Value::Text(s)) = values.get(*slot) {
                idx.insert(s.to_lowercase().into_boxed_str(), row);
            }
        }
        row
    }

    /// Overwrites cells of an existing row, keeping unique indexes in step.
    pub fn set_cells(&mut self, row: u32, values: &[(usize, Value)]) {
        for (slot, v) in values {
            if self.unique.contains_key(slot) {
                let old = self.text(*slot, row).map(str::to_lowercase);
                if let Some(idx) = self.unique.get_mut(slot) {
                    if let Some(old) = old
                        && idx.get(old.as_str()) == Some(&row)
                    {
                        idx.remove(old.as_str());
                    }
                    if let Value::Text(s) = v {
                        idx.insert(s.to_lowercase().into_boxed_str(), row);
                    }
                }
            }
            if let Some(Some(col)) = self.cols.get_mut(*slot) {
                col.set(row as usize, v);
            }
        }
    }

    /// Row holding `value` in unique column `slot`.
    pub fn lookup_unique(&self, slot: usize, value: &str) -> Option<u32> {
        self.unique
            .get(&slot)?
            .get(value.to_lowercase().as_str())
            .copied()
    }

    /// Reads one field of one row.
    pub fn cell<'a>(&'a self, tables: &'a [Table], f: &FieldDef, row: u32) -> Cell<'a> {
        match f.storage {
            Storage::Id => Cell::Id(self.def.key_prefix, row),
            Storage::IsDeleted => {
                Cell::Bool(self.state.get(row as usize).copied().unwrap_or(LIVE) != LIVE)
            }
            Storage::FullName { first, last } => {
                match (self.text(first, row), self.text(last, row)) {
                    (Some(a), Some(b)) if !a.is_empty() => {
                        Cell::Text(Cow::Owned(format!("{a} {b}")))
                    }
                    (_, Some(b)) => Cell::Text(Cow::Borrowed(b)),
                    (Some(a), None) => Cell::Text(Cow::Borrowed(a)),
                    (None, None) => Cell::Null,
                }
            }
            Storage::Column(slot) => self.slot_cell(tables, slot, row),
            // A compound has no single cell; readers that render it use its components
            // (`ObjectDef::compound_parts`).
            Storage::Compound => Cell::Null,
        }
    }

    pub fn slot_cell<'a>(&'a self, tables: &'a [Table], slot: usize, row: u32) -> Cell<'a> {
        let r = row as usize;
        match self.col(slot) {
            None => Cell::Null,
            Some(Column::Text(c)) => c
                .get(r)
                .map_or(Cell::Null, |s| Cell::Text(Cow::Borrowed(s))),
            Some(Column::Bool(c)) => Cell::Bool(c.get(r).copied().unwrap_or(0) == 1),
            Some(Column::Int(c)) => match c.get(r) {
                Some(&v) if v != NULL_I64 => Cell::Int(v),
                _ => Cell::Null,
            },
            Some(Column::Num(c)) => match c.get(r) {
                Some(&v) if !v.is_nan() => Cell::Num(v),
                _ => Cell::Null,
            },
            Some(Column::Date(c)) => match c.get(r) {
                Some(&v) if v != NULL_I32 => Cell::Date(v),
                _ => Cell::Null,
            },
            Some(Column::DateTime(c)) => match c.get(r) {
                Some(&v) if v != NULL_I64 => Cell::DateTime(v),
                _ => Cell::Null,
            },
            Some(Column::Ref { target, rows }) => match rows.get(r) {
                Some(&v) if v != NULL_REF => tables
                    .get(*target)
                    .map_or(Cell::Null, |t| Cell::Id(t.def.key_prefix, v)),
                _ => Cell::Null,
            },
        }
    }
}

/// The whole org's data.
#[derive(Debug)]
pub struct Store {
    pub tables: Vec<Table>,
    by_name: HashMap<String, usize>,
    /// Next custom-object key prefix number (`a00`, `a01`, …).
    next_custom_prefix: u32,
    /// Simulated instant of the last schema change (describe's `If-Modified-Since`).
    pub schema_modified_ms: i64,
}

impl Store {
    /// A store over object definitions other stores may share (see `Table::def`).
    pub fn with_schema(objects: Vec<Arc<ObjectDef>>) -> Store {
        let mut store = Store {
            tables: Vec::new(),
            by_name: HashMap::new(),
            next_custom_prefix: 0,
            schema_modified_ms: crate::seed::SEED_ANCHOR_MS,
        };
        for def in objects {
            store.add_shared_table(def);
        }
        store
    }

    pub fn add_table(&mut self, def: ObjectDef) -> usize {
        self.add_shared_table(Arc::new(def))
    }

    fn add_shared_table(&mut self, def: Arc<ObjectDef>) -> usize {
        let idx = self.tables.len();
        self.by_name.insert(def.name.to_ascii_lowercase(), idx);
        self.tables.push(Table {
            def,
            cols: Vec::new(),
            state: Vec::new(),
            unique: HashMap::new(),
            active: true,
            recycle: VecDeque::new(),
        });
        // Columns are created after registration so self-references resolve.
        let fields = self.tables[idx].def.fields.clone();
        for f in &fields {
            if let Storage::Column(slot) = f.storage {
                self.ensure_column(idx, slot, f);
            }
        }
        idx
    }

    fn ensure_column(&mut self, idx: usize, slot: usize, f: &FieldDef) {
        let target = f
            .reference_to
            .as_deref()
            .and_then(|n| self.table_index(n))
            .unwrap_or(idx);
        let len = self.tables[idx].len();
        let t = &mut self.tables[idx];
        while t.cols.len() <= slot {
            t.cols.push(None);
        }
        t.cols[slot] = Some(Column::new(f.ftype.column_kind(), target, len));
        if f.unique {
            let mut index = HashMap::new();
            if let Some(Column::Text(c)) = &t.cols[slot] {
                for r in 0..len {
                    if let Some(s) = c.get(r) {
                        index.insert(s.to_lowercase().into_boxed_str(), r as u32);
                    }
                }
            }
            t.unique.insert(slot, index);
        }
    }

    pub fn table_index(&self, name: &str) -> Option<usize> {
        let i = *self.by_name.get(&name.to_ascii_lowercase())?;
        self.tables[i].active.then_some(i)
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.table_index(name).map(|i| &self.tables[i])
    }

    pub fn table_by_prefix(&self, prefix: &[u8; 3]) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.active && &t.def.key_prefix == prefix)
    }

    /// Resolves an id string to (table, row) if it names a row this org holds.
    pub fn resolve_id(&self, id: &str) -> Option<(usize, u32)> {
        let (prefix, row) = ids::parse_id(id)?;
        let t = self.table_by_prefix(&prefix)?;
        ((row as usize) < self.tables[t].len()).then_some((t, row))
    }

    /// Adds a field to a live table; existing rows read null.
    pub fn add_field(&mut self, table: usize, mut f: FieldDef) -> usize {
        let slot = self.tables[table].cols.len();
        f.storage = Storage::Column(slot);
        let def = Arc::make_mut(&mut self.tables[table].def);
        def.fields.push(f.clone());
        def.reindex();
        self.ensure_column(table, slot, &f);
        slot
    }

    /// Removes a field and frees its column.
    pub fn remove_field(&mut self, table: usize, field_index: usize) {
        let t = &mut self.tables[table];
        let def = Arc::make_mut(&mut t.def);
        let f = def.fields.remove(field_index);
        def.reindex();
        if let Storage::Column(slot) = f.storage {
            if let Some(c) = t.cols.get_mut(slot) {
                *c = None;
            }
            t.unique.remove(&slot);
        }
    }

    pub fn remove_table(&mut self, table: usize) {
        let t = &mut self.tables[table];
        t.active = false;
        t.cols.clear();
        t.state.clear();
        t.unique.clear();
        let name = t.def.name.to_ascii_lowercase();
        self.by_name.remove(&name);
    }

    /// When the oldest recycle-bin row falls due for purging (`i64::MAX` = none).
    pub fn recycle_due_ms(&self) -> i64 {
        self.tables
            .iter()
            .filter_map(|t| t.recycle.front())
            .map(|(ms, _)| ms.saturating_add(RECYCLE_BIN_RETENTION_MS))
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Purges the rows that have been in the recycle bin for the whole retention by
    /// `now_ms`. A row undeleted since, or deleted again later, is left alone: its deletion
    /// stamp no longer matches. Returns how many were purged.
    pub fn age_recycle_bin(&mut self, now_ms: i64) -> usize {
        let mut purged = 0;
        for t in &mut self.tables {
            let stamp = match t.def.field("SystemModstamp").map(|f| f.storage) {
                Some(Storage::Column(s)) => Some(s),
                _ => None,
            };
            while let Some(&(ms, row)) = t.recycle.front() {
                if ms.saturating_add(RECYCLE_BIN_RETENTION_MS) > now_ms {
                    break;
                }
                t.recycle.pop_front();
                let still = stamp
                    .and_then(|s| t.datetime(s, row))
                    .is_none_or(|d| d <= ms);
                if t.state.get(row as usize) == Some(&DELETED)
                    && still
                    && let Some(s) = t.state.get_mut(row as usize)
                {
                    *s = PURGED;
                    purged += 1;
                }
            }
        }
        purged
    }

    pub fn next_custom_prefix(&mut self) -> [u8; 3] {
        const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        loop {
            let n = self.next_custom_prefix as usize;
            self.next_custom_prefix += 1;
            let p = [b'a', B62[(n / 62) % 62], B62[n % 62]];
            // Seeded custom objects hold fixed prefixes; never hand one out twice.
            if !self.tables.iter().any(|t| t.def.key_prefix == p) || n >= 62 * 62 {
                return p;
            }
        }
    }
}
