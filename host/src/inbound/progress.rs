//! Live backfill counters per object, for the terminal display and structured logs.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Where each object's backfill stands.
#[derive(Debug, Default)]
pub struct Progress {
    objects: Mutex<BTreeMap<String, ObjectProgress>>,
}

#[derive(Debug, Clone)]
pub struct ObjectProgress {
    pub done: u64,
    pub total: u64,
    pub failed: u64,
    /// Rows delivered since this process started on the object (for the rate).
    pub done_here: u64,
    pub started: Instant,
    pub finished: bool,
    pub reason: String,
    /// The latest notable event (a re-created Bulk job, …).
    pub note: Option<String>,
}

impl ObjectProgress {
    /// Rows per second since this process started on the object.
    pub fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.done_here as f64 / secs
        } else {
            0.0
        }
    }

    /// Seconds left at the current rate.
    pub fn eta_secs(&self) -> Option<f64> {
        let rate = self.rate();
        (rate > 0.0 && !self.finished).then(|| self.total.saturating_sub(self.done) as f64 / rate)
    }
}

impl Progress {
    fn with(&self, object: &str, f: impl FnOnce(&mut ObjectProgress)) {
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = objects.get_mut(object) {
            f(p);
        }
    }

    pub(super) fn start(&self, object: &str, done: u64, total: u64, reason: &str) {
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        objects.insert(
            object.to_owned(),
            ObjectProgress {
                done,
                total: total.max(done),
                failed: 0,
                done_here: 0,
                started: Instant::now(),
                finished: false,
                reason: reason.to_owned(),
                note: None,
            },
        );
    }

    pub(super) fn advance(&self, object: &str, rows: u64, failed: u64) {
        self.with(object, |p| {
            p.done += rows;
            p.done_here += rows;
            p.failed += failed;
            // Rows created during the backfill can push past the planned count.
            p.total = p.total.max(p.done);
        });
    }

    pub(super) fn note(&self, object: &str, note: String) {
        self.with(object, |p| p.note = Some(note));
    }

    pub(super) fn finish(&self, object: &str) {
        self.with(object, |p| p.finished = true);
    }

    pub fn snapshot(&self) -> BTreeMap<String, ObjectProgress> {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
