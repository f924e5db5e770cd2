//! Meilisearch filter expressions: a hand-written recursive-descent parser reproducing the grammar and
//! the error messages of Meilisearch's `filter-parser` crate, and an evaluator over JSON documents.
//!
//! Grammar (keywords are upper case, as in Meilisearch):
//! ```text
//! expression = and ("OR" and)*
//! and        = not ("AND" not)*
//! not        = "NOT" not | primary
//! primary    = "(" expression ")" | _geoRadius(..) | _geoBoundingBox(..) | condition
//! condition  = value ("=" | "!=" | ">" | ">=" | "<" | "<=") value | value value "TO" value
//!            | value ["NOT"] "IN" "[" value ("," value)* "]" | value ["NOT"] "EXISTS"
//!            | value "IS" ["NOT"] ("NULL" | "EMPTY") | value ["NOT"] ("CONTAINS" | "STARTS WITH") value
//! value      = word | 'single quoted' | "double quoted"
//! ```
//! Errors carry the span of the offending input and render as Meilisearch does:
//! `message\n{column}:{column+len} {whole filter}` (1-based columns, counted in chars).
//!
//! Evaluation: a document matches `attr = v` when any value of `attr` (arrays match element-wise,
//! nested objects are reached with dotted paths) equals `v` (strings compare case-insensitively, numbers
//! numerically). `!=`, `NOT IN`, `NOT EXISTS` and `NOT` are complements over all documents, so documents
//! missing the attribute match them. Range operators only match numbers.

use serde_json::{Map, Value};

/// The maximum nesting depth of a filter, as in Meilisearch.
const MAX_DEPTH: usize = 200;

/// A token of the filter with its position (char offset) in the original input.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The unescaped text.
    pub value: String,
    /// Char offset of the token in the input (for quoted values, the first char inside the quotes).
    pub start: usize,
    /// Length in chars of the token as written (without quotes).
    pub len: usize,
}

/// A comparison operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `=`
    Eq(Token),
    /// `!=`
    Ne(Token),
    /// `>`
    Gt(Token),
    /// `>=`
    Gte(Token),
    /// `<`
    Lt(Token),
    /// `<=`
    Lte(Token),
    /// `a TO b`
    To(Token, Token),
    /// `IN [..]`
    In(Vec<Token>),
    /// `NOT IN [..]`
    NotIn(Vec<Token>),
    /// `EXISTS`
    Exists,
    /// `NOT EXISTS`
    NotExists,
    /// `IS NULL`
    IsNull,
    /// `IS NOT NULL`
    IsNotNull,
    /// `IS EMPTY`
    IsEmpty,
    /// `IS NOT EMPTY`
    IsNotEmpty,
    /// `CONTAINS`
    Contains(Token),
    /// `NOT CONTAINS`
    NotContains(Token),
    /// `STARTS WITH`
    StartsWith(Token),
    /// `NOT STARTS WITH`
    NotStartsWith(Token),
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// All must match.
    And(Vec<Filter>),
    /// Any must match.
    Or(Vec<Filter>),
    /// Complement.
    Not(Box<Filter>),
    /// `attribute op`.
    Condition {
        /// The attribute.
        attr: Token,
        /// The operator and its operands.
        op: Op,
    },
    /// `_geoRadius(lat, lng, radius)`, radius in meters.
    GeoRadius {
        /// The `_geoRadius` keyword token.
        token: Token,
        /// Latitude.
        lat: f64,
        /// Longitude.
        lng: f64,
        /// Radius in meters.
        radius: f64,
    },
    /// `_geoBoundingBox([top, right], [bottom, left])`.
    GeoBoundingBox {
        /// The keyword token.
        token: Token,
        /// Top-right corner.
        top_right: (f64, f64),
        /// Bottom-left corner.
        bottom_left: (f64, f64),
    },
}

/// A filter that could not be parsed; `message` is the complete Meilisearch message.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// The rendered message, diagnostic line and span line.
    pub message: String,
}

/// A filter that names an attribute which is not filterable.
#[derive(Debug, Clone, PartialEq)]
pub struct NotFilterable {
    /// The offending attribute.
    pub attr: String,
    /// The operator as written (`=`, `IN`...), used to rebuild the condition for search errors.
    pub op_text: String,
    /// The first operand, if any.
    pub operand: Option<String>,
    /// Char offset and length of the attribute in `input`.
    pub start: usize,
    /// Length in chars.
    pub len: usize,
    /// The whole filter string the attribute came from.
    pub input: String,
}

fn render(msg: &str, input: &str, start: usize, len: usize) -> ParseError {
    ParseError {
        message: format!("{msg}\n{}:{} {input}", start + 1, start + 1 + len),
    }
}

const INVALID_PRIMARY: &str = "Was expecting an operation `=`, `!=`, `>=`, `>`, `<=`, `<`, `IN`, `NOT IN`, `TO`, `EXISTS`, `NOT EXISTS`, `IS NULL`, `IS NOT NULL`, `IS EMPTY`, `IS NOT EMPTY`, `CONTAINS`, `NOT CONTAINS`, `STARTS WITH`, `NOT STARTS WITH`, `_geoRadius`, `_geoBoundingBox` or `_geoPolygon`";

const KEYWORDS: &[&str] = &[
    "AND", "OR", "NOT", "TO", "IN", "EXISTS", "IS", "NULL", "EMPTY",
];

struct Parser<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            c,
            '=' | '!' | '<' | '>' | '(' | ')' | '[' | ']' | ',' | '\'' | '"'
        )
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            chars: input.chars().collect(),
            pos: 0,
            depth: 0,
        }
    }

    fn err(&self, msg: &str, start: usize, len: usize) -> ParseError {
        render(msg, self.input, start, len)
    }

    fn rest(&self) -> String {
        self.chars[self.pos.min(self.chars.len())..]
            .iter()
            .collect()
    }

    fn ws(&mut self) {
        while self.pos < self.chars.len() && self.chars[self.pos].is_whitespace() {
            self.pos += 1;
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    /// Whether the keyword is at the current position followed by a non-word char (or the end).
    fn peek_keyword(&self, kw: &str) -> bool {
        let k: Vec<char> = kw.chars().collect();
        if self.pos + k.len() > self.chars.len() {
            return false;
        }
        if self.chars[self.pos..self.pos + k.len()] != k[..] {
            return false;
        }
        match self.chars.get(self.pos + k.len()) {
            None => true,
            Some(c) => !is_word_char(*c),
        }
    }

    /// Tries a sequence of keywords separated by whitespace; consumes them on success.
    fn keywords(&mut self, kws: &[&str]) -> bool {
        let save = self.pos;
        for (i, kw) in kws.iter().enumerate() {
            if i > 0 {
                let before = self.pos;
                self.ws();
                if self.pos == before {
                    self.pos = save;
                    return false;
                }
            }
            if !self.peek_keyword(kw) {
                self.pos = save;
                return false;
            }
            self.pos += kw.chars().count();
        }
        true
    }

    fn peek_char(&self, c: char) -> bool {
        self.chars.get(self.pos) == Some(&c)
    }

    fn parse_expression(&mut self) -> Result<Filter, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        let mut items = vec![self.parse_and()?];
        loop {
            self.ws();
            if self.keywords(&["OR"]) {
                items.push(self.parse_and()?);
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Filter, ParseError> {
        let mut items = vec![self.parse_not()?];
        loop {
            self.ws();
            if self.keywords(&["AND"]) {
                items.push(self.parse_not()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Filter::And(items)
        })
    }

    fn parse_not(&mut self) -> Result<Filter, ParseError> {
        self.ws();
        let save = self.pos;
        if self.keywords(&["NOT"]) {
            let before = self.pos;
            self.ws();
            if self.pos > before || self.peek_char('(') {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(self.too_deep());
                }
                let inner = self.parse_not()?;
                self.depth -= 1;
                return Ok(Filter::Not(Box::new(inner)));
            }
            self.pos = save;
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Filter, ParseError> {
        self.ws();
        let start = self.pos;
        if self.peek_char('(') {
            self.pos += 1;
            let inner = self.parse_expression()?;
            self.ws();
            if !self.peek_char(')') {
                return Err(self.missing_paren(start));
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.parse_leaf(start)
    }

    /// A condition or a geo filter: kept out of the recursive chain so that deep nesting only stacks
    /// small frames.
    #[inline(never)]
    fn parse_leaf(&mut self, start: usize) -> Result<Filter, ParseError> {
        if self.peek_keyword("_geoRadius") || self.rest().starts_with("_geoRadius(") {
            return self.parse_geo_radius();
        }
        if self.peek_keyword("_geoBoundingBox") || self.rest().starts_with("_geoBoundingBox(") {
            return self.parse_geo_bbox();
        }
        let attr = match self.parse_value(false)? {
            Some(t) => t,
            None => return Err(self.invalid_primary(start)),
        };
        if !attr.1 && KEYWORDS.contains(&attr.0.value.as_str()) {
            return Err(self.err(
                &format!("`{w}` is a reserved keyword and thus cannot be used as a field name unless it is put inside quotes. Use \"{w}\" or '{w}' instead.", w = attr.0.value),
                attr.0.start,
                attr.0.len,
            ));
        }
        let attr = attr.0;
        self.ws();
        let op_pos = self.pos;
        let two: String = self.chars[self.pos..(self.pos + 2).min(self.chars.len())]
            .iter()
            .collect();
        let op_sym = if two == "!=" || two == ">=" || two == "<=" {
            Some(two)
        } else if matches!(self.chars.get(self.pos), Some('=' | '>' | '<')) {
            Some(self.chars[self.pos].to_string())
        } else {
            None
        };
        if let Some(sym) = op_sym {
            self.pos += sym.chars().count();
            let v = self.expect_value()?;
            let op = match sym.as_str() {
                "=" => Op::Eq(v),
                "!=" => Op::Ne(v),
                ">" => Op::Gt(v),
                ">=" => Op::Gte(v),
                "<" => Op::Lt(v),
                _ => Op::Lte(v),
            };
            return Ok(Filter::Condition { attr, op });
        }
        if self.keywords(&["NOT", "IN"]) {
            let list = self.parse_in_list()?;
            return Ok(Filter::Condition {
                attr,
                op: Op::NotIn(list),
            });
        }
        if self.keywords(&["IN"]) {
            let list = self.parse_in_list()?;
            return Ok(Filter::Condition {
                attr,
                op: Op::In(list),
            });
        }
        if self.keywords(&["NOT", "EXISTS"]) {
            return Ok(Filter::Condition {
                attr,
                op: Op::NotExists,
            });
        }
        if self.keywords(&["EXISTS"]) {
            return Ok(Filter::Condition {
                attr,
                op: Op::Exists,
            });
        }
        for (kws, op) in [
            (&["IS", "NOT", "NULL"][..], Op::IsNotNull),
            (&["IS", "NULL"][..], Op::IsNull),
            (&["IS", "NOT", "EMPTY"][..], Op::IsNotEmpty),
            (&["IS", "EMPTY"][..], Op::IsEmpty),
        ] {
            if self.keywords(kws) {
                return Ok(Filter::Condition { attr, op });
            }
        }
        if self.keywords(&["NOT", "CONTAINS"]) {
            let v = self.expect_value()?;
            return Ok(Filter::Condition {
                attr,
                op: Op::NotContains(v),
            });
        }
        if self.keywords(&["CONTAINS"]) {
            let v = self.expect_value()?;
            return Ok(Filter::Condition {
                attr,
                op: Op::Contains(v),
            });
        }
        if self.keywords(&["NOT", "STARTS", "WITH"]) {
            let v = self.expect_value()?;
            return Ok(Filter::Condition {
                attr,
                op: Op::NotStartsWith(v),
            });
        }
        if self.keywords(&["STARTS", "WITH"]) {
            let v = self.expect_value()?;
            return Ok(Filter::Condition {
                attr,
                op: Op::StartsWith(v),
            });
        }
        // `attr from TO to`
        let save = self.pos;
        if let Some((from, _)) = self.parse_value(false)? {
            self.ws();
            if self.keywords(&["TO"]) {
                let to = self.expect_value()?;
                return Ok(Filter::Condition {
                    attr,
                    op: Op::To(from, to),
                });
            }
        }
        self.pos = save;
        let _ = op_pos;
        Err(self.invalid_primary(start))
    }

    #[inline(never)]
    fn too_deep(&self) -> ParseError {
        self.err("The filter exceeded the maximum depth limit. Try rewriting the filter so that it contains fewer nested conditions.", self.pos, 0)
    }

    #[inline(never)]
    fn missing_paren(&self, start: usize) -> ParseError {
        let rest: String = self.chars[start..].iter().collect();
        self.err(
            &format!(
                "Expression `{}` is missing the following closing delimiter: `)`.",
                rest.escape_debug()
            ),
            start,
            rest.chars().count(),
        )
    }

    fn invalid_primary(&self, start: usize) -> ParseError {
        let rest: String = self.chars[start.min(self.chars.len())..].iter().collect();
        let text = if rest.trim().is_empty() {
            "but instead got nothing.".to_string()
        } else {
            format!("at `{}`.", rest.escape_debug())
        };
        self.err(
            &format!("{INVALID_PRIMARY} {text}"),
            start,
            rest.chars().count(),
        )
    }

    fn expect_value(&mut self) -> Result<Token, ParseError> {
        self.ws();
        let start = self.pos;
        match self.parse_value(true)? {
            Some((t, quoted)) => {
                if !quoted && KEYWORDS.contains(&t.value.as_str()) {
                    return Err(self.err(&format!("Was expecting a value but instead got `{v}`, which is a reserved keyword. To use `{v}` as a field name or a value, surround it by quotes.", v = t.value), t.start, t.len));
                }
                Ok(t)
            }
            None => {
                let rest: String = self.chars[start..].iter().collect();
                if rest.trim().is_empty() {
                    Err(self.err(
                        "Was expecting a value but instead got nothing.",
                        start,
                        rest.chars().count(),
                    ))
                } else {
                    let word: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                    Err(self.err(
                        &format!(
                            "Was expecting a value but instead got `{}`.",
                            word.escape_debug()
                        ),
                        start,
                        word.chars().count(),
                    ))
                }
            }
        }
    }

    /// Parses a bare word or a quoted value. Returns `(token, quoted)`.
    fn parse_value(&mut self, _operand: bool) -> Result<Option<(Token, bool)>, ParseError> {
        self.ws();
        let start = self.pos;
        match self.chars.get(self.pos) {
            Some(&q @ ('\'' | '"')) => {
                let mut i = self.pos + 1;
                let mut out = String::new();
                loop {
                    match self.chars.get(i) {
                        None => {
                            let rest: String = self.chars[start..].iter().collect();
                            return Err(self.err(
                                &format!(
                                    "Expression `{}` is missing the following closing delimiter: `{}`.",
                                    rest.escape_debug(),
                                    q
                                ),
                                start,
                                rest.chars().count(),
                            ));
                        }
                        Some('\\') if self.chars.get(i + 1) == Some(&q) => {
                            out.push(q);
                            i += 2;
                        }
                        Some(c) if *c == q => break,
                        Some(c) => {
                            out.push(*c);
                            i += 1;
                        }
                    }
                }
                let len = i - (start + 1);
                self.pos = i + 1;
                Ok(Some((
                    Token {
                        value: out,
                        start: start + 1,
                        len,
                    },
                    true,
                )))
            }
            Some(c) if is_word_char(*c) => {
                let mut i = self.pos;
                while i < self.chars.len() && is_word_char(self.chars[i]) {
                    i += 1;
                }
                let value: String = self.chars[start..i].iter().collect();
                self.pos = i;
                Ok(Some((
                    Token {
                        value,
                        start,
                        len: i - start,
                    },
                    false,
                )))
            }
            _ => Ok(None),
        }
    }

    fn parse_in_list(&mut self) -> Result<Vec<Token>, ParseError> {
        self.ws();
        if !self.peek_char('[') {
            return Err(self.err(
                "Expected `[` after `IN` keyword.",
                self.pos,
                self.chars.len() - self.pos,
            ));
        }
        self.pos += 1;
        let mut list = Vec::new();
        loop {
            self.ws();
            if self.peek_char(']') {
                self.pos += 1;
                return Ok(list);
            }
            match self.parse_value(true)? {
                Some((t, quoted)) => {
                    if !quoted && KEYWORDS.contains(&t.value.as_str()) {
                        return Err(self.err(&format!("Expected only comma-separated field names inside `IN[..]` but instead found `{v}`, which is a keyword. To use `{v}` as a field name or a value, surround it by quotes.", v = t.value), t.start, t.len));
                    }
                    list.push(t)
                }
                None => {
                    let rest = self.rest();
                    return Err(self.err(
                        "Expected matching `]` after the list of field names given to `IN[`",
                        self.pos,
                        rest.chars().count(),
                    ));
                }
            }
            self.ws();
            if self.peek_char(',') {
                self.pos += 1;
            } else if !self.peek_char(']') {
                let rest = self.rest();
                return Err(self.err(
                    "Expected matching `]` after the list of field names given to `IN[`",
                    self.pos,
                    rest.chars().count(),
                ));
            }
        }
    }

    fn parse_number_list(&mut self, open: char, close: char) -> Option<Vec<f64>> {
        self.ws();
        if !self.peek_char(open) {
            return None;
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.peek_char(close) {
                self.pos += 1;
                return Some(out);
            }
            let start = self.pos;
            while self.pos < self.chars.len()
                && (self.chars[self.pos].is_ascii_digit()
                    || matches!(self.chars[self.pos], '-' | '+' | '.' | 'e' | 'E'))
            {
                self.pos += 1;
            }
            let s: String = self.chars[start..self.pos].iter().collect();
            out.push(s.parse::<f64>().ok()?);
            self.ws();
            if self.peek_char(',') {
                self.pos += 1;
            } else if !self.peek_char(close) {
                return None;
            }
        }
    }

    fn parse_geo_radius(&mut self) -> Result<Filter, ParseError> {
        let start = self.pos;
        let kw_len = "_geoRadius".len();
        self.pos += kw_len;
        let token = Token {
            value: "_geoRadius".into(),
            start,
            len: kw_len,
        };
        match self.parse_number_list('(', ')') {
            Some(v) if v.len() == 3 => Ok(Filter::GeoRadius {
                token,
                lat: v[0],
                lng: v[1],
                radius: v[2],
            }),
            _ => Err(self.err(
                "The `_geoRadius` filter expects three arguments: `_geoRadius(latitude, longitude, radius)`.",
                start,
                self.chars.len() - start,
            )),
        }
    }

    fn parse_geo_bbox(&mut self) -> Result<Filter, ParseError> {
        let start = self.pos;
        let kw_len = "_geoBoundingBox".len();
        self.pos += kw_len;
        let token = Token {
            value: "_geoBoundingBox".into(),
            start,
            len: kw_len,
        };
        let fail = |p: &Self| {
            p.err("The `_geoBoundingBox` filter expects two pairs of arguments: `_geoBoundingBox([latitude, longitude], [latitude, longitude])`.", start, p.chars.len() - start)
        };
        self.ws();
        if !self.peek_char('(') {
            return Err(fail(self));
        }
        self.pos += 1;
        let a = self.parse_number_list('[', ']');
        self.ws();
        if self.peek_char(',') {
            self.pos += 1;
        }
        let b = self.parse_number_list('[', ']');
        self.ws();
        match (a, b, self.peek_char(')')) {
            (Some(a), Some(b), true) if a.len() == 2 && b.len() == 2 => {
                self.pos += 1;
                Ok(Filter::GeoBoundingBox {
                    token,
                    top_right: (a[0], a[1]),
                    bottom_left: (b[0], b[1]),
                })
            }
            _ => Err(fail(self)),
        }
    }
}

/// Parses one filter string. An empty (or blank) string yields `None`.
pub fn parse(input: &str) -> Result<Option<Filter>, ParseError> {
    if input.trim().is_empty() {
        return Ok(None);
    }
    let mut p = Parser::new(input);
    let f = p.parse_expression()?;
    p.ws();
    if !p.at_end() {
        let rest = p.rest();
        return Err(p.err(
            &format!(
                "Found unexpected characters at the end of the filter: `{}`. You probably forgot an `OR` or an `AND` rule.",
                rest.escape_debug()
            ),
            p.pos,
            rest.chars().count(),
        ));
    }
    Ok(Some(f))
}

/// A filter together with the source text of each parsed string (needed for error spans).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFilter {
    /// `(source string, parsed expression)` pairs combined with AND; inner groups are ORed.
    pub groups: Vec<Vec<(String, Filter)>>,
}

/// Why a filter JSON value could not be turned into a [`ParsedFilter`].
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValueError {
    /// The value is neither a string nor an array of strings / arrays of strings.
    BadType(String),
    /// A string did not parse.
    Parse(ParseError),
}

/// Parses the JSON `filter` parameter: a string, or an array whose items are strings (ANDed) or arrays
/// of strings (ORed). Returns `None` when there is nothing to filter.
pub fn parse_value(value: &Value) -> Result<Option<ParsedFilter>, FilterValueError> {
    let mut groups = Vec::new();
    match value {
        Value::Null => return Ok(None),
        Value::String(s) => {
            if let Some(f) = parse(s).map_err(FilterValueError::Parse)? {
                groups.push(vec![(s.clone(), f)]);
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => {
                        if let Some(f) = parse(s).map_err(FilterValueError::Parse)? {
                            groups.push(vec![(s.clone(), f)]);
                        }
                    }
                    Value::Array(inner) => {
                        let mut group = Vec::new();
                        for v in inner {
                            match v {
                                Value::String(s) => {
                                    if let Some(f) = parse(s).map_err(FilterValueError::Parse)? {
                                        group.push((s.clone(), f));
                                    }
                                }
                                other => {
                                    return Err(FilterValueError::BadType(format!(
                                        "Invalid syntax for the filter parameter: `expected String, found: {other}`."
                                    )))
                                }
                            }
                        }
                        if !group.is_empty() {
                            groups.push(group);
                        }
                    }
                    other => {
                        return Err(FilterValueError::BadType(format!(
                            "Invalid syntax for the filter parameter: `expected String, Array, found: {other}`."
                        )))
                    }
                }
            }
        }
        other => {
            return Err(FilterValueError::BadType(format!(
                "Invalid syntax for the filter parameter: `expected String, Array, found: {other}`."
            )))
        }
    }
    if groups.is_empty() {
        Ok(None)
    } else {
        Ok(Some(ParsedFilter { groups }))
    }
}

/// Whether `attr` is covered by one of the filterable patterns (exact, a parent object, or a `*` glob).
pub fn attribute_matches_patterns(attr: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| pattern_matches(p, attr))
}

/// Meilisearch attribute pattern matching: `*` matches anything, `a.*`, `*.b`, and parent objects.
pub fn pattern_matches(pattern: &str, attr: &str) -> bool {
    if pattern == "*" || pattern == attr {
        return true;
    }
    if attr.starts_with(pattern) && attr[pattern.len()..].starts_with('.') {
        return true;
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        if !pattern[..pattern.len() - 1].contains('*') {
            return attr.starts_with(prefix);
        }
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        if !suffix.contains('*') {
            return attr.ends_with(suffix);
        }
    }
    false
}

impl ParsedFilter {
    /// The first attribute (in reading order) that is not filterable under `patterns`.
    pub fn first_not_filterable(&self, patterns: &[String]) -> Option<NotFilterable> {
        for group in &self.groups {
            for (src, f) in group {
                if let Some(nf) = first_bad(f, src, patterns) {
                    return Some(nf);
                }
            }
        }
        None
    }

    /// Whether the document matches.
    pub fn matches(&self, doc: &Map<String, Value>) -> bool {
        self.groups
            .iter()
            .all(|g| g.iter().any(|(_, f)| eval(f, doc)))
    }
}

fn op_text(op: &Op) -> (&'static str, Option<String>) {
    match op {
        Op::Eq(t) => ("=", Some(t.value.clone())),
        Op::Ne(t) => ("!=", Some(t.value.clone())),
        Op::Gt(t) => (">", Some(t.value.clone())),
        Op::Gte(t) => (">=", Some(t.value.clone())),
        Op::Lt(t) => ("<", Some(t.value.clone())),
        Op::Lte(t) => ("<=", Some(t.value.clone())),
        Op::To(a, _) => ("TO", Some(a.value.clone())),
        Op::In(_) => ("IN", None),
        Op::NotIn(_) => ("NOT IN", None),
        Op::Exists => ("EXISTS", None),
        Op::NotExists => ("NOT EXISTS", None),
        Op::IsNull => ("IS NULL", None),
        Op::IsNotNull => ("IS NOT NULL", None),
        Op::IsEmpty => ("IS EMPTY", None),
        Op::IsNotEmpty => ("IS NOT EMPTY", None),
        Op::Contains(t) => ("CONTAINS", Some(t.value.clone())),
        Op::NotContains(t) => ("NOT CONTAINS", Some(t.value.clone())),
        Op::StartsWith(t) => ("STARTS WITH", Some(t.value.clone())),
        Op::NotStartsWith(t) => ("NOT STARTS WITH", Some(t.value.clone())),
    }
}

fn first_bad(f: &Filter, src: &str, patterns: &[String]) -> Option<NotFilterable> {
    match f {
        Filter::And(v) | Filter::Or(v) => v.iter().find_map(|x| first_bad(x, src, patterns)),
        Filter::Not(x) => first_bad(x, src, patterns),
        Filter::Condition { attr, op } => {
            if attribute_matches_patterns(&attr.value, patterns) {
                None
            } else {
                let (o, operand) = op_text(op);
                Some(NotFilterable {
                    attr: attr.value.clone(),
                    op_text: o.to_string(),
                    operand,
                    start: attr.start,
                    len: attr.len,
                    input: src.to_string(),
                })
            }
        }
        Filter::GeoRadius { token, .. } | Filter::GeoBoundingBox { token, .. } => {
            if attribute_matches_patterns("_geo", patterns) {
                None
            } else {
                Some(NotFilterable {
                    attr: "_geo".into(),
                    op_text: token.value.clone(),
                    operand: None,
                    start: token.start,
                    len: token.len,
                    input: src.to_string(),
                })
            }
        }
    }
}

/// All values found at a dotted path; arrays are flattened. `None` when the attribute is absent.
pub fn values_at<'a>(doc: &'a Map<String, Value>, path: &str) -> Option<Vec<&'a Value>> {
    let mut out = Vec::new();
    let mut found = false;
    collect(doc, path, &mut out, &mut found);
    if found {
        Some(out)
    } else {
        None
    }
}

fn collect<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    out: &mut Vec<&'a Value>,
    found: &mut bool,
) {
    if let Some(v) = obj.get(path) {
        *found = true;
        flatten(v, out);
    }
    for (k, v) in obj {
        if let Some(rest) = path
            .strip_prefix(k.as_str())
            .and_then(|r| r.strip_prefix('.'))
        {
            match v {
                Value::Object(inner) => collect(inner, rest, out, found),
                Value::Array(items) => {
                    for it in items {
                        if let Value::Object(inner) = it {
                            collect(inner, rest, out, found);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => {
            for i in items {
                flatten(i, out);
            }
        }
        other => out.push(other),
    }
}

/// Lowercases and trims a string as Meilisearch normalises facet strings.
pub fn normalize(s: &str) -> String {
    s.trim().to_lowercase()
}

fn value_eq(v: &Value, t: &str) -> bool {
    match v {
        Value::String(s) => normalize(s) == normalize(t),
        Value::Number(n) => match (n.as_f64(), t.trim().parse::<f64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        },
        Value::Bool(b) => normalize(t) == if *b { "true" } else { "false" },
        _ => false,
    }
}

fn number_of(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn cmp_num(doc: &Map<String, Value>, attr: &str, t: &Token, f: impl Fn(f64, f64) -> bool) -> bool {
    let Ok(b) = t.value.trim().parse::<f64>() else {
        return false;
    };
    values_at(doc, attr)
        .unwrap_or_default()
        .iter()
        .any(|v| number_of(v).is_some_and(|a| f(a, b)))
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Haversine distance in meters, with the Earth radius Meilisearch uses.
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let r = 6_371_000.0_f64;
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let d = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * r * d.sqrt().asin()
}

/// The `_geo` point of a document, if it has a valid one.
pub fn geo_point(doc: &Map<String, Value>) -> Option<(f64, f64)> {
    let g = doc.get("_geo")?.as_object()?;
    let num = |v: &Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    Some((num(g.get("lat")?)?, num(g.get("lng")?)?))
}

/// Evaluates one expression against a document.
pub fn eval(f: &Filter, doc: &Map<String, Value>) -> bool {
    match f {
        Filter::And(v) => v.iter().all(|x| eval(x, doc)),
        Filter::Or(v) => v.iter().any(|x| eval(x, doc)),
        Filter::Not(x) => !eval(x, doc),
        Filter::GeoRadius {
            lat, lng, radius, ..
        } => geo_point(doc).is_some_and(|p| distance_m((*lat, *lng), p) <= *radius),
        Filter::GeoBoundingBox {
            top_right,
            bottom_left,
            ..
        } => geo_point(doc).is_some_and(|(la, ln)| {
            la <= top_right.0 && la >= bottom_left.0 && ln <= top_right.1 && ln >= bottom_left.1
        }),
        Filter::Condition { attr, op } => {
            let a = attr.value.as_str();
            let vals = values_at(doc, a);
            let any_eq = |t: &Token| {
                vals.as_ref()
                    .is_some_and(|vs| vs.iter().any(|v| value_eq(v, &t.value)))
            };
            match op {
                Op::Eq(t) => any_eq(t),
                Op::Ne(t) => !any_eq(t),
                Op::Gt(t) => cmp_num(doc, a, t, |x, y| x > y),
                Op::Gte(t) => cmp_num(doc, a, t, |x, y| x >= y),
                Op::Lt(t) => cmp_num(doc, a, t, |x, y| x < y),
                Op::Lte(t) => cmp_num(doc, a, t, |x, y| x <= y),
                Op::To(lo, hi) => match (
                    lo.value.trim().parse::<f64>(),
                    hi.value.trim().parse::<f64>(),
                ) {
                    (Ok(l), Ok(h)) => vals
                        .unwrap_or_default()
                        .iter()
                        .any(|v| number_of(v).is_some_and(|x| x >= l && x <= h)),
                    _ => false,
                },
                Op::In(list) => list.iter().any(any_eq),
                Op::NotIn(list) => !list.iter().any(any_eq),
                Op::Exists => vals.is_some(),
                Op::NotExists => vals.is_none(),
                Op::IsNull => doc_raw(doc, a).is_some_and(|v| v.is_null()),
                Op::IsNotNull => !doc_raw(doc, a).is_some_and(|v| v.is_null()),
                Op::IsEmpty => doc_raw(doc, a).is_some_and(is_empty_value),
                Op::IsNotEmpty => !doc_raw(doc, a).is_some_and(is_empty_value),
                Op::Contains(t) => contains(&vals, t, |s, n| s.contains(n)),
                Op::NotContains(t) => !contains(&vals, t, |s, n| s.contains(n)),
                Op::StartsWith(t) => contains(&vals, t, |s, n| s.starts_with(n)),
                Op::NotStartsWith(t) => !contains(&vals, t, |s, n| s.starts_with(n)),
            }
        }
    }
}

fn contains(vals: &Option<Vec<&Value>>, t: &Token, f: impl Fn(&str, &str) -> bool) -> bool {
    let needle = normalize(&t.value);
    vals.as_ref().is_some_and(|vs| {
        vs.iter()
            .any(|v| v.as_str().is_some_and(|s| f(&normalize(s), &needle)))
    })
}

/// The raw (unflattened) value at a dotted path.
fn doc_raw<'a>(doc: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = doc.get(path) {
        return Some(v);
    }
    for (k, v) in doc {
        if let Some(rest) = path
            .strip_prefix(k.as_str())
            .and_then(|r| r.strip_prefix('.'))
        {
            if let Value::Object(inner) = v {
                return doc_raw(inner, rest);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn m(filter: &str, d: &Value) -> bool {
        let f = parse(filter).unwrap().unwrap();
        eval(&f, &doc(d.clone()))
    }

    #[test]
    fn parses_and_evaluates_operators() {
        let d = json!({"genre": "Drama", "year": 1995, "tags": ["a", "b"], "empty": [], "nul": null, "o": {"x": 3}});
        assert!(m("genre = drama", &d));
        assert!(m("genre = 'Drama'", &d));
        assert!(!m("genre != drama", &d));
        assert!(m("year > 1990 AND year <= 1995", &d));
        assert!(m("year 1990 TO 1999", &d));
        assert!(!m("year > abc", &d));
        assert!(m("genre IN [comedy, drama]", &d));
        assert!(m("genre NOT IN [comedy]", &d));
        assert!(m("tags = b", &d));
        assert!(m("tags EXISTS", &d));
        assert!(m("missing NOT EXISTS", &d));
        assert!(m("missing != x", &d));
        assert!(m("nul IS NULL AND year IS NOT NULL", &d));
        assert!(m("empty IS EMPTY AND tags IS NOT EMPTY", &d));
        assert!(m("NOT genre = horror", &d));
        assert!(m("(genre = horror OR year = 1995) AND o.x = 3", &d));
        assert!(m("genre CONTAINS ram AND genre STARTS WITH dr", &d));
    }

    #[test]
    fn reproduces_meilisearch_error_messages() {
        let e = parse("genre = ").unwrap_err();
        assert_eq!(
            e.message,
            "Was expecting a value but instead got nothing.\n9:9 genre = "
        );
        let e = parse("genre = drama AND").unwrap_err();
        assert!(e.message.starts_with("Was expecting an operation `=`"));
        assert!(e
            .message
            .ends_with("but instead got nothing.\n18:18 genre = drama AND"));
        let e = parse("genre").unwrap_err();
        assert!(e.message.ends_with("at `genre`.\n1:6 genre"));
        let e = parse("a = 1 b = 2").unwrap_err();
        assert!(e
            .message
            .starts_with("Found unexpected characters at the end of the filter: `b = 2`."));
        let e = parse("(a = 1").unwrap_err();
        assert!(e
            .message
            .contains("missing the following closing delimiter: `)`"));
        let e = parse("a IN b").unwrap_err();
        assert!(e.message.starts_with("Expected `[` after `IN` keyword."));
        let e = parse("a = 'x").unwrap_err();
        assert!(e.message.contains("closing delimiter: `'`"));
        let e = parse("AND = 3").unwrap_err();
        assert!(e.message.contains("reserved keyword"));
    }

    #[test]
    fn array_form_and_filterability() {
        let v = json!(["genre = drama", ["year = 1", "year = 1995"]]);
        let f = parse_value(&v).unwrap().unwrap();
        assert!(f.matches(&doc(json!({"genre": "drama", "year": 1995}))));
        assert!(!f.matches(&doc(json!({"genre": "drama", "year": 2}))));
        let bad = f.first_not_filterable(&["genre".to_string()]).unwrap();
        assert_eq!(bad.attr, "year");
        assert!(f
            .first_not_filterable(&["genre".into(), "year".into()])
            .is_none());
        assert!(parse_value(&json!(true)).is_err());
        assert!(parse_value(&json!("")).unwrap().is_none());
        assert!(pattern_matches("o", "o.x"));
        assert!(pattern_matches("a*", "abc"));
    }

    #[test]
    fn geo_filters() {
        let d = json!({"_geo": {"lat": 48.5, "lng": 2.5}});
        assert!(m("_geoRadius(48.5, 2.6, 10000)", &d));
        assert!(!m("_geoRadius(48.5, 2.6, 10)", &d));
        assert!(m("_geoBoundingBox([49, 3], [48, 2])", &d));
        assert!(parse("_geoRadius(1, 2)").is_err());
    }
}
