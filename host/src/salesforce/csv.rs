//! An incremental CSV parser for Bulk API 2.0 results.
//!
//! Owns RFC 4180 parsing fed in arbitrary byte chunks as they come off the wire: quoted
//! fields with embedded delimiters, doubled quotes and newlines, LF or CRLF line endings, and
//! the Bulk distinction between an empty unquoted cell (null → `None`) and `""` (empty text →
//! `Some("")`). It holds at most one unfinished record, never the whole body: memory stays
//! flat whatever the result size. It never allocates per byte and never panics on input.

/// A parsed row: `None` = null (empty unquoted cell).
pub type Row = Vec<Option<String>>;

/// Malformed CSV, with the 1-based line where it was noticed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("line {line}: unexpected character after a closing quote")]
    AfterQuote { line: u64 },
    #[error("line {line}: a field is not valid UTF-8")]
    Utf8 { line: u64 },
    #[error("line {line}: the data ends inside a quoted field")]
    UnterminatedQuote { line: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// Streaming CSV parser.
#[derive(Debug)]
pub struct CsvParser {
    delimiter: u8,
    state: State,
    field: Vec<u8>,
    quoted: bool,
    row: Row,
    line: u64,
}

impl CsvParser {
    /// `delimiter`: `b','` for Bulk's default `COMMA`.
    pub fn new(delimiter: u8) -> Self {
        CsvParser {
            delimiter,
            state: State::FieldStart,
            field: Vec::new(),
            quoted: false,
            row: Vec::new(),
            line: 1,
        }
    }

    fn end_field(&mut self) -> Result<(), CsvError> {
        let bytes = std::mem::take(&mut self.field);
        let v = if bytes.is_empty() && !self.quoted {
            None
        } else {
            Some(String::from_utf8(bytes).map_err(|_| CsvError::Utf8 { line: self.line })?)
        };
        self.row.push(v);
        self.quoted = false;
        self.state = State::FieldStart;
        Ok(())
    }

    fn end_row(&mut self, out: &mut Vec<Row>) -> Result<(), CsvError> {
        // A line with nothing on it (e.g. a trailing blank line) is not a record.
        let blank = self.row.is_empty()
            && self.field.is_empty()
            && !self.quoted
            && self.state == State::FieldStart;
        if !blank {
            self.end_field()?;
            out.push(std::mem::take(&mut self.row));
        }
        self.line += 1;
        self.state = State::FieldStart;
        Ok(())
    }

    /// Feeds the next chunk; complete rows are appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Row>) -> Result<(), CsvError> {
        let d = self.delimiter;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.state {
                State::FieldStart | State::Unquoted => {
                    if self.state == State::FieldStart && b == b'"' {
                        self.state = State::Quoted;
                        self.quoted = true;
                    } else if b == d {
                        self.end_field()?;
                    } else if b == b'\n' {
                        self.end_row(out)?;
                    } else if b == b'\r' {
                        // Part of a CRLF line ending.
                    } else {
                        // Copy the whole run of plain bytes at once.
                        let run = data[i..]
                            .iter()
                            .position(|&c| c == d || c == b'\n' || c == b'\r')
                            .unwrap_or(data.len() - i);
                        self.field.extend_from_slice(&data[i..i + run]);
                        self.state = State::Unquoted;
                        i += run;
                        continue;
                    }
                }
                State::Quoted => {
                    if b == b'"' {
                        self.state = State::QuoteInQuoted;
                    } else {
                        let run = data[i..]
                            .iter()
                            .position(|&c| c == b'"')
                            .unwrap_or(data.len() - i);
                        let chunk = &data[i..i + run];
                        self.line += chunk.iter().filter(|&&c| c == b'\n').count() as u64;
                        self.field.extend_from_slice(chunk);
                        i += run.max(1);
                        continue;
                    }
                }
                State::QuoteInQuoted => {
                    if b == b'"' {
                        self.field.push(b'"');
                        self.state = State::Quoted;
                    } else if b == d {
                        self.end_field()?;
                    } else if b == b'\n' {
                        self.end_row(out)?;
                    } else if b == b'\r' {
                        // CRLF after a closing quote.
                    } else {
                        return Err(CsvError::AfterQuote { line: self.line });
                    }
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Ends the input: a last record without a trailing newline is emitted.
    pub fn finish(&mut self, out: &mut Vec<Row>) -> Result<(), CsvError> {
        if self.state == State::Quoted {
            return Err(CsvError::UnterminatedQuote { line: self.line });
        }
        if !(self.row.is_empty() && self.field.is_empty() && !self.quoted) {
            self.end_field()?;
            out.push(std::mem::take(&mut self.row));
        }
        self.state = State::FieldStart;
        Ok(())
    }
}

/// Writes one CSV cell, quoting when needed (`None` → empty cell = leave unchanged in
/// ingest; use `#N/A` to set null).
pub fn write_cell(out: &mut Vec<u8>, v: Option<&str>, delimiter: u8) {
    let Some(v) = v else { return };
    if v.is_empty()
        || v.bytes()
            .any(|c| c == delimiter || c == b'"' || c == b'\n' || c == b'\r')
    {
        out.push(b'"');
        for c in v.bytes() {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(v.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_chunks(data: &[u8], chunk: usize) -> Result<Vec<Row>, CsvError> {
        let mut p = CsvParser::new(b',');
        let mut out = Vec::new();
        for c in data.chunks(chunk.max(1)) {
            p.push(c, &mut out)?;
        }
        p.finish(&mut out)?;
        Ok(out)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn quoted_fields_nulls_and_every_chunking() {
        let data = "\"Id\",\"Name\",\"Note\"\r\n\"001\",\"Acme, Inc.\",\"said \"\"hi\"\"\nthen left\"\n002,,\"\"\n003,Ünïcödé,x".as_bytes();
        let expected = vec![
            vec![s("Id"), s("Name"), s("Note")],
            vec![s("001"), s("Acme, Inc."), s("said \"hi\"\nthen left")],
            vec![s("002"), None, s("")],
            vec![s("003"), s("Ünïcödé"), s("x")],
        ];
        for chunk in [1, 2, 3, 5, 7, 64, 4096] {
            assert_eq!(
                parse_in_chunks(data, chunk).as_ref(),
                Ok(&expected),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn errors_do_not_panic() {
        assert_eq!(
            parse_in_chunks(b"\"a\"b\n", 3),
            Err(CsvError::AfterQuote { line: 1 })
        );
        assert_eq!(
            parse_in_chunks(b"a\n\"open", 2),
            Err(CsvError::UnterminatedQuote { line: 2 })
        );
        assert_eq!(
            parse_in_chunks(b"\xff\xfe\n", 1),
            Err(CsvError::Utf8 { line: 1 })
        );
        assert_eq!(parse_in_chunks(b"", 1), Ok(vec![]));
        assert_eq!(parse_in_chunks(b"\n\n", 1), Ok(vec![]));
    }

    #[test]
    fn write_then_parse_round_trips() {
        let cells = [
            Some("plain"),
            Some("with,comma"),
            Some("with \"quote\""),
            Some("multi\nline"),
            Some(""),
            None,
        ];
        let mut out = Vec::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_cell(&mut out, *c, b',');
        }
        out.push(b'\n');
        let rows = parse_in_chunks(&out, 4).expect("parses");
        assert_eq!(
            rows,
            vec![
                cells
                    .iter()
                    .map(|c| c.map(str::to_string))
                    .collect::<Vec<_>>()
            ]
        );
    }
}
