//! `weft plugin check` and `weft plugin run`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Map, Value as Json, json};

use super::DirectionArg;
use crate::plugin::{
    CallLimits, CallSpec, ChainError, Direction, PluginRuntime, RuntimeConfig, batch_from_json,
    run_chain, schema_from_describe,
};

pub fn check(component: &Path) -> anyhow::Result<ExitCode> {
    let runtime = PluginRuntime::new(RuntimeConfig::default())?;
    let started = Instant::now();
    let plugin = runtime
        .load_file(component)
        .with_context(|| format!("checking {}", component.display()))?;
    let report = plugin.report();
    let out = json!({
        "component": component.display().to_string(),
        "hash": plugin.hash(),
        "wit_version": report.wit_version,
        "exports": report.exports,
        "imports": report.imports,
        "compile_ms": started.elapsed().as_millis() as u64,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

pub struct RunArgs {
    pub component: PathBuf,
    pub input: PathBuf,
    pub object: String,
    pub direction: DirectionArg,
    pub config: Vec<String>,
    pub schema: Option<PathBuf>,
    pub batch_size: usize,
}

fn parse_config(entries: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    entries
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => bail!("--config {entry:?}: expected KEY=VALUE"),
        })
        .collect()
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let config = parse_config(&args.config)?;
    let schema = match &args.schema {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading schema {}", path.display()))?;
            let describe: Json = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            Some(
                schema_from_describe(&describe)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("{} is not a describe response", path.display()))?,
            )
        }
        None => None,
    };
    let runtime = PluginRuntime::new(RuntimeConfig::default())?;
    let plugin = runtime
        .load_file(&args.component)
        .with_context(|| format!("loading {}", args.component.display()))?;
    let spec = CallSpec {
        installation: Arc::from("cli"),
        config: Arc::new(config),
        limits: CallLimits::default(),
        now_ms: jiff::Timestamp::now().as_millisecond(),
    };
    let direction = match args.direction {
        DirectionArg::Inbound => Direction::Inbound,
        DirectionArg::Outbound => Direction::Outbound,
    };
    let input = std::fs::File::open(&args.input)
        .with_context(|| format!("opening {}", args.input.display()))?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut totals = Totals::default();
    let mut batch: Vec<(usize, Map<String, Json>)> = Vec::with_capacity(args.batch_size);
    let flush = |batch: &mut Vec<(usize, Map<String, Json>)>,
                 out: &mut dyn Write,
                 totals: &mut Totals|
     -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let records: Vec<Map<String, Json>> = batch.iter().map(|(_, r)| r.clone()).collect();
        let input = batch_from_json(&args.object, &records);
        let result = run_chain(&(&plugin, &spec), direction, &input, schema.as_slice());
        let line_of = |source: u32| batch.get(source as usize).map_or(0, |(line, _)| *line);
        match result {
            Ok(output) => {
                for record in &output.records {
                    let keys: Map<String, Json> = record
                        .keys
                        .iter()
                        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                        .collect();
                    writeln!(
                        out,
                        "{}",
                        json!({"line": line_of(record.source), "object": record.object, "fields": record.fields, "keys": keys})
                    )?;
                }
                for failure in &output.failures {
                    writeln!(
                        out,
                        "{}",
                        json!({"line": line_of(failure.source), "stage": failure.stage, "error": failure.reason})
                    )?;
                }
                totals.ok += output.records.len();
                totals.failed += output.failures.len();
            }
            Err(ChainError { stage, error }) => {
                for (line, _) in batch.iter() {
                    writeln!(
                        out,
                        "{}",
                        json!({"line": line, "stage": stage, "error": error.to_string(), "kind": error.kind()})
                    )?;
                }
                totals.failed += batch.len();
                totals.batch_failures += 1;
            }
        }
        batch.clear();
        Ok(())
    };

    for (index, line) in BufReader::new(input).lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading {}", args.input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Json>(&line) {
            Ok(Json::Object(record)) => batch.push((number, record)),
            Ok(_) => {
                writeln!(
                    out,
                    "{}",
                    json!({"line": number, "stage": "input", "error": "not a JSON object"})
                )?;
                totals.failed += 1;
            }
            Err(e) => {
                writeln!(
                    out,
                    "{}",
                    json!({"line": number, "stage": "input", "error": format!("invalid JSON: {e}")})
                )?;
                totals.failed += 1;
            }
        }
        if batch.len() == args.batch_size {
            flush(&mut batch, &mut out, &mut totals)?;
        }
    }
    flush(&mut batch, &mut out, &mut totals)?;
    eprintln!(
        "{} output records, {} failed input records, {} failed batches",
        totals.ok, totals.failed, totals.batch_failures
    );
    Ok(if totals.batch_failures > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Default)]
struct Totals {
    ok: usize,
    failed: usize,
    batch_failures: usize,
}
