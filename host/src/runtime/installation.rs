//! An installation's live objects — its governor, Salesforce client and compiled plugin —
//! built from its configuration in one place.
//!
//! `weft serve` starts an installation from what [`Installation::from_record`] returns,
//! and `weft config check` runs the same checks through [`Installation::load`] and drops
//! the result, so a file that passes the check is one the host will start. Building never
//! opens a network connection; the org is asked only by the online check and by the
//! running pipelines.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::artifacts::{ArtifactError, ArtifactRef, PluginCatalog};
use crate::config::{ConfigError, InstallationConfig, PluginSource};
use crate::plugin::{LoadError, LoadedPlugin, PluginConfig, PluginRuntime};
use crate::registry::{CredentialPhase, SpecRecord};
use crate::salesforce::{SalesforceClient, SalesforceError};
use crate::secrets::Keyring;
use crate::telemetry::Telemetry;
use crate::throttle::{Governor, SystemClock};

/// Why an installation's file could not be turned into a running installation. Every
/// variant names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum InstallationError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}: {key}: {source}", file.display())]
    Plugin {
        file: PathBuf,
        /// `plugin.component` or `plugin.artifact`: where the component came from.
        key: &'static str,
        #[source]
        source: LoadError,
    },
    #[error("{}: plugin.artifact: {source}", file.display())]
    Artifact {
        file: PathBuf,
        /// Boxed: it carries a store error, several times the size of the other variants.
        #[source]
        source: Box<ArtifactError>,
    },
    /// A spec naming an uploaded plugin, built where there is no host store to find it in.
    #[error(
        "{}: plugin.artifact: {reference} is a plugin uploaded to a host; here, name the \
         component file with plugin.component",
        file.display()
    )]
    NoCatalog {
        file: PathBuf,
        reference: ArtifactRef,
    },
    #[error("{}: salesforce: {source}", file.display())]
    Client {
        file: PathBuf,
        #[source]
        source: SalesforceError,
    },
}

/// One installation, validated and assembled.
pub struct Installation {
    pub config: InstallationConfig,
    /// The credential its client logs in with.
    pub credential: CredentialPhase,
    pub governor: Arc<Governor>,
    pub client: SalesforceClient,
    /// The compiled component, ready to install into the host's plugin table.
    pub plugin: LoadedPlugin,
}

impl Installation {
    /// Reads and validates `path` (every section, outbound included), compiles its plugin
    /// component (refusing anything `weft plugin check` refuses) and builds its governor
    /// and client. Without a host store, a plugin must be a file.
    pub fn load(
        path: &Path,
        plugins: &PluginRuntime,
        telemetry: &Telemetry,
    ) -> Result<Installation, InstallationError> {
        Self::from_config(InstallationConfig::load(path)?, plugins, None, telemetry)
    }

    /// Builds an installation from its registry record: the stored document, checked
    /// exactly as a file is; `keyring` opens secrets sealed by the host.
    pub fn from_record(
        record: &SpecRecord,
        plugins: &PluginRuntime,
        artifacts: Option<&PluginCatalog>,
        telemetry: &Telemetry,
        keyring: Option<&Keyring>,
    ) -> Result<Installation, InstallationError> {
        let label = PathBuf::from(format!("installation {} (v{})", record.id, record.version));
        let config =
            InstallationConfig::from_document(&label, &record.base_dir, &record.spec, keyring)?;
        // A spec whose ongoing credential was removed falls back to the setup one.
        let phase = match record.credential {
            CredentialPhase::Ongoing if config.salesforce.ongoing.is_some() => {
                CredentialPhase::Ongoing
            }
            _ => CredentialPhase::Setup,
        };
        Self::build(config, plugins, artifacts, telemetry, phase)
    }

    /// Compiles the plugin and builds the governor and client of a checked configuration,
    /// logging in with its setup credential. `artifacts` finds an uploaded plugin.
    pub fn from_config(
        config: InstallationConfig,
        plugins: &PluginRuntime,
        artifacts: Option<&PluginCatalog>,
        telemetry: &Telemetry,
    ) -> Result<Installation, InstallationError> {
        Self::build(
            config,
            plugins,
            artifacts,
            telemetry,
            CredentialPhase::Setup,
        )
    }

    fn build(
        config: InstallationConfig,
        plugins: &PluginRuntime,
        artifacts: Option<&PluginCatalog>,
        telemetry: &Telemetry,
        credential: CredentialPhase,
    ) -> Result<Installation, InstallationError> {
        let path = config.path.clone();
        let plugin = load_plugin(&config, plugins, artifacts)?;
        let governor = Governor::new(
            config.governor.clone(),
            Arc::new(SystemClock),
            telemetry.installation(&config.id),
        );
        let credentials = match (credential, &config.salesforce.ongoing) {
            (CredentialPhase::Ongoing, Some(ongoing)) => ongoing,
            _ => &config.salesforce.credentials,
        };
        let client = SalesforceClient::new(
            config
                .salesforce
                .client_config_with(&config.id, credentials),
            governor.clone(),
        )
        .map_err(|source| InstallationError::Client { file: path, source })?;
        Ok(Installation {
            config,
            credential,
            governor,
            client,
            plugin,
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The plugin's configuration and limits, as the plugin table takes them.
    pub fn plugin_config(&self) -> PluginConfig {
        PluginConfig {
            values: self.config.plugin.config.clone(),
            limits: self.config.plugin.limits.clone(),
        }
    }
}

/// Compiles the installation's component, from its file or from the host's uploads (the
/// runtime compiles a content hash once, however many installations load it).
fn load_plugin(
    config: &InstallationConfig,
    plugins: &PluginRuntime,
    artifacts: Option<&PluginCatalog>,
) -> Result<LoadedPlugin, InstallationError> {
    let file = || config.path.clone();
    let (key, loaded) = match &config.plugin.source {
        PluginSource::File(component) => ("plugin.component", plugins.load_file(component)),
        PluginSource::Artifact(reference) => {
            let Some(catalog) = artifacts else {
                return Err(InstallationError::NoCatalog {
                    file: file(),
                    reference: reference.clone(),
                });
            };
            let wasm =
                catalog
                    .component(reference)
                    .map_err(|source| InstallationError::Artifact {
                        file: file(),
                        source: Box::new(source),
                    })?;
            ("plugin.artifact", plugins.load(&wasm))
        }
    };
    loaded.map_err(|source| InstallationError::Plugin {
        file: file(),
        key,
        source,
    })
}
