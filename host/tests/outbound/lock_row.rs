//! `UNABLE_TO_LOCK_ROW` is transient: records that stay locked through the transport's
//! re-sends go to the pipeline's retry schedule and are written in a later round.

use std::time::Duration;

use jiff::Timestamp;
use weft_emulator::FaultConfig;

use crate::common::{
    INSTALLATION, accept, accounts, acme_config, audit, company, event, open_dlq, rig,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_rows_are_retried_and_written() {
    let mut rig = rig(acme_config()).await;
    let now = Timestamp::now();
    let events: Vec<_> = (0..60)
        .map(|i| event(&format!("e{i}"), company(i), now))
        .collect();
    accept(&rig.store, &events);
    // Most writes hit a lock: many records stay locked through all of the transport's
    // re-sends within one call, so they must come back through the retry schedule.
    rig.org.set_faults(FaultConfig {
        lock_row_rate: 0.85,
        ..FaultConfig::default()
    });
    let mut saw_retry = false;
    let started = std::time::Instant::now();
    loop {
        let report = rig.pipeline.run_round().await.expect("round");
        saw_retry |= report.retrying > 0;
        if saw_retry {
            // Let the rest through, so the test does not depend on luck to finish.
            rig.org.set_faults(FaultConfig {
                lock_row_rate: 0.3,
                ..FaultConfig::default()
            });
        }
        let pending = weft::store::Store::pending_events(&*rig.store, INSTALLATION, None, 1)
            .expect("pending");
        if pending.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "still pending: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_retry, "no record needed the retry schedule");
    let locks = rig
        .org
        .stats()
        .faults_injected
        .get("lock_row")
        .copied()
        .unwrap_or(0);
    assert!(locks > 60, "only {locks} lock faults injected");
    assert_eq!(accounts(&rig.org).len(), 60, "every record written");
    assert!(
        open_dlq(&rig.store).is_empty(),
        "{:#?}",
        open_dlq(&rig.store)
    );
    assert_eq!(
        audit(&rig.store).len(),
        60,
        "each written once in the audit log"
    );
}
