//! The replication resource for deletes: `GET /sobjects/{X}/deleted/?start=…&end=…`.
//!
//! `queryAll` sees soft-deleted rows only while they sit in the recycle bin; rows deleted
//! for good (emptied bin, hard delete, 15 days later) are only listed here, for the last
//! 30 days. Callers ask for the window since their previous call and continue from
//! `latest_date_covered`.

use jiff::Timestamp;
use reqwest::Method;
use serde::Deserialize;

use super::rest::path_segment;
use super::transport::Call;
use super::{SalesforceClient, SalesforceError};
use crate::throttle::Project;

/// One deleted row.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeletedRecord {
    pub id: String,
    /// As Salesforce wrote it (`2026-11-23T18:20:58.000+0000`).
    #[serde(rename = "deletedDate")]
    pub deleted_date: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeletedRecords {
    #[serde(rename = "deletedRecords", default)]
    pub records: Vec<DeletedRecord>,
    /// Continue from here next time (Salesforce may cover less than asked).
    #[serde(rename = "latestDateCovered", default)]
    pub latest_date_covered: Option<String>,
    #[serde(rename = "earliestDateAvailable", default)]
    pub earliest_date_available: Option<String>,
}

impl SalesforceClient {
    /// Rows of `object` deleted in `[start, end)`.
    pub async fn deleted(
        &self,
        project: Project,
        object: &str,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<DeletedRecords, SalesforceError> {
        let format = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let path = self.data_path(&format!("sobjects/{}/deleted/", path_segment(object)));
        let call = Call::new(project, "deleted", Method::GET, path)
            .query("start", format(start))
            .query("end", format(end));
        self.inner.execute(&call).await?.json("deleted records")
    }
}
