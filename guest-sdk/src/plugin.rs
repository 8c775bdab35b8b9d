//! The one trait a plugin implements. Every method has a default, so a plugin overrides
//! only what its customer needs; the per-record methods are what plugin authors write, the
//! `*_batch` methods exist for the rare plugin that must see the whole batch.

use crate::batch::{Emit, Record, Val, same_name};
use crate::bindings::weft::plugin::types::{
    Batch, BatchResult, Decision, DedupKey, DedupResult, FieldSchema, ObjectSchema, RecordError,
    Resolution, Span,
};
use crate::context::Cx;
use crate::{coerce, layout, run};

/// Collects the dedup keys of one record.
#[derive(Debug, Default)]
pub struct KeySink {
    pub(crate) keys: Vec<DedupKey>,
    pub(crate) text: String,
    pub(crate) record: u32,
    /// Key names already in `text`: every record repeats the same few, so each is stored
    /// once.
    names: Vec<Span>,
}

impl KeySink {
    /// Adds a key such as `("golden-id", "GA-000123")`. Empty values are ignored: an empty
    /// key would join every record that lacks the field.
    pub fn push(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let known = self
            .names
            .iter()
            .copied()
            .find(|span| same_name(layout::span_text(&self.text, *span), name));
        let name = match known {
            Some(span) => span,
            None => {
                let span = layout::append_span(&mut self.text, name);
                self.names.push(span);
                span
            }
        };
        let value = layout::append_span(&mut self.text, value);
        self.keys.push(DedupKey {
            record: self.record,
            name,
            value,
        });
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
    fn map_inbound(&self, _cx: &Cx, rec: Record<'_>, out: &mut Emit) -> Result<(), String> {
        copy_record(rec, out);
        Ok(())
    }

    /// Product record → Salesforce object(s). Default: copy every field.
    fn map_outbound(&self, _cx: &Cx, rec: Record<'_>, out: &mut Emit) -> Result<(), String> {
        copy_record(rec, out);
        Ok(())
    }

    /// Coerces one value to its field's schema. Default: [`coerce::coerce_value`], which
    /// converts between kinds where the conversion is lossless and rejects the rest.
    #[inline]
    fn coerce_value<'a>(
        &self,
        _cx: &Cx,
        field: &FieldSchema,
        value: Val<'a>,
    ) -> Result<Val<'a>, String> {
        coerce::coerce_value(field, value)
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

fn copy_record(rec: Record<'_>, out: &mut Emit) {
    let mut writer = out.record(rec.object());
    for (name, value) in rec.fields() {
        writer.set(name, value);
    }
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
