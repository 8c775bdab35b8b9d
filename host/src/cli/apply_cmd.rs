//! `weft apply -f FILE --url URL`: applies an installation file to a running `weft serve`
//! through `PUT /v1/installations/{id}`, the declarative way in.
//!
//! The file is checked here first (the offline checks `weft config check` runs, without
//! compiling the plugin), so a typo is reported with its key before anything is sent; the
//! host then runs the full check — plugin compiled, org described — before it saves.
//! Relative paths in the file resolve against the file's directory, on the host's disk:
//! apply runs where the host's files are (or the file names absolute paths).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::api::AdminToken;
use crate::config::InstallationConfig;

/// A create or change includes one describe call per object and a plugin compile.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(file: &Path, url: &str, token: Option<&AdminToken>) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (config, document) = InstallationConfig::document(file, &text)?;
    let dir = file
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("resolving the directory {}", dir.display()))?;
    let url = url.trim_end_matches('/');
    let base = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let mut request = client
        .put(format!("{base}/v1/installations/{}", config.id))
        .query(&[("base_dir", dir.display().to_string())])
        .json(&document);
    if let Some(token) = token {
        request = request.bearer_auth(token.reveal());
    }
    let (status, body) = runtime.block_on(async {
        let response = request
            .send()
            .await
            .with_context(|| format!("reaching weft serve at {base}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("reading the answer of {base}"))?;
        anyhow::Ok((status, body))
    })?;
    if status.is_success() {
        println!(
            "{}",
            serde_json::json!({
                "installation": config.id,
                "applied": body["applied"],
                "version": body["version"],
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let message = body["message"].as_str().unwrap_or("no message");
    let key = body["key"]
        .as_str()
        .map(|k| format!(" ({k})"))
        .unwrap_or_default();
    eprintln!(
        "weft: {} not applied: {status}{key}: {message}",
        file.display()
    );
    if let Some(objects) = body["objects"].as_array() {
        for object in objects {
            eprintln!("  {object}");
        }
    }
    Ok(ExitCode::FAILURE)
}
