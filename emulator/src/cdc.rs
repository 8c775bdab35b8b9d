//! Change events: a CDC-shaped JSON event for every committed write, kept in a replayable
//! log and POSTed to a configured webhook.
//!
//! Owns the event shape (the CometD form of a change event: `channel`, `data.payload` with a
//! `ChangeEventHeader` — entityName, recordIds, changeType, changeOrigin, transactionKey,
//! sequenceNumber, commitTimestamp, commitNumber, commitUser, changedFields, nulledFields,
//! diffFields — plus the changed field values, and `data.event.replayId`), replay ids that
//! only grow, and delivery in commit order. Delivery is at-least-once with a few retries; a
//! webhook that stays down loses nothing from the log (`GET /__admin/events?after=`), and
//! delivery never blocks or fails the write that caused the event.

use crate::ids;
use crate::render::cell_to_json;
use crate::stats::Stats;
use crate::store::Store;
use crate::writes::{Change, ChangeKind};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// How many events the in-memory log keeps for replay. Salesforce keeps 72 h; a test org
/// needs far less, and 200,000 small events stay under ~100 MB.
const LOG_CAPACITY: usize = 200_000;
/// Delivery attempts per event before it is counted as failed (it stays in the log).
const DELIVERY_ATTEMPTS: u32 = 3;

#[derive(Debug)]
pub struct Cdc {
    log: Mutex<VecDeque<Value>>,
    replay: AtomicU64,
    commit: AtomicU64,
    tx_counter: AtomicU64,
    webhook: Arc<RwLock<Option<String>>>,
    sender: mpsc::UnboundedSender<Value>,
}

impl Cdc {
    /// Starts the delivery task on the current runtime.
    pub fn start(webhook: Option<String>, stats: Arc<Stats>) -> Arc<Cdc> {
        let (sender, rx) = mpsc::unbounded_channel();
        let webhook = Arc::new(RwLock::new(webhook));
        tokio::spawn(deliver(rx, webhook.clone(), stats));
        Arc::new(Cdc {
            log: Mutex::new(VecDeque::new()),
            replay: AtomicU64::new(0),
            commit: AtomicU64::new(1_000_000),
            tx_counter: AtomicU64::new(0),
            webhook,
            sender,
        })
    }

    pub fn set_webhook(&self, url: Option<String>) {
        if let Ok(mut w) = self.webhook.write() {
            *w = url;
        }
    }

    pub fn webhook(&self) -> Option<String> {
        self.webhook.read().ok().and_then(|w| w.clone())
    }

    /// Builds, logs and queues events for one transaction's changes. Must be called while
    /// the caller still holds the store lock it wrote under, so values match the commit.
    pub fn publish(
        &self,
        store: &Store,
        changes: &[Change],
        origin: &str,
        user_row: u32,
        now_ms: i64,
    ) -> u64 {
        if changes.is_empty() {
            return 0;
        }
        let tx = self.tx_counter.fetch_add(1, Ordering::Relaxed);
        let tx_key = format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            tx,
            now_ms as u64 & 0xffff,
            tx
        );
        let commit = self.commit.fetch_add(1, Ordering::Relaxed);
        let mut n = 0;
        for (seq, c) in changes.iter().enumerate() {
            let Some(t) = store.tables.get(c.table) else {
                continue;
            };
            let mut payload = Map::new();
            let changed: Vec<String> = if c.kind == ChangeKind::Update {
                c.changed.clone()
            } else {
                vec![]
            };
            let mut nulled = Vec::new();
            if matches!(c.kind, ChangeKind::Create | ChangeKind::Update) {
                for f in &t.def.fields {
                    if f.name == "Id" || f.name == "IsDeleted" {
                        continue;
                    }
                    let include = match c.kind {
                        ChangeKind::Update => c.changed.iter().any(|x| x == &f.name),
                        _ => true,
                    };
                    if !include {
                        continue;
                    }
                    let v = cell_to_json(&t.cell(&store.tables, f, c.row), f.ftype);
                    if v.is_null() {
                        if c.kind == ChangeKind::Update {
                            nulled.push(f.name.clone());
                        }
                        continue;
                    }
                    payload.insert(f.name.clone(), v);
                }
            }
            let replay = self.replay.fetch_add(1, Ordering::Relaxed) + 1;
            let entity = t.def.name.clone();
            let header = json!({
                "entityName": entity,
                "recordIds": [ids::make_id(&t.def.key_prefix, c.row)],
                "changeType": c.kind,
                "changeOrigin": origin,
                "transactionKey": tx_key,
                "sequenceNumber": seq + 1,
                "commitTimestamp": now_ms,
                "commitNumber": commit,
                "commitUser": ids::make_id(b"005", user_row),
                "changedFields": changed,
                "nulledFields": nulled,
                "diffFields": [],
            });
            payload.insert("ChangeEventHeader".into(), header);
            let channel = match entity.strip_suffix("__c") {
                Some(base) => format!("/data/{base}__ChangeEvent"),
                None => format!("/data/{entity}ChangeEvent"),
            };
            let event = json!({
                "channel": channel,
                "data": {
                    "schema": format!("weft-emulator-{entity}"),
                    "payload": Value::Object(payload),
                    "event": {"replayId": replay},
                },
            });
            if let Ok(mut log) = self.log.lock() {
                if log.len() >= LOG_CAPACITY {
                    log.pop_front();
                }
                log.push_back(event.clone());
            }
            if self.webhook().is_some() {
                let _ = self.sender.send(event);
            }
            n += 1;
        }
        n
    }

    /// Logged events with a replay id greater than `after`, oldest first, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Vec<Value> {
        self.log
            .lock()
            .map(|log| {
                log.iter()
                    .filter(|e| e["data"]["event"]["replayId"].as_u64().unwrap_or(0) > after)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn latest_replay_id(&self) -> u64 {
        self.replay.load(Ordering::Relaxed)
    }
}

async fn deliver(
    mut rx: mpsc::UnboundedReceiver<Value>,
    webhook: Arc<RwLock<Option<String>>>,
    stats: Arc<Stats>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .danger_accept_invalid_certs(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("change-event delivery disabled: {e}");
            return;
        }
    };
    while let Some(event) = rx.recv().await {
        let Some(url) = webhook.read().ok().and_then(|w| w.clone()) else {
            continue;
        };
        let mut ok = false;
        for attempt in 0..DELIVERY_ATTEMPTS {
            match client.post(&url).json(&event).send().await {
                Ok(r) if r.status().is_success() => {
                    ok = true;
                    break;
                }
                Ok(r) => tracing::warn!("webhook {url} answered {}", r.status()),
                Err(e) => tracing::warn!("webhook {url} failed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        stats.events(0, ok as u64, (!ok) as u64);
    }
}
