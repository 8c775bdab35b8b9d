//! Group commit for intake: one writer thread turns many concurrent requests into one
//! durable transaction.
//!
//! A durable commit costs an fsync (hundreds of microseconds to milliseconds); paying it per
//! HTTP request caps intake at a few thousand requests a second. Here every request hands its
//! batch to a queue and waits; the writer takes everything queued (up to
//! [`GroupCommitConfig::max_batch_events`]), accepts it all in one [`Store::write`], and only
//! then answers every waiter. While one commit's fsync runs, the next group piles up, so the
//! group size follows the load by itself.
//!
//! It never answers a waiter before its events are durable, and never drops a submitted
//! batch without answering: a failed group is retried one request per transaction, so one
//! bad request cannot fail its neighbours.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

use super::{Admitted, EncodedEvent, Store, StoreError};

/// The group-commit knobs.
#[derive(Debug, Clone)]
pub struct GroupCommitConfig {
    /// Most events in one transaction. Default 8,192 (about 8 MB of 1 KB events). Larger
    /// groups mean fewer fsyncs under overload, but the first waiter of a group waits for the
    /// whole group to be encoded and written, so this bounds tail latency and the
    /// transaction's memory. A single request larger than this is still taken whole.
    pub max_batch_events: usize,
    /// How long the writer lingers for more requests after the first one of a group arrives.
    /// Default 0: no lingering — the group is whatever queued up during the previous
    /// commit, which already grows with load. A small linger (e.g. 1 ms) helps only when
    /// requests trickle in from few clients; it adds that much to every request's latency.
    pub max_wait: Duration,
    /// Requests queued for the writer before submitters wait for room. Default 4,096: deep
    /// enough to fill large groups, and the bound on memory held by waiting requests when
    /// the disk falls behind (each holds its parsed batch).
    pub queue_depth: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        GroupCommitConfig {
            max_batch_events: 8192,
            max_wait: Duration::ZERO,
            queue_depth: 4096,
        }
    }
}

/// Counters of the writer, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub requests: AtomicU64,
    pub events: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Sum of commit durations in microseconds (fsync included).
    pub commit_micros: AtomicU64,
}

struct Job {
    installation: String,
    events: Vec<EncodedEvent>,
    reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// A request's events, handed back after their commit with one [`Admitted`] each, in
/// order. Handing them back (rather than dropping them here) frees their buffers on the
/// submitter's thread, off the single writer.
#[derive(Debug)]
pub struct Committed {
    pub events: Vec<EncodedEvent>,
    pub admitted: Vec<Admitted>,
}

/// The submitting side; cheap to clone. The writer thread exits once every clone is
/// dropped and the queue is drained.
#[derive(Clone)]
pub struct IntakeWriter {
    queue: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
}

/// Owns the writer thread; [`WriterHandle::join`] waits for it to finish (after every
/// [`IntakeWriter`] is dropped), which is when the store is released.
pub struct WriterHandle {
    thread: JoinHandle<()>,
}

impl WriterHandle {
    pub fn join(self) {
        // The writer catches nothing that could panic on input; a panic there is a bug and
        // has already been reported by the panic hook.
        let _ = self.thread.join();
    }
}

impl IntakeWriter {
    /// Starts the writer thread over `store`.
    pub fn start(
        store: Arc<dyn Store>,
        config: GroupCommitConfig,
    ) -> std::io::Result<(IntakeWriter, WriterHandle)> {
        let (queue, jobs) = mpsc::channel(config.queue_depth.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("weft-intake-writer".into())
            .spawn(move || run(store, config, jobs, &thread_stats))?;
        Ok((IntakeWriter { queue, stats }, WriterHandle { thread }))
    }

    /// Makes `events` durable for `installation`; the answer holds one [`Admitted`] per
    /// event, in order. Resolves only after the commit (fsync) that holds them. Encode the
    /// events on the caller's thread ([`EncodedEvent::new`]): the writer is single.
    pub async fn submit(
        &self,
        installation: String,
        events: Vec<EncodedEvent>,
    ) -> Result<Committed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                installation,
                events,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

fn run(
    store: Arc<dyn Store>,
    config: GroupCommitConfig,
    mut jobs: mpsc::Receiver<Job>,
    stats: &WriterStats,
) {
    // Waiting with a deadline needs a timer; a current-thread runtime of our own gives one
    // without touching the server's runtime.
    let waiter = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "intake writer: cannot start its timer; intake stops");
            return;
        }
    };
    let max_events = config.max_batch_events.max(1);
    loop {
        let Some(first) = jobs.blocking_recv() else {
            return;
        };
        let mut group_events = first.events.len();
        let mut group = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while group_events < max_events {
            let next = match jobs.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        None
                    } else {
                        waiter
                            .block_on(tokio::time::timeout(left, jobs.recv()))
                            .ok()
                            .flatten()
                    }
                }
            };
            let Some(job) = next else { break };
            group_events += job.events.len();
            group.push(job);
        }
        commit_group(&*store, group, stats);
    }
}

fn commit_group(store: &dyn Store, group: Vec<Job>, stats: &WriterStats) {
    let started = Instant::now();
    let at = Timestamp::now();
    let batches: Vec<(&str, &[EncodedEvent])> = group
        .iter()
        .map(|job| (job.installation.as_str(), job.events.as_slice()))
        .collect();
    let mut admitted: Vec<Admitted> = Vec::new();
    let result = store.write(&mut |txn| {
        // `write` may run this more than once; the last run's answer is the one committed.
        admitted = txn.accept_encoded(&batches, at)?;
        Ok(())
    });
    drop(batches);
    let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    stats.commit_micros.fetch_add(elapsed, Ordering::Relaxed);
    match result {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .requests
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            let mut answers = admitted.into_iter();
            for job in group {
                let count = job.events.len();
                stats.events.fetch_add(count as u64, Ordering::Relaxed);
                let admitted: Vec<Admitted> = answers.by_ref().take(count).collect();
                // A waiter that went away (client disconnected) still had its events
                // accepted; a repeat of the request will report them as duplicates.
                let _ = job.reply.send(Ok(Committed {
                    events: job.events,
                    admitted,
                }));
            }
        }
        Err(error) if group.len() == 1 => {
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %error, "intake commit failed");
            if let Some(job) = group.into_iter().next() {
                let _ = job.reply.send(Err(error));
            }
        }
        Err(error) => {
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %error, requests = group.len(), "group commit failed; retrying each request alone");
            for job in group {
                commit_group(store, vec![job], stats);
            }
        }
    }
}
