//! Reading ahead: the next page is fetched while the current one goes through the plugin
//! and the sink.
//!
//! Against a real org a page costs a network round trip (often 100–500 ms) that would
//! otherwise add to every page's plugin and sink time. Read-ahead never moves a checkpoint:
//! a page only counts once the sink has it, so a crash loses at most what was fetched
//! early, which the resume reads again. One page ahead is enough to hide the fetch and
//! keeps memory at two pages.
//!
//! The reader also turns what it fetched into a [`Page`] (off the async workers), so parsing
//! overlaps the plugin's work on the page before.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::page::{self, Page};
use crate::salesforce::{
    BulkCursor, BulkQueryStream, QueryPage, SObjectDescribe, SalesforceClient, SalesforceError,
};
use crate::throttle::Project;

/// A spawned task that is aborted when its handle is dropped, so a failing page never
/// leaves a read-ahead running.
pub(super) struct Ahead<T>(JoinHandle<T>);

impl<T> Drop for Ahead<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Ahead<T> {
    pub(super) async fn join(mut self) -> Option<T> {
        (&mut self.0).await.ok()
    }
}

/// The first page of `query` (Weft's own queries fit one page: they carry a `LIMIT`).
pub(super) async fn first_page(
    client: &SalesforceClient,
    project: Project,
    query: &str,
    all: bool,
) -> Result<QueryPage, SalesforceError> {
    let mut pages = if all {
        client.query_all(project, query).boxed()
    } else {
        client.query(project, query).boxed()
    };
    match pages.next().await {
        Some(page) => page,
        None => Ok(QueryPage {
            total_size: 0,
            done: true,
            next_records_url: None,
            records: Vec::new(),
        }),
    }
}

/// The first page of `query` (`all`: with deleted rows) as a [`Page`] of `object`: the body
/// is read into columns as a stream, off the async workers.
pub(super) async fn rest_page(
    client: &SalesforceClient,
    project: Project,
    object: &str,
    query: &str,
    all: bool,
) -> Result<Page, SalesforceError> {
    let body = client.first_page_body(project, query, all).await?;
    crate::blocking::in_place(|| page::from_rest(object, &body)).map_err(|e| {
        SalesforceError::Decode {
            context: "query page".into(),
            message: e.to_string(),
        }
    })
}

/// Starts fetching the first page of `query` now, as [`rest_page`] reads it.
pub(super) fn page(
    client: &SalesforceClient,
    project: Project,
    object: &str,
    query: String,
) -> Ahead<Result<Page, SalesforceError>> {
    let (client, object) = (client.clone(), object.to_owned());
    Ahead(tokio::spawn(async move {
        rest_page(&client, project, &object, &query, false).await
    }))
}

/// One Bulk batch as a page, with where the result stands after it.
pub(super) struct BulkPage {
    pub page: Page,
    pub cursor: BulkCursor,
    pub last: bool,
}

/// Reads a Bulk result stream one batch ahead of its consumer, typing each batch into a
/// page by `describe` as it arrives.
pub(super) struct BulkAhead {
    batches: mpsc::Receiver<Result<Option<BulkPage>, SalesforceError>>,
    _reader: Ahead<()>,
}

impl BulkAhead {
    pub(super) fn start(
        mut stream: BulkQueryStream,
        object: &str,
        describe: Arc<SObjectDescribe>,
    ) -> Self {
        let (tx, batches) = mpsc::channel(1);
        let object = object.to_owned();
        let reader = tokio::spawn(async move {
            loop {
                let next = stream.next_batch().await.map(|batch| {
                    batch.map(|b| BulkPage {
                        page: crate::blocking::in_place(|| {
                            page::from_bulk(&object, &b.columns, b.rows, &describe)
                        }),
                        cursor: b.cursor,
                        last: b.last,
                    })
                });
                let end = !matches!(&next, Ok(Some(batch)) if !batch.last);
                if tx.send(next).await.is_err() || end {
                    return;
                }
            }
        });
        BulkAhead {
            batches,
            _reader: Ahead(reader),
        }
    }

    /// The next batch; `Ok(None)` at the end of the result.
    pub(super) async fn next_batch(&mut self) -> Result<Option<BulkPage>, SalesforceError> {
        match self.batches.recv().await {
            Some(next) => next,
            // The reader ended after the last batch (or a final error already handed out).
            None => Ok(None),
        }
    }
}
