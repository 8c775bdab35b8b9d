//! Retry attempts are durable: an event that keeps failing transiently reaches the DLQ
//! after `retry.max_attempts` rounds in total, however many times the host restarts in
//! between — not `max_attempts` rounds per process.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use weft::outbound::{OutboundConfig, Pipeline, RetryConfig};
use weft::plugin::InstalledPlugins;
use weft::store::{EventState, RedbStore, Store};
use weft_emulator::{EmulatorHandle, FaultConfig};

use crate::common::{
    INSTALLATION, accept, acme_config, acme_org, acme_plugins, client, company, event, open_dlq,
};

const MAX_ATTEMPTS: u32 = 4;

fn open(
    path: &std::path::Path,
    org: &EmulatorHandle,
    plugins: &Arc<InstalledPlugins>,
) -> (Arc<RedbStore>, Pipeline) {
    let store = Arc::new(RedbStore::open(path).expect("store"));
    let config = OutboundConfig {
        retry: RetryConfig {
            max_attempts: MAX_ATTEMPTS,
            base_ms: 20,
            max_ms: 50,
        },
        ..acme_config()
    };
    let pipeline = Pipeline::new(
        INSTALLATION,
        config,
        client(org),
        plugins.clone(),
        store.clone() as Arc<dyn Store>,
    );
    (store, pipeline)
}

/// Runs rounds until `stop` says so; returns the rounds in which the event was tried.
async fn tried_rounds(
    pipeline: &mut Pipeline,
    stop: impl Fn(u32, &weft::outbound::RoundReport) -> bool,
) -> u32 {
    let started = std::time::Instant::now();
    let mut tried = 0;
    loop {
        let report = pipeline.run_round().await.expect("round");
        if report.retrying + report.dead_lettered > 0 {
            tried += 1;
        }
        assert_eq!(report.done, 0, "the row is locked; nothing can be written");
        if stop(tried, &report) {
            return tried;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no end after {tried} tries: {report:?}"
        );
        if report.taken == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_record_reaches_the_dlq_after_max_attempts_in_total_across_a_restart() {
    let org = acme_org().await;
    let plugins = acme_plugins();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weft.redb");
    // Every write finds the row locked, through every re-send: a poison record.
    org.set_faults(FaultConfig {
        lock_row_rate: 1.0,
        ..FaultConfig::default()
    });

    let (store, mut pipeline) = open(&path, &org, &plugins);
    accept(&store, &[event("locked", company(3), Timestamp::now())]);
    let first = tried_rounds(&mut pipeline, |tried, _| tried == 2).await;
    assert_eq!(first, 2);
    let states = store.retry_states(INSTALLATION).expect("retry states");
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0].1.attempts, 2);
    assert_eq!(
        states[0].1.keys,
        [("Account".to_owned(), "C-00003".to_owned())]
    );
    // The host stops; a new one opens the same file.
    drop(pipeline);
    drop(store);

    let (store, mut pipeline) = open(&path, &org, &plugins);
    let second = tried_rounds(&mut pipeline, |_, report| report.dead_lettered > 0).await;
    assert_eq!(
        first + second,
        MAX_ATTEMPTS,
        "the restarted host started counting from zero again"
    );
    let dlq = open_dlq(&store);
    assert_eq!(dlq.len(), 1, "{dlq:#?}");
    assert_eq!(dlq[0].error_code, "UNABLE_TO_LOCK_ROW");
    assert!(
        dlq[0]
            .message
            .starts_with(&format!("still failing after {MAX_ATTEMPTS} rounds")),
        "{}",
        dlq[0].message
    );
    let status = store
        .event_status(INSTALLATION, "locked")
        .expect("status")
        .expect("known");
    assert_eq!(status.state, EventState::Dlq);
    assert!(
        store
            .retry_states(INSTALLATION)
            .expect("retry states")
            .is_empty(),
        "the retry state leaves with the event"
    );
}
