//! The orgs one process serves, and how a request finds its org.
//!
//! Owns the registry (org 0 built at start-up, the others built on first use), each org's
//! identity derived from its index — org id, credentials, data seed, webhook — and the two
//! routing rules: a login finds its org by the credential it carries, every other call by
//! the org id its access token starts with (`00D…!…`, as Salesforce's session ids do). It
//! never serves HTTP, and nothing here lets one org's token, quota, fault or record be
//! reached through another org.
//!
//! Credentials of org `k ≥ 1`, derived from the configured ones (org 0 keeps them as given):
//! client id `<client_id>-org<k>`, username `<local>@org<k>.<domain>`, refresh token
//! `<refresh_token>-org<k>`; client secret, password and security token are shared. Each
//! org is its own connected app and its own user, as two customers' orgs would be.

use crate::auth;
use crate::config::{Credentials, EmulatorConfig};
use crate::org::{Org, OrgError};
use crate::schema::ObjectDef;
use rsa::RsaPublicKey;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Most orgs one process serves. Org ids are `00D` + row `seed % 1,000,000 + k`, distinct
/// for any count; the cap keeps a typo (`--orgs 10000000`) from allocating a slot per org
/// up front. 100,000 is far beyond the 1,000-org load tests this exists for.
pub const MAX_ORGS: usize = 100_000;

#[derive(Debug)]
pub struct Orgs {
    plan: Plan,
    slots: Vec<OnceLock<Arc<Org>>>,
    first: Arc<Org>,
}

/// What every org is built from.
#[derive(Debug)]
struct Plan {
    base: EmulatorConfig,
    base_url: String,
    jwt_key: Option<RsaPublicKey>,
    /// The standard objects' definitions, built once and shared by every org's store.
    schema: Vec<Arc<ObjectDef>>,
    /// Lazily built orgs seed and start their change-event task on this runtime, whichever
    /// thread touched them first.
    runtime: tokio::runtime::Handle,
}

/// The derived credentials of org `k` (org 0: `base` unchanged).
pub fn credentials(base: &Credentials, k: usize) -> Credentials {
    if k == 0 {
        return base.clone();
    }
    Credentials {
        client_id: format!("{}-org{k}", base.client_id),
        username: match base.username.split_once('@') {
            Some((local, domain)) => format!("{local}@org{k}.{domain}"),
            None => format!("{}.org{k}", base.username),
        },
        refresh_token: format!("{}-org{k}", base.refresh_token),
        ..base.clone()
    }
}

impl Orgs {
    /// Validates the shared settings and builds (seeds) org 0. Blocking: call it off the
    /// async workers.
    pub fn new(
        base: EmulatorConfig,
        base_url: String,
        runtime: tokio::runtime::Handle,
    ) -> Result<Orgs, OrgError> {
        let jwt_key = base
            .jwt_public_key_pem
            .as_deref()
            .map(auth::parse_jwt_key)
            .transpose()?;
        let n = base.orgs.clamp(1, MAX_ORGS);
        let plan = Plan {
            base,
            base_url,
            jwt_key,
            schema: crate::schema::standard_objects()
                .into_iter()
                .map(Arc::new)
                .collect(),
            runtime,
        };
        let first = plan.build(0);
        let slots: Vec<OnceLock<Arc<Org>>> = (0..n).map(|_| OnceLock::new()).collect();
        let _ = slots[0].set(first.clone());
        Ok(Orgs { plan, slots, first })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Org 0, the org every un-prefixed admin route and the single-org API address.
    pub fn first(&self) -> &Arc<Org> {
        &self.first
    }

    /// Org `k`, built (seeded) now if nobody has touched it yet. Blocking while it seeds:
    /// async callers use `get_async`.
    pub fn get(&self, k: usize) -> Option<Arc<Org>> {
        let slot = self.slots.get(k)?;
        Some(slot.get_or_init(|| self.plan.build(k)).clone())
    }

    /// `get` without blocking an async worker on a seed.
    pub async fn get_async(self: &Arc<Self>, k: usize) -> Option<Arc<Org>> {
        if let Some(o) = self.built(k) {
            return Some(o);
        }
        if k >= self.len() {
            return None;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.get(k))
            .await
            .ok()
            .flatten()
    }

    /// Org `k` if it has been built (a token can only exist for a built org).
    pub fn built(&self, k: usize) -> Option<Arc<Org>> {
        self.slots.get(k)?.get().cloned()
    }

    pub fn each_built(&self) -> impl Iterator<Item = &Arc<Org>> {
        self.slots.iter().filter_map(OnceLock::get)
    }

    /// 18-character id of org `k`.
    pub fn org_id(&self, k: usize) -> String {
        self.plan.org_id(k)
    }

    pub fn credentials(&self, k: usize) -> Credentials {
        credentials(&self.plan.base.credentials, k)
    }

    /// The org an `Authorization: Bearer 00D…!…` header belongs to: the token's first 15
    /// characters are its org's id. `None` for a missing or malformed header, an unknown org
    /// or one not built yet; the caller answers `401 INVALID_SESSION_ID`.
    pub fn by_token(&self, authorization: Option<&str>) -> Option<Arc<Org>> {
        let token = authorization?;
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("OAuth "))?
            .trim();
        self.by_bare_token(token)
    }

    /// Like `by_token`, for a token without its `Bearer ` scheme (revoke).
    pub fn by_bare_token(&self, token: &str) -> Option<Arc<Org>> {
        let (prefix, _) = token.split_once('!')?;
        let (key, row) = crate::ids::parse_id(prefix)?;
        if &key != b"00D" || prefix.len() != 15 {
            return None;
        }
        let k = row.checked_sub(self.plan.id_row(0))? as usize;
        self.built(k)
    }

    /// The org a token request is for, from the credential its grant identifies the caller
    /// by: the username (password, JWT bearer), the refresh token, or the client id (client
    /// credentials). A credential of no org picks org 0, which then refuses it exactly as a
    /// single-org emulator does.
    pub fn login_index(
        &self,
        form: &HashMap<String, String>,
        basic: Option<&(String, String)>,
    ) -> usize {
        let get = |k: &str| form.get(k).map(String::as_str);
        let base = &self.plan.base.credentials;
        let found = match get("grant_type") {
            Some("password") => get("username").and_then(|u| self.username_index(u)),
            Some("refresh_token") => {
                get("refresh_token").and_then(|t| self.suffixed_index(t, &base.refresh_token))
            }
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => get("assertion")
                .and_then(auth::jwt_subject_unverified)
                .and_then(|u| self.username_index(&u)),
            _ => basic
                .map(|(id, _)| id.as_str())
                .or_else(|| get("client_id"))
                .and_then(|c| self.suffixed_index(c, &base.client_id)),
        };
        found.unwrap_or(0)
    }

    /// The org a partner SOAP `login` is for (by username; org 0 when it names no org).
    pub fn soap_login_index(&self, body: &str) -> usize {
        auth::soap_username(body)
            .and_then(|u| self.username_index(&u))
            .unwrap_or(0)
    }

    fn suffixed_index(&self, value: &str, base: &str) -> Option<usize> {
        if value == base {
            return Some(0);
        }
        let k: usize = value
            .strip_prefix(base)?
            .strip_prefix("-org")?
            .parse()
            .ok()?;
        (k >= 1 && k < self.len()).then_some(k)
    }

    fn username_index(&self, username: &str) -> Option<usize> {
        let base = &self.plan.base.credentials.username;
        if username == base {
            return Some(0);
        }
        let k: usize = match base.split_once('@') {
            Some((local, domain)) => {
                let rest = username.strip_prefix(local)?.strip_prefix("@org")?;
                let (digits, d) = rest.split_once('.')?;
                if d != domain {
                    return None;
                }
                digits.parse().ok()?
            }
            None => username
                .strip_prefix(base)?
                .strip_prefix(".org")?
                .parse()
                .ok()?,
        };
        (k >= 1 && k < self.len()).then_some(k)
    }
}

impl Plan {
    /// 18-character id of org `k`.
    fn org_id(&self, k: usize) -> String {
        crate::ids::make_id(b"00D", self.id_row(k))
    }

    fn id_row(&self, k: usize) -> u32 {
        (self.base.seed % 1_000_000) as u32 + k as u32
    }

    /// Org `k`'s configuration: the shared one with its own seed, credentials and webhook.
    fn config_for(&self, k: usize) -> EmulatorConfig {
        let mut cfg = self.base.clone();
        cfg.seed = self.base.seed.wrapping_add(k as u64);
        cfg.credentials = credentials(&self.base.credentials, k);
        // Events carry no org id, so one URL for every org would mix them up: a URL with
        // `{org}` is expanded per org; without it only org 0 delivers.
        cfg.webhook_url = match &self.base.webhook_url {
            Some(u) if u.contains("{org}") => Some(u.replace("{org}", &k.to_string())),
            Some(u) if k == 0 => Some(u.clone()),
            _ => None,
        };
        cfg
    }

    fn build(&self, k: usize) -> Arc<Org> {
        let _rt = self.runtime.enter();
        Org::new(
            self.config_for(k),
            self.org_id(k),
            self.jwt_key.clone(),
            self.base_url.clone(),
            self.schema.clone(),
        )
    }
}
