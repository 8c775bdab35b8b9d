//! An incremental CSV parser for Bulk API 2.0 results.
//!
//! Owns RFC 4180 parsing fed in arbitrary byte chunks as they come off the wire: quoted
//! fields with embedded delimiters, doubled quotes and newlines, LF or CRLF line endings, and
//! the Bulk distinction between an empty unquoted cell (null → `None`) and `""` (empty text →
//! `Some("")`). It holds at most one unfinished record, never the whole body: memory stays
//! flat whatever the result size. It never allocates per byte and never panics on input.
//!
//! Rows land in a [`CsvTable`] — every cell's text in one buffer, cells as spans of it — so
//! a page of Bulk results costs a few growing buffers instead of a `String` per cell;
//! [`CsvParser::push`] still hands out owned rows for small results.

/// A parsed row: `None` = null (empty unquoted cell).
pub type Row = Vec<Option<String>>;

/// One cell of a [`CsvTable`]: bytes `[offset, offset + len)` of the table's text, or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub offset: u32,
    pub len: u32,
}

impl Cell {
    /// An empty unquoted cell: Bulk's null.
    pub const NULL: Cell = Cell {
        offset: 0,
        len: u32::MAX,
    };

    pub fn is_null(self) -> bool {
        self == Cell::NULL
    }
}

/// Parsed rows in two flat lists: all cell text in one buffer, and each cell as a span of
/// it. Parsing a page allocates a few growing buffers, not a `String` per cell, and the
/// text can become a plugin batch's text buffer as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvTable {
    text: String,
    cells: Vec<Cell>,
    /// Where each complete row's cells end in `cells`.
    row_ends: Vec<usize>,
}

impl CsvTable {
    /// Complete rows.
    pub fn len(&self) -> usize {
        self.row_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.row_ends.is_empty()
    }

    /// The cells of row `r` (as many as the line had; empty past the last row).
    pub fn row(&self, r: usize) -> &[Cell] {
        let start = match r.checked_sub(1) {
            Some(prev) => self.row_ends.get(prev).copied().unwrap_or(self.cells.len()),
            None => 0,
        };
        let end = self.row_ends.get(r).copied().unwrap_or(start);
        self.cells.get(start..end).unwrap_or(&[])
    }

    /// The text of `cell`; `None` for null.
    pub fn text(&self, cell: Cell) -> Option<&str> {
        if cell.is_null() {
            return None;
        }
        let start = cell.offset as usize;
        self.text.get(start..start + cell.len as usize)
    }

    /// The buffer every cell points into.
    pub fn into_text(self) -> String {
        self.text
    }

    /// Every complete row as owned strings.
    pub fn to_rows(&self) -> Vec<Row> {
        (0..self.len()).map(|r| self.owned_row(r)).collect()
    }

    /// Row `r` as owned strings.
    pub fn owned_row(&self, r: usize) -> Row {
        self.row(r)
            .iter()
            .map(|&c| self.text(c).map(str::to_owned))
            .collect()
    }

    /// An empty table with room for about as much as `self` holds, and an eighth more:
    /// the next batch of a result is much like the last, and filling a table sized in
    /// advance copies nothing, where doubling would copy the rows read so far onto fresh
    /// pages once per doubling.
    pub fn empty_like(&self) -> CsvTable {
        let room = |n: usize| n + n / 8;
        CsvTable {
            text: String::with_capacity(room(self.text.len())),
            cells: Vec::with_capacity(room(self.cells.len())),
            row_ends: Vec::with_capacity(room(self.row_ends.len())),
        }
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.cells.clear();
        self.row_ends.clear();
    }

    /// Appends one complete row: `text` holds its cells' bytes back to back and `cells`
    /// are spans of it. The row is checked as UTF-8 once, and every cell must start and
    /// end on a character boundary (a character split across two cells is no text).
    fn push_row(&mut self, text: &[u8], cells: &[Cell], line: u64) -> Result<(), CsvError> {
        let text = std::str::from_utf8(text).map_err(|_| CsvError::Utf8 { line })?;
        let whole = |c: &Cell| {
            c.is_null()
                || (text.is_char_boundary(c.offset as usize)
                    && text.is_char_boundary(c.offset as usize + c.len as usize))
        };
        let split = !cells.iter().all(whole);
        if split {
            return Err(CsvError::Utf8 { line });
        }
        // Below `u32::MAX`, which marks null: every offset and length fits a `Cell`.
        let base = match u32::try_from(self.text.len() + text.len()) {
            Ok(end) if end < u32::MAX => self.text.len() as u32,
            _ => return Err(CsvError::TooLarge { line }),
        };
        self.text.push_str(text);
        self.cells.extend(cells.iter().map(|&c| {
            if c.is_null() {
                c
            } else {
                Cell {
                    offset: base + c.offset,
                    len: c.len,
                }
            }
        }));
        self.row_ends.push(self.cells.len());
        Ok(())
    }

    /// Moves the rows to `out` as owned rows.
    fn drain_rows(&mut self, out: &mut Vec<Row>) {
        out.extend((0..self.len()).map(|r| self.owned_row(r)));
        self.clear();
    }
}

/// Malformed CSV, with the 1-based line where it was noticed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("line {line}: unexpected character after a closing quote")]
    AfterQuote { line: u64 },
    #[error("line {line}: a field is not valid UTF-8")]
    Utf8 { line: u64 },
    #[error("line {line}: the data ends inside a quoted field")]
    UnterminatedQuote { line: u64 },
    #[error("line {line}: more than 4 GiB of text in one batch of rows")]
    TooLarge { line: u64 },
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
    /// The unfinished row's cell bytes, back to back: a row reaches a table whole, checked
    /// as UTF-8 once rather than cell by cell.
    row: Vec<u8>,
    /// The unfinished row's finished cells, as spans of `row`.
    cells: Vec<Cell>,
    /// Where the field being read starts in `row`.
    field_start: usize,
    quoted: bool,
    line: u64,
    /// Rows for [`CsvParser::push`], which hands out owned rows.
    scratch: CsvTable,
}

impl CsvParser {
    /// `delimiter`: `b','` for Bulk's default `COMMA`.
    pub fn new(delimiter: u8) -> Self {
        CsvParser {
            delimiter,
            state: State::FieldStart,
            row: Vec::new(),
            cells: Vec::new(),
            field_start: 0,
            quoted: false,
            line: 1,
            scratch: CsvTable::default(),
        }
    }

    fn end_field(&mut self) -> Result<(), CsvError> {
        let len = self.row.len() - self.field_start;
        let cell = if len == 0 && !self.quoted {
            Cell::NULL
        } else {
            match (u32::try_from(self.field_start), u32::try_from(len)) {
                (Ok(offset), Ok(len)) if len < u32::MAX => Cell { offset, len },
                _ => return Err(CsvError::TooLarge { line: self.line }),
            }
        };
        self.cells.push(cell);
        self.field_start = self.row.len();
        self.quoted = false;
        self.state = State::FieldStart;
        Ok(())
    }

    /// Whether nothing of a row has been read since the last one ended.
    fn at_row_start(&self) -> bool {
        self.cells.is_empty() && self.row.is_empty() && !self.quoted
    }

    /// Ends the row being read into `out`.
    fn finish_row(&mut self, out: &mut CsvTable) -> Result<(), CsvError> {
        self.end_field()?;
        let pushed = out.push_row(&self.row, &self.cells, self.line);
        self.row.clear();
        self.cells.clear();
        self.field_start = 0;
        pushed
    }

    /// Ends a line; returns whether it was a record.
    fn end_row(&mut self, out: &mut CsvTable) -> Result<bool, CsvError> {
        // A line with nothing on it (e.g. a trailing blank line) is not a record.
        let blank = self.at_row_start() && self.state == State::FieldStart;
        if !blank {
            self.finish_row(out)?;
        }
        self.line += 1;
        self.state = State::FieldStart;
        Ok(!blank)
    }

    /// Feeds the next chunk; complete rows are appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Row>) -> Result<(), CsvError> {
        let mut table = std::mem::take(&mut self.scratch);
        let mut rest = data;
        let parsed = loop {
            match self.push_rows(rest, &mut table, usize::MAX) {
                Ok(used) if used < rest.len() => rest = &rest[used..],
                other => break other.map(|_| ()),
            }
        };
        table.drain_rows(out);
        self.scratch = table;
        parsed
    }

    /// Feeds `data` until `out` holds `max_rows` complete rows; returns how many bytes of
    /// `data` it used. The caller feeds the rest again once it has taken the rows.
    pub fn push_rows(
        &mut self,
        data: &[u8],
        out: &mut CsvTable,
        max_rows: usize,
    ) -> Result<usize, CsvError> {
        let d = self.delimiter;
        let mut i = 0;
        while i < data.len() {
            if out.len() >= max_rows {
                return Ok(i);
            }
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
                        let run =
                            memchr::memchr3(d, b'\n', b'\r', &data[i..]).unwrap_or(data.len() - i);
                        self.row.extend_from_slice(&data[i..i + run]);
                        self.state = State::Unquoted;
                        i += run;
                        continue;
                    }
                }
                State::Quoted => {
                    if b == b'"' {
                        self.state = State::QuoteInQuoted;
                    } else {
                        let run = memchr::memchr(b'"', &data[i..]).unwrap_or(data.len() - i);
                        let chunk = &data[i..i + run];
                        // Most quoted cells are short: a plain loop beats a call to count.
                        self.line += chunk.iter().filter(|&&c| c == b'\n').count() as u64;
                        self.row.extend_from_slice(chunk);
                        i += run.max(1);
                        continue;
                    }
                }
                State::QuoteInQuoted => {
                    if b == b'"' {
                        self.row.push(b'"');
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
        Ok(i)
    }

    /// Ends the input: a last record without a trailing newline is emitted.
    pub fn finish(&mut self, out: &mut Vec<Row>) -> Result<(), CsvError> {
        let mut table = std::mem::take(&mut self.scratch);
        let finished = self.finish_rows(&mut table);
        table.drain_rows(out);
        self.scratch = table;
        finished
    }

    /// Ends the input into `out`: a last record without a trailing newline is completed.
    pub fn finish_rows(&mut self, out: &mut CsvTable) -> Result<(), CsvError> {
        if self.state == State::Quoted {
            return Err(CsvError::UnterminatedQuote { line: self.line });
        }
        if !self.at_row_start() {
            self.finish_row(out)?;
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
    fn a_table_like_another_is_empty_with_room_for_as_much() {
        let mut table = CsvTable::default();
        let mut p = CsvParser::new(b',');
        p.push_rows(b"001,Acme\n002,\"Zoe, jr.\"\n", &mut table, usize::MAX)
            .expect("parse");
        let next = table.empty_like();
        assert!(next.is_empty());
        assert_eq!(next.row(0), &[]);
        assert!(next.text.capacity() >= table.text.len());
        assert!(next.cells.capacity() >= table.cells.len());
        assert!(next.row_ends.capacity() >= table.row_ends.len());
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
        // "é" split across two cells: the row's bytes read as UTF-8, each cell's do not.
        for chunk in [1, 2, 64] {
            assert_eq!(
                parse_in_chunks(b"ok\n\xc3,\xa9\n", chunk),
                Err(CsvError::Utf8 { line: 2 }),
                "chunk {chunk}"
            );
        }
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
