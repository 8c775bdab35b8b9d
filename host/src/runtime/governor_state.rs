//! Carries each installation's API governor across restarts: restores its snapshot from the
//! store when a command builds the governor, and saves it on a timer and at shutdown.
//!
//! Without this, a restarted host would start the day's quota from zero and could spend the
//! org's allocation twice over. It never blocks a request: a snapshot that cannot be read
//! or saved is logged and the governor carries on with what it knows (the org's own count,
//! reported on the first response, still reaches the headroom guard).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{Store, StoreExt};
use crate::throttle::{Governor, GovernorSnapshot};

/// How often a running host saves the governors that spent since the last save. A crash
/// forgets at most this much spend (pacing rate × interval); each save is one durable
/// commit for all of them, and none when nothing was spent.
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

/// The snapshot each installation last saved, so a save skips governors that have not
/// changed since: an idle installation costs no write.
#[derive(Default)]
pub(crate) struct Saved(Mutex<HashMap<String, GovernorSnapshot>>);

impl Saved {
    pub(crate) fn new() -> Arc<Saved> {
        Arc::new(Saved::default())
    }

    /// Forgets a removed installation.
    pub(crate) fn forget(&self, installation: &str) {
        self.lock().remove(installation);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, GovernorSnapshot>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A snapshot without the instant it was taken, for telling whether anything changed.
fn content(snapshot: &GovernorSnapshot) -> GovernorSnapshot {
    GovernorSnapshot {
        taken_at: jiff::Timestamp::UNIX_EPOCH,
        ..snapshot.clone()
    }
}

/// Saves every governor whose snapshot changed since `saved` last saw it, in one durable
/// transaction off the async runtime (a commit blocks); failures are logged, never fatal,
/// and the next save tries again.
pub(crate) async fn save_all(
    store: &Arc<dyn Store>,
    governors: &[(String, Arc<Governor>)],
    saved: &Arc<Saved>,
) {
    let (store, saved) = (store.clone(), saved.clone());
    let governors = governors.to_vec();
    let done = tokio::task::spawn_blocking(move || {
        let changed: Vec<(String, GovernorSnapshot)> = {
            let known = saved.lock();
            governors
                .iter()
                .map(|(installation, governor)| (installation.clone(), governor.snapshot()))
                .filter(|(installation, snapshot)| {
                    known
                        .get(installation)
                        .is_none_or(|last| *last != content(snapshot))
                })
                .collect()
        };
        if changed.is_empty() {
            return;
        }
        let rows: Vec<(&str, &GovernorSnapshot)> =
            changed.iter().map(|(i, s)| (i.as_str(), s)).collect();
        match store.put_governor_snapshots(&rows) {
            Ok(()) => {
                let mut known = saved.lock();
                for (installation, snapshot) in &changed {
                    known.insert(installation.clone(), content(snapshot));
                }
            }
            Err(error) => {
                tracing::warn!(installations = changed.len(), error = %error_chain(&error), "governor snapshots not saved; retrying later");
            }
        }
    })
    .await;
    if let Err(join) = done {
        tracing::warn!(error = %join, "saving governor snapshots failed");
    }
}

/// Saves every governor each `every` until the task is aborted. The first save is one
/// interval in: right after start-up there is nothing new to save.
pub(crate) fn spawn_saver(
    store: Arc<dyn Store>,
    governors: Vec<(String, Arc<Governor>)>,
    saved: Arc<Saved>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = every.max(Duration::from_secs(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            save_all(&store, &governors, &saved).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RedbStore;
    use crate::telemetry::InstallationTelemetry;
    use crate::throttle::{GovernorConfig, Project, ScheduleConfig, SystemClock};

    fn governor(id: &str) -> Arc<Governor> {
        let settings = GovernorConfig {
            schedule: ScheduleConfig::constant("UTC", 100.0),
            assumed_daily_max: 1_000_000,
            ..Default::default()
        }
        .validate()
        .expect("governor config");
        Governor::new(
            settings,
            Arc::new(SystemClock),
            Arc::new(InstallationTelemetry::new(id)),
        )
    }

    #[tokio::test]
    async fn a_save_writes_only_the_governors_that_spent_since_the_last_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("weft.redb")).expect("store"));
        let (busy, idle) = (governor("busy"), governor("idle"));
        let governors = vec![("busy".to_owned(), busy.clone()), ("idle".to_owned(), idle)];
        let saved = Saved::new();
        save_all(&store, &governors, &saved).await;
        let stored = |id: &str| {
            store
                .get_governor_snapshot::<GovernorSnapshot>(id)
                .expect("read")
                .expect("saved")
        };
        let (busy_first, idle_first) = (stored("busy"), stored("idle"));

        busy.admit(Project::Outbound)
            .await
            .expect("admitted")
            .success();
        tokio::time::sleep(Duration::from_millis(5)).await;
        save_all(&store, &governors, &saved).await;
        let busy_second = stored("busy");
        assert_ne!(busy_second.taken_at, busy_first.taken_at, "saved again");
        assert_eq!(busy_second.usage.iter().map(|m| m.admitted).sum::<u64>(), 1);
        assert_eq!(
            stored("idle").taken_at,
            idle_first.taken_at,
            "an unchanged governor is not written again"
        );
    }
}
