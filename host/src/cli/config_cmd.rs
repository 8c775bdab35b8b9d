//! `weft config check`: validates an installation file before a running `weft sync` or
//! `weft serve` picks it up.
//!
//! Offline it runs exactly the checks `weft serve` runs before starting an installation
//! ([`Installation::load`]: every section, outbound included, and the plugin component
//! compiled and checked against the contract); with `--online` it also logs in and
//! describes every configured object, inbound and outbound, reporting objects the org
//! lacks and configured fields it does not have.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::plugin::{PluginRuntime, RuntimeConfig};
use crate::runtime::{Installation, check};
use crate::telemetry::Telemetry;

pub fn check(path: &Path, online: bool) -> anyhow::Result<ExitCode> {
    // Exactly what `weft serve` runs before it starts an installation.
    let plugins =
        PluginRuntime::new(RuntimeConfig::default()).context("starting the plugin runtime")?;
    let telemetry = Telemetry::new();
    let installation = Installation::load(path, &plugins, &telemetry)?;
    let config = &installation.config;
    let objects: Vec<&str> = config
        .inbound
        .objects
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    let outbound: Vec<&str> = config.outbound.objects.keys().map(String::as_str).collect();
    if !online {
        println!(
            "{}",
            json!({"file": path.display().to_string(), "installation": config.id, "valid": true, "objects": objects, "outbound_objects": outbound})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    runtime.block_on(async {
        let reports = check::against_org(config, &installation.client).await;
        let mut problems = 0;
        for report in &reports {
            problems += report.problems();
            // One line per object, in the shape this command has always printed.
            let key = if report.section == "inbound.objects" {
                "object"
            } else {
                "outbound_object"
            };
            let line = match (&report.error, report.fields) {
                (Some(error), _) => json!({key: report.object, "error": error}),
                (None, Some(fields)) => {
                    json!({key: report.object, "fields": fields, "missing_fields": report.missing_fields})
                }
                (None, None) => json!({key: report.object, "missing_fields": report.missing_fields}),
            };
            println!("{line}");
        }
        Ok(if problems == 0 {
            ExitCode::SUCCESS
        } else {
            eprintln!("{}: {problems} problem(s) against the org", path.display());
            ExitCode::FAILURE
        })
    })
}
