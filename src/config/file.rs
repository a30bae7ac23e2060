//! The configuration file: TOML (parsed by the `toml` crate's own parser,
//! which keeps the byte span of every key and value), one flat table of
//! the keys in [`super::KEYS`]. Strings for addresses, paths, filters and
//! the `HOST:PORT` array; integers or strings with a K/M/G suffix for
//! sizes; integers for counts and seconds; `true`/`false` for switches.
//! Relative paths are taken from the file's directory.

use super::{check, from_text, key, Kind, Layer, Origin, Value};
use std::path::Path;
use toml::de::{DeTable, DeValue};

/// Checks a whole file; `path` (absolute) names it in the errors and
/// anchors relative paths. Every problem is one line, `PATH:LINE: ...`,
/// in line order.
pub fn parse_file(text: &str, path: &Path) -> Result<Layer, Vec<String>> {
    let name = path.display();
    let line_of = |offset: usize| {
        let offset = offset.min(text.len());
        1 + text.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    };
    let table = DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(s.start));
        vec![format!("{name}:{line}: {}", e.message().trim_end())]
    })?;
    let base = path.parent().unwrap_or(Path::new("/"));
    let mut layer = Layer::default();
    let mut errors: Vec<(usize, String)> = Vec::new();
    for (k, v) in table.get_ref().iter() {
        let line = line_of(k.span().start);
        let name_str: &str = k.get_ref();
        let Some((i, key)) = key(name_str) else {
            errors.push((
                line,
                format!(
                    "{name}:{line}: key {name_str:?}: unknown key{}",
                    suggest(name_str)
                ),
            ));
            continue;
        };
        // A value on a later line (an array) is reported at its key.
        match from_toml(key, v.get_ref(), base) {
            Ok(value) => layer.0.push((i, value, Origin::File(line))),
            Err(e) => errors.push((line, format!("{name}:{line}: key {name_str:?}: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(layer)
    } else {
        errors.sort();
        Err(errors.into_iter().map(|(_, e)| e).collect())
    }
}

/// A key's value from TOML.
fn from_toml(key: &super::Key, v: &DeValue<'_>, base: &Path) -> Result<Value, String> {
    let got = describe(v);
    let wrong = || format!("expected {}, got {got}", key.expected());
    match (key.kind, v) {
        (Kind::Addr | Kind::Path | Kind::Filter | Kind::Size { .. }, DeValue::String(s)) => {
            from_text(key, s, base)
        }
        (Kind::Size { .. } | Kind::Int { .. }, DeValue::Integer(i)) => {
            let n = i128::from_str_radix(i.as_str(), i.radix()).map_err(|_| wrong())?;
            let n = u64::try_from(n).map_err(|_| wrong())?;
            check(key, Value::Num(n), &got)
        }
        (Kind::Bool, DeValue::Boolean(b)) => Ok(Value::Bool(*b)),
        (Kind::List, DeValue::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::String(s) => out.push(s.to_string()),
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
fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("{:?}", s.as_ref()),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(_) => "a date-time".into(),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
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
