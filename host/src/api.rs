//! The admin and intake HTTP API (axum).
//!
//! Routes:
//!
//! - `POST /v1/installations/{id}/events` — product change events, made durable before the
//!   `202` (see [`intake`] for the body shape and every status it returns);
//! - `GET /v1/installations/{id}/events/{event_id}` — where an event is: `accepted`,
//!   `processed` or `dlq`;
//! - `GET /v1/installations/{id}/status`, `/dlq`, `/audit` — the installation's own
//!   health, DLQ and audit (its token or the operator's); see [`tenant`];
//! - `/v1/installations…` management (create, list, show, change, delete, token, pause,
//!   resume, sync now; operator token) — see [`installations`];
//! - `/v1/plugins…` — plugin components uploaded as `name@version` and named by specs
//!   (operator token) — see [`plugins`];
//! - `GET /metrics` — Prometheus text (operator token): intake counters, plus the
//!   transport telemetry when the host passes a renderer in ([`ExtraMetrics`]);
//! - `GET /healthz` — `ok`, the one route open without a token;
//! - `/v1/admin/dlq…` — the DLQ of the running host (list, show, replay, discard), behind a
//!   bearer token; see [`admin`]. Do not expose these routes publicly.
//!
//! The API owns request validation and status codes; it never writes to the store except
//! through the group-commit [`IntakeWriter`] (or, for admin actions, one store transaction
//! each), and never answers `2xx` for an event that is not durable.

pub mod admin;
pub mod auth;
pub mod conn;
pub mod directory;
pub mod installations;
pub mod intake;
mod metrics;
pub mod plugins;
pub mod tenant;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::runtime::Supervisor;
use crate::store::{GroupCommitConfig, IntakeWriter, RedbStore, Store, StoreError, WriterHandle};

pub use crate::token::{TokenHash, TokenHashError, new_token};
pub use admin::{AdminToken, AdminTokenError};
pub use conn::ConnLimits;
pub use directory::{Directory, Tenant};
pub use intake::{IntakeLimits, MAX_BODY_BYTES};
pub use metrics::IntakeCounters;

/// Renders more Prometheus text to append to `/metrics` (e.g. the transport telemetry's
/// registry). A closure rather than a concrete type so the API does not depend on which
/// subsystems a host runs.
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// What the handlers share.
pub struct ApiState {
    store: Arc<dyn Store>,
    writer: IntakeWriter,
    limits: IntakeLimits,
    /// The installations this host serves now (the supervisor changes it at run time).
    directory: Arc<Directory>,
    /// Creates, changes and removes installations; `None`: a host with a fixed set, whose
    /// installation-management routes answer `404`.
    supervisor: Option<Arc<Supervisor>>,
    extra_metrics: Option<ExtraMetrics>,
    /// Unlocks the admin routes; `None` turns them off.
    admin_token: Option<AdminToken>,
}

/// The API's routes over `state`, each behind its access layer (see [`auth`]); only
/// `/healthz` answers without a token.
pub fn router(state: Arc<ApiState>) -> Router {
    let installation_routes = Router::new()
        .route("/v1/installations/{id}/events", post(intake::post_events))
        .route(
            "/v1/installations/{id}/events/{event_id}",
            get(intake::event_status),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::installation_access,
        ));
    let operator_routes = Router::new()
        .route("/metrics", get(metrics::render))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::operator_access,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(installation_routes)
        .merge(operator_routes)
        .merge(admin::routes(state.clone()))
        .merge(installations::routes(state.clone()))
        .merge(plugins::routes(state.clone()))
        .merge(tenant::routes(state.clone()))
        .with_state(state)
}

/// Liveness for load balancers and orchestrators: the process serves HTTP. Says nothing
/// else, so it needs no token.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Everything `weft serve` needs, already validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db: std::path::PathBuf,
    pub listen: SocketAddr,
    /// Installations served besides the supervisor's, each with the hash of its own token
    /// (`None`: only the operator token reaches it).
    pub installations: BTreeMap<String, Option<TokenHash>>,
    pub group_commit: GroupCommitConfig,
    pub limits: IntakeLimits,
    /// The admin API's bearer token; `None` leaves the admin routes off (`403`).
    pub admin_token: Option<AdminToken>,
    /// What one connection may cost: timeouts, the connection cap, the head size.
    pub conn: ConnLimits,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the intake writer thread")]
    Writer(#[source] std::io::Error),
    #[error("serving HTTP")]
    Serve(#[source] std::io::Error),
}

/// A running API server: its address, and how to stop it.
pub struct Server {
    addr: SocketAddr,
    store: Arc<dyn Store>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    running: RunningServer,
}

impl Server {
    /// Opens the store, starts the writer and binds the listener; serving starts at once
    /// on the current Tokio runtime.
    pub async fn start(
        config: ServeConfig,
        extra_metrics: Option<ExtraMetrics>,
    ) -> Result<Server, ServeError> {
        let store = open_store(config.db.clone()).await?;
        Self::start_on(store, config, extra_metrics, None).await
    }

    /// Like [`Server::start`], on a store the caller opened, with the installation
    /// management routes served by `supervisor` when given (`weft serve`).
    pub async fn start_on(
        store: Arc<dyn Store>,
        config: ServeConfig,
        extra_metrics: Option<ExtraMetrics>,
        supervisor: Option<Arc<Supervisor>>,
    ) -> Result<Server, ServeError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let (intake, writer) =
            IntakeWriter::start(store.clone(), config.group_commit).map_err(ServeError::Writer)?;
        let directory = match &supervisor {
            Some(supervisor) => supervisor.directory(),
            None => Arc::new(Directory::new()),
        };
        for (id, token) in config.installations {
            directory.serve(&id, token);
        }
        let state = Arc::new(ApiState {
            store: store.clone(),
            writer: intake,
            limits: config.limits,
            directory,
            supervisor,
            extra_metrics,
            admin_token: config.admin_token,
        });
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, config.conn, async move {
            let _ = stop.await;
        }));
        Ok(Server {
            addr,
            store,
            shutdown,
            running: RunningServer { task, writer },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store the server opened: redb allows one handle per file and process, so the
    /// outbound workers share this one.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Stops accepting, lets in-flight requests finish (their events are committed first),
    /// then waits for the writer to drain and release the store file.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(());
        self.running.wait().await
    }

    /// Splits off the shutdown trigger, for callers that wait and signal from different
    /// places (e.g. `weft serve` on Ctrl-C).
    pub fn into_parts(self) -> (tokio::sync::oneshot::Sender<()>, RunningServer) {
        (self.shutdown, self.running)
    }
}

/// Opens (or creates) the store file off the async threads: opening may repair a file
/// after a crash, which reads all of it.
pub async fn open_store(db: std::path::PathBuf) -> Result<Arc<dyn Store>, ServeError> {
    let store = tokio::task::spawn_blocking(move || RedbStore::open(&db))
        .await
        .map_err(|join| ServeError::Writer(std::io::Error::other(join.to_string())))??;
    Ok(Arc::new(store))
}

/// A server whose shutdown trigger was taken by [`Server::into_parts`].
pub struct RunningServer {
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
    writer: WriterHandle,
}

impl RunningServer {
    /// Runs until the server stops, then waits for the writer to drain and release the
    /// store file.
    pub async fn wait(self) -> Result<(), ServeError> {
        let served = match self.task.await {
            Ok(result) => result,
            Err(join) => Err(ServeError::Serve(std::io::Error::other(join.to_string()))),
        };
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        served
    }
}

/// Serves the API on `listener` within `limits` (see [`conn`]) until `shutdown` resolves,
/// then waits for in-flight requests. Dropping the router here drops the state and with it
/// the last [`IntakeWriter`], which lets the writer thread finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    conn::serve(listener, router(state), limits, shutdown).await;
    Ok(())
}
