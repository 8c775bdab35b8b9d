//! Aggregate queries: `COUNT(field)`, `COUNT_DISTINCT`, `SUM`, `AVG`, `MIN`, `MAX` with
//! `GROUP BY`, rendered as `AggregateResult` records.
//!
//! Owns grouping (groups appear in the order of their first row, so an `ORDER BY` on the
//! grouped fields orders the groups), the accumulators, `LIMIT`/`OFFSET` on groups, and the
//! result shape: group fields under their field names, aggregates under their alias or
//! `expr0…`. Like Salesforce it refuses more than 2,000 groups without a `LIMIT`, because
//! aggregate results cannot be paged with `queryMore`.

use crate::error::ApiError;
use crate::query::{self, Plan};
use crate::render;
use crate::schema::FieldType;
use crate::soql::AggFunc;
use crate::store::{Cell, Store};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// Most groups returned without a `LIMIT` (one REST batch).
const MAX_GROUPS: usize = 2_000;

enum Acc {
    Count(u64),
    Distinct(HashSet<Vec<u8>>),
    Sum(f64, bool),
    Avg(f64, u64),
    /// Row holding the best value so far.
    Extreme(Option<u32>),
}

struct Group {
    first_row: u32,
    accs: Vec<Acc>,
}

fn cell_bytes(cell: &Cell<'_>, ftype: FieldType) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    render::write_json_cell(&mut v, cell, ftype);
    v
}

fn number(c: &Cell<'_>) -> Option<f64> {
    match c {
        Cell::Int(i) => Some(*i as f64),
        Cell::Num(n) => Some(*n),
        _ => None,
    }
}

/// Runs an aggregate plan: each group as a rendered JSON `AggregateResult` record.
pub fn run(store: &Store, plan: &Plan) -> Result<Vec<Vec<u8>>, ApiError> {
    let mut all = plan.clone();
    all.limit = None;
    all.offset = None;
    let rows = query::execute(store, &all);
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let new_accs = || -> Vec<Acc> {
        plan.aggregates
            .iter()
            .map(|a| match a.func {
                AggFunc::Count => Acc::Count(0),
                AggFunc::CountDistinct => Acc::Distinct(HashSet::new()),
                AggFunc::Sum => Acc::Sum(0.0, false),
                AggFunc::Avg => Acc::Avg(0.0, 0),
                AggFunc::Min | AggFunc::Max => Acc::Extreme(None),
            })
            .collect()
    };
    if plan.group_by.is_empty() {
        // No GROUP BY: one result over every row, even when there are none.
        groups.push(Group {
            first_row: u32::MAX,
            accs: new_accs(),
        });
    }
    for &r in &rows {
        let gi = if plan.group_by.is_empty() {
            0
        } else {
            let mut key = Vec::new();
            for g in &plan.group_by {
                key.extend(cell_bytes(&g.read(store, r), g.field.ftype));
                key.push(0xff);
            }
            *index.entry(key).or_insert_with(|| {
                groups.push(Group {
                    first_row: r,
                    accs: new_accs(),
                });
                groups.len() - 1
            })
        };
        for (a, acc) in plan.aggregates.iter().zip(groups[gi].accs.iter_mut()) {
            let cell = a.acc.read(store, r);
            if matches!(cell, Cell::Null) {
                continue;
            }
            match acc {
                Acc::Count(n) => *n += 1,
                Acc::Distinct(set) => {
                    set.insert(cell_bytes(&cell, a.acc.field.ftype));
                }
                Acc::Sum(s, any) => {
                    *s += number(&cell).unwrap_or(0.0);
                    *any = true;
                }
                Acc::Avg(s, n) => {
                    *s += number(&cell).unwrap_or(0.0);
                    *n += 1;
                }
                Acc::Extreme(best) => {
                    let better = match best {
                        None => true,
                        Some(b) => {
                            let o = query::compare_cells(cell.clone(), a.acc.read(store, *b));
                            if a.func == AggFunc::Min {
                                o == Ordering::Less
                            } else {
                                o == Ordering::Greater
                            }
                        }
                    };
                    if better {
                        *best = Some(r);
                    }
                }
            }
        }
    }
    if plan.limit.is_none() && groups.len() > MAX_GROUPS {
        return Err(ApiError::malformed_query(
            "Aggregate query does not support queryMore(), use LIMIT to restrict the results to a single batch",
        ));
    }
    let offset = plan.offset.unwrap_or(0) as usize;
    let limit = plan.limit.map_or(usize::MAX, |l| l as usize);
    let mut out = Vec::new();
    for g in groups.into_iter().skip(offset).take(limit) {
        let mut rec = Vec::with_capacity(128);
        rec.extend_from_slice(br#"{"attributes":{"type":"AggregateResult"}"#);
        for acc in &plan.group_by {
            rec.push(b',');
            render::write_json_str(&mut rec, &acc.field.name);
            rec.push(b':');
            render::write_json_cell(&mut rec, &acc.read(store, g.first_row), acc.field.ftype);
        }
        for (a, acc) in plan.aggregates.iter().zip(g.accs.iter()) {
            rec.push(b',');
            render::write_json_str(&mut rec, &a.key);
            rec.push(b':');
            let (cell, ftype) = match acc {
                Acc::Count(n) => (Cell::Int(*n as i64), FieldType::Int),
                Acc::Distinct(s) => (Cell::Int(s.len() as i64), FieldType::Int),
                Acc::Sum(s, true) => (Cell::Num(*s), FieldType::Double),
                Acc::Avg(s, n) if *n > 0 => (Cell::Num(*s / *n as f64), FieldType::Double),
                Acc::Sum(..) | Acc::Avg(..) => (Cell::Null, FieldType::Double),
                Acc::Extreme(Some(r)) => (a.acc.read(store, *r), a.acc.field.ftype),
                Acc::Extreme(None) => (Cell::Null, a.acc.field.ftype),
            };
            render::write_json_cell(&mut rec, &cell, ftype);
        }
        rec.push(b'}');
        out.push(rec);
    }
    Ok(out)
}
