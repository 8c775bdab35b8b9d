//! The registry: every installation's spec, stored in the host's store with a version.
//!
//! A spec is the installation's document as written (TOML files and the admin API's JSON
//! both become one JSON document), with secrets as references (`*_env`, `*_file`), never
//! their values. Every saved change bumps the version by one; an update names the version
//! it was made against and is refused, with nothing changed, when the stored one has moved
//! on — what the admin API's `If-Match` compares. The check and the write share one store
//! transaction, so two concurrent updates of one version cannot both win.
//!
//! The registry stores and versions documents; whether a document is a valid installation
//! is [`crate::config`]'s question, asked before anything is saved here.

use std::path::PathBuf;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{PurgeCounts, Store, StoreError, StoreTxn};

/// One installation as the registry holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecRecord {
    pub id: String,
    /// 1 when created; +1 on every saved change.
    pub version: u64,
    /// The installation's document (secrets only as references).
    pub spec: Value,
    /// Where the document's relative paths (plugin component, secret files, sink
    /// directory) resolve: the TOML file's directory, or the host's working directory
    /// for a document posted to the API.
    pub base_dir: PathBuf,
    #[serde(with = "crate::store::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "crate::store::rfc3339")]
    pub updated_at: Timestamp,
    /// Set while an operator has paused the installation (or some of its objects). Not
    /// part of the document: pausing neither changes nor versions the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
    /// Which of the spec's credentials the installation logs in with; the host moves it
    /// from setup to ongoing once every object's backfill is complete.
    #[serde(default, skip_serializing_if = "CredentialPhase::is_setup")]
    pub credential: CredentialPhase,
}

/// The credential an installation runs with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialPhase {
    /// The section's own credential (an admin user): describe and the first backfill.
    #[default]
    Setup,
    /// `[salesforce.ongoing]` (an API-only user).
    Ongoing,
}

impl CredentialPhase {
    pub fn is_setup(&self) -> bool {
        *self == CredentialPhase::Setup
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            CredentialPhase::Setup => "setup",
            CredentialPhase::Ongoing => "ongoing",
        }
    }
}

/// An operator's pause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// The inbound objects paused; empty: the whole installation, both directions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(with = "crate::store::rfc3339")]
    pub since: Timestamp,
}

impl Pause {
    pub fn whole(&self) -> bool {
        self.objects.is_empty()
    }
}

/// What [`Registry::apply_declared`] did with a declared (TOML) spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Created,
    Updated,
    /// The stored document was already this one: the version stays.
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("installation {0:?} already exists")]
    Exists(String),
    #[error("installation {0:?} does not exist")]
    NotFound(String),
    /// The update was made against `expected`, but the stored spec is at `current`.
    #[error("installation {id:?} is at version {current}, not {expected}")]
    Stale {
        id: String,
        expected: u64,
        current: u64,
    },
    #[error("the stored spec of installation {id:?} cannot be read: {reason}")]
    Unreadable { id: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The registry over the host's store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Registry { store }
    }

    pub fn get(&self, id: &str) -> Result<Option<SpecRecord>, RegistryError> {
        self.store
            .spec_raw(id)?
            .map(|raw| decode(id, &raw))
            .transpose()
    }

    /// Every installation, by id. One unreadable record is reported by its id rather than
    /// hiding the rest: the caller decides whether to skip it.
    pub fn list(&self) -> Result<Vec<Result<SpecRecord, RegistryError>>, RegistryError> {
        Ok(self
            .store
            .specs_raw()?
            .into_iter()
            .map(|(id, raw)| decode(&id, &raw))
            .collect())
    }

    /// Saves a new installation at version 1.
    pub fn create(
        &self,
        id: &str,
        spec: Value,
        base_dir: PathBuf,
        at: Timestamp,
    ) -> Result<SpecRecord, RegistryError> {
        let record = SpecRecord {
            id: id.to_owned(),
            version: 1,
            spec,
            base_dir,
            created_at: at,
            updated_at: at,
            paused: None,
            credential: CredentialPhase::Setup,
        };
        let encoded = encode(&record)?;
        self.write(|txn| {
            if txn.get_spec_raw(id)?.is_some() {
                return Err(Refusal::Registry(RegistryError::Exists(id.to_owned())));
            }
            txn.put_spec_raw(id, &encoded)?;
            Ok(())
        })?;
        Ok(record)
    }

    /// Replaces the document of `id`, which must still be at version `expected`; the
    /// saved record is at `expected + 1`.
    pub fn update(
        &self,
        id: &str,
        expected: u64,
        spec: Value,
        at: Timestamp,
    ) -> Result<SpecRecord, RegistryError> {
        let mut saved = None;
        self.write(|txn| {
            let current = read_in(txn, id)?
                .ok_or_else(|| Refusal::Registry(RegistryError::NotFound(id.to_owned())))?;
            if current.version != expected {
                return Err(Refusal::Registry(RegistryError::Stale {
                    id: id.to_owned(),
                    expected,
                    current: current.version,
                }));
            }
            let record = SpecRecord {
                version: current.version + 1,
                spec: spec.clone(),
                updated_at: at,
                ..current
            };
            txn.put_spec_raw(id, &encode(&record)?)?;
            saved = Some(record);
            Ok(())
        })?;
        saved.ok_or_else(|| RegistryError::NotFound(id.to_owned()))
    }

    /// Records which credential the installation runs with; the version stays.
    pub fn set_credential(
        &self,
        id: &str,
        phase: CredentialPhase,
    ) -> Result<SpecRecord, RegistryError> {
        self.amend(id, |record| SpecRecord {
            credential: phase,
            ..record
        })
    }

    /// Sets or clears the installation's pause; the version stays.
    pub fn set_pause(&self, id: &str, paused: Option<Pause>) -> Result<SpecRecord, RegistryError> {
        self.amend(id, |record| SpecRecord {
            paused: paused.clone(),
            ..record
        })
    }

    /// Rewrites the record of `id` through `change` (operational state beside the
    /// document: the version stays), in one transaction.
    fn amend(
        &self,
        id: &str,
        change: impl Fn(SpecRecord) -> SpecRecord,
    ) -> Result<SpecRecord, RegistryError> {
        let mut saved = None;
        self.write(|txn| {
            let current = read_in(txn, id)?
                .ok_or_else(|| Refusal::Registry(RegistryError::NotFound(id.to_owned())))?;
            let record = change(current);
            txn.put_spec_raw(id, &encode(&record)?)?;
            saved = Some(record);
            Ok(())
        })?;
        saved.ok_or_else(|| RegistryError::NotFound(id.to_owned()))
    }

    /// The declarative way in (`weft serve --config`, `weft apply`): creates the
    /// installation, or replaces its document whatever its version, or leaves it alone
    /// when the stored document is already this one — so re-applying the same file at
    /// every start does not bump the version.
    pub fn apply_declared(
        &self,
        id: &str,
        spec: Value,
        base_dir: PathBuf,
        at: Timestamp,
    ) -> Result<(SpecRecord, Applied), RegistryError> {
        let mut outcome = None;
        self.write(|txn| {
            let (record, applied) = match read_in(txn, id)? {
                Some(current) if current.spec == spec && current.base_dir == base_dir => {
                    (current, Applied::Unchanged)
                }
                Some(current) => (
                    SpecRecord {
                        version: current.version + 1,
                        spec: spec.clone(),
                        base_dir: base_dir.clone(),
                        updated_at: at,
                        ..current
                    },
                    Applied::Updated,
                ),
                None => (
                    SpecRecord {
                        id: id.to_owned(),
                        version: 1,
                        spec: spec.clone(),
                        base_dir: base_dir.clone(),
                        created_at: at,
                        updated_at: at,
                        paused: None,
                        credential: CredentialPhase::Setup,
                    },
                    Applied::Created,
                ),
            };
            if applied != Applied::Unchanged {
                txn.put_spec_raw(id, &encode(&record)?)?;
            }
            outcome = Some((record, applied));
            Ok(())
        })?;
        outcome.ok_or_else(|| RegistryError::NotFound(id.to_owned()))
    }

    /// Removes the installation's spec. With `purge`, everything else the store holds for
    /// it goes in the same transaction (events, DLQ, audit, checkpoints); without, the DLQ
    /// and audit stay for the operator to read.
    pub fn delete(&self, id: &str, purge: bool) -> Result<Option<PurgeCounts>, RegistryError> {
        let mut purged = None;
        self.write(|txn| {
            if !txn.delete_spec_raw(id)? {
                return Err(Refusal::Registry(RegistryError::NotFound(id.to_owned())));
            }
            if purge {
                purged = Some(txn.purge_installation(id)?);
            }
            Ok(())
        })?;
        Ok(purged)
    }

    /// Runs `work` in one store transaction, carrying a registry refusal out of it (the
    /// store's closure can only fail with a [`StoreError`]).
    fn write(
        &self,
        mut work: impl FnMut(&mut dyn StoreTxn) -> Result<(), Refusal>,
    ) -> Result<(), RegistryError> {
        let mut refused = None;
        let written = self.store.write(&mut |txn| match work(txn) {
            Ok(()) => Ok(()),
            Err(Refusal::Store(e)) => Err(e),
            Err(Refusal::Registry(e)) => {
                refused = Some(e);
                Err(StoreError::Aborted)
            }
        });
        match (written, refused) {
            (_, Some(refusal)) => Err(refusal),
            (Err(e), None) => Err(e.into()),
            (Ok(()), None) => Ok(()),
        }
    }
}

/// Why a registry transaction stopped.
enum Refusal {
    Registry(RegistryError),
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

impl From<RegistryError> for Refusal {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Store(e) => Refusal::Store(e),
            other => Refusal::Registry(other),
        }
    }
}

fn read_in(txn: &mut dyn StoreTxn, id: &str) -> Result<Option<SpecRecord>, Refusal> {
    match txn.get_spec_raw(id)? {
        Some(raw) => Ok(Some(decode(id, &raw)?)),
        None => Ok(None),
    }
}

fn encode(record: &SpecRecord) -> Result<Vec<u8>, RegistryError> {
    serde_json::to_vec(record).map_err(|e| RegistryError::Unreadable {
        id: record.id.clone(),
        reason: e.to_string(),
    })
}

fn decode(id: &str, raw: &[u8]) -> Result<SpecRecord, RegistryError> {
    serde_json::from_slice(raw).map_err(|e| RegistryError::Unreadable {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
