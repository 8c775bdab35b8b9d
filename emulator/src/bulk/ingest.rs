//! Bulk 2.0 ingest jobs: create (`Open`), one CSV upload, `UploadComplete`, processing
//! through the same validation as REST writes, and success / failed / unprocessed results.

use super::{Job, JobRef, dialect_of, job_or_404, lock};
use crate::auth::Session;
use crate::error::{ApiError, RecordError};
use crate::faults::{BodyReset, cut_body};
use crate::http::{self, Req, Resp};
use crate::ids;
use crate::org::Org;
use crate::render::{self, CsvDialect};
use crate::schema::{FieldDef, Storage};
use crate::store::{Store, Value};
use crate::writes::{self, Change, Op};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Rows applied per write-lock acquisition, so REST readers interleave with a big job.
const INGEST_LOCK_ROWS: usize = 1_000;

pub async fn dispatch_ingest(
    org: &Arc<Org>,
    req: &Req,
    s: &[&str],
    version: &str,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    match (req.method.as_str(), s) {
        ("POST", ["jobs", "ingest"]) => create_ingest(org, req, version, session, origin),
        ("GET", ["jobs", "ingest"]) => Ok(http::json(
            200,
            &json!({"done": true, "records": org.jobs.all(false), "nextRecordsUrl": null}),
        )),
        ("GET", ["jobs", "ingest", id]) => {
            let j = job_or_404(org, id)?;
            let info = lock(&j)?.info();
            Ok(http::json(200, &info))
        }
        ("PUT", ["jobs", "ingest", id, "batches"]) => {
            let j = job_or_404(org, id)?;
            let mut job = lock(&j)?;
            if job.state != "Open" {
                return Err(ApiError::new(
                    400,
                    "INVALIDJOBSTATE",
                    format!("Job is not open for upload: {}", job.state),
                ));
            }
            if !job.data.is_empty() {
                return Err(ApiError::new(
                    400,
                    "INVALIDJOBSTATE",
                    "Only one upload is allowed per job",
                ));
            }
            job.data = req.body.to_vec();
            Ok(http::empty(201))
        }
        ("PATCH", ["jobs", "ingest", id]) => {
            let body = req.json()?;
            let j = job_or_404(org, id)?;
            let mut job = lock(&j)?;
            match body["state"].as_str() {
                Some("UploadComplete") if job.state == "Open" => {
                    job.state = "UploadComplete".into();
                    job.modstamp_ms = org.clock.now_audit_ms();
                    let info = job.info();
                    drop(job);
                    let org2 = org.clone();
                    let j2 = j.clone();
                    tokio::spawn(async move { run_ingest_job(org2, j2).await });
                    Ok(http::json(200, &info))
                }
                Some("Aborted") if !job.terminal() => {
                    job.state = "Aborted".into();
                    job.modstamp_ms = org.clock.now_audit_ms();
                    Ok(http::json(200, &job.info()))
                }
                other => Err(ApiError::new(
                    400,
                    "INVALIDJOBSTATE",
                    format!(
                        "Cannot change state from {} to {}",
                        job.state,
                        other.unwrap_or("?")
                    ),
                )),
            }
        }
        ("DELETE", ["jobs", "ingest", id]) => {
            job_or_404(org, id)?;
            org.jobs.remove(id);
            Ok(http::empty(204))
        }
        ("GET", ["jobs", "ingest", id, kind]) => {
            let j = job_or_404(org, id)?;
            let job = lock(&j)?;
            let body = match kind.to_ascii_lowercase().as_str() {
                "successfulresults" => job.success_csv.clone(),
                "failedresults" => job.failed_csv.clone(),
                "unprocessedrecords" => job.unprocessed_csv.clone(),
                _ => return Err(ApiError::not_found()),
            };
            if !job.terminal() && !kind.eq_ignore_ascii_case("unprocessedrecords") {
                return Err(ApiError::new(
                    400,
                    "API_ERROR",
                    format!("Job is not complete: {}", job.state),
                ));
            }
            if let Some(share) = org.faults.body_reset().filter(|_| body.len() > 1) {
                // Cut somewhere after the first byte and before the last.
                let cut = ((body.len() as f64 * share) as usize).clamp(1, body.len() - 1);
                org.stats.fault("body_reset");
                let mut r = http::bytes_response(200, "text/csv", cut_body(body, cut));
                r.extensions_mut().insert(BodyReset);
                return Ok(r);
            }
            Ok(http::bytes_response(200, "text/csv", body))
        }
        _ => Err(ApiError::not_found()),
    }
}

const INGEST_OPS: &[&str] = &["insert", "update", "upsert", "delete", "hardDelete"];

fn create_ingest(
    org: &Arc<Org>,
    req: &Req,
    version: &str,
    session: &Session,
    origin: &str,
) -> Result<Resp, ApiError> {
    // The multipart variant carries the job and its CSV in one request and creates a job
    // that is already `UploadComplete`.
    let multipart = req
        .header("content-type")
        .filter(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"))
        .map(|ct| {
            let boundary = ct
                .split(';')
                .find_map(|p| p.trim().strip_prefix("boundary="))
                .map(|b| b.trim_matches('"').to_string())
                .unwrap_or_default();
            multipart_parts(&req.body, &boundary)
        });
    let (body, data) = match &multipart {
        Some(parts) => {
            let part = |n: &str| {
                parts
                    .iter()
                    .find(|(name, _)| name == n)
                    .map(|(_, v)| v.clone())
            };
            let job = part("job").ok_or_else(|| {
                ApiError::new(400, "API_ERROR", "multipart request needs a 'job' part")
            })?;
            let content = part("content").ok_or_else(|| {
                ApiError::new(400, "API_ERROR", "multipart request needs a 'content' part")
            })?;
            if content.len() > MULTIPART_MAX_BYTES {
                return Err(ApiError::new(
                    400,
                    "API_ERROR",
                    "multipart content exceeds 100,000 characters; upload it with PUT .../batches instead",
                ));
            }
            let body: serde_json::Value =
                serde_json::from_slice(&job).map_err(|e| ApiError::json_parser(e.to_string()))?;
            (body, Some(content))
        }
        None => (req.json()?, None),
    };
    let object = body["object"]
        .as_str()
        .ok_or_else(|| ApiError::new(400, "API_ERROR", "object is required"))?;
    let operation = body["operation"].as_str().unwrap_or_default().to_string();
    if !INGEST_OPS.contains(&operation.as_str()) {
        return Err(ApiError::new(
            400,
            "API_ERROR",
            format!("Invalid operation: {operation}"),
        ));
    }
    let (cd, le, dialect) = dialect_of(&body)?;
    let (object, ext) = {
        let store = org
            .store
            .read()
            .map_err(|_| ApiError::new(500, "UNKNOWN_EXCEPTION", "store lock poisoned"))?;
        let t = store.table(object).ok_or_else(|| {
            ApiError::new(
                400,
                "INVALIDENTITY",
                format!("Entity '{object}' is not supported by the Bulk API"),
            )
        })?;
        let ext = if operation == "upsert" {
            let name = body["externalIdFieldName"].as_str().ok_or_else(|| {
                ApiError::new(
                    400,
                    "API_ERROR",
                    "externalIdFieldName is required for upsert",
                )
            })?;
            let f = t
                .def
                .field(name)
                .filter(|f| f.external_id || f.storage == Storage::Id)
                .ok_or_else(|| {
                    ApiError::new(
                        400,
                        "INVALIDFIELD",
                        format!("External ID field {name} is not valid for {}", t.def.name),
                    )
                })?;
            Some(f.name.clone())
        } else {
            None
        };
        (t.def.name.clone(), ext)
    };
    let now = org.clock.now_audit_ms();
    let job = Job {
        id: org.jobs.next_id(),
        is_query: false,
        operation,
        object,
        state: "Open".into(),
        created_ms: now,
        modstamp_ms: now,
        api_version: version.to_string(),
        column_delimiter: cd,
        line_ending: le,
        dialect,
        created_by: session.user_row,
        processed: 0,
        failed: 0,
        error_message: None,
        external_id: ext,
        plan: None,
        rows: None,
        data: Vec::new(),
        success_csv: Vec::new(),
        failed_csv: Vec::new(),
        unprocessed_csv: Vec::new(),
        started: Instant::now(),
        processing_ms: 0,
        origin: origin.replace("/rest/", "/bulkapi/"),
    };
    let Some(data) = data else {
        let info = job.info();
        org.jobs.insert(job);
        return Ok(http::json(200, &info));
    };
    let mut job = job;
    job.data = data;
    job.state = "UploadComplete".into();
    let info = job.info();
    let jref = org.jobs.insert(job);
    let org2 = org.clone();
    tokio::spawn(async move { run_ingest_job(org2, jref).await });
    Ok(http::json(200, &info))
}

/// Salesforce's cap on CSV carried in a multipart job request.
const MULTIPART_MAX_BYTES: usize = 100_000;

/// Splits a `multipart/form-data` body into (part name, content).
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if boundary.is_empty() {
        return out;
    }
    let delim = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    for chunk in text.split(delim.as_str()).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk
            .strip_prefix("\r\n")
            .or_else(|| chunk.strip_prefix('\n'))
            .unwrap_or(chunk);
        let (head, content) = match chunk
            .split_once("\r\n\r\n")
            .or_else(|| chunk.split_once("\n\n"))
        {
            Some(x) => x,
            None => continue,
        };
        let name = head
            .split(';')
            .find_map(|p| p.trim().strip_prefix("name="))
            .map(|n| {
                n.split(['\r', '\n'])
                    .next()
                    .unwrap_or(n)
                    .trim_matches('"')
                    .to_string()
            })
            .unwrap_or_default();
        let content = content
            .strip_suffix("\r\n")
            .or_else(|| content.strip_suffix('\n'))
            .unwrap_or(content);
        out.push((name, content.as_bytes().to_vec()));
    }
    out
}

/// How one CSV column maps onto the object.
enum ColMap {
    Field(usize),
    /// `Account.External_Id__c`: (reference field index, target table, target field).
    /// The field's definition is boxed: it is several times the size of an index.
    Relation(usize, usize, Box<FieldDef>),
}

fn write_csv_line(out: &mut Vec<u8>, lead: &[&str], cells: &[String], d: CsvDialect) {
    let mut first = true;
    for v in lead.iter().copied().chain(cells.iter().map(String::as_str)) {
        if !first {
            out.push(d.delimiter);
        }
        first = false;
        render::write_csv_quoted(out, v);
    }
    d.end_line(out);
}

async fn run_ingest_job(org: Arc<Org>, jref: JobRef) {
    let delay = org.cfg.bulk_processing_delay;
    tokio::time::sleep(delay / 2).await;
    let (data, dialect, op, object, ext, user, origin) = match jref.lock() {
        Ok(mut j) if j.state == "UploadComplete" => {
            j.state = "InProgress".into();
            j.modstamp_ms = org.clock.now_audit_ms();
            (
                std::mem::take(&mut j.data),
                j.dialect,
                j.operation.clone(),
                j.object.clone(),
                j.external_id.clone(),
                j.created_by,
                j.origin.clone(),
            )
        }
        _ => return,
    };
    tokio::time::sleep(delay / 2).await;
    let fail = org.faults.bulk_fail();
    let org2 = org.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        process_ingest(
            &org2,
            &data,
            dialect,
            &op,
            &object,
            ext.as_deref(),
            user,
            &origin,
            fail,
        )
    })
    .await;
    if let Ok(mut j) = jref.lock() {
        j.modstamp_ms = org.clock.now_audit_ms();
        j.processing_ms = j.started.elapsed().as_millis() as u64;
        match outcome {
            Ok(Ok(o)) => {
                j.processed = o.processed;
                j.failed = o.failed;
                j.success_csv = o.success;
                j.failed_csv = o.failed_csv;
                j.unprocessed_csv = o.unprocessed;
                if fail {
                    org.stats.fault("bulk_failed");
                    j.state = "Failed".into();
                    j.error_message = Some("InternalServerError: the job failed to complete after internal retries; all records are unprocessed".into());
                } else if j.state == "InProgress" {
                    j.state = "JobComplete".into();
                }
            }
            Ok(Err(e)) => {
                j.state = "Failed".into();
                j.error_message = Some(e);
            }
            Err(e) => {
                j.state = "Failed".into();
                j.error_message = Some(format!("InternalServerError: {e}"));
            }
        }
    }
}

struct IngestOutcome {
    processed: u64,
    failed: u64,
    success: Vec<u8>,
    failed_csv: Vec<u8>,
    unprocessed: Vec<u8>,
}

#[allow(clippy::too_many_arguments)]
fn process_ingest(
    org: &Org,
    data: &[u8],
    d: CsvDialect,
    op: &str,
    object: &str,
    ext: Option<&str>,
    user: u32,
    origin: &str,
    fail: bool,
) -> Result<IngestOutcome, String> {
    let rows =
        crate::csv_in::parse(data, d.delimiter).map_err(|e| format!("InvalidBatch : {e}"))?;
    let Some((header, body)) = rows.split_first() else {
        return Err("InvalidBatch : Empty CSV".into());
    };
    let hdr: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut success = Vec::new();
    let mut failed_csv = Vec::new();
    let mut unprocessed = Vec::new();
    let mut sh = vec!["sf__Id", "sf__Created"];
    sh.extend(&hdr);
    render::write_csv_header(&mut success, &sh, d);
    let mut fh = vec!["sf__Id", "sf__Error"];
    fh.extend(&hdr);
    render::write_csv_header(&mut failed_csv, &fh, d);
    render::write_csv_header(&mut unprocessed, &hdr, d);
    if fail {
        for r in body {
            write_csv_line(&mut unprocessed, &[], r, d);
        }
        return Ok(IngestOutcome {
            processed: 0,
            failed: 0,
            success,
            failed_csv,
            unprocessed,
        });
    }
    // Resolve the header once.
    let (table, maps) = {
        let store = org
            .store
            .read()
            .map_err(|_| "store lock poisoned".to_string())?;
        let t = store
            .table_index(object)
            .ok_or_else(|| format!("InvalidBatch : entity {object} no longer exists"))?;
        let def = &store.tables[t].def;
        let mut maps = Vec::new();
        for h in &hdr {
            if let Some((rel, field)) = h.split_once('.') {
                let rf = def.fields.iter().position(|f| {
                    f.relationship_name
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case(rel))
                });
                let target = rf
                    .and_then(|i| def.fields[i].reference_to.as_deref())
                    .and_then(|n| store.table_index(n));
                match (rf, target) {
                    (Some(i), Some(tt)) => match store.tables[tt].def.field(field) {
                        Some(f) if f.external_id || f.storage == Storage::Id => {
                            maps.push(ColMap::Relation(i, tt, Box::new(f.clone())))
                        }
                        _ => return Err(format!("InvalidBatch : Field name not found : {h}")),
                    },
                    _ => return Err(format!("InvalidBatch : Field name not found : {h}")),
                }
            } else if let Some(i) = def.field_index(h) {
                maps.push(ColMap::Field(i));
            } else {
                return Err(format!("InvalidBatch : Field name not found : {h}"));
            }
        }
        (t, maps)
    };
    let id_col = hdr.iter().position(|h| h.eq_ignore_ascii_case("Id"));
    let ext_col = ext.and_then(|e| hdr.iter().position(|h| h.eq_ignore_ascii_case(e)));
    let (mut processed, mut failed) = (0u64, 0u64);
    for chunk in body.chunks(INGEST_LOCK_ROWS) {
        let Ok(mut store) = org.store.write() else {
            return Err("store lock poisoned".into());
        };
        let mut changes: Vec<Change> = Vec::new();
        for r in chunk {
            processed += 1;
            let res = if org.faults.lock_row() {
                org.stats.fault("lock_row");
                Err((
                    None,
                    RecordError::new(
                        "UNABLE_TO_LOCK_ROW",
                        "unable to obtain exclusive access to this record or 1 records",
                        vec![],
                    ),
                ))
            } else {
                ingest_row(
                    org, &mut store, table, &maps, r, op, id_col, ext_col, ext, user,
                )
            };
            match res {
                Ok((row, created, change)) => {
                    let id = ids::make_id(&store.tables[table].def.key_prefix, row);
                    write_csv_line(
                        &mut success,
                        &[&id, if created { "true" } else { "false" }],
                        r,
                        d,
                    );
                    changes.push(change);
                }
                Err((row, e)) => {
                    failed += 1;
                    let id = row
                        .map(|x| ids::make_id(&store.tables[table].def.key_prefix, x))
                        .unwrap_or_default();
                    let msg = format!("{}:{}:{} --", e.status_code, e.message, e.fields.join(","));
                    write_csv_line(&mut failed_csv, &[&id, &msg], r, d);
                }
            }
        }
        org.committed(&store, &changes, origin, user);
    }
    Ok(IngestOutcome {
        processed,
        failed,
        success,
        failed_csv,
        unprocessed,
    })
}

type RowResult = Result<(u32, bool, Change), (Option<u32>, RecordError)>;

#[allow(clippy::too_many_arguments)]
fn ingest_row(
    org: &Org,
    store: &mut Store,
    t: usize,
    maps: &[ColMap],
    cells: &[String],
    op: &str,
    id_col: Option<usize>,
    ext_col: Option<usize>,
    ext: Option<&str>,
    user: u32,
) -> RowResult {
    let ctx = org.write_ctx(user);
    let target_row = |store: &Store| -> Result<u32, (Option<u32>, RecordError)> {
        let id = id_col
            .and_then(|i| cells.get(i))
            .map(String::as_str)
            .unwrap_or_default();
        match store.resolve_id(id) {
            Some((tt, row)) if tt == t => Ok(row),
            _ => Err((
                None,
                RecordError::new(
                    "MALFORMED_ID",
                    format!("invalid id: {id}"),
                    vec!["Id".into()],
                ),
            )),
        }
    };
    if op == "delete" || op == "hardDelete" {
        let row = target_row(store)?;
        let r = if op == "delete" {
            writes::delete(store, t, row, ctx)
        } else {
            writes::purge(store, t, row, ctx)
        };
        return r.map(|c| (row, false, c)).map_err(|e| (Some(row), e));
    }
    let wop = if op == "insert" {
        Op::Create
    } else {
        Op::Update
    };
    let mut fields: Vec<(usize, Value)> = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        let Some(raw) = cells.get(i) else { continue };
        if raw.is_empty() {
            continue; // empty cell: leave unchanged
        }
        match m {
            ColMap::Field(fi) => {
                let f = &store.tables[t].def.fields[*fi];
                if f.storage == Storage::Id || Some(i) == ext_col && op == "upsert" {
                    continue;
                }
                let writable = if wop == Op::Create {
                    f.createable
                } else {
                    f.updateable
                };
                if !writable {
                    return Err((
                        None,
                        RecordError::new(
                            "INVALID_FIELD_FOR_INSERT_UPDATE",
                            format!("Unable to create/update fields: {}", f.name),
                            vec![f.name.clone()],
                        ),
                    ));
                }
                let v = if raw == "#N/A" {
                    Value::Null
                } else {
                    writes::coerce_text(store, f, raw).map_err(|e| (None, e))?
                };
                writes::check_value(f, &v).map_err(|e| (None, e))?;
                fields.push((*fi, v));
            }
            ColMap::Relation(fi, tt, tf) => {
                let row = writes::find_by_external_id(store, *tt, tf, raw).ok_or_else(|| {
                    (None, RecordError::new("INVALID_FIELD", format!("Foreign key external ID: {raw} not found for field {} in entity {}", tf.name, store.tables[*tt].def.name), vec![tf.name.clone()]))
                })?;
                fields.push((*fi, Value::Ref(row)));
            }
        }
    }
    match op {
        "insert" => writes::create(store, t, fields, ctx)
            .map(|(r, c)| (r, true, c))
            .map_err(|e| (None, e)),
        "update" => {
            let row = target_row(store)?;
            writes::update(store, t, row, fields, ctx)
                .map(|c| (row, false, c))
                .map_err(|e| (Some(row), e))
        }
        _ => {
            let (Some(col), Some(ext)) = (ext_col, ext) else {
                return Err((
                    None,
                    RecordError::new("MISSING_ARGUMENT", "external id column missing", vec![]),
                ));
            };
            let value = cells.get(col).cloned().unwrap_or_default();
            let f = store.tables[t].def.field(ext).cloned().ok_or_else(|| {
                (
                    None,
                    RecordError::new("INVALID_FIELD", "external id field removed", vec![]),
                )
            })?;
            match writes::find_by_external_id(store, t, &f, &value) {
                Some(row) => writes::update(store, t, row, fields, ctx)
                    .map(|c| (row, false, c))
                    .map_err(|e| (Some(row), e)),
                None => {
                    if f.storage != Storage::Id {
                        let fi = store.tables[t].def.field_index(&f.name).unwrap_or(0);
                        fields.push((fi, Value::Text(value)));
                    }
                    writes::create(store, t, fields, ctx)
                        .map(|(r, c)| (r, true, c))
                        .map_err(|e| (None, e))
                }
            }
        }
    }
}
