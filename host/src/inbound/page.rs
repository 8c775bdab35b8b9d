//! A page of Salesforce rows as the plugin reads it: one columnar batch, built straight from
//! the wire — Bulk CSV cells or a streamed REST JSON body — without a map or a `String` per
//! value, plus each row's Id, `SystemModstamp` and deleted flag.
//!
//! Both APIs give batches of one shape: fields sorted by name (parent fields dotted,
//! `Account.Owner.Alias`), values typed (Bulk sends every value as text and a null as an
//! empty cell, so its cells are typed by describe; REST sends JSON types), text in one
//! buffer addressed by spans. A plugin's output does not depend on how large the object
//! happened to be.

mod bulk;
mod rest;

use std::borrow::Cow;

use jiff::Timestamp;
use serde_json::{Map, Value as Json};

use crate::plugin::{Batch, Column, Span, Value, record_to_json, span_text};
use crate::stamp;

pub use bulk::from_bulk;
pub use rest::from_rest;

/// One page: the batch of every row read, and what the sync needs of each row.
#[derive(Debug, Clone)]
pub struct Page {
    pub batch: Batch,
    pub rows: Vec<RowKey>,
}

/// Which record version a row is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKey {
    /// Where its Id is in the batch's text ([`Page::id`] reads it).
    id: Option<Span>,
    pub stamp: Option<Timestamp>,
    pub deleted: bool,
}

impl Page {
    /// The page of `batch`, whose fields [`sorted`] has ordered.
    fn of(batch: Batch) -> Page {
        let column = |name: &str| {
            batch
                .fields
                .iter()
                .position(|f| f == name)
                .and_then(|i| batch.columns.get(i))
        };
        let span = |column: Option<&Column>, row: usize| match column.and_then(|c| c.get(row)) {
            Some(Value::Text(span)) => Some(span),
            _ => None,
        };
        let text = |column: Option<&Column>, row: usize| {
            span(column, row).and_then(|s| span_text(&batch.text, s))
        };
        let (ids, stamps, deleted) = (column("Id"), column("SystemModstamp"), column("IsDeleted"));
        let rows = (0..batch.sources.len())
            .map(|row| RowKey {
                id: span(ids, row),
                stamp: text(stamps, row).and_then(stamp::parse),
                deleted: match deleted.and_then(|c| c.get(row)) {
                    Some(Value::Boolean(b)) => b,
                    Some(Value::Text(_)) => text(deleted, row) == Some("true"),
                    _ => false,
                },
            })
            .collect();
        Page { batch, rows }
    }

    /// A page of already parsed REST records (with `attributes` and nested parents): the
    /// tree path the streamed reader is held to.
    #[cfg(test)]
    pub fn from_records(object: &str, records: Vec<Map<String, Json>>) -> Page {
        let flat: Vec<Map<String, Json>> =
            records.into_iter().map(super::rows::from_rest).collect();
        Page::of(sorted(crate::plugin::batch_from_json(object, &flat)))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Row `row`'s Id.
    pub fn id(&self, row: usize) -> Option<&str> {
        let span = self.rows.get(row)?.id?;
        span_text(&self.batch.text, span)
    }

    /// The Id of the last row that has one: where the next page starts.
    pub fn last_id(&self) -> Option<&str> {
        (0..self.rows.len()).rev().find_map(|row| self.id(row))
    }

    /// Row `row` as a JSON object, as the DLQ keeps an original record.
    pub fn record(&self, row: usize) -> Map<String, Json> {
        record_to_json(&self.batch, row)
    }

    /// The page of only the rows in `keep` (ascending).
    pub fn keep(self, keep: &[usize]) -> Page {
        if keep.len() == self.rows.len() {
            return self;
        }
        let batch = self.select(keep).into_owned();
        let rows = keep
            .iter()
            .filter_map(|&r| self.rows.get(r).cloned())
            .collect();
        Page { batch, rows }
    }

    /// The batch of only the rows in `keep` (ascending), numbered from 0 again; the text
    /// buffer is copied whole, so every span still points where it did.
    pub fn select(&self, keep: &[usize]) -> Cow<'_, Batch> {
        if keep.len() == self.batch.sources.len() {
            return Cow::Borrowed(&self.batch);
        }
        let columns = self
            .batch
            .columns
            .iter()
            .map(|column| {
                let mut out = Column::with_capacity(keep.len());
                for &row in keep {
                    out.push(column.get(row).unwrap_or(Value::Absent));
                }
                out
            })
            .collect();
        Cow::Owned(Batch {
            object: self.batch.object.clone(),
            fields: self.batch.fields.clone(),
            columns,
            sources: (0..keep.len() as u32).collect(),
            text: self.batch.text.clone(),
        })
    }
}

/// `batch` with its fields in name order, as a JSON object's keys are.
fn sorted(mut batch: Batch) -> Batch {
    if batch.fields.is_sorted() {
        return batch;
    }
    let mut order: Vec<usize> = (0..batch.fields.len()).collect();
    order.sort_by(|&a, &b| batch.fields[a].cmp(&batch.fields[b]));
    let mut fields: Vec<Option<String>> = batch.fields.drain(..).map(Some).collect();
    let mut columns: Vec<Option<Column>> = batch.columns.drain(..).map(Some).collect();
    for i in order {
        if let (Some(field), Some(column)) = (fields[i].take(), columns[i].take()) {
            batch.fields.push(field);
            batch.columns.push(column);
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_come_from_the_id_stamp_and_deleted_columns() {
        let records = vec![
            json!({"attributes": {}, "Id": "001A", "SystemModstamp": "2026-11-23T18:20:58.000+0000", "IsDeleted": true, "Name": "a"}),
            json!({"attributes": {}, "Id": null, "SystemModstamp": "later", "Name": "b"}),
            json!({"attributes": {}, "Id": "001C", "SystemModstamp": "2026-11-23T18:20:59.000Z", "IsDeleted": false}),
        ];
        let records = records
            .into_iter()
            .map(|r| match r {
                Json::Object(m) => m,
                _ => unreachable!(),
            })
            .collect();
        let page = Page::from_records("Account", records);
        assert_eq!(
            page.batch.fields,
            ["Id", "IsDeleted", "Name", "SystemModstamp"]
        );
        assert_eq!(page.id(0), Some("001A"));
        assert!(page.rows[0].deleted);
        assert!(page.rows[0].stamp.is_some());
        assert_eq!(page.id(1), None);
        assert_eq!(page.rows[1].stamp, None);
        assert!(!page.rows[2].deleted);
        assert_eq!(page.last_id(), Some("001C"));
        let kept = page.clone().keep(&[2]);
        assert_eq!(kept.id(0), Some("001C"));
        let only_last = page.select(&[2]);
        assert_eq!(only_last.sources, [0]);
        assert_eq!(
            crate::plugin::batch_to_json(&only_last),
            vec![page.record(2)]
        );
    }
}
