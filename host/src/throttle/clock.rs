//! Time for the governor: what "now" is and how to wait.
//!
//! Owns the [`Clock`] trait and its two implementations: [`SystemClock`] (the wall clock, for
//! production) and [`ScaledClock`] (simulated time running `scale` times faster, so a test can
//! live through a whole customer day in a minute, in step with the emulator's
//! `clock_scale`). Every wait in `throttle` and in the transport's retry loop goes through a
//! clock; nothing here may read the wall clock behind the clock's back, or an accelerated run
//! would mix two timelines.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// A boxed sleep future, so the trait stays object-safe.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The governor's notion of time.
pub trait Clock: Debug + Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
    /// Waits `d` of this clock's time.
    fn sleep(&self, d: Duration) -> Sleep;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Simulated time: starts at `start` and runs `scale` simulated seconds per real second.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    real_start: Instant,
    start: Timestamp,
    scale: f64,
}

impl ScaledClock {
    /// `scale` = simulated seconds per real second (1.0 = real time, 1440 = a day a minute).
    /// A non-finite or non-positive scale falls back to 1.0 rather than freezing time.
    pub fn new(start: Timestamp, scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        ScaledClock {
            real_start: Instant::now(),
            start,
            scale,
        }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let real = self.real_start.elapsed().as_secs_f64();
        let sim = SignedDuration::from_secs_f64(real * self.scale);
        self.start.checked_add(sim).unwrap_or(self.start)
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d.div_f64(self.scale)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scaled_clock_runs_faster() {
        let start = Timestamp::UNIX_EPOCH;
        let c = ScaledClock::new(start, 1000.0);
        c.sleep(Duration::from_secs(20)).await; // 20 ms real
        let elapsed = c.now().duration_since(start).as_secs_f64();
        assert!(elapsed >= 20.0, "{elapsed}");
    }
}
