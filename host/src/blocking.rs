//! Blocking work — a durable commit, an fsync, encoding a page — called from async code
//! that holds the data it needs by reference, so it cannot hand it to `spawn_blocking`.
//!
//! [`in_place`] runs it on the current thread after telling a multi-threaded Tokio runtime
//! that this worker is about to block (`block_in_place`): the runtime hands the worker's
//! other tasks to a fresh worker meanwhile, so one installation's commit never stalls
//! another's requests. On a current-thread runtime, which has no other worker to hand
//! tasks to, the work simply runs.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work`, blocking, without holding up the runtime's other tasks.
pub fn in_place<R>(work: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn other_tasks_run_while_one_blocks_in_place() {
        // One worker: a task that blocks it without `in_place` would stop every other.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let ticks = Arc::new(AtomicU64::new(0));
        runtime.block_on(async {
            let ticker = tokio::spawn({
                let ticks = ticks.clone();
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let during = tokio::spawn({
                let ticks = ticks.clone();
                async move {
                    in_place(|| {
                        let before = ticks.load(Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(300));
                        ticks.load(Ordering::Relaxed) - before
                    })
                }
            })
            .await
            .expect("task");
            ticker.abort();
            assert!(
                during >= 10,
                "the ticker ran {during} times during the block"
            );
        });
    }

    #[test]
    fn on_a_current_thread_runtime_the_work_just_runs() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(runtime.block_on(async { in_place(|| 7) }), 7);
        assert_eq!(in_place(|| 8), 8, "outside a runtime too");
    }
}
