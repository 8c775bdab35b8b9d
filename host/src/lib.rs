//! Weft: keeps many customers' Salesforce orgs in sync with a product.
//!
//! The host owns what must be the same for every customer and must never break; what
//! differs per customer runs as a sandboxed WebAssembly plugin behind one WIT contract
//! ([`plugin`]).

pub mod api;
pub mod artifacts;
pub mod blocking;
pub mod cli;
pub mod config;
pub mod inbound;
pub mod outbound;
pub mod plugin;
pub mod registry;
pub mod retry;
pub mod runtime;
pub mod salesforce;
pub mod secrets;
pub mod stamp;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod token;
