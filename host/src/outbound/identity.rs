//! Who the integration is in the org: the Salesforce user id the installation's client is
//! logged in as, read once from the OAuth `userinfo` endpoint with the client's own session.
//!
//! The conflict check needs it: a record whose last change was made by this user was last
//! changed by Weft (possibly by a write whose round never committed because the host died),
//! not by a rep, so it is no conflict. `userinfo` answers for every OAuth flow and every
//! org, and it is not an API call (it does not count against the daily allocation, which is
//! why it does not go through the governor). It never fails a round: when the lookup fails,
//! the caller goes on without it (every change counts as someone else's, as before) and
//! asks again next round.

use std::time::Duration;

use serde::Deserialize;

use crate::salesforce::SalesforceClient;

/// Why the integration user could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("logging in: {0}")]
    Login(#[from] crate::salesforce::SalesforceError),
    #[error("building an HTTP client: {0}")]
    Client(String),
    #[error("GET {url}: {message}")]
    Request { url: String, message: String },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: no user_id in the answer")]
    NoUserId { url: String },
}

#[derive(Deserialize)]
struct UserInfo {
    #[serde(default)]
    user_id: Option<String>,
}

/// The id of the user `client` is logged in as.
pub async fn integration_user(client: &SalesforceClient) -> Result<String, IdentityError> {
    let session = client.login().await?;
    let config = client.config();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout.max(Duration::from_secs(1)));
    if let Some(pem) = &config.extra_ca_pem {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| IdentityError::Client(format!("extra CA: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    let http = builder
        .build()
        .map_err(|e| IdentityError::Client(e.to_string()))?;
    let url = format!("{}/services/oauth2/userinfo", session.instance_url);
    let response = http
        .get(&url)
        .bearer_auth(session.access_token.expose())
        .send()
        .await
        .map_err(|e| IdentityError::Request {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(IdentityError::Status { url, status });
    }
    let info: UserInfo = response.json().await.map_err(|e| IdentityError::Request {
        url: url.clone(),
        message: e.to_string(),
    })?;
    info.user_id
        .filter(|id| !id.is_empty())
        .ok_or(IdentityError::NoUserId { url })
}

/// Whether two Salesforce ids name the same record: an id is 15 case-sensitive characters,
/// optionally followed by a 3-character checksum suffix.
pub fn same_id(a: &str, b: &str) -> bool {
    let a = a.get(..15).unwrap_or(a);
    let b = b.get(..15).unwrap_or(b);
    a.len() == 15 && a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifteen_and_eighteen_character_ids_match() {
        assert!(same_id("005000000000001AAA", "005000000000001"));
        assert!(same_id("005000000000001AAA", "005000000000001AAA"));
        assert!(!same_id("005000000000001AAA", "005000000000002AAA"));
        assert!(!same_id("00500000000000A", "00500000000000a"));
        assert!(!same_id("", ""));
    }
}
