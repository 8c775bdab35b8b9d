//! The org-headroom guard: when others have eaten the org's allocation, Weft pauses (and says
//! why) instead of taking the last requests, and resumes once a probe sees room again.

use weft::throttle::{GovernorConfig, Project, ScheduleConfig};
use weft_emulator::EmulatorConfig;

use crate::common::{org, rig_with};

#[tokio::test]
async fn pauses_when_others_ate_the_quota_and_the_request_still_completes() {
    let org = org(EmulatorConfig {
        api_daily_max: 10_000,
        ..Default::default()
    })
    .await;
    let gov = GovernorConfig {
        schedule: ScheduleConfig::constant("UTC", 80.0),
        headroom_probe_secs: 60,
        ..Default::default()
    };
    let r = rig_with(&org, "headroom", gov, crate::common::fast_clock(), |_| {});
    r.client.prime(Project::Incremental).await.expect("prime");
    assert!(!r.governor.is_paused());
    // Another integration burns 95% of the day's allocation.
    org.add_other_usage(9_500);
    r.client
        .limits(Project::Incremental)
        .await
        .expect("learns the org's usage");
    assert!(
        r.governor.is_paused(),
        "under 10% of the org's allocation left"
    );
    let before = crate::common::weft_calls(&org);
    let clock = r.governor.clock().clone();
    let t0 = clock.now();
    // Not dropped: it waits for the next probe slot, then goes.
    r.client
        .limits(Project::Incremental)
        .await
        .expect("probe request");
    assert!(
        clock.now().duration_since(t0).as_secs() >= 55,
        "waited for the probe interval"
    );
    assert_eq!(crate::common::weft_calls(&org), before + 1);
    let s = r.telemetry.installation("headroom").status(clock.now());
    assert_eq!(
        s.throttle_events.get("pause:org_headroom"),
        Some(&1),
        "{:?}",
        s.throttle_events
    );
    assert!(s.throttle.paused);
    assert!(
        s.recent_events
            .iter()
            .any(|e| e.detail.contains("of 10000"))
    );
}
