//! A page's deliveries, encoded once as the record format's JSON — written straight from
//! the plugin's output columns, with no JSON value per record in between — and then
//! appended to a file or posted as they are.
//!
//! The bytes are exactly what serialising a [`Delivery`] gives: its keys in declaration
//! order, `output` left out when empty, each output's `fields` and `keys` in name order
//! (they were JSON maps), absent fields left out, values as `value_to_json` renders them.

use serde::Serialize;

use super::{Delivery, Op};
use crate::plugin::{Batch, Value, span_text, value_to_json};

/// One page's deliveries in order, each a JSON object in one shared buffer.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// Each delivery's JSON followed by a newline: the page as the NDJSON sink writes it.
    json: Vec<u8>,
    /// Each delivery's Id and idempotency key, back to back.
    keys: String,
    records: Vec<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    op: Op,
    /// Where its Id, its idempotency key and its JSON line end in the buffers.
    id_end: usize,
    key_end: usize,
    line_end: usize,
}

/// One encoded delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRef<'a> {
    pub id: &'a str,
    pub op: Op,
    pub idempotency_key: &'a str,
    /// Its JSON object, without the newline.
    pub json: &'a [u8],
}

/// One output record of the plugin: row `row` of `batch`, whose fields are written in the
/// order `fields` gives (indices into the batch, by name), with its dedup keys.
pub struct OutputRow<'a> {
    pub batch: &'a Batch,
    pub fields: &'a [usize],
    /// For each of `fields`, its name as JSON followed by `:`.
    pub names: &'a [Vec<u8>],
    pub row: usize,
    /// `(row, name, value)`, in name order, one per name.
    pub keys: &'a [(u32, &'a str, &'a str)],
}

impl Deliveries {
    /// Room for `records` deliveries of about `bytes` of JSON in all.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        Deliveries {
            json: Vec::with_capacity(bytes),
            keys: String::with_capacity(records * 96),
            records: Vec::with_capacity(records),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Each delivery in order.
    pub fn iter(&self) -> impl Iterator<Item = DeliveryRef<'_>> {
        let (mut key_start, mut line_start) = (0, 0);
        self.records.iter().map(move |e| {
            let line = self.json.get(line_start..e.line_end).unwrap_or(&[]);
            let delivery = DeliveryRef {
                id: self.keys.get(key_start..e.id_end).unwrap_or_default(),
                op: e.op,
                idempotency_key: self.keys.get(e.id_end..e.key_end).unwrap_or_default(),
                json: line.strip_suffix(b"\n").unwrap_or(line),
            };
            (key_start, line_start) = (e.key_end, e.line_end);
            delivery
        })
    }

    /// Every delivery's JSON, each followed by a newline: an NDJSON page.
    pub fn ndjson(&self) -> &[u8] {
        &self.json
    }

    /// Notes the delivery whose JSON was just written, with its Id and key.
    fn end(&mut self, op: Op, id: &str, key: &str) {
        self.json.push(b'\n');
        self.keys.push_str(id);
        let id_end = self.keys.len();
        self.keys.push_str(key);
        self.records.push(Entry {
            op,
            id_end,
            key_end: self.keys.len(),
            line_end: self.json.len(),
        });
    }

    /// Appends a delivery built as a value (deletes, which carry no output).
    pub fn push(&mut self, delivery: &Delivery) -> Result<(), serde_json::Error> {
        let start = self.json.len();
        if let Err(e) = serde_json::to_writer(&mut self.json, delivery) {
            self.json.truncate(start);
            return Err(e);
        }
        self.end(delivery.op, &delivery.id, &delivery.idempotency_key);
        Ok(())
    }

    /// Appends an upsert of `object` row `id` at `stamp` with the plugin's `outputs`; its
    /// idempotency key is `installation/object/id/stamp`.
    pub fn push_upsert<'a>(
        &mut self,
        installation: &str,
        object: &str,
        id: &str,
        stamp: &str,
        outputs: impl IntoIterator<Item = OutputRow<'a>>,
    ) {
        let key_start = self.keys.len();
        for part in [id, installation, "/", object, "/", id, "/", stamp] {
            self.keys.push_str(part);
        }
        let id_end = key_start + id.len();
        let out = &mut self.json;
        out.extend_from_slice(b"{\"object\":");
        string(out, object);
        out.extend_from_slice(b",\"id\":");
        string(out, id);
        out.extend_from_slice(b",\"system_modstamp\":");
        string(out, stamp);
        out.extend_from_slice(b",\"op\":\"upsert\"");
        let mut first = true;
        for output in outputs {
            out.extend_from_slice(if first {
                b",\"output\":[{\"object\":"
            } else {
                b",{\"object\":"
            });
            first = false;
            write_output(out, &output);
        }
        if !first {
            out.push(b']');
        }
        out.extend_from_slice(b",\"idempotency_key\":");
        string(out, &self.keys[id_end..]);
        out.extend_from_slice(b"}\n");
        self.records.push(Entry {
            op: Op::Upsert,
            id_end,
            key_end: self.keys.len(),
            line_end: out.len(),
        });
    }
}

/// `{"object":` written already: the rest of one output record.
fn write_output(out: &mut Vec<u8>, output: &OutputRow<'_>) {
    string(out, &output.batch.object);
    out.extend_from_slice(b",\"fields\":{");
    let mut comma = false;
    for (&f, name) in output.fields.iter().zip(output.names) {
        let Some(column) = output.batch.columns.get(f) else {
            continue;
        };
        let value = match column.get(output.row) {
            None | Some(Value::Absent) => continue,
            Some(value) => value,
        };
        if comma {
            out.push(b',');
        }
        comma = true;
        out.extend_from_slice(name);
        write_value(out, &output.batch.text, value);
    }
    out.push(b'}');
    if !output.keys.is_empty() {
        out.extend_from_slice(b",\"keys\":{");
        for (i, (_, name, value)) in output.keys.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, name);
            out.push(b':');
            string(out, value);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn string(out: &mut Vec<u8>, s: &str) {
    // Almost every value has nothing to escape: then it is copied whole, where serde_json
    // looks each byte up in its escape table (4% of a Bulk backfill's CPU).
    if needs_no_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        json(out, s);
    }
}

/// Whether no byte of `s` is one JSON escapes: a quote, a backslash or a control character
/// below 0x20. Eight bytes at a time: a byte below `n` shows up in `(v - n·0x01…) & !v` as
/// its high bit, and a byte equal to `c` as a zero byte of `v ^ c·0x01…`. A borrow can
/// only mark bytes above one that matched, so the answer for the word as a whole is exact.
fn needs_no_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGHS;
    let (words, rest) = s.as_chunks::<8>();
    let clean_word = |word: &[u8; 8]| {
        let v = u64::from_le_bytes(*word);
        below(v, 0x20)
            | below(v ^ (ONES * u64::from(b'"')), 1)
            | below(v ^ (ONES * u64::from(b'\\')), 1)
            == 0
    };
    words.iter().all(clean_word) && rest.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Writes `value` with serde_json, which cannot fail for the plain values written here.
fn json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

fn write_value(out: &mut Vec<u8>, text: &str, value: Value) {
    match value {
        Value::Absent | Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Integer(i) => json(out, &i),
        // Not finite: serde_json writes null, as a JSON number of it would be.
        Value::Number(n) => json(out, &n),
        Value::Text(span) => match span_text(text, span) {
            Some(s) => string(out, s),
            None => out.extend_from_slice(b"null"),
        },
        // Coerced `SystemModstamp`s, one per record: ASCII digits and separators, nothing to
        // escape.
        Value::Datetime(ms) => match crate::stamp::ascii(ms) {
            Some(stamp) => {
                out.push(b'"');
                out.extend_from_slice(&stamp);
                out.push(b'"');
            }
            None => crate::stamp::with_text(ms, |stamp| string(out, stamp)),
        },
        // Rare: JSON text, dates and times render through the one JSON rendering.
        other => json(out, &value_to_json(text, &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::sink::Output;
    use crate::plugin::{BatchBuilder, batch_to_json};

    #[test]
    fn text_without_escapes_is_copied_and_every_escape_is_found_at_every_position() {
        let escaped = |s: &str| {
            let mut out = Vec::new();
            string(&mut out, s);
            out
        };
        let plain = "Zoë Acme, Inc. ünïcödé 0123456789 ~ DEL\u{7f} 😀";
        assert!(needs_no_escape(plain.as_bytes()));
        assert_eq!(escaped(plain), serde_json::to_vec(plain).expect("json"));
        for len in 0..=20 {
            let base = "é".repeat(len / 2) + &"a".repeat(len % 2);
            assert!(needs_no_escape(base.as_bytes()));
            for at in 0..=base.len() {
                if !base.is_char_boundary(at) {
                    continue;
                }
                for c in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
                    let s = format!("{}{c}{}", &base[..at], &base[at..]);
                    assert!(!needs_no_escape(s.as_bytes()), "{s:?}");
                    assert_eq!(escaped(&s), serde_json::to_vec(&s).expect("json"), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn an_upsert_written_from_columns_is_byte_for_byte_its_serialised_delivery() {
        let mut builder = BatchBuilder::with_fields("Company", &["z", "a", "when"], 2);
        let row = builder.push_record();
        builder.set_text(row, "z", "Zoë \"Z\", jr.\nline\u{1}");
        builder.set_value(row, "a", Value::Number(0.1));
        builder.set_value(row, "when", Value::Datetime(1_700_000_000_123));
        builder.set_value(row, "n", Value::Integer(-7));
        builder.set_value(row, "nan", Value::Number(f64::NAN));
        builder.set_value(row, "d", Value::Date(-3));
        builder.set_value(row, "t", Value::Time(3_723_004));
        builder.set_value(row, "b", Value::Boolean(false));
        builder.set_value(row, "null", Value::Null);
        let row = builder.push_record();
        builder.set_json(row, "z", &serde_json::json!({"b": [1, 2.5], "a": null}));
        let batch = builder.finish();
        let mut order: Vec<usize> = (0..batch.fields.len()).collect();
        order.sort_by(|&a, &b| batch.fields[a].cmp(&batch.fields[b]));
        let records = batch_to_json(&batch);
        let names: Vec<Vec<u8>> = order
            .iter()
            .map(|&f| {
                format!("{}:", serde_json::Value::from(batch.fields[f].as_str())).into_bytes()
            })
            .collect();
        let keys = [(0, "golden-id", "G\"1"), (0, "Id", "001")];
        let mut sorted_keys = keys.to_vec();
        sorted_keys.sort();

        let mut encoded = Deliveries::default();
        let mut expected = Vec::new();
        for (row, record) in records.into_iter().enumerate() {
            let with_keys: &[(u32, &str, &str)] = if row == 0 { &sorted_keys } else { &[] };
            encoded.push_upsert(
                "acme",
                "Account",
                "001",
                "2026-11-23T18:20:58.000Z",
                [OutputRow {
                    batch: &batch,
                    fields: &order,
                    names: &names,
                    row,
                    keys: with_keys,
                }],
            );
            let delivery = Delivery {
                object: "Account".into(),
                id: "001".into(),
                system_modstamp: "2026-11-23T18:20:58.000Z".into(),
                op: Op::Upsert,
                output: vec![Output {
                    object: "Company".into(),
                    fields: record,
                    keys: with_keys
                        .iter()
                        .map(|(_, k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                }],
                idempotency_key: "acme/Account/001/2026-11-23T18:20:58.000Z".into(),
            };
            expected.extend(serde_json::to_vec(&delivery).expect("json"));
            expected.push(b'\n');
        }
        // No output at all: the key is left out, as the struct leaves out an empty list.
        encoded.push_upsert("a\"b", "Account", "002", "s", []);
        let empty = Delivery {
            object: "Account".into(),
            id: "002".into(),
            system_modstamp: "s".into(),
            op: Op::Upsert,
            output: Vec::new(),
            idempotency_key: "a\"b/Account/002/s".into(),
        };
        expected.extend(serde_json::to_vec(&empty).expect("json"));
        expected.push(b'\n');
        encoded
            .push(&Delivery {
                op: Op::Delete,
                ..empty.clone()
            })
            .expect("delete");
        expected.extend(
            serde_json::to_vec(&Delivery {
                op: Op::Delete,
                ..empty
            })
            .expect("json"),
        );
        expected.push(b'\n');

        assert_eq!(
            String::from_utf8(encoded.ndjson().to_vec()).expect("utf-8"),
            String::from_utf8(expected).expect("utf-8")
        );
        let listed: Vec<(&str, Op, &str)> = encoded
            .iter()
            .map(|d| (d.id, d.op, d.idempotency_key))
            .collect();
        let key = "acme/Account/001/2026-11-23T18:20:58.000Z";
        assert_eq!(
            listed,
            [
                ("001", Op::Upsert, key),
                ("001", Op::Upsert, key),
                ("002", Op::Upsert, "a\"b/Account/002/s"),
                ("002", Op::Delete, "a\"b/Account/002/s")
            ]
        );
        let lines: Vec<&[u8]> = encoded.ndjson().split(|&b| b == b'\n').collect();
        for (d, line) in encoded.iter().zip(lines) {
            assert_eq!(d.json, line);
        }
    }
}
