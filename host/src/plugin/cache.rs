//! Compiled components, cached by content hash and engine compatibility.
//!
//! Compiling a component with Cranelift costs tens to hundreds of milliseconds; thousands
//! of installations often share a handful of plugins, and a restarted host should not
//! recompile any of them. So: an in-memory map from content hash to `Component` (a cheap,
//! shared handle), backed by an on-disk directory of precompiled artifacts whose names
//! carry the content hash *and* the engine's compatibility hash — a wasmtime upgrade or a
//! changed engine setting can never load a stale artifact.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::LoadError;

pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_tag: String,
    loaded: Mutex<HashMap<blake3::Hash, Component>>,
}

/// How a component was obtained, for logs and the cold/warm benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Memory,
    Disk,
    Compiled,
}

impl CompileCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Result<Self, LoadError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|source| LoadError::Cache {
                path: dir.clone(),
                source,
            })?;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_tag: format!("{:016x}", hasher.finish()),
            loaded: Mutex::new(HashMap::new()),
        })
    }

    fn artifact_path(&self, dir: &Path, hash: &blake3::Hash) -> PathBuf {
        dir.join(format!("{}-{}.cwasm", hash.to_hex(), self.engine_tag))
    }

    pub fn get_or_compile(
        &self,
        engine: &Engine,
        hash: &blake3::Hash,
        wasm: &[u8],
    ) -> Result<(Component, CacheOutcome), LoadError> {
        if let Some(component) = self.lock().get(hash) {
            return Ok((component.clone(), CacheOutcome::Memory));
        }
        let (component, outcome) = match &self.dir {
            Some(dir) => self.disk_or_compile(engine, dir, hash, wasm)?,
            None => (compile(engine, wasm)?, CacheOutcome::Compiled),
        };
        self.lock().insert(*hash, component.clone());
        Ok((component, outcome))
    }

    fn disk_or_compile(
        &self,
        engine: &Engine,
        dir: &Path,
        hash: &blake3::Hash,
        wasm: &[u8],
    ) -> Result<(Component, CacheOutcome), LoadError> {
        let path = self.artifact_path(dir, hash);
        if path.exists() {
            // SAFETY: artifacts in the cache directory are written only by this function
            // from `Engine::precompile_component`, under a name that pins the content and
            // engine compatibility hash. The directory must be private to the host.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Disk)),
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    "discarding unreadable compiled plugin: {error:#}"
                ),
            }
        }
        let artifact = engine
            .precompile_component(wasm)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        // Write-then-rename so a crash never leaves a truncated artifact under the final name.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &artifact)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| LoadError::Cache {
                path: path.clone(),
                source,
            })?;
        // SAFETY: `artifact` was produced by `precompile_component` on this engine just now.
        let component = unsafe { Component::deserialize(engine, &artifact) }
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        Ok((component, CacheOutcome::Compiled))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<blake3::Hash, Component>> {
        // A panic while holding this lock leaves the map consistent (inserts are atomic).
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component, LoadError> {
    Component::new(engine, wasm).map_err(|e| LoadError::Invalid(format!("{e:#}")))
}
