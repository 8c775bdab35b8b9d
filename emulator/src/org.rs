//! The org: every piece of live state, wired together.
//!
//! Owns the shared `Org` value that handlers receive — config, clock, store, sessions,
//! limits, faults, stats, change events, query cursors and Bulk jobs — and the one commit
//! path every API write goes through (stats + change events under the store lock). It must
//! never contain HTTP handling.

use crate::auth::Auth;
use crate::bulk::Jobs;
use crate::cdc::Cdc;
use crate::clock::SimClock;
use crate::config::EmulatorConfig;
use crate::faults::Faults;
use crate::limits::Limits;
use crate::query::Plan;
use crate::seed::{self, Rng, Sizes};
use crate::stats::{Stats, StatsSnapshot};
use crate::store::Store;
use crate::writes::{Change, WriteCtx};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

/// Open REST query cursors kept for `nextRecordsUrl`. Salesforce allows a handful per user
/// and expires them after 15 minutes idle; 1,000 most-recent keeps memory bounded (a cursor
/// over a million rows holds 4 MB of row numbers) while no realistic client runs out.
const MAX_CURSORS: usize = 1_000;

#[derive(Debug, Clone)]
pub struct Cursor {
    pub plan: Arc<Plan>,
    pub rows: Arc<Vec<u32>>,
    /// Page size the query was opened with (`batchSize`), reused for every follow-up page.
    pub batch: usize,
    /// Child subquery rows per parent, computed once when the query runs.
    pub kids: Arc<crate::query::ChildRows>,
}

#[derive(Debug, Default)]
pub struct Cursors {
    map: HashMap<String, Cursor>,
    order: VecDeque<String>,
    next: u32,
}

impl Cursors {
    pub fn insert(&mut self, c: Cursor) -> String {
        let id = crate::ids::make_id(b"01g", self.next);
        self.next = self.next.wrapping_add(1);
        if self.order.len() >= MAX_CURSORS
            && let Some(old) = self.order.pop_front()
        {
            self.map.remove(&old);
        }
        self.order.push_back(id.clone());
        self.map.insert(id.clone(), c);
        id
    }

    pub fn get(&self, id: &str) -> Option<Cursor> {
        self.map.get(id).cloned()
    }
}

#[derive(Debug)]
pub struct Org {
    pub cfg: EmulatorConfig,
    pub org_id: String,
    pub clock: SimClock,
    pub store: RwLock<Store>,
    pub auth: Auth,
    pub limits: Limits,
    pub faults: Faults,
    pub stats: Arc<Stats>,
    pub cdc: Arc<Cdc>,
    pub cursors: Mutex<Cursors>,
    pub jobs: Jobs,
    pub base_url: String,
    pub change_rng: Mutex<Rng>,
}

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error(transparent)]
    Key(#[from] crate::auth::KeyError),
}

impl Org {
    /// Builds and seeds one org. `org_id` and `cfg` (seed, credentials, webhook) come from
    /// `Orgs`, which derives them from the org's index; `schema` is the standard objects,
    /// shared with the other orgs until this one changes its schema. Must run inside a Tokio runtime
    /// (change-event delivery).
    pub fn new(
        cfg: EmulatorConfig,
        org_id: String,
        jwt_key: Option<rsa::RsaPublicKey>,
        base_url: String,
        schema: Vec<Arc<crate::schema::ObjectDef>>,
    ) -> Arc<Org> {
        let mut store = Store::with_schema(schema);
        seed::seed(
            &mut store,
            cfg.seed,
            Sizes {
                users: cfg.users,
                accounts: cfg.accounts,
                contacts: cfg.contacts,
                leads: cfg.leads,
                opportunities: cfg.opportunities,
                sites: cfg.sites,
            },
            &cfg.credentials.username,
        );
        let stats = Arc::new(Stats::default());
        let auth = Auth::new(
            cfg.credentials.clone(),
            cfg.token_ttl,
            org_id.clone(),
            jwt_key,
        );
        Arc::new(Org {
            clock: SimClock::new(
                cfg.clock_start_ms.unwrap_or_else(SimClock::wall_now_ms),
                cfg.clock_scale,
            ),
            store: RwLock::new(store),
            auth,
            limits: Limits::new(
                cfg.api_daily_max,
                cfg.other_integrations_per_day,
                cfg.concurrent_long_running_max,
                cfg.long_running_threshold,
            ),
            faults: Faults::new(cfg.faults.clone(), cfg.seed),
            cdc: Cdc::start(cfg.webhook_url.clone(), stats.clone()),
            stats,
            cursors: Mutex::new(Cursors::default()),
            jobs: Jobs::default(),
            base_url,
            change_rng: Mutex::new(Rng::new(cfg.seed.wrapping_mul(31).wrapping_add(17))),
            org_id,
            cfg,
        })
    }

    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn write_ctx(&self, user_row: u32) -> WriteCtx {
        WriteCtx {
            now_ms: self.clock.now_audit_ms(),
            user_row,
        }
    }

    /// Today's day number in simulated time (anchors `TODAY`, `LAST_N_DAYS`).
    pub fn today(&self) -> i64 {
        self.clock.now_ms().div_euclid(crate::clock::MS_PER_DAY)
    }

    /// Records committed changes: stats and change events. Call with the store lock held.
    pub fn committed(&self, store: &Store, changes: &[Change], origin: &str, user_row: u32) {
        if changes.is_empty() || crate::writes::defer_changes(changes, origin, user_row) {
            return;
        }
        self.stats.written(changes.len() as u64);
        let n = self
            .cdc
            .publish(store, changes, origin, user_row, self.clock.now_audit_ms());
        self.stats.events(n, 0, 0);
    }

    /// Purges recycle-bin rows past their retention. Cheap when nothing is due (one read
    /// lock and a look at each table's oldest entry), so every API request calls it: what
    /// `queryAll` sees then follows simulated time, including a clock moved forward.
    pub fn age_recycle_bin(&self) {
        let now = self.clock.now_ms();
        let due = self
            .store
            .read()
            .map(|s| s.recycle_due_ms() <= now)
            .unwrap_or(false);
        if due && let Ok(mut store) = self.store.write() {
            store.age_recycle_bin(now);
        }
    }

    /// Applies `n` generated changes (the "busy org" generator).
    pub fn generate_changes(&self, n: usize) -> usize {
        self.age_recycle_bin();
        let ctx = self.write_ctx(0);
        let Ok(mut store) = self.store.write() else {
            return 0;
        };
        let changes = match self.change_rng.lock() {
            Ok(mut rng) => seed::generate_changes(&mut store, &mut rng, n, ctx),
            Err(_) => return 0,
        };
        self.committed(
            &store,
            &changes,
            "com/salesforce/api/soap/60.0;client=OtherIntegration",
            0,
        );
        changes.len()
    }

    /// Runs SOQL in-process (no limits, no stats): records as the REST API renders them.
    pub fn query_records(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<Vec<serde_json::Value>, crate::error::ApiError> {
        let parsed = crate::soql::parse(soql)?;
        self.age_recycle_bin();
        let store = self.store.read().map_err(|_| {
            crate::error::ApiError::new(500, "UNKNOWN_EXCEPTION", "store lock poisoned")
        })?;
        let plan = crate::query::plan(&store, &parsed, include_deleted, self.today())?;
        if plan.is_aggregate() {
            return Ok(crate::aggregate::run(&store, &plan)?
                .iter()
                .map(|r| serde_json::from_slice(r).unwrap_or(serde_json::Value::Null))
                .collect());
        }
        let rows = crate::query::execute(&store, &plan);
        let kids = crate::query::execute_children(&store, &plan, &rows);
        if plan.count_only {
            return Ok(vec![serde_json::json!({"totalSize": rows.len()})]);
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut buf = Vec::new();
        for r in rows {
            buf.clear();
            crate::render::write_record(&mut buf, &store, &plan, "60.0", r, &kids);
            out.push(serde_json::from_slice(&buf).unwrap_or(serde_json::Value::Null));
        }
        Ok(out)
    }

    pub fn stats(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot();
        let now = self.clock.now_ms();
        s.api_usage = self.limits.usage(now);
        s.api_max = self.limits.max();
        s.jobs = self.jobs.summaries();
        s
    }
}
