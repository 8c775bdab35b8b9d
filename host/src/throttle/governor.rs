//! One installation's governor: schedule + pacing + per-project ceilings + headroom guard +
//! concurrency cap + circuit breaker, behind `admit`.
//!
//! Owns the mutable throttling state of an installation and the order of the checks a
//! request passes before it may go: per-project bucket, installation bucket, org headroom,
//! breaker, then a concurrency slot. Waiting is always a sleep on the injected clock; no check
//! ever rejects a request. Learned numbers (`DailyApiRequests.Max`, org usage) come in through
//! `observe_*` from the transport.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::Project;
use super::breaker::{Breaker, BreakerConfig, Gate, Transition};
use super::clock::Clock;
use super::pacing::{DEFAULT_BURST_MIN_CALLS, DEFAULT_BURST_SHARE, Pacer};
use super::schedule::{Schedule, ScheduleConfig, ScheduleError};
use super::snapshot::{GovernorSnapshot, MinuteUsage, RestoreError, SNAPSHOT_VERSION};
use crate::retry::{BackoffPolicy, Jitter};
use crate::telemetry::{EventKind, GovernorGauges, InstallationTelemetry};

/// Windows remembered for [`Governor::window_ledger`]: a week of a three-window schedule.
const LEDGER_WINDOWS: usize = 32;

/// Governor knobs as written in an installation's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GovernorConfig {
    /// The installation's ceiling schedule (default: 80% all day, UTC).
    pub schedule: ScheduleConfig,
    /// Per-project ceilings. A project's requests must fit both its own schedule and the
    /// installation's.
    pub projects: BTreeMap<Project, ScheduleConfig>,
    /// Pause when the org's remaining daily allocation (whoever spent it) falls under this
    /// share of `DailyApiRequests.Max`. 10%: keeps the customer's own users and other
    /// integrations working even when something else ate the quota; 0 disables the guard.
    pub org_headroom_percent: f64,
    /// While paused, one request every this many seconds goes out to re-learn the org's
    /// usage. 300 s: 288 requests a day at most, negligible, yet resumption is quick.
    pub headroom_probe_secs: u64,
    /// Requests in flight to the org at once. Salesforce refuses new requests once 25
    /// long-running (≥ 20 s) ones are running, org-wide and shared with every other
    /// integration; any request can turn long-running, so all of them hold a slot. 10 leaves
    /// most of the org's 25 to others.
    pub max_concurrent_requests: usize,
    /// Share of each window's budget the pacing bucket holds (0..=1): that many calls may go
    /// at once before pacing spreads the rest of the window's budget evenly. 0.02 (see
    /// `pacing::DEFAULT_BURST_SHARE`): short jobs run at full speed, and a spike in the
    /// customer's API usage is at most a fiftieth of the window's budget.
    pub burst_share: f64,
    /// Floor of the pacing bucket, in calls (at least 1). 250 (see
    /// `pacing::DEFAULT_BURST_MIN_CALLS`): a job of a few hundred calls does not wait on
    /// pacing even on a small org or in a short window. Never more than the window has left.
    pub burst_min_calls: u64,
    /// `DailyApiRequests.Max` assumed until the org tells us. 15,000 is the smallest
    /// allocation an org with API access has (Developer Edition), so a wrong guess errs on
    /// the quiet side. Learned from the first response's `Sforce-Limit-Info`.
    pub assumed_daily_max: u64,
    pub breaker: BreakerConfig,
    pub backoff: BackoffPolicy,
}

impl Default for GovernorConfig {
    fn default() -> Self {
        GovernorConfig {
            schedule: ScheduleConfig::default(),
            projects: BTreeMap::new(),
            org_headroom_percent: 10.0,
            headroom_probe_secs: 300,
            max_concurrent_requests: 10,
            burst_share: DEFAULT_BURST_SHARE,
            burst_min_calls: DEFAULT_BURST_MIN_CALLS,
            assumed_daily_max: 15_000,
            breaker: BreakerConfig::default(),
            backoff: BackoffPolicy::default(),
        }
    }
}

/// Why a governor configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GovernorConfigError {
    #[error("schedule.{0}")]
    Schedule(ScheduleError),
    #[error("projects.{project}.{source}")]
    Project {
        project: &'static str,
        source: ScheduleError,
    },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// A validated governor configuration.
#[derive(Debug, Clone)]
pub struct GovernorSettings {
    schedule: Schedule,
    projects: HashMap<Project, Schedule>,
    headroom: f64,
    probe_every: Duration,
    max_concurrent: usize,
    burst_share: f64,
    burst_min_calls: u64,
    assumed_daily_max: u64,
    breaker: BreakerConfig,
    backoff: BackoffPolicy,
}

impl GovernorConfig {
    pub fn validate(&self) -> Result<GovernorSettings, GovernorConfigError> {
        let schedule = self
            .schedule
            .validate()
            .map_err(GovernorConfigError::Schedule)?;
        let mut projects = HashMap::new();
        for (p, s) in &self.projects {
            let v = s
                .validate()
                .map_err(|source| GovernorConfigError::Project {
                    project: p.as_str(),
                    source,
                })?;
            projects.insert(*p, v);
        }
        let invalid = |key, reason: &str| GovernorConfigError::Invalid {
            key,
            reason: reason.to_string(),
        };
        if !(self.org_headroom_percent.is_finite()
            && (0.0..100.0).contains(&self.org_headroom_percent))
        {
            return Err(invalid(
                "org_headroom_percent",
                "must be a percentage in 0..100",
            ));
        }
        if self.max_concurrent_requests == 0 || self.max_concurrent_requests > 25 {
            return Err(invalid(
                "max_concurrent_requests",
                "must be 1..=25 (Salesforce allows 25 long-running requests per org)",
            ));
        }
        if !(self.burst_share.is_finite() && (0.0..=1.0).contains(&self.burst_share)) {
            return Err(invalid(
                "burst_share",
                "must be a share of the window's budget in 0..=1 (e.g. 0.02)",
            ));
        }
        if self.burst_min_calls == 0 {
            return Err(invalid("burst_min_calls", "must be at least 1"));
        }
        if self.assumed_daily_max == 0 {
            return Err(invalid("assumed_daily_max", "must be positive"));
        }
        if self.backoff.max_attempts == 0 {
            return Err(invalid("backoff.max_attempts", "must be at least 1"));
        }
        Ok(GovernorSettings {
            schedule,
            projects,
            headroom: self.org_headroom_percent / 100.0,
            probe_every: Duration::from_secs(self.headroom_probe_secs.max(1)),
            max_concurrent: self.max_concurrent_requests,
            burst_share: self.burst_share,
            burst_min_calls: self.burst_min_calls,
            assumed_daily_max: self.assumed_daily_max,
            breaker: self.breaker.clone(),
            backoff: self.backoff.clone(),
        })
    }
}

/// What one schedule window granted and what Weft spent in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub start: Timestamp,
    pub end: Timestamp,
    pub ceiling: f64,
    /// Budget computed with the daily maximum known at the window's last admission.
    pub budget: f64,
    /// `budget` less the share presumed spent when the governor first saw the window
    /// part-way through (start-up); equals `budget` for windows seen from their start.
    pub available: f64,
    pub spent: u64,
}

#[derive(Debug)]
struct State {
    daily_max: Option<u64>,
    org_used: Option<u64>,
    installation: Pacer,
    projects: HashMap<Project, Pacer>,
    paused: Option<&'static str>,
    last_probe: Option<Timestamp>,
    breaker: Breaker,
    /// (minute since epoch, admissions), last 24 h.
    usage: VecDeque<(i64, u64)>,
    usage_sum: u64,
    in_flight: u64,
    ledger: VecDeque<WindowRecord>,
}

/// The governor of one installation. Share it as `Arc<Governor>`.
#[derive(Debug)]
pub struct Governor {
    settings: GovernorSettings,
    clock: Arc<dyn Clock>,
    telemetry: Arc<InstallationTelemetry>,
    state: Mutex<State>,
    slots: Arc<Semaphore>,
    jitter: Mutex<Jitter>,
    /// Turned on once by [`Governor::stop`]; never off again.
    stopping: watch::Sender<bool>,
}

/// The installation is stopping: no request is admitted any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the installation is stopping")]
pub struct Stopped;

/// Leave to send one request. Hold it until the response body has been read (a streamed
/// download is a long-running request), then report the outcome.
#[derive(Debug)]
pub struct Permit {
    governor: Arc<Governor>,
    _slot: Option<OwnedSemaphorePermit>,
    probe: bool,
    settled: bool,
}

impl Permit {
    /// The request got a response that says the org is healthy (any 2xx, or a client error
    /// that is not an outage).
    pub fn success(mut self) {
        self.settled = true;
        self.governor.on_success();
    }

    /// The request failed in a way that counts toward opening the breaker.
    pub fn failure(mut self, reason: &str) {
        self.settled = true;
        self.governor.on_failure(reason);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.governor.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        if self.probe && !self.settled {
            st.breaker.release_probe();
        }
    }
}

impl Governor {
    pub fn new(
        settings: GovernorSettings,
        clock: Arc<dyn Clock>,
        telemetry: Arc<InstallationTelemetry>,
    ) -> Arc<Self> {
        let seed = telemetry
            .id()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
        Arc::new(Governor {
            state: Mutex::new(State {
                daily_max: None,
                org_used: None,
                installation: Pacer::new(settings.burst_share, settings.burst_min_calls),
                projects: settings
                    .projects
                    .keys()
                    .map(|p| {
                        (
                            *p,
                            Pacer::new(settings.burst_share, settings.burst_min_calls),
                        )
                    })
                    .collect(),
                paused: None,
                last_probe: None,
                breaker: Breaker::new(settings.breaker.clone()),
                usage: VecDeque::new(),
                usage_sum: 0,
                in_flight: 0,
                ledger: VecDeque::new(),
            }),
            slots: Arc::new(Semaphore::new(settings.max_concurrent)),
            jitter: Mutex::new(Jitter::seeded(seed)),
            stopping: watch::Sender::new(false),
            settings,
            clock,
            telemetry,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn telemetry(&self) -> &Arc<InstallationTelemetry> {
        &self.telemetry
    }

    pub fn backoff_policy(&self) -> &BackoffPolicy {
        &self.settings.backoff
    }

    /// Sleeps `d` on the governor's clock: a backoff, a poll interval. Like every wait of
    /// the governor's, a long one gives the unit's scheduler worker back ([`super::held`]),
    /// and it ends early when the installation stops.
    pub async fn pause(&self, d: Duration) {
        let sleep = async {
            tokio::select! {
                _ = self.clock.sleep(d) => {}
                _ = self.stopped() => {}
            }
        };
        super::held::pause(d, sleep).await;
    }

    /// The installation is stopping (the host shuts down, or a new version replaces it):
    /// every wait of this governor ends now and no request is admitted any more. A
    /// backoff of minutes or a quota wait of hours must not hold up the stop; the work
    /// left undone resumes from its checkpoint, or stays queued, in the next run.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once [`Governor::stop`] was called.
    async fn stopped(&self) {
        let mut stopping = self.stopping.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// Waits until a request of `project` may go, and returns its permit; [`Stopped`] once
    /// the installation stops, whether before or during the wait.
    pub async fn admit(self: &Arc<Self>, project: Project) -> Result<Permit, Stopped> {
        let probe = loop {
            if self.is_stopping() {
                return Err(Stopped);
            }
            match self.try_admit(project) {
                Ok(probe) => break probe,
                // Without the scheduler's worker, when the unit holds one: see [`super::held`].
                Err(wait) => self.pause(wait).await,
            }
        };
        // Admitted: from here the permit's drop undoes what admission counted.
        let mut permit = Permit {
            governor: self.clone(),
            _slot: None,
            probe,
            settled: false,
        };
        // The semaphore is never closed, so acquiring cannot fail; if it somehow did, the
        // request still goes (never dropped), merely without a slot.
        permit._slot = tokio::select! {
            slot = self.slots.clone().acquire_owned() => slot.ok(),
            _ = self.stopped() => return Err(Stopped),
        };
        Ok(permit)
    }

    /// How long a request of `project` asked now would wait — for pacing, a headroom
    /// pause or an open breaker — without taking anything (zero: it would go at once). A
    /// unit of work asks this before it takes a worker of the host's scheduler, so it
    /// waits for its quota without holding one.
    pub fn ready_in(&self, project: Project) -> Duration {
        let now = self.clock.now();
        let mut st = self.lock();
        let (mut wait, _, _) = self.pacing_wait(&mut st, now, project);
        if st.paused.is_some()
            && let Some(last) = st.last_probe
        {
            let since = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
            wait = wait.max(self.settings.probe_every.saturating_sub(since));
        }
        if let Some(open) = st.breaker.open_for(now) {
            wait = wait.max(open);
        }
        wait
    }

    /// The pacing wait of `project` now (installation and project ceilings), with the
    /// active window and the daily maximum it was judged against.
    fn pacing_wait(
        &self,
        st: &mut State,
        now: Timestamp,
        project: Project,
    ) -> (Duration, super::ActiveWindow, u64) {
        let max = st.daily_max.unwrap_or(self.settings.assumed_daily_max);
        let win = self.settings.schedule.window_at(now);
        let mut wait = st.installation.wait(now, &win, max);
        let pwin = self
            .settings
            .projects
            .get(&project)
            .map(|s| s.window_at(now));
        if let (Some(pw), Some(p)) = (&pwin, st.projects.get_mut(&project)) {
            wait = wait.max(p.wait(now, pw, max));
        }
        (wait, win, max)
    }

    fn try_admit(&self, project: Project) -> Result<bool, Duration> {
        let now = self.clock.now();
        let mut st = self.lock();
        let (wait, win, max) = self.pacing_wait(&mut st, now, project);
        if !wait.is_zero() {
            return Err(wait);
        }
        let mut is_headroom_probe = false;
        if st.paused.is_some() {
            let since = st
                .last_probe
                .map(|t| Duration::try_from(now.duration_since(t)).unwrap_or(Duration::ZERO));
            match since {
                Some(s) if s < self.settings.probe_every => {
                    return Err(self.settings.probe_every - s);
                }
                _ => is_headroom_probe = true,
            }
        }
        let probe = match st.breaker.gate(now) {
            Gate::Go => false,
            Gate::Probe => true,
            Gate::Wait(d) => return Err(d),
        };
        if is_headroom_probe {
            st.last_probe = Some(now);
        }
        st.installation.take();
        if let Some(p) = st.projects.get_mut(&project) {
            p.take();
        }
        st.in_flight += 1;
        let minute = now.as_second().div_euclid(60);
        match st.usage.back_mut() {
            Some((m, c)) if *m == minute => *c += 1,
            _ => st.usage.push_back((minute, 1)),
        }
        st.usage_sum += 1;
        while let Some(&(m, c)) = st.usage.front() {
            if m > minute - 24 * 60 {
                break;
            }
            st.usage_sum -= c;
            st.usage.pop_front();
        }
        let view = st.installation.view(now, &win, max);
        match st.ledger.back_mut() {
            Some(r) if r.start == win.start => {
                r.spent = view.spent;
                r.budget = view.budget;
                r.available = view.available;
            }
            _ => {
                if st.ledger.len() >= LEDGER_WINDOWS {
                    st.ledger.pop_front();
                }
                st.ledger.push_back(WindowRecord {
                    start: win.start,
                    end: win.end,
                    ceiling: win.ceiling,
                    budget: view.budget,
                    available: view.available,
                    spent: view.spent,
                });
            }
        }
        self.publish(now, &st, &win, max);
        Ok(probe)
    }

    fn publish(&self, now: Timestamp, st: &State, win: &super::ActiveWindow, max: u64) {
        let view = st.installation.view(now, win, max);
        // Utilisation is judged against what pacing allows by now, but never against less
        // than a minute's worth, so one request at the start of a window is not "400%".
        let minute_share =
            win.budget(max) * 60.0 / win.end.duration_since(win.start).as_secs_f64().max(60.0);
        let allowed = view.allowed_so_far.max(minute_share).max(1.0);
        self.telemetry.set_gauges(
            now,
            GovernorGauges {
                ceiling: win.ceiling,
                window_start: Some(win.start),
                window_end: Some(win.end),
                window_budget: view.budget,
                window_spent: view.spent,
                utilisation: view.spent as f64 / allowed,
                usage_24h: st.usage_sum,
                daily_max: st.daily_max,
                org_used: st.org_used,
                paused: st.paused.is_some(),
                breaker: format!("{:?}", st.breaker.state()).to_lowercase(),
                in_flight: st.in_flight,
            },
        );
    }

    /// Learned from `Sforce-Limit-Info: api-usage=used/max` or `/limits`.
    pub fn observe_usage(&self, used: u64, max: u64) {
        if max == 0 {
            return;
        }
        let now = self.clock.now();
        let mut st = self.lock();
        st.daily_max = Some(max);
        st.org_used = Some(used);
        let remaining = max.saturating_sub(used) as f64;
        let low = remaining < self.settings.headroom * max as f64 || used >= max;
        self.set_paused(
            &mut st,
            now,
            low.then_some(if used >= max {
                "quota_exhausted"
            } else {
                "org_headroom"
            }),
            used,
            max,
        );
    }

    /// The org answered `REQUEST_LIMIT_EXCEEDED` for its daily total: nothing left until
    /// usage rolls off. Pauses like the headroom guard (probing every `headroom_probe_secs`).
    pub fn observe_quota_exhausted(&self) {
        let now = self.clock.now();
        let mut st = self.lock();
        let max = st.daily_max.unwrap_or(self.settings.assumed_daily_max);
        st.org_used = Some(max);
        st.last_probe = Some(now);
        self.set_paused(&mut st, now, Some("quota_exhausted"), max, max);
    }

    fn set_paused(
        &self,
        st: &mut State,
        now: Timestamp,
        reason: Option<&'static str>,
        used: u64,
        max: u64,
    ) {
        match (st.paused, reason) {
            (None, Some(r)) => {
                st.paused = Some(r);
                st.last_probe = Some(now);
                self.telemetry.event(
                    now,
                    EventKind::Pause,
                    r,
                    format!(
                        "org used {used} of {max}; headroom {:.0}%",
                        self.settings.headroom * 100.0
                    ),
                );
            }
            (Some(_), None) => {
                st.paused = None;
                self.telemetry.event(
                    now,
                    EventKind::Resume,
                    "org_headroom",
                    format!("org used {used} of {max}"),
                );
            }
            (Some(_), Some(r)) => st.paused = Some(r),
            (None, None) => {}
        }
    }

    fn on_success(&self) {
        let now = self.clock.now();
        let mut st = self.lock();
        if let Some(Transition::Closed) = st.breaker.success() {
            self.telemetry.event(
                now,
                EventKind::BreakerClose,
                "probe_succeeded",
                String::new(),
            );
            self.telemetry.set_breaker("closed");
        }
    }

    fn on_failure(&self, reason: &str) {
        let now = self.clock.now();
        let mut st = self.lock();
        if let Some(Transition::Opened {
            after_failures,
            for_secs,
        }) = st.breaker.failure(now)
        {
            self.telemetry.event(
                now,
                EventKind::BreakerOpen,
                reason,
                format!("{after_failures} consecutive failures; open for {for_secs} s"),
            );
            self.telemetry.set_breaker("open");
        }
    }

    /// The wait before retry number `retry` (0 = first retry), recorded as a backoff event.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>, reason: &str) -> Duration {
        let d = {
            let mut j = match self.jitter.lock() {
                Ok(j) => j,
                Err(p) => p.into_inner(),
            };
            self.settings.backoff.delay(retry, retry_after, &mut j)
        };
        self.telemetry.retry(reason);
        self.telemetry.event(
            self.clock.now(),
            EventKind::Backoff,
            reason,
            format!("retry {} in {} ms", retry + 1, d.as_millis()),
        );
        d
    }

    /// What this governor has spent and learned, to hand to [`Governor::restore`] after a
    /// restart so the new process does not forget today's spend.
    ///
    /// When to call it: after each batch of work the caller commits (a checkpoint, a page, a
    /// chunk), on a timer (every minute is plenty), and at orderly shutdown — storing the
    /// snapshot in the same transaction as the checkpoint keeps the two consistent. Requests
    /// admitted after the last snapshot are forgotten by a crash; that is bounded by the
    /// pacing rate times the snapshot interval, and the org's own count (`Sforce-Limit-Info`
    /// on the first response) still reaches the headroom guard.
    pub fn snapshot(&self) -> GovernorSnapshot {
        let now = self.clock.now();
        let st = self.lock();
        GovernorSnapshot {
            version: SNAPSHOT_VERSION,
            taken_at: now,
            daily_max: st.daily_max,
            org_used: st.org_used,
            paused: st.paused.map(str::to_string),
            last_probe: st.last_probe,
            usage: compact_usage(&st.usage, now.as_second().div_euclid(60)),
            installation: st.installation.snapshot(),
            projects: st
                .projects
                .iter()
                .map(|(p, pacer)| (*p, pacer.snapshot()))
                .collect(),
            ledger: st.ledger.iter().cloned().collect(),
            breaker: st.breaker.snapshot(),
        }
    }

    /// Takes over what a previous governor of this installation spent and learned.
    ///
    /// When to call it: once, at start-up, right after [`Governor::new`] and before the first
    /// request is admitted; it replaces what this governor knows. Spend in a window that is
    /// still current carries on (the ceiling binds across the restart); windows that ended
    /// while the host was down are history in the ledger only. Usage older than 24 hours is
    /// dropped. A pause and an open breaker carry over, so a host restarted during an outage
    /// or with the org's quota spent probes before it sends. Project ceilings that are no
    /// longer configured are ignored; newly configured ones start afresh.
    pub fn restore(&self, snapshot: &GovernorSnapshot) -> Result<(), RestoreError> {
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(RestoreError::UnsupportedVersion {
                found: snapshot.version,
                expected: SNAPSHOT_VERSION,
            });
        }
        let now = self.clock.now();
        let mut st = self.lock();
        st.daily_max = snapshot.daily_max.filter(|&m| m > 0);
        st.org_used = snapshot.org_used;
        st.paused = match snapshot.paused.as_deref() {
            Some("quota_exhausted") => Some("quota_exhausted"),
            Some("org_headroom") => Some("org_headroom"),
            // A reason this build does not know still means "paused": stay cautious.
            Some(_) => Some("org_headroom"),
            None => None,
        };
        st.last_probe = snapshot.last_probe;
        let this_minute = now.as_second().div_euclid(60);
        st.usage = snapshot
            .usage
            .iter()
            .filter(|u| u.minute > this_minute - 24 * 60 && u.minute <= this_minute)
            .map(|u| (u.minute, u.admitted))
            .collect();
        st.usage_sum = st.usage.iter().map(|&(_, c)| c).sum();
        st.installation.restore(&snapshot.installation, now);
        for (project, pacer) in st.projects.iter_mut() {
            if let Some(p) = snapshot.projects.get(project) {
                pacer.restore(p, now);
            }
        }
        st.ledger = snapshot
            .ledger
            .iter()
            .skip(snapshot.ledger.len().saturating_sub(LEDGER_WINDOWS))
            .cloned()
            .collect();
        st.breaker.restore(&snapshot.breaker, now);
        let max = st.daily_max.unwrap_or(self.settings.assumed_daily_max);
        let win = self.settings.schedule.window_at(now);
        self.publish(now, &st, &win, max);
        self.telemetry
            .set_breaker(&format!("{:?}", st.breaker.state()).to_lowercase());
        tracing::info!(
            installation = %self.telemetry.id(),
            taken_at = %snapshot.taken_at,
            usage_24h = st.usage_sum,
            window_spent = snapshot.installation.spent,
            paused = st.paused.unwrap_or("no"),
            "governor restored from snapshot"
        );
        Ok(())
    }

    /// Requests this governor admitted in the last 24 hours (restored ones included).
    pub fn usage_24h(&self) -> u64 {
        self.lock().usage_sum
    }

    /// What each recent window granted and what was spent (installation ceiling).
    pub fn window_ledger(&self) -> Vec<WindowRecord> {
        self.lock().ledger.iter().cloned().collect()
    }

    /// `DailyApiRequests.Max` as learned, if it has been.
    pub fn daily_max(&self) -> Option<u64> {
        self.lock().daily_max
    }

    pub fn is_paused(&self) -> bool {
        self.lock().paused.is_some()
    }
}

/// The last hour's usage minute by minute, older minutes in quarter-hour buckets dated by
/// their last minute (never later than an hour ago, so the list stays in order). A host
/// polling every minute has used every minute of the day: its snapshot, saved every 30 s
/// for every installation, holds about 150 entries instead of 1,440. A restored governor
/// then forgets an old request at most 14 minutes late — erring towards spending less.
fn compact_usage(usage: &VecDeque<(i64, u64)>, this_minute: i64) -> Vec<MinuteUsage> {
    let recent_from = this_minute - 59;
    let mut out: Vec<MinuteUsage> = Vec::new();
    for &(minute, admitted) in usage {
        let at = if minute >= recent_from {
            minute
        } else {
            (minute - minute.rem_euclid(15) + 14).min(recent_from - 1)
        };
        match out.last_mut() {
            Some(last) if last.minute == at => last.admitted += admitted,
            _ => out.push(MinuteUsage {
                minute: at,
                admitted,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::throttle::clock::ScaledClock;
    use crate::throttle::schedule::WindowConfig;

    fn governor(cfg: GovernorConfig, scale: f64) -> Arc<Governor> {
        let clock = Arc::new(ScaledClock::new(
            "2025-06-02T00:00:00Z".parse().expect("ts"),
            scale,
        ));
        Governor::new(
            cfg.validate().expect("valid"),
            clock,
            Arc::new(InstallationTelemetry::new("t")),
        )
    }

    #[tokio::test]
    async fn project_ceiling_binds_before_the_installation_ceiling() {
        let mut cfg = GovernorConfig {
            burst_share: 0.0,
            burst_min_calls: 1,
            ..Default::default()
        };
        cfg.schedule = ScheduleConfig::constant("UTC", 80.0);
        cfg.projects
            .insert(Project::Backfill, ScheduleConfig::constant("UTC", 8.0));
        // 86,400/day at 8% = one backfill request every 12.5 s; at 80%, 1.25 s. The first
        // request of each goes at once.
        let g = governor(cfg, 100.0);
        g.observe_usage(0, 86_400);
        let start = g.clock().now();
        for _ in 0..4 {
            g.admit(Project::Backfill)
                .await
                .expect("admitted")
                .success();
        }
        let backfill = g.clock().now().duration_since(start).as_secs_f64();
        let start = g.clock().now();
        for _ in 0..3 {
            g.admit(Project::Incremental)
                .await
                .expect("admitted")
                .success();
        }
        let incremental = g.clock().now().duration_since(start).as_secs_f64();
        assert!(backfill > 30.0, "{backfill}");
        assert!(incremental < backfill / 3.0, "{incremental} vs {backfill}");
    }

    #[tokio::test]
    async fn ready_in_tells_the_pacing_wait_without_spending_anything() {
        let mut cfg = GovernorConfig {
            burst_share: 0.0,
            burst_min_calls: 1,
            ..Default::default()
        };
        cfg.schedule = ScheduleConfig::constant("UTC", 10.0);
        // 86,400/day at 10%: one request every 10 s once the one-call bucket is spent.
        let g = governor(cfg, 100.0);
        g.observe_usage(0, 86_400);
        assert!(g.ready_in(Project::Outbound).is_zero());
        assert!(
            g.ready_in(Project::Outbound).is_zero(),
            "asking spends nothing"
        );
        g.admit(Project::Outbound)
            .await
            .expect("admitted")
            .success();
        let wait = g.ready_in(Project::Outbound);
        // About one interval (the scaled clock moves a little between the two reads).
        assert!(
            wait.as_secs_f64() > 5.0 && wait.as_secs_f64() < 11.0,
            "{wait:?}"
        );
        let spent = g.usage_24h();
        for _ in 0..10 {
            let _ = g.ready_in(Project::Outbound);
        }
        assert_eq!(g.usage_24h(), spent);
    }

    #[tokio::test]
    async fn headroom_guard_pauses_and_probes() {
        let cfg = GovernorConfig {
            headroom_probe_secs: 60,
            ..Default::default()
        };
        let g = governor(cfg, 600.0);
        g.observe_usage(95_000, 100_000);
        assert!(g.is_paused());
        let t0 = g.clock().now();
        g.admit(Project::Incremental)
            .await
            .expect("admitted")
            .success(); // the probe after 60 s
        assert!(g.clock().now().duration_since(t0).as_secs() >= 55);
        g.observe_usage(50_000, 100_000);
        assert!(!g.is_paused());
        let s = g.telemetry().status(g.clock().now());
        assert_eq!(s.throttle_events.get("pause:org_headroom"), Some(&1));
        assert_eq!(s.throttle_events.get("resume:org_headroom"), Some(&1));
    }

    #[tokio::test]
    async fn concurrency_cap_holds_requests_until_a_slot_frees() {
        let cfg = GovernorConfig {
            schedule: ScheduleConfig::constant("UTC", 100.0),
            max_concurrent_requests: 2,
            ..Default::default()
        };
        let g = governor(cfg, 1000.0);
        g.observe_usage(0, 10_000_000);
        let a = g.admit(Project::Backfill).await.expect("admitted");
        let b = g.admit(Project::Backfill).await.expect("admitted");
        let g2 = g.clone();
        let mut third =
            tokio::spawn(async move { g2.admit(Project::Outbound).await.expect("admitted") });
        let waited = tokio::time::timeout(std::time::Duration::from_millis(100), &mut third).await;
        assert!(
            waited.is_err(),
            "a third request must wait while two are in flight"
        );
        a.success();
        let c = tokio::time::timeout(std::time::Duration::from_secs(5), third).await;
        assert!(
            matches!(c, Ok(Ok(_))),
            "a freed slot lets the waiting request go"
        );
        drop(b);
    }

    /// Regression: a stopping installation sat out its backoffs and quota waits (minutes,
    /// or hours for a spent day) before its host could exit.
    #[tokio::test]
    async fn a_stop_ends_every_wait_and_admits_nothing_more() {
        let cfg = GovernorConfig {
            schedule: ScheduleConfig::constant("UTC", 100.0),
            max_concurrent_requests: 1,
            ..Default::default()
        };
        let g = governor(cfg, 1.0);
        g.observe_usage(0, 10_000_000);
        let held = g.admit(Project::Backfill).await.expect("admitted");
        // One waits for the only slot, one sleeps out an hour's backoff.
        let waiting = tokio::spawn({
            let g = g.clone();
            async move { g.admit(Project::Outbound).await.map(drop) }
        });
        let backoff = tokio::spawn({
            let g = g.clone();
            async move { g.pause(Duration::from_secs(3600)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished() && !backoff.is_finished());
        g.stop();
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            (waiting.await.expect("task"), backoff.await.expect("task"))
        })
        .await
        .expect("both waits end at the stop");
        assert_eq!(ended.0, Err(Stopped));
        assert!(g.is_stopping());
        assert_eq!(g.admit(Project::Backfill).await.map(drop), Err(Stopped));
        drop(held);
        assert_eq!(g.lock().in_flight, 0, "a refused request holds nothing");
    }

    /// Time that moves only when someone sleeps on it: pacing runs as fast as the CPU
    /// allows and every wait is exact.
    #[derive(Debug)]
    struct ManualClock(Mutex<Timestamp>);

    impl Clock for ManualClock {
        fn now(&self) -> Timestamp {
            *self.0.lock().expect("clock")
        }

        fn sleep(&self, d: Duration) -> crate::throttle::clock::Sleep {
            if let Ok(mut t) = self.0.lock() {
                *t = t
                    .checked_add(jiff::SignedDuration::try_from(d).unwrap_or_default())
                    .unwrap_or(*t);
            }
            Box::pin(std::future::ready(()))
        }
    }

    fn manual(start: &str) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(start.parse().expect("ts"))))
    }

    /// 00:00–01:00 UTC at 24% of 86,400/day: a budget of 864 requests in that hour.
    fn hour_window() -> GovernorConfig {
        GovernorConfig {
            schedule: ScheduleConfig {
                time_zone: "UTC".into(),
                default_ceiling_percent: 0.0,
                windows: vec![WindowConfig {
                    days: "daily".into(),
                    start: "00:00".into(),
                    end: "01:00".into(),
                    ceiling_percent: 24.0,
                }],
            },
            burst_share: 0.0,
            burst_min_calls: 1,
            ..Default::default()
        }
    }

    fn with_clock(cfg: GovernorConfig, clock: Arc<ManualClock>) -> Arc<Governor> {
        Governor::new(
            cfg.validate().expect("valid"),
            clock,
            Arc::new(InstallationTelemetry::new("restored")),
        )
    }

    /// Admits requests back to back until `until`; returns how many went.
    async fn busy_until(g: &Arc<Governor>, clock: &ManualClock, until: Timestamp) -> u64 {
        let mut n = 0;
        loop {
            let permit = g.admit(Project::Backfill).await.expect("admitted");
            if clock.now() >= until {
                // Admitted after the window closed: not part of this window's spend.
                return n;
            }
            permit.success();
            n += 1;
        }
    }

    #[tokio::test]
    async fn a_restored_governor_keeps_todays_spend_and_paces_the_rest_of_the_window() {
        let clock = manual("2025-06-02T00:00:00Z");
        let a = with_clock(hour_window(), clock.clone());
        a.observe_usage(0, 86_400);
        // A spends 300 requests, paced, then stops at 00:40: 300 of the window's 864 spent.
        let stop = "2025-06-02T00:40:00Z".parse().expect("ts");
        for _ in 0..300 {
            a.admit(Project::Backfill)
                .await
                .expect("admitted")
                .success();
        }
        assert!(clock.now() < stop);
        clock
            .sleep(Duration::from_secs_f64(
                stop.duration_since(clock.now()).as_secs_f64(),
            ))
            .await;
        let snap = a.snapshot();
        assert_eq!(snap.installation.spent, 300);
        // Through serde, as a store would keep it.
        let json = serde_json::to_string(&snap).expect("serialise");
        let snap: GovernorSnapshot = serde_json::from_str(&json).expect("deserialise");
        drop(a);

        // The restarted host: a new governor on the same clock, restored.
        let b = with_clock(hour_window(), clock.clone());
        b.restore(&snap).expect("restore");
        assert_eq!(b.usage_24h(), 300);
        assert_eq!(b.daily_max(), Some(86_400));
        let ledger = b.window_ledger();
        assert_eq!(ledger.last().map(|r| r.spent), Some(300));
        // Busy for the last 20 minutes: it may spend what is left of the 864, and no more.
        let end = "2025-06-02T01:00:00Z".parse().expect("ts");
        let after = busy_until(&b, &clock, end).await;
        assert!(after <= 864 - 300, "{after}");
        assert!(
            after >= 864 - 300 - 2,
            "{after}: the window's budget is used, not stalled"
        );
        let rec = b.window_ledger();
        assert_eq!(rec.first().map(|r| r.spent), Some(300 + after));

        // Without the snapshot, the new governor presumes the 40 minutes were paced evenly
        // (576 spent) and grants only 288 more, leaving the 276 A never used on the table.
        let clock = manual("2025-06-02T00:40:00Z");
        let c = with_clock(hour_window(), clock.clone());
        c.observe_usage(0, 86_400);
        let fresh = busy_until(&c, &clock, end).await;
        assert!(
            fresh <= 288 && fresh as f64 >= 0.99 * 288.0 - 1.0,
            "{fresh}"
        );
        assert_eq!(c.usage_24h(), fresh + 1);
    }

    #[tokio::test]
    async fn a_day_of_polling_snapshots_in_quarter_hours_and_restores_its_count() {
        let clock = manual("2025-06-02T00:00:00Z");
        let a = with_clock(GovernorConfig::default(), clock.clone());
        a.observe_usage(0, 10_000_000);
        // Two requests every minute for a day, as an idle installation polling each minute.
        for _ in 0..24 * 60 {
            a.admit(Project::Incremental)
                .await
                .expect("admitted")
                .success();
            a.admit(Project::Incremental)
                .await
                .expect("admitted")
                .success();
            clock.sleep(Duration::from_secs(60)).await;
        }
        let spent = a.usage_24h();
        let snap = a.snapshot();
        assert!(
            snap.usage.len() <= 60 + 24 * 4,
            "{} entries",
            snap.usage.len()
        );
        assert_eq!(snap.usage.iter().map(|u| u.admitted).sum::<u64>(), spent);
        assert!(
            snap.usage.windows(2).all(|w| w[0].minute < w[1].minute),
            "in order"
        );

        let b = with_clock(GovernorConfig::default(), clock.clone());
        b.restore(&snap).expect("restore");
        assert_eq!(b.usage_24h(), spent);
        // An hour on, the oldest requests have rolled off, at most a quarter-hour late.
        clock.sleep(Duration::from_secs(3600)).await;
        b.admit(Project::Incremental)
            .await
            .expect("admitted")
            .success();
        a.admit(Project::Incremental)
            .await
            .expect("admitted")
            .success();
        let (late, exact) = (b.usage_24h(), a.usage_24h());
        assert!(late >= exact && late <= exact + 2 * 15, "{late} vs {exact}");
    }

    #[tokio::test]
    async fn a_snapshot_with_project_ceilings_round_trips_through_json() {
        let mut cfg = GovernorConfig::default();
        cfg.projects
            .insert(Project::Backfill, ScheduleConfig::constant("UTC", 20.0));
        let clock = manual("2025-06-02T12:00:00Z");
        let a = with_clock(cfg.clone(), clock.clone());
        a.observe_usage(10, 100_000);
        for _ in 0..3 {
            a.admit(Project::Backfill)
                .await
                .expect("admitted")
                .success();
        }
        let snap = a.snapshot();
        assert_eq!(
            snap.projects.get(&Project::Backfill).map(|p| p.spent),
            Some(3)
        );
        let json = serde_json::to_string(&snap).expect("serialise");
        let back: GovernorSnapshot = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, snap);
        let b = with_clock(cfg, clock.clone());
        b.restore(&back).expect("restore");
        assert_eq!(b.snapshot().projects, snap.projects);
    }

    #[tokio::test]
    async fn a_pause_survives_a_restart() {
        let cfg = GovernorConfig {
            headroom_probe_secs: 300,
            ..Default::default()
        };
        let clock = manual("2025-06-02T12:00:00Z");
        let a = with_clock(cfg.clone(), clock.clone());
        a.observe_usage(96_000, 100_000);
        let snap = a.snapshot();
        assert_eq!(snap.paused.as_deref(), Some("org_headroom"));
        let b = with_clock(cfg, clock.clone());
        b.restore(&snap).expect("restore");
        assert!(b.is_paused());
        let t0 = clock.now();
        let probe = b.admit(Project::Incremental).await.expect("admitted");
        let waited = clock.now().duration_since(t0).as_secs();
        assert!(
            waited >= 299,
            "only the headroom probe goes, 300 s on: {waited}"
        );
        probe.success();
        assert!(
            b.is_paused(),
            "still paused until the org reports room again"
        );
        b.observe_usage(50_000, 100_000);
        assert!(!b.is_paused());
    }

    #[tokio::test]
    async fn an_open_breaker_survives_a_restart() {
        let clock = manual("2025-06-02T12:00:00Z");
        let a = with_clock(GovernorConfig::default(), clock.clone());
        a.observe_usage(0, 100_000);
        for _ in 0..5 {
            a.on_failure("HTTP_503");
        }
        let snap = a.snapshot();
        assert_eq!(snap.breaker.state, crate::throttle::BreakerState::Open);
        let b = with_clock(GovernorConfig::default(), clock.clone());
        b.restore(&snap).expect("restore");
        let t0 = clock.now();
        let probe = b.admit(Project::Incremental).await.expect("admitted");
        let waited = clock.now().duration_since(t0).as_secs();
        assert!(waited >= 29, "the 30 s open spell is kept: {waited}");
        assert_eq!(
            b.lock().breaker.state(),
            crate::throttle::BreakerState::HalfOpen
        );
        probe.success();
        assert_eq!(
            b.lock().breaker.state(),
            crate::throttle::BreakerState::Closed
        );

        let mut future = b.snapshot();
        future.version = 99;
        assert_eq!(
            b.restore(&future),
            Err(RestoreError::UnsupportedVersion {
                found: 99,
                expected: SNAPSHOT_VERSION
            })
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut cfg = GovernorConfig::default();
        cfg.projects.insert(
            Project::Outbound,
            ScheduleConfig {
                time_zone: "UTC".into(),
                default_ceiling_percent: 10.0,
                windows: vec![WindowConfig {
                    days: "xyz".into(),
                    start: "09:00".into(),
                    end: "10:00".into(),
                    ceiling_percent: 1.0,
                }],
            },
        );
        let e = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("projects.outbound.windows[0].days"), "{e}");
        let cfg = GovernorConfig {
            max_concurrent_requests: 30,
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
        for (cfg, key) in [
            (
                GovernorConfig {
                    burst_share: 1.5,
                    ..Default::default()
                },
                "burst_share:",
            ),
            (
                GovernorConfig {
                    burst_share: f64::NAN,
                    ..Default::default()
                },
                "burst_share:",
            ),
            (
                GovernorConfig {
                    burst_min_calls: 0,
                    ..Default::default()
                },
                "burst_min_calls:",
            ),
        ] {
            let e = cfg
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with(key), "{e}");
        }
    }
}
