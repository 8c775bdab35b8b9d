//! SOQL text → syntax tree.
//!
//! Owns the grammar of the SOQL subset the org answers: a select list of field paths
//! (including parent relationships such as `Account.Owner.Name`), `FIELDS(ALL|STANDARD|
//! CUSTOM)`, one level of child relationship subqueries, aggregates (`COUNT()`, `COUNT(f)`,
//! `COUNT_DISTINCT`, `SUM`, `AVG`, `MIN`, `MAX`, aliases, `GROUP BY`); one `FROM` object;
//! `WHERE` with comparisons, `IN`/`NOT IN` (lists or id semi-join sub-selects), `LIKE`,
//! `AND`/`OR`/`NOT` and parentheses; string/number/boolean/null/date/datetime literals and
//! relative date keywords; `ORDER BY` (several keys, `ASC`/`DESC`, `NULLS FIRST|LAST`),
//! `LIMIT` and `OFFSET`. It knows nothing of the schema: names are resolved, and types
//! checked, by `query`. Anything outside the subset is a `MALFORMED_QUERY`, never a silently
//! different query.

use crate::clock;
use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// A dotted path as written, e.g. `["Account", "Name"]`.
    Field(Vec<String>),
    /// `COUNT()`.
    CountAll,
    /// A child relationship subquery: `(SELECT Id FROM Contacts WHERE … LIMIT n)`; its
    /// `object` is the relationship name.
    Subquery(Box<Query>),
    /// `COUNT(Id)`, `SUM(Amount) total`, …
    Aggregate {
        func: AggFunc,
        path: Vec<String>,
        alias: Option<String>,
    },
    /// `FIELDS(ALL)`, `FIELDS(STANDARD)`, `FIELDS(CUSTOM)`.
    Fields(FieldsKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldsKind {
    All,
    Standard,
    Custom,
}

/// Aggregate functions of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Relative date literals (`TODAY`, `LAST_N_DAYS:30`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateKeyword {
    Today,
    Yesterday,
    Tomorrow,
    LastNDays(i64),
    NextNDays(i64),
    ThisMonth,
}

impl DateKeyword {
    /// The half-open day range `[start, end)` the keyword covers, given today's day number.
    pub fn day_range(self, today: i64) -> (i64, i64) {
        match self {
            DateKeyword::Today => (today, today + 1),
            DateKeyword::Yesterday => (today - 1, today),
            DateKeyword::Tomorrow => (today + 1, today + 2),
            // Salesforce: LAST_N_DAYS:n covers today and the n-1 days before... plus n days
            // back from the start of today; the documented range starts n days ago.
            DateKeyword::LastNDays(n) => (today - n, today + 1),
            DateKeyword::NextNDays(n) => (today + 1, today + n + 1),
            DateKeyword::ThisMonth => {
                let (y, m, _) = clock::civil_from_days(today);
                let start = clock::days_from_civil(y, m, 1);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (start, clock::days_from_civil(ny, nm, 1))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Date(i64),
    DateTime(i64),
    Relative(DateKeyword),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp {
        path: Vec<String>,
        op: CmpOp,
        value: Literal,
    },
    In {
        path: Vec<String>,
        values: Vec<Literal>,
        negated: bool,
    },
    /// Semi-join / anti-join: `Id IN (SELECT AccountId FROM Contact WHERE …)`.
    InSubquery {
        path: Vec<String>,
        query: Box<Query>,
        negated: bool,
    },
    Like {
        path: Vec<String>,
        pattern: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub path: Vec<String>,
    pub desc: bool,
    pub nulls_first: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Vec<SelectItem>,
    pub object: String,
    pub filter: Option<Expr>,
    pub group_by: Vec<Vec<String>>,
    pub order: Vec<OrderItem>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '+' | '-')
}

fn tokenize(s: &str) -> Result<Vec<Tok>, ApiError> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(ApiError::malformed_query("unterminated string literal")),
                    Some('\\') => {
                        let e = chars.get(i + 1).copied().unwrap_or('\\');
                        v.push(match e {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            other => other,
                        });
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        v.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(v));
        } else if c == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else if c == ',' {
            out.push(Tok::Comma);
            i += 1;
        } else if matches!(c, '=' | '!' | '<' | '>') {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                "!=" => "!=",
                "<>" => "!=",
                "<=" => "<=",
                ">=" => ">=",
                _ => match c {
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    _ => {
                        return Err(ApiError::malformed_query(format!(
                            "unexpected token: '{c}'"
                        )));
                    }
                },
            };
            i += if op.len() == 2 || two == "<>" { 2 } else { 1 };
            out.push(Tok::Op(op));
        } else if is_word_char(c) {
            let start = i;
            while i < chars.len() && is_word_char(chars[i]) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(ApiError::malformed_query(format!(
                "unexpected token: '{c}'"
            )));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "<EOF>".into(),
        Some(Tok::Word(w)) => w.clone(),
        Some(Tok::Str(s)) => format!("'{s}'"),
        Some(Tok::Op(o)) => o.to_string(),
        Some(Tok::LParen) => "(".into(),
        Some(Tok::RParen) => ")".into(),
        Some(Tok::Comma) => ",".into(),
    }
}

const RESERVED: &[&str] = &[
    "select", "from", "where", "and", "or", "not", "order", "by", "limit", "offset", "in", "like",
    "asc", "desc", "nulls", "first", "last", "null", "true", "false", "group", "having",
];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn unexpected(&self) -> ApiError {
        ApiError::malformed_query(format!("unexpected token: '{}'", describe(self.peek())))
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), ApiError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn path(&mut self) -> Result<Vec<String>, ApiError> {
        match self.peek() {
            Some(Tok::Word(w))
                if !RESERVED.contains(&w.to_ascii_lowercase().as_str())
                    && w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) =>
            {
                let parts: Vec<String> = w.split('.').map(str::to_string).collect();
                if parts.iter().any(|p| {
                    p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                }) {
                    return Err(self.unexpected());
                }
                self.pos += 1;
                Ok(parts)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn select_list(&mut self, nested: bool) -> Result<Vec<SelectItem>, ApiError> {
        let mut items = Vec::new();
        loop {
            let agg = match self.peek() {
                Some(Tok::Word(w)) if self.toks.get(self.pos + 1) == Some(&Tok::LParen) => {
                    match w.to_ascii_lowercase().as_str() {
                        "count" => Some(AggFunc::Count),
                        "count_distinct" => Some(AggFunc::CountDistinct),
                        "sum" => Some(AggFunc::Sum),
                        "avg" => Some(AggFunc::Avg),
                        "min" => Some(AggFunc::Min),
                        "max" => Some(AggFunc::Max),
                        _ => None,
                    }
                }
                _ => None,
            };
            let fields_fn =
                self.is_kw("fields") && self.toks.get(self.pos + 1) == Some(&Tok::LParen);
            if fields_fn {
                self.pos += 2;
                let kind = if self.eat_kw("all") {
                    FieldsKind::All
                } else if self.eat_kw("standard") {
                    FieldsKind::Standard
                } else if self.eat_kw("custom") {
                    FieldsKind::Custom
                } else {
                    return Err(self.unexpected());
                };
                if !self.eat(&Tok::RParen) {
                    return Err(self.unexpected());
                }
                items.push(SelectItem::Fields(kind));
            } else if let Some(func) = agg {
                self.pos += 2;
                if func == AggFunc::Count && self.eat(&Tok::RParen) {
                    items.push(SelectItem::CountAll);
                } else {
                    let path = self.path()?;
                    if !self.eat(&Tok::RParen) {
                        return Err(self.unexpected());
                    }
                    let alias = match self.peek() {
                        Some(Tok::Word(w))
                            if !RESERVED.contains(&w.to_ascii_lowercase().as_str())
                                && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                        {
                            let a = w.clone();
                            self.pos += 1;
                            Some(a)
                        }
                        _ => None,
                    };
                    items.push(SelectItem::Aggregate { func, path, alias });
                }
            } else if self.peek() == Some(&Tok::LParen) {
                if nested {
                    return Err(ApiError::malformed_query(
                        "Nesting of child relationship subqueries is not supported",
                    ));
                }
                self.pos += 1;
                let q = self.query(true)?;
                if !self.eat(&Tok::RParen) {
                    return Err(self.unexpected());
                }
                items.push(SelectItem::Subquery(Box::new(q)));
            } else {
                items.push(SelectItem::Field(self.path()?));
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        if items.len() > 1 && items.contains(&SelectItem::CountAll) {
            return Err(ApiError::malformed_query(
                "COUNT() and fields cannot be selected together",
            ));
        }
        Ok(items)
    }

    fn literal(&mut self) -> Result<Literal, ApiError> {
        let tok = self.peek().cloned();
        let lit = match tok {
            Some(Tok::Str(s)) => Literal::Str(s),
            Some(Tok::Word(w)) => parse_word_literal(&w).ok_or_else(|| self.unexpected())?,
            _ => return Err(self.unexpected()),
        };
        self.pos += 1;
        Ok(lit)
    }

    fn or_expr(&mut self) -> Result<Expr, ApiError> {
        let mut parts = vec![self.and_expr()?];
        while self.eat_kw("or") {
            parts.push(self.and_expr()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, ApiError> {
        let mut parts = vec![self.not_expr()?];
        while self.eat_kw("and") {
            parts.push(self.not_expr()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn not_expr(&mut self) -> Result<Expr, ApiError> {
        if self.eat_kw("not") {
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        if self.eat(&Tok::LParen) {
            let e = self.or_expr()?;
            if !self.eat(&Tok::RParen) {
                return Err(self.unexpected());
            }
            return Ok(e);
        }
        self.condition()
    }

    fn condition(&mut self) -> Result<Expr, ApiError> {
        let path = self.path()?;
        if let Some(Tok::Op(op)) = self.peek().cloned() {
            self.pos += 1;
            let op = match op {
                "=" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            };
            let value = self.literal()?;
            return Ok(Expr::Cmp { path, op, value });
        }
        let negated = self.eat_kw("not");
        if self.eat_kw("in") {
            if !self.eat(&Tok::LParen) {
                return Err(self.unexpected());
            }
            if self.is_kw("select") {
                let query = Box::new(self.query(true)?);
                if !self.eat(&Tok::RParen) {
                    return Err(self.unexpected());
                }
                return Ok(Expr::InSubquery {
                    path,
                    query,
                    negated,
                });
            }
            let mut values = vec![self.literal()?];
            while self.eat(&Tok::Comma) {
                values.push(self.literal()?);
            }
            if !self.eat(&Tok::RParen) {
                return Err(self.unexpected());
            }
            return Ok(Expr::In {
                path,
                values,
                negated,
            });
        }
        if !negated && self.eat_kw("like") {
            return match self.literal()? {
                Literal::Str(pattern) => Ok(Expr::Like { path, pattern }),
                _ => Err(ApiError::malformed_query("LIKE needs a string literal")),
            };
        }
        Err(self.unexpected())
    }

    fn integer(&mut self) -> Result<u64, ApiError> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let n = w.parse::<u64>().map_err(|_| self.unexpected())?;
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.unexpected()),
        }
    }
}

fn parse_word_literal(w: &str) -> Option<Literal> {
    let lower = w.to_ascii_lowercase();
    match lower.as_str() {
        "null" => return Some(Literal::Null),
        "true" => return Some(Literal::Bool(true)),
        "false" => return Some(Literal::Bool(false)),
        "today" => return Some(Literal::Relative(DateKeyword::Today)),
        "yesterday" => return Some(Literal::Relative(DateKeyword::Yesterday)),
        "tomorrow" => return Some(Literal::Relative(DateKeyword::Tomorrow)),
        "this_month" => return Some(Literal::Relative(DateKeyword::ThisMonth)),
        _ => {}
    }
    if let Some(n) = lower.strip_prefix("last_n_days:") {
        return Some(Literal::Relative(DateKeyword::LastNDays(n.parse().ok()?)));
    }
    if let Some(n) = lower.strip_prefix("next_n_days:") {
        return Some(Literal::Relative(DateKeyword::NextNDays(n.parse().ok()?)));
    }
    if w.len() >= 10 && w.as_bytes().get(4) == Some(&b'-') {
        if w.len() == 10 {
            return clock::parse_date(w).map(Literal::Date);
        }
        return clock::parse_datetime(w).map(Literal::DateTime);
    }
    let first = w.chars().next()?;
    if first.is_ascii_digit() || first == '-' || first == '+' || first == '.' {
        return w
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Literal::Num);
    }
    None
}

/// Parses one SOQL statement.
pub fn parse(text: &str) -> Result<Query, ApiError> {
    let mut p = Parser {
        toks: tokenize(text)?,
        pos: 0,
    };
    let q = p.query(false)?;
    if p.pos != p.toks.len() {
        return Err(p.unexpected());
    }
    Ok(q)
}

impl Parser {
    /// `SELECT … FROM … [WHERE] [ORDER BY] [LIMIT] [OFFSET]`; `nested` for a subquery, which
    /// ends at the caller's closing parenthesis.
    fn query(&mut self, nested: bool) -> Result<Query, ApiError> {
        let p = self;
        p.expect_kw("select")?;
        let select = p.select_list(nested)?;
        p.expect_kw("from")?;
        let object = match p.peek() {
            Some(Tok::Word(w)) if w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                w.clone()
            }
            _ => return Err(p.unexpected()),
        };
        p.pos += 1;
        let filter = if p.eat_kw("where") {
            Some(p.or_expr()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        if p.eat_kw("group") {
            p.expect_kw("by")?;
            loop {
                group_by.push(p.path()?);
                if !p.eat(&Tok::Comma) {
                    break;
                }
            }
            if p.is_kw("having") {
                return Err(ApiError::malformed_query(
                    "HAVING is not supported by this org",
                ));
            }
        }
        let mut order = Vec::new();
        if p.eat_kw("order") {
            p.expect_kw("by")?;
            loop {
                let path = p.path()?;
                let desc = if p.eat_kw("desc") {
                    true
                } else {
                    p.eat_kw("asc");
                    false
                };
                // Salesforce's default puts nulls first when ascending, last when descending.
                let mut nulls_first = !desc;
                if p.eat_kw("nulls") {
                    if p.eat_kw("first") {
                        nulls_first = true;
                    } else if p.eat_kw("last") {
                        nulls_first = false;
                    } else {
                        return Err(p.unexpected());
                    }
                }
                order.push(OrderItem {
                    path,
                    desc,
                    nulls_first,
                });
                if !p.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        let limit = if p.eat_kw("limit") {
            Some(p.integer()?)
        } else {
            None
        };
        let offset = if p.eat_kw("offset") {
            Some(p.integer()?)
        } else {
            None
        };
        Ok(Query {
            select,
            object,
            filter,
            group_by,
            order,
            limit,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_realistic_query() {
        let q = parse(
            "SELECT Id, Name, Account.Owner.Name FROM Contact WHERE (Name LIKE 'A%' OR Email != null) \
             AND NOT Id IN ('003RO0000000001AAA') AND SystemModstamp >= 2024-01-01T00:00:00Z \
             AND CreatedDate = LAST_N_DAYS:30 ORDER BY SystemModstamp DESC NULLS LAST, Id LIMIT 10 OFFSET 5",
        );
        let q = match q {
            Ok(q) => q,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(q.object, "Contact");
        assert_eq!(q.select.len(), 3);
        assert_eq!(q.order.len(), 2);
        assert_eq!(q.limit, Some(10));
        assert!(parse("SELECT FROM Account").is_err());
        assert!(parse("SELECT Id FROM Account WHERE").is_err());
        assert!(parse("SELECT COUNT() FROM Account").is_ok());
    }

    #[test]
    fn every_prefix_of_a_query_parses_or_errors_without_panicking() {
        let q = "SELECT Id, Näme__c, Account.Name FROM Contact WHERE (Name LIKE 'Ü%' OR x != null) AND \
                 d >= 2024-01-01T00:00:00+02:00 AND n IN (1, -2.5, 'a\\'b') AND NOT t = TODAY \
                 ORDER BY Id DESC NULLS LAST LIMIT 10 OFFSET 5";
        let chars: Vec<char> = q.chars().collect();
        for end in 0..=chars.len() {
            let prefix: String = chars[..end].iter().collect();
            let _ = parse(&prefix);
        }
        for junk in [
            "",
            "'",
            "SELECT",
            "SELECT Id FROM",
            "SELECT Id FROM A WHERE x = '",
            "<>=!",
            "SELECT Id FROM A WHERE x IN ()",
            "SELECT Id FROM A ORDER BY",
        ] {
            assert!(parse(junk).is_err(), "{junk}");
        }
    }
}
