//! The outbound pipeline: accepted product events → plugin map and coerce → validation
//! against the org's describe → conflict check → upsert by external id → audit, retry or
//! DLQ.
//!
//! What it guarantees: every accepted event ends written to Salesforce (and audited),
//! skipped on purpose (and audited: a lost conflict, a stale event, an ignored delete),
//! waiting in the retry schedule, or in the DLQ with the stage, Salesforce's error code,
//! message and fields — never nowhere. Events for one record apply in the order they
//! occurred, and an event older than one already applied never overwrites it. It never
//! writes the store outside one transaction per round, and never talks to Salesforce
//! except through the installation's throttled client (and that client's session for the
//! one `userinfo` look-up, which is not an API call; see [`identity`]).
//!
//! Modules, in the order a round uses them: [`transform`] (plugin map → coerce),
//! [`current`] (the conflict read; [`identity`] tells Weft's own changes apart), [`validate`] (describe rules, Salesforce's codes),
//! [`resolve`] (the plugin's per-field decision), [`write`] (Collections or Bulk),
//! [`outcome`] and [`retry`] (where each event ends), [`pipeline`] (one round) and
//! [`worker`] (the loop `weft serve` runs per installation). Settings: [`config`].

pub mod config;
pub mod current;
pub mod identity;
pub mod outcome;
pub mod pipeline;
pub mod resolve;
pub mod retry;
pub mod schemas;
pub mod transform;
pub mod validate;
pub mod worker;
pub mod write;

pub use config::{DeletePolicy, ObjectConfig, OutboundConfig, OutboundConfigError, RetryConfig};
pub use pipeline::{OutboundError, Pipeline, RoundReport};
