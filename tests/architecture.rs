//! Architecture invariants from ARCHITECTURE.md, checked by reading the source.
//!
//! The checker reads every non-test line of every file under `src/`:
//! comments, string literals and test code (`#[cfg(test)]` items, and the
//! files of test modules declared as `#[cfg(test)] mod tests;`) are cut
//! first. It then resolves every `crate::…` and `super::…` path to the
//! module it names and checks:
//!
//! - layers: a module may use only modules of a lower rank ([`LAYERS`]);
//!   an edge to the same rank (sideways) or above (upward) fails;
//! - circles: inside one top-level module, no two files (neither the
//!   parent of the other) may use each other, directly or round a loop;
//! - I/O: which modules may touch files, sockets, `mio`, the clock or the
//!   operating system's random generator.
//!
//! The checker's own tests (at the end) show it failing on trees with a
//! bad edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules of `src/`, bottom up. A module may use only modules
/// of a lower rank. Every module must be listed.
const LAYERS: &[(&str, u32)] = &[
    // Leaves: no crate imports at all.
    ("text", 0),
    ("hash", 0),
    ("rand", 0),
    ("sort", 0),
    // Codecs.
    ("bencode", 1),
    ("http", 1),
    ("json", 1),
    ("progress", 1),
    // The network workers' client connection (TCP under a deadline, TLS).
    ("tls", 1),
    // Validated formats.
    ("metainfo", 2),
    ("wire", 2),
    // Sans-I/O protocol machines, and the filesystem.
    ("swarm", 3),
    ("dht", 3),
    ("tracker", 3),
    ("overlay", 3),
    ("private", 3),
    ("resume", 3),
    ("storage", 3),
    // Disk and state jobs.
    ("workers", 4),
    ("state", 4),
    // The event loop and its command types.
    ("net", 5),
    // The control API server.
    ("control", 6),
    // Configuration, supervision, the daemon, the command line.
    ("config", 7),
    ("systemd", 8),
    ("daemon", 9),
    ("cli", 10),
];

// ----- the checker -----

/// One source file: its path below `src/` and its text.
struct Source {
    rel: String,
    text: String,
}

fn read_tree(src: &Path) -> Vec<Source> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<Source>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.push(Source {
                    rel,
                    text: std::fs::read_to_string(&p).unwrap(),
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(src, src, &mut out);
    out
}

/// The module path of a file: `net/engine/peers.rs` → `[net, engine, peers]`;
/// `net/mod.rs` → `[net]`; `lib.rs`/`main.rs` → `[]`.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The text with comments and string/char literals blanked (newlines kept,
/// so line numbers stay right).
fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == b'r'
            && matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // Raw string r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            j = (j + close.len()).min(b.len());
            for &x in &b[i..j] {
                blank(&mut out, x);
            }
            i = j;
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                blank(&mut out, b[i]);
                i += 1;
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    for &x in &b[i..=e] {
                        blank(&mut out, x);
                    }
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Blanks every item marked `#[cfg(test)]` (a `mod tests { … }`, a
/// `use …;`, a `fn … { … }`), and returns the names of test modules
/// declared without a body (`#[cfg(test)] mod tests;`).
fn strip_test_items(code: &str) -> (String, Vec<String>) {
    let mut b = code.as_bytes().to_vec();
    let mut declared = Vec::new();
    let pat = b"#[cfg(test)]";
    let mut from = 0;
    while let Some(pos) = find(&b[from..], pat).map(|p| p + from) {
        // The item runs to the first `;` or to the brace matching the first `{`.
        let mut j = pos + pat.len();
        let mut end = b.len();
        while j < b.len() {
            if b[j] == b';' {
                end = j + 1;
                break;
            }
            if b[j] == b'{' {
                let mut depth = 0;
                while j < b.len() {
                    match b[j] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                end = (j + 1).min(b.len());
                break;
            }
            j += 1;
        }
        let item = String::from_utf8_lossy(&b[pos + pat.len()..end]).into_owned();
        let words: Vec<&str> = item
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        if item.trim_end().ends_with(';') {
            if let Some(i) = words.iter().position(|w| *w == "mod") {
                if let Some(name) = words.get(i + 1) {
                    declared.push(name.to_string());
                }
            }
        }
        for x in &mut b[pos..end] {
            if *x != b'\n' {
                *x = b' ';
            }
        }
        from = end;
    }
    (String::from_utf8_lossy(&b).into_owned(), declared)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A file's non-test code, with comments and strings blanked.
struct Code {
    rel: String,
    module: Vec<String>,
    code: String,
}

/// Every file's non-test code; the files of test modules are left out.
fn code_of(tree: &[Source]) -> Vec<Code> {
    let mut files = Vec::new();
    let mut test_files = BTreeSet::new();
    for s in tree {
        let (code, declared) = strip_test_items(&strip_comments_and_strings(&s.text));
        let module = module_of(&s.rel);
        for name in declared {
            let dir: String = module.iter().map(|m| format!("{m}/")).collect();
            test_files.insert(format!("{dir}{name}.rs"));
            test_files.insert(format!("{dir}{name}/mod.rs"));
        }
        files.push(Code {
            rel: s.rel.clone(),
            module,
            code,
        });
    }
    // A test module's own children are test code too.
    files.retain(|f| {
        !test_files.iter().any(|t| {
            f.rel == *t
                || f.rel
                    .starts_with(&format!("{}/", t.trim_end_matches(".rs")))
        })
    });
    files
}

/// The paths a piece of code names: `crate::a::b`, `crate::{a, b::c}`,
/// `super::x`, `self::x` — each as segments, with the line it is on.
fn paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let line_at = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = code[at..].find(['c', 's']) {
        let pos = at + found;
        let before_ok =
            pos == 0 || !code[..pos].ends_with(|c: char| ident(c) || c == ':' || c == '$');
        let tail = &code[pos..];
        let head = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|h| tail.starts_with(h));
        match head {
            Some(h) if before_ok => {
                let (segs, used) = read_path(tail);
                for s in segs {
                    if s.len() > 1 || h == "crate::" {
                        out.push((line_at(pos), s));
                    }
                }
                at = pos + used.clamp(1, tail.len());
            }
            _ => at = pos + 1,
        }
    }
    out
}

/// Reads `a::b::{c, d::e}` at the start of `s`: the full paths it names and
/// the bytes read.
fn read_path(s: &str) -> (Vec<Vec<String>>, usize) {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut segs = Vec::new();
    let mut i = 0;
    let b = s.as_bytes();
    loop {
        let start = i;
        while i < s.len() && ident(b[i] as char) {
            i += 1;
        }
        if i > start {
            segs.push(s[start..i].to_string());
        }
        if s[i..].starts_with("::") {
            i += 2;
            if s[i..].starts_with('{') {
                // A group: split at top-level commas.
                let mut depth = 0;
                let mut j = i;
                let mut parts = Vec::new();
                let mut part_start = i + 1;
                while j < s.len() {
                    match b[j] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                parts.push(&s[part_start..j]);
                                break;
                            }
                        }
                        b',' if depth == 1 => {
                            parts.push(&s[part_start..j]);
                            part_start = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                let mut all = Vec::new();
                for p in parts {
                    let p = p.trim();
                    if p.is_empty() {
                        continue;
                    }
                    let (inner, _) = read_path(p);
                    for mut tail in inner {
                        let mut full = segs.clone();
                        if tail.first().is_some_and(|t| t == "self") {
                            tail.remove(0);
                        }
                        full.extend(tail);
                        all.push(full);
                    }
                }
                return (all, (j + 1).min(s.len()));
            }
            continue;
        }
        break;
    }
    (vec![segs], i)
}

/// Resolves a path written in `module` to an absolute module path
/// (`super` and `self` applied; `crate` dropped).
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut segs = path.iter();
    let mut base: Vec<String> = match path.first()?.as_str() {
        "crate" => {
            segs.next();
            Vec::new()
        }
        "super" | "self" => {
            let mut m = module.to_vec();
            for s in segs.clone() {
                match s.as_str() {
                    "super" => {
                        m.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                segs.next();
            }
            m
        }
        _ => return None,
    };
    base.extend(segs.cloned());
    Some(base)
}

/// A problem the checker found, as `file:line: what`.
type Finding = String;

fn rank_of(layers: &[(&str, u32)], module: &str) -> Option<u32> {
    layers.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// Upward and sideways edges between top-level modules, and modules
/// missing from the table.
fn layer_findings(files: &[Code], layers: &[(&str, u32)]) -> Vec<Finding> {
    let mut bad = Vec::new();
    for f in files {
        let Some(top) = f.module.first() else {
            continue; // lib.rs, main.rs
        };
        let Some(rank) = rank_of(layers, top) else {
            bad.push(format!("{}: module `{top}` has no rank in LAYERS", f.rel));
            continue;
        };
        for (line, p) in paths(&f.code) {
            let Some(abs) = resolve(&f.module, &p) else {
                continue;
            };
            let Some(target) = abs.first() else { continue };
            if target == top {
                continue;
            }
            match rank_of(layers, target) {
                Some(r) if r < rank => {}
                Some(r) => bad.push(format!(
                    "{}:{line}: `{top}` (rank {rank}) uses `{}` (rank {r}): {}",
                    f.rel,
                    abs.join("::"),
                    if r == rank { "sideways" } else { "upward" }
                )),
                None if target.chars().next().is_some_and(|c| c.is_uppercase()) => {}
                None => bad.push(format!(
                    "{}:{line}: uses `{}`, a module with no rank in LAYERS",
                    f.rel,
                    abs.join("::")
                )),
            }
        }
    }
    bad
}

/// Circles between files of one top-level module (a file and its
/// ancestors excepted: `super::*` and `pub use child::X` are not circles).
fn circle_findings(files: &[Code]) -> Vec<Finding> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    // The file (module) a path lands in: its longest prefix that is a file.
    let landing = |abs: &[String]| -> Option<Vec<String>> {
        (1..=abs.len())
            .rev()
            .map(|n| abs[..n].to_vec())
            .find(|m| modules.contains(m))
    };
    let mut edges: BTreeMap<Vec<String>, BTreeMap<Vec<String>, usize>> = BTreeMap::new();
    for f in files {
        if f.module.is_empty() {
            continue;
        }
        for (line, p) in paths(&f.code) {
            let Some(abs) = resolve(&f.module, &p) else {
                continue;
            };
            let Some(to) = landing(&abs) else { continue };
            let related = to.starts_with(&f.module) || f.module.starts_with(&to);
            if !related && to.first() == f.module.first() {
                edges
                    .entry(f.module.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(line);
            }
        }
    }
    // Any cycle: depth-first search with colours.
    let mut bad = Vec::new();
    let mut state: BTreeMap<Vec<String>, u8> = BTreeMap::new();
    fn dfs(
        n: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeMap<Vec<String>, usize>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
        bad: &mut Vec<Finding>,
    ) {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for to in edges.get(n).into_iter().flat_map(|m| m.keys()) {
            match state.get(to).copied().unwrap_or(0) {
                0 => dfs(to, edges, state, stack, bad),
                1 => {
                    let from = stack.iter().position(|s| s == to).unwrap_or(0);
                    let circle: Vec<String> = stack[from..]
                        .iter()
                        .chain([to])
                        .map(|m| m.join("::"))
                        .collect();
                    bad.push(format!("a circle of files: {}", circle.join(" -> ")));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
    }
    for n in edges.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            dfs(n, &edges, &mut state, &mut Vec::new(), &mut bad);
        }
    }
    bad
}

/// Lines of `modules` (top-level names or file paths below `src/`, like
/// `tracker/http.rs`) that contain a forbidden pattern, except `allowed`
/// files.
fn io_findings(
    files: &[Code],
    modules: &[&str],
    allowed: &[&str],
    forbidden: &[&str],
) -> Vec<Finding> {
    let mut bad = Vec::new();
    for f in files {
        let top = f.module.first().map(String::as_str).unwrap_or("");
        let in_scope = modules.iter().any(|m| *m == top || *m == f.rel);
        if !in_scope || allowed.contains(&f.rel.as_str()) {
            continue;
        }
        for (n, line) in f.code.lines().enumerate() {
            for pat in forbidden {
                if line.contains(pat) {
                    bad.push(format!("{}:{}: {pat}", f.rel, n + 1));
                }
            }
        }
    }
    bad
}

fn src_files() -> Vec<Code> {
    code_of(&read_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    ))
}

fn all_modules_except(except: &[&str]) -> Vec<&'static str> {
    LAYERS
        .iter()
        .map(|(m, _)| *m)
        .filter(|m| !except.contains(m))
        .collect()
}

// ----- the invariants -----

#[test]
fn layers_point_down_only() {
    let bad = layer_findings(&src_files(), LAYERS);
    assert!(
        bad.is_empty(),
        "dependencies must point down the LAYERS table (ARCHITECTURE.md):\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_circles_between_files_of_a_module() {
    let bad = circle_findings(&src_files());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_module_of_the_tree_has_a_rank() {
    let tops: BTreeSet<String> = src_files()
        .iter()
        .filter_map(|f| f.module.first().cloned())
        .collect();
    let missing: Vec<_> = tops
        .iter()
        .filter(|t| rank_of(LAYERS, t).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "modules with no rank in LAYERS: {missing:?}"
    );
}

const PURE: &[&str] = &[
    "text",
    "hash",
    "json",
    "sort",
    "bencode",
    "http",
    "metainfo",
    "wire",
    "swarm",
    "tracker",
    "overlay",
    "dht",
    "private",
    "resume",
    // Sans-I/O parts of net: durability bookkeeping and the datagram
    // classifier (udp.rs owns a socket, so only its classifier is pure:
    // checked in its own unit tests).
    "net/checkpoint.rs",
    // Who gets a connection slot.
    "net/admission.rs",
];

#[test]
fn pure_layers_do_no_io_and_read_no_clock() {
    let bad = io_findings(
        &src_files(),
        PURE,
        // The blocking HTTP client: runs on the pool's network threads.
        &["tracker/http.rs"],
        &[
            "std::fs",
            "File::",
            "OpenOptions",
            "TcpStream",
            "TcpListener",
            "UdpSocket",
            "mio::",
            "Instant::now",
            "SystemTime",
            "std::thread",
            "getrandom",
        ],
    );
    assert!(
        bad.is_empty(),
        "{PURE:?} must do no I/O and never read the clock:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_storage_touches_files() {
    let bad = io_findings(
        &src_files(),
        &all_modules_except(&["storage"]),
        &[],
        &["std::fs", "File::", "OpenOptions", "read_dir", "FileExt"],
    );
    assert!(
        bad.is_empty(),
        "only src/storage may open, read, write or list files:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_net_uses_mio() {
    let bad = io_findings(
        &src_files(),
        &all_modules_except(&["net"]),
        &[],
        &["mio::", "use mio"],
    );
    assert!(
        bad.is_empty(),
        "only src/net may use mio:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_rand_reads_the_random_generator() {
    let bad = io_findings(
        &src_files(),
        &all_modules_except(&["rand"]),
        &[],
        &["getrandom", "RandomState"],
    );
    assert!(
        bad.is_empty(),
        "randomness comes from src/rand.rs (key material never falls back):\n{}",
        bad.join("\n")
    );
}

// ----- the checker's own tests -----

fn tree(files: &[(&str, &str)]) -> Vec<Code> {
    code_of(
        &files
            .iter()
            .map(|(rel, text)| Source {
                rel: rel.to_string(),
                text: text.to_string(),
            })
            .collect::<Vec<_>>(),
    )
}

const TOY: &[(&str, u32)] = &[("low", 0), ("mid", 1), ("mid2", 1), ("high", 2)];

#[test]
fn checker_finds_an_upward_edge() {
    let files = tree(&[
        ("low/mod.rs", "pub mod a;\n"),
        ("low/a.rs", "use crate::high::Thing;\n"),
        ("high.rs", "use crate::low::a;\npub struct Thing;\n"),
    ]);
    let bad = layer_findings(&files, TOY);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].starts_with("low/a.rs:1: `low` (rank 0) uses `high::Thing` (rank 2): upward"));
}

#[test]
fn checker_finds_sideways_grouped_and_inline_edges() {
    let files = tree(&[
        (
            "mid.rs",
            "use crate::{low, mid2::X};\nfn f() { crate::mid2::g(); }\n",
        ),
        ("mid2.rs", "pub fn g() {}\n"),
        ("low.rs", ""),
    ]);
    let bad = layer_findings(&files, TOY);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad.iter().all(|b| b.ends_with("sideways")), "{bad:?}");
}

#[test]
fn checker_ignores_comments_strings_and_test_code_but_not_after_it() {
    let files = tree(&[
        (
            "low.rs",
            "// crate::high\n/// [`crate::high`]\nconst S: &str = \"crate::high\";\n\
             #[cfg(test)]\nmod tests {\n    use crate::high;\n}\n#[cfg(test)]\nuse crate::high::x;\n\
             #[cfg(test)] mod more;\nfn after() { crate::high::f() }\n",
        ),
        ("low/more.rs", "use crate::high;\n"),
        ("high.rs", ""),
    ]);
    let bad = layer_findings(&files, TOY);
    // Only the line after the test items counts; `low/more.rs` is the file
    // of a test module.
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].starts_with("low.rs:11:"), "{bad:?}");
}

#[test]
fn checker_skips_the_files_of_declared_test_modules() {
    let files = tree(&[
        ("low/mod.rs", "#[cfg(test)]\nmod tests;\n"),
        ("low/tests.rs", "use crate::high::Thing;\n"),
        ("high.rs", ""),
    ]);
    assert!(layer_findings(&files, TOY).is_empty());
    // The same file without the cfg(test) declaration is checked.
    let files = tree(&[
        ("low/mod.rs", "mod tests;\n"),
        ("low/tests.rs", "use crate::high::Thing;\n"),
        ("high.rs", ""),
    ]);
    assert_eq!(layer_findings(&files, TOY).len(), 1);
}

#[test]
fn checker_resolves_super_to_the_crate_root() {
    let files = tree(&[
        ("low/a.rs", "use super::super::high::X;\nuse super::b::Y;\n"),
        ("low/b.rs", ""),
        ("high.rs", ""),
    ]);
    let bad = layer_findings(&files, TOY);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("uses `high::X`"), "{bad:?}");
}

#[test]
fn checker_finds_a_circle_between_sibling_files() {
    let files = tree(&[
        ("low/mod.rs", "mod a;\nmod b;\npub use a::A;\n"),
        ("low/a.rs", "use super::b::B;\nuse super::*;\n"),
        ("low/b.rs", "pub fn f() { crate::low::a::g() }\n"),
    ]);
    let bad = circle_findings(&files);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("low::a -> low::b -> low::a"), "{bad:?}");
    // Parent and child using each other is not a circle.
    let files = tree(&[
        ("low/mod.rs", "mod a;\npub use a::A;\npub struct P;\n"),
        ("low/a.rs", "use super::P;\npub struct A;\n"),
    ]);
    assert!(circle_findings(&files).is_empty());
}

#[test]
fn checker_finds_forbidden_io_in_a_file_of_a_module() {
    let files = tree(&[
        ("low/mod.rs", "#[cfg(test)]\nmod tests;\n"),
        (
            "low/deep/x.rs",
            "fn f() { let _ = std::fs::read(\"a\"); }\n",
        ),
        ("low/tests.rs", "fn f() { let _ = std::fs::read(\"a\"); }\n"),
    ]);
    let bad = io_findings(&files, &["low"], &[], &["std::fs"]);
    assert_eq!(bad, vec!["low/deep/x.rs:1: std::fs".to_string()]);
    assert!(io_findings(&files, &["low"], &["low/deep/x.rs"], &["std::fs"]).is_empty());
}
