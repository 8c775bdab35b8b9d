//! One page of Salesforce rows → the installation's plugin (map → coerce → dedup keys) →
//! deliveries encoded for the sink and DLQ entries for what the plugin rejected.
//!
//! The whole step — the call, reading its output, encoding every delivery — is CPU work and
//! runs on the blocking pool, started at once so that the caller can make the previous page
//! durable meanwhile. The page's batch goes to the plugin as it was read; the plugin's output
//! columns are written as the record format's JSON directly.
//!
//! Deletes skip the plugin: there is nothing to map, and a delete must reach the product
//! even when the plugin is broken. A whole-batch plugin failure (trap, timeout, quarantine)
//! dead-letters every live row of the page with the failure's kind, and the sync goes on.

use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;

use super::page::Page;
use super::sink::{Deliveries, Delivery, Op, OutputRow};
use crate::plugin::{
    self, Batch, ChainCalls, ChainResult, Direction, InstalledPlugins, ObjectSchema, PluginError,
    span_text,
};
use crate::runtime::Turn;
use crate::stamp;
use crate::store::{DlqOriginal, NewDlqEntry, Stage};

/// A page ready to commit: what goes to the sink, what goes to the DLQ.
#[derive(Debug, Default)]
pub struct Prepared {
    pub deliveries: Deliveries,
    pub dead: Vec<NewDlqEntry>,
}

/// The plugin side of an installation, shared by its objects.
#[derive(Clone)]
pub struct PluginPath {
    pub installation: Arc<str>,
    pub plugins: Arc<InstalledPlugins>,
}

impl PluginPath {
    /// Starts running `page` of `object` through the plugin on the blocking pool and
    /// returns its result to await. `schema` is the object's describe as a plugin schema:
    /// an identity mapping coerces against it. `turn`, the page's turn on the host's
    /// scheduler, is given back the moment the work ends, not when its result is taken.
    pub fn prepare(
        &self,
        object: &str,
        page: Page,
        schema: Arc<ObjectSchema>,
        turn: Option<Turn>,
    ) -> impl Future<Output = Prepared> + Send + 'static {
        let step = Step {
            installation: self.installation.clone(),
            object: object.to_owned(),
            now: Timestamp::now(),
        };
        // Shared, so that a call whose thread fails still dead-letters every row.
        let page = Arc::new(page);
        let running = {
            let (plugins, step, page) = (self.plugins.clone(), step.clone(), page.clone());
            plugin::start_off_the_runtime(move || {
                let calls = (&*plugins, &*step.installation);
                let prepared = step.run(&calls, &page, &schema);
                drop(turn);
                prepared
            })
        };
        async move {
            match running.await {
                Ok(prepared) => prepared,
                Err(e) => step.all_dead(&page, &e),
            }
        }
    }
}

/// What every delivery and DLQ entry of one page says besides its row.
#[derive(Clone)]
struct Step {
    installation: Arc<str>,
    object: String,
    now: Timestamp,
}

impl Step {
    /// Delivers the page's deletes and dead-letters its malformed rows; returns the rows
    /// left for the plugin.
    fn sort_rows(&self, page: &Page, out: &mut Prepared) -> Vec<usize> {
        let mut live = Vec::with_capacity(page.len());
        for (row, key) in page.rows.iter().enumerate() {
            match (page.id(row), key.stamp) {
                (Some(id), Some(stamp)) if key.deleted => out.push_delete(self, id, stamp),
                (Some(_), Some(_)) => live.push(row),
                _ => out.dead.push(self.dead(
                    page,
                    row,
                    Stage::Map,
                    "MALFORMED_ROW",
                    "the row has no Id or no readable SystemModstamp".into(),
                )),
            }
        }
        live
    }

    fn run(&self, calls: &impl ChainCalls, page: &Page, schema: &ObjectSchema) -> Prepared {
        // A delivery's JSON is at most about twice its row's text, its field names, and a
        // few hundred bytes of Id, stamp, keys and punctuation. Room for that at once: a
        // buffer that doubles copies the page written so far onto fresh pages each time
        // (3% of a Bulk backfill's CPU when this left out the names), while capacity never
        // written adds no pages.
        let names: usize = page.batch.fields.iter().map(|name| name.len() + 4).sum();
        let mut out = Prepared {
            deliveries: Deliveries::with_capacity(
                page.len(),
                page.batch.text.len() * 2 + page.len() * (384 + names),
            ),
            dead: Vec::new(),
        };
        let live = self.sort_rows(page, &mut out);
        if live.is_empty() {
            return out;
        }
        let input = page.select(&live);
        let result = match calls.chain(
            Direction::Inbound,
            &input,
            std::slice::from_ref(schema),
            true,
        ) {
            Ok(result) => result,
            Err(e) => {
                let (code, message) = (e.dlq_code(), format!("map stage failed: {e}"));
                for &row in &live {
                    out.dead
                        .push(self.dead(page, row, Stage::Map, &code, message.clone()));
                }
                return out;
            }
        };
        self.deliver(&mut out, page, &live, &result);
        out
    }

    /// Encodes the chain's output row by row of the input; a row that failed any stage
    /// fails whole, with its first failure.
    fn deliver(&self, out: &mut Prepared, page: &Page, live: &[usize], result: &ChainResult) {
        let mut failed: Vec<Option<(Stage, &str)>> = vec![None; live.len()];
        for error in &result.errors {
            if let Some(slot @ None) = failed.get_mut(error.record as usize) {
                *slot = Some((store_stage(error.stage.into()), error.reason.as_str()));
            }
        }
        let produced: Vec<Produced> = result
            .batches
            .iter()
            .map(|b| Produced::new(&b.batch, &b.keys))
            .collect();
        // The output rows of each input row, in batch order then row order: one flat list
        // in input order (a stable sort keeps that order within an input row).
        let mut outputs: Vec<(u32, usize, usize)> = Vec::with_capacity(live.len());
        for (b, made) in produced.iter().enumerate() {
            for (row, &source) in made.batch.sources.iter().enumerate() {
                outputs.push((source, b, row));
            }
        }
        if !outputs.is_sorted_by_key(|o| o.0) {
            outputs.sort_by_key(|o| o.0);
        }
        let mut outputs = outputs.as_slice();
        for (i, &row) in live.iter().enumerate() {
            let mine = outputs.iter().take_while(|o| o.0 as usize == i).count();
            let (this_row, rest) = outputs.split_at(mine);
            outputs = rest;
            let (Some(id), Some(stamp)) = (page.id(row), page.rows[row].stamp) else {
                continue;
            };
            if let Some((stage, reason)) = failed[i] {
                out.dead
                    .push(self.dead(page, row, stage, "PLUGIN_REJECTED", reason.to_owned()));
                continue;
            }
            stamp::with_text(stamp.as_millisecond(), |stamp| {
                out.deliveries.push_upsert(
                    &self.installation,
                    &self.object,
                    id,
                    stamp,
                    this_row.iter().map(|&(_, b, r)| produced[b].row(r)),
                )
            });
        }
    }

    /// Every live row of `page` dead-lettered with `error`: the call's thread failed.
    fn all_dead(&self, page: &Page, error: &PluginError) -> Prepared {
        let mut out = Prepared::default();
        let (code, message) = (error.dlq_code(), error.to_string());
        for row in self.sort_rows(page, &mut out) {
            out.dead
                .push(self.dead(page, row, Stage::Map, &code, message.clone()));
        }
        out
    }

    fn idempotency_key(&self, id: &str, stamp: &str) -> String {
        format!("{}/{}/{id}/{stamp}", self.installation, self.object)
    }

    fn dead(
        &self,
        page: &Page,
        row: usize,
        stage: Stage,
        code: &str,
        message: String,
    ) -> NewDlqEntry {
        NewDlqEntry {
            installation: self.installation.to_string(),
            original: DlqOriginal::Record {
                object: self.object.clone(),
                record: page.record(row),
            },
            stage,
            error_code: code.to_owned(),
            message,
            fields: Vec::new(),
            at: self.now,
        }
    }
}

impl Prepared {
    fn push_delete(&mut self, step: &Step, id: &str, stamp: Timestamp) {
        let stamp = stamp::format(stamp);
        let delivery = Delivery {
            idempotency_key: step.idempotency_key(id, &stamp),
            object: step.object.clone(),
            id: id.to_owned(),
            system_modstamp: stamp,
            op: Op::Delete,
            output: Vec::new(),
        };
        if let Err(e) = self.deliveries.push(&delivery) {
            // A delivery of plain strings always encodes; should it not, the row is kept.
            self.dead.push(NewDlqEntry {
                installation: step.installation.to_string(),
                original: DlqOriginal::Record {
                    object: step.object.clone(),
                    record: serde_json::Map::from_iter([("Id".to_owned(), id.into())]),
                },
                stage: Stage::Map,
                error_code: "MALFORMED_ROW".into(),
                message: format!("encoding the delete: {e}"),
                fields: Vec::new(),
                at: step.now,
            });
        }
    }
}

/// One batch the plugin produced, ready to write: its fields in name order, each name
/// encoded once, and each row's dedup keys.
struct Produced<'a> {
    batch: &'a Batch,
    fields: Vec<usize>,
    names: Vec<Vec<u8>>,
    /// `(row, name, value)` in row then name order, one per name of a row.
    keys: Vec<(u32, &'a str, &'a str)>,
    /// Where each row's keys start in `keys` (and, one past the last row, end).
    key_starts: Vec<usize>,
}

impl<'a> Produced<'a> {
    fn new(batch: &'a Batch, keys: &'a plugin::DedupKeys) -> Self {
        // In name order, as a JSON map holds fields (checked output repeats no name).
        let mut fields: Vec<usize> = (0..batch.fields.len()).collect();
        fields.sort_by(|&a, &b| batch.fields[a].cmp(&batch.fields[b]));
        let names = fields
            .iter()
            .map(|&f| field_name(&batch.fields[f]))
            .collect();
        let text =
            |packed: u64| span_text(&keys.text, plugin::payload_span(packed)).unwrap_or_default();
        let rows = batch.sources.len();
        let mut all: Vec<(u32, &str, &str)> = keys
            .records
            .iter()
            .zip(&keys.names)
            .zip(&keys.values)
            .filter(|((record, _), _)| (**record as usize) < rows)
            .map(|((&record, &name), &value)| (record, text(name), text(value)))
            .collect();
        // As a map per row: name order, a repeated name's last value. Plugins write keys
        // row by row, so only each row's few keys need a (stable) sort, not the page's;
        // `dedup_by` keeps the first of equal neighbours, and moving each later value into
        // it keeps the last value.
        if !all.is_sorted_by(|a, b| (a.0, a.1) <= (b.0, b.1)) {
            if all.is_sorted_by_key(|k| k.0) {
                for row_keys in all.chunk_by_mut(|a, b| a.0 == b.0) {
                    row_keys.sort_by(|a, b| a.1.cmp(b.1));
                }
            } else {
                all.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            }
        }
        all.dedup_by(|later, earlier| {
            let same = (later.0, later.1) == (earlier.0, earlier.1);
            if same {
                earlier.2 = later.2;
            }
            same
        });
        let mut key_starts = Vec::with_capacity(rows + 1);
        let mut at = 0;
        for row in 0..=rows as u32 {
            while all.get(at).is_some_and(|k| k.0 < row) {
                at += 1;
            }
            key_starts.push(at);
        }
        Produced {
            batch,
            fields,
            names,
            keys: all,
            key_starts,
        }
    }

    fn row(&self, row: usize) -> OutputRow<'_> {
        let keys = match (self.key_starts.get(row), self.key_starts.get(row + 1)) {
            (Some(&start), Some(&end)) => self.keys.get(start..end).unwrap_or(&[]),
            _ => &[],
        };
        OutputRow {
            batch: self.batch,
            fields: &self.fields,
            names: &self.names,
            row,
            keys,
        }
    }
}

/// `"name":` as JSON, written once per batch rather than once per value.
fn field_name(name: &str) -> Vec<u8> {
    let mut out = serde_json::to_vec(name).unwrap_or_else(|_| b"\"\"".to_vec());
    out.push(b':');
    out
}

fn store_stage(stage: plugin::Stage) -> Stage {
    match stage {
        plugin::Stage::Map => Stage::Map,
        plugin::Stage::Coerce => Stage::Coerce,
        plugin::Stage::Dedup => Stage::Dedup,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{BatchBuilder, DedupKeys};

    #[test]
    fn each_row_keeps_its_keys_in_name_order_with_a_repeated_names_last_value() {
        let mut builder = BatchBuilder::new("Account");
        for _ in 0..3 {
            builder.push_record();
        }
        let batch = builder.finish();
        let text = "zid_a_b1b2x";
        let span = |offset: u64, len: u64| offset | (len << 32);
        // Row 1: z=b1, id=a, then z again = b2; row 0: id=x. Out of row order on purpose.
        let keys = DedupKeys {
            records: vec![1, 1, 1, 0, 7],
            names: vec![span(0, 1), span(1, 2), span(0, 1), span(1, 2), span(1, 2)],
            values: vec![span(6, 2), span(4, 1), span(8, 2), span(10, 1), span(4, 1)],
            text: text.into(),
        };
        let produced = Produced::new(&batch, &keys);
        let row = |r: usize| -> Vec<(&str, &str)> {
            produced.row(r).keys.iter().map(|k| (k.1, k.2)).collect()
        };
        assert_eq!(row(0), [("id", "x")]);
        assert_eq!(row(1), [("id", "a"), ("z", "b2")]);
        assert!(
            row(2).is_empty(),
            "a key naming no row of the batch is dropped"
        );

        // Rows in order, names not (as plugins write them): each row sorted on its own.
        let keys = DedupKeys {
            records: vec![0, 0, 0, 1, 1, 1],
            names: vec![
                span(0, 1),
                span(1, 2),
                span(0, 1),
                span(0, 1),
                span(1, 2),
                span(1, 2),
            ],
            values: vec![
                span(6, 2),
                span(4, 1),
                span(8, 2),
                span(10, 1),
                span(4, 1),
                span(6, 2),
            ],
            text: text.into(),
        };
        let produced = Produced::new(&batch, &keys);
        let row = |r: usize| -> Vec<(&str, &str)> {
            produced.row(r).keys.iter().map(|k| (k.1, k.2)).collect()
        };
        assert_eq!(row(0), [("id", "a"), ("z", "b2")]);
        assert_eq!(row(1), [("id", "b1"), ("z", "x")]);
    }
}
