//! Typed, borrowed views over the columnar batch layout, and the builder that writes it.
//!
//! Owns the mapping between what plugin code sees (a [`Record`] with named, typed [`Val`]s)
//! and what crosses the boundary (columns of `value`s with spans into one text buffer).
//! Nothing here panics on a malformed batch: a span or column that does not fit reads as
//! null, so a host bug can never crash a plugin mid-batch.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::{self, Write as _};

use crate::bindings::weft::plugin::types::{Batch, Column as RawColumn};
use crate::layout::{self, Span, TextSink};

/// One typed field value, borrowing its text from the batch where it can.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Val<'a> {
    /// The record does not carry the field: writing it leaves the target untouched.
    #[default]
    Absent,
    /// The field is empty: writing it clears the target.
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Text(Cow<'a, str>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Milliseconds since the Unix epoch, UTC.
    DateTime(i64),
    /// Milliseconds since midnight.
    Time(u32),
    /// A compound value (address, location) as JSON text.
    Json(Cow<'a, str>),
}

impl<'a> Val<'a> {
    pub fn text(s: impl Into<Cow<'a, str>>) -> Self {
        Val::Text(s.into())
    }

    /// Whether there is no value: null or absent.
    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null | Val::Absent)
    }

    /// Whether the record does not carry the field at all.
    pub fn is_absent(&self) -> bool {
        matches!(self, Val::Absent)
    }

    /// The text of a `Text` value; `None` for every other kind.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Val::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Integers widen to `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// A name for the value's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Val::Absent => "absent",
            Val::Null => "null",
            Val::Bool(_) => "boolean",
            Val::Int(_) => "integer",
            Val::Num(_) => "number",
            Val::Text(_) => "text",
            Val::Date(_) => "date",
            Val::DateTime(_) => "datetime",
            Val::Time(_) => "time",
            Val::Json(_) => "json",
        }
    }

    /// The same value, its text borrowed from `self` rather than copied.
    pub fn borrowed(&self) -> Val<'_> {
        match self {
            Val::Text(s) => Val::Text(Cow::Borrowed(s)),
            Val::Json(s) => Val::Json(Cow::Borrowed(s)),
            other => other.clone(),
        }
    }

    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Absent => Val::Absent,
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Int(i),
            Val::Num(n) => Val::Num(n),
            Val::Text(s) => Val::Text(Cow::Owned(s.into_owned())),
            Val::Date(d) => Val::Date(d),
            Val::DateTime(t) => Val::DateTime(t),
            Val::Time(t) => Val::Time(t),
            Val::Json(s) => Val::Json(Cow::Owned(s.into_owned())),
        }
    }
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(s: &'a str) -> Self {
        Val::Text(Cow::Borrowed(s))
    }
}

impl From<String> for Val<'_> {
    fn from(s: String) -> Self {
        Val::Text(Cow::Owned(s))
    }
}

impl<'a> From<Cow<'a, str>> for Val<'a> {
    fn from(s: Cow<'a, str>) -> Self {
        Val::Text(s)
    }
}

impl From<bool> for Val<'_> {
    fn from(b: bool) -> Self {
        Val::Bool(b)
    }
}

impl From<i64> for Val<'_> {
    fn from(i: i64) -> Self {
        Val::Int(i)
    }
}

impl From<f64> for Val<'_> {
    fn from(n: f64) -> Self {
        Val::Num(n)
    }
}

impl<'a, T: Into<Val<'a>>> From<Option<T>> for Val<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// Finds field names by predicting from the previous record: plugins read and write the
/// same fields in the same order for every record, so the n-th lookup of a record almost
/// always names the field the n-th lookup of the record before found. A hit costs one
/// string comparison instead of a scan; a miss scans and remembers.
#[derive(Debug)]
pub(crate) struct FieldLookup {
    row: Cell<usize>,
    step: Cell<usize>,
    /// Field index found by each step of the last record; `u32::MAX` when none was. Fixed
    /// size, so a lookup reads and writes cells instead of borrowing a growable list.
    trace: Box<[Cell<u32>]>,
}

impl Default for FieldLookup {
    fn default() -> Self {
        Self {
            row: Cell::new(0),
            step: Cell::new(0),
            trace: (0..MAX_TRACE).map(|_| Cell::new(u32::MAX)).collect(),
        }
    }
}

/// Whether two field names are equal. Inside wasm, `==` on strings calls a
/// byte-at-a-time `memcmp`, and every iteration of a loop there also pays the sandbox's
/// execution-budget check; field lookups are most of what a simple mapping does. So names
/// up to 16 bytes (nearly all of them) compare as two overlapping words or halves, with no
/// loop at all; longer ones compare a word at a time.
#[inline]
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let first = |x: &[u8]| x.first_chunk::<8>().map(|w| u64::from_ne_bytes(*w));
    let last = |x: &[u8]| x.last_chunk::<8>().map(|w| u64::from_ne_bytes(*w));
    let halves = |x: &[u8]| {
        let first = x.first_chunk::<4>().map(|w| u32::from_ne_bytes(*w));
        let last = x.last_chunk::<4>().map(|w| u32::from_ne_bytes(*w));
        (first, last)
    };
    match a.len() {
        0 => true,
        1..=3 => a.first() == b.first() && a.last() == b.last() && a.get(1) == b.get(1),
        4..=7 => halves(a) == halves(b),
        8..=16 => first(a) == first(b) && last(a) == last(b),
        // The last word covers the bytes after the last whole chunk.
        _ => {
            last(a) == last(b)
                && a.as_chunks::<8>()
                    .0
                    .iter()
                    .zip(b.as_chunks::<8>().0)
                    .all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y))
        }
    }
}

/// Lookups per record that are predicted; a plugin reading more fields than this per
/// record scans for the rest.
const MAX_TRACE: usize = 256;

impl FieldLookup {
    #[inline]
    pub(crate) fn find<S: AsRef<str>>(
        &self,
        fields: &[S],
        name: &str,
        row: usize,
    ) -> Option<usize> {
        if self.row.get() != row {
            self.row.set(row);
            self.step.set(0);
        }
        let step = self.step.get();
        self.step.set(step + 1);
        let slot = self.trace.get(step);
        let guess = slot.map_or(u32::MAX, Cell::get) as usize;
        if fields
            .get(guess)
            .is_some_and(|f| same_name(f.as_ref(), name))
        {
            return Some(guess);
        }
        self.scan(fields, name, slot)
    }

    /// The slow path of [`FieldLookup::find`], kept out of line so the hit stays small
    /// enough to inline into every field read and write.
    #[inline(never)]
    fn scan<S: AsRef<str>>(
        &self,
        fields: &[S],
        name: &str,
        slot: Option<&Cell<u32>>,
    ) -> Option<usize> {
        let found = fields.iter().position(|f| same_name(f.as_ref(), name));
        if let Some(slot) = slot {
            slot.set(
                found
                    .and_then(|f| u32::try_from(f).ok())
                    .unwrap_or(u32::MAX),
            );
        }
        found
    }
}

/// A batch as plugin code reads it.
#[derive(Debug)]
pub struct BatchView<'a> {
    batch: &'a Batch,
    lookup: FieldLookup,
}

impl<'a> BatchView<'a> {
    pub fn new(batch: &'a Batch) -> Self {
        Self {
            batch,
            lookup: FieldLookup::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.batch.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.sources.is_empty()
    }

    pub fn record(&self, row: usize) -> Record<'_> {
        Record { view: self, row }
    }

    pub fn records(&self) -> impl Iterator<Item = Record<'_>> {
        (0..self.len()).map(move |row| self.record(row))
    }

    /// The column of `field`, to read it from every record with [`Record::at`].
    pub fn column(&self, field: &str) -> Option<Column> {
        self.batch
            .fields
            .iter()
            .position(|f| f == field)
            .map(Column)
    }

    /// The object the batch's records belong to.
    pub fn object(&self) -> &'a str {
        &self.batch.object
    }
}

/// A field's position in a batch, found once with [`BatchView::column`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column(usize);

/// One record of a batch: a borrowed, typed view.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    view: &'a BatchView<'a>,
    row: usize,
}

impl<'a> Record<'a> {
    /// The object this record belongs to, e.g. `Account`.
    pub fn object(&self) -> &'a str {
        &self.view.batch.object
    }

    /// The record's position in its batch.
    pub fn index(&self) -> usize {
        self.row
    }

    /// The value of `field`; `Val::Absent` when the record does not carry it.
    #[inline]
    pub fn get(&self, field: &str) -> Val<'a> {
        let batch = self.view.batch;
        self.view
            .lookup
            .find(&batch.fields, field, self.row)
            .map_or(Val::Absent, |f| self.value_at(f))
    }

    /// The value in a column found once per batch with [`BatchView::column`]: the
    /// fastest way to read the same field of every record.
    #[inline]
    pub fn at(&self, column: Column) -> Val<'a> {
        self.value_at(column.0)
    }

    /// Whether the record carries `field` (a null value counts; an absent one does not).
    pub fn has(&self, field: &str) -> bool {
        !self.get(field).is_absent()
    }

    /// Every field of the record in batch order.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, Val<'a>)> + 'a {
        let this = *self;
        let batch = self.view.batch;
        batch
            .fields
            .iter()
            .enumerate()
            .map(move |(f, name)| (name.as_str(), this.value_at(f)))
    }

    #[inline]
    fn value_at(&self, field: usize) -> Val<'a> {
        let batch = self.view.batch;
        let Some(column) = batch.columns.get(field) else {
            return Val::Absent;
        };
        match (column.tags.get(self.row), column.payloads.get(self.row)) {
            (Some(&tag), Some(&payload)) => layout::read(&batch.text, tag, payload),
            _ => Val::Absent,
        }
    }
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.fields()).finish()
    }
}

/// Builds a columnar batch one record at a time.
///
/// Columns grow lazily: a column is only as long as the last record that set it, and
/// [`BatchBuilder::finish`] pads every column with absent values. Starting a record thus
/// costs nothing per field, and rolling one back is a truncation.
#[derive(Debug)]
pub struct BatchBuilder {
    batch: Batch,
    lookup: FieldLookup,
    /// Records expected, so a column created mid-batch is allocated once.
    rows_hint: usize,
}

/// A position to roll a builder back to when a record fails halfway.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    rows: usize,
    text: usize,
}

impl BatchBuilder {
    pub fn new(object: impl Into<String>) -> Self {
        Self {
            batch: Batch {
                object: object.into(),
                fields: Vec::new(),
                columns: Vec::new(),
                sources: Vec::new(),
                text: String::new(),
            },
            lookup: FieldLookup::default(),
            rows_hint: 0,
        }
    }

    /// Reserves room for `rows` records of the given fields, so the common case never
    /// reallocates mid-batch.
    pub fn with_fields<S: AsRef<str>>(
        object: impl Into<String>,
        fields: &[S],
        rows: usize,
    ) -> Self {
        let mut builder = Self::new(object);
        builder.reserve(rows);
        for field in fields {
            builder.batch.fields.push(field.as_ref().to_owned());
            builder.batch.columns.push(RawColumn::with_capacity(rows));
        }
        builder
    }

    pub(crate) fn reserve(&mut self, rows: usize) {
        self.rows_hint = rows;
        self.batch.sources.reserve(rows);
    }

    pub fn object(&self) -> &str {
        &self.batch.object
    }

    pub fn len(&self) -> usize {
        self.batch.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.sources.is_empty()
    }

    /// Starts a new record that came from input record `source`; every field is absent
    /// until set.
    pub fn push(&mut self, source: u32) -> RecordWriter<'_> {
        let row = self.batch.sources.len();
        self.batch.sources.push(source);
        RecordWriter { builder: self, row }
    }

    // Forced inline into the plugin's per-record code: a field write is a mapping's
    // innermost step, and inside the sandbox every call also pays a prologue and the
    // execution-budget check (`bench/RESULTS.md`: 1.60× → 1.45× native, with
    // `append_span`).
    #[inline(always)]
    fn set(&mut self, row: usize, field: &str, value: Val<'_>) {
        let column = self.column(field, row);
        let (tag, payload) = TextSink {
            text: &mut self.batch.text,
            shared: "",
        }
        .write(&value);
        if let Some(column) = self.batch.columns.get_mut(column) {
            column.put(row, tag, payload);
        }
    }

    /// Sets `field` to the text of `value`, formatted straight into the batch's text.
    fn set_display(&mut self, row: usize, field: &str, value: &dyn fmt::Display) {
        let column = self.column(field, row);
        let start = self.batch.text.len();
        // Writing to a `String` fails only if `value`'s own `Display` reports an error;
        // what it wrote until then stands, as `to_string` would have kept it too.
        let _ = write!(self.batch.text, "{value}");
        let text = self.batch.text.get(start..).unwrap_or_default();
        let span = Span {
            offset: u32::try_from(start).unwrap_or(u32::MAX),
            len: u32::try_from(text.len()).unwrap_or(u32::MAX),
        };
        if let Some(column) = self.batch.columns.get_mut(column) {
            column.put(row, layout::tag::TEXT, layout::span_payload(span));
        }
    }

    /// The column of `field`, added (all absent so far) if the batch has none yet.
    #[inline(always)]
    fn column(&mut self, field: &str, row: usize) -> usize {
        match self.lookup.find(&self.batch.fields, field, row) {
            Some(c) => c,
            None => {
                self.batch.fields.push(field.to_owned());
                self.batch
                    .columns
                    .push(RawColumn::with_capacity(self.rows_hint));
                self.batch.columns.len() - 1
            }
        }
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            rows: self.batch.sources.len(),
            text: self.batch.text.len(),
        }
    }

    pub(crate) fn rollback(&mut self, mark: Mark) {
        self.batch.sources.truncate(mark.rows);
        for column in &mut self.batch.columns {
            column.tags.truncate(mark.rows);
            column.payloads.truncate(mark.rows);
        }
        self.batch.text.truncate(mark.text);
    }

    pub fn finish(mut self) -> Batch {
        let rows = self.batch.sources.len();
        for column in &mut self.batch.columns {
            column.resize(rows);
        }
        self.batch
    }
}

/// Writes the fields of one record being built.
pub struct RecordWriter<'b> {
    builder: &'b mut BatchBuilder,
    row: usize,
}

impl RecordWriter<'_> {
    /// Sets `field`; a field set twice keeps the last value. Setting [`Val::Absent`] (or
    /// never setting the field) leaves the target's value untouched; [`Val::Null`] clears it.
    #[inline]
    pub fn set<'v>(&mut self, field: &str, value: impl Into<Val<'v>>) -> &mut Self {
        self.builder.set(self.row, field, value.into());
        self
    }

    /// Sets `field` to the text of `value` (a number, a formatted date, anything
    /// `Display`), written straight into the batch: no `String` is allocated for it, which
    /// inside the sandbox costs far more than natively.
    pub fn set_display(&mut self, field: &str, value: impl fmt::Display) -> &mut Self {
        self.builder.set_display(self.row, field, &value);
        self
    }
}

/// Where a mapping writes its output records: one batch per target object.
///
/// The default mapping (copy every record as it is) writes nothing until it must: while the
/// output is exactly the input's first records, each copied whole and in order, `Emit` only
/// counts them, and a batch copied through returns the input batch itself (two block
/// copies per column instead of a lookup and a write per value). Anything else written
/// first writes the counted copies out, so the output is the same either way.
#[derive(Debug)]
pub struct Emit<'a> {
    input: &'a BatchView<'a>,
    builders: Vec<BatchBuilder>,
    source: u32,
    /// `Some(n)`: input records `0..n` were copied and nothing else written yet.
    copies: Option<u32>,
    /// Where the record being mapped started, to roll a failed one back.
    marks: Vec<Mark>,
    copies_at_start: u32,
}

impl<'a> Emit<'a> {
    pub(crate) fn new(input: &'a BatchView<'a>) -> Self {
        Self {
            input,
            builders: Vec::new(),
            source: 0,
            copies: Some(0),
            marks: Vec::new(),
            copies_at_start: 0,
        }
    }

    /// Starts mapping input record `source`.
    pub(crate) fn begin(&mut self, source: u32) {
        self.source = source;
        self.copies_at_start = self.copies.unwrap_or(0);
        self.mark_start();
    }

    fn mark_start(&mut self) {
        self.marks.clear();
        self.marks
            .extend(self.builders.iter().map(BatchBuilder::mark));
    }

    /// Drops everything the current record wrote, including builders it created.
    pub(crate) fn rollback(&mut self) {
        if let Some(copies) = &mut self.copies {
            *copies = self.copies_at_start;
        }
        self.builders.truncate(self.marks.len());
        for (builder, mark) in self.builders.iter_mut().zip(&self.marks) {
            builder.rollback(*mark);
        }
    }

    /// Starts an output record of `object` for the input record being mapped.
    pub fn record(&mut self, object: &str) -> RecordWriter<'_> {
        self.write_copies();
        let index = match self
            .builders
            .iter()
            .position(|b| same_name(b.object(), object))
        {
            Some(i) => i,
            None => {
                let mut builder = BatchBuilder::new(object);
                builder.reserve(self.input.len());
                self.builders.push(builder);
                self.builders.len() - 1
            }
        };
        let source = self.source;
        // `index` was found or pushed just above.
        let builder = &mut self.builders[index];
        builder.push(source)
    }

    /// Emits `rec` as it is, every field copied.
    pub(crate) fn copy(&mut self, rec: Record<'_>) {
        if let Some(n) = self.copies
            && std::ptr::eq(
                std::ptr::from_ref(rec.view).cast::<()>(),
                std::ptr::from_ref(self.input).cast::<()>(),
            )
            && rec.row == n as usize
            && self.source == n
        {
            self.copies = Some(n + 1);
            return;
        }
        let mut writer = self.record(rec.object());
        for (name, value) in rec.fields() {
            writer.set(name, value);
        }
    }

    /// Writes the counted copies into the builders, marking where the current record
    /// starts among them.
    fn write_copies(&mut self) {
        let Some(copies) = self.copies.take() else {
            return;
        };
        let (input, source, start) = (self.input, self.source, self.copies_at_start);
        for row in 0..copies {
            if row == start {
                self.mark_start();
            }
            self.source = row;
            self.copy(input.record(row as usize));
        }
        if copies == start {
            self.mark_start();
        }
        self.source = source;
    }

    pub(crate) fn finish(mut self) -> Vec<Batch> {
        if let Some(copies) = self.copies {
            if copies == 0 {
                return Vec::new();
            }
            if let Some(batch) = first_records(self.input.batch, copies as usize) {
                return vec![batch];
            }
            self.write_copies();
        }
        self.builders
            .into_iter()
            .map(BatchBuilder::finish)
            .collect()
    }
}

/// The first `rows` records of `batch` as a batch of their own, exactly as copying them
/// value by value would write them; `None` when a copy would change something (a value
/// it reads differently than the wire holds it, a repeated field name), so the caller
/// copies value by value instead.
fn first_records(batch: &Batch, rows: usize) -> Option<Batch> {
    let text = batch.text.as_str();
    let written_back = |(&tag, &payload): (&u8, &u64)| match tag {
        layout::tag::ABSENT | layout::tag::NULL => payload == 0,
        layout::tag::BOOLEAN => payload <= 1,
        layout::tag::INTEGER | layout::tag::NUMBER | layout::tag::DATETIME => true,
        layout::tag::DATE => payload as i64 as i32 as i64 as u64 == payload,
        layout::tag::TIME => u32::try_from(payload).is_ok(),
        layout::tag::TEXT | layout::tag::JSON => {
            let span = layout::payload_span(payload);
            let start = span.offset as usize;
            text.get(start..start.saturating_add(span.len as usize))
                .is_some()
        }
        _ => false,
    };
    let fields_distinct = batch
        .fields
        .iter()
        .enumerate()
        .all(|(i, f)| !batch.fields[..i].iter().any(|g| same_name(f, g)));
    let whole = batch.columns.len() == batch.fields.len()
        && fields_distinct
        && batch.sources.len() >= rows
        && batch.columns.iter().all(|c| {
            c.tags.len() >= rows
                && c.payloads.len() >= rows
                && c.tags[..rows]
                    .iter()
                    .zip(&c.payloads[..rows])
                    .all(written_back)
        });
    whole.then(|| Batch {
        object: batch.object.clone(),
        fields: batch.fields.clone(),
        columns: batch
            .columns
            .iter()
            .map(|c| RawColumn {
                tags: c.tags[..rows].to_vec(),
                payloads: c.payloads[..rows].to_vec(),
            })
            .collect(),
        sources: (0..rows as u32).collect(),
        text: batch.text.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What copying every record value by value writes: the reference for the fast path.
    fn copied_by_value(input: &Batch) -> Batch {
        let view = BatchView::new(input);
        let mut builder = BatchBuilder::new(&input.object);
        for rec in view.records() {
            let mut writer = builder.push(rec.index() as u32);
            for (name, value) in rec.fields() {
                writer.set(name, value);
            }
        }
        builder.finish()
    }

    fn copied_through(input: &Batch) -> Vec<Batch> {
        let view = BatchView::new(input);
        let mut emit = Emit::new(&view);
        for rec in view.records() {
            emit.begin(rec.index() as u32);
            emit.copy(rec);
        }
        emit.finish()
    }

    fn every_kind() -> Batch {
        let mut builder = BatchBuilder::new("Account");
        for row in 0..3u32 {
            let mut w = builder.push(row);
            w.set("Name", "Acme, \"Inc\"\nÉtoile")
                .set("Flag", row == 1)
                .set("Count", -(row as i64))
                .set("Rate", 0.5 * row as f64)
                .set("Day", Val::Date(-719_468 + row as i32))
                .set("At", Val::DateTime(-1))
                .set("Clock", Val::Time(86_399_999))
                .set("Address", Val::Json("{\"city\":\"Köln\"}".into()))
                .set("Empty", "");
            if row != 1 {
                w.set("Gone", Val::Null);
            }
        }
        builder.finish()
    }

    #[test]
    fn a_batch_copied_through_is_the_input_as_copying_each_value_writes_it() {
        let mut input = every_kind();
        // Two records sharing one piece of text, as a host may write them: a copy value by
        // value would write it twice.
        input.columns[0].payloads[1] = input.columns[0].payloads[0];
        let out = copied_through(&input);
        assert_eq!(out.len(), 1);
        assert_eq!(rows_of(&out[0]), rows_of(&copied_by_value(&input)));
        assert_eq!(out[0].fields, input.fields);
        assert_eq!(out[0].sources, [0, 1, 2]);
        // The fast path: the input's own text, not a re-written one.
        assert_eq!(out[0].text, input.text);
        assert_eq!(out[0].columns, input.columns);
    }

    #[test]
    fn a_batch_a_copy_would_change_is_copied_value_by_value() {
        let base = every_kind();
        type Change = fn(&mut Batch);
        let variants: [(&str, Change); 6] = [
            ("an unknown tag", |b| b.columns[0].tags[1] = 42),
            ("a span past the text", |b| {
                b.columns[0].payloads[2] = layout::span_payload(Span {
                    offset: 3,
                    len: u32::MAX,
                })
            }),
            ("a boolean that is neither 0 nor 1", |b| {
                b.columns[1].payloads[0] = 7
            }),
            ("a date payload not sign-extended", |b| {
                b.columns[4].payloads[0] = u64::from(u32::MAX)
            }),
            ("a repeated field name", |b| b.fields[1] = "Name".into()),
            ("a missing column", |b| {
                b.columns.pop();
            }),
        ];
        for (what, change) in variants {
            let mut input = base.clone();
            change(&mut input);
            let out = copied_through(&input);
            assert_eq!(out, vec![copied_by_value(&input)], "{what}");
        }
    }

    #[test]
    fn copies_counted_before_a_written_record_are_written_first_and_roll_back_exactly() {
        let input = every_kind();
        let view = BatchView::new(&input);
        let mut emit = Emit::new(&view);
        emit.begin(0);
        emit.copy(view.record(0));
        emit.begin(1);
        emit.copy(view.record(1));
        emit.begin(2);
        emit.copy(view.record(2));
        emit.record("Note").set("Body", "from 2");
        // Record 2 fails: its copy and its note go, records 0 and 1 stay.
        emit.rollback();
        emit.begin(2);
        emit.record("Note").set("Body", "again");
        let out = emit.finish();
        let expected = {
            let mut first_two = input.clone();
            for column in &mut first_two.columns {
                column.tags.truncate(2);
                column.payloads.truncate(2);
            }
            first_two.sources.truncate(2);
            copied_by_value(&first_two)
        };
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], expected);
        assert_eq!(out[1].object, "Note");
        assert_eq!(out[1].sources, [2]);
        assert_eq!(
            BatchView::new(&out[1]).record(0).get("Body"),
            Val::from("again")
        );
    }

    #[test]
    fn a_failed_copy_rolls_back_and_a_batch_of_none_emits_nothing() {
        let input = every_kind();
        let view = BatchView::new(&input);
        let mut emit = Emit::new(&view);
        emit.begin(0);
        emit.copy(view.record(0));
        emit.rollback();
        emit.begin(1);
        emit.copy(view.record(1));
        // Record 0 emitted nothing, so record 1 is no longer a copy in place: written.
        let out = emit.finish();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].sources, [1]);
        assert_eq!(
            rows_of(&out[0]),
            rows_of(&copied_by_value(&input))[1..2].to_vec()
        );
        let mut nothing = Emit::new(&view);
        nothing.begin(0);
        assert!(nothing.finish().is_empty());
    }

    fn rows_of(batch: &Batch) -> Vec<Vec<(String, Val<'static>)>> {
        let view = BatchView::new(batch);
        view.records()
            .map(|rec| {
                rec.fields()
                    .map(|(name, value)| (name.to_owned(), value.into_owned()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn names_compare_by_every_byte() {
        assert!(same_name("", ""));
        assert!(same_name("Acme_Company_Id__c", "Acme_Company_Id__c"));
        assert!(!same_name("Acme_Company_Id__c", "Acme_Company_Id__d"));
        assert!(!same_name("Acme_Company_Xd__c", "Acme_Company_Id__c"));
        assert!(!same_name("Name", "Names"));
        // Every length, differing at every position, against the byte-wise answer.
        let base: String = (0..40u8).map(|i| char::from(b'a' + i % 26)).collect();
        for len in 0..=base.len() {
            let a = &base[..len];
            assert!(same_name(a, a));
            for at in 0..len {
                let mut b = a.as_bytes().to_vec();
                b[at] = b'#';
                let b = String::from_utf8(b).unwrap();
                assert!(!same_name(a, &b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn displayed_values_are_text_between_other_values() {
        let mut builder = BatchBuilder::new("Account");
        for (row, year) in [1998, -44].into_iter().enumerate() {
            builder
                .push(row as u32)
                .set("Name", "Acme")
                .set_display("YearStarted", year)
                .set_display("Code", format_args!("{:>05}", row))
                .set("Site", "HQ");
        }
        let batch = builder.finish();
        let view = BatchView::new(&batch);
        let first = view.record(0);
        assert_eq!(first.get("YearStarted"), Val::from("1998"));
        assert_eq!(first.get("Code"), Val::from("00000"));
        assert_eq!(first.get("Site"), Val::from("HQ"));
        let second = view.record(1);
        assert_eq!(second.get("Name"), Val::from("Acme"));
        assert_eq!(second.get("YearStarted"), Val::from("-44"));
        assert_eq!(second.get("Code"), Val::from("00001"));
    }

    #[test]
    fn lookups_follow_the_order_of_the_previous_record() {
        let fields = ["a", "b", "c"];
        let lookup = FieldLookup::default();
        for row in 0..3 {
            assert_eq!(lookup.find(&fields, "c", row), Some(2));
            assert_eq!(lookup.find(&fields, "zz", row), None);
            assert_eq!(lookup.find(&fields, "a", row), Some(0));
        }
        // A different order in the next record still finds every field.
        assert_eq!(lookup.find(&fields, "a", 3), Some(0));
        assert_eq!(lookup.find(&fields, "b", 3), Some(1));
    }
}
