//! Rows → wire bytes: REST JSON records and Bulk 2.0 CSV.
//!
//! Owns value formatting (`2013-05-20T20:49:32.000+0000` in JSON, `...Z` in CSV, `1000.0` for
//! currency, 18-char ids), JSON escaping, CSV quoting and the nested `attributes` objects of
//! parent relationships. It writes straight into byte buffers — no intermediate
//! `serde_json::Value` per record — because this is the hot path of every benchmark. It never
//! decides which rows to write.

use crate::clock;
use crate::ids;
use crate::query::{ChildRows, OutNode, Plan};
use crate::schema::FieldType;
use crate::store::{Cell, Store};
use std::io::Write;

/// Appends a JSON string literal.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{:04x}", b);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_num(out: &mut Vec<u8>, n: f64, ftype: FieldType) {
    if ftype == FieldType::Int {
        let _ = write!(out, "{}", n as i64);
    } else if n.fract() == 0.0 && n.abs() < 1e15 {
        // Salesforce serialises doubles the Java way: `1000.0`, never `1000`.
        let _ = write!(out, "{}.0", n as i64);
    } else {
        let _ = write!(out, "{n}");
    }
}

/// Appends one cell as a JSON value.
pub fn write_json_cell(out: &mut Vec<u8>, cell: &Cell<'_>, ftype: FieldType) {
    match cell {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Cell::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Cell::Num(n) => write_num(out, *n, ftype),
        Cell::Text(s) => write_json_str(out, s),
        Cell::Date(d) => {
            out.push(b'"');
            clock::write_date(out, *d as i64);
            out.push(b'"');
        }
        Cell::DateTime(ms) => {
            out.push(b'"');
            clock::write_datetime(out, *ms, b"+0000");
            out.push(b'"');
        }
        Cell::Id(p, r) => {
            out.push(b'"');
            ids::write_id(out, p, *r);
            out.push(b'"');
        }
    }
}

/// Appends `"attributes":{"type":T,"url":"/services/data/vV/sobjects/T/ID"}`.
pub fn write_attributes(
    out: &mut Vec<u8>,
    version: &str,
    object: &str,
    prefix: &[u8; 3],
    row: u32,
) {
    out.extend_from_slice(b"\"attributes\":{\"type\":\"");
    out.extend_from_slice(object.as_bytes());
    out.extend_from_slice(b"\",\"url\":\"/services/data/v");
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(b"/sobjects/");
    out.extend_from_slice(object.as_bytes());
    out.push(b'/');
    ids::write_id(out, prefix, row);
    out.extend_from_slice(b"\"}");
}

/// Appends one REST query record (with nested parents, and child subquery results from
/// `kids`, computed by `query::execute_children`) as a JSON object.
pub fn write_record(
    out: &mut Vec<u8>,
    store: &Store,
    plan: &Plan,
    version: &str,
    row: u32,
    kids: &ChildRows,
) {
    write_node_object(out, store, plan, version, plan.table, row, &plan.tree);
    if plan.children.is_empty() {
        return;
    }
    out.pop(); // reopen the object to append the child relationships
    for (c, map) in plan.children.iter().zip(kids.iter()) {
        out.push(b',');
        write_json_str(out, &c.key);
        out.push(b':');
        match map.get(&row) {
            None => out.extend_from_slice(b"null"),
            Some(rows) => {
                out.extend_from_slice(
                    format!("{{\"totalSize\":{},\"done\":true,\"records\":[", rows.len())
                        .as_bytes(),
                );
                for (i, &r) in rows.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_node_object(out, store, &c.plan, version, c.plan.table, r, &c.plan.tree);
                }
                out.extend_from_slice(b"]}");
            }
        }
    }
    out.push(b'}');
}

fn write_node_object(
    out: &mut Vec<u8>,
    store: &Store,
    plan: &Plan,
    version: &str,
    table: usize,
    row: u32,
    nodes: &[OutNode],
) {
    let t = &store.tables[table];
    out.push(b'{');
    write_attributes(out, version, &t.def.name, &t.def.key_prefix, row);
    for n in nodes {
        out.push(b',');
        match n {
            OutNode::Field { key, col } => {
                write_json_str(out, key);
                out.push(b':');
                let c = &plan.columns[*col];
                if c.is_compound() {
                    write_compound(out, store, t, &c.parts, row);
                } else {
                    let cell = t.cell(&store.tables, &c.acc.field, row);
                    write_json_cell(out, &cell, c.acc.field.ftype);
                }
            }
            OutNode::Parent {
                key,
                slot,
                target,
                children,
                ..
            } => {
                write_json_str(out, key);
                out.push(b':');
                match t.ref_row(*slot, row) {
                    Some((_, r)) => {
                        write_node_object(out, store, plan, version, *target, r, children)
                    }
                    None => out.extend_from_slice(b"null"),
                }
            }
        }
    }
    out.push(b'}');
}

/// Appends a compound value (`{"city":…,"country":…,…}`) from its components, or `null`
/// when every component is null, as a real org writes an empty address.
pub fn write_compound(
    out: &mut Vec<u8>,
    store: &Store,
    t: &crate::store::Table,
    parts: &[(&'static str, crate::schema::FieldDef)],
    row: u32,
) {
    let cells: Vec<Cell<'_>> = parts
        .iter()
        .map(|(_, f)| t.cell(&store.tables, f, row))
        .collect();
    if cells.iter().all(|c| *c == Cell::Null) {
        out.extend_from_slice(b"null");
        return;
    }
    out.push(b'{');
    for (i, ((key, f), cell)) in parts.iter().zip(&cells).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, key);
        out.push(b':');
        write_json_cell(out, cell, f.ftype);
    }
    out.push(b'}');
}

/// CSV dialect of a Bulk job.
#[derive(Debug, Clone, Copy)]
pub struct CsvDialect {
    pub delimiter: u8,
    pub crlf: bool,
}

impl CsvDialect {
    pub fn from_names(column_delimiter: &str, line_ending: &str) -> Option<Self> {
        let delimiter = match column_delimiter {
            "COMMA" => b',',
            "TAB" => b'\t',
            "PIPE" => b'|',
            "SEMICOLON" => b';',
            "CARET" => b'^',
            "BACKQUOTE" => b'`',
            _ => return None,
        };
        let crlf = match line_ending {
            "LF" => false,
            "CRLF" => true,
            _ => return None,
        };
        Some(CsvDialect { delimiter, crlf })
    }

    pub fn end_line(&self, out: &mut Vec<u8>) {
        if self.crlf {
            out.extend_from_slice(b"\r\n");
        } else {
            out.push(b'\n');
        }
    }
}

/// Appends a quoted CSV field (embedded quotes doubled).
pub fn write_csv_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' {
            out.extend_from_slice(&bytes[start..=i]);
            out.push(b'"');
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

pub fn write_csv_header(out: &mut Vec<u8>, headers: &[&str], d: CsvDialect) {
    for (i, h) in headers.iter().enumerate() {
        if i > 0 {
            out.push(d.delimiter);
        }
        write_csv_quoted(out, h);
    }
    d.end_line(out);
}

/// Appends one cell as a CSV field: null is an empty unquoted field, everything else is
/// quoted like Salesforce's own result files.
pub fn write_csv_cell(out: &mut Vec<u8>, cell: &Cell<'_>, ftype: FieldType) {
    match cell {
        Cell::Null => {}
        Cell::Text(s) => write_csv_quoted(out, s),
        Cell::DateTime(ms) => {
            out.push(b'"');
            clock::write_datetime(out, *ms, b"Z");
            out.push(b'"');
        }
        Cell::Date(d) => {
            out.push(b'"');
            clock::write_date(out, *d as i64);
            out.push(b'"');
        }
        Cell::Id(p, r) => {
            out.push(b'"');
            ids::write_id(out, p, *r);
            out.push(b'"');
        }
        other => {
            out.push(b'"');
            write_json_cell(out, other, ftype);
            out.push(b'"');
        }
    }
}

/// Appends one CSV record of a query plan.
pub fn write_csv_row(out: &mut Vec<u8>, store: &Store, plan: &Plan, row: u32, d: CsvDialect) {
    for (i, c) in plan.columns.iter().enumerate() {
        if i > 0 {
            out.push(d.delimiter);
        }
        let cell = c.acc.read(store, row);
        write_csv_cell(out, &cell, c.acc.field.ftype);
    }
    d.end_line(out);
}

/// One cell as a `serde_json::Value` (REST formats), for the cold paths: single-record reads
/// and change events.
pub fn cell_to_json(cell: &Cell<'_>, ftype: FieldType) -> serde_json::Value {
    let mut buf = Vec::with_capacity(32);
    write_json_cell(&mut buf, cell, ftype);
    serde_json::from_slice(&buf).unwrap_or(serde_json::Value::Null)
}
