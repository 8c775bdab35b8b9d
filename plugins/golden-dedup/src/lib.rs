//! Dedup and join keys for Accounts from a golden-record (MDM) setup.
//!
//! The host joins records that share any key (same name, same value). This plugin emits:
//!
//! | key | from | normalised as |
//! | --- | --- | --- |
//! | `golden-id` | `GoldenAccountID__c` | trimmed, upper-cased (MDM ids are case-insensitive) |
//! | `master-id` | `MasterRecordId`, or the record's own `Id` when it has none | the 18-character Salesforce id |
//! | `domain` | `Website` | [`values::website_domain`] (`https://WWW.Acme.com/x` → `acme.com`), free-mail domains skipped |
//! | `<name>` | each field configured as `external.<name>` | trimmed, case kept |
//!
//! `master-id` joins a merged duplicate (whose `MasterRecordId` names the survivor) to the
//! survivor itself (whose own `Id` is the same id). Salesforce ids come in two spellings: the
//! 15-character one is case-sensitive, the 18-character one adds a 3-character checksum of
//! the case so that it survives case-insensitive systems. Every id is normalised to the
//! 18-character form, restoring the case of the first 15 characters from that checksum, so
//! `001…abc`, `001…ABC` lower-cased by a spreadsheet, and the 15-character original all give
//! one key. A value that is not a valid id fails the record rather than joining wrongly.
//!
//! Mapping is the identity (the SDK defaults): this plugin only adds keys.
//!
//! # Configuration
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `domain.ignore` | [`DEFAULT_IGNORED_DOMAINS`] | comma-separated domains (and their subdomains) that never make a `domain` key. Shared free-mail domains would join every company whose website field holds someone's mailbox. Setting it replaces the default list; set it empty to ignore nothing |
//! | `external.<name> = <Field>` | none | one more key named `<name>` from field `<Field>`, e.g. `external.erp = ERP_Id__c`. External ids are compared as written (case kept), since we cannot know another system's rules |
//!
//! A configuration error (empty field, a name that clashes with a built-in key) fails the
//! whole batch with a reason naming the key.

use std::borrow::Cow;

use weft_guest::prelude::*;

pub const GOLDEN_ID_FIELD: &str = "GoldenAccountID__c";
pub const MASTER_ID_FIELD: &str = "MasterRecordId";
pub const ID_FIELD: &str = "Id";
pub const WEBSITE_FIELD: &str = "Website";

pub const GOLDEN_ID_KEY: &str = "golden-id";
pub const MASTER_ID_KEY: &str = "master-id";
pub const DOMAIN_KEY: &str = "domain";

/// Free-mail and consumer domains, skipped unless `domain.ignore` says otherwise.
pub const DEFAULT_IGNORED_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.de",
    "gmx.net",
    "web.de",
];

/// The plugin. Configuration is read once per batch by [`Plugin::configure`].
#[derive(Debug, Default)]
pub struct GoldenDedup {
    /// `None` until configured: the default list applies.
    ignored_domains: Option<Vec<String>>,
    /// (key name, field).
    external: Vec<(String, String)>,
}

impl GoldenDedup {
    /// Whether `domain` (already normalised) or a domain it is a subdomain of is ignored.
    pub fn is_ignored(&self, domain: &str) -> bool {
        let matches = |ignored: &str| {
            domain == ignored
                || domain
                    .strip_suffix(ignored)
                    .is_some_and(|sub| sub.ends_with('.'))
        };
        match &self.ignored_domains {
            Some(list) => list.iter().any(|d| matches(d)),
            None => DEFAULT_IGNORED_DOMAINS.iter().any(|d| matches(d)),
        }
    }
}

impl Plugin for GoldenDedup {
    fn configure(&mut self, cx: &Cx) -> Result<(), String> {
        if let Some(list) = cx.config("domain.ignore") {
            self.ignored_domains = Some(
                list.split(',')
                    .map(|d| d.trim().trim_end_matches('.').to_lowercase())
                    .filter(|d| !d.is_empty())
                    .collect(),
            );
        }
        for (name, field) in cx.config_section("external.") {
            let key = format!("external.{name}");
            let (name, field) = (name.trim(), field.trim());
            if name.is_empty() {
                return Err(format!("{key}: the key needs a name after `external.`"));
            }
            if [GOLDEN_ID_KEY, MASTER_ID_KEY, DOMAIN_KEY].contains(&name) {
                return Err(format!(
                    "{key}: {name:?} is a built-in key; pick another name"
                ));
            }
            if field.is_empty() {
                return Err(format!("{key}: needs a field name, e.g. ERP_Id__c"));
            }
            self.external.push((name.to_owned(), field.to_owned()));
        }
        Ok(())
    }

    fn dedup_keys(&self, _cx: &Cx, rec: Record<'_>, keys: &mut KeySink) -> Result<(), String> {
        // Every record of every batch comes through here: values are borrowed from the
        // batch, and a new string is made only where the key differs from the value.
        if let Some(golden) = text_of(&rec, GOLDEN_ID_FIELD)? {
            if golden
                .bytes()
                .any(|b| !b.is_ascii() || b.is_ascii_lowercase())
            {
                keys.push(GOLDEN_ID_KEY, &golden.to_uppercase());
            } else {
                keys.push(GOLDEN_ID_KEY, &golden);
            }
        }

        // A survivor has no MasterRecordId; its own Id is what its duplicates point at.
        let master = match text_of(&rec, MASTER_ID_FIELD)? {
            Some(id) => Some((MASTER_ID_FIELD, id)),
            None => text_of(&rec, ID_FIELD)?.map(|id| (ID_FIELD, id)),
        };
        if let Some((field, id)) = master {
            let id = SalesforceId::parse(&id).map_err(|reason| format!("{field}: {reason}"))?;
            keys.push(MASTER_ID_KEY, id.as_str());
        }

        if let Some(website) = text_of(&rec, WEBSITE_FIELD)? {
            // Text that is no website ("n/a", "none") simply makes no key.
            if let Some(domain) = values::website_domain(&website)
                && !self.is_ignored(&domain)
            {
                keys.push(DOMAIN_KEY, &domain);
            }
        }

        for (name, field) in &self.external {
            if let Some(value) = text_of(&rec, field)? {
                keys.push(name, &value);
            }
        }
        Ok(())
    }
}

weft_guest::export_plugin!(GoldenDedup);

/// The trimmed text of `field`, borrowed from the batch; integers are read as their digits
/// (some systems store ids as numbers). `None` when null or blank.
fn text_of<'a>(rec: &Record<'a>, field: &str) -> Result<Option<Cow<'a, str>>, String> {
    match rec.get(field) {
        Val::Null | Val::Absent => Ok(None),
        Val::Text(Cow::Borrowed(s)) => {
            let s = s.trim();
            Ok((!s.is_empty()).then_some(Cow::Borrowed(s)))
        }
        Val::Text(Cow::Owned(s)) => {
            let s = s.trim();
            Ok((!s.is_empty()).then(|| Cow::Owned(s.to_owned())))
        }
        Val::Int(i) => Ok(Some(Cow::Owned(i.to_string()))),
        other => Err(format!(
            "{field}: expected text, got a {}",
            other.kind_name()
        )),
    }
}

/// The checksum alphabet of 18-character Salesforce ids.
const ID_SUFFIX: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// A Salesforce id in its canonical 18-character form.
///
/// 15 characters: case-sensitive, the checksum is computed. 18 characters: the checksum
/// says which of the first 15 characters are upper case, so their case is restored from
/// it (the id may have passed through a system that changed case) and the checksum is
/// rewritten in upper case.
pub fn salesforce_id_18(id: &str) -> Result<String, String> {
    SalesforceId::parse(id).map(|id| id.as_str().to_owned())
}

/// [`salesforce_id_18`]'s id, held without an allocation.
struct SalesforceId([u8; 18]);

impl SalesforceId {
    fn parse(id: &str) -> Result<Self, String> {
        let bytes = id.as_bytes();
        if !bytes.iter().all(u8::is_ascii_alphanumeric) || !matches!(bytes.len(), 15 | 18) {
            return Err(format!("{id:?} is not a 15- or 18-character Salesforce id"));
        }
        let (body, suffix) = bytes.split_at(15);
        let mut out = [0u8; 18];
        out[..15].copy_from_slice(body);
        if suffix.len() == 3 {
            for (chunk, check) in out[..15].chunks_mut(5).zip(suffix) {
                let upper = check.to_ascii_uppercase();
                let Some(mask) = ID_SUFFIX.iter().position(|c| *c == upper) else {
                    return Err(format!("{id:?} has an invalid checksum"));
                };
                for (bit, c) in chunk.iter_mut().enumerate() {
                    let is_upper = mask & (1 << bit) != 0;
                    if is_upper && !c.is_ascii_alphabetic() {
                        return Err(format!("{id:?} does not match its checksum"));
                    }
                    *c = if is_upper {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    };
                }
            }
        }
        for (i, at) in (15..18).enumerate() {
            let mask = out[i * 5..i * 5 + 5]
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .fold(0usize, |mask, (bit, _)| mask | 1 << bit);
            // A 5-character chunk gives a mask below 32: always inside the alphabet.
            out[at] = ID_SUFFIX.get(mask).copied().unwrap_or(b'A');
        }
        Ok(SalesforceId(out))
    }

    fn as_str(&self) -> &str {
        // Only ASCII alphanumerics went in.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_guest::Direction;
    use weft_guest::testing::{Harness, batch, keys};

    fn run(h: &Harness, rows: &[&[(&str, Val<'_>)]]) -> weft_guest::DedupResult {
        h.dedup_keys::<GoldenDedup>(Direction::Inbound, &batch("Account", rows))
    }

    fn key(record: u32, name: &str, value: &str) -> (u32, String, String) {
        (record, name.to_owned(), value.to_owned())
    }

    #[test]
    fn fifteen_and_eighteen_character_ids() {
        assert_eq!(
            salesforce_id_18("00D000000000062").as_deref(),
            Ok("00D000000000062EAA")
        );
        assert_eq!(
            salesforce_id_18("001A000001KzXyZ").as_deref(),
            Ok("001A000001KzXyZIAV")
        );
        // Case mangled by a case-insensitive system: restored from the checksum.
        assert_eq!(
            salesforce_id_18("001a000001kzxyziav").as_deref(),
            Ok("001A000001KzXyZIAV")
        );
        assert_eq!(
            salesforce_id_18("001A000001KZXYZIAV").as_deref(),
            Ok("001A000001KzXyZIAV")
        );
        // Two 15-character ids differing only in case are different records.
        assert_ne!(
            salesforce_id_18("001A000001KzXyZ"),
            salesforce_id_18("001A000001KZXYZ")
        );
        for bad in [
            "",
            "001",
            "001A000001KzXyZIA",
            "001A000001KzXy!",
            "001A000001KzXyZ_AV",
            "0000000000000009AA",
        ] {
            assert!(salesforce_id_18(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_key_of_an_account() {
        let h = Harness::new().config("external.erp", "ERP_Id__c");
        let out = run(
            &h,
            &[&[
                ("Id", "001A000001KzXyZIAV".into()),
                ("GoldenAccountID__c", " ga-000123 ".into()),
                ("Website", "https://WWW.Acme.com/about".into()),
                ("ERP_Id__c", " Erp-77 ".into()),
            ]],
        );
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(
            keys(&out),
            vec![
                key(0, "golden-id", "GA-000123"),
                key(0, "master-id", "001A000001KzXyZIAV"),
                key(0, "domain", "acme.com"),
                key(0, "erp", "Erp-77"),
            ]
        );
    }

    #[test]
    fn a_merged_duplicate_joins_its_survivor() {
        let out = run(
            &Harness::new(),
            &[
                &[("Id", "001A000001KzXyZ".into())],
                &[
                    ("Id", "001A000002AbCdE".into()),
                    ("MasterRecordId", "001a000001kzxyziav".into()),
                ],
            ],
        );
        let keys = keys(&out);
        assert_eq!(keys[0].2, keys[1].2);
        assert_eq!(keys[1], key(1, "master-id", "001A000001KzXyZIAV"));
    }

    #[test]
    fn free_mail_domains_make_no_key() {
        let sites = [
            "gmail.com",
            "http://mail.yahoo.com",
            "bob@outlook.com",
            "n/a",
            "acme.io",
        ];
        let rows: Vec<Vec<(&str, Val<'_>)>> = sites
            .iter()
            .map(|s| vec![("Website", Val::from(*s))])
            .collect();
        let rows: Vec<&[(&str, Val<'_>)]> = rows.iter().map(Vec::as_slice).collect();
        assert_eq!(
            keys(&run(&Harness::new(), &rows)),
            vec![key(4, "domain", "acme.io")]
        );

        // A configured list replaces the default one; an empty one ignores nothing.
        let h = Harness::new().config("domain.ignore", "Acme.io, example.com");
        let k = keys(&run(&h, &rows));
        assert!(k.contains(&key(0, "domain", "gmail.com")));
        assert!(!k.iter().any(|(_, _, v)| v == "acme.io"));
        let h = Harness::new().config("domain.ignore", "");
        assert_eq!(keys(&run(&h, &rows)).len(), 4);
    }

    #[test]
    fn bad_values_fail_their_record_only() {
        let out = run(
            &Harness::new(),
            &[
                &[
                    ("MasterRecordId", "not-an-id".into()),
                    ("GoldenAccountID__c", "GA-1".into()),
                ],
                &[("GoldenAccountID__c", Val::Bool(true))],
                &[("GoldenAccountID__c", Val::Int(42)), ("Id", "".into())],
            ],
        );
        assert_eq!(out.errors.len(), 2);
        assert!(
            out.errors[0]
                .reason
                .starts_with("MasterRecordId: \"not-an-id\" is not")
        );
        assert!(
            out.errors[1]
                .reason
                .starts_with("GoldenAccountID__c: expected text")
        );
        assert_eq!(keys(&out), vec![key(2, "golden-id", "42")]);
    }

    #[test]
    fn configuration_errors_name_the_key() {
        for (k, v, expected) in [
            (
                "external.domain",
                "Domain__c",
                "external.domain: \"domain\" is a built-in key",
            ),
            ("external.erp", " ", "external.erp: needs a field name"),
            ("external.", "ERP_Id__c", "external.: the key needs a name"),
        ] {
            let out = run(
                &Harness::new().config(k, v),
                &[&[("Id", "00D000000000062".into())]],
            );
            assert!(out.keys.is_empty());
            assert!(
                out.errors[0]
                    .reason
                    .starts_with(&format!("plugin configuration: {expected}")),
                "{}",
                out.errors[0].reason
            );
        }
    }

    #[test]
    fn mapping_is_the_identity() {
        let input = batch(
            "Account",
            &[&[("Id", "00D000000000062".into()), ("Name", "Acme".into())]],
        );
        let out = Harness::new().map_inbound::<GoldenDedup>(&input);
        assert_eq!(out.batches, vec![input]);
    }
}
