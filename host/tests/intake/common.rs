use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use weft::api::{AdminToken, ConnLimits, IntakeLimits, ServeConfig, Server, TokenHash};
use weft::store::{AcceptedEvent, GroupCommitConfig, RedbStore, Store};

pub const INSTALLATION: &str = "acme";

/// Each installation's own intake token, and the operator's.
pub const ACME_TOKEN: &str = "weft_acme_intake_token_for_tests";
pub const GLOBEX_TOKEN: &str = "weft_globex_intake_token_for_tests";
pub const ADMIN_TOKEN: &str = "operator-token-for-the-intake-tests";

/// Default headers that send `token` as the bearer.
pub fn client_headers(token: &str) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header value"),
    );
    headers
}

/// A client that sends `token` on every request.
pub fn client_with(token: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers(client_headers(token))
        .build()
        .expect("client")
}

/// A client with the operator token, which reaches every installation.
pub fn client() -> reqwest::Client {
    client_with(ADMIN_TOKEN)
}

pub fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("weft.redb")
}

/// Starts the API in-process on a free loopback port, with the operator token
/// [`ADMIN_TOKEN`].
pub async fn start(db: &Path) -> Server {
    start_with_admin(db, Some(AdminToken::new(ADMIN_TOKEN).expect("token"))).await
}

/// Starts the API with `admin_token` (`None`: the admin routes are off).
pub async fn start_with_admin(db: &Path, admin_token: Option<AdminToken>) -> Server {
    start_with_conn(db, admin_token, ConnLimits::default()).await
}

/// Starts the API with the operator token and these connection limits.
pub async fn start_with_limits(db: &Path, conn: ConnLimits) -> Server {
    start_with_conn(db, Some(AdminToken::new(ADMIN_TOKEN).expect("token")), conn).await
}

async fn start_with_conn(db: &Path, admin_token: Option<AdminToken>, conn: ConnLimits) -> Server {
    Server::start(
        ServeConfig {
            db: db.to_owned(),
            listen: "127.0.0.1:0".parse().expect("literal address"),
            installations: BTreeMap::from([
                (INSTALLATION.to_owned(), Some(TokenHash::of(ACME_TOKEN))),
                ("globex".to_owned(), Some(TokenHash::of(GLOBEX_TOKEN))),
            ]),
            group_commit: GroupCommitConfig::default(),
            limits: IntakeLimits::default(),
            admin_token,
            conn,
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
