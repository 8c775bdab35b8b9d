//! What an object's sync remembers between pages and across restarts, kept in the store:
//! the backfill checkpoint and the incremental watermark.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::salesforce::BulkCursor;
use crate::store::{StateKind, Store, StoreError, StoreExt, StoreTxn, encode};

/// Most delivered rows remembered for the lookback window (about 60 bytes each in a
/// checkpoint or watermark).
pub const RECENT_CAP: usize = 20_000;

/// A backfill in progress. Committed after every page the sink has made durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    /// The fields read (the selection when it started).
    pub fields: Vec<String>,
    /// Why it runs: `initial`, or the fields it was started for.
    pub reason: String,
    /// Rows are read in Id order; every row up to this Id is delivered.
    pub last_id: Option<String>,
    /// The Bulk job being read, when the backfill uses Bulk API 2.0.
    pub bulk: Option<BulkCursor>,
    pub use_bulk: bool,
    /// Rows delivered (or dead-lettered) so far, and the count when it started.
    pub done: u64,
    pub total: u64,
    pub failed: u64,
    /// Newest `SystemModstamp` when it started (ms): incremental sync takes over from here.
    pub high_water_ms: i64,
    /// Wall clock when it started (ms): hard deletes are looked up from here.
    pub started_ms: i64,
    /// Delivered rows stamped within the lookback window of `high_water_ms` or later, by
    /// Id → `SystemModstamp` (ms): the first incremental pass re-reads that window and
    /// must know them. Saved in their own slot ([`Backfill::save`]), not with the rest; a
    /// checkpoint from an earlier build that carries them still reads.
    #[serde(default, skip_serializing)]
    pub recent: BTreeMap<String, i64>,
    /// How many of `recent` are saved: they only grow while the backfill runs.
    #[serde(skip)]
    pub recent_saved: usize,
    /// Where the object's sink ended when this checkpoint was written, for a sink that can
    /// cut back to it (the NDJSON files): a resumed backfill does, so what pages past the
    /// checkpoint wrote is not there twice. That is also what lets a page be delivered
    /// while the previous page's checkpoint commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_end: Option<u64>,
}

/// A backfill's state, encoded for a commit that runs after the plan has moved on.
pub struct Saving {
    checkpoint: Vec<u8>,
    recent: Option<Vec<u8>>,
}

impl Saving {
    pub fn apply(
        &self,
        txn: &mut dyn StoreTxn,
        installation: &str,
        object: &str,
    ) -> Result<(), StoreError> {
        txn.put_state_raw(
            installation,
            object,
            StateKind::Checkpoint,
            &self.checkpoint,
        )?;
        if let Some(recent) = &self.recent {
            txn.put_state_raw(installation, object, StateKind::BackfillRecent, recent)?;
        }
        Ok(())
    }
}

impl Backfill {
    /// Writes the checkpoint, and the recent rows when they grew since they were last saved;
    /// call [`Backfill::saved`] once the transaction commits.
    pub fn save(
        &self,
        txn: &mut dyn StoreTxn,
        installation: &str,
        object: &str,
    ) -> Result<(), StoreError> {
        self.saving()?.apply(txn, installation, object)
    }

    /// What [`Backfill::save`] writes, encoded now.
    pub fn saving(&self) -> Result<Saving, StoreError> {
        let recent = (self.recent.len() != self.recent_saved)
            .then(|| encode(&self.recent, "encoding a backfill's recent rows"))
            .transpose()?;
        Ok(Saving {
            checkpoint: encode(&Some(self), "encoding a checkpoint")?,
            recent,
        })
    }

    pub fn saved(&mut self) {
        self.recent_saved = self.recent.len();
    }

    /// The running backfill of (installation, object), if any, with its recent rows.
    pub fn load(
        store: &dyn Store,
        installation: &str,
        object: &str,
    ) -> Result<Option<Backfill>, StoreError> {
        let Some(Some(mut plan)) =
            store.get_checkpoint::<Option<Backfill>>(installation, object)?
        else {
            return Ok(None);
        };
        if plan.recent.is_empty() {
            plan.recent = store
                .get_backfill_recent(installation, object)?
                .unwrap_or_default();
            plan.recent_saved = plan.recent.len();
        }
        Ok(Some(plan))
    }
}

/// Where incremental sync of an object stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    /// The cursor: every row up to `(since_ms, after_id)` in `(SystemModstamp, Id)` order is
    /// delivered.
    pub since_ms: i64,
    pub after_id: String,
    /// Rows delivered within the lookback window, by Id → `SystemModstamp` (ms): re-read
    /// rows that match are dropped instead of delivered twice.
    #[serde(default)]
    pub recent: BTreeMap<String, i64>,
    /// The fields every delivered row has been read with: a selection that grows past
    /// this triggers a backfill of the object for the new fields.
    pub fields: Vec<String>,
    /// Hard deletes are listed up to here (ms).
    #[serde(default)]
    pub deleted_until_ms: i64,
    /// When the whole object was last re-read for formula fields (ms).
    #[serde(default)]
    pub reread_ms: i64,
    /// When the object's Ids were last compared with the org's (ms; objects without the
    /// replication `deleted` resource).
    #[serde(default)]
    pub reconciled_ms: i64,
}

impl Watermark {
    /// Whether `(id, modstamp_ms)` was already delivered.
    pub fn seen(&self, id: &str, modstamp_ms: i64) -> bool {
        // Passes re-read only the lookback window, and `recent` covers exactly that window.
        self.recent.get(id) == Some(&modstamp_ms)
    }

    /// Moves the cursor past `(id, modstamp_ms)` and remembers it for the lookback.
    pub fn advance(&mut self, id: &str, modstamp_ms: i64) {
        if (modstamp_ms, id) > (self.since_ms, self.after_id.as_str()) {
            self.since_ms = modstamp_ms;
            self.after_id = id.to_owned();
        }
        self.recent.insert(id.to_owned(), modstamp_ms);
    }

    /// Forgets rows older than the lookback window; they cannot be re-read any more. Past
    /// [`RECENT_CAP`] rows the oldest are forgotten too: the watermark is rewritten with
    /// every page, and an org that changed a million rows in five minutes must not make each
    /// write carry them all. A forgotten row that the lookback re-reads is delivered again —
    /// the same version under the same idempotency key — which costs a duplicate, never a
    /// loss.
    pub fn prune(&mut self, lookback_ms: i64) {
        let horizon = self.since_ms - lookback_ms;
        self.recent.retain(|_, ms| *ms >= horizon);
        if self.recent.len() > RECENT_CAP {
            let mut stamps: Vec<i64> = self.recent.values().copied().collect();
            stamps.sort_unstable();
            let keep_from = stamps[stamps.len() - RECENT_CAP];
            self.recent.retain(|_, ms| *ms >= keep_from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RedbStore;

    fn plan(recent: &[(&str, i64)]) -> Backfill {
        Backfill {
            fields: vec!["Id".into(), "Name".into()],
            reason: "initial".into(),
            last_id: Some("001A".into()),
            bulk: None,
            use_bulk: false,
            done: 2,
            total: 10,
            failed: 0,
            high_water_ms: 5_000,
            started_ms: 6_000,
            recent: recent
                .iter()
                .map(|(id, ms)| ((*id).to_owned(), *ms))
                .collect(),
            recent_saved: 0,
            sink_end: Some(120),
        }
    }

    fn save(store: &RedbStore, plan: &mut Backfill) {
        store
            .write(&mut |txn| plan.save(txn, "acme", "Account"))
            .expect("saved");
        plan.saved();
    }

    #[test]
    fn recent_rows_are_saved_apart_and_only_when_they_grow() {
        let dir = tempfile::tempdir().expect("dir");
        let store = RedbStore::open(&dir.path().join("weft.redb")).expect("store");
        let mut running = plan(&[("001A", 5_000), ("001B", 5_001)]);
        save(&store, &mut running);
        let checkpoint = store
            .state_raw("acme", "Account", StateKind::Checkpoint)
            .expect("read")
            .expect("checkpoint");
        assert!(
            !String::from_utf8_lossy(&checkpoint).contains("001B"),
            "the checkpoint carries no recent rows"
        );
        let loaded = Backfill::load(&store, "acme", "Account").expect("load");
        assert_eq!(loaded.as_ref(), Some(&running));

        // A page that adds no recent row rewrites the checkpoint only: a marker left in
        // the recent slot survives it.
        let marker = BTreeMap::from([("marker".to_owned(), 1_i64)]);
        store
            .write(&mut |txn| txn.put_backfill_recent("acme", "Account", &marker))
            .expect("marker");
        running.done = 3;
        save(&store, &mut running);
        let loaded = Backfill::load(&store, "acme", "Account").expect("load");
        assert_eq!(loaded.map(|p| (p.done, p.recent)), Some((3, marker)));

        // One that adds rows saves them all.
        running.recent.insert("001C".into(), 5_002);
        save(&store, &mut running);
        let loaded = Backfill::load(&store, "acme", "Account").expect("load");
        assert_eq!(loaded.as_ref(), Some(&running));
    }

    #[test]
    fn a_checkpoint_with_its_recent_rows_inline_still_reads() {
        let dir = tempfile::tempdir().expect("dir");
        let store = RedbStore::open(&dir.path().join("weft.redb")).expect("store");
        let mut inline = serde_json::to_value(plan(&[])).expect("encode");
        inline["recent"] = serde_json::json!({"001A": 5_000});
        store
            .put_checkpoint("acme", "Account", &Some(inline))
            .expect("checkpoint");
        let loaded = Backfill::load(&store, "acme", "Account")
            .expect("load")
            .expect("running");
        assert_eq!(loaded.recent, BTreeMap::from([("001A".to_owned(), 5_000)]));
        assert_eq!(loaded.recent_saved, 0, "saved apart at the next page");
    }

    #[test]
    fn rows_on_the_boundary_are_seen_once() {
        let mut w = Watermark::default();
        w.advance("001B", 1_000);
        w.advance("001A", 1_000);
        assert_eq!((w.since_ms, w.after_id.as_str()), (1_000, "001B"));
        assert!(w.seen("001A", 1_000) && w.seen("001B", 1_000));
        assert!(
            !w.seen("001C", 1_000),
            "a row stamped on the boundary but not delivered"
        );
        assert!(!w.seen("001A", 1_001), "a newer version of a delivered row");
        w.advance("001C", 400_000);
        w.prune(300_000);
        assert!(!w.recent.contains_key("001A"));
        assert!(w.recent.contains_key("001C"));
    }

    #[test]
    fn a_flood_of_recent_rows_keeps_the_newest_within_the_cap() {
        let mut w = Watermark::default();
        for i in 0..(RECENT_CAP as i64 + 500) {
            w.advance(&format!("001{i:012}"), 1_000 + i);
        }
        w.prune(i64::MAX / 4);
        assert_eq!(w.recent.len(), RECENT_CAP);
        assert!(w.seen(
            &format!("001{:012}", RECENT_CAP as i64 + 499),
            1_000 + RECENT_CAP as i64 + 499
        ));
        assert!(!w.recent.contains_key(&format!("001{:012}", 0)));
    }
}
