//! The `weft` command line: argument parsing and the commands behind it.
//!
//! Commands print results on stdout (JSON or NDJSON, for pipes) and progress or summaries
//! on stderr (for people).

mod plugin_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    /// Check and try out plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
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
    }
}
