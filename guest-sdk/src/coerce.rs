//! The default, schema-driven coercion: converts a value to its field's kind where the
//! conversion loses nothing, and rejects the rest with a reason.
//!
//! It never truncates, rounds away digits or guesses a date format: a value that does not
//! fit is the customer's data problem, and it belongs in the DLQ with a clear reason, not
//! silently altered in their org.

use std::borrow::Cow;

use crate::batch::{Val, same_name};
use crate::bindings::weft::plugin::types::{FieldKind, FieldSchema};
use crate::values;

/// What coercion made of one value.
#[derive(Debug, Clone, PartialEq)]
pub enum Coerced<'a> {
    /// The value is already right for its field: it is written as it came. The common case
    /// (text that fits a text field, a null), and the cheap one: the value is neither
    /// rebuilt nor encoded again.
    Keep,
    /// The value becomes this.
    To(Val<'a>),
}

/// The default coercion of one value, as [`Plugin::coerce_value`](crate::Plugin) reports
/// it: [`Coerced::Keep`] where nothing changes, otherwise [`coerce_value`]'s result.
#[inline]
pub fn coerce<'a>(field: &FieldSchema, value: &Val<'a>) -> Result<Coerced<'a>, String> {
    let keep = match value {
        Val::Null | Val::Absent => true,
        Val::Text(s) => {
            is_text_kind(field.kind) && (field.length == 0 || s.len() <= field.length as usize)
        }
        _ => false,
    };
    if keep {
        return Ok(Coerced::Keep);
    }
    coerce_value(field, value.clone()).map(Coerced::To)
}

/// Kinds whose values are plain text, checked only for length (as in [`coerce_value`]).
#[inline]
fn is_text_kind(kind: FieldKind) -> bool {
    matches!(
        kind,
        FieldKind::Id
            | FieldKind::String
            | FieldKind::Textarea
            | FieldKind::Email
            | FieldKind::Phone
            | FieldKind::Url
            | FieldKind::Combobox
            | FieldKind::Reference
            | FieldKind::Base64
    )
}

/// Coerces `value` to `field`'s kind.
#[inline]
pub fn coerce_value<'a>(field: &FieldSchema, value: Val<'a>) -> Result<Val<'a>, String> {
    if value.is_null() {
        return Ok(value);
    }
    match field.kind {
        FieldKind::Id
        | FieldKind::String
        | FieldKind::Textarea
        | FieldKind::Email
        | FieldKind::Phone
        | FieldKind::Url
        | FieldKind::Combobox
        | FieldKind::Reference
        | FieldKind::Base64 => text_of(field, value),
        FieldKind::Picklist => picklist(field, value),
        FieldKind::Multipicklist => multipicklist(field, value),
        FieldKind::Boolean => boolean(value),
        FieldKind::Int | FieldKind::Long => integer(value),
        FieldKind::Double | FieldKind::Currency | FieldKind::Percent => number(value),
        FieldKind::Date => date(value),
        FieldKind::Datetime => datetime(value),
        FieldKind::Time => time(value),
        FieldKind::Address | FieldKind::Location | FieldKind::AnyType => Ok(value),
    }
}

fn cannot(value: &Val<'_>, target: &str) -> String {
    match value {
        Val::Text(s) | Val::Json(s) => format!("cannot read {s:?} as {target}"),
        other => format!("cannot convert a {} to {target}", other.kind_name()),
    }
}

/// Text of a string-like field, within its length.
///
/// Split hot and cold: text that is already text and plainly fits (the common case, one
/// comparison) is decided inline without a call, which in the sandbox also costs a
/// prologue and an epoch check; conversions and the character count of long text run out
/// of line.
#[inline]
fn text_of<'a>(field: &FieldSchema, value: Val<'a>) -> Result<Val<'a>, String> {
    match value {
        // A character takes at least one byte, so text no longer in bytes than the limit
        // fits without counting characters.
        Val::Text(s) if field.length == 0 || s.len() <= field.length as usize => Ok(Val::Text(s)),
        other => text_of_slow(field, other),
    }
}

#[inline(never)]
fn text_of_slow<'a>(field: &FieldSchema, value: Val<'a>) -> Result<Val<'a>, String> {
    let text: Cow<'a, str> = match value {
        Val::Text(s) => s,
        Val::Bool(b) => Cow::Owned(b.to_string()),
        Val::Int(i) => Cow::Owned(i.to_string()),
        Val::Num(n) if n.is_finite() => Cow::Owned(n.to_string()),
        Val::Date(d) => Cow::Owned(values::format_date(d)),
        Val::DateTime(t) => Cow::Owned(values::format_datetime(t)),
        Val::Time(t) => Cow::Owned(values::format_time(t)),
        other => return Err(cannot(&other, "text")),
    };
    if field.length > 0 && text.len() > field.length as usize {
        let chars = text.chars().count();
        if chars > field.length as usize {
            return Err(format!(
                "data value too large: {chars} characters (max length={})",
                field.length
            ));
        }
    }
    Ok(Val::Text(text))
}

/// A picklist value, matched case-insensitively to the org's spelling. Restricted
/// picklists reject anything else.
#[inline]
fn picklist<'a>(field: &FieldSchema, value: Val<'a>) -> Result<Val<'a>, String> {
    let Val::Text(text) = text_of(field, value)? else {
        return Ok(Val::Null);
    };
    let wanted = values::trim(&text);
    match field
        .picklist_values
        .iter()
        .find(|allowed| allowed.eq_ignore_ascii_case(wanted))
    {
        Some(allowed) if same_name(allowed, &text) => Ok(Val::Text(text)),
        Some(allowed) => Ok(Val::Text(Cow::Owned(allowed.clone()))),
        None if field.restricted_picklist => {
            Err(format!("bad value for restricted picklist field: {text}"))
        }
        None => Ok(Val::Text(text)),
    }
}

fn multipicklist<'a>(field: &FieldSchema, value: Val<'a>) -> Result<Val<'a>, String> {
    let Val::Text(text) = text_of(field, value)? else {
        return Ok(Val::Null);
    };
    let mut canonical = Vec::new();
    for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        match field
            .picklist_values
            .iter()
            .find(|a| a.eq_ignore_ascii_case(item))
        {
            Some(allowed) => canonical.push(allowed.as_str()),
            None if field.restricted_picklist => {
                return Err(format!("bad value for restricted picklist field: {item}"));
            }
            None => canonical.push(item),
        }
    }
    Ok(Val::Text(Cow::Owned(canonical.join(";"))))
}

fn boolean(value: Val<'_>) -> Result<Val<'_>, String> {
    match value {
        Val::Bool(b) => Ok(Val::Bool(b)),
        Val::Int(0) => Ok(Val::Bool(false)),
        Val::Int(1) => Ok(Val::Bool(true)),
        Val::Text(ref s) => match values::trim(s).to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Ok(Val::Bool(true)),
            "false" | "no" | "n" | "0" => Ok(Val::Bool(false)),
            _ => Err(cannot(&value, "a boolean")),
        },
        other => Err(cannot(&other, "a boolean")),
    }
}

fn integer(value: Val<'_>) -> Result<Val<'_>, String> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: beyond it f64 holds no exact integer
    match value {
        Val::Int(i) => Ok(Val::Int(i)),
        Val::Num(n) if n.fract() == 0.0 && n.abs() <= EXACT => Ok(Val::Int(n as i64)),
        Val::Text(ref s) => match values::trim(s).parse::<i64>() {
            Ok(i) => Ok(Val::Int(i)),
            Err(_) => match values::parse_number(s) {
                Some(n) if n.fract() == 0.0 && n.abs() <= EXACT => Ok(Val::Int(n as i64)),
                _ => Err(cannot(&value, "an integer")),
            },
        },
        other => Err(cannot(&other, "an integer")),
    }
}

fn number(value: Val<'_>) -> Result<Val<'_>, String> {
    match value {
        Val::Num(n) if n.is_finite() => Ok(Val::Num(n)),
        Val::Int(i) => Ok(Val::Num(i as f64)),
        Val::Text(ref s) => values::parse_number(s)
            .map(Val::Num)
            .ok_or_else(|| cannot(&value, "a number")),
        other => Err(cannot(&other, "a number")),
    }
}

fn date(value: Val<'_>) -> Result<Val<'_>, String> {
    match value {
        Val::Date(d) => Ok(Val::Date(d)),
        Val::DateTime(t) => Ok(Val::Date(t.div_euclid(86_400_000) as i32)),
        Val::Text(ref s) => values::parse_iso_date(values::trim(s))
            .or_else(|| {
                values::parse_iso_datetime(values::trim(s)).map(|t| t.div_euclid(86_400_000) as i32)
            })
            .map(Val::Date)
            .ok_or_else(|| cannot(&value, "a date (YYYY-MM-DD)")),
        other => Err(cannot(&other, "a date")),
    }
}

fn datetime(value: Val<'_>) -> Result<Val<'_>, String> {
    match value {
        Val::DateTime(t) => Ok(Val::DateTime(t)),
        Val::Date(d) => Ok(Val::DateTime(i64::from(d) * 86_400_000)),
        Val::Text(ref s) => values::parse_iso_datetime(values::trim(s))
            .or_else(|| values::parse_iso_date(values::trim(s)).map(|d| i64::from(d) * 86_400_000))
            .map(Val::DateTime)
            .ok_or_else(|| cannot(&value, "a datetime (ISO 8601)")),
        other => Err(cannot(&other, "a datetime")),
    }
}

fn time(value: Val<'_>) -> Result<Val<'_>, String> {
    match value {
        Val::Time(t) => Ok(Val::Time(t)),
        Val::Text(ref s) => values::parse_time(values::trim(s))
            .map(Val::Time)
            .ok_or_else(|| cannot(&value, "a time (HH:MM:SS)")),
        other => Err(cannot(&other, "a time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: FieldKind) -> FieldSchema {
        FieldSchema {
            name: "F".into(),
            kind,
            length: 5,
            scale: 0,
            nillable: true,
            createable: true,
            updateable: true,
            external_id: false,
            picklist_values: vec!["Hot".into(), "Cold".into()],
            restricted_picklist: true,
            reference_to: vec![],
        }
    }

    #[test]
    fn what_needs_no_change_is_kept_and_the_rest_coerced() {
        let phone = field(FieldKind::Phone);
        assert_eq!(coerce(&phone, &Val::from("01234")), Ok(Coerced::Keep));
        assert_eq!(coerce(&phone, &Val::Null), Ok(Coerced::Keep));
        assert_eq!(coerce(&phone, &Val::Absent), Ok(Coerced::Keep));
        assert_eq!(
            coerce(&phone, &Val::Int(42)),
            Ok(Coerced::To(Val::from("42")))
        );
        assert!(coerce(&phone, &Val::from("0123456")).is_err());
        // Text of a non-text kind is converted, not kept.
        let picklist = field(FieldKind::Picklist);
        assert_eq!(
            coerce(&picklist, &Val::from("hot")),
            Ok(Coerced::To(Val::from("Hot")))
        );
        assert_eq!(
            coerce(&field(FieldKind::Int), &Val::from("7")),
            Ok(Coerced::To(Val::Int(7)))
        );
    }

    #[test]
    fn text_keeps_leading_zeros_and_checks_length() {
        let f = field(FieldKind::Phone);
        assert_eq!(coerce_value(&f, Val::from("01234")), Ok(Val::from("01234")));
        assert!(
            coerce_value(&f, Val::from("0123456"))
                .unwrap_err()
                .contains("max length=5")
        );
        assert_eq!(coerce_value(&f, Val::Int(42)), Ok(Val::from("42")));
    }

    #[test]
    fn restricted_picklists_match_case_and_reject_strangers() {
        let f = field(FieldKind::Picklist);
        assert_eq!(coerce_value(&f, Val::from("hot")), Ok(Val::from("Hot")));
        assert!(coerce_value(&f, Val::from("Warm")).is_err());
    }

    #[test]
    fn numbers_dates_and_booleans() {
        assert_eq!(
            coerce_value(&field(FieldKind::Int), Val::from("1,234")),
            Ok(Val::Int(1234))
        );
        assert!(coerce_value(&field(FieldKind::Int), Val::Num(1.5)).is_err());
        assert_eq!(
            coerce_value(&field(FieldKind::Currency), Val::from("1.234,5")),
            Ok(Val::Num(1234.5))
        );
        assert_eq!(
            coerce_value(&field(FieldKind::Date), Val::from("1970-01-02")),
            Ok(Val::Date(1))
        );
        assert!(coerce_value(&field(FieldKind::Date), Val::from("01/02/1970")).is_err());
        assert_eq!(
            coerce_value(&field(FieldKind::Boolean), Val::from("Yes")),
            Ok(Val::Bool(true))
        );
        assert_eq!(
            coerce_value(&field(FieldKind::Boolean), Val::Null),
            Ok(Val::Null)
        );
    }
}
