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

use crate::inbound::Selection;
use crate::outbound::{DeletePolicy, ObjectConfig};
use crate::plugin::{PluginRuntime, RuntimeConfig};
use crate::runtime::Installation;
use crate::telemetry::Telemetry;
use crate::throttle::Project;

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
        let client = &installation.client;
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
        for (name, object) in &config.outbound.objects {
            let line = match client.describe(Project::Outbound, name).await {
                Ok(describe) => {
                    let missing = outbound_missing_fields(object, &describe.raw);
                    problems += missing.len();
                    json!({"outbound_object": name, "missing_fields": missing})
                }
                Err(e) => {
                    problems += 1;
                    json!({"outbound_object": name, "error": e.to_string()})
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

/// The fields an outbound object's settings name (its external id, its delete policy's
/// field) that the org's describe does not have.
fn outbound_missing_fields(object: &ObjectConfig, describe: &serde_json::Value) -> Vec<String> {
    let has = |field: &str| {
        describe["fields"].as_array().is_some_and(|fields| {
            fields.iter().any(|f| {
                f["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(field))
            })
        })
    };
    let policy_field = match &object.delete {
        Some(DeletePolicy::SoftDelete { field, .. } | DeletePolicy::MarkInactive { field, .. }) => {
            Some(field.as_str())
        }
        _ => None,
    };
    std::iter::once(object.external_id.as_str())
        .chain(policy_field)
        .filter(|field| !has(field))
        .map(str::to_owned)
        .collect()
}
