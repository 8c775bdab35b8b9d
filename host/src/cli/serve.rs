//! `weft serve`: the intake/admin HTTP API over the host's store file, and the
//! [`Supervisor`] running one outbound worker per installation, draining its queue into its
//! org.
//!
//! The installations it runs are the ones in the store's registry. Each `--config` file is
//! checked as `weft config check` checks it and applied to the registry first (a file
//! already stored as it is keeps its version), so an installation applied at an earlier
//! start — or created through the API — keeps running until it is deleted. A file or spec
//! that does not check is reported with its key and reason and that installation alone is
//! not started (a bad file leaves the last stored spec in place) while every other
//! installation starts: one tenant's bad file must not take the host down for all of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{
    AdminToken, ConnLimits, ExtraMetrics, IntakeLimits, ServeConfig, Server, open_store,
};
use crate::config::InstallationConfig;
use crate::plugin::{InstalledPlugins, PluginRuntime, QuarantinePolicy, RuntimeConfig};
use crate::registry::{Applied, Registry};
use crate::runtime::{Scheduler, SchedulerConfig, Supervisor, SupervisorParts, governor_state};
use crate::secrets::Keyring;
use crate::store::GroupCommitConfig;
use crate::telemetry::{Telemetry, spawn_status_writer};
use anyhow::{Context, bail};

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
    pub scheduler: SchedulerConfig,
    /// Seals and opens the Salesforce secrets given through the API.
    pub keyring: Option<Arc<Keyring>>,
}

/// The status file is rewritten this often; see `spawn_status_writer`. It renders every
/// installation of the host (tens of milliseconds for a thousand), while each one's own
/// figures are live at `GET /v1/installations/{id}/status`: every 30 s keeps an idle host
/// idle.
const STATUS_EVERY: Duration = Duration::from_secs(30);

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
    let runtime =
        PluginRuntime::new(RuntimeConfig::default()).context("starting the plugin runtime")?;
    // A document posted to the API resolves relative paths against where the host runs.
    let base_dir = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .context("resolving the working directory")?;
    let supervisor = Arc::new(Supervisor::new(SupervisorParts {
        registry,
        store: store.clone(),
        telemetry: telemetry.clone(),
        plugins,
        runtime,
        base_dir,
        scheduler: Scheduler::new(args.scheduler),
        keyring: args.keyring.clone(),
    }));
    let started = supervisor
        .start_stored()
        .await
        .context("reading the registry")?;
    let refused = started.refused + rejected_files;
    if started.running == 0 && args.installations.is_empty() && args.admin_token.is_none() {
        bail!(
            "no installation to run ({refused} refused, see above): pass --config FILE \
             (repeatable) for each installation this host syncs, --installation ID to only \
             accept its events, or --admin-token to create installations through the API"
        );
    }
    let config = ServeConfig {
        db: args.db.clone(),
        listen: args.listen,
        installations: args
            .installations
            .iter()
            .map(|id| (id.clone(), None))
            .collect(),
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
    let server = Server::start_on(store, config, Some(metrics), Some(supervisor.clone()))
        .await
        .with_context(|| format!("starting the server on {}", db.display()))?;
    let addr = server.local_addr();
    let saver = supervisor.spawn_saver(governor_state::SAVE_EVERY);
    let switcher = supervisor.spawn_switcher();
    let status = spawn_status_writer(telemetry.clone(), args.status_file.clone(), STATUS_EVERY);
    // One JSON line on stdout so scripts (and tests) can find the port when `--listen`
    // asked for port 0.
    println!("{}", serde_json::json!({"listening": addr.to_string()}));
    eprintln!(
        "weft: serving {} installation(s) ({} syncing, {refused} refused) on http://{addr} with store {}; \
         status in {}; admin API {}; Ctrl-C to stop",
        supervisor.directory().len(),
        started.running,
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
        saver.abort();
        switcher.abort();
        supervisor.stop_all().await;
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
