//! OAuth 2.0 token endpoint and session checks.
//!
//! Owns the grants the org accepts (client credentials, refresh token, username-password,
//! JWT bearer verified against a configured RS256 public key), the token response shape
//! (`instance_url` pointing back at the emulator, `id` ending in `/{org}/{user}` as jsforce
//! requires, `issued_at` in epoch ms, an HMAC `signature`) and the live sessions. A bad or
//! expired token is always `401` with the JSON-array `INVALID_SESSION_ID` body. It never
//! logs or exposes secrets beyond what a real token endpoint returns.

use crate::config::Credentials;
use crate::error::ApiError;
use crate::ids;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::json;
use sha2::Sha256;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A live API session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_row: u32,
    /// Connected app that minted the session (names the client when a request has neither
    /// `Sforce-Call-Options` nor a `User-Agent`).
    pub client_id: String,
    pub expires: Instant,
}

/// A token endpoint failure: HTTP status and `{error, error_description}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    pub status: u16,
    pub error: String,
    pub description: String,
}

impl OAuthError {
    fn grant(description: &str) -> Self {
        OAuthError {
            status: 400,
            error: "invalid_grant".into(),
            description: description.into(),
        }
    }
    fn client() -> Self {
        OAuthError {
            status: 400,
            error: "invalid_client_id".into(),
            description: "client identifier invalid".into(),
        }
    }
    pub fn body(&self) -> serde_json::Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

#[derive(Debug)]
pub struct Auth {
    pub creds: Credentials,
    ttl: Duration,
    org_id: String,
    jwt_key: Option<RsaPublicKey>,
    sessions: Mutex<HashMap<String, Session>>,
    counter: AtomicU64,
    hasher: RandomState,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid JWT public key: {0}")]
pub struct KeyError(String);

/// Parses the PEM public key (SPKI or PKCS#1) accepted for the JWT bearer grant.
pub fn parse_jwt_key(pem: &str) -> Result<RsaPublicKey, KeyError> {
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|e| KeyError(e.to_string()))
}

/// The `sub` claim of a JWT bearer assertion, read without checking the signature: it only
/// picks the org whose `Auth` then verifies the assertion in full.
pub fn jwt_subject_unverified(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let raw = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    claims["sub"].as_str().map(str::to_string)
}

/// The username of a partner SOAP `login` request (picks the org before the login runs).
pub fn soap_username(body: &str) -> Option<String> {
    xml_text(body, "username").map(xml_unescape)
}

impl Auth {
    /// `jwt_key` is parsed once per process (`parse_jwt_key`) and shared by every org.
    pub fn new(
        creds: Credentials,
        ttl: Duration,
        org_id: String,
        jwt_key: Option<RsaPublicKey>,
    ) -> Self {
        Auth {
            creds,
            ttl,
            org_id,
            jwt_key,
            sessions: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(1),
            hasher: RandomState::new(),
        }
    }

    /// Mints a session for `user_row`. Token shape `00D…!AQ…` like a real session id.
    pub fn issue(&self, user_row: u32, client_id: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let a = self.hasher.hash_one(n);
        let b = self.hasher.hash_one(a ^ 0x5bd1_e995);
        let token = format!("{}!AQ{n:x}.{a:016x}{b:016x}", &self.org_id[..15]);
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(
                token.clone(),
                Session {
                    user_row,
                    client_id: client_id.to_string(),
                    expires: Instant::now() + self.ttl,
                },
            );
        }
        token
    }

    /// Checks an `Authorization` header value.
    pub fn validate(&self, authorization: Option<&str>) -> Result<Session, ApiError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("OAuth "))
            })
            .map(str::trim)
            .ok_or_else(ApiError::invalid_session)?;
        let sessions = self
            .sessions
            .lock()
            .map_err(|_| ApiError::invalid_session())?;
        match sessions.get(token) {
            Some(s) if s.expires > Instant::now() => Ok(s.clone()),
            _ => Err(ApiError::invalid_session()),
        }
    }

    /// Ends every session now (tests: force the client's refresh path).
    pub fn expire_all(&self) {
        if let Ok(mut s) = self.sessions.lock() {
            s.clear();
        }
    }

    pub fn revoke(&self, token: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(token);
        }
    }

    fn check_client(
        &self,
        id: Option<&str>,
        secret: Option<&str>,
        secret_required: bool,
    ) -> Result<(), OAuthError> {
        if id != Some(self.creds.client_id.as_str()) {
            return Err(OAuthError::client());
        }
        match secret {
            Some(s) if s == self.creds.client_secret => Ok(()),
            None if !secret_required => Ok(()),
            _ => Err(OAuthError {
                status: 400,
                error: "invalid_client".into(),
                description: "invalid client credentials".into(),
            }),
        }
    }

    /// Handles `POST /services/oauth2/token`. `basic` is the decoded HTTP Basic pair, if sent.
    pub fn token(
        &self,
        form: &HashMap<String, String>,
        basic: Option<(String, String)>,
        base_url: &str,
    ) -> Result<serde_json::Value, OAuthError> {
        let get = |k: &str| form.get(k).map(String::as_str);
        let (cid, csecret) = match &basic {
            Some((a, b)) => (Some(a.as_str()), Some(b.as_str())),
            None => (get("client_id"), get("client_secret")),
        };
        let grant = get("grant_type").ok_or_else(|| OAuthError {
            status: 400,
            error: "invalid_request".into(),
            description: "grant type is missing".into(),
        })?;
        let client_id = cid.unwrap_or_default().to_string();
        match grant {
            "client_credentials" => self.check_client(cid, csecret, true)?,
            "password" => {
                self.check_client(cid, csecret, true)?;
                let pw = get("password").unwrap_or_default();
                let ok_pw = pw == self.creds.password
                    || pw == format!("{}{}", self.creds.password, self.creds.security_token);
                if get("username") != Some(self.creds.username.as_str()) || !ok_pw {
                    return Err(OAuthError::grant("authentication failure"));
                }
            }
            "refresh_token" => {
                self.check_client(cid, csecret, false)?;
                if get("refresh_token") != Some(self.creds.refresh_token.as_str()) {
                    return Err(OAuthError::grant("expired access/refresh token"));
                }
            }
            "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
                self.check_jwt(get("assertion").unwrap_or_default(), base_url)?;
            }
            _ => {
                return Err(OAuthError {
                    status: 400,
                    error: "unsupported_grant_type".into(),
                    description: "grant type not supported".into(),
                });
            }
        }
        let client_id = if client_id.is_empty() {
            self.creds.client_id.clone()
        } else {
            client_id
        };
        let token = self.issue(0, &client_id);
        let id_url = format!("{base_url}/id/{}/{}", self.org_id, ids::make_id(b"005", 0));
        let issued_at = crate::clock::SimClock::wall_now_ms().to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(self.creds.client_secret.as_bytes())
            .map_err(|_| OAuthError::client())?;
        mac.update(id_url.as_bytes());
        mac.update(issued_at.as_bytes());
        let signature = STANDARD.encode(mac.finalize().into_bytes());
        let mut body = json!({
            "access_token": token,
            "signature": signature,
            "scope": "api refresh_token id",
            "instance_url": base_url,
            "id": id_url,
            "token_type": "Bearer",
            "issued_at": issued_at,
        });
        if grant == "password" || grant == "authorization_code" {
            body["refresh_token"] = json!(self.creds.refresh_token);
        }
        Ok(body)
    }

    fn check_jwt(&self, assertion: &str, base_url: &str) -> Result<(), OAuthError> {
        let key = self
            .jwt_key
            .as_ref()
            .ok_or_else(|| OAuthError::grant("invalid assertion"))?;
        let mut parts = assertion.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(OAuthError::grant("invalid assertion"));
        };
        let dec = |x: &str| {
            URL_SAFE_NO_PAD
                .decode(x.trim_end_matches('='))
                .map_err(|_| OAuthError::grant("invalid assertion"))
        };
        let header: serde_json::Value =
            serde_json::from_slice(&dec(h)?).map_err(|_| OAuthError::grant("invalid assertion"))?;
        if header["alg"] != "RS256" {
            return Err(OAuthError::grant("invalid assertion"));
        }
        let sig = rsa::pkcs1v15::Signature::try_from(dec(s)?.as_slice())
            .map_err(|_| OAuthError::grant("invalid assertion"))?;
        let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone());
        let signed = &assertion[..h.len() + 1 + p.len()];
        vk.verify(signed.as_bytes(), &sig)
            .map_err(|_| OAuthError::grant("invalid assertion"))?;
        let claims: serde_json::Value =
            serde_json::from_slice(&dec(p)?).map_err(|_| OAuthError::grant("invalid assertion"))?;
        if claims["iss"] != self.creds.client_id.as_str() {
            return Err(OAuthError::client());
        }
        if claims["sub"] != self.creds.username.as_str() {
            return Err(OAuthError::grant("user hasn't approved this consumer"));
        }
        let aud_ok = |a: &serde_json::Value| {
            a.as_str().is_some_and(|a| {
                let a = a.trim_end_matches('/');
                a == "https://login.salesforce.com"
                    || a == "https://test.salesforce.com"
                    || a == base_url
            })
        };
        let aud = &claims["aud"];
        if !(aud_ok(aud) || aud.as_array().is_some_and(|v| v.iter().any(aud_ok))) {
            return Err(OAuthError::grant("audience is invalid"));
        }
        let exp = claims["exp"].as_i64().unwrap_or(0);
        if exp * 1000 <= crate::clock::SimClock::wall_now_ms() {
            return Err(OAuthError::grant("expired authorization code"));
        }
        Ok(())
    }
}

/// Decodes `Authorization: Basic b64(id:secret)`.
pub fn basic_pair(header: Option<&str>) -> Option<(String, String)> {
    let b64 = header?.strip_prefix("Basic ")?;
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (a, b) = s.split_once(':')?;
    let dec = |x: &str| {
        percent_encoding::percent_decode_str(x)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((dec(a), dec(b)))
}

/// Text of the first `<tag>` or `<prefix:tag>` element (no nesting needed for `login`).
fn xml_text<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let needle = format!("{tag}>");
    let mut from = 0;
    while let Some(i) = body.get(from..)?.find(&needle) {
        let at = from + i;
        let lt = body[..at].rfind('<')?;
        let prefix = &body[lt + 1..at];
        let opening = prefix.is_empty()
            || (prefix.ends_with(':')
                && prefix[..prefix.len() - 1]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        let start = at + needle.len();
        if opening {
            let end = body[start..].find('<')? + start;
            return Some(&body[start..end]);
        }
        from = start;
    }
    None
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Auth {
    /// The partner SOAP `login` call (`POST /services/Soap/u/NN.N`), which jsforce falls back
    /// to when no OAuth client is configured. Returns (status, XML body).
    pub fn soap_login(&self, body: &str, base_url: &str, version: &str) -> (u16, String) {
        let user = xml_text(body, "username")
            .map(xml_unescape)
            .unwrap_or_default();
        let pass = xml_text(body, "password")
            .map(xml_unescape)
            .unwrap_or_default();
        let ok_pw = pass == self.creds.password
            || pass == format!("{}{}", self.creds.password, self.creds.security_token);
        if user != self.creds.username || !ok_pw {
            return (
                500,
                r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid username, password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
                    .to_string(),
            );
        }
        let token = self.issue(0, &self.creds.client_id);
        let user_id = ids::make_id(b"005", 0);
        let org = &self.org_id;
        let name = xml_escape(&self.creds.username);
        (
            200,
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result><metadataServerUrl>{base_url}/services/Soap/m/{version}/{org}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{base_url}/services/Soap/u/{version}/{org}</serverUrl><sessionId>{token}</sessionId><userId>{user_id}</userId><userInfo><organizationId>{org}</organizationId><organizationName>Weft Emulator</organizationName><profileId>00eRO0000000001AAA</profileId><userEmail>{name}</userEmail><userFullName>Integration User</userFullName><userId>{user_id}</userId><userName>{name}</userName></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"#
            ),
        )
    }
}
