//! Typed, borrowed views over the columnar batch layout, and the builder that writes it.
//!
//! Owns the mapping between what plugin code sees (a [`Record`] with named, typed [`Val`]s)
//! and what crosses the boundary (columns of `value`s with spans into one text buffer).
//! Nothing here panics on a malformed batch: a span or column that does not fit reads as
//! null, so a host bug can never crash a plugin mid-batch.

use std::borrow::Cow;
use std::cell::Cell;

use crate::bindings::weft::plugin::types::{Batch, Span, Value};

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

/// Reads a span of `text`; a span that does not fit reads as empty.
pub(crate) fn span_text(text: &str, span: Span) -> &str {
    let start = span.offset as usize;
    text.get(start..start.saturating_add(span.len as usize))
        .unwrap_or_default()
}

pub(crate) fn read_value<'a>(text: &'a str, value: &Value) -> Val<'a> {
    match *value {
        Value::Absent => Val::Absent,
        Value::Null => Val::Null,
        Value::Boolean(b) => Val::Bool(b),
        Value::Integer(i) => Val::Int(i),
        Value::Number(n) => Val::Num(n),
        Value::Text(span) => Val::Text(Cow::Borrowed(span_text(text, span))),
        Value::Date(d) => Val::Date(d),
        Value::Datetime(t) => Val::DateTime(t),
        Value::Time(t) => Val::Time(t),
        Value::Json(span) => Val::Json(Cow::Borrowed(span_text(text, span))),
    }
}

/// Finds field names with a moving hint: plugins read and write fields in the same order
/// for every record, so the next lookup almost always hits the slot after the last one and
/// costs one string comparison instead of a scan.
#[derive(Debug, Default)]
pub(crate) struct FieldLookup {
    hint: Cell<usize>,
}

impl FieldLookup {
    pub(crate) fn find<S: AsRef<str>>(&self, fields: &[S], name: &str) -> Option<usize> {
        let hint = self.hint.get();
        let found = match fields.get(hint) {
            Some(f) if f.as_ref() == name => Some(hint),
            _ => fields.iter().position(|f| f.as_ref() == name),
        };
        if let Some(i) = found {
            self.hint.set(i + 1);
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
    pub fn get(&self, field: &str) -> Val<'a> {
        let batch = self.view.batch;
        self.view
            .lookup
            .find(&batch.fields, field)
            .map_or(Val::Absent, |f| self.value_at(f))
    }

    /// The value in a column found once per batch with [`BatchView::column`]: the
    /// fastest way to read the same field of every record.
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

    fn value_at(&self, field: usize) -> Val<'a> {
        let batch = self.view.batch;
        batch
            .columns
            .get(field)
            .and_then(|column| column.get(self.row))
            .map_or(Val::Absent, |v| read_value(&batch.text, v))
    }
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.fields()).finish()
    }
}

/// Builds a columnar batch one record at a time.
#[derive(Debug)]
pub struct BatchBuilder {
    batch: Batch,
    lookup: FieldLookup,
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
        builder.batch.sources.reserve(rows);
        for field in fields {
            builder.batch.fields.push(field.as_ref().to_owned());
            builder.batch.columns.push(Vec::with_capacity(rows));
        }
        builder
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
        for column in &mut self.batch.columns {
            column.push(Value::Absent);
        }
        RecordWriter { builder: self, row }
    }

    fn set(&mut self, row: usize, field: &str, value: Val<'_>) {
        let column = match self.lookup.find(&self.batch.fields, field) {
            Some(c) => c,
            None => {
                self.batch.fields.push(field.to_owned());
                self.batch
                    .columns
                    .push(vec![Value::Absent; self.batch.sources.len()]);
                self.batch.columns.len() - 1
            }
        };
        let lowered = self.lower(value);
        if let Some(slot) = self
            .batch
            .columns
            .get_mut(column)
            .and_then(|c| c.get_mut(row))
        {
            *slot = lowered;
        }
    }

    fn lower(&mut self, value: Val<'_>) -> Value {
        match value {
            Val::Absent => Value::Absent,
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Boolean(b),
            Val::Int(i) => Value::Integer(i),
            Val::Num(n) => Value::Number(n),
            Val::Text(s) => Value::Text(self.append_text(&s)),
            Val::Date(d) => Value::Date(d),
            Val::DateTime(t) => Value::Datetime(t),
            Val::Time(t) => Value::Time(t),
            Val::Json(s) => Value::Json(self.append_text(&s)),
        }
    }

    fn append_text(&mut self, s: &str) -> Span {
        // Offsets are u32 by contract; a batch cannot reach 4 GiB inside a sandbox whose
        // memory is capped far lower, and the host rejects any span that does not fit.
        let offset = u32::try_from(self.batch.text.len()).unwrap_or(u32::MAX);
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.batch.text.push_str(s);
        Span { offset, len }
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
            column.truncate(mark.rows);
        }
        self.batch.text.truncate(mark.text);
    }

    pub fn finish(self) -> Batch {
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
    pub fn set<'v>(&mut self, field: &str, value: impl Into<Val<'v>>) -> &mut Self {
        self.builder.set(self.row, field, value.into());
        self
    }
}

/// Where a mapping writes its output records: one batch per target object.
#[derive(Debug, Default)]
pub struct Emit {
    builders: Vec<BatchBuilder>,
    source: u32,
    capacity: usize,
}

impl Emit {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            builders: Vec::new(),
            source: 0,
            capacity,
        }
    }

    pub(crate) fn set_source(&mut self, source: u32) {
        self.source = source;
    }

    /// Starts an output record of `object` for the input record being mapped.
    pub fn record(&mut self, object: &str) -> RecordWriter<'_> {
        let index = match self.builders.iter().position(|b| b.object() == object) {
            Some(i) => i,
            None => {
                let mut builder = BatchBuilder::new(object);
                builder.batch.sources.reserve(self.capacity);
                self.builders.push(builder);
                self.builders.len() - 1
            }
        };
        let source = self.source;
        // `index` was found or pushed just above.
        let builder = &mut self.builders[index];
        builder.push(source)
    }

    pub(crate) fn mark_into(&self, marks: &mut Vec<Mark>) {
        marks.clear();
        marks.extend(self.builders.iter().map(BatchBuilder::mark));
    }

    /// Drops everything written since `marks` was taken, including builders created since.
    pub(crate) fn rollback(&mut self, marks: &[Mark]) {
        self.builders.truncate(marks.len());
        for (builder, mark) in self.builders.iter_mut().zip(marks) {
            builder.rollback(*mark);
        }
    }

    pub(crate) fn finish(self) -> Vec<Batch> {
        self.builders
            .into_iter()
            .map(BatchBuilder::finish)
            .collect()
    }
}
