use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use weft::api::{IntakeLimits, ServeConfig, Server};
use weft::store::{AcceptedEvent, GroupCommitConfig, RedbStore, Store};

pub const INSTALLATION: &str = "acme";

pub fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("weft.redb")
}

/// Starts the API in-process on a free loopback port.
pub async fn start(db: &Path) -> Server {
    Server::start(
        ServeConfig {
            db: db.to_owned(),
            listen: "127.0.0.1:0".parse().expect("literal address"),
            installations: BTreeSet::from([INSTALLATION.to_owned(), "globex".to_owned()]),
            group_commit: GroupCommitConfig::default(),
            limits: IntakeLimits::default(),
            admin_token: None,
        },
        None,
    )
    .await
    .expect("server starts")
}

pub fn events_url(server: &Server, installation: &str) -> String {
    format!(
        "http://{}/v1/installations/{installation}/events",
        server.local_addr()
    )
}

pub fn event(id: &str) -> Value {
    json!({
        "id": id,
        "object": "company",
        "operation": "upsert",
        "occurred_at": "2026-01-01T00:00:00Z",
        "record": {"id": format!("c-{id}"), "name": "Acme Corp", "employees": 42},
    })
}

/// Every accepted event of an installation, in seq order.
pub fn all_events(db: &Path, installation: &str) -> Vec<AcceptedEvent> {
    let store = RedbStore::open(db).expect("store opens");
    store
        .events(installation, None, usize::MAX)
        .expect("events read")
}
