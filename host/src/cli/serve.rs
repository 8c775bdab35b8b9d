//! `weft serve`: the intake/admin HTTP API over the host's store file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::{IntakeLimits, ServeConfig, Server};
use crate::store::GroupCommitConfig;

pub struct ServeArgs {
    pub db: PathBuf,
    pub listen: SocketAddr,
    pub installations: Vec<String>,
    pub max_batch_events: usize,
    pub max_wait_us: u64,
    pub worker_threads: Option<usize>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.installations.is_empty() {
        bail!(
            "no installations: pass --installation ID (repeatable) for each one this host serves"
        );
    }
    let installations: BTreeSet<String> = args.installations.into_iter().collect();
    let config = ServeConfig {
        db: args.db,
        listen: args.listen,
        installations,
        group_commit: GroupCommitConfig {
            max_batch_events: args.max_batch_events.max(1),
            max_wait: Duration::from_micros(args.max_wait_us),
            ..GroupCommitConfig::default()
        },
        limits: IntakeLimits::default(),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.worker_threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.build().context("starting the Tokio runtime")?;
    runtime.block_on(async move {
        let db = config.db.clone();
        let installations = config.installations.len();
        let server = Server::start(config, None)
            .await
            .with_context(|| format!("starting the server on {}", db.display()))?;
        let addr = server.local_addr();
        // One JSON line on stdout so scripts (and tests) can find the port when
        // `--listen` asked for port 0.
        println!("{}", serde_json::json!({"listening": addr.to_string()}));
        eprintln!(
            "weft: serving {installations} installation(s) on http://{addr} with store {}; Ctrl-C to stop",
            db.display()
        );
        let (shutdown, running) = server.into_parts();
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("weft: stopping; finishing in-flight requests");
            let _ = shutdown.send(());
        });
        running.wait().await.context("serving")?;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
