//! One page of Salesforce rows → the installation's plugin (map → coerce → dedup keys) →
//! deliveries for the sink and DLQ entries for what the plugin rejected.
//!
//! Deletes skip the plugin: there is nothing to map, and a delete must reach the product
//! even when the plugin is broken. A whole-batch plugin failure (trap, timeout, quarantine)
//! dead-letters every live row of the page with the failure's kind, and the sync goes on.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::rows;
use super::sink::{Delivery, Op, Output};
use crate::plugin::{self, Direction, InstalledPlugins, ObjectSchema};
use crate::store::{DlqOriginal, NewDlqEntry, Stage};

/// A page ready to commit: what goes to the sink, what goes to the DLQ.
#[derive(Debug, Default)]
pub struct Prepared {
    pub deliveries: Vec<Delivery>,
    pub dead: Vec<NewDlqEntry>,
}

/// The plugin side of an installation, shared by its objects.
#[derive(Clone)]
pub struct PluginPath {
    pub installation: Arc<str>,
    pub plugins: Arc<InstalledPlugins>,
}

impl PluginPath {
    /// Runs `rows` of `object` through the plugin. `schema` is the object's describe as a
    /// plugin schema: an identity mapping coerces against it.
    pub async fn prepare(
        &self,
        object: &str,
        rows: Vec<Map<String, Value>>,
        schema: Arc<ObjectSchema>,
    ) -> Prepared {
        let mut out = Prepared::default();
        let now = Timestamp::now();
        let mut live = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let (Some(id), Some(stamp)) = (rows::id(&row), rows::modstamp(&row)) else {
                out.dead.push(self.dead(
                    object,
                    row,
                    Stage::Map,
                    "MALFORMED_ROW",
                    "the row has no Id or no readable SystemModstamp".into(),
                    now,
                ));
                continue;
            };
            let key = Key {
                id: id.to_owned(),
                stamp,
            };
            if rows::is_deleted(&row) {
                out.deliveries
                    .push(self.delivery(object, &key, Op::Delete, Vec::new()));
            } else {
                keys.push(key);
                live.push(row);
            }
        }
        if live.is_empty() {
            return out;
        }
        // Building the batch is CPU work too: it happens with the calls, off the runtime.
        // The rows stay shared so that a failed call still dead-letters every one.
        let live = Arc::new(live);
        let chain = {
            let (plugins, installation) = (self.plugins.clone(), self.installation.clone());
            let (live, object) = (live.clone(), object.to_owned());
            plugin::off_the_runtime(move || {
                let batch = plugin::batch_from_json(&object, &live);
                let calls = (&*plugins, &*installation);
                plugin::run_chain(
                    &calls,
                    Direction::Inbound,
                    &batch,
                    std::slice::from_ref(&*schema),
                )
            })
            .await
        };
        let live = Arc::try_unwrap(live).unwrap_or_else(|shared| (*shared).clone());
        let chain = match chain {
            Ok(Ok(chain)) => chain,
            Ok(Err(e)) => {
                let code = e.error.dlq_code();
                let stage = store_stage(e.stage);
                let message = e.to_string();
                for row in live {
                    out.dead
                        .push(self.dead(object, row, stage, &code, message.clone(), now));
                }
                return out;
            }
            Err(e) => {
                let (code, message) = (e.dlq_code(), e.to_string());
                for row in live {
                    out.dead
                        .push(self.dead(object, row, Stage::Map, &code, message.clone(), now));
                }
                return out;
            }
        };
        let mut outputs: BTreeMap<u32, Vec<Output>> = BTreeMap::new();
        for record in chain.records {
            outputs.entry(record.source).or_default().push(Output {
                object: record.object,
                fields: record.fields,
                keys: record.keys.into_iter().collect(),
            });
        }
        let mut failed: BTreeMap<u32, (Stage, String)> = BTreeMap::new();
        for failure in chain.failures {
            failed
                .entry(failure.source)
                .or_insert((store_stage(failure.stage), failure.reason));
        }
        for (i, (row, key)) in live.into_iter().zip(keys).enumerate() {
            let source = i as u32;
            if let Some((stage, reason)) = failed.remove(&source) {
                out.dead
                    .push(self.dead(object, row, stage, "PLUGIN_REJECTED", reason, now));
            } else {
                let output = outputs.remove(&source).unwrap_or_default();
                out.deliveries
                    .push(self.delivery(object, &key, Op::Upsert, output));
            }
        }
        out
    }

    fn delivery(&self, object: &str, key: &Key, op: Op, output: Vec<Output>) -> Delivery {
        let stamp = key.stamp.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        Delivery {
            idempotency_key: format!("{}/{object}/{}/{stamp}", self.installation, key.id),
            object: object.to_owned(),
            id: key.id.clone(),
            system_modstamp: stamp,
            op,
            output,
        }
    }

    fn dead(
        &self,
        object: &str,
        record: Map<String, Value>,
        stage: Stage,
        code: &str,
        message: String,
        at: Timestamp,
    ) -> NewDlqEntry {
        NewDlqEntry {
            installation: self.installation.to_string(),
            original: DlqOriginal::Record {
                object: object.to_owned(),
                record,
            },
            stage,
            error_code: code.to_owned(),
            message,
            fields: Vec::new(),
            at,
        }
    }
}

struct Key {
    id: String,
    stamp: Timestamp,
}

fn store_stage(stage: plugin::Stage) -> Stage {
    match stage {
        plugin::Stage::Map => Stage::Map,
        plugin::Stage::Coerce => Stage::Coerce,
        plugin::Stage::Dedup => Stage::Dedup,
    }
}
