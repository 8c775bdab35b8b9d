//! The synthetic org: deterministic seed data and a generator of ongoing changes.
//!
//! Owns what the org looks like at start-up for a given seed and sizes — Users, Accounts,
//! Contacts, Leads, Opportunities with lookups between them, custom fields
//! (`GoldenAccountID__c`, `External_Id__c`), realistic duplicates (the same company under
//! several Accounts, merged losers in the recycle bin carrying `MasterRecordId`) and audit
//! stamps spread over the two years before a fixed anchor date — and the stream of edits a
//! busy org sees afterwards. Same seed and sizes ⇒ byte-identical data; it must never read
//! the wall clock or an unseeded random source.

use crate::clock;
use crate::ids;
use crate::schema::{ACCOUNT_TYPES, INDUSTRIES, LEAD_STATUSES, STAGES, Storage, TIERS};
use crate::store::{DELETED, Store, Value};
use crate::writes::{self, Change, WriteCtx};

/// Seeded audit stamps fall in the 730 days before this instant (2025-06-01T00:00:00Z), so a
/// given seed yields the same data whatever day it runs; the org clock starts later, so
/// every write made through the API sorts after seeded data.
pub const SEED_ANCHOR_MS: i64 = 1_748_736_000_000;
const SEED_SPAN_MS: i64 = 730 * clock::MS_PER_DAY;

/// SplitMix64: tiny, fast, and stable across platforms and crate versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    pub fn pick<'a>(&mut self, xs: &'a [&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const PREFIXES: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Aperture",
    "Black Mesa",
    "Massive",
    "Dunder",
    "Pied Piper",
    "Nakatomi",
    "Blue Sun",
    "Monarch",
    "Virtucon",
    "Zorg",
    "Gekko",
    "Prestige",
    "Sterling",
    "Bluth",
    "Krusty",
    "Duff",
];
const MIDDLES: &[&str] = &[
    "Global",
    "United",
    "Northern",
    "Pacific",
    "Advanced",
    "Digital",
    "Applied",
    "First",
    "Integrated",
    "Dynamic",
    "Strategic",
    "Premier",
    "Coastal",
    "Summit",
    "Pioneer",
    "Atlas",
];
const SUFFIXES: &[&str] = &[
    "Inc.",
    "LLC",
    "Ltd",
    "Corp.",
    "GmbH",
    "S.A.",
    "Group",
    "Holdings",
    "Partners",
    "Industries",
];
const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Chen",
    "Aisha",
    "Mateo",
    "Yuki",
    "Olga",
    "Ravi",
    "Fatima",
    "Lars",
    "Zoë",
    "José",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Müller",
    "O'Brien",
    "Nguyen",
    "Kowalski",
    "Tanaka",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("San Francisco", "CA", "USA"),
    ("New York", "NY", "USA"),
    ("Austin", "TX", "USA"),
    ("Chicago", "IL", "USA"),
    ("Seattle", "WA", "USA"),
    ("London", "", "United Kingdom"),
    ("Paris", "", "France"),
    ("Berlin", "", "Germany"),
    ("Tokyo", "", "Japan"),
    ("Sydney", "NSW", "Australia"),
    ("Toronto", "ON", "Canada"),
    ("São Paulo", "SP", "Brazil"),
];
const TITLES: &[&str] = &[
    "CEO",
    "CFO",
    "VP Sales",
    "Director of IT",
    "Buyer",
    "Engineer",
    "Analyst",
    "Office Manager",
];
const SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];
const STREETS: &[&str] = &[
    "Main St",
    "Market St",
    "Oak Ave",
    "Pine Rd",
    "Elm St",
    "Harbor Blvd",
    "King St",
];

/// Sizes of the seeded org.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub users: usize,
    pub accounts: usize,
    pub contacts: usize,
    pub leads: usize,
    pub opportunities: usize,
    pub sites: usize,
}

/// Builds a dense row for `table` from (field name, value) pairs.
struct RowBuilder {
    slots: Vec<(String, usize)>,
    width: usize,
}

impl RowBuilder {
    fn new(store: &Store, table: usize) -> Self {
        let t = &store.tables[table];
        let slots = t
            .def
            .fields
            .iter()
            .filter_map(|f| match f.storage {
                Storage::Column(s) => Some((f.name.clone(), s)),
                _ => None,
            })
            .collect();
        RowBuilder {
            slots,
            width: t.cols.len(),
        }
    }
    fn slot(&self, name: &str) -> usize {
        self.slots
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .unwrap_or(usize::MAX)
    }
}

struct Stamps {
    created: i64,
    modified: i64,
    modstamp: i64,
}

fn stamps(rng: &mut Rng) -> Stamps {
    let created =
        SEED_ANCHOR_MS - SEED_SPAN_MS + rng.below(SEED_SPAN_MS as u64 - 86_400_000) as i64;
    let modified = created + rng.below((SEED_ANCHOR_MS - created) as u64 / 2 + 1) as i64;
    // One record in ten was touched later by automation: SystemModstamp > LastModifiedDate.
    let modstamp = if rng.chance(0.1) {
        (modified + rng.below(86_400_000) as i64).min(SEED_ANCHOR_MS - 1000)
    } else {
        modified
    };
    let s = |v: i64| v - v.rem_euclid(1000);
    Stamps {
        created: s(created),
        modified: s(modified),
        modstamp: s(modstamp.max(modified)),
    }
}

fn company(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("{} {}", rng.pick(PREFIXES), rng.pick(SUFFIXES)),
        1 => format!(
            "{} {} {}",
            rng.pick(PREFIXES),
            rng.pick(MIDDLES),
            rng.pick(SUFFIXES)
        ),
        _ => format!(
            "{} {} {}",
            rng.pick(MIDDLES),
            rng.pick(PREFIXES),
            rng.pick(SUFFIXES)
        ),
    }
}

fn domain_of(company: &str) -> String {
    let base: String = company
        .split_whitespace()
        .next()
        .unwrap_or("example")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    format!(
        "{}.example.com",
        if base.is_empty() { "example" } else { &base }
    )
}

fn ascii_lower(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Fills an empty store. `username` becomes User row 0, the API user.
pub fn seed(store: &mut Store, seed: u64, sizes: Sizes, username: &str) {
    let mut rng = Rng::new(seed);
    let Some(users_t) = store.table_index("User") else {
        return;
    };
    let Some(acc_t) = store.table_index("Account") else {
        return;
    };
    let Some(con_t) = store.table_index("Contact") else {
        return;
    };
    let Some(lead_t) = store.table_index("Lead") else {
        return;
    };
    let Some(opp_t) = store.table_index("Opportunity") else {
        return;
    };
    let n_users = sizes.users.max(1);

    let audit = |b: &RowBuilder, row: &mut Vec<Value>, st: &Stamps, by: u32| {
        for (n, v) in [
            ("CreatedDate", Value::DateTime(st.created)),
            ("CreatedById", Value::Ref(by)),
            ("LastModifiedDate", Value::DateTime(st.modified)),
            ("LastModifiedById", Value::Ref(by)),
            ("SystemModstamp", Value::DateTime(st.modstamp)),
        ] {
            if let Some(x) = row.get_mut(b.slot(n)) {
                *x = v;
            }
        }
    };
    let set = |b: &RowBuilder, row: &mut Vec<Value>, name: &str, v: Value| {
        if let Some(x) = row.get_mut(b.slot(name)) {
            *x = v;
        }
    };
    let text = |s: &str| Value::Text(s.to_string());

    // Users.
    let b = RowBuilder::new(store, users_t);
    for i in 0..n_users {
        let mut row = vec![Value::Null; b.width];
        let (first, last) = if i == 0 {
            ("Integration".to_string(), "User".to_string())
        } else {
            (rng.pick(FIRST).to_string(), rng.pick(LAST).to_string())
        };
        let uname = if i == 0 {
            username.to_string()
        } else {
            format!("user{i}@weft-emulator.example.com")
        };
        set(&b, &mut row, "Username", text(&uname));
        set(
            &b,
            &mut row,
            "Email",
            text(&if i == 0 {
                username.to_string()
            } else {
                format!(
                    "{}.{}{i}@weft-emulator.example.com",
                    ascii_lower(&first),
                    ascii_lower(&last)
                )
            }),
        );
        set(
            &b,
            &mut row,
            "Alias",
            text(&format!("u{i}").chars().take(8).collect::<String>()),
        );
        set(&b, &mut row, "FirstName", Value::Text(first));
        set(&b, &mut row, "LastName", Value::Text(last));
        set(
            &b,
            &mut row,
            "IsActive",
            Value::Bool(i == 0 || rng.chance(0.9)),
        );
        set(&b, &mut row, "Title", text(rng.pick(TITLES)));
        let st = stamps(&mut rng);
        audit(&b, &mut row, &st, 0);
        store.tables[users_t].push_dense(row);
    }

    // Accounts: ~6% repeat an earlier company (same name, other city); a third of those were
    // merged into the original and sit in the recycle bin with MasterRecordId set.
    let b = RowBuilder::new(store, acc_t);
    let mut names: Vec<u32> = Vec::new();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for i in 0..sizes.accounts {
        let mut row = vec![Value::Null; b.width];
        let dup_of = if i > 10 && rng.chance(0.06) {
            Some(rng.below(i as u64) as u32)
        } else {
            None
        };
        let name = match dup_of {
            Some(orig) => store.tables[acc_t]
                .text(b.slot("Name"), orig)
                .unwrap_or("Acme Inc.")
                .to_string(),
            None => company(&mut rng),
        };
        let (city, state, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
        set(
            &b,
            &mut row,
            "Website",
            Value::Text(format!("https://www.{}", domain_of(&name))),
        );
        set(&b, &mut row, "Name", Value::Text(name));
        set(&b, &mut row, "Type", text(rng.pick(ACCOUNT_TYPES)));
        set(&b, &mut row, "Industry", text(rng.pick(INDUSTRIES)));
        set(
            &b,
            &mut row,
            "BillingStreet",
            Value::Text(format!("{} {}", 1 + rng.below(9999), rng.pick(STREETS))),
        );
        set(&b, &mut row, "BillingCity", text(city));
        if !state.is_empty() {
            set(&b, &mut row, "BillingState", text(state));
        }
        set(
            &b,
            &mut row,
            "BillingPostalCode",
            Value::Text(format!("{:05}", rng.below(99999))),
        );
        set(&b, &mut row, "BillingCountry", text(country));
        set(
            &b,
            &mut row,
            "Phone",
            Value::Text(format!(
                "+1 555 {:03} {:04}",
                rng.below(1000),
                rng.below(10000)
            )),
        );
        if rng.chance(0.7) {
            set(
                &b,
                &mut row,
                "AnnualRevenue",
                Value::Num((rng.below(500_000) * 1000) as f64),
            );
        }
        set(
            &b,
            &mut row,
            "NumberOfEmployees",
            Value::Int(1 + rng.below(50_000) as i64),
        );
        set(
            &b,
            &mut row,
            "AccountNumber",
            Value::Text(format!("AN{:08}", i)),
        );
        if rng.chance(0.2) {
            set(
                &b,
                &mut row,
                "Description",
                Value::Text(format!(
                    "Key account, \"tier\" review {}; notes, commas\nand a second line",
                    rng.below(100)
                )),
            );
        }
        set(
            &b,
            &mut row,
            "OwnerId",
            Value::Ref(rng.below(n_users as u64) as u32),
        );
        if i > 0 && rng.chance(0.05) {
            set(
                &b,
                &mut row,
                "ParentId",
                Value::Ref(rng.below(i as u64) as u32),
            );
        }
        let golden_row = dup_of.unwrap_or(i as u32);
        if rng.chance(0.7) {
            set(
                &b,
                &mut row,
                "GoldenAccountID__c",
                Value::Text(ids::make_id(b"001", golden_row)),
            );
        }
        set(
            &b,
            &mut row,
            "External_Id__c",
            Value::Text(format!("ACC-{seed}-{i:08}")),
        );
        set(&b, &mut row, "Tier__c", text(rng.pick(TIERS)));
        let st = stamps(&mut rng);
        audit(&b, &mut row, &st, 0);
        if let Some(orig) = dup_of
            && rng.chance(0.33)
        {
            set(&b, &mut row, "MasterRecordId", Value::Ref(orig));
            merged.push((i as u32, orig));
        }
        let r = store.tables[acc_t].push_dense(row);
        names.push(r);
    }
    for (row, _) in &merged {
        if let Some(s) = store.tables[acc_t].state.get_mut(*row as usize) {
            *s = DELETED;
        }
    }
    let live_accounts = sizes.accounts.max(1) as u64;

    let acc_name_slot = RowBuilder::new(store, acc_t).slot("Name");

    // Contacts.
    let b = RowBuilder::new(store, con_t);
    for i in 0..sizes.contacts {
        let mut row = vec![Value::Null; b.width];
        let first = rng.pick(FIRST);
        let last = rng.pick(LAST);
        let acc = if sizes.accounts > 0 && rng.chance(0.95) {
            Some(rng.below(live_accounts) as u32)
        } else {
            None
        };
        let dom = acc
            .and_then(|a| store.tables[acc_t].text(acc_name_slot, a))
            .map(domain_of)
            .unwrap_or_else(|| "example.com".into());
        if let Some(a) = acc {
            set(&b, &mut row, "AccountId", Value::Ref(a));
        }
        set(&b, &mut row, "FirstName", text(first));
        set(&b, &mut row, "LastName", text(last));
        set(
            &b,
            &mut row,
            "Email",
            Value::Text(format!(
                "{}.{}{}@{dom}",
                ascii_lower(first),
                ascii_lower(last),
                i % 97
            )),
        );
        set(
            &b,
            &mut row,
            "Phone",
            Value::Text(format!(
                "+1 555 {:03} {:04}",
                rng.below(1000),
                rng.below(10000)
            )),
        );
        set(&b, &mut row, "Title", text(rng.pick(TITLES)));
        let (city, _, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
        set(&b, &mut row, "MailingCity", text(city));
        set(&b, &mut row, "MailingCountry", text(country));
        if rng.chance(0.3) {
            set(
                &b,
                &mut row,
                "Birthdate",
                Value::Date(clock::days_from_civil(
                    1950 + rng.below(50) as i64,
                    1 + rng.below(12) as u32,
                    1 + rng.below(28) as u32,
                ) as i32),
            );
        }
        set(&b, &mut row, "LeadSource", text(rng.pick(SOURCES)));
        set(
            &b,
            &mut row,
            "OwnerId",
            Value::Ref(rng.below(n_users as u64) as u32),
        );
        set(
            &b,
            &mut row,
            "External_Id__c",
            Value::Text(format!("CON-{seed}-{i:08}")),
        );
        let st = stamps(&mut rng);
        audit(&b, &mut row, &st, 0);
        store.tables[con_t].push_dense(row);
    }

    // Leads: companies drawn from the same name pool, so leads duplicate existing accounts.
    let b = RowBuilder::new(store, lead_t);
    for i in 0..sizes.leads {
        let mut row = vec![Value::Null; b.width];
        let company_name = if sizes.accounts > 0 && rng.chance(0.3) {
            let a = rng.below(live_accounts) as u32;
            store.tables[acc_t]
                .text(acc_name_slot, a)
                .unwrap_or("Acme Inc.")
                .to_string()
        } else {
            company(&mut rng)
        };
        let first = rng.pick(FIRST);
        let last = rng.pick(LAST);
        set(
            &b,
            &mut row,
            "Email",
            Value::Text(format!(
                "{}.{}@{}",
                ascii_lower(first),
                ascii_lower(last),
                domain_of(&company_name)
            )),
        );
        set(&b, &mut row, "Company", Value::Text(company_name));
        set(&b, &mut row, "FirstName", text(first));
        set(&b, &mut row, "LastName", text(last));
        set(&b, &mut row, "Status", text(rng.pick(LEAD_STATUSES)));
        set(&b, &mut row, "Industry", text(rng.pick(INDUSTRIES)));
        set(&b, &mut row, "LeadSource", text(rng.pick(SOURCES)));
        set(&b, &mut row, "IsConverted", Value::Bool(false));
        set(
            &b,
            &mut row,
            "OwnerId",
            Value::Ref(rng.below(n_users as u64) as u32),
        );
        set(
            &b,
            &mut row,
            "External_Id__c",
            Value::Text(format!("LEAD-{seed}-{i:08}")),
        );
        let st = stamps(&mut rng);
        audit(&b, &mut row, &st, 0);
        store.tables[lead_t].push_dense(row);
    }

    // Opportunities.
    let b = RowBuilder::new(store, opp_t);
    for i in 0..sizes.opportunities {
        let mut row = vec![Value::Null; b.width];
        if sizes.accounts > 0 {
            let a = rng.below(live_accounts) as u32;
            let name = store.tables[acc_t]
                .text(acc_name_slot, a)
                .unwrap_or("Deal")
                .to_string();
            set(&b, &mut row, "AccountId", Value::Ref(a));
            set(
                &b,
                &mut row,
                "Name",
                Value::Text(format!("{name} - {}", 1 + rng.below(20))),
            );
        } else {
            set(&b, &mut row, "Name", Value::Text(format!("Deal {i}")));
        }
        set(&b, &mut row, "StageName", text(rng.pick(STAGES)));
        let st = stamps(&mut rng);
        set(
            &b,
            &mut row,
            "CloseDate",
            Value::Date((st.created.div_euclid(clock::MS_PER_DAY) + rng.below(180) as i64) as i32),
        );
        set(
            &b,
            &mut row,
            "Amount",
            Value::Num((rng.below(2_000) * 500) as f64),
        );
        set(
            &b,
            &mut row,
            "Probability",
            Value::Num((rng.below(11) * 10) as f64),
        );
        set(&b, &mut row, "LeadSource", text(rng.pick(SOURCES)));
        set(
            &b,
            &mut row,
            "OwnerId",
            Value::Ref(rng.below(n_users as u64) as u32),
        );
        set(
            &b,
            &mut row,
            "External_Id__c",
            Value::Text(format!("OPP-{seed}-{i:08}")),
        );
        audit(&b, &mut row, &st, 0);
        store.tables[opp_t].push_dense(row);
    }
    seed_compounds(store, seed, sizes.sites);
}

/// Where the seeded cities are, for geocoded addresses.
const CITY_COORDS: &[(&str, f64, f64)] = &[
    ("San Francisco", 37.7749, -122.4194),
    ("New York", 40.7128, -74.006),
    ("Austin", 30.2672, -97.7431),
    ("Chicago", 41.8781, -87.6298),
    ("Seattle", 47.6062, -122.3321),
    ("London", 51.5074, -0.1278),
    ("Paris", 48.8566, 2.3522),
    ("Berlin", 52.52, 13.405),
    ("Tokyo", 35.6762, 139.6503),
    ("Sydney", -33.8688, 151.2093),
    ("Toronto", 43.6532, -79.3832),
    ("São Paulo", -23.5505, -46.6333),
];

/// Fills the parts of the compound fields (geocodes, shipping and other addresses, Lead
/// addresses, the `Site__c` rows) from a random stream of its own, after everything else is
/// seeded: the rows and values an org seeded before compound fields existed stay the same.
fn seed_compounds(store: &mut Store, seed: u64, sites: usize) {
    let mut rng = Rng::new(seed ^ 0xC0DE_AD05_5E5F_1E1D);
    let coords = |city: Option<&str>| {
        city.and_then(|c| CITY_COORDS.iter().find(|(n, _, _)| *n == c))
            .map(|(_, la, lo)| (*la, *lo))
    };
    let jitter = |rng: &mut Rng, v: f64| v + (rng.below(20_000) as f64 - 10_000.0) / 100_000.0;
    let text = |s: &str| Value::Text(s.to_string());
    if let Some(t) = store.table_index("Account") {
        let b = RowBuilder::new(store, t);
        let s = |n: &str| b.slot(n);
        for row in 0..store.tables[t].len() as u32 {
            let table = &store.tables[t];
            let street = table.text(s("BillingStreet"), row).map(str::to_string);
            let city = table.text(s("BillingCity"), row).map(str::to_string);
            let state = table.text(s("BillingState"), row).map(str::to_string);
            let postal = table.text(s("BillingPostalCode"), row).map(str::to_string);
            let country = table.text(s("BillingCountry"), row).map(str::to_string);
            let mut cells = Vec::new();
            if let Some((la, lo)) = coords(city.as_deref()).filter(|_| rng.chance(0.6)) {
                cells.push((s("BillingLatitude"), Value::Num(jitter(&mut rng, la))));
                cells.push((s("BillingLongitude"), Value::Num(jitter(&mut rng, lo))));
                cells.push((s("BillingGeocodeAccuracy"), text("Address")));
            }
            if rng.chance(0.4) {
                for (n, v) in [
                    ("ShippingStreet", street),
                    ("ShippingCity", city),
                    ("ShippingState", state),
                    ("ShippingPostalCode", postal),
                    ("ShippingCountry", country),
                ] {
                    if let Some(v) = v {
                        cells.push((s(n), Value::Text(v)));
                    }
                }
            }
            if !cells.is_empty() {
                store.tables[t].set_cells(row, &cells);
            }
        }
    }
    if let Some(t) = store.table_index("Contact") {
        let b = RowBuilder::new(store, t);
        let s = |n: &str| b.slot(n);
        for row in 0..store.tables[t].len() as u32 {
            let mut cells = Vec::new();
            if rng.chance(0.8) {
                cells.push((
                    s("MailingStreet"),
                    Value::Text(format!("{} {}", 1 + rng.below(9999), rng.pick(STREETS))),
                ));
                cells.push((
                    s("MailingPostalCode"),
                    Value::Text(format!("{:05}", rng.below(99999))),
                ));
            }
            if rng.chance(0.1) {
                let (city, state, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
                cells.push((s("OtherCity"), text(city)));
                if !state.is_empty() {
                    cells.push((s("OtherState"), text(state)));
                }
                cells.push((s("OtherCountry"), text(country)));
            }
            if !cells.is_empty() {
                store.tables[t].set_cells(row, &cells);
            }
        }
    }
    if let Some(t) = store.table_index("Lead") {
        let b = RowBuilder::new(store, t);
        let s = |n: &str| b.slot(n);
        for row in 0..store.tables[t].len() as u32 {
            if !rng.chance(0.7) {
                continue;
            }
            let (city, state, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
            let mut cells = vec![
                (
                    s("Street"),
                    Value::Text(format!("{} {}", 1 + rng.below(9999), rng.pick(STREETS))),
                ),
                (s("City"), text(city)),
                (s("Country"), text(country)),
                (
                    s("PostalCode"),
                    Value::Text(format!("{:05}", rng.below(99999))),
                ),
            ];
            if !state.is_empty() {
                cells.push((s("State"), text(state)));
            }
            store.tables[t].set_cells(row, &cells);
        }
    }
    let (Some(t), Some(acc_t)) = (store.table_index("Site__c"), store.table_index("Account"))
    else {
        return;
    };
    let accounts = store.tables[acc_t].len() as u64;
    let b = RowBuilder::new(store, t);
    for i in 0..sites {
        let mut row = vec![Value::Null; b.width];
        let mut set = |n: &str, v: Value| {
            if let Some(x) = row.get_mut(b.slot(n)) {
                *x = v;
            }
        };
        set("Name", Value::Text(format!("Site {i:04}")));
        set("OwnerId", Value::Ref(0));
        if accounts > 0 {
            set("Account__c", Value::Ref(rng.below(accounts) as u32));
        }
        if rng.chance(0.9) {
            let (_, la, lo) = CITY_COORDS[rng.below(CITY_COORDS.len() as u64) as usize];
            set("Location__Latitude__s", Value::Num(jitter(&mut rng, la)));
            set("Location__Longitude__s", Value::Num(jitter(&mut rng, lo)));
        }
        let st = stamps(&mut rng);
        for (n, v) in [
            ("CreatedDate", Value::DateTime(st.created)),
            ("CreatedById", Value::Ref(0)),
            ("LastModifiedDate", Value::DateTime(st.modified)),
            ("LastModifiedById", Value::Ref(0)),
            ("SystemModstamp", Value::DateTime(st.modstamp)),
        ] {
            set(n, v);
        }
        store.tables[t].push_dense(row);
    }
}

/// Applies `n` random edits the way a busy org changes: mostly field updates on Accounts and
/// Contacts, some inserts, a few deletes — three in five to the recycle bin, the rest for good
/// (a hard delete, or the recycle bin emptied), so they vanish from `queryAll` and only the
/// `deleted` resource still lists them. Returns the committed changes (for change events).
pub fn generate_changes(store: &mut Store, rng: &mut Rng, n: usize, ctx: WriteCtx) -> Vec<Change> {
    let mut out = Vec::with_capacity(n);
    let Some(acc_t) = store.table_index("Account") else {
        return out;
    };
    let con_t = store.table_index("Contact");
    for _ in 0..n {
        let table = match con_t {
            Some(c) if rng.chance(0.4) => c,
            _ => acc_t,
        };
        let len = store.tables[table].len() as u64;
        let roll = rng.below(100);
        let def = &store.tables[table].def;
        let fi = |name: &str| def.field_index(name);
        let result = if roll < 75 && len > 0 {
            let row = rng.below(len) as u32;
            let mut fields = Vec::new();
            if let Some(i) = fi("Phone") {
                fields.push((
                    i,
                    Value::Text(format!(
                        "+1 555 {:03} {:04}",
                        rng.below(1000),
                        rng.below(10000)
                    )),
                ));
            }
            if table == acc_t {
                if let Some(i) = fi("Industry") {
                    fields.push((i, Value::Text(rng.pick(INDUSTRIES).to_string())));
                }
            } else if let Some(i) = fi("Title") {
                fields.push((i, Value::Text(rng.pick(TITLES).to_string())));
            }
            writes::update(store, table, row, fields, ctx)
        } else if roll < 95 {
            let mut fields = Vec::new();
            let k = rng.next_u64();
            if table == acc_t {
                if let Some(i) = fi("Name") {
                    fields.push((i, Value::Text(company(rng))));
                }
                if let Some(i) = fi("External_Id__c") {
                    fields.push((i, Value::Text(format!("ACC-GEN-{k:016x}"))));
                }
            } else {
                if let Some(i) = fi("LastName") {
                    fields.push((i, Value::Text(rng.pick(LAST).to_string())));
                }
                if let Some(i) = fi("External_Id__c") {
                    fields.push((i, Value::Text(format!("CON-GEN-{k:016x}"))));
                }
            }
            writes::create(store, table, fields, ctx).map(|(_, c)| c)
        } else if len > 0 && roll < 98 {
            writes::delete(store, table, rng.below(len) as u32, ctx)
        } else if len > 0 {
            // Deleted for good: a hard delete of a live record, or the recycle bin emptied of
            // one already there (no new change: its delete was the change).
            let row = rng.below(len) as u32;
            let in_bin = store.tables[table].state.get(row as usize) == Some(&DELETED);
            let purged = writes::purge(store, table, row, ctx);
            if in_bin {
                continue;
            }
            purged
        } else {
            continue;
        };
        // Picking a row already deleted is an expected miss, not an error.
        if let Ok(c) = result {
            out.push(c);
        }
    }
    out
}
