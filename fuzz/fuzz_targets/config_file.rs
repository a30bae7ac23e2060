//! Arbitrary text into `config::parse_file`, the TOML configuration file's
//! parser and checker (src/config/file.rs's own TOML reader, then every
//! key's kind, range and form), as `peerlet daemon`, `peerlet config check`
//! and SIGHUP reload read `/etc/peerlet/peerlet.toml`.
//!
//! The input is converted lossily to UTF-8 (the file reader refuses other
//! bytes before parsing).
//!
//! Invariants checked (beyond "no panic"):
//! - on success: every value is a known key's, of that key's kind, at most
//!   once per key, with `Origin::File(line)` inside the text; paths are
//!   absolute; and the effective configuration written by `config show`
//!   (`Config::to_toml`) parses again to the same value for every key;
//! - on failure: at least one message, each a single line
//!   `/etc/peerlet/peerlet.toml:LINE: ...` with LINE inside the text, in
//!   line order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::config::{defaults, parse_file, Config, Kind, Layer, Origin, Value, KEYS};
use std::path::Path;
use std::sync::OnceLock;

const FILE: &str = "/etc/peerlet/peerlet.toml";

fn default_layer() -> &'static Layer {
    static D: OnceLock<Layer> = OnceLock::new();
    D.get_or_init(|| defaults(Path::new("/var/lib/peerlet")))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new(FILE);
    let lines = 1 + text.bytes().filter(|&b| b == b'\n').count();
    match parse_file(&text, path) {
        Ok(layer) => check_layer(&layer, lines),
        Err(errors) => check_errors(&errors, lines),
    }
});

fn check_layer(layer: &Layer, lines: usize) {
    let mut seen = vec![false; KEYS.len()];
    for (i, v, origin) in &layer.0 {
        let key = KEYS.get(*i).expect("a known key");
        assert!(!seen[*i], "key {} twice", key.name);
        seen[*i] = true;
        match origin {
            Origin::File(line) => assert!((1..=lines).contains(line), "line {line} of {lines}"),
            o => panic!("a file value from {o:?}"),
        }
        let fits = match (key.kind, v) {
            (Kind::Addr, Value::Addr(_)) | (Kind::Bool, Value::Bool(_)) => true,
            (Kind::Path, Value::Path(p)) => p.is_absolute(),
            (Kind::Size { min, max } | Kind::Int { min, max }, Value::Num(n)) => {
                (min..=max).contains(n)
            }
            (Kind::List, Value::List(_)) | (Kind::Filter, Value::Text(_)) => true,
            _ => false,
        };
        assert!(fits, "key {} of kind {:?} holds {v:?}", key.name, key.kind);
    }

    // `config show` writes every key; reading that back changes nothing.
    let config = Config::resolve(Some(FILE.into()), &[default_layer(), layer]);
    let shown = config.to_toml();
    let again = match parse_file(&shown, Path::new(FILE)) {
        Ok(l) => l,
        Err(e) => panic!("`config show` output does not parse: {e:?}\n{shown}"),
    };
    assert_eq!(again.0.len(), KEYS.len(), "`config show` misses keys");
    let config2 = Config::resolve(Some(FILE.into()), &[default_layer(), &again]);
    for k in KEYS {
        assert_eq!(
            config.value(k.name),
            config2.value(k.name),
            "key {} changed through `config show`",
            k.name
        );
    }
}

fn check_errors(errors: &[String], lines: usize) {
    assert!(!errors.is_empty(), "an error without a message");
    let mut last = 0;
    for e in errors {
        assert!(!e.contains('\n'), "a message of several lines: {e:?}");
        let rest = e
            .strip_prefix(FILE)
            .and_then(|r| r.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no FILE: prefix: {e:?}"));
        let (n, msg) = rest
            .split_once(": ")
            .unwrap_or_else(|| panic!("no LINE: {e:?}"));
        let n: usize = n
            .parse()
            .unwrap_or_else(|_| panic!("bad line number: {e:?}"));
        assert!((1..=lines).contains(&n), "line {n} of {lines}: {e:?}");
        assert!(n >= last, "messages out of line order");
        assert!(!msg.trim().is_empty());
        last = n;
    }
}
