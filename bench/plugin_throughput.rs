//! Plugin throughput: the same plugin logic through the wasm sandbox and compiled natively,
//! side by side in one run, plus the per-field-string ABI the batch layout replaced.
//!
//! `cargo bench -p weft --bench plugin_throughput`
//!
//! Workload: 1,000-record batches of 30-field product `company` records through
//! acme-accounts' map (→ Account) → coerce (against an Account describe) → dedup keys.
//! Wasm and native run interleaved in three rounds (`round=…` lines); the last line is the
//! round with the median ratio: `wasm_records_per_sec=… native_records_per_sec=…
//! wasm_over_native=…`.
//!
//! The ABI line also runs the same trivial copy natively (`columnar_wasm_over_native`).
//!
//! The `events` line times stored outbound events into the map call's batch: read as JSON
//! trees (as before) and straight from their text (`text_over_tree`).
//!
//! For profiling one part alone, name it after `--`: `compile`, `instantiate`, `abi`,
//! `events`, `wasm` or `native` (e.g. `cargo bench -p weft --bench plugin_throughput -- wasm`).
//!
//! To compare another build of acme-accounts with this one (other compiler flags, an SDK
//! change), both through the same sandbox and interleaved like wasm and native:
//! `WEFT_COMPARE_WASM=path/to/acme_accounts.wasm cargo bench -p weft --bench
//! plugin_throughput -- compare`, which prints `…other_over_baseline=…` three times.
//! Two runtimes alternate, so even a build compared with itself reads about 0.99.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use weft::plugin::{
    CallLimits, CallSpec, Direction, FieldKind, FieldSchema, LoadedPlugin, MAX_BATCH_CELLS,
    ObjectSchema, PluginRuntime, RuntimeConfig, batch_from_json, batches_from_texts,
};
use weft::store::{AcceptedEvent, Operation, OutboundEvent, PendingEvent, RecordText};

const RECORDS: usize = 1_000;
/// Each measurement runs at least this long, so short runs do not dominate by noise.
const MEASURE_FOR: Duration = Duration::from_secs(3);
/// Rounds of the wasm/native comparison, each an interleaved [`measure_pair`]; the round
/// with the median ratio is reported.
const RATIO_ROUNDS: usize = 3;

fn plugin_config() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("currency.org".to_owned(), "USD".to_owned()),
        ("rate.EUR".to_owned(), "1.08".to_owned()),
        ("synonym.Acct Mgr".to_owned(), "Account Manager".to_owned()),
        (
            "dedup.fields".to_owned(),
            "Acme_Company_Id__c,GoldenAccountID__c".to_owned(),
        ),
    ])
}

fn company(i: usize) -> Map<String, Json> {
    let value = json!({
        "company_id": format!("C-{i:07}"),
        "name": format!("Company {i} Holdings"),
        "account_number": format!("AN{i:08}"),
        "site": "Headquarters",
        "type": "Customer - Direct",
        "industry": "Manufacturing",
        "rating": "Warm",
        "ownership": "Private",
        "account_manager_role": if i.is_multiple_of(3) { "Acct Mgr" } else { "Account Manager" },
        "phone": format!("0{:09}", i * 7919 % 1_000_000_000),
        "fax": format!("0{:09}", i * 104_729 % 1_000_000_000),
        "website": format!("https://www.company{i}.example.com/about"),
        "ticker": format!("C{}", i % 10_000),
        "sic": "02134",
        "sic_description": "Manufacturing of things",
        "description": "A long-standing customer with several subsidiaries across regions.",
        "employees": (i % 5000) as i64,
        "annual_revenue": format!("{}.50", 1000 + i),
        "currency": if i.is_multiple_of(2) { "USD" } else { "EUR" },
        "founded": if i.is_multiple_of(2) { "03/14/1998" } else { "14.03.1998" },
        "billing_street": format!("{i} Main Street"),
        "billing_city": "Springfield",
        "billing_state": "IL",
        "billing_postal_code": "02134",
        "billing_country": "US",
        "shipping_street": format!("{i} Dock Road"),
        "shipping_city": "Shelbyville",
        "shipping_state": "IL",
        "shipping_postal_code": "02135",
        "shipping_country": "US",
        "golden_id": format!("GA-{:06}", i / 3),
        "updated_at": "2026-01-02T03:04:05Z",
    });
    value.as_object().cloned().unwrap_or_default()
}

fn field(name: &str, kind: FieldKind, length: u32) -> FieldSchema {
    FieldSchema {
        name: name.to_owned(),
        kind,
        length,
        scale: if matches!(kind, FieldKind::Currency) {
            2
        } else {
            0
        },
        nillable: name != "Name",
        createable: true,
        updateable: true,
        external_id: name.ends_with("Id__c"),
        picklist_values: match name {
            "Account_Manager_Role__c" => vec!["Account Manager".into(), "Sales Rep".into()],
            "Rating" => vec!["Hot".into(), "Warm".into(), "Cold".into()],
            _ => Vec::new(),
        },
        restricted_picklist: name == "Account_Manager_Role__c",
        reference_to: Vec::new(),
    }
}

fn account_schema() -> ObjectSchema {
    use FieldKind::*;
    let text = [
        ("Acme_Company_Id__c", String, 40),
        ("Name", String, 255),
        ("AccountNumber", String, 40),
        ("Site", String, 80),
        ("TickerSymbol", String, 20),
        ("Sic", String, 20),
        ("SicDesc", String, 80),
        ("Description", Textarea, 32_000),
        ("BillingStreet", Textarea, 255),
        ("BillingCity", String, 40),
        ("BillingState", String, 80),
        ("BillingPostalCode", String, 20),
        ("BillingCountry", String, 80),
        ("ShippingStreet", Textarea, 255),
        ("ShippingCity", String, 40),
        ("ShippingState", String, 80),
        ("ShippingPostalCode", String, 20),
        ("ShippingCountry", String, 80),
        ("GoldenAccountID__c", String, 40),
        ("Phone", Phone, 40),
        ("Fax", Phone, 40),
        ("Website", Url, 255),
        ("Type", Picklist, 255),
        ("Industry", Picklist, 255),
        ("Rating", Picklist, 255),
        ("Ownership", Picklist, 255),
        ("Account_Manager_Role__c", Picklist, 255),
        ("NumberOfEmployees", Int, 0),
        ("AnnualRevenue", Currency, 0),
        ("Founded_Date__c", Date, 0),
        ("YearStarted", String, 4),
        ("Acme_Updated_At__c", Datetime, 0),
    ];
    ObjectSchema {
        name: "Account".to_owned(),
        fields: text.iter().map(|(n, k, l)| field(n, *k, *l)).collect(),
    }
}

/// Runs `batch` repeatedly for at least [`MEASURE_FOR`]; returns records per second.
fn measure(mut batch: impl FnMut() -> usize) -> f64 {
    for _ in 0..3 {
        black_box(batch()); // warm caches and lazy initialisation
    }
    let started = Instant::now();
    let mut records = 0usize;
    while started.elapsed() < MEASURE_FOR {
        records += batch();
    }
    records as f64 / started.elapsed().as_secs_f64()
}

/// Measures two workloads interleaved in short slices for `total`, so both see the same
/// machine load (other builds come and go on a shared machine); returns records per second
/// of each. A workload that is not run reads as NaN.
fn measure_pair(
    mut a: Option<impl FnMut() -> usize>,
    mut b: Option<impl FnMut() -> usize>,
    total: Duration,
) -> (f64, f64) {
    const SLICE: Duration = Duration::from_millis(100);
    let slice = |work: &mut Option<&mut dyn FnMut() -> usize>, tally: &mut (usize, Duration)| {
        let Some(work) = work else { return };
        let started = Instant::now();
        while started.elapsed() < SLICE {
            tally.0 += work();
        }
        tally.1 += started.elapsed();
    };
    let mut a_work = a.as_mut().map(|f| f as &mut dyn FnMut() -> usize);
    let mut b_work = b.as_mut().map(|f| f as &mut dyn FnMut() -> usize);
    for work in [&mut a_work, &mut b_work].into_iter().flatten() {
        for _ in 0..3 {
            black_box(work()); // warm caches and lazy initialisation
        }
    }
    let (mut a_tally, mut b_tally) = ((0, Duration::ZERO), (0, Duration::ZERO));
    let started = Instant::now();
    while started.elapsed() < total {
        slice(&mut a_work, &mut a_tally);
        slice(&mut b_work, &mut b_tally);
    }
    let rate = |(records, time): (usize, Duration)| records as f64 / time.as_secs_f64();
    (rate(a_tally), rate(b_tally))
}

/// One batch through the sandbox: map → coerce → dedup as one chain call in a fresh
/// sandbox (what `run_chain` does), with typed, checked output like the native chain's.
fn wasm_chain(
    plugin: &LoadedPlugin,
    spec: &CallSpec,
    schema: &ObjectSchema,
    input: &weft::plugin::Batch,
) -> usize {
    let result = plugin
        .chain(
            spec,
            Direction::Outbound,
            input,
            std::slice::from_ref(schema),
            true,
        )
        .expect("chain");
    let done: usize = result.batches.iter().map(|b| b.batch.sources.len()).sum();
    assert!(result.errors.is_empty(), "{:?}", result.errors.first());
    assert_eq!(done, RECORDS, "every record makes it through the chain");
    done
}

mod native {
    //! The same chain with the plugin compiled into this binary, through the same SDK
    //! drivers the component exports run.
    use super::*;
    use acme_accounts::AcmeAccounts;
    use weft_guest::testing::Harness;

    pub fn to_guest_batch(records: &[Map<String, Json>]) -> weft_guest::Batch {
        let mut builder = weft_guest::BatchBuilder::new("company");
        for (i, record) in records.iter().enumerate() {
            let mut writer = builder.push(i as u32);
            for (name, value) in record {
                let value = match value {
                    Json::String(s) => weft_guest::Val::from(s.as_str()),
                    Json::Number(n) => n.as_i64().map_or(
                        weft_guest::Val::Num(n.as_f64().unwrap_or(0.0)),
                        weft_guest::Val::Int,
                    ),
                    Json::Bool(b) => weft_guest::Val::Bool(*b),
                    _ => weft_guest::Val::Null,
                };
                writer.set(name, value);
            }
        }
        builder.finish()
    }

    pub fn to_guest_schema(schema: &ObjectSchema) -> weft_guest::ObjectSchema {
        let kind = |k: FieldKind| -> weft_guest::FieldKind {
            // The two enums are generated from the same WIT; their names line up.
            let name = format!("{k:?}");
            match name.trim_start_matches("FieldKind::") {
                "String" => weft_guest::FieldKind::String,
                "Textarea" => weft_guest::FieldKind::Textarea,
                "Phone" => weft_guest::FieldKind::Phone,
                "Url" => weft_guest::FieldKind::Url,
                "Picklist" => weft_guest::FieldKind::Picklist,
                "Int" => weft_guest::FieldKind::Int,
                "Currency" => weft_guest::FieldKind::Currency,
                "Date" => weft_guest::FieldKind::Date,
                "Datetime" => weft_guest::FieldKind::Datetime,
                other => panic!("bench schema uses an unmapped kind {other}"),
            }
        };
        weft_guest::ObjectSchema {
            name: schema.name.clone(),
            fields: schema
                .fields
                .iter()
                .map(|f| weft_guest::FieldSchema {
                    name: f.name.clone(),
                    kind: kind(f.kind),
                    length: f.length,
                    scale: f.scale,
                    nillable: f.nillable,
                    createable: f.createable,
                    updateable: f.updateable,
                    external_id: f.external_id,
                    picklist_values: f.picklist_values.clone(),
                    restricted_picklist: f.restricted_picklist,
                    reference_to: f.reference_to.clone(),
                })
                .collect(),
        }
    }

    /// The same chain driver the component's `chain` export runs.
    pub fn chain(
        harness: &Harness,
        schema: &weft_guest::ObjectSchema,
        input: &weft_guest::Batch,
    ) -> usize {
        let result = harness.chain::<AcmeAccounts>(
            weft_guest::Direction::Outbound,
            input,
            std::slice::from_ref(schema),
            true,
        );
        let done: usize = result.batches.iter().map(|b| b.batch.sources.len()).sum();
        assert!(result.errors.is_empty(), "{:?}", result.errors.first());
        assert_eq!(done, RECORDS, "every record makes it through the chain");
        done
    }
}

mod naive {
    //! The per-field-string ABI: `list<list<record { name: string, value: string }>>`.
    use super::*;

    wasmtime::component::bindgen!({ path: "../bench/naive-abi/wit", world: "naive" });

    pub struct State {
        wasi: WasiCtx,
        table: ResourceTable,
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    pub struct Runner {
        pre: NaivePre<State>,
        engine: wasmtime::Engine,
    }

    impl Runner {
        pub fn new(engine: &wasmtime::Engine, wasm: &[u8]) -> Self {
            let component = Component::new(engine, wasm).expect("naive component");
            let mut linker = Linker::new(engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
            let pre = NaivePre::new(linker.instantiate_pre(&component).expect("pre")).expect("pre");
            Self {
                pre,
                engine: engine.clone(),
            }
        }

        /// One batch, fresh store and instance, like the real runtime.
        pub fn map(&self, records: &[Vec<Field>]) -> usize {
            let state = State {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            };
            let mut store = Store::new(&self.engine, state);
            store.set_epoch_deadline(u64::MAX / 2);
            let instance = self.pre.instantiate(&mut store).expect("instantiate");
            let out = instance
                .call_map_records(&mut store, records)
                .expect("call");
            out.len()
        }
    }

    pub fn to_fields(records: &[Map<String, Json>]) -> Vec<Vec<Field>> {
        records
            .iter()
            .map(|r| {
                r.iter()
                    .map(|(k, v)| Field {
                        name: k.clone(),
                        value: match v {
                            Json::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                    })
                    .collect()
            })
            .collect()
    }
}

/// This acme-accounts build against another (`WEFT_COMPARE_WASM`), each in its own runtime
/// (with its own instance pool), interleaved; three rounds.
fn compare(
    baseline: &LoadedPlugin,
    other: &std::ffi::OsStr,
    spec: &CallSpec,
    schema: &ObjectSchema,
    input: &weft::plugin::Batch,
) {
    let other_runtime = PluginRuntime::new(RuntimeConfig::default()).expect("engine");
    let other = other_runtime
        .load_file(std::path::Path::new(other))
        .expect("load the component to compare");
    for _ in 0..3 {
        let (a, b) = measure_pair(
            Some(|| wasm_chain(baseline, spec, schema, input)),
            Some(|| wasm_chain(&other, spec, schema, input)),
            2 * MEASURE_FOR,
        );
        println!(
            "baseline_records_per_sec={a:.0} other_records_per_sec={b:.0} other_over_baseline={:.3}",
            b / a
        );
    }
}

/// Stored outbound events into the map call's batch, two ways interleaved: each event read
/// into a JSON tree, its record copied and the batch built from the trees (how the outbound
/// round read events before), and each record read from its stored text straight into the
/// batch (how it does now). The map call on the same batch is timed too, for scale.
fn outbound_events(acme: &LoadedPlugin, spec: &CallSpec, records: &[Map<String, Json>]) {
    let occurred_at: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().expect("timestamp");
    let stored: Vec<Vec<u8>> = records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            serde_json::to_vec(&AcceptedEvent {
                installation: "bench".to_owned(),
                seq: i as u64,
                accepted_at: occurred_at,
                event: OutboundEvent {
                    id: format!("evt-{i}"),
                    object: "company".to_owned(),
                    operation: Operation::Upsert,
                    occurred_at,
                    record: record.clone(),
                },
            })
            .expect("encode")
        })
        .collect();
    let mut rounds: Vec<(f64, f64)> = (0..RATIO_ROUNDS)
        .map(|_| {
            measure_pair(
                Some(|| {
                    let events: Vec<AcceptedEvent> = stored
                        .iter()
                        .map(|b| serde_json::from_slice(b).expect("decode"))
                        .collect();
                    let maps: Vec<Map<String, Json>> =
                        events.iter().map(|e| e.event.record.clone()).collect();
                    black_box(batch_from_json("company", &maps)).sources.len()
                }),
                Some(|| {
                    let events: Vec<PendingEvent> = stored
                        .iter()
                        .map(|b| serde_json::from_slice(b).expect("decode"))
                        .collect();
                    let texts: Vec<RecordText> =
                        events.iter().map(|e| e.event.record.clone()).collect();
                    let read = batches_from_texts(
                        "company",
                        texts.iter().map(RecordText::as_str),
                        MAX_BATCH_CELLS,
                    );
                    black_box(read)
                        .batches
                        .iter()
                        .map(|b| b.records.len())
                        .sum()
                }),
                MEASURE_FOR,
            )
        })
        .collect();
    rounds.sort_by(|a, b| (a.1 / a.0).total_cmp(&(b.1 / b.0)));
    let (tree, text) = rounds[rounds.len() / 2];
    let input = batch_from_json("company", records);
    let map_call = measure(|| {
        let out = acme.map_outbound(spec, &input).expect("map");
        out.batches.iter().map(|b| b.sources.len()).sum()
    });
    println!(
        "outbound_events_into_batch: tree_records_per_sec={tree:.0} text_records_per_sec={text:.0} text_over_tree={:.2} map_call_records_per_sec={map_call:.0}",
        text / tree
    );
}

/// Which parts to run: all of them, or only those named on the command line.
struct Parts(Vec<String>);

impl Parts {
    fn from_args() -> Self {
        // `cargo bench` passes `--bench`; only bare words select parts.
        Self(
            std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with('-'))
                .collect(),
        )
    }

    fn run(&self, part: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p == part)
    }
}

fn main() {
    let parts = Parts::from_args();
    let acme_wasm = weft_tests::plugin_bytes("acme-accounts");
    let identity_wasm = weft_tests::plugin_bytes("golden-dedup");
    let naive_wasm = weft_tests::plugin_bytes("naive-abi");
    let records: Vec<Map<String, Json>> = (0..RECORDS).map(company).collect();
    let schema = account_schema();
    let config = Arc::new(plugin_config());

    if parts.run("compile") {
        // Cold compile: a fresh engine with no cache compiles the component with Cranelift.
        let cold_runtime = PluginRuntime::new(RuntimeConfig::default()).expect("engine");
        let started = Instant::now();
        let _ = cold_runtime.load(&acme_wasm).expect("load");
        let cold_compile = started.elapsed();
        // Warm load from the on-disk cache in a new engine (a restarted host).
        let cache = tempfile::tempdir().expect("tempdir");
        let cached = RuntimeConfig {
            cache_dir: Some(cache.path().to_owned()),
            ..RuntimeConfig::default()
        };
        PluginRuntime::new(cached.clone())
            .expect("engine")
            .load(&acme_wasm)
            .expect("load");
        let started = Instant::now();
        let warm = PluginRuntime::new(cached)
            .expect("engine")
            .load(&acme_wasm)
            .expect("load");
        let disk_load = started.elapsed();
        assert!(!warm.was_compiled());
        println!("cold_compile_ms={:.0}", cold_compile.as_secs_f64() * 1e3);
        println!("disk_cache_load_ms={:.1}", disk_load.as_secs_f64() * 1e3);
    }

    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("engine");
    let acme = runtime.load(&acme_wasm).expect("load");
    let spec = CallSpec {
        installation: Arc::from("bench"),
        config: config.clone(),
        limits: CallLimits::default(),
        now_ms: 1_767_225_600_000,
    };

    if parts.run("instantiate") {
        // Instantiation per batch: a fresh sandbox + instance + one call on an empty batch.
        let empty = batch_from_json("company", &[]);
        for _ in 0..100 {
            acme.map_outbound(&spec, &empty).expect("empty call");
        }
        let rounds = 2_000;
        let started = Instant::now();
        for _ in 0..rounds {
            black_box(acme.map_outbound(&spec, &empty).expect("empty call"));
        }
        let instantiate = started.elapsed() / rounds;
        println!(
            "instantiate_and_empty_call_us={:.1}",
            instantiate.as_secs_f64() * 1e6
        );
    }

    if parts.run("abi") {
        // The ABI alone: a trivial copy mapping behind the columnar batch vs per-field strings.
        let identity = runtime.load(&identity_wasm).expect("load");
        let text_records: Vec<Map<String, Json>> = records
            .iter()
            .map(|r| {
                r.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Json::String(v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
                        )
                    })
                    .collect()
            })
            .collect();
        let text_batch = batch_from_json("company", &text_records);
        let guest_text_batch = native::to_guest_batch(&text_records);
        let identity_harness = config
            .iter()
            .fold(weft_guest::testing::Harness::new(), |h, (k, v)| {
                h.config(k, v)
            });
        // The same copy natively (golden-dedup keeps the SDK's default mapping), interleaved
        // with the sandboxed one: what the sandbox costs a plugin that does next to nothing.
        let (columnar, columnar_native) = measure_pair(
            Some(|| {
                let out = identity.map_inbound(&spec, &text_batch).expect("map");
                out.batches.iter().map(|b| b.sources.len()).sum()
            }),
            Some(|| {
                let out =
                    identity_harness.map_inbound::<golden_dedup::GoldenDedup>(&guest_text_batch);
                out.batches.iter().map(|b| b.sources.len()).sum()
            }),
            MEASURE_FOR,
        );
        let naive_runner = naive::Runner::new(runtime.engine(), &naive_wasm);
        let naive_input = naive::to_fields(&text_records);
        let naive = measure(|| naive_runner.map(&naive_input));
        println!(
            "abi_trivial_copy_30_text_fields: columnar_records_per_sec={columnar:.0} naive_records_per_sec={naive:.0} columnar_over_naive={:.2} native_records_per_sec={columnar_native:.0} columnar_wasm_over_native={:.2}",
            columnar / naive,
            columnar_native / columnar
        );
    }

    if parts.run("events") {
        outbound_events(&acme, &spec, &records);
    }

    // Throughput: wasm and native, same logic, same records, measured back to back.
    // Interleaved, so the ratio holds even while the machine's load changes.
    let host_batch = batch_from_json("company", &records);
    let harness = config
        .iter()
        .fold(weft_guest::testing::Harness::new(), |h, (k, v)| {
            h.config(k, v)
        })
        .now(spec.now_ms);
    let guest_batch = native::to_guest_batch(&records);
    let guest_schema = native::to_guest_schema(&schema);
    if let Some(other) = std::env::var_os("WEFT_COMPARE_WASM").filter(|_| parts.run("compare")) {
        compare(&acme, &other, &spec, &schema, &host_batch);
        return;
    }
    if !parts.run("wasm") && !parts.run("native") {
        return;
    }
    // Rounds of the interleaved pair; the round with the median ratio is the result, so a
    // round that another process on the machine disturbed does not move the figure.
    let rounds: Vec<(f64, f64)> = (0..RATIO_ROUNDS)
        .map(|round| {
            let (wasm, native) = measure_pair(
                parts
                    .run("wasm")
                    .then_some(|| wasm_chain(&acme, &spec, &schema, &host_batch)),
                parts
                    .run("native")
                    .then_some(|| native::chain(&harness, &guest_schema, &guest_batch)),
                2 * MEASURE_FOR,
            );
            println!(
                "round={} wasm_records_per_sec={wasm:.0} native_records_per_sec={native:.0} wasm_over_native={:.3}",
                round + 1,
                native / wasm
            );
            (wasm, native)
        })
        .collect();
    let mut by_ratio = rounds;
    by_ratio.sort_by(|a, b| (a.1 / a.0).total_cmp(&(b.1 / b.0)));
    let (wasm, native) = by_ratio[by_ratio.len() / 2];
    println!(
        "wasm_records_per_sec={wasm:.0} native_records_per_sec={native:.0} wasm_over_native={:.2}",
        native / wasm
    );
}
