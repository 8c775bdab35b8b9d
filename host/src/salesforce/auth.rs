//! OAuth 2.0 logins: client credentials, JWT bearer and refresh token.
//!
//! Owns the credential types (with a redacting `Debug`, so a token or secret never reaches a
//! log), the token request for each grant, the JWT assertion (RS256, signed locally) and the
//! [`Session`] a login yields. It never retries and never decides when to log in again: the
//! client's request loop does that (one re-login on `INVALID_SESSION_ID`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

use super::error::SalesforceError;

/// A secret string: shown as `[redacted]` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(Arc::from(s.into()))
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

/// How an installation logs in. `Debug` never shows secrets.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `grant_type=client_credentials` (server-to-server; My Domain only on real orgs).
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer`: an RS256 assertion signed with the
    /// connected app's private key (PKCS#8 or PKCS#1 PEM).
    JwtBearer {
        client_id: String,
        username: String,
        private_key_pem: Secret,
        /// `aud` claim; `None` = the login URL (`https://login.salesforce.com` for production,
        /// `https://test.salesforce.com` for sandboxes).
        audience: Option<String>,
    },
    /// `grant_type=refresh_token` with a stored refresh token.
    RefreshToken {
        client_id: String,
        client_secret: Option<Secret>,
        refresh_token: Secret,
    },
}

/// A logged-in session.
#[derive(Clone)]
pub struct Session {
    pub access_token: Secret,
    /// Base URL of the org's API, e.g. `https://acme.my.salesforce.com`.
    pub instance_url: String,
    /// Distinguishes sessions so that concurrent `INVALID_SESSION_ID`s renew only once.
    pub generation: u64,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("access_token", &self.access_token)
            .field("instance_url", &self.instance_url)
            .field("generation", &self.generation)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    instance_url: String,
}

#[derive(Deserialize, Default)]
struct OAuthErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Lifetime of a JWT assertion. Three minutes, as Salesforce's own samples use: enough for
/// clock skew, short enough that a leaked assertion is useless.
const JWT_LIFETIME: Duration = Duration::from_secs(180);

impl Credentials {
    /// The form fields of the token request.
    fn form(&self, login_url: &str) -> Result<Vec<(&'static str, String)>, SalesforceError> {
        Ok(match self {
            Credentials::ClientCredentials {
                client_id,
                client_secret,
            } => vec![
                ("grant_type", "client_credentials".into()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.expose().to_string()),
            ],
            Credentials::JwtBearer {
                client_id,
                username,
                private_key_pem,
                audience,
            } => {
                let aud = audience
                    .clone()
                    .unwrap_or_else(|| login_url.trim_end_matches('/').to_string());
                let assertion = jwt_assertion(client_id, username, &aud, private_key_pem)?;
                vec![
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                    ),
                    ("assertion", assertion),
                ]
            }
            Credentials::RefreshToken {
                client_id,
                client_secret,
                refresh_token,
            } => {
                let mut f = vec![
                    ("grant_type", "refresh_token".into()),
                    ("client_id", client_id.clone()),
                    ("refresh_token", refresh_token.expose().to_string()),
                ];
                if let Some(s) = client_secret {
                    f.push(("client_secret", s.expose().to_string()));
                }
                f
            }
        })
    }
}

/// Builds and signs the JWT bearer assertion. `exp` uses the wall clock on purpose: the
/// token endpoint checks it against real time, whatever the governor's clock says.
pub fn jwt_assertion(
    client_id: &str,
    username: &str,
    audience: &str,
    key_pem: &Secret,
) -> Result<String, SalesforceError> {
    let key = rsa_key(key_pem.expose())?;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + JWT_LIFETIME;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
    let claims = serde_json::json!({"iss": client_id, "sub": username, "aud": audience, "exp": exp.as_secs()});
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| SalesforceError::Config("JWT signing failed".into()))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// Reads an RSA private key from PEM: `BEGIN PRIVATE KEY` (PKCS#8) or `BEGIN RSA PRIVATE
/// KEY` (PKCS#1). The error never echoes the key.
fn rsa_key(pem: &str) -> Result<RsaKeyPair, SalesforceError> {
    let bad =
        || SalesforceError::Config("JWT private key is not a PKCS#8 or PKCS#1 RSA PEM".into());
    let pkcs1 = pem.contains("BEGIN RSA PRIVATE KEY");
    let b64: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(b64).map_err(|_| bad())?;
    if pkcs1 {
        RsaKeyPair::from_der(&der)
    } else {
        RsaKeyPair::from_pkcs8(&der)
    }
    .map_err(|_| bad())
}

/// Logs in at `{login_url}/services/oauth2/token`.
pub async fn login(
    http: &reqwest::Client,
    login_url: &str,
    creds: &Credentials,
    generation: u64,
    timeout: Duration,
) -> Result<Session, SalesforceError> {
    let url = format!("{}/services/oauth2/token", login_url.trim_end_matches('/'));
    let form = creds.form(login_url)?;
    let resp = http
        .post(&url)
        .form(&form)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| SalesforceError::transport(&e))?;
    let status = resp.status().as_u16();
    let body = resp
        .bytes()
        .await
        .map_err(|e| SalesforceError::transport(&e))?;
    if !(200..300).contains(&status) {
        let b: OAuthErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        return Err(SalesforceError::Auth {
            status,
            error: b.error,
            description: b.error_description,
        });
    }
    let t: TokenResponse = serde_json::from_slice(&body).map_err(|e| SalesforceError::Decode {
        context: "token response".into(),
        message: e.to_string(),
    })?;
    Ok(Session {
        access_token: Secret::new(t.access_token),
        instance_url: t.instance_url.trim_end_matches('/').to_string(),
        generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::RefreshToken {
            client_id: "abc".into(),
            client_secret: Some("s3cr3t".into()),
            refresh_token: "5Aep-very-secret".into(),
        };
        let d = format!("{c:?}");
        assert!(!d.contains("s3cr3t") && !d.contains("very-secret"), "{d}");
        let s = Session {
            access_token: "00D!SeSsIoNvAlUe".into(),
            instance_url: "https://x".into(),
            generation: 1,
        };
        assert!(!format!("{s:?}").contains("SeSsIoN"));
    }
}
