//! One installation's inbound side under `weft serve`: a pass over every object (backfill
//! where one is due, then what changed), then a wait of the configured interval, until
//! the supervisor stops it. A failing pass is retried from the last checkpoint after a
//! growing wait (up to ten intervals), so an org that is down is not hammered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::sync::{Notify, watch};

use crate::inbound::{InboundError, InboundSync, PassReport};

/// How each object's passes went, for the status endpoint: the last success, and the
/// failure streak since then.
#[derive(Debug, Default)]
pub struct PassLog {
    objects: Mutex<BTreeMap<String, ObjectPasses>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectPasses {
    pub last_success: Option<Timestamp>,
    /// The first failure since the last success, and the latest failure's reason.
    pub failing_since: Option<Timestamp>,
    pub last_error: Option<String>,
}

impl PassLog {
    fn record(&self, report: &PassReport, at: Timestamp) {
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        for object in &report.objects {
            let entry = objects.entry(object.object.clone()).or_default();
            match &object.error {
                None => {
                    *entry = ObjectPasses {
                        last_success: Some(at),
                        ..ObjectPasses::default()
                    }
                }
                Some(error) => {
                    entry.failing_since.get_or_insert(at);
                    entry.last_error = Some(error.clone());
                }
            }
        }
    }

    /// A whole pass failed before reaching its objects (the store is unavailable).
    fn record_failure(&self, objects: &[String], error: &str, at: Timestamp) {
        let mut log = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        for object in objects {
            let entry = log.entry(object.clone()).or_default();
            entry.failing_since.get_or_insert(at);
            entry.last_error = Some(error.to_owned());
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, ObjectPasses> {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Called after a pass in which every object succeeded (every backfill is then complete).
pub type CaughtUp = Box<dyn Fn() + Send + Sync>;

/// Runs passes until `stop` turns true (or its sender is dropped). A pass in progress ends
/// before its next page. `kick` ends a wait early ("sync now"); `log` keeps how each pass
/// went.
pub async fn run(
    mut sync: InboundSync,
    log: Arc<PassLog>,
    kick: Arc<Notify>,
    caught_up: Option<CaughtUp>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!("inbound sync started");
    let mut failures = 0u32;
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        match sync.pass().await {
            Ok(report) => {
                log.record(&report, Timestamp::now());
                let failed: Vec<&str> =
                    report.failed_objects().map(|o| o.object.as_str()).collect();
                for object in &report.objects {
                    tracing::info!(
                        object = %object.object,
                        backfilled = object.backfilled,
                        changed = object.changed,
                        deleted = object.deleted,
                        failed = object.failed,
                        "inbound pass"
                    );
                }
                failures = if failed.is_empty() { 0 } else { failures + 1 };
                if failed.is_empty()
                    && let Some(caught_up) = &caught_up
                {
                    caught_up();
                }
            }
            Err(InboundError::Stopped) => break,
            Err(error) => {
                let objects: Vec<String> = sync
                    .config()
                    .objects
                    .iter()
                    .map(|o| o.name.clone())
                    .collect();
                log.record_failure(&objects, &error.to_string(), Timestamp::now());
                failures += 1;
                tracing::error!(%error, failures, "inbound pass failed; retrying from the last checkpoint");
            }
        }
        let wait = sync.config().poll_interval * failures.clamp(1, 10);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = kick.notified() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!("inbound sync stopped");
}
