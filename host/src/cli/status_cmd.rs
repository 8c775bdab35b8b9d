//! `weft status`: the Salesforce transport's status of a running host, as JSON.
//!
//! Reads the status file a host writes with `Telemetry::write_status_file` (atomically, so
//! it is never half-written) and prints it, optionally for one installation. It never talks
//! to Salesforce and never needs credentials.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::telemetry::read_status_file;

pub fn run(file: &Path, installation: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut status = read_status_file(file).with_context(|| {
        "is the host running and writing its status there? (set the path with --file or WEFT_STATUS_FILE)"
    })?;
    if let Some(id) = installation {
        status.installations.retain(|i| i.installation == id);
        if status.installations.is_empty() {
            anyhow::bail!("no installation {id:?} in {}", file.display());
        }
    }
    println!("{}", serde_json::to_string_pretty(&status)?);
    Ok(ExitCode::SUCCESS)
}
