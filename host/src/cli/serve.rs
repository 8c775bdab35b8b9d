//! `weft serve`: the intake/admin HTTP API over the host's store file, and one outbound
//! worker per configured installation draining its queue into its org.
//!
//! Start-up builds each installation through [`Installation::load`] (what `weft config
//! check` runs too). A file that does not load is reported with its file, key and reason
//! and that installation alone is not started — its events get `404` until it is fixed —
//! while every other installation starts: one tenant's bad file must not take the host
//! down for all of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::watch;

use super::governor_state;
use crate::api::{
    AdminToken, ConnLimits, ExtraMetrics, IntakeLimits, ServeConfig, Server, TokenHash,
};
use crate::outbound::{OutboundConfig, Pipeline};
use crate::plugin::{InstalledPlugins, PluginRuntime, QuarantinePolicy, RuntimeConfig};
use crate::runtime::Installation;
use crate::salesforce::SalesforceClient;
use crate::store::{GroupCommitConfig, Store};
use crate::telemetry::{Telemetry, spawn_status_writer};
use crate::throttle::Governor;

pub struct ServeArgs {
    pub db: PathBuf,
    pub listen: SocketAddr,
    pub installations: Vec<String>,
    pub configs: Vec<PathBuf>,
    pub status_file: PathBuf,
    pub max_batch_events: usize,
    pub max_wait_us: u64,
    pub worker_threads: Option<usize>,
    pub limits: IntakeLimits,
    pub admin_token: Option<AdminToken>,
    pub conn: ConnLimits,
}

/// An installation ready to sync, built from its configuration file.
struct Configured {
    id: String,
    intake_token: Option<TokenHash>,
    outbound: OutboundConfig,
    client: SalesforceClient,
    governor: Arc<Governor>,
}

/// The status file is rewritten this often; see `spawn_status_writer`.
const STATUS_EVERY: Duration = Duration::from_secs(5);

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.installations.is_empty() && args.configs.is_empty() {
        bail!(
            "no installations: pass --config FILE (repeatable) for each installation this host \
             syncs, or --installation ID to only accept its events"
        );
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.build().context("starting the Tokio runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let telemetry = Telemetry::new();
    let plugins = Arc::new(InstalledPlugins::new(QuarantinePolicy::default()));
    let (configured, refused) = configure(&args.configs, &telemetry, &plugins)?;
    let mut installations: BTreeMap<String, Option<TokenHash>> = args
        .installations
        .iter()
        .map(|id| (id.clone(), None))
        .collect();
    for c in &configured {
        if c.intake_token.is_none() {
            tracing::warn!(installation = %c.id, "no intake.token_sha256: only the admin token can post this installation's events");
        }
        installations.insert(c.id.clone(), c.intake_token);
    }
    let config = ServeConfig {
        db: args.db.clone(),
        listen: args.listen,
        installations,
        group_commit: GroupCommitConfig {
            max_batch_events: args.max_batch_events.max(1),
            max_wait: Duration::from_micros(args.max_wait_us),
            ..GroupCommitConfig::default()
        },
        limits: args.limits.clone(),
        admin_token: args.admin_token.clone(),
        conn: args.conn.clone(),
    };
    let metrics: ExtraMetrics = {
        let telemetry = telemetry.clone();
        Arc::new(move || telemetry.render_prometheus())
    };
    let db = config.db.clone();
    let count = config.installations.len();
    let server = Server::start(config, Some(metrics))
        .await
        .with_context(|| format!("starting the server on {}", db.display()))?;
    let addr = server.local_addr();
    // Before the status file's first write and the workers' first request: the governors
    // carry on from what the previous run spent today.
    let governors: Vec<(String, Arc<Governor>)> = configured
        .iter()
        .map(|c| (c.id.clone(), c.governor.clone()))
        .collect();
    for (id, governor) in &governors {
        governor_state::restore(&*server.store(), id, governor);
    }
    let saver = governor_state::spawn_saver(
        server.store(),
        governors.clone(),
        governor_state::SAVE_EVERY,
    );
    let store = server.store();
    let status = spawn_status_writer(telemetry.clone(), args.status_file.clone(), STATUS_EVERY);
    let (stop_workers, workers_stop) = watch::channel(false);
    let workers = start_workers(configured, &plugins, server.store(), workers_stop);
    // One JSON line on stdout so scripts (and tests) can find the port when `--listen`
    // asked for port 0.
    println!("{}", serde_json::json!({"listening": addr.to_string()}));
    eprintln!(
        "weft: serving {count} installation(s) ({} syncing, {refused} refused) on http://{addr} with store {}; \
         status in {}; admin API {}; Ctrl-C to stop",
        workers.len(),
        db.display(),
        args.status_file.display(),
        if args.admin_token.is_some() {
            "on (bearer token)"
        } else {
            "off (no --admin-token)"
        },
    );
    let (shutdown, running) = server.into_parts();
    tokio::spawn(async move {
        super::signal::stop_requested().await;
        eprintln!("weft: stopping; finishing in-flight requests and outbound rounds");
        let _ = stop_workers.send(true);
        for worker in workers {
            let _ = worker.await;
        }
        saver.abort();
        governor_state::save_all(&store, &governors).await;
        let _ = shutdown.send(());
    });
    running.wait().await.context("serving")?;
    status.abort();
    Ok(ExitCode::SUCCESS)
}

/// Loads every configuration file and builds its live objects. A file that does not load
/// (or repeats an id) is reported and skipped, so one installation's bad file never keeps
/// the others from starting; the returned count says how many were skipped.
fn configure(
    paths: &[PathBuf],
    telemetry: &Arc<Telemetry>,
    plugins: &Arc<InstalledPlugins>,
) -> anyhow::Result<(Vec<Configured>, usize)> {
    if paths.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let runtime =
        PluginRuntime::new(RuntimeConfig::default()).context("starting the plugin runtime")?;
    let mut out: Vec<Configured> = Vec::with_capacity(paths.len());
    let mut skipped = 0;
    for path in paths {
        let installation = match Installation::load(path, &runtime, telemetry) {
            Ok(installation) if out.iter().any(|c| c.id == installation.id()) => {
                Err(anyhow::anyhow!(
                    "{}: id: {:?} is configured twice",
                    path.display(),
                    installation.id()
                ))
            }
            Ok(installation) => Ok(installation),
            Err(e) => Err(anyhow::Error::new(e)),
        };
        let installation = match installation {
            Ok(installation) => installation,
            Err(e) => {
                skipped += 1;
                tracing::error!(file = %path.display(), error = %format!("{e:#}"), "installation not started");
                eprintln!("weft: not starting {}: {e:#}", path.display());
                continue;
            }
        };
        let plugin_config = installation.plugin_config();
        let Installation {
            config,
            governor,
            client,
            plugin,
        } = installation;
        plugins.install(&config.id, plugin, plugin_config);
        out.push(Configured {
            intake_token: config.intake_token,
            id: config.id,
            outbound: config.outbound,
            client,
            governor,
        });
    }
    if out.is_empty() {
        bail!(
            "none of the {} installation file(s) could be started",
            paths.len()
        );
    }
    Ok((out, skipped))
}

fn start_workers(
    configured: Vec<Configured>,
    plugins: &Arc<InstalledPlugins>,
    store: Arc<dyn Store>,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    configured
        .into_iter()
        .map(|c| {
            let span = tracing::info_span!("outbound", installation = %c.id);
            let pipeline =
                Pipeline::new(c.id, c.outbound, c.client, plugins.clone(), store.clone());
            let worker = crate::outbound::worker::run(pipeline, stop.clone());
            tokio::spawn(tracing::Instrument::instrument(worker, span))
        })
        .collect()
}
