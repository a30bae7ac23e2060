//! The configuration file: one flat table of the keys in [`super::KEYS`],
//! in TOML. Strings for addresses, paths, filters and the `HOST:PORT`
//! array; integers or strings with a K/M/G suffix for sizes; integers for
//! counts and seconds; `true`/`false` for switches. Relative paths are
//! taken from the file's directory.
//!
//! The reader is our own, for the TOML a flat table needs (the `toml`
//! crate cost ~120 KB of the binary for this): comments, bare and quoted
//! keys, basic and literal strings (also multi-line, with every escape),
//! integers (decimal, `0x`, `0o`, `0b`, `_` between digits), `true` and
//! `false`, and arrays (nested, over several lines, trailing comma). Floats,
//! date-times, inline tables, `[table]` headers and dotted keys are read
//! too, so that a key given one is named in an "expected ..., got ..."
//! error; anything else is refused with the line it is on.

use super::{check, from_text, key, Kind, Layer, Origin, Value};
use std::path::Path;

/// Checks a whole file; `path` (absolute) names it in the errors and
/// anchors relative paths. Every problem is one line, `PATH:LINE: ...`,
/// in line order.
pub fn parse_file(text: &str, path: &Path) -> Result<Layer, Vec<String>> {
    let name = path.display();
    let entries = read_table(text).map_err(|(line, e)| vec![format!("{name}:{line}: {e}")])?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut layer = Layer::default();
    let mut errors: Vec<(usize, String)> = Vec::new();
    for (line, name_str, v) in entries {
        let Some((i, key)) = key(&name_str) else {
            errors.push((
                line,
                format!(
                    "{name}:{line}: key {name_str:?}: unknown key{}",
                    suggest(&name_str)
                ),
            ));
            continue;
        };
        // A value on a later line (an array) is reported at its key.
        match from_toml(key, &v, base) {
            Ok(value) => layer.0.push((i, value, Origin::File(line))),
            Err(e) => errors.push((line, format!("{name}:{line}: key {name_str:?}: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(layer)
    } else {
        crate::sort::sort_by(&mut errors, Ord::cmp);
        Err(errors.into_iter().map(|(_, e)| e).collect())
    }
}

/// A key's value from TOML.
fn from_toml(key: &super::Key, v: &Toml, base: &Path) -> Result<Value, String> {
    let got = describe(v);
    let wrong = || format!("expected {}, got {got}", key.expected());
    match (key.kind, v) {
        (Kind::Addr | Kind::Path | Kind::Filter | Kind::Size { .. }, Toml::Str(s)) => {
            from_text(key, s, base)
        }
        (Kind::Size { .. } | Kind::Int { .. }, Toml::Int(_, n)) => {
            check(key, Value::Num(n.ok_or_else(wrong)?), &got)
        }
        (Kind::Bool, Toml::Bool(b)) => Ok(Value::Bool(*b)),
        (Kind::List, Toml::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Toml::Str(s) => out.push(s.clone()),
                    other => {
                        return Err(format!(
                            "expected {}, got an array holding {}",
                            key.expected(),
                            describe(other)
                        ))
                    }
                }
            }
            check(key, Value::List(out), &got)
        }
        _ => Err(wrong()),
    }
}

/// A TOML value as the user wrote it, for "got ...".
fn describe(v: &Toml) -> String {
    match v {
        Toml::Str(s) => format!("{s:?}"),
        Toml::Int(text, _) | Toml::Float(text) => text.clone(),
        Toml::Bool(b) => b.to_string(),
        Toml::DateTime => "a date-time".into(),
        Toml::Array(_) => "an array".into(),
        Toml::Table => "a table".into(),
    }
}

/// "; did you mean \"upload_limit\"?" for a near miss.
fn suggest(name: &str) -> String {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let n = norm(name);
    let best = super::KEYS
        .iter()
        .map(|k| (distance(&n, k.name), k.name))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 4));
    match best {
        Some((_, k)) => format!("; did you mean {k:?}?"),
        None => "; see `peerlet config show` for every key".into(),
    }
}

/// Levenshtein distance (the names are short).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A TOML value, as far as a flat table of known keys needs it.
#[derive(Debug, PartialEq)]
enum Toml {
    Str(String),
    /// As written (radix prefix and sign kept, `_` dropped), and the value
    /// when it is not negative and fits a u64.
    Int(String, Option<u64>),
    /// As written, `_` dropped.
    Float(String),
    Bool(bool),
    DateTime,
    Array(Vec<Toml>),
    /// An inline table, or a top-level key given a table by a `[table]`
    /// header or a dotted key.
    Table,
}

/// A syntax error: its line and what is wrong.
type Error = (usize, String);

/// The top-level keys of a document, each with its line and value, in
/// the order written. Keys inside tables are read and left out: their
/// table is the value of its top-level key.
fn read_table(text: &str) -> Result<Vec<(usize, String, Toml)>, Error> {
    let mut r = Reader {
        text,
        pos: 0,
        line: 1,
    };
    if text.starts_with('\u{feff}') {
        r.pos = 3;
    }
    let mut out: Vec<(usize, String, Toml)> = Vec::new();
    // Top-level keys that a `[table]` header or a dotted key made tables
    // (more headers and dotted keys may add to them).
    let mut tables: Vec<String> = Vec::new();
    let mut in_table = false;
    loop {
        r.blank();
        let line = r.line;
        let path = match r.peek() {
            None => return Ok(out),
            Some(b'\n' | b'\r' | b'#') => {
                r.end_of_line()?;
                continue;
            }
            Some(b'[') => {
                r.pos += 1;
                let array = r.eat(b'[');
                r.blank();
                let path = r.key_path()?;
                if !r.eat(b']') || (array && !r.eat(b']')) {
                    return r.error(if array {
                        "`]]` after the table name"
                    } else {
                        "`]` after the table name"
                    });
                }
                in_table = true;
                let name = path.into_iter().next().unwrap_or_default();
                let value = if array {
                    Toml::Array(vec![Toml::Table])
                } else {
                    Toml::Table
                };
                // `[a.b]` after `[a]` adds to table a.
                if !tables.contains(&name) {
                    r.define(&mut out, line, name.clone(), value)?;
                    tables.push(name);
                }
                r.end_of_line()?;
                continue;
            }
            Some(_) => r.key_path()?,
        };
        r.expect(b'=', "`=` after the key")?;
        r.blank();
        let value = r.value()?;
        r.end_of_line()?;
        if in_table {
            continue;
        }
        let mut path = path.into_iter();
        let name = path.next().unwrap_or_default();
        if path.next().is_some() {
            if !tables.contains(&name) {
                r.define(&mut out, line, name.clone(), Toml::Table)?;
                tables.push(name);
            }
        } else {
            r.define(&mut out, line, name, value)?;
        }
    }
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let yes = self.peek() == Some(b);
        self.pos += usize::from(yes);
        yes
    }

    fn error<T>(&self, what: &str) -> Result<T, Error> {
        let found = match self.text[self.pos..].chars().next() {
            None => "the end of the file".into(),
            Some('\n' | '\r') => "the end of the line".into(),
            Some(c) => format!("{c:?}"),
        };
        Err((self.line, format!("TOML: expected {what}, found {found}")))
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<(), Error> {
        if !self.eat(b) {
            return self.error(what);
        }
        self.blank();
        Ok(())
    }

    /// Spaces and tabs.
    fn blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// A comment (if any) and the end of the line or file.
    fn end_of_line(&mut self) -> Result<(), Error> {
        self.blank();
        if self.eat(b'#') {
            while let Some(c) = self.peek() {
                if c == b'\n' || c == b'\r' {
                    break;
                }
                if is_control(c) && c != b'\t' {
                    return self.error("no control character in a comment");
                }
                self.pos += 1;
            }
        }
        self.newline_or_end("the end of the line")
    }

    fn newline_or_end(&mut self, what: &str) -> Result<(), Error> {
        match self.peek() {
            None => Ok(()),
            Some(b'\n') => {
                self.pos += 1;
                self.line += 1;
                Ok(())
            }
            Some(b'\r') if self.text.as_bytes().get(self.pos + 1) == Some(&b'\n') => {
                self.pos += 2;
                self.line += 1;
                Ok(())
            }
            _ => self.error(what),
        }
    }

    /// Blanks, comments and line ends (inside arrays and inline tables).
    fn space(&mut self) -> Result<(), Error> {
        loop {
            self.blank();
            match self.peek() {
                Some(b'#' | b'\n' | b'\r') => self.end_of_line()?,
                _ => return Ok(()),
            }
        }
    }

    /// `a`, `"a b"`, `a.'b'.c`; the blanks after it are skipped.
    fn key_path(&mut self) -> Result<Vec<String>, Error> {
        let mut path = Vec::new();
        loop {
            let part = match self.peek() {
                Some(q @ (b'"' | b'\'')) => {
                    self.pos += 1;
                    self.string(q, false)?
                }
                _ => {
                    let start = self.pos;
                    while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
                    {
                        self.pos += 1;
                    }
                    if start == self.pos {
                        return self.error("a key (letters, digits, `_` and `-`, or quoted)");
                    }
                    self.text[start..self.pos].to_string()
                }
            };
            path.push(part);
            self.blank();
            if !self.eat(b'.') {
                return Ok(path);
            }
            self.blank();
        }
    }

    /// Records a top-level key, once.
    fn define(
        &self,
        out: &mut Vec<(usize, String, Toml)>,
        line: usize,
        name: String,
        value: Toml,
    ) -> Result<(), Error> {
        if let Some((first, ..)) = out.iter().find(|(_, k, _)| *k == name) {
            return Err((
                line,
                format!("TOML: duplicate key {name:?} (first on line {first})"),
            ));
        }
        out.push((line, name, value));
        Ok(())
    }

    fn value(&mut self) -> Result<Toml, Error> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => {
                self.pos += 1;
                let multi =
                    self.text[self.pos..].starts_with(if q == b'"' { "\"\"" } else { "''" });
                if multi {
                    self.pos += 2;
                    // A line end right after the opening quotes is not part of it.
                    if self.peek() == Some(b'\n') || self.text[self.pos..].starts_with("\r\n") {
                        self.newline_or_end("")?;
                    }
                }
                self.string(q, multi).map(Toml::Str)
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.space()?;
                    if self.eat(b']') {
                        return Ok(Toml::Array(items));
                    }
                    items.push(self.value()?);
                    self.space()?;
                    if !self.eat(b',') {
                        self.space()?;
                        if self.eat(b']') {
                            return Ok(Toml::Array(items));
                        }
                        return self.error("`,` or `]` in the array");
                    }
                }
            }
            Some(b'{') => {
                self.pos += 1;
                loop {
                    self.space()?;
                    if self.eat(b'}') {
                        return Ok(Toml::Table);
                    }
                    self.key_path()?;
                    self.expect(b'=', "`=` after the key")?;
                    self.value()?;
                    self.space()?;
                    if !self.eat(b',') {
                        self.space()?;
                        if self.eat(b'}') {
                            return Ok(Toml::Table);
                        }
                        return self.error("`,` or `}` in the inline table");
                    }
                }
            }
            _ => self.scalar(),
        }
    }

    /// The rest of a string opened by `q` (one quote, or three when
    /// `multi`); a basic string (`"`) has escapes.
    fn string(&mut self, q: u8, multi: bool) -> Result<String, Error> {
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == q || (c == b'\\' && q == b'"') || (is_control(c) && c != b'\t') {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                None => return self.error("the closing quote of the string"),
                Some(c @ (b'\n' | b'\r')) if multi => {
                    // As written: LF or CR LF.
                    out.push_str(if c == b'\r' { "\r\n" } else { "\n" });
                    self.newline_or_end("a line end (CR LF) in the string")?;
                }
                Some(c) if c == q => {
                    self.pos += 1;
                    if !multi {
                        return Ok(out);
                    }
                    // Three quotes close it; up to two more are its last characters.
                    let rest = self.text.as_bytes()[self.pos..]
                        .iter()
                        .take(4)
                        .take_while(|&&b| b == q)
                        .count();
                    if rest >= 2 {
                        for _ in 0..rest - 2 {
                            out.push(char::from(q));
                        }
                        self.pos += rest;
                        return Ok(out);
                    }
                    out.push(char::from(q));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out, multi)?;
                }
                Some(_) => return self.error("the closing quote of the string"),
            }
        }
    }

    /// After a `\\` in a basic string.
    fn escape(&mut self, out: &mut String, multi: bool) -> Result<(), Error> {
        let c = self.peek();
        self.pos += 1;
        let hex = match c {
            Some(b'x') => 2,
            Some(b'u') => 4,
            Some(b'U') => 8,
            Some(b' ' | b'\t' | b'\n' | b'\r') if multi => {
                // A line-ending backslash: the line end and the blanks and
                // line ends after it are dropped.
                self.pos -= 1;
                self.blank();
                self.newline_or_end("a line end after `\\`")?;
                return self.space_in_string();
            }
            _ => {
                let plain = match c {
                    Some(b'b') => '\u{8}',
                    Some(b't') => '\t',
                    Some(b'n') => '\n',
                    Some(b'f') => '\u{c}',
                    Some(b'r') => '\r',
                    Some(b'e') => '\u{1b}',
                    Some(b'"') => '"',
                    Some(b'\\') => '\\',
                    _ => {
                        self.pos -= 1;
                        return self.error("an escape (\\b \\t \\n \\f \\r \\e \\\" \\\\ \\xHH \\uHHHH \\UHHHHHHHH)");
                    }
                };
                out.push(plain);
                return Ok(());
            }
        };
        let digits = self.text.get(self.pos..self.pos + hex).unwrap_or("");
        let scalar = digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| u32::from_str_radix(digits, 16).ok())
            .flatten()
            .and_then(char::from_u32);
        match scalar {
            Some(c) => {
                out.push(c);
                self.pos += hex;
                Ok(())
            }
            None => self.error(&format!("{hex} hex digits of a Unicode scalar value")),
        }
    }

    /// Blanks and line ends, after a line-ending backslash.
    fn space_in_string(&mut self) -> Result<(), Error> {
        loop {
            self.blank();
            match self.peek() {
                Some(b'\n' | b'\r') => self.newline_or_end("a line end (CR LF)")?,
                _ => return Ok(()),
            }
        }
    }

    /// A number, `true`/`false` or a date-time.
    fn scalar(&mut self) -> Result<Toml, Error> {
        let start = self.pos;
        let word = |r: &mut Self| {
            while matches!(r.peek(), Some(c) if c.is_ascii_alphanumeric() || b"_+-.:".contains(&c))
            {
                r.pos += 1;
            }
        };
        word(self);
        let bytes = self.text.as_bytes();
        // A date and a time may be split by a space: 1979-05-27 07:32:00.
        if self.pos - start == 10
            && bytes[start + 4] == b'-'
            && self.peek() == Some(b' ')
            && bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            word(self);
        }
        let w = &self.text[start..self.pos];
        let value = match w {
            "true" => Some(Toml::Bool(true)),
            "false" => Some(Toml::Bool(false)),
            _ => integer(w)
                .or_else(|| float(w))
                .or_else(|| date_time(w).then_some(Toml::DateTime)),
        };
        match value {
            Some(v) => Ok(v),
            None => {
                self.pos = start;
                self.error("a value (a string, an integer, true, false or an array)")
            }
        }
    }
}

/// Control characters that TOML allows only escaped (tab aside, and line
/// ends where they end a line).
fn is_control(c: u8) -> bool {
    c < 0x20 || c == 0x7f
}

/// Digits of `radix` with single `_` between them; without the `_`s.
fn digits(s: &str, radix: u32) -> Option<String> {
    let ok = !s.is_empty()
        && !s.starts_with('_')
        && !s.ends_with('_')
        && !s.contains("__")
        && s.chars().all(|c| c == '_' || c.is_digit(radix));
    ok.then(|| s.replace('_', ""))
}

fn integer(w: &str) -> Option<Toml> {
    let (radix, prefix, body) = match w.get(..2) {
        Some("0x") => (16, "0x", &w[2..]),
        Some("0o") => (8, "0o", &w[2..]),
        Some("0b") => (2, "0b", &w[2..]),
        _ => (10, "", w),
    };
    let (sign, body) = match body.as_bytes().first() {
        Some(b'+' | b'-') if radix == 10 => body.split_at(1),
        _ => ("", body),
    };
    let d = digits(body, radix)?;
    if radix == 10 && d.len() > 1 && d.starts_with('0') {
        return None;
    }
    let n = u64::from_str_radix(&d, radix).ok();
    let n = if sign == "-" {
        n.filter(|&n| n == 0)
    } else {
        n
    };
    Some(Toml::Int(format!("{prefix}{sign}{d}"), n))
}

fn float(w: &str) -> Option<Toml> {
    let body = w.strip_prefix(['+', '-']).unwrap_or(w);
    let ok = if body == "inf" || body == "nan" {
        true
    } else {
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (mantissa, None),
        };
        let int_ok = digits(int, 10).is_some_and(|d| d == "0" || !d.starts_with('0'));
        let exp_ok =
            exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e), 10).is_some());
        int_ok
            && frac.is_none_or(|f| digits(f, 10).is_some())
            && exp_ok
            && (frac.is_some() || exp.is_some())
    };
    ok.then(|| Toml::Float(w.replace('_', "")))
}

/// `1979-05-27`, `07:32:00`, `1979-05-27T07:32:00.999-07:00` and the like.
fn date_time(w: &str) -> bool {
    let b = w.as_bytes();
    let shape = |s: &[u8], pat: &[u8]| {
        s.len() == pat.len()
            && s.iter().zip(pat).all(|(c, p)| {
                if *p == b'9' {
                    c.is_ascii_digit()
                } else {
                    c == p
                }
            })
    };
    let time = |s: &[u8]| {
        // HH:MM, HH:MM:SS, then .fraction, then Z or +HH:MM.
        if s.len() < 5 || !shape(&s[..5], b"99:99") {
            return false;
        }
        let mut rest = &s[5..];
        if rest.len() >= 3 && shape(&rest[..3], b":99") {
            rest = &rest[3..];
            if let Some(frac) = rest.strip_prefix(b".") {
                let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
                if n == 0 {
                    return false;
                }
                rest = &frac[n..];
            }
        }
        match rest {
            [] | [b'Z' | b'z'] => true,
            [b'+' | b'-', off @ ..] => shape(off, b"99:99"),
            _ => false,
        }
    };
    if b.len() >= 10 && shape(&b[..10], b"9999-99-99") {
        match b.get(10) {
            None => true,
            Some(b'T' | b't' | b' ') => time(&b[11..]),
            _ => false,
        }
    } else {
        // A local time has no offset.
        time(b) && !b.iter().any(|c| matches!(c, b'Z' | b'z' | b'+' | b'-'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Toml {
        let mut t = read_table(text).unwrap();
        assert_eq!(t.len(), 1, "{text:?}");
        t.pop().unwrap().2
    }

    fn err(text: &str) -> Error {
        read_table(text).unwrap_err()
    }

    #[test]
    fn values() {
        assert_eq!(
            one("a = \"x\\ty\\u00e9\\U0001F600\\x41\\e\""),
            Toml::Str("x\ty\u{e9}\u{1F600}A\u{1b}".into())
        );
        assert_eq!(one("a = 'C:\\dir'"), Toml::Str("C:\\dir".into()));
        assert_eq!(
            one("a = \"\"\"\none\\\n   two\n\"\"\"\"\""),
            Toml::Str("onetwo\n\"\"".into())
        );
        assert_eq!(one("a = '''\r\nx\r\n'y'''"), Toml::Str("x\r\n'y".into()));
        assert_eq!(one("a = 1_000"), Toml::Int("1000".into(), Some(1000)));
        assert_eq!(one("a = +7"), Toml::Int("+7".into(), Some(7)));
        assert_eq!(one("a = -0"), Toml::Int("-0".into(), Some(0)));
        assert_eq!(one("a = -5"), Toml::Int("-5".into(), None));
        assert_eq!(
            one("a = 0xdead_BEEF"),
            Toml::Int("0xdeadBEEF".into(), Some(0xdead_beef))
        );
        assert_eq!(one("a = 0o17"), Toml::Int("0o17".into(), Some(0o17)));
        assert_eq!(one("a = 0b101"), Toml::Int("0b101".into(), Some(5)));
        assert_eq!(
            one("a = 99999999999999999999"),
            Toml::Int("99999999999999999999".into(), None)
        );
        assert_eq!(one("a = 1.5"), Toml::Float("1.5".into()));
        assert_eq!(one("a = -1e1_0"), Toml::Float("-1e10".into()));
        assert_eq!(one("a = +inf"), Toml::Float("+inf".into()));
        assert_eq!(one("a = true #\tyes"), Toml::Bool(true));
        for d in [
            "1979-05-27",
            "07:32",
            "07:32:00.5",
            "1979-05-27T07:32:00Z",
            "1979-05-27 07:32:00.999-07:00",
            "1979-05-27t07:32z",
        ] {
            assert_eq!(one(&format!("a = {d}")), Toml::DateTime, "{d}");
        }
        assert_eq!(
            one("a = [ 'x' , [1], # c\n\n \"y\", ]"),
            Toml::Array(vec![
                Toml::Str("x".into()),
                Toml::Array(vec![Toml::Int("1".into(), Some(1))]),
                Toml::Str("y".into())
            ])
        );
        assert_eq!(one("a = { b = 1, c.d = [2] }"), Toml::Table);
        assert_eq!(one("\u{feff}\"a\" = []"), Toml::Array(Vec::new()));
    }

    #[test]
    fn tables_belong_to_their_top_level_key() {
        let t = read_table("x = 1\r\n[a]\nb = 1\n[a.c]\n[[d]]\ne.f = 2\n").unwrap();
        let keys: Vec<_> = t.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(keys, [(1, "x"), (2, "a"), (5, "d")]);
        assert_eq!(t[1].2, Toml::Table);
        assert_eq!(t[2].2, Toml::Array(vec![Toml::Table]));
        let t = read_table("a.b = 1\na.c = 2\n").unwrap();
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn refused_with_their_line() {
        for (text, line) in [
            ("a = 1\nb = \"x\n", 2),
            ("a = 1\n\na = 2", 3),
            ("a 2", 1),
            ("a = 1 2", 1),
            ("a = 01", 1),
            ("a = 1__0", 1),
            ("a = _1", 1),
            ("a = 0x", 1),
            ("a = -0x1", 1),
            ("a = 1.", 1),
            ("a = .5", 1),
            ("a = tru", 1),
            ("a = \"\\q\"", 1),
            ("a = \"\\uD800\"", 1),
            ("a = \"x\ty\u{1}\"", 1),
            ("a = # none", 1),
            ("a = [1,,]", 1),
            ("a = [\n1\n2]", 3),
            ("# \u{7f}", 1),
            ("a = 1\rb = 2", 1),
            ("[a\nb = 1", 1),
            ("[[a] ]", 1),
            ("= 1", 1),
            ("a = \"\"\"\n\n", 3),
            ("a = 1979-05-27T", 1),
            ("a = 07:32Z", 1),
        ] {
            assert_eq!(err(text).0, line, "{text:?}: {:?}", err(text));
        }
        assert!(err("a = 1\na = 2").1.contains("duplicate key"));
    }
}
