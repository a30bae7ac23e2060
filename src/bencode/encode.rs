//! Bencode encoding: an owned [`Value`] whose dictionaries are always sorted,
//! and a streaming [`Encoder`] for hot paths that should not build a tree.

use std::collections::BTreeMap;

/// An owned bencode value. Dictionaries are `BTreeMap`s, so encoding is
/// canonical by construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
    /// Bytes that are already bencoded and are copied as they are (for
    /// example an `info` dictionary whose hash must not change).
    Raw(Vec<u8>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// An empty dictionary, to be filled with [`Value::insert`].
    pub fn dict() -> Value {
        Value::Dict(BTreeMap::new())
    }

    /// Inserts `key` → `value` when `self` is a dictionary (no-op otherwise).
    pub fn insert(&mut self, key: &str, value: Value) {
        if let Value::Dict(map) = self {
            map.insert(key.as_bytes().to_vec(), value);
        }
    }

    /// Appends the encoding of `self` to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut enc = Encoder { out };
        enc.value(self);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.emit(&mut out);
        out
    }
}

/// Writes bencode into a byte vector. The caller keeps dictionary keys sorted.
pub struct Encoder<'o> {
    pub out: &'o mut Vec<u8>,
}

impl Encoder<'_> {
    pub fn int(&mut self, n: i64) {
        self.out.push(b'i');
        self.out.extend_from_slice(n.to_string().as_bytes());
        self.out.push(b'e');
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b.len().to_string().as_bytes());
        self.out.push(b':');
        self.out.extend_from_slice(b);
    }

    pub fn begin_list(&mut self) {
        self.out.push(b'l');
    }

    pub fn begin_dict(&mut self) {
        self.out.push(b'd');
    }

    pub fn end(&mut self) {
        self.out.push(b'e');
    }

    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Int(n) => self.int(*n),
            Value::Bytes(b) => self.bytes(b),
            Value::List(items) => {
                self.begin_list();
                for item in items {
                    self.value(item);
                }
                self.end();
            }
            Value::Dict(map) => {
                self.begin_dict();
                for (k, item) in map {
                    self.bytes(k);
                    self.value(item);
                }
                self.end();
            }
            Value::Raw(raw) => self.out.extend_from_slice(raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::{decode, Limits};

    #[test]
    fn emit_sorted_and_round_trip() {
        let mut d = Value::dict();
        d.insert("zeta", Value::Int(-3));
        d.insert("alpha", Value::List(vec![Value::str("x"), Value::Int(0)]));
        d.insert("raw", Value::Raw(b"d1:ai1ee".to_vec()));
        let bytes = d.to_bytes();
        assert_eq!(bytes, b"d5:alphal1:xi0ee3:rawd1:ai1ee4:zetai-3ee");
        let doc = decode(&bytes, Limits::MESSAGE).unwrap();
        assert_eq!(doc.root().raw(), &bytes[..]);
    }
}
