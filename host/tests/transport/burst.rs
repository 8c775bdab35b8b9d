//! A short job runs at the org's speed: the pacing bucket holds a share of the window's
//! budget, so a few hundred calls go without a single pacing wait, and the window's spend
//! still stays under its ceiling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use weft::throttle::{Clock, GovernorConfig, Project, ScaledClock, clock::Sleep};
use weft_emulator::EmulatorConfig;

use crate::common::{org, rig_with, weft_calls};

/// Real time, counting every wait the governor or the transport asks for.
#[derive(Debug)]
struct CountingClock {
    inner: ScaledClock,
    waited_us: AtomicU64,
    waits: AtomicU64,
}

impl Clock for CountingClock {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waited_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.inner.sleep(d)
    }
}

const CALLS: u64 = 500;

/// 21:00 UTC today: the default schedule's day-long window, 87.5% gone.
fn late_today() -> Timestamp {
    let midnight = Timestamp::now().as_second().div_euclid(86_400) * 86_400;
    Timestamp::from_second(midnight + 21 * 3_600).expect("a time today")
}

#[tokio::test]
async fn a_short_job_runs_without_pacing_waits_and_under_the_ceiling() {
    // 50,000 a day at the default 80%: a 40,000-call day, a 2% bucket of 800 calls. The
    // governor starts on the assumed 15,000 (a 250-call bucket) and learns 50,000 from the
    // first response; the bucket grows with it.
    let org = org(EmulatorConfig {
        accounts: 5,
        api_daily_max: 50_000,
        ..Default::default()
    })
    .await;
    let clock = Arc::new(CountingClock {
        // Late in the UTC day, as a host started in the evening sees it: the pacer presumes
        // the 21 hours it did not see spent, and the bucket must still hold the whole job.
        inner: ScaledClock::new(late_today(), 1.0),
        waited_us: AtomicU64::new(0),
        waits: AtomicU64::new(0),
    });
    let r = rig_with(
        &org,
        "short-job",
        GovernorConfig::default(),
        clock.clone(),
        |_| {},
    );
    let started = Instant::now();
    for _ in 0..CALLS {
        r.client.limits(Project::Incremental).await.expect("limits");
    }
    let took = started.elapsed();
    let waits = clock.waits.load(Ordering::Relaxed);
    let waited = Duration::from_micros(clock.waited_us.load(Ordering::Relaxed));
    eprintln!("short job: {CALLS} calls in {took:?}; {waits} waits, {waited:?} waited");
    assert_eq!(r.governor.daily_max(), Some(50_000));
    assert_eq!(waits, 0, "no call waited on pacing ({waited:?} in all)");
    assert!(weft_calls(&org) >= CALLS);
    let ledger = r.governor.window_ledger();
    let w = ledger.last().expect("a window");
    assert!(w.spent as f64 <= w.budget, "{w:?}");
    assert!(w.spent >= CALLS, "{w:?}");
}
