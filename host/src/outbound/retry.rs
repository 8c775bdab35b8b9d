//! The retry schedule: events that failed transiently, when each may be tried again, and
//! which records they hold back.
//!
//! The schedule is the in-memory view of what the store keeps: each transient failure is
//! recorded in the store (attempts, next attempt, records held) in the round's own
//! transaction, and a restarted worker [restores](RetrySchedule::restore) the schedule from
//! it. So `max_attempts` counts rounds across restarts: a poison record cannot cycle forever
//! through a host that keeps restarting. While an event waits, later events for the same
//! record wait behind it, so a retry cannot be overtaken and then discarded as stale. After
//! `max_attempts` the event goes to the DLQ with its last error.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::retry::{BackoffPolicy, Jitter};

use crate::store::Seq;

use super::config::RetryConfig;

#[derive(Debug, Clone)]
struct Waiting {
    attempts: u32,
    due: Instant,
    keys: Vec<(String, String)>,
}

/// The installation's events waiting for another round.
#[derive(Debug)]
pub struct RetrySchedule {
    waiting: HashMap<Seq, Waiting>,
    jitter: Jitter,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            waiting: HashMap::new(),
            jitter: Jitter::from_clock(),
        }
    }
}

/// What to do with an event that failed transiently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this long.
    RetryIn(Duration),
    /// Attempts used up: send it to the DLQ.
    GiveUp { attempts: u32 },
}

impl RetrySchedule {
    /// Whether `seq` may run now (not waiting, or its wait is over).
    pub fn is_due(&self, seq: Seq, now: Instant) -> bool {
        self.waiting.get(&seq).is_none_or(|w| w.due <= now)
    }

    /// Records of events still waiting (not yet due): later events for them must wait too.
    pub fn held_keys(&self, now: Instant) -> HashSet<(String, String)> {
        self.waiting
            .values()
            .filter(|w| w.due > now)
            .flat_map(|w| w.keys.iter().cloned())
            .collect()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// How many transient failures `seq` has had.
    pub fn attempts(&self, seq: Seq) -> u32 {
        self.waiting.get(&seq).map_or(0, |w| w.attempts)
    }

    /// The soonest moment a waiting event becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting.values().map(|w| w.due).min()
    }

    /// Takes up an event that failed transiently before (in an earlier process): it has used
    /// `attempts` rounds and may run again at `due`.
    pub fn restore(&mut self, seq: Seq, attempts: u32, due: Instant, keys: Vec<(String, String)>) {
        self.waiting.insert(
            seq,
            Waiting {
                attempts,
                due,
                keys,
            },
        );
    }

    /// Counts a transient failure of `seq` and decides whether it gets another round.
    pub fn failed(
        &mut self,
        seq: Seq,
        keys: Vec<(String, String)>,
        policy: &RetryConfig,
        now: Instant,
    ) -> Verdict {
        let attempts = self.attempts(seq) + 1;
        if attempts >= policy.max_attempts {
            self.waiting.remove(&seq);
            return Verdict::GiveUp { attempts };
        }
        let wait = backoff(policy, attempts, &mut self.jitter);
        self.waiting.insert(
            seq,
            Waiting {
                attempts,
                due: now + wait,
                keys,
            },
        );
        Verdict::RetryIn(wait)
    }

    /// The event left the pending queue (written or dead-lettered).
    pub fn finished(&mut self, seq: Seq) {
        self.waiting.remove(&seq);
    }
}

/// The host's backoff ([`crate::retry`]) for the `attempt`-th failure, so events that
/// failed together (a lock storm) do not retry together. At least a tenth of the ceiling:
/// a wait near zero would retry inside the same round, against the same lock.
fn backoff(policy: &RetryConfig, attempt: u32, jitter: &mut Jitter) -> Duration {
    let policy = BackoffPolicy {
        base: policy.base(),
        cap: policy.max(),
        max_attempts: policy.max_attempts,
    };
    let retry = attempt.saturating_sub(1);
    policy
        .delay(retry, None, jitter)
        .max(policy.ceiling(retry) / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_then_it_gives_up() {
        let policy = RetryConfig {
            max_attempts: 3,
            base_ms: 100,
            max_ms: 150,
        };
        let mut schedule = RetrySchedule::default();
        let now = Instant::now();
        let key = vec![("Account".to_owned(), "k".to_owned())];
        match schedule.failed(7, key.clone(), &policy, now) {
            Verdict::RetryIn(wait) => assert!(wait <= Duration::from_millis(100)),
            other => panic!("{other:?}"),
        }
        assert!(!schedule.is_due(7, now));
        assert!(schedule.held_keys(now).contains(&key[0]));
        match schedule.failed(7, key.clone(), &policy, now) {
            Verdict::RetryIn(wait) => assert!(wait <= Duration::from_millis(150)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            schedule.failed(7, key, &policy, now),
            Verdict::GiveUp { attempts: 3 }
        );
        assert!(schedule.is_due(7, now));
        assert_eq!(schedule.waiting(), 0);
    }

    #[test]
    fn a_restored_event_keeps_its_count() {
        let policy = RetryConfig {
            max_attempts: 3,
            base_ms: 100,
            max_ms: 150,
        };
        let mut schedule = RetrySchedule::default();
        let now = Instant::now();
        schedule.restore(9, 2, now, Vec::new());
        assert!(schedule.is_due(9, now));
        assert_eq!(
            schedule.failed(9, Vec::new(), &policy, now),
            Verdict::GiveUp { attempts: 3 }
        );
    }
}
