//! Reading CSV uploaded to Bulk 2.0 ingest jobs.
//!
//! Owns RFC 4180 parsing with Salesforce's dialect options (delimiter, LF/CRLF): quoted
//! fields, doubled quotes, newlines inside quotes. Values are never trimmed (Salesforce does
//! not trim either). It never interprets values; `#N/A` and empty cells are the caller's.

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("CSV parse error at line {line}: {reason}")]
pub struct CsvError {
    pub line: usize,
    pub reason: String,
}

/// Parses a whole CSV document into rows of fields.
pub fn parse(data: &[u8], delimiter: u8) -> Result<Vec<Vec<String>>, CsvError> {
    let text = std::str::from_utf8(data).map_err(|e| CsvError {
        line: 0,
        reason: format!("not UTF-8: {e}"),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let b = text.as_bytes();
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field: Vec<u8> = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let mut in_quotes = false;
    let mut was_quoted = false;
    let d = delimiter;
    let finish_field = |field: &mut Vec<u8>, row: &mut Vec<String>| {
        row.push(String::from_utf8_lossy(field).into_owned());
        field.clear();
    };
    while i < b.len() {
        let c = b[i];
        if in_quotes {
            if c == b'"' {
                if b.get(i + 1) == Some(&b'"') {
                    field.push(b'"');
                    i += 2;
                    continue;
                }
                in_quotes = false;
                i += 1;
                match b.get(i) {
                    None => {}
                    Some(&n) if n == d || n == b'\n' || n == b'\r' => {}
                    Some(_) => {
                        return Err(CsvError {
                            line,
                            reason: "characters after a closing quote".into(),
                        });
                    }
                }
                continue;
            }
            if c == b'\n' {
                line += 1;
            }
            field.push(c);
            i += 1;
            continue;
        }
        if c == b'"' && field.is_empty() && !was_quoted {
            in_quotes = true;
            was_quoted = true;
            i += 1;
        } else if c == d {
            finish_field(&mut field, &mut row);
            was_quoted = false;
            i += 1;
        } else if c == b'\n' || c == b'\r' {
            finish_field(&mut field, &mut row);
            was_quoted = false;
            if !(row.len() == 1 && row[0].is_empty()) {
                rows.push(std::mem::take(&mut row));
            } else {
                row.clear();
            }
            if c == b'\r' && b.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            i += 1;
            line += 1;
        } else if c == b'"' {
            return Err(CsvError {
                line,
                reason: "unexpected quote inside an unquoted field".into(),
            });
        } else {
            field.push(c);
            i += 1;
        }
    }
    if in_quotes {
        return Err(CsvError {
            line,
            reason: "unterminated quoted field".into(),
        });
    }
    if !field.is_empty() || !row.is_empty() || was_quoted {
        finish_field(&mut field, &mut row);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_and_newlines() {
        let rows = parse(
            b"Name,Description\n\"Acme, Inc.\",\"line1\nline \"\"2\"\"\"\r\nB,\n",
            b',',
        )
        .unwrap_or_default();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            vec!["Acme, Inc.".to_string(), "line1\nline \"2\"".to_string()]
        );
        assert_eq!(rows[2], vec!["B".to_string(), String::new()]);
    }
}
