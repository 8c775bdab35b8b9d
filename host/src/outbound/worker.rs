//! The per-installation loop that drains the outbound queue: a round while there is work,
//! a short sleep when there is none, until shutdown.
//!
//! It never gives up on an event by itself: a round that fails (the store is unavailable)
//! leaves its events pending and is tried again after a pause.

use std::time::Duration;

use tokio::sync::watch;

use super::pipeline::Pipeline;

/// A store failure is rarely fixed in milliseconds; wait this much longer than an idle
/// poll before the next round, so a broken disk does not spin the CPU.
const ERROR_PAUSE_FACTOR: u32 = 10;

/// Runs `pipeline` until `shutdown` turns true (or its sender is dropped).
pub async fn run(mut pipeline: Pipeline, mut shutdown: watch::Receiver<bool>) {
    let idle = pipeline.config().idle_poll();
    tracing::info!(installation = %pipeline.installation(), "outbound worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let pause = match pipeline.run_round().await {
            Ok(report) if report.progressed() || report.deferred > 0 => continue,
            Ok(_) => match pipeline.next_retry() {
                Some(due) => due
                    .saturating_duration_since(std::time::Instant::now())
                    .clamp(Duration::from_millis(1), idle),
                None => idle,
            },
            Err(error) => {
                tracing::error!(installation = %pipeline.installation(), "outbound round failed: {error}");
                idle * ERROR_PAUSE_FACTOR
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!(installation = %pipeline.installation(), "outbound worker stopped");
}
