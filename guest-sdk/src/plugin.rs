//! The one trait a plugin implements. Every method has a default, so a plugin overrides
//! only what its customer needs; the per-record methods are what plugin authors write, the
//! `*_batch` methods exist for the rare plugin that must see the whole batch.

use crate::batch::{Emit, Record, Val, same_name};
use crate::bindings::weft::plugin::types::{
    Batch, BatchResult, Decision, DedupKeys, DedupResult, FieldSchema, ObjectSchema, RecordError,
    Resolution,
};
use crate::coerce::Coerced;
use crate::context::Cx;
use crate::{coerce, layout, run};

/// Collects the dedup keys of one record.
#[derive(Debug, Default)]
pub struct KeySink {
    pub(crate) keys: DedupKeys,
    pub(crate) record: u32,
    /// Packed spans of the key names already in `keys.text`: every record repeats the same
    /// few, so each is stored once.
    names: Vec<u64>,
}

// Written out, not derived: the type is generated from the WIT, and the generator's derives
// apply to every type, enums included.
#[allow(clippy::derivable_impls)]
impl Default for DedupKeys {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            names: Vec::new(),
            values: Vec::new(),
            text: String::new(),
        }
    }
}

impl DedupKeys {
    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl KeySink {
    /// Adds a key such as `("golden-id", "GA-000123")`. Empty values are ignored: an empty
    /// key would join every record that lacks the field.
    pub fn push(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let keys = &mut self.keys;
        let known = self.names.iter().copied().find(|&packed| {
            same_name(
                layout::span_text(&keys.text, layout::payload_span(packed)),
                name,
            )
        });
        let name = match known {
            Some(packed) => packed,
            None => {
                let packed = layout::span_payload(layout::append_span(&mut keys.text, name));
                self.names.push(packed);
                packed
            }
        };
        let value = layout::span_payload(layout::append_span(&mut keys.text, value));
        keys.records.push(self.record);
        keys.names.push(name);
        keys.values.push(value);
    }

    /// How many keys and bytes of text the sink holds, to roll a record back to.
    pub(crate) fn mark(&self) -> (usize, usize) {
        (self.keys.records.len(), self.keys.text.len())
    }

    /// Drops every key pushed since `mark`. A key name first stored after the mark goes
    /// with its text.
    pub(crate) fn rollback(&mut self, (keys, text): (usize, usize)) {
        self.keys.records.truncate(keys);
        self.keys.names.truncate(keys);
        self.keys.values.truncate(keys);
        self.keys.text.truncate(text);
        self.names
            .retain(|&packed| layout::payload_span(packed).offset < text as u32);
    }
}

/// Configuration key read by the default dedup: a comma-separated list of fields whose
/// values are external ids (default `Id`).
pub const DEDUP_FIELDS_KEY: &str = "dedup.fields";

/// A Weft plugin.
pub trait Plugin: Default {
    /// Reads configuration once per batch, before any record. An error fails every record
    /// of the batch with that reason (a misconfigured installation should be loud).
    fn configure(&mut self, _cx: &Cx) -> Result<(), String> {
        Ok(())
    }

    /// Salesforce record → product record(s). Default: copy every field to a record of
    /// the same object.
    fn map_inbound(&self, _cx: &Cx, rec: Record<'_>, out: &mut Emit<'_>) -> Result<(), String> {
        copy_record(rec, out);
        Ok(())
    }

    /// Product record → Salesforce object(s). Default: copy every field.
    fn map_outbound(&self, _cx: &Cx, rec: Record<'_>, out: &mut Emit<'_>) -> Result<(), String> {
        copy_record(rec, out);
        Ok(())
    }

    /// Coerces one value to its field's schema: [`Coerced::Keep`] when it is right as it
    /// is, or [`Coerced::To`] its coerced form. Default: [`coerce::coerce`], which converts
    /// between kinds where the conversion is lossless and rejects the rest.
    ///
    /// Answer `Keep` for a value that does not change rather than returning it again:
    /// the value is then written as it came, without being rebuilt and encoded anew (for
    /// the benchmark's Account batches, 5–10% of a whole map → coerce → dedup run).
    #[inline]
    fn coerce_value<'a>(
        &self,
        _cx: &Cx,
        field: &FieldSchema,
        value: &Val<'a>,
    ) -> Result<Coerced<'a>, String> {
        coerce::coerce(field, value)
    }

    /// Decides whether one incoming field value overwrites Salesforce's. Default: skip when
    /// Salesforce changed the record after the product did, write otherwise.
    #[allow(clippy::too_many_arguments)]
    fn resolve_field(
        &self,
        _cx: &Cx,
        _field: &str,
        _incoming: &Val<'_>,
        _current: &Val<'_>,
        incoming_at: i64,
        current_modified_at: Option<i64>,
    ) -> Decision {
        match current_modified_at {
            Some(sf_at) if sf_at > incoming_at => Decision::Skip,
            _ => Decision::Write,
        }
    }

    /// The dedup and join keys of one record. Default: one key per field named in the
    /// `dedup.fields` configuration (default `Id`), named after the field.
    fn dedup_keys(&self, cx: &Cx, rec: Record<'_>, keys: &mut KeySink) -> Result<(), String> {
        for field in cx.dedup_fields() {
            if let Some(value) = rec.get(field).as_str() {
                keys.push(field, value);
            }
        }
        Ok(())
    }

    fn map_inbound_batch(&self, cx: &Cx, input: &Batch) -> BatchResult {
        run::map_each(cx, input, |cx, rec, out| self.map_inbound(cx, rec, out))
    }

    fn map_outbound_batch(&self, cx: &Cx, input: &Batch) -> BatchResult {
        run::map_each(cx, input, |cx, rec, out| self.map_outbound(cx, rec, out))
    }

    fn coerce_batch(&self, cx: &Cx, schema: &ObjectSchema, input: &Batch) -> BatchResult {
        run::coerce_each(cx, schema, input, |cx, field, value| {
            self.coerce_value(cx, field, value)
        })
    }

    fn resolve_batch(
        &self,
        cx: &Cx,
        incoming: &Batch,
        incoming_at: &[i64],
        current: &Batch,
        current_modified_at: &[Option<i64>],
    ) -> Resolution {
        run::resolve_each(
            cx,
            incoming,
            incoming_at,
            current,
            current_modified_at,
            self,
        )
    }

    fn dedup_batch(&self, cx: &Cx, input: &Batch) -> DedupResult {
        run::dedup_each(cx, input, |cx, rec, keys| self.dedup_keys(cx, rec, keys))
    }
}

fn copy_record(rec: Record<'_>, out: &mut Emit<'_>) {
    out.copy(rec);
}

/// A batch-wide failure reported against every input record, so nothing is dropped.
pub(crate) fn fail_all(len: usize, reason: &str) -> Vec<RecordError> {
    (0..len)
        .map(|r| RecordError {
            record: r as u32,
            reason: reason.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::key_list;

    fn key(record: u32, name: &str, value: &str) -> (u32, String, String) {
        (record, name.into(), value.into())
    }

    #[test]
    fn key_names_are_stored_once_and_a_rollback_forgets_only_later_keys() {
        let mut sink = KeySink::default();
        sink.push("golden-id", "GA-1");
        sink.push("golden-id", "GA-2");
        sink.push("domain", ""); // empty values are no keys
        assert_eq!(sink.keys.text, "golden-idGA-1GA-2");

        sink.record = 1;
        let mark = sink.mark();
        sink.push("domain", "acme.com");
        sink.push("golden-id", "GA-3");
        sink.rollback(mark);
        assert_eq!(sink.keys.len(), 2);
        assert_eq!(sink.keys.text, "golden-idGA-1GA-2");

        // "domain" went with the rollback, so it is stored afresh.
        sink.push("domain", "acme.org");
        assert_eq!(
            key_list(&sink.keys),
            vec![
                key(0, "golden-id", "GA-1"),
                key(0, "golden-id", "GA-2"),
                key(1, "domain", "acme.org"),
            ]
        );
        assert_eq!(sink.keys.text, "golden-idGA-1GA-2domainacme.org");
    }
}
