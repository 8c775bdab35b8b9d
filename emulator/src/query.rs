//! SOQL syntax tree + schema → an executable plan, and its execution.
//!
//! Owns name resolution (case-insensitive field and relationship names, canonical spelling
//! in results), type checking of filter literals (the `INVALID_FIELD` a real org gives for a
//! quoted date), filtering, sorting and `LIMIT`/`OFFSET`. Execution yields row numbers only;
//! rendering them as JSON or CSV is `render`'s job, so one plan serves REST pages and Bulk
//! result pages. It never mutates the store.

use crate::clock::MS_PER_DAY;
use crate::error::ApiError;
use crate::ids;
use crate::schema::{FieldDef, FieldType, Storage};
use crate::soql::{AggFunc, CmpOp, Expr, FieldsKind, Literal, Query, SelectItem};
use crate::store::{Cell, DELETED, LIVE, Store, Table};
use std::cmp::Ordering;
use std::ops::Range;

/// How to reach a field from a base row: follow `hops` lookups, then read `field`.
#[derive(Debug, Clone)]
pub struct Accessor {
    /// (table, reference column slot) for each lookup followed.
    pub hops: Vec<(usize, usize)>,
    /// Table that holds `field`.
    pub table: usize,
    pub field: FieldDef,
}

impl Accessor {
    /// The row the final field is read from, or `None` when a lookup on the way is null.
    #[inline]
    pub fn target_row(&self, store: &Store, row: u32) -> Option<u32> {
        let mut r = row;
        for &(t, slot) in &self.hops {
            r = store.tables[t].ref_row(slot, r)?.1;
        }
        Some(r)
    }

    #[inline]
    pub fn read<'a>(&self, store: &'a Store, row: u32) -> Cell<'a> {
        match self.target_row(store, row) {
            Some(r) => store.tables[self.table].cell(&store.tables, &self.field, r),
            None => Cell::Null,
        }
    }
}

/// A selected column: its dotted header (canonical names) and accessor.
#[derive(Debug, Clone)]
pub struct Column {
    pub header: String,
    pub acc: Accessor,
    /// For a compound field (`BillingAddress`): its components, rendered as one nested
    /// object in REST results. Empty for every other field.
    pub parts: Vec<(&'static str, FieldDef)>,
}

impl Column {
    fn new(store: &Store, header: String, acc: Accessor) -> Column {
        let parts = store.tables[acc.table].def.compound_parts(&acc.field.name);
        Column { header, acc, parts }
    }

    pub fn is_compound(&self) -> bool {
        self.acc.field.storage == Storage::Compound
    }
}

/// Compound fields can be selected, never filtered, sorted, grouped or aggregated (as in a
/// real org, which answers `INVALID_FIELD`).
fn scalar(acc: Accessor, what: &str) -> Result<Accessor, ApiError> {
    if acc.field.storage == Storage::Compound {
        return Err(ApiError::invalid_field(format!(
            "field '{}' can not be {what} in a query call",
            acc.field.name
        )));
    }
    Ok(acc)
}

/// The nested output shape of a REST record.
#[derive(Debug, Clone)]
pub enum OutNode {
    Field {
        key: String,
        col: usize,
    },
    Parent {
        key: String,
        /// Reference column slot of the lookup, in the enclosing record's table.
        slot: usize,
        target: usize,
        children: Vec<OutNode>,
    },
}

#[derive(Debug, Clone)]
enum CVal {
    Null,
    Bool(bool),
    Num(f64),
    /// Lower-cased text.
    Text(String),
    /// Days or ms, matching the field's kind.
    Int(i64),
    /// Half-open range in the field's unit.
    Range(i64, i64),
    Id([u8; 3], u32),
    /// An id that cannot belong to this org: equal to nothing.
    ForeignId(String),
}

#[derive(Debug, Clone)]
enum Pred {
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Not(Box<Pred>),
    Cmp(Accessor, CmpOp, CVal),
    In(Accessor, Vec<CVal>),
    /// Id membership from a semi-join, evaluated once at plan time.
    InIds(Accessor, std::collections::HashSet<([u8; 3], u32)>),
    Like(Accessor, LikePattern),
}

#[derive(Debug, Clone)]
pub struct LikePattern {
    parts: Vec<LikePart>,
}

#[derive(Debug, Clone, PartialEq)]
enum LikePart {
    Lit(char),
    One,
    Any,
}

impl LikePattern {
    fn new(p: &str) -> Self {
        let mut parts = Vec::new();
        let mut chars = p.chars();
        while let Some(c) = chars.next() {
            parts.push(match c {
                '%' => LikePart::Any,
                '_' => LikePart::One,
                '\\' => LikePart::Lit(chars.next().unwrap_or('\\').to_ascii_lowercase()),
                c => LikePart::Lit(c.to_lowercase().next().unwrap_or(c)),
            });
        }
        LikePattern { parts }
    }

    /// Case-insensitive match; classic wildcard backtracking (linear for the usual shapes).
    pub fn matches(&self, s: &str) -> bool {
        let text: Vec<char> = s
            .chars()
            .map(|c| c.to_lowercase().next().unwrap_or(c))
            .collect();
        let (mut t, mut p) = (0usize, 0usize);
        let (mut star_p, mut star_t) = (usize::MAX, 0usize);
        while t < text.len() {
            match self.parts.get(p) {
                Some(LikePart::Lit(c)) if *c == text[t] => {
                    t += 1;
                    p += 1;
                }
                Some(LikePart::One) => {
                    t += 1;
                    p += 1;
                }
                Some(LikePart::Any) => {
                    star_p = p;
                    star_t = t;
                    p += 1;
                }
                _ if star_p != usize::MAX => {
                    p = star_p + 1;
                    star_t += 1;
                    t = star_t;
                }
                _ => return false,
            }
        }
        self.parts[p..].iter().all(|x| *x == LikePart::Any)
    }
}

#[derive(Debug, Clone)]
pub struct OrderKey {
    acc: Accessor,
    desc: bool,
    nulls_first: bool,
}

/// A resolved query, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub table: usize,
    pub object: String,
    pub columns: Vec<Column>,
    pub tree: Vec<OutNode>,
    pub count_only: bool,
    pub include_deleted: bool,
    /// Child relationship subqueries, rendered as nested query results.
    pub children: Vec<ChildPlan>,
    /// Aggregate columns (`COUNT(Id)`, `SUM(Amount) total`, …); see `aggregate`.
    pub aggregates: Vec<AggCol>,
    /// `GROUP BY` keys.
    pub group_by: Vec<Accessor>,
    filter: Option<Pred>,
    order: Vec<OrderKey>,
    pub(crate) limit: Option<u64>,
    pub(crate) offset: Option<u64>,
}

/// One aggregate column of an aggregate query.
#[derive(Debug, Clone)]
pub struct AggCol {
    pub func: AggFunc,
    pub acc: Accessor,
    /// Result key: the alias, or `exprN` like Salesforce.
    pub key: String,
}

impl Plan {
    /// Aggregate queries return one `AggregateResult` per group instead of records.
    pub fn is_aggregate(&self) -> bool {
        !self.aggregates.is_empty() || !self.group_by.is_empty()
    }
}

/// A child relationship subquery (`(SELECT … FROM Contacts)`).
#[derive(Debug, Clone)]
pub struct ChildPlan {
    /// Relationship name as the schema spells it (`Contacts`).
    pub key: String,
    /// Lookup column in the child table that points at the parent.
    pub slot: usize,
    pub plan: Plan,
}

/// For each child plan: parent row → its child rows (filtered, sorted, limited).
pub type ChildRows = Vec<std::collections::HashMap<u32, Vec<u32>>>;

fn resolve_path(
    store: &Store,
    base: usize,
    path: &[String],
) -> Result<(Accessor, Vec<String>), ApiError> {
    let mut t = base;
    let mut hops = Vec::new();
    let mut canon = Vec::new();
    for (i, seg) in path.iter().enumerate() {
        let table = &store.tables[t];
        if i + 1 == path.len() {
            let f = table
                .def
                .field(seg)
                .ok_or_else(|| no_such_column(path, &table.def.name))?;
            canon.push(f.name.clone());
            return Ok((
                Accessor {
                    hops,
                    table: t,
                    field: f.clone(),
                },
                canon,
            ));
        }
        // The first segment may repeat the object name (`SELECT Account.Name FROM Account`).
        if i == 0
            && hops.is_empty()
            && seg.eq_ignore_ascii_case(&table.def.name)
            && path.len() > 1
            && table.def.relationship(seg).is_none()
        {
            continue;
        }
        let f = table.def.relationship(seg).ok_or_else(|| {
            ApiError::invalid_field(format!(
                "Didn't understand relationship '{seg}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
            ))
        })?;
        let slot = match f.storage {
            Storage::Column(s) => s,
            _ => return Err(no_such_column(path, &table.def.name)),
        };
        let target = f
            .reference_to
            .as_deref()
            .and_then(|n| store.table_index(n))
            .ok_or_else(|| no_such_column(path, &table.def.name))?;
        canon.push(f.relationship_name.clone().unwrap_or_default());
        hops.push((t, slot));
        t = target;
    }
    Err(ApiError::malformed_query("empty field path"))
}

fn no_such_column(path: &[String], object: &str) -> ApiError {
    let name = path.join(".");
    ApiError::invalid_field(format!(
        "\nSELECT {name} FROM {object}\n       ^\nERROR at Row:1:Column:8\nNo such column '{}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
        path.last().map(String::as_str).unwrap_or("")
    ))
    .with_fields(vec![name])
}

fn type_error(f: &FieldDef, want: &str) -> ApiError {
    ApiError::invalid_field(format!(
        "value of filter criterion for field '{}' must be of type {want} and should not be enclosed in quotes",
        f.name
    ))
}

fn convert(f: &FieldDef, lit: &Literal, today: i64) -> Result<CVal, ApiError> {
    use FieldType as T;
    if *lit == Literal::Null {
        return Ok(CVal::Null);
    }
    match f.ftype {
        T::Id | T::Reference => match lit {
            Literal::Str(s) => {
                if !ids::looks_like_id(s) {
                    return Err(ApiError::new(
                        400,
                        "INVALID_QUERY_FILTER_OPERATOR",
                        format!("invalid ID field: {s}"),
                    ));
                }
                Ok(match ids::parse_id(s) {
                    Some((p, r)) => CVal::Id(p, r),
                    None => CVal::ForeignId(s.to_string()),
                })
            }
            _ => Err(type_error(f, "id")),
        },
        T::Boolean => match lit {
            Literal::Bool(b) => Ok(CVal::Bool(*b)),
            _ => Err(type_error(f, "boolean")),
        },
        T::Int | T::Double | T::Currency | T::Percent => match lit {
            Literal::Num(n) => Ok(CVal::Num(*n)),
            _ => Err(type_error(f, "number")),
        },
        T::Date => match lit {
            Literal::Date(d) => Ok(CVal::Int(*d)),
            Literal::Relative(k) => {
                let (a, b) = k.day_range(today);
                Ok(CVal::Range(a, b))
            }
            _ => Err(type_error(f, "date")),
        },
        T::Datetime => match lit {
            Literal::DateTime(ms) => Ok(CVal::Int(*ms)),
            Literal::Relative(k) => {
                let (a, b) = k.day_range(today);
                Ok(CVal::Range(a * MS_PER_DAY, b * MS_PER_DAY))
            }
            _ => Err(type_error(f, "dateTime")),
        },
        _ => match lit {
            Literal::Str(s) => Ok(CVal::Text(s.to_lowercase())),
            _ => Err(type_error(f, "string").with_fields(vec![])),
        },
    }
}

fn compile(store: &Store, base: usize, e: &Expr, today: i64) -> Result<Pred, ApiError> {
    Ok(match e {
        Expr::And(v) => Pred::And(
            v.iter()
                .map(|x| compile(store, base, x, today))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(v) => Pred::Or(
            v.iter()
                .map(|x| compile(store, base, x, today))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Not(x) => Pred::Not(Box::new(compile(store, base, x, today)?)),
        Expr::Cmp { path, op, value } => {
            let acc = scalar(resolve_path(store, base, path)?.0, "filtered")?;
            let v = convert(&acc.field, value, today)?;
            if matches!(v, CVal::Bool(_) | CVal::Null) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(ApiError::new(
                    400,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    format!("invalid operator on field '{}'", acc.field.name),
                ));
            }
            Pred::Cmp(acc, *op, v)
        }
        Expr::In {
            path,
            values,
            negated,
        } => {
            let acc = scalar(resolve_path(store, base, path)?.0, "filtered")?;
            let vals = values
                .iter()
                .map(|v| convert(&acc.field, v, today))
                .collect::<Result<_, _>>()?;
            let p = Pred::In(acc, vals);
            if *negated { Pred::Not(Box::new(p)) } else { p }
        }
        Expr::InSubquery {
            path,
            query,
            negated,
        } => {
            let (acc, _) = resolve_path(store, base, path)?;
            if !matches!(acc.field.ftype, FieldType::Id | FieldType::Reference) {
                return Err(ApiError::malformed_query(format!(
                    "Semi join sub-selects are only allowed on id fields, not {}",
                    acc.field.name
                )));
            }
            let sub = plan(store, query, false, today)?;
            let [col] = sub.columns.as_slice() else {
                return Err(ApiError::malformed_query(
                    "A semi-join sub-select must select exactly one id field",
                ));
            };
            if !matches!(col.acc.field.ftype, FieldType::Id | FieldType::Reference)
                || sub.is_aggregate()
                || !sub.children.is_empty()
            {
                return Err(ApiError::malformed_query(
                    "A semi-join sub-select must select exactly one id field",
                ));
            }
            let mut set = std::collections::HashSet::new();
            for r in execute(store, &sub) {
                if let Cell::Id(p, row) = col.acc.read(store, r) {
                    set.insert((p, row));
                }
            }
            let p = Pred::InIds(acc, set);
            if *negated { Pred::Not(Box::new(p)) } else { p }
        }
        Expr::Like { path, pattern } => {
            let acc = scalar(resolve_path(store, base, path)?.0, "filtered")?;
            if !acc.field.ftype.is_text() || acc.field.ftype == FieldType::Id {
                return Err(ApiError::new(
                    400,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    format!("invalid operator on id field: {}", acc.field.name),
                ));
            }
            Pred::Like(acc, LikePattern::new(pattern))
        }
    })
}

/// Three-way compare of a stored cell with a literal; `None` when not comparable.
fn cmp_cell(cell: &Cell<'_>, v: &CVal) -> Option<Ordering> {
    match (cell, v) {
        (Cell::Bool(a), CVal::Bool(b)) => Some(a.cmp(b)),
        (Cell::Int(a), CVal::Num(b)) => (*a as f64).partial_cmp(b),
        (Cell::Num(a), CVal::Num(b)) => a.partial_cmp(b),
        (Cell::Text(a), CVal::Text(b)) => Some(cmp_ci(a, b)),
        (Cell::Date(a), CVal::Int(b)) => Some((*a as i64).cmp(b)),
        (Cell::DateTime(a), CVal::Int(b)) => Some(a.cmp(b)),
        (Cell::Id(p, r), CVal::Id(q, s)) => Some((p, r).cmp(&(q, s))),
        (Cell::Id(p, r), CVal::ForeignId(s)) => Some(ids::make_id(p, *r).as_str().cmp(s.as_str())),
        _ => None,
    }
}

/// Case-insensitive compare against an already lower-cased literal, without allocating for
/// ASCII text.
fn cmp_ci(a: &str, lower_b: &str) -> Ordering {
    if a.is_ascii() {
        let ai = a.bytes().map(|c| c.to_ascii_lowercase());
        ai.cmp(lower_b.bytes())
    } else {
        a.to_lowercase().as_str().cmp(lower_b)
    }
}

fn eval_cmp(cell: &Cell<'_>, op: CmpOp, v: &CVal) -> bool {
    if let CVal::Range(a, b) = v {
        let x = match cell {
            Cell::Date(d) => *d as i64,
            Cell::DateTime(ms) => *ms,
            _ => return op == CmpOp::Ne,
        };
        return match op {
            CmpOp::Eq => x >= *a && x < *b,
            CmpOp::Ne => !(x >= *a && x < *b),
            CmpOp::Lt => x < *a,
            CmpOp::Le => x < *b,
            CmpOp::Gt => x >= *b,
            CmpOp::Ge => x >= *a,
        };
    }
    let is_null = matches!(cell, Cell::Null);
    if let CVal::Null = v {
        return match op {
            CmpOp::Eq => is_null,
            _ => !is_null,
        };
    }
    match op {
        // SOQL is two-valued: `!=` matches nulls too.
        CmpOp::Ne => cmp_cell(cell, v) != Some(Ordering::Equal),
        CmpOp::Eq => cmp_cell(cell, v) == Some(Ordering::Equal),
        CmpOp::Lt => cmp_cell(cell, v) == Some(Ordering::Less),
        CmpOp::Le => matches!(cmp_cell(cell, v), Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => cmp_cell(cell, v) == Some(Ordering::Greater),
        CmpOp::Ge => matches!(cmp_cell(cell, v), Some(Ordering::Greater | Ordering::Equal)),
    }
}

fn eval(store: &Store, p: &Pred, row: u32) -> bool {
    match p {
        Pred::And(v) => v.iter().all(|x| eval(store, x, row)),
        Pred::Or(v) => v.iter().any(|x| eval(store, x, row)),
        Pred::Not(x) => !eval(store, x, row),
        Pred::Cmp(acc, op, v) => eval_cmp(&acc.read(store, row), *op, v),
        Pred::In(acc, vals) => {
            let c = acc.read(store, row);
            vals.iter().any(|v| eval_cmp(&c, CmpOp::Eq, v))
        }
        Pred::InIds(acc, set) => match acc.read(store, row) {
            Cell::Id(p, r) => set.contains(&(p, r)),
            _ => false,
        },
        Pred::Like(acc, pat) => match acc.read(store, row) {
            Cell::Text(s) => pat.matches(&s),
            _ => false,
        },
    }
}

/// Resolves `q` against the schema. `today` (days since epoch) anchors relative dates.
pub fn plan(store: &Store, q: &Query, include_deleted: bool, today: i64) -> Result<Plan, ApiError> {
    let table = store
        .table_index(&q.object)
        .ok_or_else(|| ApiError::invalid_type(&q.object))?;
    let object = store.tables[table].def.name.clone();
    let mut columns = Vec::new();
    let mut count_only = false;
    let mut children = Vec::new();
    let mut aggregates: Vec<AggCol> = Vec::new();
    for item in &q.select {
        match item {
            SelectItem::CountAll => count_only = true,
            SelectItem::Subquery(sq) => children.push(child_plan(store, table, sq, today)?),
            SelectItem::Fields(kind) => {
                // Salesforce caps unbounded FIELDS() so a query cannot pull every column of
                // every row; STANDARD is exempt.
                if *kind != FieldsKind::Standard && q.limit.is_none_or(|l| l > 200) {
                    return Err(ApiError::malformed_query(
                        "The SOQL FIELDS function must have a LIMIT of at most 200",
                    ));
                }
                let def = &store.tables[table].def;
                for f in &def.fields {
                    let take = match kind {
                        FieldsKind::All => true,
                        FieldsKind::Standard => !f.custom,
                        FieldsKind::Custom => f.custom,
                    };
                    if take && !columns.iter().any(|c: &Column| c.header == f.name) {
                        let (acc, _) = resolve_path(store, table, std::slice::from_ref(&f.name))?;
                        columns.push(Column::new(store, f.name.clone(), acc));
                    }
                }
            }
            SelectItem::Aggregate { func, path, alias } => {
                let acc = scalar(resolve_path(store, table, path)?.0, "aggregated")?;
                let numeric = matches!(
                    acc.field.ftype,
                    FieldType::Int | FieldType::Double | FieldType::Currency | FieldType::Percent
                );
                if matches!(func, AggFunc::Sum | AggFunc::Avg) && !numeric {
                    return Err(ApiError::malformed_query(format!(
                        "field {} does not support aggregate operator {func:?}",
                        acc.field.name
                    )));
                }
                let key = match alias {
                    Some(a) => a.clone(),
                    None => {
                        let n = aggregates
                            .iter()
                            .filter(|a: &&AggCol| a.key.starts_with("expr"))
                            .count();
                        format!("expr{n}")
                    }
                };
                aggregates.push(AggCol {
                    func: *func,
                    acc,
                    key,
                });
            }
            SelectItem::Field(path) => {
                let (acc, canon) = resolve_path(store, table, path)?;
                let header = canon.join(".");
                if !columns
                    .iter()
                    .any(|c: &Column| c.header.eq_ignore_ascii_case(&header))
                {
                    columns.push(Column::new(store, header, acc));
                }
            }
        }
    }
    let filter = q
        .filter
        .as_ref()
        .map(|e| compile(store, table, e, today))
        .transpose()?;
    let order = q
        .order
        .iter()
        .map(|o| {
            let acc = scalar(resolve_path(store, table, &o.path)?.0, "sorted")?;
            Ok::<_, ApiError>(OrderKey {
                acc,
                desc: o.desc,
                nulls_first: o.nulls_first,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut group_by = Vec::new();
    let mut group_headers = Vec::new();
    for path in &q.group_by {
        let (acc, canon) = resolve_path(store, table, path)?;
        let acc = scalar(acc, "grouped")?;
        group_headers.push(canon.join("."));
        group_by.push(acc);
    }
    if !aggregates.is_empty() || !group_by.is_empty() {
        if count_only || !children.is_empty() {
            return Err(ApiError::malformed_query(
                "COUNT() and subqueries cannot be combined with aggregate functions",
            ));
        }
        if let Some(c) = columns.iter().find(|c| {
            !group_headers
                .iter()
                .any(|g| g.eq_ignore_ascii_case(&c.header))
        }) {
            return Err(ApiError::malformed_query(format!(
                "Field must be grouped or aggregated: {}",
                c.acc.field.name
            )));
        }
    }
    let tree = build_tree(store, table, &columns);
    Ok(Plan {
        table,
        object,
        columns,
        tree,
        count_only,
        include_deleted,
        children,
        aggregates,
        group_by,
        filter,
        order,
        limit: q.limit,
        offset: q.offset,
    })
}

fn child_plan(store: &Store, parent: usize, sq: &Query, today: i64) -> Result<ChildPlan, ApiError> {
    let parent_name = &store.tables[parent].def.name;
    for t in store.tables.iter().filter(|t| t.active) {
        for f in &t.def.fields {
            if f.reference_to.as_deref() != Some(parent_name.as_str()) {
                continue;
            }
            let Some(rel) = crate::schema::child_relationship_name(&t.def, f) else {
                continue;
            };
            if !rel.eq_ignore_ascii_case(&sq.object) {
                continue;
            }
            let Storage::Column(slot) = f.storage else {
                continue;
            };
            let mut q = sq.clone();
            q.object = t.def.name.clone();
            let plan = plan(store, &q, false, today)?;
            if plan.count_only || plan.offset.is_some() {
                return Err(ApiError::malformed_query(
                    "COUNT() and OFFSET are not supported in a child relationship subquery",
                ));
            }
            return Ok(ChildPlan {
                key: rel,
                slot,
                plan,
            });
        }
    }
    Err(ApiError::new(
        400,
        "INVALID_TYPE",
        format!(
            "Didn't understand relationship '{}' in FROM part of query call. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names.",
            sq.object
        ),
    ))
}

/// Child rows of every parent in `parents`, per child plan of `plan`.
pub fn execute_children(store: &Store, plan: &Plan, parents: &[u32]) -> ChildRows {
    let mut out = Vec::with_capacity(plan.children.len());
    for c in &plan.children {
        let mut map: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
        if !parents.is_empty() {
            let wanted: std::collections::HashSet<u32> = parents.iter().copied().collect();
            let mut all = c.plan.clone();
            all.limit = None;
            let child_table = &store.tables[c.plan.table];
            for r in execute(store, &all) {
                if let Some((_, p)) = child_table.ref_row(c.slot, r)
                    && wanted.contains(&p)
                {
                    let v = map.entry(p).or_default();
                    if c.plan.limit.is_none_or(|l| (v.len() as u64) < l) {
                        v.push(r);
                    }
                }
            }
        }
        out.push(map);
    }
    out
}

fn build_tree(store: &Store, base: usize, columns: &[Column]) -> Vec<OutNode> {
    let mut root: Vec<OutNode> = Vec::new();
    for (ci, col) in columns.iter().enumerate() {
        let names: Vec<&str> = col.header.split('.').collect();
        let mut level = &mut root;
        for (depth, &(t, slot)) in col.acc.hops.iter().enumerate() {
            let key = names.get(depth).copied().unwrap_or("").to_string();
            let target = store.tables[t]
                .col(slot)
                .and_then(|c| match c {
                    crate::store::Column::Ref { target, .. } => Some(*target),
                    _ => None,
                })
                .unwrap_or(base);
            let pos = level
                .iter()
                .position(|n| matches!(n, OutNode::Parent { key: k, .. } if *k == key));
            let pos = match pos {
                Some(p) => p,
                None => {
                    level.push(OutNode::Parent {
                        key,
                        slot,
                        target,
                        children: Vec::new(),
                    });
                    level.len() - 1
                }
            };
            level = match &mut level[pos] {
                OutNode::Parent { children, .. } => children,
                OutNode::Field { .. } => return root,
            };
        }
        level.push(OutNode::Field {
            key: col.acc.field.name.clone(),
            col: ci,
        });
    }
    root
}

enum Key {
    Null,
    Int(i64),
    Num(f64),
    Text(Box<str>),
}

fn key_of(c: Cell<'_>) -> Key {
    match c {
        Cell::Null => Key::Null,
        Cell::Bool(b) => Key::Int(b as i64),
        Cell::Int(i) => Key::Int(i),
        Cell::Num(n) => Key::Num(n),
        Cell::Text(s) => Key::Text(s.to_lowercase().into_boxed_str()),
        Cell::Date(d) => Key::Int(d as i64),
        Cell::DateTime(d) => Key::Int(d),
        Cell::Id(p, r) => {
            Key::Int(((u32::from_be_bytes([0, p[0], p[1], p[2]]) as i64) << 32) | r as i64)
        }
    }
}

fn cmp_key(a: &Key, b: &Key, o: &OrderKey) -> Ordering {
    let base = match (a, b) {
        (Key::Null, Key::Null) => return Ordering::Equal,
        (Key::Null, _) => {
            return if o.nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        (_, Key::Null) => {
            return if o.nulls_first {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        (Key::Int(x), Key::Int(y)) => x.cmp(y),
        (Key::Num(x), Key::Num(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Key::Text(x), Key::Text(y)) => x.cmp(y),
        _ => Ordering::Equal,
    };
    if o.desc { base.reverse() } else { base }
}

/// Orders two cells the way `ORDER BY … ASC NULLS FIRST` would (used by `MIN`/`MAX`).
pub fn compare_cells(a: Cell<'_>, b: Cell<'_>) -> Ordering {
    let o = OrderKey {
        acc: Accessor {
            hops: Vec::new(),
            table: 0,
            field: FieldDef::new("x", FieldType::String),
        },
        desc: false,
        nulls_first: true,
    };
    cmp_key(&key_of(a), &key_of(b), &o)
}

fn row_visible(t: &Table, row: usize, include_deleted: bool) -> bool {
    match t.state[row] {
        LIVE => true,
        DELETED => include_deleted,
        _ => false,
    }
}

/// Rows that can match an equality/`IN` on `Id` or on a unique field (the host's conflict
/// check reads 200 records by id or external id at a time): answered from the id itself or
/// the unique index instead of a full scan. `None` = no such conjunct, scan everything.
fn candidates(store: &Store, table: usize, p: &Pred) -> Option<Vec<u32>> {
    let t = &store.tables[table];
    let lookup = |acc: &Accessor, vals: &[&CVal]| -> Option<Vec<u32>> {
        if !acc.hops.is_empty() {
            return None;
        }
        match acc.field.storage {
            Storage::Id => Some(
                vals.iter()
                    .filter_map(|v| match v {
                        CVal::Id(prefix, row)
                            if *prefix == t.def.key_prefix && (*row as usize) < t.len() =>
                        {
                            Some(*row)
                        }
                        _ => None,
                    })
                    .collect(),
            ),
            Storage::Column(slot) if t.unique.contains_key(&slot) => Some(
                vals.iter()
                    .filter_map(|v| match v {
                        CVal::Text(s) => t.lookup_unique(slot, s),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    };
    match p {
        Pred::Cmp(acc, CmpOp::Eq, v) if !matches!(v, CVal::Null | CVal::Range(..)) => {
            lookup(acc, &[v])
        }
        Pred::In(acc, vals)
            if !vals
                .iter()
                .any(|v| matches!(v, CVal::Null | CVal::Range(..))) =>
        {
            lookup(acc, &vals.iter().collect::<Vec<_>>())
        }
        Pred::InIds(acc, set) if acc.hops.is_empty() && acc.field.storage == Storage::Id => Some(
            set.iter()
                .filter(|(p, r)| *p == t.def.key_prefix && (*r as usize) < t.len())
                .map(|(_, r)| *r)
                .collect(),
        ),
        Pred::And(parts) => parts.iter().find_map(|x| candidates(store, table, x)),
        _ => None,
    }
}

/// Rows are already in Id order, so `ORDER BY Id ASC` (Airbyte's choice, and Weft's REST
/// paging) is free.
fn id_order(plan: &Plan) -> bool {
    plan.order.len() == 1
        && plan.order[0].acc.hops.is_empty()
        && plan.order[0].acc.field.storage == Storage::Id
        && !plan.order[0].desc
}

/// The rows `filter` can match by its bounds on the table's own `Id` (`Id > x`, `Id <= y`,
/// … at the top level or under `AND`): rows are numbered in Id order. Everything else is
/// left to the filter, which still checks every row of the range.
fn id_range(t: &Table, filter: &Pred) -> Range<usize> {
    let mut range = 0..t.len();
    let mut narrow = |p: &Pred| {
        let Pred::Cmp(acc, op, CVal::Id(prefix, row)) = p else {
            return;
        };
        if !acc.hops.is_empty() || acc.field.storage != Storage::Id {
            return;
        }
        let own = t.def.key_prefix;
        let row = *row as usize;
        // An Id of another object compares by its key prefix: all of this table's rows are
        // above it, or all below.
        let (lo, hi) = match (op, prefix.cmp(&own)) {
            (_, Ordering::Less) if matches!(op, CmpOp::Gt | CmpOp::Ge) => (0, usize::MAX),
            (_, Ordering::Less) if matches!(op, CmpOp::Lt | CmpOp::Le) => (0, 0),
            (_, Ordering::Greater) if matches!(op, CmpOp::Gt | CmpOp::Ge) => (0, 0),
            (_, Ordering::Greater) if matches!(op, CmpOp::Lt | CmpOp::Le) => (0, usize::MAX),
            (CmpOp::Gt, Ordering::Equal) => (row.saturating_add(1), usize::MAX),
            (CmpOp::Ge, Ordering::Equal) => (row, usize::MAX),
            (CmpOp::Lt, Ordering::Equal) => (0, row),
            (CmpOp::Le, Ordering::Equal) => (0, row.saturating_add(1)),
            _ => (0, usize::MAX),
        };
        range.start = range.start.max(lo);
        range.end = range.end.min(hi);
    };
    match filter {
        Pred::And(parts) => parts.iter().for_each(&mut narrow),
        single => narrow(single),
    }
    range.start = range.start.min(range.end);
    range
}

/// Runs a plan: the matching rows, sorted, after `OFFSET`/`LIMIT`.
pub fn execute(store: &Store, plan: &Plan) -> Vec<u32> {
    let t = &store.tables[plan.table];
    let mut rows: Vec<u32> = Vec::new();
    let keep = |r: usize| {
        row_visible(t, r, plan.include_deleted)
            && plan
                .filter
                .as_ref()
                .is_none_or(|f| eval(store, f, r as u32))
    };
    match plan
        .filter
        .as_ref()
        .and_then(|f| candidates(store, plan.table, f))
    {
        Some(mut cand) => {
            cand.sort_unstable();
            cand.dedup();
            rows.extend(cand.into_iter().filter(|&r| keep(r as usize)));
        }
        None => {
            // Rows are numbered in Id order: a bound on `Id` narrows the scan as the Id
            // index does in an org, so paging by `WHERE Id > last ORDER BY Id LIMIT n`
            // reads one page per query, not the table up to it.
            let range = plan.filter.as_ref().map_or(0..t.len(), |f| id_range(t, f));
            // In scan order, `OFFSET`/`LIMIT` keep the first matches: stop there.
            let scan_order = plan.order.is_empty() || id_order(plan);
            let enough = match plan.limit {
                Some(limit) if scan_order && !plan.count_only && !plan.is_aggregate() => {
                    plan.offset.unwrap_or(0).saturating_add(limit) as usize
                }
                _ => usize::MAX,
            };
            rows.extend(range.filter(|&r| keep(r)).take(enough).map(|r| r as u32));
        }
    }
    if !plan.order.is_empty() && !id_order(plan) {
        let n = plan.order.len();
        let mut keys: Vec<Key> = Vec::with_capacity(rows.len() * n);
        for &r in &rows {
            for o in &plan.order {
                keys.push(key_of(o.acc.read(store, r)));
            }
        }
        let mut idx: Vec<u32> = (0..rows.len() as u32).collect();
        // A total order (ties fall back to the scan position), so sorting only the rows
        // `OFFSET`/`LIMIT` keep gives exactly the prefix a full sort would: `ORDER BY
        // SystemModstamp DESC LIMIT 1` over a large table is a selection, not a sort.
        let order = |&a: &u32, &b: &u32| {
            for (k, o) in plan.order.iter().enumerate() {
                let c = cmp_key(&keys[a as usize * n + k], &keys[b as usize * n + k], o);
                if c != Ordering::Equal {
                    return c;
                }
            }
            a.cmp(&b)
        };
        let kept = plan
            .limit
            .map(|l| (plan.offset.unwrap_or(0).saturating_add(l)) as usize)
            .filter(|&k| k < idx.len());
        if let Some(k) = kept {
            if k == 0 {
                idx.clear();
            } else {
                idx.select_nth_unstable_by(k - 1, order);
                idx.truncate(k);
            }
        }
        idx.sort_unstable_by(order);
        rows = idx.into_iter().map(|i| rows[i as usize]).collect();
    }
    let offset = plan.offset.unwrap_or(0) as usize;
    if offset > 0 {
        rows.drain(..offset.min(rows.len()));
    }
    if let Some(l) = plan.limit {
        rows.truncate(l as usize);
    }
    rows
}
