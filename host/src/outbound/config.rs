//! The `[outbound]` section of an installation's configuration: batch sizes, the retry
//! policy, and per Salesforce object the external id to upsert by and what a delete does.
//!
//! Parsing refuses unknown keys; [`OutboundConfig::validate`] checks ranges and names and
//! every error names the key. It never opens a connection: whether a field exists in the
//! org is checked against describe when records are validated.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as Json;

/// The outbound pipeline's settings for one installation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Events taken from the queue per round. 200: one Collections call and one conflict
    /// query cover a whole round of one object (Salesforce caps both at 200 records / a
    /// URL-sized `IN` list). Larger rounds amortise plugin calls but hold more events
    /// in flight when a round has to be retried.
    pub batch_size: usize,
    /// Records of one object in a round at or above which the write goes through a Bulk
    /// API 2.0 ingest job instead of Collections. 2,000: a Bulk job costs at least five API
    /// calls and seconds of queueing, Collections one call per 200 records, so Bulk only
    /// saves quota from about ten Collections calls on. With the default `batch_size`
    /// Bulk is never used; raise `batch_size` for bursty, large loads.
    pub bulk_threshold: usize,
    /// How long an idle worker waits before looking at the queue again when nothing wakes
    /// it, in ms. Under `weft serve` intake wakes the worker the moment it commits events,
    /// so this is only the pause after a failed round (times ten); a worker without a
    /// wake-up (a library caller's) polls at this interval.
    pub idle_poll_ms: u64,
    /// How long a fetched describe is trusted, in seconds. 600: an admin's new field or
    /// picklist value is seen within ten minutes, for one describe call per object per ten
    /// minutes of quota.
    pub describe_ttl_secs: u64,
    pub retry: RetryConfig,
    /// Per Salesforce object (as the plugin maps it, e.g. `Account`).
    pub objects: BTreeMap<String, ObjectConfig>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            batch_size: 200,
            bulk_threshold: 2_000,
            idle_poll_ms: 200,
            describe_ttl_secs: 600,
            retry: RetryConfig::default(),
            objects: BTreeMap::new(),
        }
    }
}

/// How events that failed transiently (row lock, timeout, 5xx) are retried by the pipeline,
/// on top of the transport's own per-request retries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Rounds an event may fail transiently before it goes to the DLQ. 8 with the default
    /// waits spans about ten minutes: long enough to ride out a lock storm or a Salesforce
    /// incident's first minutes, short enough that a stuck record reaches an operator the
    /// same hour.
    pub max_attempts: u32,
    /// The first wait, in ms (doubled per attempt, with full jitter). 2,000: the transport
    /// already retried within the request, so the next try should be clearly later.
    pub base_ms: u64,
    /// No wait exceeds this, in ms. 300,000 (5 minutes): beyond it, the event mostly waits
    /// for an operator, and the DLQ is where operators look.
    pub max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 8,
            base_ms: 2_000,
            max_ms: 300_000,
        }
    }
}

impl RetryConfig {
    pub fn base(&self) -> Duration {
        Duration::from_millis(self.base_ms)
    }

    pub fn max(&self) -> Duration {
        Duration::from_millis(self.max_ms)
    }
}

/// One Salesforce object the pipeline writes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectConfig {
    /// The external id field records are upserted by, e.g. `Acme_Company_Id__c`. Upsert by
    /// external id is what makes a re-sent write (after a crash or a retry) harmless.
    pub external_id: String,
    /// What a product delete does. No default on purpose: a delete event for an object
    /// without a policy goes to the DLQ (`NO_DELETE_POLICY`) rather than being guessed.
    #[serde(default)]
    pub delete: Option<DeletePolicy>,
}

/// What a product delete does to the Salesforce record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeletePolicy {
    /// Delete the record in Salesforce (it goes to the recycle bin).
    HardDelete,
    /// Keep the record and set `field` to `value` (e.g. `Deleted__c = true`).
    SoftDelete { field: String, value: Json },
    /// Keep the record and set `field` to `value` (e.g. `Active__c = false` or
    /// `Status__c = "Inactive"`).
    MarkInactive { field: String, value: Json },
    /// Do nothing, on purpose; the event is audited as ignored.
    Ignore,
}

impl DeletePolicy {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeletePolicy::HardDelete => "hard_delete",
            DeletePolicy::SoftDelete { .. } => "soft_delete",
            DeletePolicy::MarkInactive { .. } => "mark_inactive",
            DeletePolicy::Ignore => "ignore",
        }
    }
}

/// A refused `[outbound]` setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct OutboundConfigError {
    /// Dotted path from the section, e.g. `outbound.objects.Account.external_id`.
    pub key: String,
    pub reason: String,
}

fn refuse(key: impl Into<String>, reason: impl Into<String>) -> OutboundConfigError {
    OutboundConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

impl OutboundConfig {
    /// Reads the section from its TOML table (unknown keys and wrong types refused).
    pub fn from_toml(table: toml::Table) -> Result<Self, OutboundConfigError> {
        let config: OutboundConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| refuse("outbound", e.message().trim()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the settings alone can tell.
    pub fn validate(&self) -> Result<(), OutboundConfigError> {
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(refuse(
                "outbound.batch_size",
                format!(
                    "{} is outside 1–10000 (a round's events are held in memory)",
                    self.batch_size
                ),
            ));
        }
        if self.bulk_threshold == 0 {
            return Err(refuse(
                "outbound.bulk_threshold",
                "must be at least 1 (a Bulk job for every write wastes quota)",
            ));
        }
        if !(1..=60_000).contains(&self.idle_poll_ms) {
            return Err(refuse(
                "outbound.idle_poll_ms",
                format!("{} is outside 1–60000", self.idle_poll_ms),
            ));
        }
        if !(1..=100).contains(&self.retry.max_attempts) {
            return Err(refuse(
                "outbound.retry.max_attempts",
                format!("{} is outside 1–100", self.retry.max_attempts),
            ));
        }
        if self.retry.base_ms == 0 || self.retry.base_ms > self.retry.max_ms {
            return Err(refuse(
                "outbound.retry.base_ms",
                format!(
                    "{} must be at least 1 and at most retry.max_ms ({})",
                    self.retry.base_ms, self.retry.max_ms
                ),
            ));
        }
        for (object, settings) in &self.objects {
            let at = |key: &str| format!("outbound.objects.{object}.{key}");
            if !is_api_name(object) {
                return Err(refuse(
                    format!("outbound.objects.{object}"),
                    "is not a Salesforce API name (letters, digits and '_')",
                ));
            }
            if !is_api_name(&settings.external_id) {
                return Err(refuse(
                    at("external_id"),
                    format!(
                        "{:?} is not a Salesforce field API name",
                        settings.external_id
                    ),
                ));
            }
            match &settings.delete {
                Some(DeletePolicy::SoftDelete { field, .. })
                | Some(DeletePolicy::MarkInactive { field, .. })
                    if !is_api_name(field) =>
                {
                    return Err(refuse(
                        at("delete.field"),
                        format!("{field:?} is not a Salesforce field API name"),
                    ));
                }
                Some(DeletePolicy::SoftDelete { field, .. })
                | Some(DeletePolicy::MarkInactive { field, .. })
                    if field.eq_ignore_ascii_case(&settings.external_id) =>
                {
                    return Err(refuse(
                        at("delete.field"),
                        "must not be the external id field (it would orphan the record)",
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn describe_ttl(&self) -> Duration {
        Duration::from_secs(self.describe_ttl_secs)
    }

    pub fn idle_poll(&self) -> Duration {
        Duration::from_millis(self.idle_poll_ms)
    }
}

fn is_api_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 80
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<OutboundConfig, OutboundConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| refuse("-", e.to_string()))?;
        OutboundConfig::from_toml(table)
    }

    #[test]
    fn defaults_need_nothing() {
        assert_eq!(parse("").unwrap(), OutboundConfig::default());
    }

    #[test]
    fn objects_with_each_delete_policy() {
        let config = parse(
            r#"
            batch_size = 500
            [objects.Account]
            external_id = "Acme_Company_Id__c"
            delete = { policy = "soft_delete", field = "Deleted__c", value = true }
            [objects.Contact]
            external_id = "External_Id__c"
            delete = { policy = "ignore" }
            [objects.Lead]
            external_id = "External_Id__c"
            "#,
        )
        .unwrap();
        assert_eq!(config.batch_size, 500);
        assert_eq!(
            config.objects["Account"].delete,
            Some(DeletePolicy::SoftDelete {
                field: "Deleted__c".into(),
                value: Json::Bool(true)
            })
        );
        assert_eq!(config.objects["Contact"].delete, Some(DeletePolicy::Ignore));
        assert_eq!(config.objects["Lead"].delete, None);
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("batch_size = 0").unwrap_err();
        assert_eq!(e.key, "outbound.batch_size");
        let e = parse("[objects.Account]\nexternal_id = \"bad name\"").unwrap_err();
        assert_eq!(e.key, "outbound.objects.Account.external_id");
        let e = parse("[objects.Account]\nexternal_id = \"X__c\"\ndelete = { policy = \"mark_inactive\", field = \"X__c\", value = false }").unwrap_err();
        assert_eq!(e.key, "outbound.objects.Account.delete.field");
        let e = parse("bach_size = 3").unwrap_err();
        assert!(e.reason.contains("bach_size"), "{e}");
        let e = parse("[retry]\nbase_ms = 10\nmax_ms = 5").unwrap_err();
        assert_eq!(e.key, "outbound.retry.base_ms");
    }
}
