//! Each running installation's status: what it knows of itself, plus the store's counts
//! (outbound backlog, open DLQ), composed by [`crate::runtime::status`].

use jiff::Timestamp;

use super::{LiveStatus, Supervisor};
use crate::runtime::status::{self, Status};
use crate::store::{Backlog, StoreError};

impl Supervisor {
    /// The installation's status now; `None` when it does not run.
    pub async fn status(&self, id: &str) -> Option<Status> {
        let live = self.live_status(id).await?;
        let mut composed = self.compose_statuses(vec![(id.to_owned(), live)]).await;
        composed.pop()
    }

    /// Every running installation's status, by id, with one store read for them all
    /// (for the Prometheus series).
    pub async fn statuses(&self) -> Vec<Status> {
        let mut live = Vec::new();
        for (id, _) in self.all_slots() {
            if let Some(parts) = self.live_status(&id).await {
                live.push((id, parts));
            }
        }
        self.compose_statuses(live).await
    }

    /// What the running installation itself knows of its status (no store read).
    async fn live_status(&self, id: &str) -> Option<LiveStatus> {
        let slot = self.slot(id);
        let slot = slot.lock().await;
        let running = slot.as_ref()?;
        Some(LiveStatus {
            version: running.version,
            paused: running.paused.clone(),
            objects: running.objects.clone(),
            passes: running.passes.snapshot(),
            progress: running
                .progress
                .as_ref()
                .map(|p| p.snapshot())
                .unwrap_or_default(),
            since: running.since,
            credential: status::Credential {
                in_use: running.credential.as_str(),
                ongoing_configured: running.has_ongoing,
                switch_error: running.switch_error.clone(),
            },
        })
    }

    /// Adds what the store knows (outbound backlog, open DLQ: index counts only) and
    /// composes each status.
    async fn compose_statuses(&self, live: Vec<(String, LiveStatus)>) -> Vec<Status> {
        let store = self.store.clone();
        let ids: Vec<String> = live.iter().map(|(id, _)| id.clone()).collect();
        let read = tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| {
                    let read = store
                        .backlog(id)
                        .and_then(|backlog| Ok((backlog, store.dlq_open_count(id)?)));
                    read.unwrap_or_else(|e: StoreError| {
                        tracing::warn!(installation = %id, error = %e, "status: the store could not be read");
                        (Backlog::default(), 0)
                    })
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let now = Timestamp::now();
        live.into_iter()
            .enumerate()
            .map(|(k, (id, live))| {
                let (backlog, dlq_open) = read.get(k).cloned().unwrap_or_default();
                status::compose(status::Parts {
                    installation: &id,
                    version: live.version,
                    paused: live.paused.as_ref(),
                    objects: &live.objects,
                    passes: live.passes,
                    progress: live.progress,
                    telemetry: self.telemetry.installation(&id).status(now),
                    backlog,
                    dlq_open,
                    running_since: live.since,
                    credential: live.credential,
                    now,
                })
            })
            .collect()
    }
}
