//! REST resources: SOQL query/queryAll with paging, describe (cached), `/limits`.
//!
//! Owns the typed shapes of these responses and the paging rule: follow `nextRecordsUrl`
//! until `done`, one page per stream item, so a caller can hand each page to its sink before
//! the next is fetched. It never buffers more than one page and never interprets records.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::transport::Call;
use super::{CachedDescribe, SalesforceClient, SalesforceError};
use crate::throttle::Project;

/// One page of a SOQL query.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QueryPage {
    #[serde(rename = "totalSize")]
    pub total_size: u64,
    pub done: bool,
    #[serde(rename = "nextRecordsUrl", default)]
    pub next_records_url: Option<String>,
    /// Records as Salesforce sent them (with `attributes`).
    #[serde(default)]
    pub records: Vec<Map<String, Value>>,
}

/// `Max` / `Remaining` of one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    #[serde(rename = "Max")]
    pub max: u64,
    #[serde(rename = "Remaining")]
    pub remaining: u64,
}

/// The org's `/limits`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgLimits {
    pub daily_api_requests: Limit,
    /// Every limit by name (per-connected-app sub-entries are dropped).
    pub all: BTreeMap<String, Limit>,
}

/// One field of a describe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub length: u64,
    #[serde(default)]
    pub nillable: bool,
    #[serde(default)]
    pub createable: bool,
    #[serde(default)]
    pub updateable: bool,
    #[serde(default)]
    pub external_id: bool,
    #[serde(default)]
    pub restricted_picklist: bool,
    #[serde(default)]
    pub reference_to: Vec<String>,
}

/// `GET /sobjects/{X}/describe`: typed essentials, and the JSON of the keys the host reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SObjectDescribe {
    pub name: String,
    pub fields: Vec<FieldDescribe>,
    /// Served by the replication resources (`updated`, `deleted`): deletes can be read
    /// rather than found by comparing Ids.
    pub replicateable: bool,
    /// The response cut to the keys the host reads (`describe_keys`), as compact text: one
    /// describe is cached for every object of every installation, and as text it takes a
    /// tenth of the memory of a JSON tree. It is read once per pass or round.
    kept: Box<str>,
}

impl SObjectDescribe {
    /// `raw`, a describe response of `object`.
    pub fn from_json(object: &str, raw: Value) -> Result<Self, serde_json::Error> {
        let fields: Vec<FieldDescribe> =
            serde_json::from_value(raw.get("fields").cloned().unwrap_or(Value::Array(vec![])))?;
        let name = raw
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(object)
            .to_owned();
        let replicateable = raw
            .get("replicateable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let kept = super::describe_keys::kept(raw).to_string().into_boxed_str();
        Ok(SObjectDescribe {
            name,
            fields,
            replicateable,
            kept,
        })
    }

    /// The describe's JSON: the keys the host reads, parsed from the kept text.
    pub fn raw(&self) -> Value {
        // The text was written from a JSON value, so it always reads back.
        serde_json::from_str(&self.kept).unwrap_or(Value::Null)
    }

    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// Everything but RFC 3986 unreserved characters is escaped in a path segment, so an object,
/// field or external id value can never change the path (`/`, `?`, `#`, `%`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

pub(crate) fn path_segment(s: &str) -> String {
    encode_segment(s)
}

impl SalesforceClient {
    /// Streams the pages of `soql` (live rows).
    pub fn query(
        &self,
        project: Project,
        soql: &str,
    ) -> impl Stream<Item = Result<QueryPage, SalesforceError>> + Send + 'static {
        self.query_pages(project, soql, false)
    }

    /// Streams the pages of `soql` including deleted and archived rows (`queryAll`).
    pub fn query_all(
        &self,
        project: Project,
        soql: &str,
    ) -> impl Stream<Item = Result<QueryPage, SalesforceError>> + Send + 'static {
        self.query_pages(project, soql, true)
    }

    fn query_pages(
        &self,
        project: Project,
        soql: &str,
        all: bool,
    ) -> impl Stream<Item = Result<QueryPage, SalesforceError>> + Send + 'static {
        enum Next {
            First(String),
            More(String),
            Done,
        }
        let client = self.clone();
        futures_util::stream::try_unfold(Next::First(soql.to_string()), move |next| {
            let client = client.clone();
            async move {
                let call = match next {
                    Next::Done => return Ok(None),
                    Next::First(q) => client.first_query_call(project, q, all),
                    // nextRecordsUrl is an absolute path on the instance, followed verbatim.
                    Next::More(url) => Call::new(project, "queryMore", Method::GET, url),
                };
                let page: QueryPage = client.inner.execute(&call).await?.json("query page")?;
                let next = match (&page.next_records_url, page.done) {
                    (Some(u), false) => Next::More(u.clone()),
                    _ => Next::Done,
                };
                Ok(Some((page, next)))
            }
        })
    }

    /// The first page of `soql` as Salesforce sent it, for a reader that streams its
    /// records into columns instead of parsing them into maps. Weft's own queries carry a
    /// `LIMIT` within one page; the rest of a longer result is not read.
    pub async fn first_page_body(
        &self,
        project: Project,
        soql: &str,
        all: bool,
    ) -> Result<Bytes, SalesforceError> {
        let call = self.first_query_call(project, soql.to_owned(), all);
        Ok(self.inner.execute(&call).await?.body)
    }

    fn first_query_call(&self, project: Project, soql: String, all: bool) -> Call {
        let kind = if all { "queryAll" } else { "query" };
        Call::new(project, kind, Method::GET, self.data_path(kind)).query("q", soql)
    }

    /// The org's `/limits`; also tells the governor the daily maximum and org usage.
    pub async fn limits(&self, project: Project) -> Result<OrgLimits, SalesforceError> {
        let reply = self
            .inner
            .execute(&Call::new(
                project,
                "limits",
                Method::GET,
                self.data_path("limits"),
            ))
            .await?;
        let raw: Map<String, Value> = reply.json("limits")?;
        let mut all = BTreeMap::new();
        for (k, v) in &raw {
            if let (Some(max), Some(rem)) = (
                v.get("Max").and_then(Value::as_u64),
                v.get("Remaining").and_then(Value::as_u64),
            ) {
                all.insert(
                    k.clone(),
                    Limit {
                        max,
                        remaining: rem,
                    },
                );
            }
        }
        let daily =
            all.get("DailyApiRequests")
                .copied()
                .ok_or_else(|| SalesforceError::Decode {
                    context: "limits".into(),
                    message: "no DailyApiRequests entry".into(),
                })?;
        self.inner
            .governor
            .observe_usage(daily.max.saturating_sub(daily.remaining), daily.max);
        Ok(OrgLimits {
            daily_api_requests: daily,
            all,
        })
    }

    /// Describe of `object`, from the cache when present.
    pub async fn describe(
        &self,
        project: Project,
        object: &str,
    ) -> Result<Arc<SObjectDescribe>, SalesforceError> {
        if let Some(cached) = self.cached_describe(object) {
            return Ok(cached.describe);
        }
        self.refresh_describe(project, object).await
    }

    /// Describe of `object`: the cached one while the org confirmed it less than
    /// `max_age` ago, otherwise revalidated ([`Self::refresh_describe`]).
    pub async fn describe_within(
        &self,
        project: Project,
        object: &str,
        max_age: std::time::Duration,
    ) -> Result<Arc<SObjectDescribe>, SalesforceError> {
        if let Some(cached) = self.cached_describe(object)
            && cached.checked.elapsed() < max_age
        {
            return Ok(cached.describe);
        }
        self.refresh_describe(project, object).await
    }

    fn cached_describe(&self, object: &str) -> Option<CachedDescribe> {
        self.inner
            .describes
            .lock()
            .ok()
            .and_then(|m| m.get(object).cloned())
    }

    /// Fetches the describe of `object` again and replaces the cached one (new custom
    /// fields appear; callers refresh on `INVALID_FIELD` or on a schedule). With a cached
    /// describe the request is conditional (`If-Modified-Since` one second before the org's
    /// `Date` of the cached one, since both sides count whole seconds and a change in that
    /// same second must not be missed): an unchanged schema costs a `304` and no parsing.
    pub async fn refresh_describe(
        &self,
        project: Project,
        object: &str,
    ) -> Result<Arc<SObjectDescribe>, SalesforceError> {
        let path = self.data_path(&format!("sobjects/{}/describe", encode_segment(object)));
        let cached = self.cached_describe(object);
        let mut call = Call::new(project, "describe", Method::GET, path);
        let since = cached
            .as_ref()
            .and_then(|c| c.as_of.as_deref())
            .and_then(crate::retry::parse_http_date)
            .and_then(|date| date.checked_sub(jiff::SignedDuration::from_secs(1)).ok());
        if let Some(since) = since {
            call = call.header("If-Modified-Since", crate::retry::format_http_date(since));
        }
        let reply = self.inner.execute(&call).await?;
        if reply.not_modified
            && let Some(cached) = cached
        {
            if let Ok(mut m) = self.inner.describes.lock()
                && let Some(entry) = m.get_mut(object)
            {
                entry.checked = std::time::Instant::now();
            }
            return Ok(cached.describe);
        }
        let raw: Value = reply.json("describe")?;
        let describe =
            SObjectDescribe::from_json(object, raw).map_err(|e| SalesforceError::Decode {
                context: format!("describe {object}"),
                message: e.to_string(),
            })?;
        let describe = Arc::new(describe);
        if let Ok(mut m) = self.inner.describes.lock() {
            m.insert(
                object.to_string(),
                CachedDescribe {
                    describe: describe.clone(),
                    as_of: reply.date,
                    checked: std::time::Instant::now(),
                },
            );
        }
        Ok(describe)
    }

    /// Forgets every cached describe.
    pub fn clear_describe_cache(&self) {
        if let Ok(mut m) = self.inner.describes.lock() {
            m.clear();
        }
    }
}
