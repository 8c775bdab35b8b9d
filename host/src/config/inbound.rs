//! The `[inbound]` section: which objects to pull, in what order, how, and where to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Invalid;

/// Objects synced first, in this order, when they are configured: parents before children,
/// so a product that links Contacts to Accounts has the Account when the Contact arrives.
const STANDARD_ORDER: [&str; 5] = ["Account", "User", "Contact", "Lead", "Opportunity"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInbound {
    /// Explicit sync order; defaults to [`STANDARD_ORDER`] then the rest by name.
    #[serde(default)]
    order: Option<Vec<String>>,
    #[serde(default)]
    objects: BTreeMap<String, RawObject>,
    #[serde(default)]
    bulk_threshold: Option<u64>,
    #[serde(default)]
    page_size: Option<usize>,
    #[serde(default)]
    lookback_secs: Option<u64>,
    #[serde(default)]
    poll_secs: Option<u64>,
    #[serde(default)]
    reconcile_secs: Option<u64>,
    #[serde(default)]
    describe_ttl_secs: Option<u64>,
    #[serde(default)]
    sink: Option<RawSink>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObject {
    #[serde(default)]
    fields: Option<Vec<String>>,
    #[serde(default)]
    query: Option<String>,
    /// `auto` (default), `bulk` or `rest`.
    #[serde(default)]
    api: Option<String>,
    /// Re-read every row this often (seconds; 86400 = daily) so formula fields, which do
    /// not move `SystemModstamp`, stay current. Off by default: it costs a full read.
    #[serde(default)]
    formula_reread_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    /// `ndjson` (default) or `http`.
    kind: String,
    #[serde(default)]
    dir: Option<PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    batch: Option<usize>,
}

/// Which rows and columns of an object are read.
#[derive(Debug, Clone, PartialEq)]
pub enum SoqlSource {
    /// A conservative selection from describe (every readable scalar field).
    Described,
    /// Exactly these fields (plus `Id`, `SystemModstamp` and `IsDeleted`, always read).
    Fields(Vec<String>),
    /// A custom `SELECT … FROM … [WHERE …]`: its select list, and its filter, which every
    /// query Weft builds keeps (ANDed with the cursor).
    Query {
        select: Vec<String>,
        filter: Option<String>,
    },
}

/// Which API a backfill uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Bulk above the threshold, REST below.
    Auto,
    Bulk,
    Rest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectConfig {
    pub name: String,
    pub source: SoqlSource,
    pub api: Api,
    pub formula_reread: Option<Duration>,
}

/// Where synced records go.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    /// One `<Object>.ndjson` file per object in `dir`.
    Ndjson { dir: PathBuf },
    /// POSTed in batches to the vendor's endpoint.
    Http {
        url: String,
        /// Environment variable holding a bearer token, if the endpoint needs one.
        token_env: Option<String>,
        batch: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct InboundConfig {
    /// Objects in sync order.
    pub objects: Vec<ObjectConfig>,
    /// Objects with more rows than this are backfilled through Bulk API 2.0. 10,000: below
    /// it, REST pages of 2,000 cost at most 5 calls and start at once, while a Bulk job
    /// costs about as many calls (create, polls, pages) and seconds of queueing.
    pub bulk_threshold: u64,
    /// Rows per REST page and per checkpoint. 2,000 is Salesforce's REST page maximum.
    pub page_size: usize,
    /// How far behind the cursor each incremental pass re-reads, for rows whose
    /// `SystemModstamp` was stamped before a transaction that committed late. 5 minutes
    /// covers long-running Apex transactions; re-read rows already delivered are dropped.
    pub lookback: Duration,
    /// Pause between incremental passes. 60 s: a change shows in the product within about a
    /// minute, for about 1,500 calls a day per object when nothing changes.
    pub poll_interval: Duration,
    /// How often objects the replication `deleted` resource does not serve have their Ids
    /// compared with the org's, to find rows deleted for good (`reconcile_secs`). 24 h: a
    /// full Id read costs one call per 2,000 rows, so daily keeps it under 1% of a typical
    /// allocation.
    pub reconcile_interval: Duration,
    /// How long a pass trusts the describe an earlier pass read before asking the org
    /// again (`describe_ttl_secs`). 15 minutes: schemas change rarely, and a revalidation
    /// is a call per object per pass that would otherwise be a third of an idle pass's
    /// calls. A configured field the cached describe lacks, or a failed pass, asks at once.
    pub describe_ttl: Duration,
    pub sink: SinkConfig,
}

impl RawInbound {
    pub(super) fn check(self, base: &Path) -> Result<InboundConfig, Invalid> {
        let mut objects = Vec::new();
        for (name, raw) in &self.objects {
            objects.push(raw.check(name)?);
        }
        let order = match &self.order {
            Some(order) => order.clone(),
            None => default_order(self.objects.keys()),
        };
        let objects = arrange(objects, &order)?;
        let page_size = self.page_size.unwrap_or(2_000);
        if !(200..=2_000).contains(&page_size) {
            return Err(Invalid::new(
                "inbound.page_size",
                format!("{page_size} is outside 200–2000 (Salesforce's REST page bounds)"),
            ));
        }
        let poll = self.poll_secs.unwrap_or(60);
        if poll == 0 {
            return Err(Invalid::new("inbound.poll_secs", "must be at least 1"));
        }
        let lookback = self.lookback_secs.unwrap_or(300);
        if lookback > 86_400 {
            return Err(Invalid::new(
                "inbound.lookback_secs",
                format!("{lookback} is over a day; the re-read would cost more than it saves"),
            ));
        }
        let reconcile = self.reconcile_secs.unwrap_or(86_400);
        if reconcile == 0 {
            return Err(Invalid::new("inbound.reconcile_secs", "must be at least 1"));
        }
        let describe_ttl = self.describe_ttl_secs.unwrap_or(900);
        if describe_ttl > 86_400 {
            return Err(Invalid::new(
                "inbound.describe_ttl_secs",
                format!(
                    "{describe_ttl} is over a day; fields dropped from the org would be requested that long"
                ),
            ));
        }
        let sink = match self.sink {
            Some(sink) => sink.check(base)?,
            None => SinkConfig::Ndjson {
                dir: base.join("weft-out"),
            },
        };
        Ok(InboundConfig {
            objects,
            bulk_threshold: self.bulk_threshold.unwrap_or(10_000),
            page_size,
            lookback: Duration::from_secs(lookback),
            poll_interval: Duration::from_secs(poll),
            reconcile_interval: Duration::from_secs(reconcile),
            describe_ttl: Duration::from_secs(describe_ttl),
            sink,
        })
    }
}

fn default_order<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let names: Vec<&String> = names.collect();
    let mut order: Vec<String> = STANDARD_ORDER
        .iter()
        .filter(|s| names.iter().any(|n| n == *s))
        .map(|s| s.to_string())
        .collect();
    for name in names {
        if !order.contains(name) {
            order.push(name.clone());
        }
    }
    order
}

fn arrange(objects: Vec<ObjectConfig>, order: &[String]) -> Result<Vec<ObjectConfig>, Invalid> {
    let mut arranged = Vec::new();
    for (i, name) in order.iter().enumerate() {
        if order[..i].contains(name) {
            return Err(Invalid::new(
                "inbound.order",
                format!("{name} is listed twice"),
            ));
        }
        match objects.iter().find(|o| &o.name == name) {
            Some(o) => arranged.push(o.clone()),
            None => {
                return Err(Invalid::new(
                    "inbound.order",
                    format!("{name} has no [inbound.objects.{name}] section"),
                ));
            }
        }
    }
    if let Some(left) = objects.iter().find(|o| !order.contains(&o.name)) {
        return Err(Invalid::new(
            "inbound.order",
            format!("{} is configured but missing from the order", left.name),
        ));
    }
    Ok(arranged)
}

impl RawObject {
    fn check(&self, name: &str) -> Result<ObjectConfig, Invalid> {
        let key = |k: &str| format!("inbound.objects.{name}.{k}");
        if !is_api_name(name) {
            return Err(Invalid::new(
                format!("inbound.objects.{name}"),
                "is not a Salesforce object API name",
            ));
        }
        let source = match (&self.fields, &self.query) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(key("query"), "give fields or query, not both"));
            }
            (Some(fields), None) => {
                if fields.is_empty() {
                    return Err(Invalid::new(
                        key("fields"),
                        "is empty; omit it to let describe choose",
                    ));
                }
                if let Some(bad) = fields.iter().find(|f| !is_field_path(f)) {
                    return Err(Invalid::new(
                        key("fields"),
                        format!("{bad:?} is not a field name"),
                    ));
                }
                SoqlSource::Fields(fields.clone())
            }
            (None, Some(query)) => {
                parse_query(name, query).map_err(|r| Invalid::new(key("query"), r))?
            }
            (None, None) => SoqlSource::Described,
        };
        let api = match self.api.as_deref() {
            None | Some("auto") => Api::Auto,
            Some("bulk") => Api::Bulk,
            Some("rest") => Api::Rest,
            Some(other) => {
                return Err(Invalid::new(
                    key("api"),
                    format!("{other:?} is not one of auto, bulk, rest"),
                ));
            }
        };
        let formula_reread = match self.formula_reread_secs {
            Some(0) => {
                return Err(Invalid::new(
                    key("formula_reread_secs"),
                    "must be at least 1",
                ));
            }
            Some(secs) => Some(Duration::from_secs(secs)),
            None => None,
        };
        Ok(ObjectConfig {
            name: name.to_owned(),
            source,
            api,
            formula_reread,
        })
    }
}

impl RawSink {
    fn check(self, base: &Path) -> Result<SinkConfig, Invalid> {
        match self.kind.as_str() {
            "ndjson" => Ok(SinkConfig::Ndjson {
                dir: base.join(self.dir.unwrap_or_else(|| PathBuf::from("weft-out"))),
            }),
            "http" => {
                let url = self
                    .url
                    .ok_or_else(|| Invalid::new("inbound.sink.url", "an http sink needs it"))?;
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(Invalid::new(
                        "inbound.sink.url",
                        format!("{url:?} is not an http(s) URL"),
                    ));
                }
                if let Some(var) = &self.token_env
                    && std::env::var(var).map(|v| v.is_empty()).unwrap_or(true)
                {
                    return Err(Invalid::new(
                        "inbound.sink.token_env",
                        format!("environment variable {var} is not set or empty"),
                    ));
                }
                let batch = self.batch.unwrap_or(500);
                if !(1..=10_000).contains(&batch) {
                    return Err(Invalid::new(
                        "inbound.sink.batch",
                        format!("{batch} is outside 1–10000"),
                    ));
                }
                Ok(SinkConfig::Http {
                    url,
                    token_env: self.token_env,
                    batch,
                })
            }
            other => Err(Invalid::new(
                "inbound.sink.kind",
                format!("{other:?} is not one of ndjson, http"),
            )),
        }
    }
}

fn is_api_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 80
}

/// `Name`, `Custom__c`, or a relationship path such as `Owner.Name`.
fn is_field_path(s: &str) -> bool {
    s.split('.').all(is_api_name)
}

/// Splits `SELECT a, b FROM Object [WHERE …]`. Weft adds its own ordering, limits and
/// cursor conditions, so a query that brings its own is refused rather than half-honoured.
fn parse_query(object: &str, query: &str) -> Result<SoqlSource, String> {
    let query = query.trim();
    let words = top_level_words(query);
    let find = |kw: &str| {
        words
            .iter()
            .find(|(_, w)| w.eq_ignore_ascii_case(kw))
            .map(|(i, _)| *i)
    };
    for kw in ["ORDER", "LIMIT", "OFFSET", "GROUP", "HAVING", "FOR"] {
        if find(kw).is_some() {
            return Err(format!(
                "{kw} is not allowed: Weft orders, pages and resumes the query itself"
            ));
        }
    }
    let select = find("SELECT")
        .filter(|&i| i == 0)
        .ok_or("must start with SELECT")?;
    let from = find("FROM").ok_or("has no FROM")?;
    let list = &query[select + "SELECT".len()..from];
    if list.contains('(') {
        return Err("subqueries and functions are not supported by Bulk API 2.0".into());
    }
    let fields: Vec<String> = list.split(',').map(|f| f.trim().to_owned()).collect();
    if let Some(bad) = fields.iter().find(|f| !is_field_path(f)) {
        return Err(format!("{bad:?} is not a field name"));
    }
    let rest = query[from + "FROM".len()..].trim_start();
    let (target, filter) = match find("WHERE") {
        Some(w) => (
            query[from + 4..w].trim(),
            Some(query[w + "WHERE".len()..].trim().to_owned()),
        ),
        None => (rest.trim(), None),
    };
    if !target.eq_ignore_ascii_case(object) {
        return Err(format!("selects FROM {target}, but it configures {object}"));
    }
    if filter.as_deref().is_some_and(str::is_empty) {
        return Err("WHERE has no condition".into());
    }
    Ok(SoqlSource::Query {
        select: fields,
        filter,
    })
}

/// Byte offsets and text of the words outside quotes and parentheses.
fn top_level_words(s: &str) -> Vec<(usize, &str)> {
    let mut words = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, None::<usize>);
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if quoted {
            if c == b'\\' {
                i += 1;
            } else if c == b'\'' {
                quoted = false;
            }
        } else if c == b'\'' {
            quoted = true;
        } else if c == b'(' {
            depth += 1;
        } else if c == b')' {
            depth -= 1;
        }
        let word_char = !quoted && depth == 0 && (c.is_ascii_alphanumeric() || c == b'_');
        match (word_char, start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                words.push((st, &s[st..i]));
                start = None;
            }
            _ => {}
        }
        i += 1;
    }
    if let Some(st) = start {
        words.push((st, &s[st..]));
    }
    words
}
