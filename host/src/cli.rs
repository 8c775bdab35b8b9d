//! The `weft` command line: argument parsing and the commands behind it.
//!
//! Commands print results on stdout (JSON or NDJSON, for pipes) and progress or summaries
//! on stderr (for people).

mod apply_cmd;
mod config_cmd;
mod dlq;
mod plugin_cmd;
mod serve;
mod signal;
mod status_cmd;
mod sync_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::api::conn;
use crate::api::{AdminToken, AdminTokenError, ConnLimits};

#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "Keeps Salesforce orgs in sync with your product"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Salesforce transport status of a running host as JSON: API calls by kind,
    /// active ceiling and utilisation, 24 h peak, throttle events (pauses, backoffs, breaker
    /// opens) with reasons, error rates — per installation.
    ///
    /// Reads the status file the host rewrites while it runs. If the file is missing, the
    /// host is not running or writes it elsewhere: pass its path with --file.
    Status {
        /// The host's status file.
        #[arg(long, env = "WEFT_STATUS_FILE", default_value = "weft-status.json")]
        file: PathBuf,
        /// Only this installation.
        #[arg(long)]
        installation: Option<String>,
    },
    /// Check and try out plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Apply an installation file to a running `weft serve`: it is checked (offline here,
    /// then against the org by the host), saved in the host's registry and running
    /// without a restart. A file already applied as it is changes nothing.
    ///
    /// Prints `{"installation", "applied": "created"|"updated"|"unchanged", "version"}`.
    Apply {
        /// The installation's configuration (TOML).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// The running host, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "WEFT_URL")]
        url: String,
        /// The host's admin token. Prefer the environment variable: arguments show in `ps`.
        #[arg(long, env = "WEFT_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_admin_token)]
        token: Option<AdminToken>,
    },
    /// Serve the intake and admin HTTP API and run each configured installation's outbound
    /// sync: product change events are made durable in the store before the 202, then
    /// written to Salesforce, retried, or dead-lettered.
    ///
    /// Prints one JSON line `{"listening":"ADDR"}` on stdout once it accepts connections.
    /// Stops on Ctrl-C or SIGTERM after finishing in-flight requests.
    Serve {
        /// The store file (redb); created if missing. One process writes it at a time.
        #[arg(long, env = "WEFT_DB", default_value = "weft.redb")]
        db: PathBuf,
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// An installation this host accepts events for without syncing them (intake only);
        /// repeatable. Only the admin token reaches it. Posts for an id neither here nor in
        /// a --config get 404.
        #[arg(long = "installation", value_name = "ID")]
        installations: Vec<String>,
        /// An installation's configuration (TOML); repeatable. It is checked and applied
        /// to the store's registry (unchanged files keep their version); every installation
        /// in the registry runs, including those applied at an earlier start or created
        /// through the API. Both directions run: inbound backfills, then incremental
        /// passes every poll interval, into the installation's sink; outbound drains the
        /// queue into its org (plugin map and coerce → validate against describe →
        /// conflict check → upsert by external id → audit, retry or DLQ).
        #[arg(long = "config", value_name = "FILE")]
        configs: Vec<PathBuf>,
        /// Write the transport status here every 5 s (read by `weft status`).
        #[arg(long, env = "WEFT_STATUS_FILE", default_value = "weft-status.json")]
        status_file: PathBuf,
        /// Most events committed in one durable transaction. Larger groups mean fewer fsyncs
        /// under load but a longer wait for the first request of a group.
        #[arg(long, default_value_t = 8192)]
        max_batch_events: usize,
        /// Microseconds the writer lingers for more requests before committing. 0 (the
        /// default) commits whatever queued during the previous commit; a linger only helps
        /// with few, slow senders and adds to every request's latency.
        #[arg(long, default_value_t = 0)]
        max_wait_us: u64,
        /// Tokio worker threads for HTTP (default: one per core).
        #[arg(long)]
        worker_threads: Option<usize>,
        /// Units of sync work (an inbound page, an outbound round) run at once, for all
        /// installations together (default: four per core, at least 4). Installations
        /// take turns when units wait.
        #[arg(long)]
        units: Option<usize>,
        /// Units one installation may run at once (default 2), so no tenant takes the pool.
        #[arg(long)]
        units_per_installation: Option<usize>,
        /// Largest intake request body, in bytes (default 307200, 300 KiB): bounds the
        /// memory one request pins until its commit; senders split larger batches.
        #[arg(long, default_value_t = crate::api::intake::MAX_BODY_BYTES)]
        max_body_bytes: usize,
        /// Most fields one event's record may carry (default 1000: an sObject has at most
        /// 800 custom fields). Bounds what one event costs the outbound batch.
        #[arg(long, default_value_t = crate::api::intake::MAX_EVENT_FIELDS)]
        max_event_fields: usize,
        /// Deepest nesting of objects and arrays in one event's record (default 32, at
        /// most 100): the store must read back every envelope it wraps around a record.
        #[arg(long, default_value_t = crate::api::intake::MAX_RECORD_DEPTH, value_parser = parse_record_depth)]
        max_record_depth: usize,
        /// Bearer token that unlocks the admin API (`/v1/admin/…`, used by `weft dlq
        /// --url`); at least 16 characters, e.g. `openssl rand -hex 32`. Without it the
        /// admin API is off. Prefer the environment variable: arguments show in `ps`. The
        /// admin API shares the intake listener; never expose it publicly.
        #[arg(long, env = "WEFT_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_admin_token)]
        admin_token: Option<AdminToken>,
        /// A file holding the key (64 hex digits, e.g. `openssl rand -hex 32`) that seals
        /// the Salesforce secrets given through the API (`PUT …/credentials`) at rest.
        /// Without a key (here or in WEFT_SECRETS_KEY) the API refuses secrets.
        #[arg(long, value_name = "FILE")]
        secrets_key_file: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Pull an installation's org into the product: a resumable backfill, then incremental
    /// passes (changes, soft and hard deletes) every poll interval.
    ///
    /// Prints one JSON line per object and pass on stdout; progress (records done / total,
    /// rate, quota use, ETA) on stderr. Killed at any point, it resumes from the last
    /// checkpoint in the store. The configuration file is re-read before every pass.
    Sync {
        /// The installation's configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The store file (redb) with checkpoints, watermarks and the DLQ.
        #[arg(long, env = "WEFT_DB", default_value = "weft.redb")]
        db: PathBuf,
        /// One pass (finishing any backfill), then exit.
        #[arg(long)]
        once: bool,
        /// Write the transport status here every 5 s (read by `weft status`).
        #[arg(long, env = "WEFT_STATUS_FILE")]
        status_file: Option<PathBuf>,
    },
    /// Installation configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect, replay or discard dead-lettered events.
    ///
    /// With --url, goes through a running `weft serve`'s admin API (token from --token or
    /// WEFT_ADMIN_TOKEN). Without it, opens the store file directly, which works only while
    /// no `weft serve` holds that file.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Installation API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// What one HTTP connection to `weft serve` may cost; the defaults' reasoning is in
/// `api::conn`.
#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    /// Seconds a request head may take from its first byte to its last; a client that
    /// trickles its head is disconnected after this.
    #[arg(long, default_value_t = conn::DEFAULT_HEADER_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_secs: u64,
    /// Seconds a request body may take to arrive after its head; a slower body gets 408.
    /// The default asks at least 10 KiB/s of a sender posting the largest body.
    #[arg(long, default_value_t = conn::DEFAULT_BODY_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_secs: u64,
    /// Seconds a connection may stay open with no request and nothing sent either way.
    /// Keep it above the idle timeout of a load balancer in front (often 60 s).
    #[arg(long, default_value_t = conn::DEFAULT_IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,
    /// Connections served at once; more are answered 503 and closed at once. Keep it below
    /// the open-file limit (`ulimit -n`) less what the host needs besides (the store,
    /// outbound connections): raise both together.
    #[arg(long, default_value_t = conn::DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Largest request head (request line and headers) in bytes; larger heads get 431.
    #[arg(long, default_value_t = conn::DEFAULT_MAX_HEADER_BYTES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..))]
    max_header_bytes: usize,
}

impl ConnArgs {
    fn into_limits(self) -> ConnLimits {
        ConnLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new random installation token. Prints `{"token", "token_sha256"}`: give the
    /// token to the product's sender (it is shown only now) and put the hash in the
    /// installation's file as `[intake] token_sha256 = "…"`.
    New,
}

/// Which DLQ entries a command applies to.
#[derive(Debug, clap::Args)]
pub struct DlqFilterArgs {
    /// Only this installation's entries.
    #[arg(long)]
    installation: Option<String>,
    /// Only entries that failed in this stage: map, coerce, validate, conflict or write.
    #[arg(long)]
    stage: Option<String>,
    /// Only entries with this error code, e.g. REQUIRED_FIELD_MISSING.
    #[arg(long)]
    error_code: Option<String>,
}

/// The sealing key from `--secrets-key-file`, else from `WEFT_SECRETS_KEY` (read here
/// rather than as an argument value so it never shows in `ps` or in a parse error).
fn secrets_keyring(
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<crate::secrets::Keyring>>> {
    let keyring = match (file, std::env::var("WEFT_SECRETS_KEY").ok()) {
        (Some(file), _) => Some(crate::secrets::Keyring::from_file(file)?),
        (None, Some(hex)) if !hex.trim().is_empty() => Some(
            crate::secrets::Keyring::from_hex(&hex)
                .map_err(|e| anyhow::anyhow!("WEFT_SECRETS_KEY: {e}"))?,
        ),
        _ => None,
    };
    Ok(keyring.map(std::sync::Arc::new))
}

/// Where the DLQ is: a running host (--url) or a store file (--db).
#[derive(Debug, clap::Args)]
pub struct DlqTargetArgs {
    /// The store file, opened directly when --url is not given.
    #[arg(long, env = "WEFT_DB", default_value = "weft.redb")]
    db: PathBuf,
    /// A running `weft serve`, e.g. http://127.0.0.1:8080: act through its admin API
    /// instead of the file (the only way while it runs).
    #[arg(long, env = "WEFT_URL")]
    url: Option<String>,
    /// The admin token `weft serve` was started with. Prefer the environment variable:
    /// arguments show in `ps`.
    #[arg(long, env = "WEFT_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_admin_token)]
    token: Option<AdminToken>,
}

impl DlqTargetArgs {
    fn into_target(self) -> dlq::Target {
        dlq::Target {
            db: self.db,
            url: self.url,
            token: self.token,
        }
    }
}

fn parse_record_depth(text: &str) -> Result<usize, String> {
    let limit = crate::api::intake::MAX_RECORD_DEPTH_LIMIT;
    match text.parse::<usize>() {
        Ok(depth) if (1..=limit).contains(&depth) => Ok(depth),
        _ => Err(format!("expected a number of levels from 1 to {limit}")),
    }
}

fn parse_admin_token(text: &str) -> Result<AdminToken, AdminTokenError> {
    AdminToken::new(text)
}

impl DlqFilterArgs {
    fn into_filters(self) -> dlq::Filters {
        dlq::Filters {
            installation: self.installation,
            stage: self.stage,
            error_code: self.error_code,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List entries as NDJSON, one per line (open ones unless --all).
    List {
        #[command(flatten)]
        target: DlqTargetArgs,
        #[command(flatten)]
        filters: DlqFilterArgs,
        /// Include replayed and discarded entries.
        #[arg(long)]
        all: bool,
    },
    /// Print one entry in full, with the original event, as JSON.
    Show {
        #[command(flatten)]
        target: DlqTargetArgs,
        id: u64,
    },
    /// Send the original events through the current pipeline again, after fixing the plugin
    /// or configuration that made them fail.
    ///
    /// Each event is re-enqueued as a new accepted event in the outbound queue and its entry
    /// is marked replayed, in one transaction; the running `weft serve` (with --url) or the
    /// next one on this store sends it through the current plugin, configuration and org
    /// schema. If it fails again, it gets a new DLQ entry. Give entry ids, or select all
    /// open entries matching the filters.
    Replay {
        #[command(flatten)]
        target: DlqTargetArgs,
        ids: Vec<u64>,
        #[command(flatten)]
        filters: DlqFilterArgs,
    },
    /// Mark entries discarded: they stay for the record but are not replayed. Give entry
    /// ids, or select all open entries matching the filters.
    Discard {
        #[command(flatten)]
        target: DlqTargetArgs,
        ids: Vec<u64>,
        #[command(flatten)]
        filters: DlqFilterArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate an installation file (before a running sync re-reads it). Prints a JSON
    /// summary; exits non-zero with the file, key and reason when it is refused.
    Check {
        file: PathBuf,
        /// Also log in and describe every configured object: report objects the org lacks
        /// and configured fields it does not have.
        #[arg(long)]
        online: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Validate a component against the WIT contract and list what it exports and imports.
    Check {
        /// The component, e.g. target/wasm32-wasip2/release/acme_accounts.wasm
        component: PathBuf,
    },
    /// Run records through the plugin's map → coerce → dedup stages and print the
    /// results as NDJSON, one line per output record or failure.
    Run {
        component: PathBuf,
        /// Input records, one JSON object per line.
        #[arg(long)]
        input: PathBuf,
        /// The object the input records are (inbound) or map to (outbound), e.g. Account.
        #[arg(long)]
        object: String,
        /// Which way the records travel.
        #[arg(long, value_enum, default_value = "outbound")]
        direction: DirectionArg,
        /// A plugin configuration entry, `key=value`; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// A describe response (`GET /sobjects/{object}/describe`) to coerce against;
        /// without it, coercion passes values through.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Records per plugin call.
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DirectionArg {
    Inbound,
    Outbound,
}

pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Status { file, installation } => status_cmd::run(&file, installation.as_deref()),
        Command::Plugin(PluginCommand::Check { component }) => plugin_cmd::check(&component),
        Command::Plugin(PluginCommand::Run {
            component,
            input,
            object,
            direction,
            config,
            schema,
            batch_size,
        }) => plugin_cmd::run(plugin_cmd::RunArgs {
            component,
            input,
            object,
            direction,
            config,
            schema,
            batch_size,
        }),
        Command::Serve {
            db,
            listen,
            installations,
            configs,
            status_file,
            max_batch_events,
            max_wait_us,
            worker_threads,
            units,
            units_per_installation,
            max_body_bytes,
            max_event_fields,
            max_record_depth,
            admin_token,
            secrets_key_file,
            conn,
        } => serve::run(serve::ServeArgs {
            db,
            listen,
            installations,
            configs,
            status_file,
            max_batch_events,
            max_wait_us,
            worker_threads,
            limits: crate::api::IntakeLimits {
                max_body_bytes,
                max_event_fields,
                max_record_depth,
            },
            admin_token,
            conn: conn.into_limits(),
            scheduler: {
                let default = crate::runtime::SchedulerConfig::default();
                crate::runtime::SchedulerConfig {
                    workers: units.unwrap_or(default.workers),
                    per_installation: units_per_installation.unwrap_or(default.per_installation),
                }
            },
            keyring: secrets_keyring(secrets_key_file.as_deref())?,
        }),
        Command::Config(ConfigCommand::Check { file, online }) => config_cmd::check(&file, online),
        Command::Apply { file, url, token } => apply_cmd::run(&file, &url, token.as_ref()),
        Command::Sync {
            config,
            db,
            once,
            status_file,
        } => sync_cmd::run(sync_cmd::SyncArgs {
            config,
            db,
            once,
            status_file,
        }),
        Command::Dlq(DlqCommand::List {
            target,
            filters,
            all,
        }) => dlq::list(&target.into_target(), &filters.into_filters(), all),
        Command::Dlq(DlqCommand::Show { target, id }) => dlq::show(&target.into_target(), id),
        Command::Dlq(DlqCommand::Replay {
            target,
            ids,
            filters,
        }) => dlq::replay(&target.into_target(), &ids, &filters.into_filters()),
        Command::Dlq(DlqCommand::Discard {
            target,
            ids,
            filters,
        }) => dlq::discard(&target.into_target(), &ids, &filters.into_filters()),
        Command::Token(TokenCommand::New) => {
            let (token, hash) = crate::token::new_token()
                .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
            println!(
                "{}",
                serde_json::json!({"token": token, "token_sha256": hash.to_hex()})
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
