//! Shared set-up: an org, an installation config file, and the sync wired to both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use weft::config::InstallationConfig;
use weft::inbound::InboundSync;
use weft::plugin::{
    InstalledPlugins, PluginConfig, PluginRuntime, QuarantinePolicy, RuntimeConfig,
};
use weft::salesforce::SalesforceClient;
use weft::store::{RedbStore, Store};
use weft::telemetry::Telemetry;
use weft::throttle::{Governor, SystemClock};
use weft_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

pub const INSTALLATION: &str = "acme";

pub async fn org(accounts: usize, contacts: usize) -> EmulatorHandle {
    let config = EmulatorConfig {
        accounts,
        contacts,
        leads: 0,
        opportunities: 0,
        users: 5,
        api_daily_max: 50_000_000,
        bulk_processing_delay: std::time::Duration::from_millis(50),
        ..Default::default()
    };
    Emulator::start(config).await.expect("the emulator starts")
}

/// Writes `acme.toml` (and its secret) into `dir` for `org`, with `body` appended (the
/// `[inbound]` part) and the plugin `plugin` configured with `plugin_config`.
pub fn write_config(
    dir: &Path,
    org: &EmulatorHandle,
    plugin: &str,
    plugin_config: &str,
    body: &str,
) -> PathBuf {
    std::fs::write(dir.join("secret"), &org.credentials().client_secret).expect("secret");
    let component = weft_tests::plugin_wasm(plugin);
    let text = format!(
        r#"
id = "{INSTALLATION}"

[salesforce]
login_url = "{url}"
auth = "client_credentials"
client_id = "{client_id}"
client_secret_file = "secret"

[throttle.schedule]
time_zone = "UTC"
default_ceiling_percent = 100.0

[plugin]
component = "{component}"
config = {{ {plugin_config} }}

{body}
"#,
        url = org.base_url(),
        client_id = org.credentials().client_id,
        component = component.display(),
    );
    let path = dir.join("acme.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// The sync of the installation in `config`, on the store file `db`.
pub fn inbound(config: &Path, db: &Path) -> InboundSync {
    let config = InstallationConfig::load(config).unwrap_or_else(|e| panic!("{e}"));
    let telemetry = Telemetry::new();
    let governor = Governor::new(
        config.governor.clone(),
        Arc::new(SystemClock),
        telemetry.installation(&config.id),
    );
    let client = SalesforceClient::new(config.salesforce.client_config(&config.id), governor)
        .expect("client");
    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("plugin runtime");
    let plugins = Arc::new(InstalledPlugins::new(QuarantinePolicy::default()));
    let weft::config::PluginSource::File(component) = &config.plugin.source else {
        panic!("the test installations name their component file");
    };
    let plugin = runtime.load_file(component).expect("the plugin loads");
    plugins.install(
        &config.id,
        plugin,
        PluginConfig {
            values: config.plugin.config.clone(),
            limits: config.plugin.limits.clone(),
        },
    );
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(db).expect("store"));
    InboundSync::new(&config.id, config.inbound.clone(), client, plugins, store).expect("sink")
}

/// Every line of the sink file of `object`.
pub fn sink_lines(dir: &Path, object: &str) -> Vec<Value> {
    let path = dir.join("out").join(format!("{object}.ndjson"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    // A run killed mid-write leaves a torn last line, which the sink cuts when it reopens.
    let whole = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path:?}: {l:?}: {e}")))
        .collect()
}

/// The latest delivery per Id.
pub fn latest(lines: &[Value]) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for line in lines {
        let id = line["id"].as_str().expect("id").to_owned();
        out.insert(id, line.clone());
    }
    out
}

/// Id → SystemModstamp (as delivered: RFC 3339 ms) of the org's rows of `object`.
pub fn org_rows(org: &EmulatorHandle, object: &str, deleted: bool) -> HashMap<String, String> {
    let soql = format!("SELECT Id, SystemModstamp, IsDeleted FROM {object}");
    org.query(&soql, deleted)
        .expect("query")
        .into_iter()
        .filter(|r| deleted || r["IsDeleted"] != Value::Bool(true))
        .map(|r| {
            let stamp = r["SystemModstamp"].as_str().expect("stamp");
            (
                r["Id"].as_str().expect("id").to_owned(),
                normalise_stamp(stamp),
            )
        })
        .collect()
}

/// `2026-11-23T18:20:58.000+0000` → `2026-11-23T18:20:58.000Z`.
pub fn normalise_stamp(stamp: &str) -> String {
    let t: jiff::Timestamp = stamp
        .parse()
        .or_else(|_| {
            let (head, offset) = stamp.split_at(stamp.len() - 5);
            format!("{head}{}:{}", &offset[..3], &offset[3..]).parse()
        })
        .unwrap_or_else(|e| panic!("{stamp}: {e}"));
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub const SINK: &str = r#"
[inbound.sink]
kind = "ndjson"
dir = "out"
"#;
