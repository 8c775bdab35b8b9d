//! Where each event of a round ends: written (with its audit entries), in the retry
//! schedule, in the DLQ, or held back for a later round — exactly one of these.
//!
//! An event can map to several Salesforce records; its outcome combines theirs: any
//! permanent failure sends the whole event to the DLQ (a replay re-sends all of it, and
//! upsert by external id makes re-sending the written part harmless), else any transient
//! failure retries the whole event, else it is done.

use jiff::Timestamp;

use crate::salesforce::SalesforceError;
use crate::salesforce::error::Disposition;
use crate::store::{AppliedMark, AuditEntry, Stage};

/// Why a record did not reach Salesforce (yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub stage: Stage,
    /// Salesforce's `errorCode`, or the host's own code for failures before Salesforce.
    pub code: String,
    pub message: String,
    pub fields: Vec<String>,
    /// Transient (lock, timeout, 5xx): worth another round.
    pub retryable: bool,
}

impl Problem {
    pub fn permanent(stage: Stage, code: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            stage,
            code: code.into(),
            message: message.into(),
            fields: Vec::new(),
            retryable: false,
        }
    }

    pub fn with_fields(mut self, fields: Vec<String>) -> Self {
        self.fields = fields;
        self
    }

    /// A request not sent because the installation is stopping (see [`EventOutcome::Interrupted`]).
    fn is_interruption(&self) -> bool {
        self.code == INTERRUPTED
    }

    /// A failed Salesforce request, classified by the transport's own retry rules.
    pub fn from_salesforce(stage: Stage, error: &SalesforceError) -> Self {
        if matches!(error, SalesforceError::Stopped) {
            return Problem {
                stage,
                code: INTERRUPTED.into(),
                message: error.to_string(),
                fields: Vec::new(),
                retryable: true,
            };
        }
        let retryable = match error {
            // The transport already retried as long as its policy allows; the pipeline's
            // own schedule gives the cause minutes more before an operator is involved.
            SalesforceError::RetriesExhausted { last, .. } => {
                !matches!(last.disposition(), Disposition::Final)
            }
            other => !matches!(other.disposition(), Disposition::Final),
        };
        let fields = match error {
            SalesforceError::Api { errors, .. } => {
                errors.first().map(|e| e.fields.clone()).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        Problem {
            stage,
            code: error.metric_code(),
            message: error.to_string(),
            fields,
            retryable,
        }
    }
}

/// The code of a request the host did not send because the installation was stopping. It
/// never reaches the DLQ or the retry schedule: the event stays queued as it was.
const INTERRUPTED: &str = "HOST_STOPPING";

/// Per-record error codes that clear on their own. The transport re-sends row locks within
/// a call; whatever is still locked after that, or failed with the whole request (a
/// timeout, a reset, a 5xx), comes back here and gets another round.
pub fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "UNABLE_TO_LOCK_ROW"
            | "SERVER_UNAVAILABLE"
            | "REQUEST_LIMIT_EXCEEDED"
            | "UNKNOWN_EXCEPTION"
            | "timeout"
            | "connect"
            | "reset"
            | "io"
    ) || code.starts_with("HTTP_5")
}

/// A finished write of one record: what to audit and the record's new ordering mark.
#[derive(Debug, Clone)]
pub struct Applied {
    pub audit: AuditEntry,
    /// `(object, record key, mark)`; none when nothing was written (e.g. a stale event).
    pub mark: Option<(String, String, AppliedMark)>,
}

/// The combined outcome of one event in a round.
#[derive(Debug, Clone, Default)]
pub enum EventOutcome {
    /// Not looked at in this round (an earlier event for the same record goes first).
    #[default]
    Deferred,
    Done(Vec<Applied>),
    Retry(Problem),
    Dlq(Problem),
    /// The installation stopped before all of the event's records were sent: neither a
    /// failure nor an attempt. The event stays queued, untouched, and is sent whole (its
    /// written part again, harmlessly, by external id) in the next run.
    Interrupted,
}

/// Collects the outcomes of a round's events as their records finish.
#[derive(Debug)]
pub struct Tally {
    outcomes: Vec<EventOutcome>,
    /// `(object, key)` of each event's records, for ordering later events behind a retry.
    keys: Vec<Vec<(String, String)>>,
}

impl Tally {
    pub fn new(events: usize) -> Self {
        Tally {
            outcomes: vec![EventOutcome::Deferred; events],
            keys: vec![Vec::new(); events],
        }
    }

    pub fn note_key(&mut self, event: usize, object: &str, key: &str) {
        if let Some(keys) = self.keys.get_mut(event) {
            keys.push((object.to_owned(), key.to_owned()));
        }
    }

    pub fn keys(&self, event: usize) -> &[(String, String)] {
        self.keys.get(event).map_or(&[], Vec::as_slice)
    }

    /// Whether the event is out of this round (failed, or interrupted by a stop).
    pub fn is_failed(&self, event: usize) -> bool {
        matches!(
            self.outcomes.get(event),
            Some(EventOutcome::Dlq(_) | EventOutcome::Retry(_) | EventOutcome::Interrupted)
        )
    }

    pub fn is_deferred(&self, event: usize) -> bool {
        matches!(self.outcomes.get(event), Some(EventOutcome::Deferred))
    }

    /// Marks an event as started (its records will report in); a started event with no
    /// records (e.g. a mapping that emitted nothing) is done.
    pub fn start(&mut self, event: usize) {
        if let Some(slot @ EventOutcome::Deferred) = self.outcomes.get_mut(event) {
            *slot = EventOutcome::Done(Vec::new());
        }
    }

    /// Holds an event back for a later round.
    pub fn defer(&mut self, event: usize) {
        if let Some(slot) = self.outcomes.get_mut(event) {
            *slot = EventOutcome::Deferred;
        }
    }

    pub fn fail(&mut self, event: usize, problem: Problem) {
        let Some(slot) = self.outcomes.get_mut(event) else {
            return;
        };
        match slot {
            // The first permanent failure is the one to diagnose.
            EventOutcome::Dlq(_) => {}
            _ if problem.is_interruption() => *slot = EventOutcome::Interrupted,
            // A permanent failure found before the stop is still the event's diagnosis.
            EventOutcome::Interrupted if problem.retryable => {}
            EventOutcome::Retry(_) if problem.retryable => {}
            _ if problem.retryable => *slot = EventOutcome::Retry(problem),
            _ => *slot = EventOutcome::Dlq(problem),
        }
    }

    pub fn applied(&mut self, event: usize, applied: Applied) {
        match self.outcomes.get_mut(event) {
            Some(EventOutcome::Done(list)) => list.push(applied),
            Some(slot @ EventOutcome::Deferred) => *slot = EventOutcome::Done(vec![applied]),
            // Already failed: the event is re-sent whole, so this record's write is
            // repeated (harmlessly, by external id) and audited then.
            _ => {}
        }
    }

    pub fn into_outcomes(self) -> Vec<EventOutcome> {
        self.outcomes
    }
}

/// A timestamp in Salesforce's text (`2024-05-20T20:49:32.000+0000`) or RFC 3339.
pub fn parse_salesforce_time(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok().or_else(|| {
        jiff::fmt::strtime::parse("%Y-%m-%dT%H:%M:%S%.f%z", text)
            .ok()?
            .to_timestamp()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_salesforce_timestamps() {
        let t = parse_salesforce_time("2024-05-20T20:49:32.000+0000").unwrap();
        assert_eq!(t.to_string(), "2024-05-20T20:49:32Z");
        assert!(parse_salesforce_time("2024-05-20T20:49:32Z").is_some());
        assert!(parse_salesforce_time("yesterday").is_none());
    }

    #[test]
    fn a_permanent_failure_wins_over_a_transient_one() {
        let mut tally = Tally::new(1);
        tally.start(0);
        let mut lock = Problem::permanent(Stage::Write, "UNABLE_TO_LOCK_ROW", "locked");
        lock.retryable = true;
        tally.fail(0, lock);
        tally.fail(
            0,
            Problem::permanent(Stage::Write, "STRING_TOO_LONG", "long"),
        );
        match &tally.into_outcomes()[0] {
            EventOutcome::Dlq(p) => assert_eq!(p.code, "STRING_TOO_LONG"),
            other => panic!("{other:?}"),
        }
    }
}
