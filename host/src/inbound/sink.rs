//! Where synced records go: NDJSON files per object (the embedded default) or the vendor's
//! HTTP endpoint.
//!
//! A sink's `deliver` returns only once the records are durable on the other side (fsynced,
//! or acknowledged with a 2xx); the caller checkpoints after that. A crash between the two
//! re-delivers at most that page, and every delivery carries an idempotency key made of the
//! record's object, Id and `SystemModstamp`, so a re-delivered record is recognisably the
//! same version. The NDJSON files can do better: a backfill's checkpoint records where the
//! file ended ([`Sink::end`]) and a resumed backfill cuts it back there ([`Sink::cut`]), so
//! the file holds each page once.

mod encode;
mod http;
mod ndjson;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::watch;

pub use encode::{Deliveries, DeliveryRef, OutputRow};
pub use http::HttpSink;
pub use ndjson::NdjsonSink;

use crate::config::SinkConfig;

/// What happened to the record in Salesforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Upsert,
    Delete,
}

/// One record the plugin produced from a Salesforce row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub object: String,
    pub fields: Map<String, Value>,
    /// Dedup and join keys by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
}

/// One Salesforce record version, delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The Salesforce object, e.g. `Account`.
    pub object: String,
    pub id: String,
    /// RFC 3339, millisecond precision.
    pub system_modstamp: String,
    pub op: Op,
    /// The plugin's output (empty for a delete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<Output>,
    /// `installation/object/Id/SystemModstamp`: the same for every delivery of this version.
    pub idempotency_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the endpoint refused the batch with {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the endpoint did not accept the batch after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    #[error("encoding a delivery: {0}")]
    Encode(#[from] serde_json::Error),
    /// The sync was asked to stop while the sink waited to retry; the page was not
    /// delivered (as far as the sync knows) and is delivered again on resume.
    #[error("stopped while waiting to retry")]
    Stopped,
}

/// A configured sink.
pub enum Sink {
    Ndjson(NdjsonSink),
    Http(HttpSink),
}

impl Sink {
    pub fn open(config: &SinkConfig, installation: &str) -> Result<Sink, SinkError> {
        Ok(match config {
            SinkConfig::Ndjson { dir } => Sink::Ndjson(NdjsonSink::open(dir)?),
            SinkConfig::Http {
                url,
                token_env,
                batch,
            } => Sink::Http(HttpSink::new(
                url,
                token_env.as_deref().and_then(|v| std::env::var(v).ok()),
                *batch,
                installation,
            )?),
        })
    }

    /// Ends the sink's retry waits when `stop` turns true (an endpoint's; the files never
    /// wait).
    pub fn stop_on(&mut self, stop: watch::Receiver<bool>) {
        if let Sink::Http(sink) = self {
            sink.stop_on(stop);
        }
    }

    /// Where the object's records end in the sink, for a sink that can cut back to it (the
    /// NDJSON files); `None` for one that cannot take back what it accepted (an endpoint).
    pub fn end(&mut self, object: &str) -> Result<Option<u64>, SinkError> {
        match self {
            Sink::Ndjson(sink) => sink.len(object).map(Some),
            Sink::Http(_) => Ok(None),
        }
    }

    /// Drops what was delivered for the object past `end` (see [`Sink::end`]).
    pub fn cut(&mut self, object: &str, end: u64) -> Result<(), SinkError> {
        match self {
            Sink::Ndjson(sink) => sink.cut(object, end),
            Sink::Http(_) => Ok(()),
        }
    }

    /// Makes `deliveries` (all of one object) durable in the sink.
    pub async fn deliver(
        &mut self,
        object: &str,
        deliveries: &Deliveries,
    ) -> Result<(), SinkError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Ndjson(sink) => sink.deliver(object, deliveries).await,
            Sink::Http(sink) => sink.deliver(deliveries).await,
        }
    }
}
