//! Acme's `company` records ⇄ Salesforce `Account`.
//!
//! Outbound (`map_outbound`) turns a product company into an Account upserted by the
//! external id `Acme_Company_Id__c`; inbound (`map_inbound`) turns an Account back into a
//! company. This plugin owns the *meaning* of fields (formats, currencies, synonyms, null
//! policy); length, picklist and type checks against the org's describe stay with the
//! coercer, so they follow the org's schema instead of being copied here.
//!
//! It never guesses: a value it cannot read exactly (an ambiguous date, a currency without
//! a rate, a phone number that arrived as a number) fails that record with a reason that
//! lands in the DLQ; the rest of the batch goes on.
//!
//! # Product schema (`company`)
//!
//! | product field | Account field | kind |
//! | --- | --- | --- |
//! | `company_id` (required) | `Acme_Company_Id__c` (external id) | text |
//! | `name` (required) | `Name` | text |
//! | `account_number` | `AccountNumber` | text |
//! | `site` | `Site` | text |
//! | `type` | `Type` | picklist text |
//! | `industry` | `Industry` | picklist text |
//! | `rating` | `Rating` | picklist text |
//! | `ownership` | `Ownership` | picklist text |
//! | `account_manager_role` | `Account_Manager_Role__c` | picklist text, synonyms applied |
//! | `phone`, `fax` | `Phone`, `Fax` | code: text only |
//! | `website` | `Website` | text |
//! | `ticker` | `TickerSymbol` | text |
//! | `sic` | `Sic` | code: text only |
//! | `sic_description` | `SicDesc` | text |
//! | `description` | `Description` | text |
//! | `employees` | `NumberOfEmployees` | whole number ≥ 0 |
//! | `annual_revenue` + `currency` | `AnnualRevenue` | amount, converted to the org currency |
//! | `founded` | `Founded_Date__c` (+ `YearStarted`, outbound only) | date |
//! | `billing_street`, `billing_city`, `billing_state`, `billing_country` | `Billing…` | text |
//! | `billing_postal_code` | `BillingPostalCode` | code: text only |
//! | `shipping_street`, `shipping_city`, `shipping_state`, `shipping_country` | `Shipping…` | text |
//! | `shipping_postal_code` | `ShippingPostalCode` | code: text only |
//! | `golden_id` | `GoldenAccountID__c` | text |
//! | `updated_at` | `Acme_Updated_At__c` | datetime |
//! | `salesforce_id` (inbound only) | `Id` | text |
//!
//! Value rules, outbound:
//! - *code* fields (phones, postal codes, SIC) must arrive as text: a number has already lost
//!   its leading zeros (`0171…`, `02134`), and we cannot put them back.
//! - `founded` is read as `MM/DD/YYYY`, `DD.MM.YYYY` or `YYYY-MM-DD` (the separator tells
//!   them apart, so no guessing) and sent as a date; `YearStarted` is derived from it.
//! - `updated_at` is ISO 8601 text or a datetime.
//! - `annual_revenue` is converted from `currency` into the org's currency and rounded to
//!   cents (the conversion's float noise must not look like a change in Salesforce).
//! - Blank text counts as null: product forms send `""` for a cleared field.
//!
//! Inbound is the reverse: dates become ISO text (`YYYY-MM-DD`, `updated_at` as
//! `YYYY-MM-DDTHH:MM:SS.sssZ`), revenue stays in the org currency and `currency` is set to
//! it. Records missing `Acme_Company_Id__c` or `Name` are rejected: the product could not
//! match or display them.
//!
//! # Configuration
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `currency.org` | `USD` | the org's currency; `AnnualRevenue` is always in it |
//! | `rate.<CODE>` | none | org-currency units per one unit of `<CODE>`, e.g. `rate.EUR = 1.08`. A currency without a rate fails its record: a made-up rate would be wrong money in the customer's org |
//! | `synonym.<written> = <value>` | none | `account_manager_role` spellings mapped to the org's picklist value, e.g. `synonym.Acct Mgr = Account Manager` (case and surrounding space ignored) |
//! | `null.<product field>` | `keep` | what a null (or blank) product value does: `keep` = don't send the field, so Salesforce keeps its value; `clear` = send null; `default:<value>` = send `<value>` (read like a product value; `annual_revenue` defaults are in the org currency) |
//!
//! `keep` is the default because a null in a product export more often means "not filled in
//! here" than "erase it in Salesforce"; clearing must be asked for. A field the product batch
//! does not carry at all is never sent, whatever its policy. `company_id` and `name` are
//! required and take no null policy. Every configuration error fails the whole batch with a
//! reason naming the key.

use std::borrow::Cow;
use std::collections::BTreeMap;

use weft_guest::prelude::*;

/// The product object this plugin maps.
pub const COMPANY: &str = "company";
/// The Salesforce object this plugin maps.
pub const ACCOUNT: &str = "Account";

/// How a field's value is read and converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text; values of other kinds pass through for the schema-driven coercer to judge.
    Text,
    /// Text whose leading zeros matter (phones, postal codes, SIC codes): numbers are refused.
    Code,
    /// The account-manager role picklist, with configured synonyms.
    Role,
    /// A whole, non-negative count.
    Count,
    /// A calendar date.
    Date,
    /// A point in time.
    Instant,
    /// An amount in the record's `currency`, sent in the org's currency.
    Revenue,
}

/// One product field and the Account field it maps to.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub product: &'static str,
    pub account: &'static str,
    pub kind: Kind,
}

const fn m(product: &'static str, account: &'static str, kind: Kind) -> Mapping {
    Mapping {
        product,
        account,
        kind,
    }
}

/// The field mapping, in the order fields are written (keeping one order for every record
/// lets the SDK's field lookup hit on its first comparison).
pub const MAPPINGS: &[Mapping] = &[
    m("company_id", "Acme_Company_Id__c", Kind::Text),
    m("name", "Name", Kind::Text),
    m("account_number", "AccountNumber", Kind::Text),
    m("site", "Site", Kind::Text),
    m("type", "Type", Kind::Text),
    m("industry", "Industry", Kind::Text),
    m("rating", "Rating", Kind::Text),
    m("ownership", "Ownership", Kind::Text),
    m(
        "account_manager_role",
        "Account_Manager_Role__c",
        Kind::Role,
    ),
    m("phone", "Phone", Kind::Code),
    m("fax", "Fax", Kind::Code),
    m("website", "Website", Kind::Text),
    m("ticker", "TickerSymbol", Kind::Text),
    m("sic", "Sic", Kind::Code),
    m("sic_description", "SicDesc", Kind::Text),
    m("description", "Description", Kind::Text),
    m("employees", "NumberOfEmployees", Kind::Count),
    m("annual_revenue", "AnnualRevenue", Kind::Revenue),
    m("founded", "Founded_Date__c", Kind::Date),
    m("billing_street", "BillingStreet", Kind::Text),
    m("billing_city", "BillingCity", Kind::Text),
    m("billing_state", "BillingState", Kind::Text),
    m("billing_postal_code", "BillingPostalCode", Kind::Code),
    m("billing_country", "BillingCountry", Kind::Text),
    m("shipping_street", "ShippingStreet", Kind::Text),
    m("shipping_city", "ShippingCity", Kind::Text),
    m("shipping_state", "ShippingState", Kind::Text),
    m("shipping_postal_code", "ShippingPostalCode", Kind::Code),
    m("shipping_country", "ShippingCountry", Kind::Text),
    m("golden_id", "GoldenAccountID__c", Kind::Text),
    m("updated_at", "Acme_Updated_At__c", Kind::Instant),
];

// Records are grouped by the set of fields they send, as a bit mask over MAPPINGS.
const _: () = assert!(MAPPINGS.len() <= 64);

/// Product fields that are not a mapping of their own.
pub const CURRENCY: &str = "currency";
pub const SALESFORCE_ID: &str = "salesforce_id";
/// Derived from `founded` on the way out; not mapped back (`Founded_Date__c` is the truth).
pub const YEAR_STARTED: &str = "YearStarted";

const REQUIRED: [&str; 2] = ["company_id", "name"];

/// What a null product value does on its way to Salesforce.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum NullPolicy {
    /// Don't send the field: Salesforce keeps its value.
    #[default]
    Keep,
    /// Send null: Salesforce's value is erased.
    Clear,
    /// Send this (already converted) value instead.
    Default(Val<'static>),
}

/// The plugin. Configuration is read once per batch by [`Plugin::configure`].
#[derive(Debug, Default)]
pub struct AcmeAccounts {
    /// Empty until configured; read through [`AcmeAccounts::org_currency`].
    org_currency: String,
    rates: BTreeMap<String, f64>,
    synonyms: values::Synonyms,
    /// Indexed like [`MAPPINGS`]; empty means `keep` for every field.
    null_policies: Vec<NullPolicy>,
}

impl AcmeAccounts {
    pub const DEFAULT_ORG_CURRENCY: &'static str = "USD";

    pub fn org_currency(&self) -> &str {
        if self.org_currency.is_empty() {
            Self::DEFAULT_ORG_CURRENCY
        } else {
            &self.org_currency
        }
    }

    fn null_policy(&self, mapping: usize) -> &NullPolicy {
        const KEEP: &NullPolicy = &NullPolicy::Keep;
        self.null_policies.get(mapping).unwrap_or(KEEP)
    }

    /// Org-currency units per unit of `code`, in any case (`eur` is EUR).
    fn rate(&self, code: &str) -> Result<f64, String> {
        if code.eq_ignore_ascii_case(self.org_currency()) {
            return Ok(1.0);
        }
        // Every configured code is three letters, uppercased once by `configure`; the
        // code of each amount is uppercased on the stack, not into a new `String`.
        let found = <[u8; 3]>::try_from(code.as_bytes())
            .ok()
            .and_then(|mut key| {
                key.make_ascii_uppercase();
                let key = std::str::from_utf8(&key).ok()?;
                self.rates.get(key).copied()
            });
        found.ok_or_else(|| {
            let code = code.to_ascii_uppercase();
            format!(
                "no exchange rate from {code} to {org}; add `rate.{code}` to the configuration",
                org = self.org_currency()
            )
        })
    }

    /// Writes the Account fields a company sends, in [`MAPPINGS`] order. Fields the
    /// company does not send (absent, or null under `keep`) are left out. On an error the
    /// SDK drops what was written of the record.
    ///
    /// Values go straight into the output batch, borrowing the input's text, the plugin's
    /// synonyms or its null defaults: nothing per record is allocated, since an allocation
    /// inside the sandbox costs several times what it does natively.
    pub fn write_account(
        &self,
        rec: Record<'_>,
        account: &mut RecordWriter<'_>,
    ) -> Result<(), String> {
        for (i, mapping) in MAPPINGS.iter().enumerate() {
            let raw = rec.get(mapping.product);
            let blank = is_blank(&raw);
            if mapping.kind == Kind::Text && !blank {
                // Most fields: the text goes as it came.
                account.set(mapping.account, raw);
                continue;
            }
            let value = if blank {
                if REQUIRED.contains(&mapping.product) {
                    return Err(format!(
                        "{} is missing; every company needs a company_id and a name",
                        mapping.product
                    ));
                }
                if raw.is_absent() {
                    continue;
                }
                match self.null_policy(i) {
                    NullPolicy::Keep => continue,
                    NullPolicy::Clear => Val::Null,
                    NullPolicy::Default(v) => v.borrowed(),
                }
            } else {
                let currency = || rec.get(CURRENCY);
                self.to_salesforce(mapping.kind, raw, currency)
                    .map_err(|reason| format!("{}: {reason}", mapping.product))?
            };
            if mapping.kind == Kind::Date {
                match value {
                    Val::Date(days) => {
                        account.set_display(YEAR_STARTED, values::civil_from_days(days).0)
                    }
                    _ => account.set(YEAR_STARTED, Val::Null),
                };
            }
            account.set(mapping.account, value);
        }
        Ok(())
    }

    /// Converts one non-null product value to its Account form.
    fn to_salesforce<'a>(
        &'a self,
        kind: Kind,
        value: Val<'a>,
        currency: impl FnOnce() -> Val<'a>,
    ) -> Result<Val<'a>, String> {
        match kind {
            Kind::Text => Ok(value),
            Kind::Code => match value {
                Val::Text(s) => Ok(trimmed(s)),
                Val::Int(_) | Val::Num(_) => Err(format!(
                    "must be text, got the number {}: as a number it may already have lost leading zeros",
                    display(&value)
                )),
                other => Err(format!("must be text, got a {}", other.kind_name())),
            },
            Kind::Role => match value {
                Val::Text(s) => Ok(self.synonyms.get(&s).map_or(Val::Text(s), Val::from)),
                other => Err(format!("must be text, got a {}", other.kind_name())),
            },
            Kind::Count => count(&value).map(Val::Int),
            Kind::Date => match value {
                Val::Date(days) => Ok(Val::Date(days)),
                Val::Text(ref s) => parse_people_date(s).map(Val::Date).ok_or_else(|| {
                    format!("cannot read {s:?} as a date (MM/DD/YYYY, DD.MM.YYYY or YYYY-MM-DD)")
                }),
                other => Err(format!("expected a date, got a {}", other.kind_name())),
            },
            Kind::Instant => match value {
                Val::DateTime(ms) => Ok(Val::DateTime(ms)),
                Val::Text(ref s) => values::parse_iso_datetime(values::trim(s))
                    .map(Val::DateTime)
                    .ok_or_else(|| format!("cannot read {s:?} as an ISO 8601 datetime")),
                other => Err(format!("expected a datetime, got a {}", other.kind_name())),
            },
            Kind::Revenue => {
                let amount = amount(&value)?;
                let currency = currency();
                let code = match &currency {
                    Val::Text(c) if !c.trim().is_empty() => c.trim(),
                    Val::Null | Val::Text(_) => {
                        return Err(format!("{} has no currency", display(&value)));
                    }
                    other => {
                        return Err(format!(
                            "currency must be text, got a {}",
                            other.kind_name()
                        ));
                    }
                };
                let converted = round_cents(amount * self.rate(code)?);
                if converted.is_finite() {
                    Ok(Val::Num(converted))
                } else {
                    Err(format!(
                        "{} {} is out of range once converted",
                        display(&value),
                        code.to_ascii_uppercase()
                    ))
                }
            }
        }
    }

    /// The company fields of an Account. Fields the Account batch does not carry are left
    /// out, so a narrow query never erases product data.
    fn company_from(&self, rec: Record<'_>, out: &mut Emit) -> Result<(), String> {
        for required in ["Acme_Company_Id__c", "Name"] {
            if is_blank(&rec.get(required)) {
                return Err(format!(
                    "{required} is missing; the product cannot match or show this Account"
                ));
            }
        }
        let mut company = out.record(COMPANY);
        let id = rec.get("Id");
        if !id.is_absent() {
            company.set(SALESFORCE_ID, id);
        }
        for mapping in MAPPINGS {
            let raw = rec.get(mapping.account);
            if raw.is_absent() {
                continue;
            }
            let value = to_product(mapping.kind, raw)
                .map_err(|reason| format!("{}: {reason}", mapping.account))?;
            if mapping.kind == Kind::Revenue {
                let currency = if value.is_null() {
                    Val::Null
                } else {
                    Val::from(self.org_currency())
                };
                company.set(CURRENCY, currency);
            }
            company.set(mapping.product, value);
        }
        Ok(())
    }

    fn parse_null_policy(&self, mapping: &Mapping, text: &str) -> Result<NullPolicy, String> {
        match text.trim() {
            "keep" => Ok(NullPolicy::Keep),
            "clear" => Ok(NullPolicy::Clear),
            other => {
                let Some(default) = other.strip_prefix("default:").map(str::trim) else {
                    return Err(format!(
                        "expected keep, clear or default:<value>, got {other:?}"
                    ));
                };
                if default.is_empty() {
                    return Err("default: needs a value (use `clear` to send null)".to_owned());
                }
                // Read the default exactly like a product value, so a bad default fails
                // here, once, instead of on every null record. Revenue defaults are already
                // in the org currency.
                let org = self.org_currency().to_owned();
                let value =
                    self.to_salesforce(mapping.kind, Val::from(default), || Val::from(org))?;
                Ok(NullPolicy::Default(value.into_owned()))
            }
        }
    }
}

impl Plugin for AcmeAccounts {
    fn configure(&mut self, cx: &Cx) -> Result<(), String> {
        if let Some(org) = cx.config("currency.org") {
            self.org_currency = currency_code(&org).ok_or_else(|| {
                format!("currency.org: {org:?} is not a three-letter currency code")
            })?;
        }
        for (code, rate) in cx.config_section("rate.") {
            let key = format!("rate.{code}");
            let code = currency_code(&code)
                .ok_or_else(|| format!("{key}: {code:?} is not a three-letter currency code"))?;
            let rate = rate
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(|| format!("{key}: {rate:?} is not a positive number"))?;
            if code == self.org_currency() {
                return Err(format!(
                    "{key}: {code} is the org currency; its rate is always 1"
                ));
            }
            self.rates.insert(code, rate);
        }
        self.synonyms = values::Synonyms::new(cx.config_section("synonym."));
        self.null_policies = vec![NullPolicy::Keep; MAPPINGS.len()];
        for (field, policy) in cx.config_section("null.") {
            let key = format!("null.{field}");
            let Some((i, mapping)) = MAPPINGS
                .iter()
                .enumerate()
                .find(|(_, m)| m.product == field)
            else {
                return Err(format!(
                    "{key}: {field:?} is not a product field this plugin sends"
                ));
            };
            if REQUIRED.contains(&mapping.product) {
                return Err(format!(
                    "{key}: {field} is required and takes no null policy"
                ));
            }
            let policy = self
                .parse_null_policy(mapping, &policy)
                .map_err(|reason| format!("{key}: {reason}"))?;
            if let Some(slot) = self.null_policies.get_mut(i) {
                *slot = policy;
            }
        }
        Ok(())
    }

    fn map_inbound(&self, _cx: &Cx, rec: Record<'_>, out: &mut Emit) -> Result<(), String> {
        self.company_from(rec, out)
    }

    /// One company → one Account. A field whose null policy is `keep` is simply not set:
    /// it stays absent, and the host leaves Salesforce's value untouched.
    fn map_outbound(&self, _cx: &Cx, rec: Record<'_>, out: &mut Emit) -> Result<(), String> {
        self.write_account(rec, &mut out.record(ACCOUNT))
    }
}

weft_guest::export_plugin!(AcmeAccounts);

/// Converts one Account value to its product form.
fn to_product(kind: Kind, value: Val<'_>) -> Result<Val<'_>, String> {
    match (kind, value) {
        (_, Val::Null) => Ok(Val::Null),
        (Kind::Count, v) => count(&v).map(Val::Int),
        (Kind::Revenue, v) => amount(&v).map(Val::Num),
        (Kind::Date, Val::Date(days)) => Ok(Val::from(values::format_date(days))),
        (Kind::Date, Val::Text(s)) => values::parse_iso_date(s.trim())
            .map(|days| Val::from(values::format_date(days)))
            .ok_or_else(|| format!("cannot read {s:?} as a date (YYYY-MM-DD)")),
        (Kind::Instant, Val::DateTime(ms)) => Ok(Val::from(values::format_datetime(ms))),
        (Kind::Instant, Val::Text(s)) => values::parse_iso_datetime(s.trim())
            .map(|ms| Val::from(values::format_datetime(ms)))
            .ok_or_else(|| format!("cannot read {s:?} as an ISO 8601 datetime")),
        (Kind::Date | Kind::Instant, other) => Err(format!(
            "expected a date or datetime, got a {}",
            other.kind_name()
        )),
        (Kind::Text | Kind::Code | Kind::Role, v) => Ok(v),
    }
}

fn is_blank(value: &Val<'_>) -> bool {
    match value {
        Val::Null | Val::Absent => true,
        Val::Text(s) => values::trim(s).is_empty(),
        _ => false,
    }
}

fn trimmed(s: Cow<'_, str>) -> Val<'_> {
    match s {
        Cow::Borrowed(b) => Val::from(values::trim(b)),
        Cow::Owned(o) if values::trim(&o).len() == o.len() => Val::from(o),
        Cow::Owned(o) => Val::from(values::trim(&o).to_owned()),
    }
}

/// A value for an error message, without the `Text("…")` noise of `Debug`.
fn display(value: &Val<'_>) -> String {
    match value {
        Val::Int(i) => i.to_string(),
        Val::Num(n) => n.to_string(),
        Val::Text(s) => format!("{s:?}"),
        other => other.kind_name().to_owned(),
    }
}

/// A whole, non-negative count from an integer, an integral number or text like `1,200`.
fn count(value: &Val<'_>) -> Result<i64, String> {
    // 2^53: beyond it an f64 holds no exact integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let n = match value {
        Val::Int(i) => Some(*i),
        Val::Num(n) if n.fract() == 0.0 && n.abs() <= EXACT => Some(*n as i64),
        Val::Text(s) => values::parse_number(s)
            .filter(|n| n.fract() == 0.0 && n.abs() <= EXACT)
            .map(|n| n as i64),
        _ => None,
    };
    match n {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(format!(
            "{} is not a whole number of at least 0",
            display(value)
        )),
    }
}

/// An amount from a number or text as people write it (`1,234.50`, `1.234,50`).
fn amount(value: &Val<'_>) -> Result<f64, String> {
    match value {
        Val::Int(i) => Ok(*i as f64),
        Val::Num(n) if n.is_finite() => Ok(*n),
        Val::Text(s) => {
            values::parse_number(s).ok_or_else(|| format!("cannot read {s:?} as an amount"))
        }
        other => Err(format!("expected an amount, got a {}", other.kind_name())),
    }
}

fn round_cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// `YYYY-MM-DD`, `MM/DD/YYYY` or `DD.MM.YYYY`: the separator decides the order, so
/// `03/04/2020` is always March 4th and `03.04.2020` always April 3rd.
pub fn parse_people_date(s: &str) -> Option<i32> {
    let s = values::trim(s);
    values::parse_iso_date(s)
        .or_else(|| values::parse_us_date(s))
        .or_else(|| values::parse_eu_date(s))
}

/// `eur ` → `EUR`; `None` unless three ASCII letters.
fn currency_code(s: &str) -> Option<String> {
    let code = s.trim().to_ascii_uppercase();
    (code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_guest::testing::{Harness, batch, rows};

    fn date(s: &str) -> Val<'static> {
        Val::Date(values::parse_iso_date(s).expect("test date"))
    }

    fn full_company() -> Vec<(&'static str, Val<'static>)> {
        vec![
            ("company_id", "C-1".into()),
            ("name", "Acme Ltd".into()),
            ("account_number", "A-100".into()),
            ("site", "HQ".into()),
            ("type", "Customer".into()),
            ("industry", "Manufacturing".into()),
            ("rating", "Hot".into()),
            ("ownership", "Private".into()),
            ("account_manager_role", "Acct Mgr".into()),
            ("phone", "0171 555 0100".into()),
            ("fax", "0171 555 0101".into()),
            ("website", "https://acme.example".into()),
            ("ticker", "ACME".into()),
            ("sic", "0111".into()),
            ("sic_description", "Wheat".into()),
            ("description", "Makes everything".into()),
            ("employees", Val::Int(250)),
            ("annual_revenue", Val::Num(1_000_000.0)),
            ("currency", "EUR".into()),
            ("founded", "03/04/1999".into()),
            ("billing_street", "1 Main St".into()),
            ("billing_city", "Boston".into()),
            ("billing_state", "MA".into()),
            ("billing_postal_code", "02134".into()),
            ("billing_country", "US".into()),
            ("shipping_street", "2 Dock Rd".into()),
            ("shipping_city", "Hamburg".into()),
            ("shipping_state", "HH".into()),
            ("shipping_postal_code", "01067".into()),
            ("shipping_country", "DE".into()),
            ("golden_id", "GA-000123".into()),
            ("updated_at", "2025-06-01T12:00:00Z".into()),
        ]
    }

    fn harness() -> Harness {
        Harness::new()
            .config("currency.org", "USD")
            .config("rate.EUR", "1.08")
            .config("synonym.Acct Mgr", "Account Manager")
    }

    fn company(overrides: &[(&'static str, Val<'static>)]) -> Vec<(&'static str, Val<'static>)> {
        let mut fields = full_company();
        for (name, value) in overrides {
            match fields.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value.clone(),
                None => fields.push((name, value.clone())),
            }
        }
        fields
    }

    fn outbound(
        h: &Harness,
        records: &[Vec<(&'static str, Val<'static>)>],
    ) -> weft_guest::BatchResult {
        let rows_: Vec<&[(&str, Val<'_>)]> = records.iter().map(Vec::as_slice).collect();
        h.map_outbound::<AcmeAccounts>(&batch(COMPANY, &rows_))
    }

    fn one_account(out: &weft_guest::BatchResult) -> BTreeMap<String, Val<'static>> {
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.batches.len(), 1);
        rows(&out.batches[0]).remove(0)
    }

    #[test]
    fn maps_every_field_of_a_full_company() {
        let out = outbound(&harness(), &[full_company()]);
        assert_eq!(out.batches[0].object, ACCOUNT);
        let a = one_account(&out);
        assert_eq!(a["Acme_Company_Id__c"], Val::from("C-1"));
        assert_eq!(a["Name"], Val::from("Acme Ltd"));
        assert_eq!(a["Account_Manager_Role__c"], Val::from("Account Manager"));
        assert_eq!(a["Phone"], Val::from("0171 555 0100"));
        assert_eq!(a["Sic"], Val::from("0111"));
        assert_eq!(a["BillingPostalCode"], Val::from("02134"));
        assert_eq!(a["NumberOfEmployees"], Val::Int(250));
        assert_eq!(a["AnnualRevenue"], Val::Num(1_080_000.0));
        assert_eq!(a["Founded_Date__c"], date("1999-03-04"));
        assert_eq!(a["YearStarted"], Val::from("1999"));
        assert_eq!(a["GoldenAccountID__c"], Val::from("GA-000123"));
        assert_eq!(
            a["Acme_Updated_At__c"],
            Val::DateTime(values::parse_iso_datetime("2025-06-01T12:00:00Z").expect("ts"))
        );
        // Every mapping plus YearStarted; `currency` is folded into AnnualRevenue.
        assert_eq!(a.len(), MAPPINGS.len() + 1);
        assert!(!a.contains_key("currency"));
    }

    #[test]
    fn dates_in_each_accepted_format() {
        for (text, iso) in [
            ("12/31/2020", "2020-12-31"),
            ("31.12.2020", "2020-12-31"),
            ("2020-12-31", "2020-12-31"),
            ("1/2/2020", "2020-01-02"),
            ("1.2.2020", "2020-02-01"),
        ] {
            let a = one_account(&outbound(
                &harness(),
                &[company(&[("founded", text.into())])],
            ));
            assert_eq!(a["Founded_Date__c"], date(iso), "{text}");
        }
        let a = one_account(&outbound(
            &harness(),
            &[company(&[("founded", date("2001-05-06"))])],
        ));
        assert_eq!(a["YearStarted"], Val::from("2001"));
    }

    #[test]
    fn unreadable_dates_fail_their_record_only() {
        let out = outbound(
            &harness(),
            &[
                company(&[("founded", "31/12/2020".into())]),
                full_company(),
                company(&[("founded", "02.30.2020".into())]),
                company(&[("updated_at", "yesterday".into())]),
            ],
        );
        let failed: Vec<u32> = out.errors.iter().map(|e| e.record).collect();
        assert_eq!(failed, vec![0, 2, 3]);
        assert!(
            out.errors[0]
                .reason
                .starts_with("founded: cannot read \"31/12/2020\"")
        );
        assert!(out.errors[2].reason.starts_with("updated_at: "));
        assert_eq!(out.batches[0].sources, vec![1]);
    }

    #[test]
    fn codes_keep_leading_zeros_and_refuse_numbers() {
        let a = one_account(&outbound(
            &harness(),
            &[company(&[("phone", " 0044 20 7946 0000 ".into())])],
        ));
        assert_eq!(a["Phone"], Val::from("0044 20 7946 0000"));

        let out = outbound(
            &harness(),
            &[company(&[("billing_postal_code", Val::Int(2134))])],
        );
        assert_eq!(out.errors.len(), 1);
        assert!(
            out.errors[0]
                .reason
                .contains("billing_postal_code: must be text"),
            "{}",
            out.errors[0].reason
        );
        assert!(out.errors[0].reason.contains("leading zeros"));
    }

    #[test]
    fn revenue_is_converted_to_the_org_currency() {
        let h = harness().config("rate.gbp", "1.27");
        let cases: [(Val<'static>, &str, f64); 6] = [
            (Val::Num(100.0), "EUR", 108.0),
            (Val::Int(2), "eur", 2.16),
            (Val::Int(100), "usd", 100.0),
            ("1.234,50".into(), "EUR", 1333.26),
            ("1,000".into(), " GBP ", 1270.0),
            (Val::Num(0.1), "EUR", 0.11),
        ];
        for (amount, currency, expected) in cases {
            let a = one_account(&outbound(
                &h,
                &[company(&[
                    ("annual_revenue", amount.clone()),
                    ("currency", currency.into()),
                ])],
            ));
            assert_eq!(
                a["AnnualRevenue"],
                Val::Num(expected),
                "{amount:?} {currency}"
            );
        }
    }

    #[test]
    fn revenue_without_a_known_currency_fails_the_record() {
        let out = outbound(
            &harness(),
            &[
                // The reason names the code in upper case, however the record wrote it.
                company(&[("currency", "jpy".into())]),
                company(&[("currency", Val::Null)]),
                company(&[("annual_revenue", "lots".into())]),
            ],
        );
        assert_eq!(out.errors.len(), 3);
        assert!(
            out.errors[0]
                .reason
                .contains("no exchange rate from JPY to USD; add `rate.JPY`")
        );
        assert!(out.errors[1].reason.contains("has no currency"));
        assert!(
            out.errors[2]
                .reason
                .contains("cannot read \"lots\" as an amount")
        );
        // Without revenue, a missing currency does not matter.
        let a = one_account(&outbound(
            &harness(),
            &[company(&[
                ("annual_revenue", Val::Null),
                ("currency", Val::Null),
            ])],
        ));
        assert!(!a.contains_key("AnnualRevenue"));
    }

    #[test]
    fn a_company_without_id_or_name_is_rejected() {
        let out = outbound(
            &harness(),
            &[
                company(&[("company_id", Val::Null)]),
                company(&[("name", "  ".into())]),
                full_company(),
            ],
        );
        assert_eq!(out.errors.len(), 2);
        assert!(out.errors[0].reason.starts_with("company_id is missing"));
        assert!(out.errors[1].reason.starts_with("name is missing"));
        assert_eq!(out.batches[0].sources, vec![2]);
    }

    #[test]
    fn employees_must_be_a_whole_count() {
        let a = one_account(&outbound(
            &harness(),
            &[company(&[("employees", "1,200".into())])],
        ));
        assert_eq!(a["NumberOfEmployees"], Val::Int(1200));
        let out = outbound(
            &harness(),
            &[
                company(&[("employees", Val::Num(2.5))]),
                company(&[("employees", Val::Int(-3))]),
            ],
        );
        assert_eq!(out.errors.len(), 2);
    }

    #[test]
    fn null_policies_keep_clear_and_default() {
        let h = harness()
            .config("null.fax", "clear")
            .config("null.industry", "default:Other")
            .config("null.employees", "default: 0")
            .config("null.founded", "default:01/01/1900")
            .config("null.annual_revenue", "default:0");
        let nulls = company(&[
            ("phone", Val::Null),
            ("fax", "".into()),
            ("industry", Val::Null),
            ("employees", Val::Null),
            ("founded", Val::Null),
            ("annual_revenue", Val::Null),
            ("currency", Val::Null),
        ]);
        let a = one_account(&outbound(&h, &[nulls]));
        assert!(
            !a.contains_key("Phone"),
            "keep is the default: the field is not sent"
        );
        assert_eq!(a["Industry"], Val::from("Other"));
        assert_eq!(a["NumberOfEmployees"], Val::Int(0));
        assert_eq!(a["Founded_Date__c"], date("1900-01-01"));
        assert_eq!(a["YearStarted"], Val::from("1900"));
        assert_eq!(a["AnnualRevenue"], Val::Num(0.0));
        // `rows` hides nulls; clear means the column is there with a null.
        let out = outbound(&h, &[company(&[("fax", Val::Null)])]);
        let b = &out.batches[0];
        assert!(b.fields.iter().any(|f| f == "Fax"));
        assert!(!rows(b)[0].contains_key("Fax"));
    }

    #[test]
    fn absent_fields_are_never_sent_even_under_clear() {
        let h = harness().config("null.fax", "clear");
        let input = batch(
            COMPANY,
            &[&[("company_id", "C-1".into()), ("name", "Acme".into())]],
        );
        let out = h.map_outbound::<AcmeAccounts>(&input);
        assert!(out.errors.is_empty());
        assert_eq!(out.batches[0].fields, vec!["Acme_Company_Id__c", "Name"]);
    }

    #[test]
    fn one_batch_carries_kept_and_cleared_fields_side_by_side() {
        let h = harness().config("null.fax", "clear");
        let out = outbound(
            &h,
            &[
                full_company(),
                company(&[("phone", Val::Null)]), // keep: Phone stays absent
                company(&[("fax", Val::Null)]),   // clear: Fax sent as null
            ],
        );
        assert!(out.errors.is_empty());
        assert_eq!(out.batches.len(), 1);
        let b = &out.batches[0];
        assert_eq!(b.sources, vec![0, 1, 2]);
        let view = weft_guest::BatchView::new(b);
        assert!(view.record(1).get("Phone").is_absent());
        assert_eq!(view.record(2).get("Fax"), Val::Null);
        assert!(!view.record(0).get("Phone").is_null());
    }

    #[test]
    fn per_record_map_outbound_agrees_with_the_batch_driver() {
        let h = harness();
        let input = batch(COMPANY, &[&full_company()]);
        let cx = h.cx(weft_guest::Direction::Outbound);
        let mut plugin = AcmeAccounts::default();
        plugin.configure(&cx).expect("configured");
        let by_record = weft_guest::run::map_each(&cx, &input, |cx, rec, out| {
            plugin.map_outbound(cx, rec, out)
        });
        assert_eq!(by_record, plugin.map_outbound_batch(&cx, &input));
    }

    #[test]
    fn configuration_errors_fail_the_batch_naming_the_key() {
        let cases = [
            ("currency.org", "dollars", "currency.org: "),
            ("rate.EUR", "-1", "rate.EUR: "),
            ("rate.EURO", "1.1", "rate.EURO: "),
            ("rate.usd", "1.1", "rate.usd: USD is the org currency"),
            ("null.fx", "clear", "null.fx: "),
            (
                "null.phone",
                "erase",
                "null.phone: expected keep, clear or default:<value>",
            ),
            (
                "null.founded",
                "default:someday",
                "null.founded: cannot read \"someday\"",
            ),
            (
                "null.employees",
                "default:",
                "null.employees: default: needs a value",
            ),
            (
                "null.company_id",
                "clear",
                "null.company_id: company_id is required",
            ),
        ];
        for (key, value, expected) in cases {
            let out = outbound(
                &harness().config(key, value),
                &[full_company(), full_company()],
            );
            assert!(out.batches.is_empty(), "{key}");
            assert_eq!(out.errors.len(), 2, "{key}");
            assert!(
                out.errors[0]
                    .reason
                    .starts_with(&format!("plugin configuration: {expected}")),
                "{key}: {}",
                out.errors[0].reason
            );
        }
    }

    fn account() -> Vec<(&'static str, Val<'static>)> {
        vec![
            ("Id", "001000000000001AAA".into()),
            ("Acme_Company_Id__c", "C-1".into()),
            ("Name", "Acme Ltd".into()),
            ("Phone", "0171 555 0100".into()),
            ("Fax", Val::Null),
            ("NumberOfEmployees", Val::Int(250)),
            ("AnnualRevenue", Val::Num(1_080_000.0)),
            ("Founded_Date__c", date("1999-03-04")),
            ("YearStarted", "1999".into()),
            ("Acme_Updated_At__c", Val::DateTime(1_748_779_200_000)),
            ("BillingPostalCode", "02134".into()),
            ("Account_Manager_Role__c", "Account Manager".into()),
        ]
    }

    #[test]
    fn inbound_maps_an_account_back_to_a_company() {
        let h = Harness::new().config("currency.org", "EUR");
        let out = h.map_inbound::<AcmeAccounts>(&batch(ACCOUNT, &[&account()]));
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.batches[0].object, COMPANY);
        let c = rows(&out.batches[0]).remove(0);
        assert_eq!(c["salesforce_id"], Val::from("001000000000001AAA"));
        assert_eq!(c["company_id"], Val::from("C-1"));
        assert_eq!(c["phone"], Val::from("0171 555 0100"));
        assert_eq!(c["billing_postal_code"], Val::from("02134"));
        assert_eq!(c["founded"], Val::from("1999-03-04"));
        assert_eq!(c["updated_at"], Val::from("2025-06-01T12:00:00.000Z"));
        assert_eq!(c["annual_revenue"], Val::Num(1_080_000.0));
        assert_eq!(c["currency"], Val::from("EUR"));
        assert_eq!(c["employees"], Val::Int(250));
        // Fax was in the batch as null: it is sent as null. Website was not: not sent.
        assert!(out.batches[0].fields.iter().any(|f| f == "fax"));
        assert!(!out.batches[0].fields.iter().any(|f| f == "website"));
        assert!(!c.contains_key("YearStarted") && !c.contains_key("year_started"));
    }

    #[test]
    fn inbound_rejects_accounts_the_product_cannot_match() {
        let mut no_id = account();
        no_id.retain(|(f, _)| *f != "Acme_Company_Id__c");
        let mut bad_date = account();
        bad_date.push(("Founded_Date__c", "04/03/1999".into()));
        let out = harness()
            .map_inbound::<AcmeAccounts>(&batch(ACCOUNT, &[&no_id, &account(), &bad_date]));
        assert_eq!(out.errors.len(), 2);
        assert_eq!(out.errors[0].record, 0);
        assert!(
            out.errors[0]
                .reason
                .starts_with("Acme_Company_Id__c is missing")
        );
        assert!(
            out.errors[1]
                .reason
                .starts_with("Founded_Date__c: cannot read")
        );
        assert_eq!(out.batches[0].sources, vec![1]);
    }

    #[test]
    fn a_company_survives_the_round_trip() {
        let h = harness().config("rate.EUR", "1");
        let out = outbound(&h, &[full_company()]);
        let back = h.map_inbound::<AcmeAccounts>(&out.batches[0]);
        assert!(back.errors.is_empty(), "{:?}", back.errors);
        let c = rows(&back.batches[0]).remove(0);
        for (field, value) in full_company() {
            let expected = match field {
                "account_manager_role" => Val::from("Account Manager"),
                "founded" => Val::from("1999-03-04"),
                "updated_at" => Val::from("2025-06-01T12:00:00.000Z"),
                "currency" => Val::from("USD"),
                _ => value,
            };
            assert_eq!(c[field], expected, "{field}");
        }
    }
}
