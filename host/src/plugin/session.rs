//! One sandbox serving every stage of one batch: map, then coerce and dedup keys of what
//! the map produced, as calls into the same instance.
//!
//! Instantiating is the fixed cost of a call (a pool slot, a store, resetting the slot's
//! memory, the plugin's start-up), so a batch pays it once instead of once per stage. The
//! sandbox guarantees hold per batch exactly as they do per call: the store is fresh for
//! the batch and dropped with it; each call gets the full time budget and the memory cap;
//! and after any failed call the instance is never entered again, because a trap can
//! leave it in any state.

use std::cell::RefCell;

use super::bindings::Plugin;
use super::bindings::chain::ChainResult;
use super::chain::ChainCalls;
use super::engine::{CallSpec, Instance, LoadedPlugin, classify};
use super::error::PluginError;
use super::output;
use super::sandbox::Sandbox;
use super::types::{Batch, BatchResult, DedupResult, Direction, ObjectSchema};

/// The stages of one batch in one sandbox; see the module docs. Open one with
/// [`LoadedPlugin::batch_session`].
pub struct BatchSession<'p> {
    plugin: &'p LoadedPlugin,
    spec: &'p CallSpec,
    instance: RefCell<Instance<'p>>,
    /// Set once a call failed: the instance is not entered again.
    failed: RefCell<Option<String>>,
}

impl LoadedPlugin {
    /// Instantiates the plugin once for a batch whose stages then run as calls into the
    /// same sandbox. Use it for map → coerce → dedup of one batch; open a new one for the
    /// next batch.
    pub fn batch_session<'p>(
        &'p self,
        spec: &'p CallSpec,
    ) -> Result<BatchSession<'p>, PluginError> {
        Ok(BatchSession {
            plugin: self,
            spec,
            instance: RefCell::new(self.instantiate(spec)?),
            failed: RefCell::new(None),
        })
    }
}

impl BatchSession<'_> {
    fn call<R>(
        &self,
        f: impl FnOnce(&Plugin, &mut wasmtime::Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        if let Some(earlier) = self.failed.borrow().as_ref() {
            return Err(PluginError::Trap {
                message: format!("an earlier call of this batch failed: {earlier}"),
            });
        }
        let mut instance = self.instance.borrow_mut();
        let Instance { store, plugin, .. } = &mut *instance;
        store.data_mut().begin_call();
        self.plugin.arm_deadline(store, &self.spec.limits);
        let result = f(plugin, store).map_err(|e| classify(e, store, &self.spec.limits, false));
        if let Err(error) = &result {
            *self.failed.borrow_mut() = Some(error.to_string());
        }
        result
    }

    pub fn map_inbound(&self, input: &Batch) -> Result<BatchResult, PluginError> {
        self.map(Direction::Inbound, input)
    }

    pub fn map_outbound(&self, input: &Batch) -> Result<BatchResult, PluginError> {
        self.map(Direction::Outbound, input)
    }

    fn map(&self, direction: Direction, input: &Batch) -> Result<BatchResult, PluginError> {
        let ctx = LoadedPlugin::context(self.spec, direction);
        let result = self.call(|p, store| match direction {
            Direction::Inbound => p.weft_plugin_mapper().call_map_inbound(store, &ctx, input),
            Direction::Outbound => p.weft_plugin_mapper().call_map_outbound(store, &ctx, input),
        })?;
        output::check_batch_result(&result, input.sources.len(), &self.spec.limits)?;
        Ok(result)
    }

    pub fn coerce(
        &self,
        direction: Direction,
        schema: &ObjectSchema,
        input: &Batch,
    ) -> Result<BatchResult, PluginError> {
        let ctx = LoadedPlugin::context(self.spec, direction);
        let result = self.call(|p, store| {
            p.weft_plugin_coercer()
                .call_coerce(store, &ctx, schema, input)
        })?;
        output::check_batch_result(&result, input.sources.len(), &self.spec.limits)?;
        Ok(result)
    }

    /// Map → coerce → dedup keys in one call into this sandbox; see the WIT `chain`.
    pub fn chain(
        &self,
        direction: Direction,
        input: &Batch,
        schemas: &[ObjectSchema],
        dedup: bool,
    ) -> Result<ChainResult, PluginError> {
        let ctx = LoadedPlugin::context(self.spec, direction);
        let result = self.call(|p, store| {
            p.weft_plugin_chain()
                .call_run(store, &ctx, input, schemas, dedup)
        })?;
        output::check_chain(&result, input.sources.len(), &self.spec.limits)?;
        Ok(result)
    }

    pub fn dedup_keys(
        &self,
        direction: Direction,
        input: &Batch,
    ) -> Result<DedupResult, PluginError> {
        let ctx = LoadedPlugin::context(self.spec, direction);
        let result =
            self.call(|p, store| p.weft_plugin_deduper().call_dedup_keys(store, &ctx, input))?;
        output::check_dedup(&result, input.sources.len(), &self.spec.limits)?;
        Ok(result)
    }
}

impl Drop for BatchSession<'_> {
    fn drop(&mut self) {
        self.instance.borrow().store.data().flush_stdio();
    }
}

impl ChainCalls for BatchSession<'_> {
    fn chain(
        &self,
        direction: Direction,
        input: &Batch,
        schemas: &[ObjectSchema],
        dedup: bool,
    ) -> Result<ChainResult, PluginError> {
        BatchSession::chain(self, direction, input, schemas, dedup)
    }
}
