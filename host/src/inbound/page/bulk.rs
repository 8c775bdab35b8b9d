//! Bulk API 2.0 CSV rows → a page. The parsed rows' text buffer becomes the batch's text as
//! it is: a text cell is a span already, so only numbers and booleans are read.

use std::collections::BTreeMap;

use super::{Page, sorted};
use crate::plugin::{Batch, Column, Span, Value};
use crate::salesforce::SObjectDescribe;
use crate::salesforce::csv::{Cell, CsvTable};

/// How a column's text is read, by the field's describe type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Boolean,
    Integer,
    Double,
}

fn kind(describe: &SObjectDescribe, column: &str) -> Kind {
    match describe.field(column).map(|f| f.field_type.as_str()) {
        Some("boolean") => Kind::Boolean,
        Some("int" | "long") => Kind::Integer,
        Some("double" | "currency" | "percent") => Kind::Double,
        // Parent fields (`Account.Name`) are not in the object's describe: text.
        _ => Kind::Text,
    }
}

/// Types `cell` as Bulk would have it read: an empty cell (quoted or not) is null; a value
/// that does not read as its field's type stays text.
fn typed(kind: Kind, table: &CsvTable, cell: Cell) -> Value {
    let Some(text) = table.text(cell).filter(|t| !t.is_empty()) else {
        return Value::Null;
    };
    let span = Value::Text(Span {
        offset: cell.offset,
        len: cell.len,
    });
    match kind {
        Kind::Text => span,
        Kind::Boolean => match text {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => span,
        },
        Kind::Integer => text.parse::<i64>().map_or(span, Value::Integer),
        Kind::Double => match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Value::Number(n),
            _ => span,
        },
    }
}

/// The page of `rows` under the header `columns`. A row shorter than the header leaves its
/// last fields absent; a name the header repeats takes the later cell.
pub fn from_bulk(
    object: &str,
    columns: &[String],
    rows: CsvTable,
    describe: &SObjectDescribe,
) -> Page {
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, name) in columns.iter().enumerate() {
        by_name.insert(name, i);
    }
    let count = rows.len();
    let mut fields = Vec::with_capacity(by_name.len());
    let mut values = Vec::with_capacity(by_name.len());
    for (name, i) in by_name {
        let kind = kind(describe, name);
        let mut column = Column::with_capacity(count);
        for row in 0..count {
            column.push(match rows.row(row).get(i) {
                Some(&cell) => typed(kind, &rows, cell),
                None => Value::Absent,
            });
        }
        fields.push(name.to_owned());
        values.push(column);
    }
    let batch = Batch {
        object: object.to_owned(),
        fields,
        columns: values,
        sources: (0..count as u32).collect(),
        text: rows.into_text(),
    };
    Page::of(sorted(batch))
}
