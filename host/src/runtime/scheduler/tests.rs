use std::future::Future;
use std::sync::{Arc, Mutex};

use super::*;

fn pool(workers: usize, per_installation: usize) -> Arc<Scheduler> {
    Scheduler::new(SchedulerConfig {
        workers,
        per_installation,
    })
}

#[tokio::test]
async fn turns_are_bounded_in_all_and_per_installation() {
    let scheduler = pool(3, 2);
    let a1 = scheduler.turn("a").await;
    let a2 = scheduler.turn("a").await;
    // A third unit of `a` waits although a worker is free: `a` is at its cap.
    let waiting_a = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.turn("a").await }
    });
    tokio::task::yield_now().await;
    assert_eq!(scheduler.busy(), 2);
    let b1 = scheduler.turn("b").await;
    assert_eq!(scheduler.busy(), 3, "the free worker went to b");
    drop(a1);
    let a3 = waiting_a.await.expect("task");
    assert_eq!(scheduler.busy(), 3);
    drop((a2, a3, b1));
    assert_eq!(scheduler.busy(), 0);
}

#[tokio::test]
async fn installations_in_line_take_turns_whatever_their_backlog() {
    let scheduler = pool(1, 1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let first = scheduler.turn("big").await;
    let mut units = Vec::new();
    // The big tenant queues 50 units, then a small tenant queues one.
    for i in 0..50 {
        units.push(tokio::spawn({
            let (scheduler, order) = (scheduler.clone(), order.clone());
            async move {
                let _turn = scheduler.turn("big").await;
                order.lock().unwrap().push(format!("big{i}"));
                tokio::task::yield_now().await;
            }
        }));
        tokio::task::yield_now().await;
    }
    units.push(tokio::spawn({
        let (scheduler, order) = (scheduler.clone(), order.clone());
        async move {
            let _turn = scheduler.turn("small").await;
            order.lock().unwrap().push("small".to_owned());
        }
    }));
    tokio::task::yield_now().await;
    drop(first);
    for unit in units {
        unit.await.expect("unit");
    }
    let order = order.lock().unwrap().clone();
    let small = order.iter().position(|u| u == "small").expect("small ran");
    assert!(
        small <= 1,
        "the small tenant waited for {small} of big's units: {order:?}"
    );
    assert_eq!(order.len(), 51);
    assert_eq!(scheduler.busy(), 0);
}

#[tokio::test]
async fn a_unit_dropped_while_waiting_gives_its_turn_to_the_next() {
    let scheduler = pool(1, 1);
    let held = scheduler.turn("a").await;
    let gone = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.turn("b").await }
    });
    tokio::task::yield_now().await;
    gone.abort();
    let _ = gone.await;
    let next = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.turn("c").await }
    });
    tokio::task::yield_now().await;
    drop(held);
    let c = next.await.expect("c got the turn");
    assert_eq!(scheduler.busy(), 1);
    drop(c);
    assert_eq!(scheduler.busy(), 0);
    assert_eq!(scheduler.stats().turns, 2);
}

#[test]
fn a_turn_sent_to_a_unit_that_gave_up_comes_back() {
    let scheduler = pool(1, 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let held = rt.block_on(scheduler.turn("a"));
    // Poll b's turn once so it is in line, then grant it and drop it unclaimed.
    let mut b = Box::pin(scheduler.turn("b"));
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(b.as_mut().poll(&mut cx).is_pending());
    drop(held);
    assert_eq!(scheduler.busy(), 1, "the turn was sent to b");
    drop(b);
    assert_eq!(scheduler.busy(), 0, "b never took it up, so it came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_waiting_on_its_governor_gives_its_worker_to_another_installation() {
    use crate::telemetry::InstallationTelemetry;
    use crate::throttle::{Governor, GovernorConfig, Project, ScaledClock, ScheduleConfig};
    let mut settings = GovernorConfig {
        burst_share: 0.0,
        burst_min_calls: 1,
        ..Default::default()
    };
    // 86,400 a day at 1%: one request every 100 s once the one-call bucket is spent; the
    // clock runs 50× fast, so the second request of the round waits about 2 s.
    settings.schedule = ScheduleConfig::constant("UTC", 1.0);
    let clock = Arc::new(ScaledClock::new(
        "2025-06-02T00:00:00Z".parse().expect("ts"),
        50.0,
    ));
    let governor = Governor::new(
        settings.validate().expect("valid"),
        clock,
        Arc::new(InstallationTelemetry::new("a")),
    );
    governor.observe_usage(0, 86_400);

    let scheduler = pool(1, 1);
    let turn = scheduler.turn("a").await;
    let round = tokio::spawn(async move {
        turn.run(async {
            governor
                .admit(Project::Outbound)
                .await
                .expect("admitted")
                .success();
            governor
                .admit(Project::Outbound)
                .await
                .expect("admitted")
                .success();
        })
        .await
    });
    // While `a` waits for its second request, the one worker is `b`'s.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let b = tokio::time::timeout(std::time::Duration::from_secs(1), scheduler.turn("b"))
        .await
        .expect("b runs while a waits on its governor");
    assert_eq!(scheduler.busy(), 1);
    assert!(!round.is_finished(), "a is still waiting for its quota");
    drop(b);
    // `a` takes a worker again before its request goes, and frees it when the round ends.
    round.await.expect("round");
    assert_eq!(scheduler.busy(), 0);
}
