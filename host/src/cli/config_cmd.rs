//! `weft config check`: validates an installation file before a running `weft sync` or
//! `weft serve` picks it up.
//!
//! Offline it checks everything the file alone can tell; with `--online` it also logs in
//! and describes every configured object, reporting objects the org lacks and configured
//! fields it does not have — what the running sync would otherwise only report (and skip)
//! on its next pass.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use crate::config::InstallationConfig;
use crate::inbound::Selection;
use crate::salesforce::SalesforceClient;
use crate::telemetry::Telemetry;
use crate::throttle::{Governor, Project, SystemClock};

pub fn check(path: &Path, online: bool) -> anyhow::Result<ExitCode> {
    let config = InstallationConfig::load(path)?;
    let objects: Vec<&str> = config
        .inbound
        .objects
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    if !online {
        println!(
            "{}",
            json!({"file": path.display().to_string(), "installation": config.id, "valid": true, "objects": objects})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    runtime.block_on(async {
        let telemetry = Telemetry::new();
        let governor = Governor::new(
            config.governor.clone(),
            Arc::new(SystemClock),
            telemetry.installation(&config.id),
        );
        let client = SalesforceClient::new(config.salesforce.client_config(&config.id), governor)
            .context("setting up the Salesforce client")?;
        let mut problems = 0;
        for object in &config.inbound.objects {
            let line = match client.describe(Project::Incremental, &object.name).await {
                Ok(describe) => {
                    let selection = Selection::resolve(&object.source, &describe);
                    problems += selection.missing.len();
                    json!({"object": object.name, "fields": selection.fields.len(), "missing_fields": selection.missing})
                }
                Err(e) => {
                    problems += 1;
                    json!({"object": object.name, "error": e.to_string()})
                }
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
