//! `weft sync`: backfill, then incremental passes, for one installation.
//!
//! The configuration file is read again before every pass: objects or fields added to it
//! (and a new plugin build) take effect on the next pass without a restart; a file that no
//! longer validates is reported and the previous configuration stays in force.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::config::{InstallationConfig, PluginSource};
use crate::inbound::{InboundSync, PassReport, Progress};
use crate::plugin::{
    InstalledPlugins, PluginConfig, PluginRuntime, QuarantinePolicy, RuntimeConfig,
};
use crate::runtime::{Installation, governor_state};
use crate::store::{RedbStore, Store};
use crate::telemetry::{InstallationTelemetry, Telemetry};

pub struct SyncArgs {
    pub config: PathBuf,
    pub db: PathBuf,
    pub once: bool,
    pub status_file: Option<PathBuf>,
}

pub fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    runtime.block_on(sync(args))
}

async fn sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let telemetry = Telemetry::new();
    let cache_dir = args
        .db
        .parent()
        .unwrap_or(Path::new("."))
        .join("weft-plugin-cache");
    let plugin_runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(cache_dir),
        ..RuntimeConfig::default()
    })
    .context("starting the plugin runtime")?;
    // The one place an installation's live objects are built, as `weft serve` builds them.
    let Installation {
        mut config,
        governor,
        client,
        plugin,
        ..
    } = Installation::load(&args.config, &plugin_runtime, &telemetry)?;
    let id = config.id.clone();
    let installation = telemetry.installation(&id);
    // The store opens before the first request so the governor starts from what the last
    // run spent today.
    let store: Arc<dyn Store> = Arc::new(
        RedbStore::open(&args.db).with_context(|| format!("opening {}", args.db.display()))?,
    );
    governor_state::restore(&*store, &id, &governor);
    let governors = vec![(id.clone(), governor.clone())];
    let saved = governor_state::Saved::new();
    let plugins = Arc::new(InstalledPlugins::new(QuarantinePolicy::default()));
    plugins.install(
        &id,
        plugin,
        PluginConfig {
            values: config.plugin.config.clone(),
            limits: config.plugin.limits.clone(),
        },
    );
    let saver = governor_state::spawn_saver(
        store.clone(),
        governors.clone(),
        saved.clone(),
        governor_state::SAVE_EVERY,
    );
    let mut inbound = InboundSync::new(
        &id,
        config.inbound.clone(),
        client,
        plugins.clone(),
        store.clone(),
    )
    .context("opening the sink")?;
    if let Some(path) = args.status_file.clone() {
        crate::telemetry::spawn_status_writer(telemetry.clone(), path, Duration::from_secs(5));
    }
    let reporter = tokio::spawn(report_progress(inbound.progress(), installation.clone()));
    let mut stamp = modified(&args.config);
    let mut failures = 0u32;
    let outcome = loop {
        let pass = tokio::select! {
            pass = inbound.pass() => pass,
            _ = super::signal::stop_requested() => {
                eprintln!("\nweft: stopped; the next run resumes from the last checkpoint");
                break Ok(ExitCode::from(130));
            }
        };
        match pass {
            Ok(report) => {
                print_report(&id, &report);
                let stopped = report.failed_objects().count();
                if args.once {
                    break Ok(if stopped == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    });
                }
                failures = if stopped == 0 { 0 } else { failures + 1 };
            }
            Err(e) if args.once => break Err(anyhow::Error::new(e).context("sync pass failed")),
            Err(e) => {
                failures += 1;
                tracing::error!(installation = %id, error = %e, failures, "sync pass failed; retrying from the last checkpoint");
            }
        }
        // Failing passes back off up to ten intervals; a healthy one waits one interval.
        let wait = inbound.config().poll_interval * failures.clamp(1, 10);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = super::signal::stop_requested() => break Ok(ExitCode::SUCCESS),
        }
        let now = modified(&args.config);
        if now != stamp {
            stamp = now;
            match InstallationConfig::load(&args.config) {
                Ok(new) if new.id != id => {
                    tracing::error!(installation = %id, "the configuration now names installation {:?}; keeping the running one", new.id);
                }
                Ok(new) => {
                    if (new.plugin.source != config.plugin.source
                        || new.plugin.config != config.plugin.config
                        || component_modified(&new) != component_modified(&config))
                        && let Err(e) = install_plugin(&plugin_runtime, &plugins, &new)
                    {
                        tracing::error!(installation = %id, error = %e, "the new plugin was not installed; keeping the running one");
                    }
                    if let Err(e) = inbound.reconfigure(new.inbound.clone()) {
                        tracing::error!(installation = %id, error = %e, "the new sink could not be opened; keeping the running one");
                    } else {
                        tracing::info!(installation = %id, "configuration reloaded");
                        config = new;
                    }
                }
                Err(e) => {
                    tracing::error!(installation = %id, error = %e, "the configuration no longer validates; keeping the running one");
                }
            }
        }
    };
    reporter.abort();
    saver.abort();
    governor_state::save_all(&store, &governors, &saved).await;
    outcome
}

/// When the plugin's component file last changed (`None` for an uploaded artifact, which is
/// immutable).
fn component_modified(config: &InstallationConfig) -> Option<SystemTime> {
    match &config.plugin.source {
        PluginSource::File(component) => modified(component),
        PluginSource::Artifact(_) => None,
    }
}

fn install_plugin(
    runtime: &PluginRuntime,
    plugins: &InstalledPlugins,
    config: &InstallationConfig,
) -> anyhow::Result<()> {
    let PluginSource::File(component) = &config.plugin.source else {
        anyhow::bail!(
            "plugin.artifact names a plugin uploaded to a host; `weft sync` takes a component \
             file (plugin.component)"
        );
    };
    let plugin = runtime
        .load_file(component)
        .with_context(|| format!("loading {}", component.display()))?;
    plugins.install(
        &config.id,
        plugin,
        PluginConfig {
            values: config.plugin.config.clone(),
            limits: config.plugin.limits.clone(),
        },
    );
    Ok(())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// One JSON line per pass on stdout, for scripts.
fn print_report(installation: &str, report: &PassReport) {
    for o in &report.objects {
        println!(
            "{}",
            serde_json::json!({
                "installation": installation,
                "object": o.object,
                "backfilled": o.backfilled,
                "backfill_reason": o.backfill_reason,
                "changed": o.changed,
                "deleted": o.deleted,
                "failed": o.failed,
                "missing_fields": o.missing_fields,
                "error": o.error,
            })
        );
    }
}

/// A live line on a terminal; a structured log line every 10 s otherwise.
async fn report_progress(progress: Arc<Progress>, quota: Arc<InstallationTelemetry>) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(10)
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let gauges = quota.gauges();
        let quota_text = match gauges.daily_max {
            Some(max) => format!(
                "quota {} of {} allowed today ({:.0}% ceiling)",
                gauges.usage_24h,
                (max as f64 * gauges.ceiling) as u64,
                gauges.ceiling * 100.0
            ),
            None => "quota not yet known".to_owned(),
        };
        for (object, p) in progress.snapshot() {
            if p.finished {
                continue;
            }
            let eta = p
                .eta_secs()
                .map(|s| format!("ETA {}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64))
                .unwrap_or_else(|| "ETA –".into());
            if terminal {
                eprint!(
                    "\r{object}: {}/{} ({:.0}%) {:.0} rec/s {quota_text} {eta}   ",
                    p.done,
                    p.total,
                    100.0 * p.done as f64 / p.total.max(1) as f64,
                    p.rate(),
                );
            } else {
                tracing::info!(installation = %quota.id(), object, done = p.done, total = p.total, failed = p.failed, rate = p.rate(), usage_24h = gauges.usage_24h, ceiling = gauges.ceiling, eta_secs = p.eta_secs(), "backfill progress");
            }
        }
    }
}
