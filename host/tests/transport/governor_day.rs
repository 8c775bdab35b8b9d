//! A time-compressed customer day: business-hours schedule, other integrations' load, work
//! always waiting. Weft must stay under the active ceiling in every window and use at least
//! 95% of what each window allows (pacing, not stall).

use std::sync::Arc;
use std::time::Instant;

use futures_util::TryStreamExt;
use jiff::Timestamp;
use jiff::civil::date;
use jiff::tz::TimeZone;
use weft::throttle::{Clock, GovernorConfig, Project, ScaledClock, ScheduleConfig, WindowConfig};
use weft_emulator::EmulatorConfig;

use crate::common::{org, rig_with};

/// Simulated seconds per real second: the day passes in about 48 s.
const SCALE: f64 = 1_800.0;
const DAILY_MAX: u64 = 10_000;
const OTHERS_PER_DAY: u64 = 1_500;
const WORKERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_day_never_exceeds_the_ceiling_and_uses_at_least_95_percent() {
    let tz = TimeZone::get("America/New_York").expect("tz");
    // Monday 2 June 2025, local midnight; start ten simulated minutes earlier for set-up.
    let midnight = date(2025, 6, 2)
        .at(0, 0, 0, 0)
        .to_zoned(tz.clone())
        .expect("zoned")
        .timestamp();
    let day_end = date(2025, 6, 3)
        .at(0, 0, 0, 0)
        .to_zoned(tz.clone())
        .expect("zoned")
        .timestamp();
    let start = midnight - jiff::SignedDuration::from_mins(10);
    let org = org(EmulatorConfig {
        accounts: 50,
        api_daily_max: DAILY_MAX,
        other_integrations_per_day: OTHERS_PER_DAY,
        clock_scale: SCALE,
        clock_start_ms: Some(start.as_millisecond()),
        ..Default::default()
    })
    .await;
    // The governor's clock is the org's clock: same scale, same instant.
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(
        Timestamp::from_millisecond(org.now_ms()).expect("ts"),
        SCALE,
    ));
    let schedule = ScheduleConfig {
        time_zone: "America/New_York".into(),
        default_ceiling_percent: 90.0,
        windows: vec![WindowConfig {
            days: "mon-fri".into(),
            start: "09:00".into(),
            end: "18:00".into(),
            ceiling_percent: 30.0,
        }],
    };
    let gov = GovernorConfig {
        schedule,
        ..Default::default()
    };
    let r = rig_with(&org, "test-day", gov, clock.clone(), |_| {});
    r.client.prime(Project::Incremental).await.expect("prime");
    assert_eq!(r.governor.daily_max(), Some(DAILY_MAX));

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let client = r.client.clone();
            let clock = clock.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while clock.now() < day_end {
                    if w % 2 == 0 {
                        client.limits(Project::Incremental).await.expect("limits");
                    } else {
                        client
                            .query(Project::Backfill, "SELECT Id FROM Account LIMIT 1")
                            .try_collect::<Vec<_>>()
                            .await
                            .expect("query");
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let real_start = Instant::now();
    let mut total = 0;
    for w in workers {
        total += w.await.expect("worker");
    }
    eprintln!(
        "test day: {total} calls by {WORKERS} workers in {:.1} s real",
        real_start.elapsed().as_secs_f64()
    );

    let ledger = r.governor.window_ledger();
    let mut report = String::new();
    report.push_str("| window (America/New_York) | ceiling | allowed | Weft (governor) | Weft (org-observed) | utilisation |\n|---|---|---|---|---|---|\n");
    let mut checked = 0;
    let mut failures = Vec::new();
    for w in ledger
        .iter()
        .filter(|w| w.start >= midnight && w.end <= day_end)
    {
        // The org's own count of calls by client "weft" served inside the window, by the
        // org's clock (its rolling 24 h usage would forget the set-up calls).
        let observed =
            org.client_calls_between("weft", w.start.as_millisecond(), w.end.as_millisecond());
        let util = w.spent as f64 / w.available;
        let label = format!(
            "{} – {}",
            w.start.to_zoned(tz.clone()).strftime("%a %H:%M"),
            w.end.to_zoned(tz.clone()).strftime("%H:%M")
        );
        report.push_str(&format!(
            "| {label} | {:.0}% | {:.1} | {} | {} | {:.1}% |\n",
            w.ceiling * 100.0,
            w.budget,
            w.spent,
            observed,
            util * 100.0
        ));
        if w.spent as f64 > w.budget {
            failures.push(format!(
                "{label}: spent {} over the ceiling's {:.1}",
                w.spent, w.budget
            ));
        }
        if util < 0.95 {
            failures.push(format!(
                "{label}: only {:.1}% of the allowed budget used",
                util * 100.0
            ));
        }
        // The governor counts a call when it takes the token, the org when it serves it, so
        // a request in flight at a window edge can land on either side. At most one request
        // per worker is in flight, and on a loaded machine one can take tens of simulated
        // seconds to be served: allow one per worker at each edge, no more.
        let in_flight = WORKERS as f64;
        if observed as f64 > w.budget + in_flight
            || (observed as f64) < 0.95 * w.available - in_flight
        {
            failures.push(format!(
                "{label}: org saw {observed} for {:.1} allowed",
                w.budget
            ));
        }
        checked += 1;
    }
    assert_eq!(
        checked, 3,
        "00:00–09:00, 09:00–18:00, 18:00–24:00: {ledger:?}"
    );
    let status = r.telemetry.installation("test-day").status(clock.now());
    let max_over: f64 = ledger
        .iter()
        .map(|w| w.spent as f64 - w.budget)
        .fold(f64::MIN, f64::max);
    report.push_str(&format!(
        "\nmax (spent − allowed) over all windows: {max_over:.1} requests; peak utilisation (24 h) {:.2}; org remaining at the end {} of {DAILY_MAX}; pauses {}\n",
        status.peak_utilisation_24h,
        DAILY_MAX.saturating_sub(org.api_usage().0),
        status.throttle_events.iter().filter(|(k, _)| k.starts_with("pause")).map(|(_, v)| v).sum::<u64>()
    ));
    eprintln!("{report}");
    assert!(failures.is_empty(), "{failures:#?}");
}
