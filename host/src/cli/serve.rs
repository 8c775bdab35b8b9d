//! `weft serve`: the intake/admin HTTP API over the host's store file, and one outbound
//! worker per configured installation draining its queue into its org.
//!
//! The installations it runs are the ones in the store's registry. Each `--config` file is
//! checked as `weft config check` checks it and applied to the registry first (a file
//! already stored as it is keeps its version), so an installation applied at an earlier
//! start keeps running until it is deleted. Every stored spec is then built through
//! [`Installation::from_record`]. A file or spec that does not check is reported with its
//! key and reason and that installation alone is not started (a bad file leaves the last
//! stored spec in place) while every other installation starts: one tenant's bad file must
//! not take the host down for all of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::watch;

use super::governor_state;
use crate::api::{
    AdminToken, ConnLimits, ExtraMetrics, IntakeLimits, ServeConfig, Server, TokenHash, open_store,
};
use crate::config::InstallationConfig;
use crate::outbound::{OutboundConfig, Pipeline};
use crate::plugin::{InstalledPlugins, PluginRuntime, QuarantinePolicy, RuntimeConfig};
use crate::registry::{Applied, Registry};
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
    let store = open_store(args.db.clone())
        .await
        .with_context(|| format!("opening the store {}", args.db.display()))?;
    let registry = Registry::new(store.clone());
    let rejected_files = apply_files(&registry, &args.configs)?;
    let (configured, refused) = {
        let (registry, telemetry, plugins) = (registry.clone(), telemetry.clone(), plugins.clone());
        // Compiling components is CPU work: off the async threads.
        tokio::task::spawn_blocking(move || configure(&registry, &telemetry, &plugins))
            .await
            .context("starting the installations")??
    };
    let refused = refused + rejected_files;
    if configured.is_empty() && args.installations.is_empty() {
        bail!(
            "no installation to run ({refused} refused, see above): pass --config FILE \
             (repeatable) for each installation this host syncs, or --installation ID to only \
             accept its events"
        );
    }
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
    let server = Server::start_on(store, config, Some(metrics))
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

/// Checks each file and applies it to the registry. A file that does not check (or repeats
/// another file's id) is reported and skipped; the count says how many.
fn apply_files(registry: &Registry, paths: &[PathBuf]) -> anyhow::Result<usize> {
    let mut applied: Vec<String> = Vec::with_capacity(paths.len());
    let mut rejected = 0;
    for path in paths {
        match apply_file(registry, path, &applied) {
            Ok(id) => applied.push(id),
            Err(e) => {
                rejected += 1;
                tracing::error!(file = %path.display(), error = %format!("{e:#}"), "installation file not applied");
                eprintln!("weft: not applying {}: {e:#}", path.display());
            }
        }
    }
    Ok(rejected)
}

fn apply_file(registry: &Registry, path: &Path, applied: &[String]) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).context("reading the file")?;
    let (config, document) = InstallationConfig::document(path, &text)?;
    if applied.contains(&config.id) {
        bail!("id: {:?} is configured twice", config.id);
    }
    // Relative paths in the file resolve against its directory, wherever the host runs.
    let base = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base)
        .with_context(|| format!("resolving the directory {}", base.display()))?;
    let (record, outcome) =
        registry.apply_declared(&config.id, document, base, jiff::Timestamp::now())?;
    if outcome != Applied::Unchanged {
        tracing::info!(installation = %record.id, version = record.version, ?outcome, "installation spec applied");
    }
    Ok(config.id)
}

/// Builds the live objects of every installation in the registry. A spec that does not
/// build is reported and skipped, so one installation never keeps the others from
/// starting; the returned count says how many were skipped.
fn configure(
    registry: &Registry,
    telemetry: &Arc<Telemetry>,
    plugins: &Arc<InstalledPlugins>,
) -> anyhow::Result<(Vec<Configured>, usize)> {
    let records = registry.list().context("reading the registry")?;
    if records.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let runtime =
        PluginRuntime::new(RuntimeConfig::default()).context("starting the plugin runtime")?;
    let mut out: Vec<Configured> = Vec::with_capacity(records.len());
    let mut skipped = 0;
    for record in records {
        let built = record.map_err(anyhow::Error::new).and_then(|record| {
            Installation::from_record(&record, &runtime, telemetry).map_err(anyhow::Error::new)
        });
        let installation = match built {
            Ok(installation) => installation,
            Err(e) => {
                skipped += 1;
                tracing::error!(error = %format!("{e:#}"), "installation not started");
                eprintln!("weft: not starting {e:#}");
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
