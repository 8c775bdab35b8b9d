//! The `[salesforce]` section: where the org is and how to log in.
//!
//! Secrets are never written in the file: each one names an environment variable
//! (`*_env`) or a file (`*_file`) to read it from, so the config can be committed and the
//! secret can rotate without a config change. They are read when the file is loaded, so a
//! missing secret is refused up front rather than at the first login.

use std::path::Path;

use serde::Deserialize;

use super::Invalid;
use crate::salesforce::{ClientConfig, Credentials, Secret};
use crate::secrets::Keyring;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSalesforce {
    /// `https://login.salesforce.com`, `https://test.salesforce.com` or a My Domain URL.
    login_url: String,
    #[serde(default)]
    api_version: Option<String>,
    /// `client_credentials`, `jwt_bearer` or `refresh_token`.
    auth: String,
    client_id: String,
    #[serde(default)]
    client_secret_env: Option<String>,
    #[serde(default)]
    client_secret_file: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    private_key_file: Option<String>,
    #[serde(default)]
    refresh_token_env: Option<String>,
    #[serde(default)]
    refresh_token_file: Option<String>,
    /// Secrets given through the admin API, sealed under the host's key (see
    /// [`crate::secrets`]); never written by hand.
    #[serde(default)]
    client_secret_sealed: Option<String>,
    #[serde(default)]
    refresh_token_sealed: Option<String>,
    #[serde(default)]
    private_key_sealed: Option<String>,
    /// The ongoing credential (an API-only user) the host switches to once every
    /// object's backfill is complete; this section's own credential is the setup one.
    #[serde(default)]
    ongoing: Option<RawOngoing>,
    /// PEM of an extra CA to trust (an org behind a private CA, or the local emulator).
    #[serde(default)]
    ca_file: Option<String>,
    /// Gzip request bodies (default on).
    #[serde(default)]
    gzip_requests: Option<bool>,
    /// A Bulk job still unfinished after this many seconds is aborted and created again
    /// (default 7,200: far beyond any healthy job; lower it for orgs whose jobs stick).
    #[serde(default)]
    bulk_job_timeout_secs: Option<u64>,
}

/// `[salesforce.ongoing]`: like the section's own login keys; `auth` and `client_id`
/// default to the setup credential's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOngoing {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    client_secret_env: Option<String>,
    #[serde(default)]
    client_secret_file: Option<String>,
    #[serde(default)]
    client_secret_sealed: Option<String>,
    #[serde(default)]
    refresh_token_env: Option<String>,
    #[serde(default)]
    refresh_token_file: Option<String>,
    #[serde(default)]
    refresh_token_sealed: Option<String>,
    #[serde(default)]
    private_key_file: Option<String>,
    #[serde(default)]
    private_key_sealed: Option<String>,
}

/// A checked `[salesforce]` section with its secrets read.
#[derive(Debug, Clone)]
pub struct SalesforceConfig {
    pub login_url: String,
    pub api_version: Option<String>,
    /// The setup credential: describe, the first backfill, and everything when there is
    /// no ongoing one.
    pub credentials: Credentials,
    /// The ongoing credential, used once every object's backfill is complete.
    pub ongoing: Option<Credentials>,
    pub extra_ca_pem: Option<Vec<u8>>,
    pub gzip_requests: Option<bool>,
    pub bulk_job_timeout: Option<std::time::Duration>,
}

impl SalesforceConfig {
    /// The transport configuration for `installation`, logging in with the setup
    /// credential.
    pub fn client_config(&self, installation: &str) -> ClientConfig {
        self.client_config_with(installation, &self.credentials)
    }

    /// The transport configuration for `installation`, logging in with `credentials`.
    pub fn client_config_with(
        &self,
        installation: &str,
        credentials: &Credentials,
    ) -> ClientConfig {
        let mut config = ClientConfig::new(installation, &self.login_url, credentials.clone());
        if let Some(v) = &self.api_version {
            config.api_version = v.clone();
        }
        config.extra_ca_pem = self.extra_ca_pem.clone();
        if let Some(gzip) = self.gzip_requests {
            config.gzip_requests = gzip;
        }
        if let Some(timeout) = self.bulk_job_timeout {
            config.bulk.job_timeout = timeout;
        }
        config
    }
}

impl RawSalesforce {
    /// `sealed` opens the `*_sealed` secrets of installation `id` (none without a key).
    pub(super) fn check(
        self,
        base: &Path,
        sealed: Sealed<'_>,
    ) -> Result<SalesforceConfig, Invalid> {
        let url = self.login_url.trim_end_matches('/').to_owned();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Invalid::new(
                "salesforce.login_url",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        if let Some(v) = &self.api_version {
            let numeric = v.split_once('.').is_some_and(|(major, minor)| {
                major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok()
            });
            if !numeric {
                return Err(Invalid::new(
                    "salesforce.api_version",
                    format!("{v:?} is not like \"62.0\" (no leading v)"),
                ));
            }
        }
        let credentials = Login {
            prefix: "",
            auth: &self.auth,
            client_id: &self.client_id,
            username: &self.username,
            client_secret: Sources(
                &self.client_secret_env,
                &self.client_secret_file,
                &self.client_secret_sealed,
            ),
            refresh_token: Sources(
                &self.refresh_token_env,
                &self.refresh_token_file,
                &self.refresh_token_sealed,
            ),
            private_key: Sources(&None, &self.private_key_file, &self.private_key_sealed),
        }
        .credentials(base, sealed)?;
        let ongoing = match &self.ongoing {
            None => None,
            Some(o) => Some(
                Login {
                    prefix: "ongoing.",
                    auth: o.auth.as_deref().unwrap_or(&self.auth),
                    client_id: o.client_id.as_deref().unwrap_or(&self.client_id),
                    username: &o.username,
                    client_secret: Sources(
                        &o.client_secret_env,
                        &o.client_secret_file,
                        &o.client_secret_sealed,
                    ),
                    refresh_token: Sources(
                        &o.refresh_token_env,
                        &o.refresh_token_file,
                        &o.refresh_token_sealed,
                    ),
                    private_key: Sources(&None, &o.private_key_file, &o.private_key_sealed),
                }
                .credentials(base, sealed)?,
            ),
        };
        let extra_ca_pem = match &self.ca_file {
            Some(file) => Some(
                std::fs::read(base.join(file))
                    .map_err(|e| Invalid::new("salesforce.ca_file", format!("{file}: {e}")))?,
            ),
            None => None,
        };
        let bulk_job_timeout = match self.bulk_job_timeout_secs {
            Some(0) => {
                return Err(Invalid::new(
                    "salesforce.bulk_job_timeout_secs",
                    "must be at least 1",
                ));
            }
            Some(secs) => Some(std::time::Duration::from_secs(secs)),
            None => None,
        };
        Ok(SalesforceConfig {
            bulk_job_timeout,
            login_url: url,
            api_version: self.api_version,
            credentials,
            ongoing,
            extra_ca_pem,
            gzip_requests: self.gzip_requests,
        })
    }
}

fn missing(name: &str) -> Invalid {
    Invalid::new(
        format!("salesforce.{name}_env"),
        format!("this auth needs {name}: set {name}_env (a variable name) or {name}_file"),
    )
}

/// One way of logging in, as a section spells it (`prefix` is `""` for the setup
/// credential, `"ongoing."` for the ongoing one).
struct Login<'a> {
    prefix: &'static str,
    auth: &'a str,
    client_id: &'a str,
    username: &'a Option<String>,
    client_secret: Sources<'a>,
    refresh_token: Sources<'a>,
    private_key: Sources<'a>,
}

impl Login<'_> {
    fn credentials(self, base: &Path, sealed: Sealed<'_>) -> Result<Credentials, Invalid> {
        let p = self.prefix;
        let name = |n: &str| format!("{p}{n}");
        if self.client_id.trim().is_empty() {
            return Err(Invalid::new(format!("salesforce.{p}client_id"), "is empty"));
        }
        Ok(match self.auth {
            "client_credentials" => Credentials::ClientCredentials {
                client_id: self.client_id.to_owned(),
                client_secret: secret(base, &name("client_secret"), self.client_secret, sealed)?
                    .ok_or_else(|| missing(&name("client_secret")))?,
            },
            "refresh_token" => Credentials::RefreshToken {
                client_id: self.client_id.to_owned(),
                client_secret: secret(base, &name("client_secret"), self.client_secret, sealed)?,
                refresh_token: secret(base, &name("refresh_token"), self.refresh_token, sealed)?
                    .ok_or_else(|| missing(&name("refresh_token")))?,
            },
            "jwt_bearer" => Credentials::JwtBearer {
                client_id: self.client_id.to_owned(),
                username: self.username.clone().ok_or_else(|| {
                    Invalid::new(format!("salesforce.{p}username"), "jwt_bearer needs it")
                })?,
                private_key_pem: secret(base, &name("private_key"), self.private_key, sealed)?
                    .ok_or_else(|| {
                        Invalid::new(
                            format!("salesforce.{p}private_key_file"),
                            "jwt_bearer needs it",
                        )
                    })?,
                audience: None,
            },
            other => {
                return Err(Invalid::new(
                    format!("salesforce.{p}auth"),
                    format!(
                        "{other:?} is not one of client_credentials, jwt_bearer, refresh_token"
                    ),
                ));
            }
        })
    }
}

/// What opens sealed secrets while checking one installation: the host's key (if it has
/// one) and the installation's id, which the sealing bound them to.
#[derive(Clone, Copy)]
pub(crate) struct Sealed<'a> {
    pub keyring: Option<&'a Keyring>,
    pub installation: &'a str,
}

/// Where one secret may come from: `*_env`, `*_file`, `*_sealed`.
struct Sources<'a>(&'a Option<String>, &'a Option<String>, &'a Option<String>);

/// Reads a secret from the variable or file the config names, or opens its sealed value;
/// `None` when none is set.
fn secret(
    base: &Path,
    name: &str,
    Sources(env, file, sealed_value): Sources<'_>,
    sealed: Sealed<'_>,
) -> Result<Option<Secret>, Invalid> {
    let given = [env, file, sealed_value]
        .iter()
        .filter(|s| s.is_some())
        .count();
    if given > 1 {
        return Err(Invalid::new(
            format!("salesforce.{name}_env"),
            format!("give one of {name}_env, {name}_file or {name}_sealed"),
        ));
    }
    if let Some(value) = sealed_value {
        let key = format!("salesforce.{name}_sealed");
        let keyring = sealed
            .keyring
            .ok_or_else(|| Invalid::new(&key, crate::secrets::SealError::NoKey))?;
        return keyring
            .open(sealed.installation, name, value)
            .map(Some)
            .map_err(|e| Invalid::new(key, e));
    }
    match (env, file) {
        (Some(_), Some(_)) => unreachable!("counted above"),
        (Some(var), None) => match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Ok(Some(Secret::new(value.trim()))),
            // The variable's name is safe to show; its value never is.
            _ => Err(Invalid::new(
                format!("salesforce.{name}_env"),
                format!("environment variable {var} is not set or empty"),
            )),
        },
        (None, Some(path)) => match std::fs::read_to_string(base.join(path)) {
            Ok(value) if !value.trim().is_empty() => Ok(Some(Secret::new(value.trim()))),
            Ok(_) => Err(Invalid::new(
                format!("salesforce.{name}_file"),
                format!("{path} is empty"),
            )),
            Err(e) => Err(Invalid::new(
                format!("salesforce.{name}_file"),
                format!("{path}: {e}"),
            )),
        },
        (None, None) => Ok(None),
    }
}
