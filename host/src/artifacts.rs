//! Plugins as managed artifacts: a component uploaded once under `name@version`, stored in
//! the host's store by content hash, and referenced by installations as
//! `plugin.artifact = "name@version"`.
//!
//! A version is immutable: uploading the same bytes again changes nothing, other bytes
//! under a taken version are refused (a customer's installation must never change
//! behaviour because someone re-used a version number). Bytes are stored once per content
//! hash, however many versions or names carry them, and the plugin runtime compiles a
//! hash once ([`crate::plugin::PluginRuntime::load`]), so every installation on a version
//! shares one compiled component. Whether the bytes are a valid plugin is the runtime's
//! question, asked by the caller before [`PluginCatalog::put`]; this module stores,
//! names and finds.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// Largest component accepted: ten times the largest plugin built here, and small enough
/// that holding one upload in memory costs the host nothing it would notice.
pub const MAX_COMPONENT_BYTES: usize = 32 << 20;

/// `name@version`, as a spec's `plugin.artifact` names a component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArtifactRef {
    pub name: String,
    pub version: String,
}

/// Why a name, a version or an artifact reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRef(String);

impl ArtifactRef {
    /// Checks both parts: 1–64 characters of letters, digits, `.`, `_`, `-` or `+`,
    /// starting with a letter or digit (so neither can carry a path or the `@`).
    pub fn new(name: &str, version: &str) -> Result<Self, BadRef> {
        check_part("name", name)?;
        check_part("version", version)?;
        Ok(ArtifactRef {
            name: name.to_owned(),
            version: version.to_owned(),
        })
    }

    /// The store key: `name@version`.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

fn check_part(what: &str, s: &str) -> Result<(), BadRef> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
    let starts_well = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if s.is_empty() || s.len() > 64 || !starts_well || !s.chars().all(allowed) {
        return Err(BadRef(format!(
            "the {what} {s:?} must be 1–64 characters of letters, digits, '.', '_', '-' or \
             '+', starting with a letter or digit"
        )));
    }
    Ok(())
}

impl FromStr for ArtifactRef {
    type Err = BadRef;

    fn from_str(s: &str) -> Result<Self, BadRef> {
        let Some((name, version)) = s.split_once('@') else {
            return Err(BadRef(format!("{s:?} is not of the form name@version")));
        };
        ArtifactRef::new(name, version)
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// One uploaded version, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub name: String,
    pub version: String,
    /// blake3 of the component, hex: where its bytes are stored.
    pub hash: String,
    pub size: u64,
    #[serde(with = "crate::store::rfc3339")]
    pub uploaded_at: Timestamp,
}

impl ArtifactRecord {
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// What [`PluginCatalog::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    Created,
    /// The version already holds exactly these bytes.
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("plugin {0} was not uploaded to this host")]
    NotFound(ArtifactRef),
    #[error(
        "plugin {reference} already holds a different component (blake3 {stored}); versions \
         are immutable: upload it under a new version"
    )]
    VersionTaken {
        reference: ArtifactRef,
        stored: String,
    },
    #[error("plugin {reference} is used by {}; move them to another version first", .used_by.join(", "))]
    InUse {
        reference: ArtifactRef,
        used_by: Vec<String>,
    },
    #[error("plugin {reference}: its component (blake3 {hash}) is missing from the store")]
    BytesMissing {
        reference: ArtifactRef,
        hash: String,
    },
    #[error("the stored record of plugin {key} cannot be read: {reason}")]
    Unreadable { key: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

const DECODING: &str = "decoding a plugin record";

/// The uploaded plugins, over the host's store.
#[derive(Clone)]
pub struct PluginCatalog {
    store: Arc<dyn Store>,
    /// Uploads and deletes one at a time: a delete decides whether other versions still
    /// share its bytes from a listing, which an upload running beside it could outdate.
    changes: Arc<std::sync::Mutex<()>>,
}

impl PluginCatalog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        PluginCatalog {
            store,
            changes: Arc::default(),
        }
    }

    fn one_change_at_a_time(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `wasm` as `reference` (the caller has validated it as a plugin). The version
    /// record and the bytes are written in one transaction, and a version that holds other
    /// bytes is refused inside it, so two concurrent uploads of one version cannot both win.
    pub fn put(
        &self,
        reference: &ArtifactRef,
        wasm: &[u8],
        at: Timestamp,
    ) -> Result<(Uploaded, ArtifactRecord), ArtifactError> {
        let hash = blake3::hash(wasm).to_hex().to_string();
        let key = reference.key();
        let fresh = ArtifactRecord {
            name: reference.name.clone(),
            version: reference.version.clone(),
            hash: hash.clone(),
            size: wasm.len() as u64,
            uploaded_at: at,
        };
        let encoded = crate::store::encode(&fresh, "encoding a plugin record")?;
        let _one = self.one_change_at_a_time();
        let mut outcome = None;
        self.store.write(&mut |txn| {
            outcome = None;
            if let Some(raw) = txn.get_plugin_raw(&key)? {
                let stored: ArtifactRecord = crate::store::decode(&raw, DECODING)?;
                outcome = Some(Err((stored.hash == hash, stored)));
                return Ok(());
            }
            txn.put_plugin_component(&hash, wasm)?;
            txn.put_plugin_raw(&key, &encoded)?;
            outcome = Some(Ok(()));
            Ok(())
        })?;
        match outcome {
            Some(Ok(())) => Ok((Uploaded::Created, fresh)),
            Some(Err((true, stored))) => Ok((Uploaded::Unchanged, stored)),
            Some(Err((false, stored))) => Err(ArtifactError::VersionTaken {
                reference: reference.clone(),
                stored: stored.hash,
            }),
            None => Err(StoreError::WriterStopped.into()),
        }
    }

    pub fn get(&self, reference: &ArtifactRef) -> Result<Option<ArtifactRecord>, ArtifactError> {
        let key = reference.key();
        self.store
            .plugin_raw(&key)?
            .map(|raw| decode(&key, &raw))
            .transpose()
    }

    /// Every uploaded version, by name then version (byte order).
    pub fn list(&self) -> Result<Vec<ArtifactRecord>, ArtifactError> {
        self.store
            .plugins_raw()?
            .into_iter()
            .map(|(key, raw)| decode(&key, &raw))
            .collect()
    }

    /// The component's bytes, for the plugin runtime to load.
    pub fn component(&self, reference: &ArtifactRef) -> Result<Vec<u8>, ArtifactError> {
        let record = self
            .get(reference)?
            .ok_or_else(|| ArtifactError::NotFound(reference.clone()))?;
        self.store
            .plugin_component(&record.hash)?
            .ok_or_else(|| ArtifactError::BytesMissing {
                reference: reference.clone(),
                hash: record.hash,
            })
    }

    /// Removes a version nobody uses (`used_by`: the installations whose spec names it,
    /// from [`used_by`]); its bytes go too unless another version carries them. Whether it
    /// existed.
    pub fn delete(
        &self,
        reference: &ArtifactRef,
        used_by: Vec<String>,
    ) -> Result<bool, ArtifactError> {
        if !used_by.is_empty() {
            return Err(ArtifactError::InUse {
                reference: reference.clone(),
                used_by,
            });
        }
        let key = reference.key();
        let _one = self.one_change_at_a_time();
        let others = self.list()?;
        let mut removed = false;
        self.store.write(&mut |txn| {
            removed = false;
            let Some(raw) = txn.get_plugin_raw(&key)? else {
                return Ok(());
            };
            let stored: ArtifactRecord = crate::store::decode(&raw, DECODING)?;
            txn.delete_plugin_raw(&key)?;
            let shared = others
                .iter()
                .any(|o| o.reference() != key && o.hash == stored.hash);
            if !shared {
                txn.delete_plugin_component(&stored.hash)?;
            }
            removed = true;
            Ok(())
        })?;
        Ok(removed)
    }
}

/// Which installations' specs name each artifact (`plugin.artifact`), from their documents.
pub fn used_by<'a>(
    specs: impl IntoIterator<Item = (&'a str, &'a serde_json::Value)>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, spec) in specs {
        if let Some(artifact) = spec
            .get("plugin")
            .and_then(|p| p.get("artifact"))
            .and_then(serde_json::Value::as_str)
        {
            out.entry(artifact.to_owned())
                .or_default()
                .push(id.to_owned());
        }
    }
    out
}

fn decode(key: &str, raw: &[u8]) -> Result<ArtifactRecord, ArtifactError> {
    serde_json::from_slice(raw).map_err(|e| ArtifactError::Unreadable {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_name_at_version_and_carry_no_path() {
        let r: ArtifactRef = "acme-accounts@1.0.0".parse().expect("valid");
        assert_eq!(
            (r.name.as_str(), r.version.as_str()),
            ("acme-accounts", "1.0.0")
        );
        assert_eq!(r.to_string(), "acme-accounts@1.0.0");
        for bad in [
            "acme",
            "@1",
            "acme@",
            "../x@1",
            "a@b@c",
            "a/b@1",
            ".hidden@1",
            "a@1 ",
        ] {
            assert!(bad.parse::<ArtifactRef>().is_err(), "{bad:?} was accepted");
        }
        assert!(ArtifactRef::new(&"a".repeat(65), "1").is_err());
    }

    #[test]
    fn used_by_reads_plugin_artifact_from_each_spec() {
        let a = serde_json::json!({"plugin": {"artifact": "p@1"}});
        let b = serde_json::json!({"plugin": {"component": "p.wasm"}});
        let c = serde_json::json!({"plugin": {"artifact": "p@1"}});
        let map = used_by([("a", &a), ("b", &b), ("c", &c)]);
        assert_eq!(map.len(), 1);
        assert_eq!(map["p@1"], vec!["a".to_owned(), "c".to_owned()]);
    }
}
