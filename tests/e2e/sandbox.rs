//! The sandbox holds: each hostile behaviour fails its own batch with the right typed
//! error while another installation on the same engine keeps succeeding.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use weft::plugin::{
    CallLimits, InstalledPlugins, PluginConfig, PluginError, PluginRuntime, QuarantinePolicy,
    RuntimeConfig, batch_from_json,
};
use weft_tests::plugin_bytes;

fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig::default()).expect("engine")
}

fn accounts(n: usize) -> weft::plugin::Batch {
    let records: Vec<_> = (0..n)
        .map(|i| {
            json!({"Id": format!("001{i:015}"), "Name": format!("Account {i}"), "Phone": "0123"})
                .as_object()
                .cloned()
                .expect("object")
        })
        .collect();
    batch_from_json("Account", &records)
}

fn hostile_config(mode: &str) -> PluginConfig {
    // Only the looping plugin should ever meet its budget: the others get a budget so large
    // that a heavily loaded CI machine cannot turn their failure into a timeout.
    let time_budget = if mode == "loop" {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(30)
    };
    PluginConfig {
        values: BTreeMap::from([("mode".to_owned(), mode.to_owned())]),
        limits: CallLimits {
            time_budget,
            ..CallLimits::default()
        },
    }
}

fn assert_kind(result: Result<impl std::fmt::Debug, PluginError>, expected: &str) {
    match result {
        Err(error) => assert_eq!(error.kind(), expected, "got {error}"),
        Ok(output) => panic!("expected a {expected} failure, got {output:?}"),
    }
}

#[test]
fn each_hostile_mode_fails_alone_while_a_neighbour_keeps_working() {
    let runtime = runtime();
    let hostile = runtime
        .load(&plugin_bytes("hostile"))
        .expect("load hostile");
    let healthy = runtime
        .load(&plugin_bytes("golden-dedup"))
        .expect("load golden-dedup");
    let plugins = Arc::new(InstalledPlugins::new(QuarantinePolicy { strikes: 1000 }));
    plugins.install("neighbour", healthy, PluginConfig::default());

    // The neighbour calls continuously on other threads for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour_calls = Arc::new(AtomicUsize::new(0));
    let neighbours: Vec<_> = (0..2)
        .map(|_| {
            let (plugins, stop, calls) = (plugins.clone(), stop.clone(), neighbour_calls.clone());
            std::thread::spawn(move || {
                let input = accounts(200);
                while !stop.load(Ordering::Relaxed) {
                    let out = plugins
                        .map_inbound("neighbour", &input)
                        .expect("neighbour call");
                    assert!(out.errors.is_empty());
                    assert_eq!(out.batches[0].sources.len(), 200);
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let input = accounts(10);
    // (mode, what a stage call reports, what a chain call reports). In a chain the 48 MiB
    // that `oversized` maps is then coerced inside the same sandbox, whose copy of it
    // exhausts the 64 MiB memory cap before any output can leave.
    let cases = [
        ("loop", "timeout", "timeout"),
        ("memory", "memory", "memory"),
        ("recursion", "stack-overflow", "stack-overflow"),
        ("panic", "panic", "panic"),
        ("oversized", "output-too-large", "memory"),
        ("wrong-count", "malformed-output", "malformed-output"),
        ("bad-source", "malformed-output", "malformed-output"),
    ];
    for (mode, kind, chain_kind) in cases {
        let installation = format!("hostile-{mode}");
        plugins.install(&installation, hostile.clone(), hostile_config(mode));
        assert_kind(plugins.map_inbound(&installation, &input), kind);
        assert_kind(plugins.map_outbound(&installation, &input), kind);
        assert_kind(
            plugins.dedup_keys(&installation, weft::plugin::Direction::Inbound, &input),
            kind,
        );
        assert_kind(
            plugins.chain(
                &installation,
                weft::plugin::Direction::Inbound,
                &input,
                &[],
                true,
            ),
            chain_kind,
        );
    }
    // Mode `ok` on the same compiled component still works after all of that.
    plugins.install("hostile-ok", hostile, hostile_config("ok"));
    let ok = plugins.map_inbound("hostile-ok", &input).expect("ok mode");
    assert_eq!(ok.batches[0], input);

    stop.store(true, Ordering::Relaxed);
    for thread in neighbours {
        thread.join().expect("neighbour thread never fails");
    }
    assert!(neighbour_calls.load(Ordering::Relaxed) > 0);
}

#[test]
fn a_panic_reports_the_guest_message() {
    let runtime = runtime();
    let hostile = runtime.load(&plugin_bytes("hostile")).expect("load");
    let plugins = InstalledPlugins::new(QuarantinePolicy::default());
    plugins.install("p", hostile, hostile_config("panic"));
    match plugins.map_inbound("p", &accounts(1)) {
        Err(PluginError::Panic { message }) => {
            assert!(message.contains("panicked at"), "{message}")
        }
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[test]
fn a_plugin_that_keeps_failing_is_quarantined_until_replaced() {
    let runtime = runtime();
    let hostile = runtime.load(&plugin_bytes("hostile")).expect("load");
    let plugins = InstalledPlugins::new(QuarantinePolicy { strikes: 3 });
    plugins.install("acme", hostile.clone(), hostile_config("panic"));
    let input = accounts(3);
    for _ in 0..3 {
        assert_kind(plugins.map_inbound("acme", &input), "panic");
    }
    assert_kind(plugins.map_inbound("acme", &input), "quarantined");
    let status = plugins.status("acme").expect("installed");
    assert!(status.quarantined && status.strikes == 3);

    // A fixed plugin (here: the same component configured to behave) lifts it, with no
    // restart of anything.
    plugins.install("acme", hostile, hostile_config("ok"));
    assert!(plugins.map_inbound("acme", &input).is_ok());
    assert!(!plugins.status("acme").expect("installed").quarantined);
}

#[test]
fn a_success_resets_the_strike_count() {
    let runtime = runtime();
    let hostile = runtime.load(&plugin_bytes("hostile")).expect("load");
    let plugins = InstalledPlugins::new(QuarantinePolicy { strikes: 2 });
    plugins.install("acme", hostile.clone(), hostile_config("panic"));
    assert_kind(plugins.map_inbound("acme", &accounts(1)), "panic");
    plugins.install("acme", hostile, hostile_config("ok"));
    assert!(plugins.map_inbound("acme", &accounts(1)).is_ok());
    assert_eq!(plugins.status("acme").expect("installed").strikes, 0);
}

#[test]
fn hot_swap_takes_effect_on_the_next_call() {
    let runtime = runtime();
    let plugins = InstalledPlugins::new(QuarantinePolicy::default());
    let dedup = runtime.load(&plugin_bytes("golden-dedup")).expect("load");
    let acme = runtime.load(&plugin_bytes("acme-accounts")).expect("load");
    let (dedup_hash, acme_hash) = (dedup.hash().to_owned(), acme.hash().to_owned());
    assert_ne!(dedup_hash, acme_hash);
    plugins.install("inst", dedup, PluginConfig::default());
    assert_eq!(plugins.status("inst").expect("installed").hash, dedup_hash);
    let replaced = plugins.install("inst", acme, PluginConfig::default());
    assert_eq!(replaced.as_deref(), Some(dedup_hash.as_str()));
    assert_eq!(plugins.status("inst").expect("installed").hash, acme_hash);
}

#[test]
fn compiled_plugins_are_reused_from_the_disk_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..RuntimeConfig::default()
    };
    let bytes = plugin_bytes("golden-dedup");
    let first = PluginRuntime::new(config.clone())
        .expect("engine")
        .load(&bytes)
        .expect("load");
    assert!(first.was_compiled());
    // A second host process (a new engine) finds the artifact on disk.
    let second_runtime = PluginRuntime::new(config).expect("engine");
    let second = second_runtime.load(&bytes).expect("load");
    assert!(!second.was_compiled());
    let plugins = InstalledPlugins::new(QuarantinePolicy::default());
    plugins.install("i", second, PluginConfig::default());
    assert!(plugins.map_inbound("i", &accounts(5)).is_ok());
}

#[test]
fn components_that_import_the_network_are_refused() {
    let component = wat::parse_str(r#"(component (import "wasi:sockets/tcp@0.2.6" (instance)))"#)
        .expect("valid component text");
    let error = runtime().load(&component).err().expect("refused");
    assert!(
        matches!(error, weft::plugin::LoadError::ForbiddenImport { .. }),
        "{error}"
    );
}

#[test]
fn garbage_is_not_a_component() {
    let error = runtime().load(b"not wasm at all").err().expect("refused");
    assert!(
        matches!(error, weft::plugin::LoadError::Invalid(_)),
        "{error}"
    );
}

fn spec(mode: &str) -> weft::plugin::CallSpec {
    let config = hostile_config(mode);
    weft::plugin::CallSpec {
        installation: Arc::from("session"),
        config: Arc::new(config.values),
        limits: config.limits,
        now_ms: 0,
    }
}

#[test]
fn a_batch_session_keeps_the_sandbox_guarantees_of_single_calls() {
    use weft::plugin::{Direction, ObjectSchema};
    let runtime = runtime();
    let hostile = runtime.load(&plugin_bytes("hostile")).expect("load");
    let input = accounts(5);
    let schema = ObjectSchema {
        name: "Account".into(),
        fields: Vec::new(),
    };
    // Each failure is typed as it is for a single call, and the instance is never entered
    // again after it: the next stage of the batch fails without running.
    for (mode, kind) in [
        ("loop", "timeout"),
        ("memory", "memory"),
        ("panic", "panic"),
        ("recursion", "stack-overflow"),
    ] {
        let spec = spec(mode);
        let session = hostile.batch_session(&spec).expect("instantiate");
        assert_kind(session.map_inbound(&input), kind);
        let next = session.coerce(Direction::Inbound, &schema, &input);
        assert!(next.is_err(), "{mode}: a failed instance was entered again");
    }
    // One sandbox serves every stage of a healthy batch, and a run of batches each gets
    // a fresh one.
    let spec = spec("ok");
    for _ in 0..3 {
        let session = hostile.batch_session(&spec).expect("instantiate");
        let mapped = session.map_inbound(&input).expect("map");
        let coerced = session
            .coerce(Direction::Inbound, &schema, &mapped.batches[0])
            .expect("coerce");
        session
            .dedup_keys(Direction::Inbound, &coerced.batches[0])
            .expect("dedup");
        assert_eq!(coerced.batches[0], input);
    }
    // run_chain makes one chain call; a failure of the call as a whole is reported at the
    // chain's first stage.
    let spec = self::spec("panic");
    let error = weft::plugin::run_chain(&(&hostile, &spec), Direction::Inbound, &input, &[])
        .expect_err("a panicking plugin fails the chain");
    assert_eq!(error.stage, weft::plugin::Stage::Map);
    assert_eq!(error.error.kind(), "panic");
}

/// A multi-tenant host reuses pooled memory between calls: whatever one installation's
/// batch leaves in its sandbox must be gone before the next call, anyone's, starts.
#[test]
fn no_call_sees_what_an_earlier_call_left_in_its_memory() {
    // One slot, so every call reuses the memory of the one before it.
    let runtime = PluginRuntime::new(RuntimeConfig {
        max_concurrent_calls: 1,
        ..RuntimeConfig::default()
    })
    .expect("engine");
    let hostile = runtime.load(&plugin_bytes("hostile")).expect("load");
    let plugins = InstalledPlugins::new(QuarantinePolicy { strikes: 1000 });
    let with = |mode: &str, extra: &[(&str, &str)]| {
        let mut config = hostile_config(mode);
        config
            .values
            .insert("marker".into(), "tenant-a:4f1c9e2b7d".into());
        for (key, value) in extra {
            config.values.insert((*key).into(), (*value).into());
        }
        config
    };
    let input = accounts(20);

    // The scan works: planted in the same call, it is found.
    plugins.install(
        "self-test",
        hostile.clone(),
        with("probe", &[("probe.self-test", "true")]),
    );
    match plugins.map_inbound("self-test", &input) {
        Err(PluginError::Panic { message }) => {
            assert!(message.contains("found planted data"), "{message}")
        }
        other => panic!("the self-test must find its own marker, got {other:?}"),
    }

    // Within the initial memory, past it, and past the pages kept resident between calls.
    plugins.install("tenant-b", hostile.clone(), with("probe", &[]));
    for mib in ["1", "6", "12"] {
        let tenant_a = format!("tenant-a-{mib}");
        plugins.install(
            &tenant_a,
            hostile.clone(),
            with("plant", &[("plant.mib", mib)]),
        );
        for _ in 0..3 {
            plugins
                .map_inbound(&tenant_a, &input)
                .expect("planting succeeds");
            let probed = plugins.map_inbound("tenant-b", &input);
            assert!(
                probed.is_ok(),
                "after {mib} MiB planted, the next call saw it: {probed:?}"
            );
        }
    }
}

/// Regression: `std::thread::sleep` in a plugin blocked the host thread in WASI's `poll`
/// for as long as it asked (20 s measured) while holding its pool slot, and came back as
/// an ordinary 500 ms timeout. Now a sleep past the budget is a timeout at once, the slot
/// is free for the next tenant straight away, and the strikes quarantine the plugin.
#[test]
fn a_sleeping_plugin_times_out_at_once_and_frees_its_slot() {
    // One slot: a sleeping call that held it would hold up the neighbour behind it.
    let runtime = PluginRuntime::new(RuntimeConfig {
        max_concurrent_calls: 1,
        ..RuntimeConfig::default()
    })
    .expect("engine");
    let hostile = runtime.load(&plugin_bytes("hostile")).expect("load");
    let healthy = runtime.load(&plugin_bytes("golden-dedup")).expect("load");
    let plugins = InstalledPlugins::new(QuarantinePolicy { strikes: 3 });
    let sleeping = |millis: &str, budget: Duration| PluginConfig {
        values: BTreeMap::from([
            ("mode".to_owned(), "sleep".to_owned()),
            ("millis".to_owned(), millis.to_owned()),
        ]),
        limits: CallLimits {
            time_budget: budget,
            ..CallLimits::default()
        },
    };
    plugins.install(
        "sleeper",
        hostile.clone(),
        sleeping("20000", Duration::from_millis(500)),
    );
    plugins.install("neighbour", healthy, PluginConfig::default());
    let input = accounts(3);
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_kind(plugins.map_inbound("sleeper", &input), "timeout");
        plugins
            .map_inbound("neighbour", &input)
            .expect("the neighbour gets the slot");
    }
    assert_kind(
        plugins.chain(
            "sleeper",
            weft::plugin::Direction::Inbound,
            &input,
            &[],
            true,
        ),
        "quarantined",
    );
    // Generous for a loaded machine; the sleeps asked for a minute in all.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "three 20 s sleeps took {:?}",
        started.elapsed()
    );

    // A sleep within the budget is charged, not waited for: the call succeeds at once.
    plugins.install(
        "napper",
        hostile,
        sleeping("20000", Duration::from_secs(30)),
    );
    let started = std::time::Instant::now();
    let out = plugins
        .map_inbound("napper", &input)
        .expect("within its budget");
    assert_eq!(out.batches[0], input);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Regression: one input record could become 10⁶ output rows within the 16 MiB wire cap,
/// and text values sharing one span decode to a copy each, so what the host decoded was
/// unbounded. Rows, values and decoded bytes are now capped before anything is decoded,
/// and an installation caps how many records one record may become.
#[test]
fn output_is_capped_as_it_decodes_and_by_the_installation_fanout() {
    let runtime = runtime();
    let hostile = runtime.load(&plugin_bytes("hostile")).expect("load");
    let plugins = InstalledPlugins::new(QuarantinePolicy { strikes: 1000 });
    let fanout = |settings: &[(&str, &str)], max_fanout: usize| {
        let mut values = BTreeMap::from([("mode".to_owned(), "fanout".to_owned())]);
        for (k, v) in settings {
            values.insert((*k).to_owned(), (*v).to_owned());
        }
        PluginConfig {
            values,
            limits: CallLimits {
                max_fanout,
                time_budget: Duration::from_secs(30),
                ..CallLimits::default()
            },
        }
    };
    let one = accounts(1);
    // (settings, max fan-out, expected kind, what the error names)
    type Case<'a> = (&'a [(&'a str, &'a str)], usize, &'a str, &'a str);
    let cases: [Case; 5] = [
        // 10⁶ rows of one integer: 13 MB on the wire.
        (&[], 100_000, "output-too-large", "rows"),
        // 1,000 rows × 3,000 fields: 27 MB on the wire, 3 × 10⁶ values.
        (
            &[("fanout.rows", "1000"), ("fanout.fields", "3000")],
            100_000,
            "output-too-large",
            "values",
        ),
        // 1,000 values each spanning the same 64 KiB: 64 KiB on the wire, 64 MiB decoded.
        (
            &[("fanout.rows", "1000"), ("fanout.text-kib", "64")],
            100_000,
            "output-too-large",
            "bytes",
        ),
        (
            &[("fanout.rows", "101")],
            100,
            "fanout-exceeded",
            "plugin.max_fanout",
        ),
        (&[("fanout.rows", "3")], 2, "fanout-exceeded", "allows 2"),
    ];
    for (settings, max_fanout, kind, names) in cases {
        plugins.install("fan", hostile.clone(), fanout(settings, max_fanout));
        for result in [
            plugins.map_inbound("fan", &one).map(drop),
            plugins
                .chain("fan", weft::plugin::Direction::Inbound, &one, &[], true)
                .map(drop),
        ] {
            match result {
                Err(error) => {
                    assert_eq!(error.kind(), kind, "{settings:?}: {error}");
                    assert!(error.to_string().contains(names), "{settings:?}: {error}");
                }
                Ok(()) => panic!("{settings:?}: expected {kind}"),
            }
        }
    }
    // Within the caps the same plugin works, and both codes are distinct DLQ codes.
    plugins.install("fan", hostile, fanout(&[("fanout.rows", "2")], 2));
    let out = plugins
        .map_inbound("fan", &accounts(3))
        .expect("within the cap");
    assert_eq!(out.batches[0].sources, vec![0, 0, 1, 1, 2, 2]);
    let exceeded = PluginError::FanoutExceeded {
        record: 0,
        rows: 3,
        cap: 2,
    };
    assert_eq!(exceeded.dlq_code(), "PLUGIN_FANOUT_EXCEEDED");
    let too_large = PluginError::OutputTooLarge {
        measure: weft::plugin::OutputMeasure::Rows,
        count: 2,
        cap: 1,
    };
    assert_eq!(too_large.dlq_code(), "PLUGIN_OUTPUT_TOO_LARGE");
}
