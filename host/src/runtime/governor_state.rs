//! Carries each installation's API governor across restarts: restores its snapshot from the
//! store when a command builds the governor, and saves it on a timer and at shutdown.
//!
//! Without this, a restarted host would start the day's quota from zero and could spend the
//! org's allocation twice over. It never blocks a request: a snapshot that cannot be read
//! or saved is logged and the governor carries on with what it knows (the org's own count,
//! reported on the first response, still reaches the headroom guard).

use std::sync::Arc;
use std::time::Duration;

use crate::store::{Store, StoreError, StoreExt};
use crate::throttle::{Governor, GovernorSnapshot};

/// How often a running host saves each governor. A crash forgets at most this much spend
/// (pacing rate × interval); shorter costs one small durable write per installation each
/// time, which at 30 s is noise next to the sync's own commits.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(30);

/// Hands `governor` what the previous run of `installation` spent and learned. Call it
/// right after building the governor and before its first request. Returns whether a
/// snapshot was restored.
pub(crate) fn restore(store: &dyn Store, installation: &str, governor: &Governor) -> bool {
    let snapshot = match store.get_governor_snapshot::<GovernorSnapshot>(installation) {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return false,
        Err(error) => {
            tracing::warn!(installation, error = %error_chain(&error), "governor snapshot unreadable; starting with no recorded spend");
            return false;
        }
    };
    match governor.restore(&snapshot) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(installation, %error, "governor snapshot not restored; starting with no recorded spend");
            false
        }
    }
}

/// Saves one governor's snapshot in its own durable transaction.
pub(crate) fn save(
    store: &dyn Store,
    installation: &str,
    governor: &Governor,
) -> Result<(), StoreError> {
    store.put_governor_snapshot(installation, &governor.snapshot())
}

/// Saves every governor off the async runtime (a durable commit blocks); failures are
/// logged, never fatal.
pub(crate) async fn save_all(store: &Arc<dyn Store>, governors: &[(String, Arc<Governor>)]) {
    let store = store.clone();
    let governors = governors.to_vec();
    let saved = tokio::task::spawn_blocking(move || {
        for (installation, governor) in &governors {
            if let Err(error) = save(&*store, installation, governor) {
                tracing::warn!(installation = %installation, error = %error_chain(&error), "governor snapshot not saved; retrying later");
            }
        }
    })
    .await;
    if let Err(join) = saved {
        tracing::warn!(error = %join, "saving governor snapshots failed");
    }
}

/// Saves every governor each `every` until the task is aborted. The first save is one
/// interval in: right after start-up there is nothing new to save.
pub(crate) fn spawn_saver(
    store: Arc<dyn Store>,
    governors: Vec<(String, Arc<Governor>)>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = every.max(Duration::from_secs(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            save_all(&store, &governors).await;
        }
    })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
