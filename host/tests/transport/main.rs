//! The Salesforce transport and the quota governor against the emulator over real HTTP.
//!
//! One test binary (one link step); topic files below. Every test starts its own in-process
//! org on a free loopback port.

mod common;

mod auth;
mod bulk;
mod burst;
mod fault_storm;
mod governor_day;
mod gzip;
mod headroom;
mod query;
mod rss;
mod telemetry;
mod upsert;
