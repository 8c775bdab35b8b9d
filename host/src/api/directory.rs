//! The installations the API serves right now: for each, the hash of its own token, its
//! intake counters and the bell that wakes its outbound worker.
//!
//! The supervisor adds, replaces and removes entries as installations are created, changed
//! and deleted at run time; handlers look an installation up on every request. Reads
//! vastly outnumber writes, so a read-write lock over a sorted map: a lookup holds the read
//! lock for one map probe and clones an `Arc`, never across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use super::IntakeCounters;
use crate::token::TokenHash;

/// What the API knows of one served installation.
/// One entry lives as long as the installation is served: a changed token is set in place,
/// so the worker waiting on `wake` and the counters carry on.
#[derive(Debug, Default)]
pub struct Tenant {
    pub counters: IntakeCounters,
    /// The hash of the installation's own token; `None`: only the operator reaches it.
    token: RwLock<Option<TokenHash>>,
    /// Rung after intake (or a DLQ replay) commits new events, so an idle outbound worker
    /// sleeps until there is work instead of polling.
    wake: Arc<Notify>,
}

impl Tenant {
    pub fn token(&self) -> Option<TokenHash> {
        *self.token.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `presented` is this installation's token (constant time).
    pub fn is_token(&self, presented: &TokenHash) -> bool {
        self.token().is_some_and(|token| token.matches(presented))
    }

    /// Wakes the installation's outbound worker (a no-op wake is remembered until it waits).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// What [`Tenant::wake`] rings, for the worker to wait on (`notify_one` keeps one
    /// wake-up for a worker that is busy with a round when it comes).
    pub fn bell(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

/// The served installations by id. Cheap to share: the API state and the supervisor hold
/// the same `Arc<Directory>`.
#[derive(Debug, Default)]
pub struct Directory {
    tenants: RwLock<BTreeMap<String, Arc<Tenant>>>,
}

impl Directory {
    pub fn new() -> Directory {
        Directory::default()
    }

    /// A directory of fixed installations (tests and single-purpose hosts).
    pub fn of(installations: impl IntoIterator<Item = (String, Option<TokenHash>)>) -> Directory {
        let directory = Directory::new();
        for (id, token) in installations {
            directory.serve(&id, token);
        }
        directory
    }

    pub fn get(&self, id: &str) -> Option<Arc<Tenant>> {
        self.read().get(id).cloned()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.read().contains_key(id)
    }

    /// Serves `id` with `token`. An installation already served keeps its entry (its
    /// counters, and the wake-up its worker may be waiting on); only the token changes.
    pub fn serve(&self, id: &str, token: Option<TokenHash>) -> Arc<Tenant> {
        let tenant = self.write().entry(id.to_owned()).or_default().clone();
        *tenant.token.write().unwrap_or_else(|p| p.into_inner()) = token;
        tenant
    }

    /// Stops serving `id`: its routes answer `404` from the next request on.
    pub fn remove(&self, id: &str) -> Option<Arc<Tenant>> {
        self.write().remove(id)
    }

    /// Whether `presented` is the token of any served installation. Compares against
    /// every token in constant time each, so the answer's timing says nothing of which.
    pub fn is_anyones_token(&self, presented: &TokenHash) -> bool {
        self.read()
            .values()
            .fold(false, |found, tenant| found | tenant.is_token(presented))
    }

    /// Every served installation with its entry, by id (for `/metrics`).
    pub fn snapshot(&self) -> Vec<(String, Arc<Tenant>)> {
        self.read()
            .iter()
            .map(|(id, tenant)| (id.clone(), tenant.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    // A panic while holding the lock cannot leave the map half-changed (every write is one
    // insert or remove), so a poisoned lock is still a consistent map.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Tenant>>> {
        self.tenants.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Tenant>>> {
        self.tenants.write().unwrap_or_else(|p| p.into_inner())
    }
}
