//! A native harness: run a plugin's logic with plain `cargo test`, no wasm involved.
//!
//! The harness drives the same batch drivers the component exports do, over the same
//! columnar batches, with configuration from a map instead of the host. What passes here
//! behaves the same inside the sandbox; the host's end-to-end tests prove that half.

use std::collections::BTreeMap;

use crate::batch::{BatchBuilder, BatchView, Val};
use crate::bindings::exports::weft::plugin::chain::ChainResult;
use crate::bindings::weft::plugin::types::{
    Batch, BatchResult, DedupKeys, DedupResult, Direction, FieldKind, FieldSchema, ObjectSchema,
    Resolution,
};
use crate::context::Cx;
use crate::plugin::Plugin;
use crate::run;

/// Runs plugin exports natively with a given configuration and clock.
#[derive(Debug, Clone)]
pub struct Harness {
    installation: String,
    now: i64,
    config: BTreeMap<String, String>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        Self {
            installation: "test-installation".to_owned(),
            // 2026-01-01T00:00:00Z: a fixed "now" keeps tests deterministic.
            now: 1_767_225_600_000,
            config: BTreeMap::new(),
        }
    }

    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn now(mut self, now_ms: i64) -> Self {
        self.now = now_ms;
        self
    }

    pub fn cx(&self, direction: Direction) -> Cx {
        Cx::native(&self.installation, direction, self.now, self.config.clone())
    }

    pub fn map_inbound<P: Plugin>(&self, input: &Batch) -> BatchResult {
        run::map_inbound_with::<P>(&self.cx(Direction::Inbound), input)
    }

    pub fn map_outbound<P: Plugin>(&self, input: &Batch) -> BatchResult {
        run::map_outbound_with::<P>(&self.cx(Direction::Outbound), input)
    }

    pub fn coerce<P: Plugin>(
        &self,
        direction: Direction,
        schema: &ObjectSchema,
        input: &Batch,
    ) -> BatchResult {
        run::coerce_with::<P>(&self.cx(direction), schema, input)
    }

    pub fn resolve<P: Plugin>(
        &self,
        incoming: &Batch,
        incoming_at: &[i64],
        current: &Batch,
        current_modified_at: &[Option<i64>],
    ) -> Resolution {
        run::resolve_with::<P>(
            &self.cx(Direction::Outbound),
            incoming,
            incoming_at,
            current,
            current_modified_at,
        )
    }

    pub fn dedup_keys<P: Plugin>(&self, direction: Direction, input: &Batch) -> DedupResult {
        run::dedup_keys_with::<P>(&self.cx(direction), input)
    }

    /// Map → coerce → dedup keys in one go, as the host's single chain call runs them.
    pub fn chain<P: Plugin>(
        &self,
        direction: Direction,
        input: &Batch,
        schemas: &[ObjectSchema],
        dedup: bool,
    ) -> ChainResult {
        run::chain_with::<P>(&self.cx(direction), input, schemas, dedup)
    }
}

/// Builds a batch from rows of `(field, value)` pairs.
pub fn batch<'v>(object: &str, rows: &[&[(&str, Val<'v>)]]) -> Batch {
    let mut builder = BatchBuilder::new(object);
    for (r, row) in rows.iter().enumerate() {
        let mut writer = builder.push(r as u32);
        for (field, value) in *row {
            writer.set(field, value.clone());
        }
    }
    builder.finish()
}

/// The records of a batch as maps, for assertions. Null and absent fields are left out.
pub fn rows(batch: &Batch) -> Vec<BTreeMap<String, Val<'static>>> {
    let view = BatchView::new(batch);
    view.records()
        .map(|rec| {
            rec.fields()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.to_owned(), v.into_owned()))
                .collect()
        })
        .collect()
}

/// The keys of a dedup result as `(record, name, value)`.
pub fn keys(result: &DedupResult) -> Vec<(u32, String, String)> {
    key_list(&result.keys)
}

/// Dedup keys (of a dedup or chain result) as `(record, name, value)`.
pub fn key_list(keys: &DedupKeys) -> Vec<(u32, String, String)> {
    let text = |packed: u64| {
        crate::layout::span_text(&keys.text, crate::layout::payload_span(packed)).to_owned()
    };
    keys.records
        .iter()
        .zip(&keys.names)
        .zip(&keys.values)
        .map(|((&record, &name), &value)| (record, text(name), text(value)))
        .collect()
}

/// A field schema with permissive defaults, for tests.
pub fn field(name: &str, kind: FieldKind) -> FieldSchema {
    FieldSchema {
        name: name.to_owned(),
        kind,
        length: 0,
        scale: 0,
        nillable: true,
        createable: true,
        updateable: true,
        external_id: false,
        picklist_values: Vec::new(),
        restricted_picklist: false,
        reference_to: Vec::new(),
    }
}

pub fn schema(object: &str, fields: Vec<FieldSchema>) -> ObjectSchema {
    ObjectSchema {
        name: object.to_owned(),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stage;
    use crate::batch::{Emit, Record};
    use crate::plugin::KeySink;

    #[derive(Default)]
    struct Identity;
    impl Plugin for Identity {}

    #[derive(Default)]
    struct Picky;
    impl Plugin for Picky {
        fn map_inbound(&self, _cx: &Cx, rec: Record<'_>, out: &mut Emit) -> Result<(), String> {
            // Writes a partial record before failing, to prove failed records leave nothing.
            out.record("Company").set("name", rec.get("Name"));
            if rec.get("Name").as_str() == Some("bad") {
                return Err("bad name".into());
            }
            out.record("Contact").set("company", rec.get("Name"));
            Ok(())
        }

        fn dedup_keys(&self, _cx: &Cx, rec: Record<'_>, keys: &mut KeySink) -> Result<(), String> {
            keys.push("name", rec.get("Name").as_str().unwrap_or_default());
            Err("keys are never good enough".into())
        }
    }

    #[test]
    fn identity_defaults_round_trip() {
        let input = batch(
            "Account",
            &[&[("Name", "Acme".into()), ("Employees", Val::Int(5))]],
        );
        let out = Harness::new().map_inbound::<Identity>(&input);
        assert!(out.errors.is_empty());
        assert_eq!(out.batches.len(), 1);
        assert_eq!(out.batches[0], input);
    }

    #[test]
    fn a_failing_record_fails_alone_and_leaves_no_partial_output() {
        let input = batch(
            "Account",
            &[
                &[("Name", "good".into())],
                &[("Name", "bad".into())],
                &[("Name", "fine".into())],
            ],
        );
        let out = Harness::new().map_inbound::<Picky>(&input);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].record, 1);
        let companies = out.batches.iter().find(|b| b.object == "Company").unwrap();
        assert_eq!(companies.sources, vec![0, 2]);
        assert_eq!(rows(companies)[1]["name"], Val::from("fine"));
        let contacts = out.batches.iter().find(|b| b.object == "Contact").unwrap();
        assert_eq!(contacts.sources, vec![0, 2]);

        let keys_out = Harness::new().dedup_keys::<Picky>(Direction::Inbound, &input);
        assert!(keys_out.keys.is_empty());
        assert_eq!(keys_out.errors.len(), 3);
    }

    #[test]
    fn default_coercion_reports_the_field() {
        let schema = schema("Account", vec![field("NumberOfEmployees", FieldKind::Int)]);
        let input = batch(
            "Account",
            &[
                &[("NumberOfEmployees", "12".into())],
                &[("NumberOfEmployees", "twelve".into())],
            ],
        );
        let out = Harness::new().coerce::<Identity>(Direction::Outbound, &schema, &input);
        assert_eq!(
            rows(&out.batches[0]),
            vec![BTreeMap::from([(
                "NumberOfEmployees".to_owned(),
                Val::Int(12)
            )])]
        );
        assert_eq!(out.errors[0].record, 1);
        assert!(out.errors[0].reason.starts_with("NumberOfEmployees: "));
    }

    #[test]
    fn coercing_a_batch_equals_coercing_each_record_alone() {
        // Coercion runs a column at a time; a record still fails with its first failing
        // field in batch order. Name comes first, so record 70, where both fail, reports
        // Name; a field the schema does not know passes unchanged.
        let mut name = field("Name", FieldKind::String);
        name.length = 5;
        let schema = schema(
            "Account",
            vec![field("NumberOfEmployees", FieldKind::Int), name],
        );
        let records: Vec<Vec<(&str, Val)>> = (0..150)
            .map(|r| {
                let employees = match r {
                    3 | 70 | 140 => Val::from("twelve"),
                    _ if r % 2 == 0 => Val::from(format!("{r}")),
                    _ => Val::Int(r),
                };
                let name = match r {
                    65 | 70 => Val::from("too long"),
                    _ if r % 7 == 0 => Val::Null,
                    _ => Val::from(format!("n{r}")),
                };
                vec![
                    ("Name", name),
                    ("NumberOfEmployees", employees),
                    ("Unknown", Val::from(format!("u{r}"))),
                ]
            })
            .collect();
        let slices: Vec<&[(&str, Val)]> = records.iter().map(Vec::as_slice).collect();
        let input = batch("Account", &slices);
        let out = Harness::new().coerce::<Identity>(Direction::Outbound, &schema, &input);

        // Each record alone, through the same per-value coercion.
        let mut kept = Vec::new();
        let mut failures = Vec::new();
        for (r, record) in records.iter().enumerate() {
            let mut row = BTreeMap::new();
            let mut failure = None;
            for (name, value) in record {
                let coerced = match schema.fields.iter().find(|f| f.name == *name) {
                    Some(f) => crate::coerce::coerce_value(f, value.clone()),
                    None => Ok(value.clone()),
                };
                match coerced {
                    Ok(v) if !v.is_null() => {
                        row.insert((*name).to_owned(), v.into_owned());
                    }
                    Ok(_) => {}
                    Err(reason) => {
                        failure = Some(format!("{name}: {reason}"));
                        break;
                    }
                }
            }
            match failure {
                Some(reason) => failures.push((r as u32, reason)),
                None => kept.push((r as u32, row)),
            }
        }
        let errors: Vec<(u32, String)> = out
            .errors
            .iter()
            .map(|e| (e.record, e.reason.clone()))
            .collect();
        assert_eq!(errors, failures);
        assert_eq!(
            failures.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec![3, 65, 70, 140]
        );
        assert!(failures[2].1.starts_with("Name: "), "{failures:?}");
        assert_eq!(out.batches.len(), 1);
        let batch = &out.batches[0];
        assert_eq!(batch.sources, kept.iter().map(|k| k.0).collect::<Vec<_>>());
        assert_eq!(
            rows(batch),
            kept.into_iter().map(|k| k.1).collect::<Vec<_>>()
        );
    }

    /// Emits a Lead and, for some records, a Contact; its keys fail for one Lead.
    #[derive(Default)]
    struct Splitter;
    impl Plugin for Splitter {
        fn map_outbound(&self, _cx: &Cx, rec: Record<'_>, out: &mut Emit) -> Result<(), String> {
            let name = rec.get("name");
            if name.as_str() == Some("unmappable") {
                return Err("cannot map".into());
            }
            out.record("Lead")
                .set("LastName", name.clone())
                .set("Rating", rec.get("rating"));
            if rec.has("email") {
                out.record("Contact").set("Email", rec.get("email"));
            }
            Ok(())
        }

        fn dedup_keys(&self, _cx: &Cx, rec: Record<'_>, keys: &mut KeySink) -> Result<(), String> {
            match rec.get("LastName").as_str() {
                Some("keyless") => Err("no key".into()),
                Some(name) => {
                    keys.push("last-name", name);
                    Ok(())
                }
                None => Ok(()),
            }
        }
    }

    #[test]
    fn the_chain_traces_every_row_and_failure_to_its_input_record() {
        let input = batch(
            "person",
            &[
                &[("name", "unmappable".into())],
                &[("name", "Ada".into()), ("rating", "hot".into())],
                &[("name", "Bob".into()), ("rating", "Lukewarm".into())],
                &[
                    ("name", "keyless".into()),
                    ("email", "k@example.com".into()),
                ],
                &[("name", "Cy".into()), ("email", "cy@example.com".into())],
            ],
        );
        let mut rating = field("Rating", FieldKind::Picklist);
        rating.picklist_values = vec!["Hot".into(), "Cold".into()];
        rating.restricted_picklist = true;
        let lead = schema("Lead", vec![field("LastName", FieldKind::String), rating]);
        let out = Harness::new().chain::<Splitter>(Direction::Outbound, &input, &[lead], true);

        let failures: Vec<(u32, Stage)> = out.errors.iter().map(|e| (e.record, e.stage)).collect();
        assert_eq!(
            failures,
            vec![(0, Stage::Map), (2, Stage::Coerce), (3, Stage::Dedup)]
        );
        let leads = out
            .batches
            .iter()
            .find(|b| b.batch.object == "Lead")
            .unwrap();
        // Coercion dropped Bob's row; the rest name their input records.
        assert_eq!(leads.batch.sources, vec![1, 3, 4]);
        assert_eq!(rows(&leads.batch)[0]["Rating"], Val::from("Hot"));
        let lead_keys: Vec<(u32, String)> = key_list(&leads.keys)
            .into_iter()
            .map(|(record, _, value)| (record, value))
            .collect();
        assert_eq!(lead_keys, vec![(0, "Ada".into()), (2, "Cy".into())]);
        // The Contact has no schema: it passes coercion unchanged.
        let contacts = out
            .batches
            .iter()
            .find(|b| b.batch.object == "Contact")
            .unwrap();
        assert_eq!(contacts.batch.sources, vec![3, 4]);
        assert_eq!(
            rows(&contacts.batch)[1]["Email"],
            Val::from("cy@example.com")
        );

        let unkeyed = Harness::new().chain::<Splitter>(Direction::Outbound, &input, &[], false);
        assert!(unkeyed.batches.iter().all(|b| b.keys.is_empty()));
        assert!(unkeyed.errors.iter().all(|e| e.stage == Stage::Map));
    }

    #[test]
    fn default_resolver_skips_when_salesforce_is_newer() {
        let incoming = batch(
            "Account",
            &[&[("Name", "new".into())], &[("Name", "new".into())]],
        );
        let current = batch(
            "Account",
            &[&[("Name", "old".into())], &[("Name", "old".into())]],
        );
        let out = Harness::new().resolve::<Identity>(
            &incoming,
            &[100, 100],
            &current,
            &[Some(200), Some(50)],
        );
        use crate::Decision::{Skip, Write};
        assert_eq!(out.decisions, vec![vec![Skip, Write]]);
    }

    #[test]
    fn default_dedup_uses_configured_fields() {
        let input = batch(
            "Account",
            &[&[("Id", "001A".into()), ("Ext__c", "E-1".into())]],
        );
        let h = Harness::new().config("dedup.fields", "Id, Ext__c");
        let out = h.dedup_keys::<Identity>(Direction::Inbound, &input);
        assert_eq!(
            keys(&out),
            vec![
                (0, "Id".into(), "001A".into()),
                (0, "Ext__c".into(), "E-1".into())
            ]
        );
    }
}
