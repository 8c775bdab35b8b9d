//! Turns on a bounded pool of workers, shared fairly by every installation of the host.
//!
//! Work is cut into units — one inbound page's plugin work (its sink write and checkpoint
//! wait on fsync, not on the CPU, and run outside the turn), one outbound round — and each
//! unit takes a [`Turn`] before it runs and gives it back when it ends.
//! At most `workers` units run at once, at most `per_installation` of them for any one
//! installation. When units wait, installations are served in rotation: each turn that
//! frees goes to the next installation in line with a unit waiting, and that installation
//! goes to the back of the line. So a tenant with a ten-million-row backfill queues its
//! pages behind everyone else's units, and another tenant's outbound round waits for at
//! most one unit per worker, whatever the backfill's size.
//!
//! A waiting unit that is dropped (its installation stopped) gives up its place; the turn
//! goes to the next in line.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

/// How many units run at once, in all and per installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub workers: usize,
    pub per_installation: usize,
}

impl Default for SchedulerConfig {
    /// Units mostly wait on Salesforce and the sink, so a few per core keep the CPU busy;
    /// two per installation lets one tenant overlap a download with a write but never
    /// take the pool.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        SchedulerConfig {
            workers: (cores * 4).max(4),
            per_installation: 2,
        }
    }
}

/// The pool. Share it as `Arc<Scheduler>`.
pub struct Scheduler {
    config: SchedulerConfig,
    state: Mutex<State>,
    stats: Counters,
}

#[derive(Default)]
struct State {
    free: usize,
    running: HashMap<String, usize>,
    /// Installations with a unit waiting, in the order they are served.
    line: VecDeque<String>,
    waiting: HashMap<String, VecDeque<oneshot::Sender<()>>>,
}

#[derive(Default)]
struct Counters {
    granted: AtomicU64,
    waited: AtomicU64,
    wait_ns: AtomicU64,
    overhead_ns: AtomicU64,
}

/// What the scheduler has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulerStats {
    pub turns: u64,
    /// Turns that had to wait for a worker.
    pub waited: u64,
    /// Total time units spent waiting for a turn, in nanoseconds.
    pub wait_ns: u64,
    /// Time spent in the scheduler's own bookkeeping (taking, queueing and handing on
    /// turns, waits excluded), in nanoseconds: its cost per unit is this over `turns`.
    pub overhead_ns: u64,
}

/// The right to run one unit; dropping it frees the worker for the next in line.
pub struct Turn {
    scheduler: Arc<Scheduler>,
    installation: String,
}

impl Turn {
    /// Runs `unit` in this turn. Where the governor makes the unit wait (pacing, a
    /// backoff, a Bulk job's poll interval), the turn is given back for the wait and taken
    /// again, in line like any other, before the unit goes on
    /// ([`crate::throttle::held`]): a quota-bound unit never holds a worker while it waits.
    pub async fn run<F: Future>(self, unit: F) -> F::Output {
        let held = Arc::new(HeldTurn {
            scheduler: self.scheduler.clone(),
            installation: self.installation.clone(),
            turn: Mutex::new(Some(self)),
        });
        crate::throttle::held::holding(held, unit).await
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.scheduler.release(&self.installation);
    }
}

/// The turn of a unit run by [`Turn::run`]: `None` while the unit waits on its
/// governor without it. Dropped with the unit, it frees the worker.
struct HeldTurn {
    turn: Mutex<Option<Turn>>,
    scheduler: Arc<Scheduler>,
    installation: String,
}

impl HeldTurn {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Turn>> {
        self.turn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::throttle::held::HeldWorker for HeldTurn {
    fn release(&self) {
        let turn = self.slot().take();
        drop(turn);
    }

    fn reacquire(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if self.slot().is_some() {
                return;
            }
            let turn = self.scheduler.turn(&self.installation).await;
            // Two waits of one unit (requests in flight side by side) may both come back:
            // the unit keeps one turn, the other goes straight back to the pool.
            let mut slot = self.slot();
            if slot.is_none() {
                *slot = Some(turn);
            }
        })
    }
}

/// A unit in line. Dropped before its turn came, it leaves the line; dropped after the
/// turn was sent but before it was taken up, it hands the turn back.
struct Waiting<'a> {
    receiver: oneshot::Receiver<()>,
    scheduler: &'a Scheduler,
    installation: &'a str,
    granted: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        // After `close` no turn can be sent here; one sent before is still readable.
        self.receiver.close();
        if self.receiver.try_recv().is_ok() {
            self.scheduler.release(self.installation);
        }
    }
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Arc<Scheduler> {
        let config = SchedulerConfig {
            workers: config.workers.max(1),
            per_installation: config.per_installation.max(1),
        };
        Arc::new(Scheduler {
            state: Mutex::new(State {
                free: config.workers,
                ..State::default()
            }),
            config,
            stats: Counters::default(),
        })
    }

    pub fn config(&self) -> SchedulerConfig {
        self.config
    }

    /// Waits for `installation`'s turn to run one unit.
    pub async fn turn(self: &Arc<Self>, installation: &str) -> Turn {
        let entered = Instant::now();
        let receiver = {
            let mut state = self.lock();
            let running = state.running.get(installation).copied().unwrap_or(0);
            // Straight in only when nobody is in line: a newcomer never jumps the queue.
            if state.free > 0 && state.line.is_empty() && running < self.config.per_installation {
                state.free -= 1;
                *state.running.entry(installation.to_owned()).or_default() += 1;
                None
            } else {
                let (sender, receiver) = oneshot::channel();
                let queue = state.waiting.entry(installation.to_owned()).or_default();
                queue.push_back(sender);
                if queue.len() == 1 && !state.line.iter().any(|id| id == installation) {
                    state.line.push_back(installation.to_owned());
                }
                // A worker may be free already (this installation was at its cap, or the
                // line was non-empty while workers were idle): hand turns out now.
                self.dispatch(&mut state);
                Some(receiver)
            }
        };
        self.count_overhead(entered);
        if let Some(receiver) = receiver {
            let started = Instant::now();
            let mut waiting = Waiting {
                receiver,
                scheduler: self,
                installation,
                granted: false,
            };
            // The sender is only dropped with the scheduler, which outlives every turn.
            let _ = (&mut waiting.receiver).await;
            waiting.granted = true;
            self.stats.waited.fetch_add(1, Ordering::Relaxed);
            self.stats
                .wait_ns
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        self.stats.granted.fetch_add(1, Ordering::Relaxed);
        Turn {
            scheduler: self.clone(),
            installation: installation.to_owned(),
        }
    }

    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            turns: self.stats.granted.load(Ordering::Relaxed),
            waited: self.stats.waited.load(Ordering::Relaxed),
            wait_ns: self.stats.wait_ns.load(Ordering::Relaxed),
            overhead_ns: self.stats.overhead_ns.load(Ordering::Relaxed),
        }
    }

    fn count_overhead(&self, since: Instant) {
        self.stats
            .overhead_ns
            .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Units running now, in all.
    pub fn busy(&self) -> usize {
        self.config.workers - self.lock().free
    }

    fn release(&self, installation: &str) {
        let entered = Instant::now();
        let mut state = self.lock();
        state.free += 1;
        if let Some(running) = state.running.get_mut(installation) {
            *running -= 1;
            if *running == 0 {
                state.running.remove(installation);
            }
        }
        self.dispatch(&mut state);
        drop(state);
        self.count_overhead(entered);
    }

    /// Hands free workers to the installations in line, one turn each in rotation,
    /// skipping any at its cap.
    fn dispatch(&self, state: &mut State) {
        let mut passed_over = 0;
        while state.free > 0 && passed_over < state.line.len() {
            let Some(installation) = state.line.pop_front() else {
                break;
            };
            let running = state.running.get(&installation).copied().unwrap_or(0);
            if running >= self.config.per_installation {
                state.line.push_back(installation);
                passed_over += 1;
                continue;
            }
            let granted = loop {
                let Some(sender) = state
                    .waiting
                    .get_mut(&installation)
                    .and_then(VecDeque::pop_front)
                else {
                    break false;
                };
                // A waiter that gave up (its future dropped) is skipped.
                if sender.send(()).is_ok() {
                    break true;
                }
            };
            if granted {
                state.free -= 1;
                *state.running.entry(installation.clone()).or_default() += 1;
                passed_over = 0;
            }
            if state
                .waiting
                .get(&installation)
                .is_some_and(|q| !q.is_empty())
            {
                state.line.push_back(installation);
            } else {
                state.waiting.remove(&installation);
            }
        }
    }

    // Every change under the lock is a few counter and queue operations that cannot
    // panic half-way, so a poisoned lock still guards consistent state.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
