//! A tiny JSON writer (for `--json` output and the control API), a parser
//! for untrusted JSON (the client reads the control API's answers with
//! it), and [`FromJson`]: reading a parsed value into a typed struct, where
//! a missing or mistyped field is a [`SchemaError`] naming its path
//! (`peer_list[2].source`), never a default. No dependencies.
//!
//! The parser never panics, refuses text longer than [`MAX_LEN`] bytes and
//! nesting deeper than [`MAX_DEPTH`], and builds at most one value per input
//! byte or two, so memory stays a small multiple of the input size.

use std::fmt::{self, Write};

/// A JSON value to print.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    /// A number with a fraction or an exponent, or an integer too large for
    /// 64 bits. Printed as `null` when not finite (JSON has no NaN).
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    /// Keys in insertion order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn obj() -> Json {
        Json::Obj(Vec::new())
    }

    /// Adds a key to an object (no-op on other values); returns self for chaining.
    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Json {
        if let Json::Obj(entries) = &mut self {
            entries.push((key.to_string(), value.into()));
        }
        self
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_string())
    }
}
impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}
impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}
impl From<u64> for Json {
    fn from(n: u64) -> Json {
        Json::UInt(n)
    }
}
impl From<u32> for Json {
    fn from(n: u32) -> Json {
        Json::UInt(n.into())
    }
}
impl From<usize> for Json {
    fn from(n: usize) -> Json {
        Json::UInt(n as u64)
    }
}
impl From<f64> for Json {
    fn from(n: f64) -> Json {
        Json::Float(n)
    }
}
impl From<i64> for Json {
    fn from(n: i64) -> Json {
        Json::Int(n)
    }
}
impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(o: Option<T>) -> Json {
        o.map_or(Json::Null, Into::into)
    }
}
impl<T: Into<Json>> From<Vec<T>> for Json {
    fn from(v: Vec<T>) -> Json {
        Json::Arr(v.into_iter().map(Into::into).collect())
    }
}

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            // C0, DEL, C1 and the bidirectional controls, escaped: a
            // terminal showing the JSON shows no escape sequence and
            // no reordered text.
            c if crate::text::hidden(c) => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Int(n) => write!(f, "{n}"),
            Json::UInt(n) => write!(f, "{n}"),
            Json::Float(x) if x.is_finite() => {
                // `{:?}` is the shortest text that reads back as the same
                // f64; it may use an exponent ("1e300"), which JSON allows.
                let s = format!("{x:?}");
                f.write_str(&s)
            }
            Json::Float(_) => f.write_str("null"),
            Json::Str(s) => write_str(f, s),
            Json::Arr(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Json::Obj(entries) => {
                f.write_char('{')?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write_str(f, k)?;
                    write!(f, ":{v}")?;
                }
                f.write_char('}')
            }
        }
    }
}

/// Longest JSON text [`parse`] accepts, in bytes.
pub const MAX_LEN: usize = 16 * 1024 * 1024;
/// Deepest nesting of arrays and objects [`parse`] accepts.
pub const MAX_DEPTH: usize = 32;

/// Why a JSON text was refused, with the byte offset where it went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub message: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad JSON at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for JsonError {}

/// Parses one JSON value (RFC 8259), with surrounding whitespace.
///
/// Integers without fraction or exponent become `UInt` (non-negative) or
/// `Int` (negative) when they fit in 64 bits, other numbers `Float`.
/// Duplicate object keys are kept in order ([`Json::get`] finds the first).
/// Lone UTF-16 surrogates in `\u` escapes are refused.
pub fn parse(text: &str) -> Result<Json, JsonError> {
    if text.len() > MAX_LEN {
        return Err(JsonError {
            offset: MAX_LEN,
            message: "text longer than the 16 MiB limit",
        });
    }
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.err("trailing characters after the value"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, message: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &'static [u8], v: Json) -> Result<Json, JsonError> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.err("unknown literal (expected true, false or null)"))
        }
    }

    /// One value; `depth` is the number of arrays/objects around it.
    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.err("unexpected end of text")),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.err("nested deeper than 32 levels"));
                }
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Json::Arr(items));
                        }
                        None => return Err(self.err("unexpected end of text in an array")),
                        Some(_) => return Err(self.err("expected ',' or ']' in an array")),
                    }
                }
            }
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(self.err("nested deeper than 32 levels"));
                }
                self.pos += 1;
                let mut entries = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Json::Obj(entries));
                }
                loop {
                    self.skip_ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.err("expected a string key in an object"));
                    }
                    let key = self.string()?;
                    self.skip_ws();
                    if self.peek() != Some(b':') {
                        return Err(self.err("expected ':' after an object key"));
                    }
                    self.pos += 1;
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Json::Obj(entries));
                        }
                        None => return Err(self.err("unexpected end of text in an object")),
                        Some(_) => return Err(self.err("expected ',' or '}' in an object")),
                    }
                }
            }
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.digits() {
            0 => return Err(self.err("expected a digit")),
            n if n > 1 && self.s[int_start] == b'0' => {
                self.pos = int_start;
                return Err(self.err("leading zero in a number"));
            }
            _ => {}
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("expected a digit after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("expected a digit in the exponent"));
            }
        }
        // Only ASCII digits, signs, '.', 'e' were consumed.
        let text =
            std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.err("bad number"))?;
        if integer {
            if negative {
                if let Ok(n) = text.parse::<i64>() {
                    return Ok(Json::Int(n));
                }
            } else if let Ok(n) = text.parse::<u64>() {
                return Ok(Json::UInt(n));
            }
        }
        text.parse::<f64>().map(Json::Float).map_err(|_| JsonError {
            offset: start,
            message: "bad number",
        })
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err("expected 4 hex digits after \\u")),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    /// A string; `pos` is at the opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            // Copy the run of plain bytes in one go. The input is a &str,
            // and runs end only at ASCII bytes, so each run is valid UTF-8.
            let run_start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            if self.pos > run_start {
                let run = std::str::from_utf8(&self.s[run_start..self.pos])
                    .map_err(|_| self.err("invalid UTF-8"))?;
                out.push_str(run);
            }
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.err("unterminated escape"));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !self.s[self.pos..].starts_with(b"\\u") {
                                    return Err(self.err("high surrogate without a low surrogate"));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("high surrogate without a low surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err("low surrogate without a high surrogate"));
                            } else {
                                hi
                            };
                            // Surrogates are excluded above, so this is a scalar value.
                            out.push(
                                char::from_u32(code).ok_or_else(|| self.err("bad \\u escape"))?,
                            );
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.err("unknown escape"));
                        }
                    }
                }
                Some(_) => return Err(self.err("control character in a string")),
            }
        }
    }
}

impl Json {
    /// The value of `key` in an object (the first, if repeated); `None` for
    /// other values or a missing key.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Json::UInt(n) => Some(n),
            Json::Int(n) => u64::try_from(n).ok(),
            _ => None,
        }
    }

    /// An integer that fits in an i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Json::Int(n) => Some(n),
            Json::UInt(n) => i64::try_from(n).ok(),
            _ => None,
        }
    }

    /// Any number, as an f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Json::Int(n) => Some(n as f64),
            Json::UInt(n) => Some(n as f64),
            Json::Float(x) => Some(x),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Json::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
}

// ----- reading typed values (the schema of the control API's answers) -----

/// Why a JSON value does not have the shape its type expects: the path of
/// the field (`peer_list[2].source`, empty for the value itself) and what
/// is wrong with it. A missing field is an error, never a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaError {
    pub path: String,
    pub problem: String,
}

impl SchemaError {
    pub fn new(problem: impl Into<String>) -> SchemaError {
        SchemaError {
            path: String::new(),
            problem: problem.into(),
        }
    }

    /// The same error seen from the object holding it under `key`.
    pub fn under_key(mut self, key: &str) -> SchemaError {
        let sep = if self.path.is_empty() || self.path.starts_with('[') {
            ""
        } else {
            "."
        };
        self.path = format!("{key}{sep}{}", self.path);
        self
    }

    /// The same error seen from the array holding it at `index`.
    pub fn under_index(mut self, index: usize) -> SchemaError {
        let sep = if self.path.is_empty() || self.path.starts_with('[') {
            ""
        } else {
            "."
        };
        self.path = format!("[{index}]{sep}{}", self.path);
        self
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "field '{}': {}", self.path, self.problem)
        }
    }
}

impl std::error::Error for SchemaError {}

/// A type read back from the JSON its `to_json` writes. Every field is
/// required: a missing key or a value of the wrong kind is a
/// [`SchemaError`] naming the field; only `null` reads as `None`, and only
/// for an `Option`.
pub trait FromJson: Sized {
    fn from_json(j: &Json) -> Result<Self, SchemaError>;
}

impl Json {
    /// The field `key` of an object, read as `T`; errors name the key.
    pub fn field<T: FromJson>(&self, key: &str) -> Result<T, SchemaError> {
        T::from_json(self.member(key)?).map_err(|e| e.under_key(key))
    }

    /// The value of `key` in an object: an error when this is not an
    /// object or the key is missing.
    pub fn member(&self, key: &str) -> Result<&Json, SchemaError> {
        match self {
            Json::Obj(_) => self
                .get(key)
                .ok_or_else(|| SchemaError::new("missing").under_key(key)),
            _ => Err(SchemaError::new("expected an object")),
        }
    }

    /// The entries of an object.
    pub fn entries(&self) -> Result<&[(String, Json)], SchemaError> {
        match self {
            Json::Obj(entries) => Ok(entries),
            _ => Err(SchemaError::new("expected an object")),
        }
    }

    /// The string value, when it is one of `names` (a closed set of words
    /// such as a state), as the `'static` name.
    pub fn one_of(&self, names: &[&'static str]) -> Result<&'static str, SchemaError> {
        let s = String::from_json(self)?;
        names
            .iter()
            .find(|n| **n == s)
            .copied()
            .ok_or_else(|| SchemaError::new(format!("unknown value \"{s}\"")))
    }

    /// [`Json::one_of`] for the field `key` of an object.
    pub fn field_one_of(
        &self,
        key: &str,
        names: &[&'static str],
    ) -> Result<&'static str, SchemaError> {
        self.member(key)?
            .one_of(names)
            .map_err(|e| e.under_key(key))
    }

    /// A non-negative integer of at most `max`.
    fn uint(&self, max: u64) -> Result<u64, SchemaError> {
        match self.as_u64() {
            Some(n) if n <= max => Ok(n),
            Some(n) => Err(SchemaError::new(format!("{n} is larger than {max}"))),
            None => Err(SchemaError::new("expected a non-negative integer")),
        }
    }
}

impl FromJson for String {
    fn from_json(j: &Json) -> Result<String, SchemaError> {
        j.as_str()
            .map(str::to_string)
            .ok_or_else(|| SchemaError::new("expected a string"))
    }
}

impl FromJson for bool {
    fn from_json(j: &Json) -> Result<bool, SchemaError> {
        j.as_bool()
            .ok_or_else(|| SchemaError::new("expected true or false"))
    }
}

impl FromJson for u64 {
    fn from_json(j: &Json) -> Result<u64, SchemaError> {
        j.uint(u64::MAX)
    }
}

impl FromJson for u32 {
    fn from_json(j: &Json) -> Result<u32, SchemaError> {
        j.uint(u32::MAX.into()).map(|n| n as u32)
    }
}

impl FromJson for u16 {
    fn from_json(j: &Json) -> Result<u16, SchemaError> {
        j.uint(u16::MAX.into()).map(|n| n as u16)
    }
}

impl FromJson for usize {
    fn from_json(j: &Json) -> Result<usize, SchemaError> {
        j.uint(usize::MAX as u64).map(|n| n as usize)
    }
}

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(j: &Json) -> Result<Option<T>, SchemaError> {
        match j {
            Json::Null => Ok(None),
            j => T::from_json(j).map(Some),
        }
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(j: &Json) -> Result<Vec<T>, SchemaError> {
        let items = j
            .as_array()
            .ok_or_else(|| SchemaError::new("expected an array"))?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(T::from_json(item).map_err(|e| e.under_index(i))?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints() {
        let j = Json::obj()
            .with("a", "x\"y\n\u{1}")
            .with("n", 5u64)
            .with("l", vec![true, false])
            .with("z", Option::<u64>::None);
        assert_eq!(
            j.to_string(),
            r#"{"a":"x\"y\n\u0001","n":5,"l":[true,false],"z":null}"#
        );
    }

    #[test]
    fn parses_values() {
        let j = parse(r#" {"a": [1, -2, 3.5, 1e3, true, false, null], "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "e": {}, "l": []} "#)
            .unwrap();
        let a = j.get("a").unwrap().as_array().unwrap();
        assert_eq!(a[0], Json::UInt(1));
        assert_eq!(a[1], Json::Int(-2));
        assert_eq!(a[2], Json::Float(3.5));
        assert_eq!(a[3], Json::Float(1000.0));
        assert_eq!(a[4].as_bool(), Some(true));
        assert!(a[6].is_null());
        assert_eq!(
            j.get("s").unwrap().as_str(),
            Some("x\"\\/\u{8}\u{c}\n\r\té😀")
        );
        assert_eq!(j.get("e"), Some(&Json::Obj(vec![])));
        assert_eq!(j.get("l").unwrap().as_array(), Some(&[][..]));
        assert_eq!(j.get("missing"), None);
        assert_eq!(Json::UInt(5).get("a"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse("18446744073709551615").unwrap(), Json::UInt(u64::MAX));
        assert_eq!(parse("-9223372036854775808").unwrap(), Json::Int(i64::MIN));
        assert_eq!(
            parse("18446744073709551616").unwrap(),
            Json::Float(18446744073709551616.0)
        );
        assert_eq!(parse("-0").unwrap(), Json::Int(0));
        assert_eq!(parse("0").unwrap(), Json::UInt(0));
        assert_eq!(parse("1E-2").unwrap(), Json::Float(0.01));
        assert_eq!(parse("1e999").unwrap(), Json::Float(f64::INFINITY));
        for bad in [
            "01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "1.5.5", "--1", "NaN", "Infinity",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Json::UInt(7).as_i64(), Some(7));
        assert_eq!(Json::Int(-7).as_u64(), None);
        assert_eq!(Json::UInt(u64::MAX).as_i64(), None);
        assert_eq!(Json::Float(1.0).as_u64(), None);
        assert_eq!(Json::UInt(3).as_f64(), Some(3.0));
    }

    #[test]
    fn floats_print_and_round_trip() {
        for x in [0.5, -2.25, 1e300, 1e-7, 123456.789, 3.0] {
            let text = Json::Float(x).to_string();
            assert_eq!(parse(&text).unwrap().as_f64(), Some(x), "{text}");
        }
        assert_eq!(Json::Float(f64::NAN).to_string(), "null");
        assert_eq!(Json::Float(f64::INFINITY).to_string(), "null");
        assert_eq!(Json::from(0.5).to_string(), "0.5");
    }

    #[test]
    fn printed_values_parse_back() {
        let j = Json::obj()
            .with("a", "x\"y\n\u{1}\u{7f}é😀")
            .with("n", 5u64)
            .with("i", -5i64)
            .with("l", vec![true, false])
            .with("z", Option::<u64>::None)
            .with("o", Json::obj().with("k", Json::Arr(vec![Json::obj()])));
        assert_eq!(parse(&j.to_string()).unwrap(), j);
    }

    #[test]
    fn refuses_bad_strings() {
        for bad in [
            r#""abc"#,
            r#""\"#,
            r#""\x""#,
            r#""\u12""#,
            r#""\u12g4""#,
            r#""\ud800""#,
            r#""\ud800\u0041""#,
            r#""\udc00""#,
            "\"a\nb\"",
            "\"\u{0}\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_bad_structure() {
        for bad in [
            "",
            " ",
            "[",
            "]",
            "{",
            "}",
            "[1,]",
            "[,1]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{1:2}",
            "{\"a\" 1}",
            "[1 2]",
            "1 2",
            "tru",
            "nul",
            "falsey",
            "[]]",
            "\u{feff}1",
            "'a'",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let e = parse("[1, x]").unwrap_err();
        assert_eq!(e.offset, 4);
        assert_eq!(e.to_string(), "bad JSON at byte 4: unexpected character");
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            parse(&deep).unwrap_err().message,
            "nested deeper than 32 levels"
        );
        let objs = format!(
            "{}1{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(parse(&objs).is_err());
        // Hostile: a million open brackets fail fast without recursing deeply.
        assert!(parse(&"[".repeat(1_000_000)).is_err());
        assert!(parse(&"{\"a\":[".repeat(100_000)).is_err());
    }

    #[test]
    fn size_limit() {
        let big = format!("\"{}\"", "a".repeat(MAX_LEN));
        assert_eq!(
            parse(&big).unwrap_err().message,
            "text longer than the 16 MiB limit"
        );
    }

    #[test]
    fn every_prefix_of_a_value_fails_cleanly() {
        let text = r#"{"k":[1,-2.5e3,"s\u00e9\ud83d\ude00",{"x":null,"y":true,"z":false}],"n":18446744073709551615}"#;
        assert!(parse(text).is_ok());
        for (i, _) in text.char_indices() {
            let prefix = &text[..i];
            assert!(parse(prefix).is_err(), "prefix {prefix:?} parsed");
        }
        // And every single-byte corruption either parses or errors, never panics.
        let bytes = text.as_bytes();
        for i in 0..bytes.len() {
            for b in [
                b'"', b'\\', b'[', b'{', b'}', b']', b',', b':', b'0', b'-', b'e', b'u', b' ', 0u8,
            ] {
                let mut m = bytes.to_vec();
                m[i] = b;
                if let Ok(s) = std::str::from_utf8(&m) {
                    let _ = parse(s);
                }
            }
        }
    }

    #[test]
    fn typed_fields_name_what_is_wrong() {
        let j =
            parse(r#"{"n": 5, "s": "x", "o": null, "l": [{"a": 1}, {"a": "x"}], "big": 70000}"#)
                .unwrap();
        assert_eq!(j.field::<u64>("n"), Ok(5));
        assert_eq!(j.field::<String>("s").as_deref(), Ok("x"));
        assert_eq!(j.field::<Option<u32>>("o"), Ok(None));
        assert_eq!(j.field::<Option<u32>>("n"), Ok(Some(5)));
        let e = j.field::<u64>("missing").unwrap_err();
        assert_eq!(e.to_string(), "field 'missing': missing");
        // Optional fields are present too (as null): missing is an error.
        assert!(j.field::<Option<u64>>("missing").is_err());
        assert_eq!(
            j.field::<String>("n").unwrap_err().to_string(),
            "field 'n': expected a string"
        );
        assert_eq!(
            j.field::<u16>("big").unwrap_err().to_string(),
            "field 'big': 70000 is larger than 65535"
        );
        #[derive(Debug)]
        struct A;
        impl FromJson for A {
            fn from_json(j: &Json) -> Result<A, SchemaError> {
                j.field::<u64>("a").map(|_| A)
            }
        }
        let e = j.field::<Vec<A>>("l").unwrap_err();
        assert_eq!(e.path, "l[1].a");
        assert_eq!(
            A::from_json(&Json::UInt(1)).unwrap_err().problem,
            "expected an object"
        );
        assert_eq!(
            Json::from("dht")
                .one_of(&["pex", "tracker"])
                .unwrap_err()
                .to_string(),
            "unknown value \"dht\""
        );
        assert_eq!(Json::from("pex").one_of(&["pex", "tracker"]), Ok("pex"));
        assert_eq!(
            Json::Int(-1).field::<u64>("x").unwrap_err().problem,
            "expected an object"
        );
        assert!(u64::from_json(&Json::Int(-1)).is_err());
        assert!(u64::from_json(&Json::Float(1.5)).is_err());
    }
}
