//! A unit of work that must wait for its quota gives its worker back while it waits.
//!
//! The host's scheduler lends each unit of work (an outbound round, an inbound page) one of
//! a bounded set of workers; the governor decides when each request to the org may go. A
//! round that meets the governor's pacing halfway through — its first calls went, the next
//! must wait seconds or minutes — must not keep a worker the other installations could use
//! all that time. So the scheduler registers what the unit holds for the duration of the
//! unit ([`holding`], a task-local), and every wait of the governor goes through
//! [`pause`]: a wait of at least [`RELEASE_AT_LEAST`] releases the worker first and takes
//! one again (queuing fairly like any other unit) before the request goes.
//!
//! The governor knows nothing of the scheduler but this trait; outside [`holding`] (the
//! one-shot CLI, the transport's own tests, spawned helper tasks) a wait is a plain sleep.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Shorter waits keep the worker: handing it on and queuing again would cost more than the
/// wait, and a worker held for a few milliseconds delays nobody noticeably.
pub const RELEASE_AT_LEAST: Duration = Duration::from_millis(50);

/// What a unit of work holds while it runs, and can give back while it waits.
pub trait HeldWorker: Send + Sync {
    /// Gives the worker back (nothing, if it is not held now).
    fn release(&self);
    /// Takes a worker again, waiting for one (at once, if it is still held).
    fn reacquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

tokio::task_local! {
    static HELD: Arc<dyn HeldWorker>;
}

/// Runs `unit` holding `held`: the governor's waits inside it release and retake it.
pub async fn holding<F: Future>(held: Arc<dyn HeldWorker>, unit: F) -> F::Output {
    HELD.scope(held, unit).await
}

/// Waits `sleep` (which lasts `wait`), without the worker when the wait is long enough to
/// matter and the current task holds one.
pub(crate) async fn pause(wait: Duration, sleep: impl Future<Output = ()>) {
    let held = if wait >= RELEASE_AT_LEAST {
        HELD.try_with(Arc::clone).ok()
    } else {
        None
    };
    match held {
        Some(held) => {
            held.release();
            sleep.await;
            held.reacquire().await;
        }
        None => sleep.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<&'static str>>);

    impl HeldWorker for Log {
        fn release(&self) {
            self.0.lock().expect("log").push("release");
        }

        fn reacquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            self.0.lock().expect("log").push("reacquire");
            Box::pin(std::future::ready(()))
        }
    }

    #[tokio::test]
    async fn a_long_wait_inside_a_unit_releases_and_retakes_its_worker() {
        let log = Arc::new(Log::default());
        holding(log.clone(), async {
            pause(Duration::from_millis(10), async {}).await;
            assert!(
                log.0.lock().expect("log").is_empty(),
                "a short wait keeps it"
            );
            pause(Duration::from_secs(5), async {}).await;
        })
        .await;
        assert_eq!(*log.0.lock().expect("log"), ["release", "reacquire"]);
        // Outside a unit there is nothing to give back.
        pause(Duration::from_secs(5), async {}).await;
        assert_eq!(log.0.lock().expect("log").len(), 2);
    }
}
