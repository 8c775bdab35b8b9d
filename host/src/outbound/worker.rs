//! The per-installation loop that drains the outbound queue: a round while there is work;
//! when there is none it sleeps until intake wakes it (or the earliest retry is due), so an
//! idle installation costs nothing per second. Runs until shutdown.
//!
//! It never gives up on an event by itself: a round that fails (the store is unavailable)
//! leaves its events pending and is tried again after a pause.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::pipeline::Pipeline;
use crate::runtime::Scheduler;
use crate::throttle::Project;

/// A store failure is rarely fixed in milliseconds; wait this much longer than an idle
/// poll before the next round, so a broken disk does not spin the CPU.
const ERROR_PAUSE_FACTOR: u32 = 10;

/// Runs `pipeline` until `shutdown` turns true (or its sender is dropped). `wake` is rung
/// when new events are committed; without one the worker polls every `idle_poll_ms`. With
/// a `scheduler`, each round is one unit: it waits for the installation's turn, and gives
/// it back while the governor makes it wait part-way.
pub async fn run(
    mut pipeline: Pipeline,
    wake: Option<Arc<Notify>>,
    scheduler: Option<Arc<Scheduler>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let idle = pipeline.config().idle_poll();
    tracing::info!(installation = %pipeline.installation(), "outbound worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        // `None`: sleep until woken (or shut down).
        let turn = match &scheduler {
            Some(scheduler) => {
                // Wait out the governor's pacing before taking a worker, so an installation
                // held back by its quota never holds one the others could use.
                let governor = pipeline.governor().clone();
                let quota = async {
                    loop {
                        let wait = governor.ready_in(Project::Outbound);
                        if wait.is_zero() {
                            break;
                        }
                        tokio::time::sleep(wait).await;
                    }
                };
                tokio::select! {
                    turn = async {
                        quota.await;
                        scheduler.turn(pipeline.installation()).await
                    } => Some(turn),
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
            }
            None => None,
        };
        // A round is not abandoned at shutdown: the governor sends nothing more, and the
        // round commits what it wrote; its other events stay queued for the next run.
        let round = match turn {
            Some(turn) => turn.run(pipeline.run_round()).await,
            None => pipeline.run_round().await,
        };
        let pause = match round {
            Ok(report) if report.progressed() || report.deferred > 0 => continue,
            Ok(_) => {
                let until_retry = pipeline.next_retry().map(|due| {
                    due.saturating_duration_since(std::time::Instant::now())
                        .max(Duration::from_millis(1))
                });
                match (&wake, until_retry) {
                    (Some(_), until_retry) => until_retry,
                    (None, Some(until_retry)) => Some(until_retry.min(idle)),
                    (None, None) => Some(idle),
                }
            }
            Err(error) => {
                tracing::error!(installation = %pipeline.installation(), "outbound round failed: {error}");
                Some(idle * ERROR_PAUSE_FACTOR)
            }
        };
        let woken = async {
            match &wake {
                Some(wake) => wake.notified().await,
                None => std::future::pending().await,
            }
        };
        let timer = async {
            match pause {
                Some(pause) => tokio::time::sleep(pause).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = timer => {}
            _ = woken => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!(installation = %pipeline.installation(), "outbound worker stopped");
}
