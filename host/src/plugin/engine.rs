//! The one shared engine every installation's plugins run on, and the batch calls.
//!
//! The engine is configured for untrusted tenants: epoch interruption (a ticker thread
//! advances the epoch; each call gets a deadline), a bounded wasm stack, a pooling
//! allocator sized to the calls that may run at once, wasm features Rust guests do not
//! use switched off, and NaN canonicalisation so results do not depend on the CPU.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;

use super::bindings::chain::ChainResult;
use super::bindings::{Plugin, PluginPre};
use super::cache::{CacheOutcome, CompileCache};
use super::clock::SandboxClocks;
use super::error::{LoadError, PluginError};
use super::limits::CallLimits;
use super::output;
use super::sandbox::Sandbox;
use super::types::{
    Batch, BatchResult, CallContext, DedupResult, Direction, ObjectSchema, Resolution,
};
use super::validate::{self, ComponentReport};

/// Engine-wide settings. Per-call limits are [`CallLimits`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled plugins are kept across restarts; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Plugin calls that may run at once. Each holds a pooled instance slot whose
    /// memories are reserved up front (virtual address space only), so this bounds both
    /// parallelism and reservation. Default 32: well above the worker count of a 2–8
    /// core host, and further calls wait for a slot rather than fail.
    pub max_concurrent_calls: u32,
    /// Native stack wasm may use. Default 512 KiB: deep enough for any sane plugin,
    /// shallow enough that runaway recursion traps fast and cheaply.
    pub max_wasm_stack: usize,
    /// How often the epoch advances. Default 5 ms: the granularity of execution budgets.
    /// Finer ticks cost a little more timer wake-ups, never per-instruction overhead.
    pub epoch_tick: Duration,
    /// The largest memory cap any call may ask for; pooled slots are sized to it.
    /// Default 64 MiB, the default per-call cap.
    pub max_memory_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_concurrent_calls: 32,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(5),
            max_memory_bytes: 64 << 20,
        }
    }
}

/// Rust components built by `wit-component` carry a few core modules (the program, an
/// adapter shim and a fix-up module); these bound how many one instance may need.
const CORE_INSTANCES_PER_CALL: u32 = 8;
/// Memory a reused pool slot keeps resident: enough for a 1,000-record batch and its output
/// (a few MiB), small enough that 32 idle slots hold at most 256 MiB.
const KEEP_RESIDENT_BYTES: usize = 8 << 20;
const MEMORIES_PER_CALL: u32 = 2;
const TABLES_PER_CALL: u32 = 4;

/// Counts free instance slots so a call waits for one instead of failing when the pool
/// is momentarily exhausted.
struct Slots {
    free: Mutex<u32>,
    available: Condvar,
}

impl Slots {
    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.available.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

pub(super) struct SlotGuard<'a>(&'a Slots);

/// A plugin instantiated in its own sandbox, holding its pool slot.
pub(super) struct Instance<'p> {
    _slot: SlotGuard<'p>,
    _active: Active,
    pub store: Store<Sandbox>,
    pub plugin: Plugin,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.available.notify_one();
    }
}

/// How many sandboxes exist now, so the epoch ticker sleeps while no plugin runs: an idle
/// host has no thread waking every few milliseconds.
#[derive(Default)]
struct Activity {
    /// (sandboxes alive, the ticker is to stop)
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl Activity {
    fn enter(self: &Arc<Self>) -> Active {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 += 1;
        if state.0 == 1 {
            self.changed.notify_all();
        }
        Active(self.clone())
    }

    /// Waits until a sandbox exists; `false` once the ticker is to stop.
    fn wait_busy(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.0 == 0 && !state.1 {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        !state.1
    }

    fn stop(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.changed.notify_all();
    }
}

/// One live sandbox, counted in [`Activity`].
struct Active(Arc<Activity>);

impl Drop for Active {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = state.0.saturating_sub(1);
    }
}

struct Ticker {
    activity: Arc<Activity>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.activity.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Shared {
    engine: Engine,
    linker: Linker<Sandbox>,
    cache: CompileCache,
    slots: Slots,
    config: RuntimeConfig,
    ticker: Ticker,
}

/// The shared plugin runtime. Cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    shared: Arc<Shared>,
}

impl PluginRuntime {
    pub fn new(config: RuntimeConfig) -> Result<Self, LoadError> {
        let engine =
            Engine::new(&engine_config(&config)).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        // WASI's monotonic clock hands out real timers a plugin could block a host thread
        // on; ours never blocks and charges sleeps to the budget (see `clock`).
        linker.allow_shadowing(true);
        monotonic_clock::add_to_linker::<Sandbox, SandboxClocks>(&mut linker, |s| {
            s.monotonic_clock()
        })
        .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        linker.allow_shadowing(false);
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let cache = CompileCache::new(&engine, config.cache_dir.clone())?;
        let ticker = start_ticker(engine.clone(), config.epoch_tick);
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                linker,
                cache,
                slots: Slots {
                    free: Mutex::new(config.max_concurrent_calls),
                    available: Condvar::new(),
                },
                config,
                ticker,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Loads a component from a file; see [`PluginRuntime::load`].
    pub fn load_file(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load(&wasm)
    }

    /// Validates a component against the contract, compiles it (or takes it from the
    /// cache) and prepares it for instantiation.
    pub fn load(&self, wasm: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let hash = blake3::hash(wasm);
        let shared = &self.shared;
        let (component, outcome) = shared.cache.get_or_compile(&shared.engine, &hash, wasm)?;
        let report = validate::check(&shared.engine, &component)?;
        let pre = shared
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let short_hash: Arc<str> = hash.to_hex()[..12].into();
        tracing::debug!(plugin = %short_hash, ?outcome, "plugin loaded");
        Ok(LoadedPlugin {
            runtime: self.clone(),
            pre,
            hash: short_hash,
            report,
            outcome,
            component,
        })
    }
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack)
        // Deterministic floats across CPUs: plugins must give the same answer everywhere.
        .cranelift_nan_canonicalization(true)
        // Features Rust guests do not use stay off: less attack surface in the compiler.
        .wasm_memory64(false)
        .wasm_relaxed_simd(false)
        .wasm_tail_call(false)
        .wasm_gc(false);
    let slots = config.max_concurrent_calls.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * CORE_INSTANCES_PER_CALL)
        .total_memories(slots * MEMORIES_PER_CALL)
        .total_tables(slots * TABLES_PER_CALL)
        .max_memories_per_component(MEMORIES_PER_CALL)
        .max_tables_per_component(TABLES_PER_CALL)
        .max_core_instances_per_component(CORE_INSTANCES_PER_CALL)
        .max_memory_size(config.max_memory_bytes)
        // Reused slots keep their first pages mapped and are zeroed with memset instead of
        // being handed back to the kernel: a batch then writes to warm pages rather than
        // taking a page fault for every fresh 4 KiB of its input and output.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES / 16)
        // Where the kernel can say which pages a call wrote (Linux 6.7+), only those are
        // reset. Plugins built with a generous initial memory (our `.cargo/config.toml`
        // starts at 4 MiB, so a batch never calls `memory.grow`) leave most of it
        // untouched, and without this every accessible byte up to the resident limit
        // would be zeroed after each batch. Elsewhere it falls back to the memset.
        .pagemap_scan(Enabled::Auto);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c
}

/// Advances the engine's epoch every `tick` while any sandbox exists (a call's deadline
/// counts ticks from when it was armed, so a paused epoch delays no one).
fn start_ticker(engine: Engine, tick: Duration) -> Ticker {
    let activity = Arc::new(Activity::default());
    let busy = activity.clone();
    let thread = std::thread::Builder::new()
        .name("weft-epoch".into())
        .spawn(move || {
            while busy.wait_busy() {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .ok();
    Ticker { activity, thread }
}

/// A validated, compiled plugin ready to run batch calls.
#[derive(Clone)]
pub struct LoadedPlugin {
    runtime: PluginRuntime,
    pre: PluginPre<Sandbox>,
    hash: Arc<str>,
    report: ComponentReport,
    outcome: CacheOutcome,
    component: Component,
}

/// Who a call is for: the installation, its plugin configuration and its limits.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub installation: Arc<str>,
    pub config: Arc<BTreeMap<String, String>>,
    pub limits: CallLimits,
    /// The host's clock for this batch, in milliseconds since the epoch.
    pub now_ms: i64,
}

impl LoadedPlugin {
    /// The first 12 hex digits of the component's content hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn report(&self) -> &ComponentReport {
        &self.report
    }

    /// Whether loading compiled the component or found it cached.
    pub fn was_compiled(&self) -> bool {
        self.outcome == CacheOutcome::Compiled
    }

    pub fn component(&self) -> &Component {
        &self.component
    }

    /// A fresh sandbox (store, limits, budget) with the plugin instantiated in it. The pool
    /// slot is held for as long as the returned guard lives.
    pub(super) fn instantiate(&self, spec: &CallSpec) -> Result<Instance<'_>, PluginError> {
        let shared = &self.runtime.shared;
        let slot = shared.slots.acquire();
        let active = shared.ticker.activity.enter();
        let limits = &spec.limits;
        let sandbox = Sandbox::new(
            spec.installation.clone(),
            self.hash.clone(),
            spec.config.clone(),
            limits,
            spec.now_ms,
        );
        let mut store = Store::new(&shared.engine, sandbox);
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        store.epoch_deadline_trap();
        self.arm_deadline(&mut store, limits);
        match self.pre.instantiate(&mut store) {
            Ok(plugin) => Ok(Instance {
                _slot: slot,
                _active: active,
                store,
                plugin,
            }),
            Err(e) => {
                let error = classify(e, &store, limits, true);
                store.data().flush_stdio();
                Err(error)
            }
        }
    }

    /// Gives the next call the full time budget, counted from now: the epoch deadline
    /// bounds the time spent in wasm, the call clock the time the plugin sleeps.
    pub(super) fn arm_deadline(&self, store: &mut Store<Sandbox>, limits: &CallLimits) {
        store.data_mut().clock.start_call(limits.time_budget);
        let tick = self.runtime.shared.config.epoch_tick.as_nanos().max(1);
        let ticks = limits.time_budget.as_nanos().div_ceil(tick).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    }

    /// Instantiates the plugin in a fresh sandbox and runs `f` against it. The store is
    /// dropped afterwards whatever happened.
    fn with_instance<R>(
        &self,
        spec: &CallSpec,
        f: impl FnOnce(&Plugin, &mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let mut instance = self.instantiate(spec)?;
        let result = f(&instance.plugin, &mut instance.store)
            .map_err(|e| classify(e, &instance.store, &spec.limits, false));
        instance.store.data().flush_stdio();
        result
    }

    pub(super) fn context(spec: &CallSpec, direction: Direction) -> CallContext {
        CallContext {
            installation: spec.installation.to_string(),
            direction,
            now: spec.now_ms,
        }
    }

    pub fn map_inbound(&self, spec: &CallSpec, input: &Batch) -> Result<BatchResult, PluginError> {
        let ctx = Self::context(spec, Direction::Inbound);
        let result = self.with_instance(spec, |p, store| {
            p.weft_plugin_mapper().call_map_inbound(store, &ctx, input)
        })?;
        output::check_batch_result(&result, input.sources.len(), &spec.limits)?;
        Ok(result)
    }

    pub fn map_outbound(&self, spec: &CallSpec, input: &Batch) -> Result<BatchResult, PluginError> {
        let ctx = Self::context(spec, Direction::Outbound);
        let result = self.with_instance(spec, |p, store| {
            p.weft_plugin_mapper().call_map_outbound(store, &ctx, input)
        })?;
        output::check_batch_result(&result, input.sources.len(), &spec.limits)?;
        Ok(result)
    }

    pub fn coerce(
        &self,
        spec: &CallSpec,
        direction: Direction,
        schema: &ObjectSchema,
        input: &Batch,
    ) -> Result<BatchResult, PluginError> {
        let ctx = Self::context(spec, direction);
        let result = self.with_instance(spec, |p, store| {
            p.weft_plugin_coercer()
                .call_coerce(store, &ctx, schema, input)
        })?;
        output::check_batch_result(&result, input.sources.len(), &spec.limits)?;
        Ok(result)
    }

    pub fn resolve(
        &self,
        spec: &CallSpec,
        incoming: &Batch,
        incoming_at: &[i64],
        current: &Batch,
        current_modified_at: &[Option<i64>],
    ) -> Result<Resolution, PluginError> {
        let ctx = Self::context(spec, Direction::Outbound);
        let result = self.with_instance(spec, |p, store| {
            p.weft_plugin_resolver().call_resolve(
                store,
                &ctx,
                incoming,
                incoming_at,
                current,
                current_modified_at,
            )
        })?;
        output::check_resolution(&result, incoming)?;
        Ok(result)
    }

    pub fn dedup_keys(
        &self,
        spec: &CallSpec,
        direction: Direction,
        input: &Batch,
    ) -> Result<DedupResult, PluginError> {
        let ctx = Self::context(spec, direction);
        let result = self.with_instance(spec, |p, store| {
            p.weft_plugin_deduper().call_dedup_keys(store, &ctx, input)
        })?;
        output::check_dedup(&result, input.sources.len(), &spec.limits)?;
        Ok(result)
    }

    /// Map → coerce → dedup keys in one call; see the WIT `chain` and [`super::run_chain`].
    pub fn chain(
        &self,
        spec: &CallSpec,
        direction: Direction,
        input: &Batch,
        schemas: &[ObjectSchema],
        dedup: bool,
    ) -> Result<ChainResult, PluginError> {
        let ctx = Self::context(spec, direction);
        let result = self.with_instance(spec, |p, store| {
            p.weft_plugin_chain()
                .call_run(store, &ctx, input, schemas, dedup)
        })?;
        output::check_chain(&result, input.sources.len(), &spec.limits)?;
        Ok(result)
    }
}

/// Turns a wasmtime error into what actually happened, using what the sandbox saw.
pub(super) fn classify(
    error: wasmtime::Error,
    store: &Store<Sandbox>,
    limits: &CallLimits,
    instantiating: bool,
) -> PluginError {
    let sandbox = store.data();
    if sandbox.memory_exceeded {
        return PluginError::MemoryExceeded {
            cap: limits.memory_bytes,
        };
    }
    if sandbox.clock.overran {
        return PluginError::Timeout {
            budget: limits.time_budget,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            return PluginError::Timeout {
                budget: limits.time_budget,
            };
        }
        Some(Trap::StackOverflow) => return PluginError::StackOverflow,
        _ => {}
    }
    if let Some(message) = sandbox.panic_message() {
        return PluginError::Panic { message };
    }
    if instantiating && error.downcast_ref::<Trap>().is_none() {
        return PluginError::Instantiate(format!("{error:#}"));
    }
    PluginError::Trap {
        message: format!("{error:#}"),
    }
}
