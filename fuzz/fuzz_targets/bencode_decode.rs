//! Arbitrary bytes into `bencode::decode` under both standard limits.
//!
//! Invariants checked (beyond "no panic, no abort, no OOM"):
//! - on success, `root().raw()` and `Document::input()` are the whole input;
//! - every node's `raw()` is a sub-slice of the input (same memory, in range),
//!   and nested values lie inside their parent's span;
//! - the decoder is strict, so walking the tree and re-encoding it with
//!   `Encoder` reproduces the input byte for byte, and so does converting it
//!   to an owned `Value` (sorted `BTreeMap` dictionaries) and encoding that;
//! - the limits are honoured: depth, string length, token count;
//! - `MESSAGE` is stricter than `METAINFO` in every limit, so a document that
//!   decodes under `MESSAGE` decodes under `METAINFO` too;
//! - bencode is prefix-free: a strict prefix of a valid document is an
//!   "unexpected end of input" error, never a success or another error;
//! - on error, `error.offset <= input.len()`;
//! - `count_values` (what the control API pays for before decoding) is
//!   exactly the number of values and keys of a document that decodes, and
//!   never more than its bound on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerlet::bencode::{count_values, decode, Encoder, Limits, Node, Value};
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let message = check(data, Limits::MESSAGE);
    let metainfo = check(data, Limits::METAINFO);
    if message {
        assert!(metainfo, "decodes under MESSAGE but not under METAINFO");
    }
});

/// Decodes `data` under `limits` and checks every invariant; true on success.
fn check(data: &[u8], limits: Limits) -> bool {
    let counted = count_values(data, limits.max_tokens);
    assert!(counted <= limits.max_tokens as usize);
    let doc = match decode(data, limits) {
        Ok(doc) => doc,
        Err(e) => {
            assert!(
                e.offset <= data.len(),
                "error offset {} past input of {} bytes: {e}",
                e.offset,
                data.len()
            );
            // Display must not panic either.
            let _ = e.to_string();
            return false;
        }
    };
    assert!(data.len() <= limits.max_input);
    assert!(std::ptr::eq(doc.input(), data));
    let root = doc.root();
    assert_eq!(root.raw(), data, "root raw() is not the whole input");
    assert_eq!(root.offset(), 0);

    // Walk and re-encode with the streaming encoder.
    let mut out = Vec::with_capacity(data.len());
    let mut walk = Walk {
        input: data,
        limits,
        tokens: 0,
    };
    let value = walk.node(root, 1, &mut Encoder { out: &mut out });
    assert_eq!(out, data, "Encoder re-encoding differs from the input");
    assert!(walk.tokens <= limits.max_tokens as usize);
    assert_eq!(walk.tokens, counted, "count_values differs from the document");

    // The owned tree encodes canonically too (and lost no duplicate keys).
    assert_eq!(value.to_bytes(), data, "Value re-encoding differs");

    // Prefix-free: cutting the input anywhere gives "need more bytes".
    for cut in [data.len() - 1, data.len() / 2, 0] {
        if cut < data.len() {
            let e = decode(&data[..cut], limits).expect_err("a strict prefix decoded");
            assert!(e.is_eof(), "prefix of {cut} bytes: {e}, not EOF");
            assert!(e.offset <= cut);
        }
    }
    true
}

struct Walk<'i> {
    input: &'i [u8],
    limits: Limits,
    tokens: usize,
}

impl Walk<'_> {
    /// Checks `node` (at nesting `depth`), encodes it, returns it as a `Value`.
    fn node(&mut self, node: Node<'_, '_>, depth: u32, enc: &mut Encoder<'_>) -> Value {
        self.tokens += 1;
        let raw = node.raw();
        self.assert_sub_slice(raw);
        assert!(!raw.is_empty(), "empty raw() for a {}", node.kind_name());
        assert_eq!(
            raw.as_ptr() as usize - self.input.as_ptr() as usize,
            node.offset(),
            "offset() disagrees with raw()"
        );

        let kinds = [
            node.as_int().is_some(),
            node.as_bytes().is_some(),
            node.as_list().is_some(),
            node.as_dict().is_some(),
        ];
        assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{node:?}");

        if let Some(n) = node.as_int() {
            enc.int(n);
            assert_eq!(raw, format!("i{n}e").as_bytes());
            return Value::Int(n);
        }
        if let Some(b) = node.as_bytes() {
            assert!(b.len() <= self.limits.max_string);
            self.assert_inside(b, raw);
            assert!(raw.ends_with(b));
            if let Some(s) = node.as_str() {
                assert_eq!(s.as_bytes(), b);
            }
            enc.bytes(b);
            return Value::Bytes(b.to_vec());
        }
        assert!(depth <= self.limits.max_depth, "depth {depth} accepted");
        if let Some(list) = node.as_list() {
            enc.begin_list();
            let mut items = Vec::new();
            for item in list {
                self.assert_inside(item.raw(), raw);
                items.push(self.node(item, depth + 1, enc));
            }
            enc.end();
            return Value::List(items);
        }
        let dict = node.as_dict().expect("one of the four kinds");
        assert_eq!(dict.node().raw(), raw);
        enc.begin_dict();
        let mut map = BTreeMap::new();
        let mut prev: Option<&[u8]> = None;
        let mut n = 0;
        for (key, value) in dict.iter() {
            self.tokens += 1; // the key
            n += 1;
            assert!(key.len() <= self.limits.max_string);
            self.assert_inside(key, raw);
            if let Some(p) = prev {
                assert!(p < key, "keys not strictly increasing");
            }
            prev = Some(key);
            // Lookup finds this very value.
            let found = dict.get(key).expect("get() misses a key iter() yields");
            assert_eq!(found.offset(), value.offset());
            self.assert_inside(value.raw(), raw);
            enc.bytes(key);
            let v = self.node(value, depth + 1, enc);
            assert!(map.insert(key.to_vec(), v).is_none(), "duplicate key");
        }
        enc.end();
        assert_eq!(dict.len(), n);
        assert_eq!(dict.is_empty(), n == 0);
        Value::Dict(map)
    }

    fn assert_sub_slice(&self, s: &[u8]) {
        let base = self.input.as_ptr() as usize;
        let start = s.as_ptr() as usize;
        assert!(
            start >= base && start + s.len() <= base + self.input.len(),
            "a slice outside the input"
        );
    }

    fn assert_inside(&self, inner: &[u8], outer: &[u8]) {
        self.assert_sub_slice(inner);
        let (i, o) = (inner.as_ptr() as usize, outer.as_ptr() as usize);
        assert!(
            i >= o && i + inner.len() <= o + outer.len(),
            "a child's bytes outside its parent's span"
        );
    }
}
