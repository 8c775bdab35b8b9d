//! The setup → ongoing credential switch: once every object's backfill is complete, an
//! installation moves to its API-only credential after one token request proves it.

use std::path::PathBuf;
use std::sync::Arc;

use super::Supervisor;
use crate::config::InstallationConfig;
use crate::registry::CredentialPhase;
use crate::salesforce::SalesforceClient;

impl Supervisor {
    /// Switches installations whose backfills are complete to their ongoing credential,
    /// one at a time, until the supervisor is dropped. The new credential is tried first
    /// (one token request); if the org refuses it the setup credential stays, the reason
    /// shows in the status, and the next caught-up pass tries again.
    pub fn spawn_switcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let receiver = self
            .switch_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let supervisor = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(mut receiver) = receiver else { return };
            while let Some(id) = receiver.recv().await {
                let Some(supervisor) = supervisor.upgrade() else {
                    return;
                };
                supervisor.switch_to_ongoing(&id).await;
            }
        })
    }

    async fn switch_to_ongoing(&self, id: &str) {
        let slot = self.slot(id);
        let (governor, phase) = {
            let slot = slot.lock().await;
            match slot.as_ref() {
                Some(r) if r.has_ongoing => (r.governor.clone(), r.credential),
                _ => return,
            }
        };
        if !phase.is_setup() {
            return;
        }
        let registry = self.registry.clone();
        let lookup = id.to_owned();
        let record = match tokio::task::spawn_blocking(move || registry.get(&lookup)).await {
            Ok(Ok(Some(record))) => record,
            _ => return,
        };
        let label = PathBuf::from(format!("installation {id}"));
        let config = match InstallationConfig::from_document(
            &label,
            &record.base_dir,
            &record.spec,
            self.keyring.as_deref(),
        ) {
            Ok(config) => config,
            Err(e) => {
                self.set_switch_error(id, e.to_string()).await;
                return;
            }
        };
        let Some(ongoing) = &config.salesforce.ongoing else {
            return;
        };
        let tried = match SalesforceClient::new(
            config.salesforce.client_config_with(id, ongoing),
            governor,
        ) {
            Ok(client) => client.login().await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = tried {
            tracing::warn!(installation = %id, error = %reason, "the ongoing credential was refused; staying on the setup credential");
            self.set_switch_error(id, reason).await;
            return;
        }
        let registry = self.registry.clone();
        let saving = id.to_owned();
        let saved = tokio::task::spawn_blocking(move || {
            registry.set_credential(&saving, CredentialPhase::Ongoing)
        })
        .await;
        if !matches!(saved, Ok(Ok(_))) {
            self.set_switch_error(id, "the switch could not be saved".into())
                .await;
            return;
        }
        match self.reload(id).await {
            Ok(()) => {
                tracing::info!(installation = %id, "backfills complete: switched to the ongoing credential")
            }
            Err(reason) => {
                tracing::error!(installation = %id, error = %reason, "not restarted on the ongoing credential")
            }
        }
    }

    async fn set_switch_error(&self, id: &str, reason: String) {
        let slot = self.slot(id);
        if let Some(running) = slot.lock().await.as_mut() {
            running.switch_error = Some(reason);
        }
    }
}
