//! The clocks a plugin sees, and why waiting on one never holds a host thread.
//!
//! Plugins are deterministic: the wall clock is frozen at the batch's `now`, and the
//! monotonic clock moves only when the plugin itself sleeps. WASI's own
//! `monotonic-clock.subscribe-duration`/`subscribe-instant` hand out a pollable backed by
//! a real Tokio timer, and `wasi:io/poll` (`poll`, `pollable.block`) on it parks the
//! calling host thread for as long as the guest asked — in host code, where epoch
//! interruption cannot reach it. Rust's `std::thread::sleep` is exactly that call, so a
//! plugin could hold its pool slot and worker for as long as it liked and come back as an
//! ordinary 500 ms timeout.
//!
//! This module replaces those imports. A subscription is ready at once and the time it
//! asked for is charged to the call's execution budget as if it had passed (the monotonic
//! clock advances by it). A subscription that would take the call past its budget traps
//! the call at once; the host reports that as a timeout, like any other overrun, so it
//! counts towards quarantine. Streams are the only other pollables a plugin can reach
//! (stdin is closed, stdout/stderr are memory pipes), and they are always ready, so no
//! `wasi:io/poll` call can block.
//!
//! It must never block and never let a plugin observe real time.

use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The wall clock frozen at the batch's `now`, and a monotonic clock that never moves on
/// its own. Installed in the WASI context for completeness; the `monotonic-clock`
/// interface plugins import is [`SandboxClock`].
pub(super) struct FrozenClock {
    pub since_epoch: Duration,
}

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.since_epoch
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// How much of one call's execution budget is gone: the wall time since the call started
/// plus every sleep the plugin asked for.
#[derive(Debug)]
pub(super) struct CallClock {
    budget: Duration,
    started: Instant,
    slept: Duration,
    /// What the plugin's monotonic clock reads: the sum of its sleeps in this sandbox, so
    /// it never goes backwards across the calls of one batch.
    monotonic_ns: u64,
    /// Set when a sleep would have overrun the budget, so the resulting trap is reported
    /// as the timeout it is.
    pub overran: bool,
}

impl CallClock {
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            started: Instant::now(),
            slept: Duration::ZERO,
            monotonic_ns: 0,
            overran: false,
        }
    }

    /// Starts a call with the whole budget, counted from now.
    pub fn start_call(&mut self, budget: Duration) {
        self.budget = budget;
        self.started = Instant::now();
        self.slept = Duration::ZERO;
        self.overran = false;
    }

    /// Charges a sleep of `nanos` to the budget, or refuses it if the call would overrun.
    fn sleep(&mut self, nanos: u64) -> wasmtime::Result<()> {
        let asked = Duration::from_nanos(nanos);
        let spent = self
            .started
            .elapsed()
            .saturating_add(self.slept)
            .saturating_add(asked);
        if spent > self.budget {
            self.overran = true;
            return Err(wasmtime::Error::msg(format!(
                "the plugin asked to sleep {asked:?}, past its {:?} execution budget",
                self.budget
            )));
        }
        self.slept += asked;
        self.monotonic_ns = self.monotonic_ns.saturating_add(nanos);
        Ok(())
    }
}

/// The `wasi:clocks/monotonic-clock` a plugin imports: one sandbox's resource table and
/// call clock.
pub(super) struct SandboxClock<'a> {
    pub table: &'a mut ResourceTable,
    pub clock: &'a mut CallClock,
}

/// Names [`SandboxClock`] to the linker.
pub(super) struct SandboxClocks;

impl HasData for SandboxClocks {
    type Data<'a> = SandboxClock<'a>;
}

impl SandboxClock<'_> {
    fn subscribe(&mut self, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.clock.sleep(nanos)?;
        let elapsed = self.table.push(Elapsed)?;
        subscribe(self.table, elapsed)
    }
}

impl monotonic_clock::Host for SandboxClock<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.clock.monotonic_ns)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.subscribe(when.saturating_sub(self.clock.monotonic_ns))
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.subscribe(duration)
    }
}

/// A wait that is over as soon as it is asked for: its time was charged when it was made.
struct Elapsed;

impl Pollable for Elapsed {
    fn ready<'a, 'b>(
        &'a mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_are_charged_to_the_budget_and_refused_past_it() {
        let mut clock = CallClock::new(Duration::from_secs(10));
        clock.sleep(4_000_000_000).expect("within the budget");
        clock.sleep(4_000_000_000).expect("still within it");
        assert_eq!(clock.monotonic_ns, 8_000_000_000);
        assert!(clock.sleep(4_000_000_000).is_err());
        assert!(clock.overran);
        // A new call gets the whole budget again; the clock never goes back.
        clock.start_call(Duration::from_secs(10));
        assert!(!clock.overran);
        clock.sleep(9_000_000_000).expect("a fresh budget");
        assert_eq!(clock.monotonic_ns, 17_000_000_000);
        assert!(clock.sleep(u64::MAX).is_err());
    }
}
