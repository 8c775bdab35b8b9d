//! One installation's inbound side under `weft serve`: a pass over every object (backfill
//! where one is due, then what changed), then a wait of the configured interval, until
//! the supervisor stops it. A failing pass is retried from the last checkpoint after a
//! growing wait (up to ten intervals), so an org that is down is not hammered.

use tokio::sync::watch;

use crate::inbound::{InboundError, InboundSync};

/// Runs passes until `stop` turns true (or its sender is dropped). A pass in progress ends
/// before its next page.
pub async fn run(mut sync: InboundSync, mut stop: watch::Receiver<bool>) {
    tracing::info!("inbound sync started");
    let mut failures = 0u32;
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        match sync.pass().await {
            Ok(report) => {
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
            }
            Err(InboundError::Stopped) => break,
            Err(error) => {
                failures += 1;
                tracing::error!(%error, failures, "inbound pass failed; retrying from the last checkpoint");
            }
        }
        let wait = sync.config().poll_interval * failures.clamp(1, 10);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!("inbound sync stopped");
}
