//! The strict, limited, non-recursive bencode decoder and its read-only view.
//!
//! See the module documentation of [`crate::bencode`] for the tape layout and
//! the no-panic contract.

use super::{Error, ErrorKind, Limits};

const KIND_INT: u8 = 0;
const KIND_BYTES: u8 = 1;
const KIND_LIST: u8 = 2;
const KIND_DICT: u8 = 3;

/// One value on the tape. 16 bytes.
#[derive(Clone, Copy, Debug)]
struct Token {
    /// Offset of the value's first byte.
    start: u32,
    /// Offset one past the value's last byte.
    end: u32,
    /// Index of the token after this value and all its children.
    next: u32,
    kind: u8,
    /// For strings: bytes of the length header including ':'.
    header: u8,
}

/// A decoded document: the input plus its tape.
#[derive(Debug)]
pub struct Document<'a> {
    input: &'a [u8],
    tokens: Vec<Token>,
}

/// Decodes one complete bencoded value from `input` under `limits`.
///
/// Never panics; see the module documentation for the rules enforced.
pub fn decode(input: &[u8], limits: Limits) -> Result<Document<'_>, Error> {
    Decoder::new(input, limits).run()
}

/// Decodes the one bencoded value at the front of `input` and returns it with
/// its length in bytes; whatever follows is left alone (BEP 9 data messages
/// are a dictionary followed by raw bytes). The document's
/// [`Document::input`] is that prefix. `limits.max_input` applies to the
/// whole of `input`.
///
/// Never panics; apart from allowing trailing bytes, the same rules as [`decode`].
pub fn decode_prefix(input: &[u8], limits: Limits) -> Result<(Document<'_>, usize), Error> {
    Decoder::new(input, limits).run_prefix()
}

/// An open list or dictionary while decoding.
struct Frame {
    token: u32,
    is_dict: bool,
    /// Children seen so far (for lists: the index of the next element).
    n_children: u32,
    /// Dictionaries: byte range of the last key read.
    last_key: Option<(u32, u32)>,
    /// Dictionaries: true when the next value is a key.
    want_key: bool,
}

struct Decoder<'a> {
    input: &'a [u8],
    limits: Limits,
    pos: usize,
    tokens: Vec<Token>,
    stack: Vec<Frame>,
}

impl<'a> Decoder<'a> {
    fn new(input: &'a [u8], limits: Limits) -> Self {
        Decoder {
            input,
            limits,
            pos: 0,
            tokens: Vec::new(),
            stack: Vec::new(),
        }
    }

    fn run(self) -> Result<Document<'a>, Error> {
        let input_len = self.input.len();
        let (doc, end) = self.run_prefix()?;
        if end != input_len {
            return Err(Error {
                kind: ErrorKind::TrailingBytes,
                offset: end,
                path: String::new(),
            });
        }
        Ok(doc)
    }

    /// Decodes the first value; returns it and the offset one past its end.
    fn run_prefix(mut self) -> Result<(Document<'a>, usize), Error> {
        // The tape stores offsets as u32; the limit keeps them in range.
        let max_input = self.limits.max_input.min(u32::MAX as usize - 1);
        if self.input.len() > max_input {
            return Err(self.error(ErrorKind::InputTooLarge(max_input), 0));
        }
        self.tokens
            .reserve(estimate_tokens(self.input.len(), self.limits.max_tokens));
        loop {
            let byte = match self.input.get(self.pos) {
                Some(&b) => b,
                None => return Err(self.error(ErrorKind::UnexpectedEof, self.pos)),
            };
            if byte == b'e' && !self.stack.is_empty() {
                self.close_container()?;
            } else {
                self.check_key_position(byte)?;
                self.value(byte)?;
            }
            if self.stack.is_empty() {
                break;
            }
        }
        let end = self.pos;
        Ok((
            Document {
                input: self.input.get(..end).unwrap_or(self.input),
                tokens: self.tokens,
            },
            end,
        ))
    }

    /// In a dictionary, a key must be a string and must sort after the previous one.
    fn check_key_position(&mut self, byte: u8) -> Result<(), Error> {
        let Some(frame) = self.stack.last() else {
            return Ok(());
        };
        if !frame.is_dict || !frame.want_key {
            return Ok(());
        }
        if !byte.is_ascii_digit() {
            return Err(self.error(ErrorKind::KeyNotString, self.pos));
        }
        Ok(())
    }

    /// Reads one value starting with `byte` at `self.pos`.
    fn value(&mut self, byte: u8) -> Result<(), Error> {
        let start = self.pos;
        match byte {
            b'i' => {
                let end = self.integer_end(start)?;
                self.push_token(Token {
                    start: start as u32,
                    end: end as u32,
                    next: 0,
                    kind: KIND_INT,
                    header: 0,
                })?;
                self.pos = end;
                self.finish_scalar();
            }
            b'0'..=b'9' => {
                let (header, len) = self.string_header(start)?;
                let data_start = start + header;
                let end = data_start + len;
                self.push_token(Token {
                    start: start as u32,
                    end: end as u32,
                    next: 0,
                    kind: KIND_BYTES,
                    header: header as u8,
                })?;
                self.pos = end;
                self.finish_key_or_scalar(data_start, end)?;
            }
            b'l' | b'd' => {
                let depth = self.stack.len() as u32 + 1;
                if depth > self.limits.max_depth {
                    return Err(self.error(ErrorKind::TooDeep(self.limits.max_depth), start));
                }
                let is_dict = byte == b'd';
                let kind = if is_dict { KIND_DICT } else { KIND_LIST };
                let token = self.tokens.len() as u32;
                self.push_token(Token {
                    start: start as u32,
                    end: 0,
                    next: 0,
                    kind,
                    header: 0,
                })?;
                self.stack.push(Frame {
                    token,
                    is_dict,
                    n_children: 0,
                    last_key: None,
                    want_key: true,
                });
                self.pos = start + 1;
            }
            other => return Err(self.error(ErrorKind::UnexpectedByte(other), start)),
        }
        Ok(())
    }

    fn close_container(&mut self) -> Result<(), Error> {
        let Some(frame) = self.stack.last() else {
            return Ok(());
        };
        if frame.is_dict && !frame.want_key {
            // A key with no value.
            return Err(self.error(ErrorKind::UnexpectedByte(b'e'), self.pos));
        }
        let token_idx = frame.token as usize;
        self.stack.pop();
        let n_tokens = self.tokens.len() as u32;
        if let Some(token) = self.tokens.get_mut(token_idx) {
            token.end = (self.pos + 1) as u32;
            token.next = n_tokens;
        }
        self.pos += 1;
        self.note_child();
        Ok(())
    }

    fn push_token(&mut self, token: Token) -> Result<(), Error> {
        if self.tokens.len() >= self.limits.max_tokens as usize {
            return Err(self.error(
                ErrorKind::TooManyTokens(self.limits.max_tokens),
                token.start as usize,
            ));
        }
        self.tokens.push(token);
        Ok(())
    }

    /// Records a completed child value in the enclosing container.
    fn note_child(&mut self) {
        if let Some(frame) = self.stack.last_mut() {
            if frame.is_dict {
                frame.want_key = true;
            }
            frame.n_children += 1;
        }
    }

    fn finish_scalar(&mut self) {
        let n = self.tokens.len() as u32;
        if let Some(token) = self.tokens.last_mut() {
            token.next = n;
        }
        self.note_child();
    }

    /// A string is either a dictionary key (checked for order) or a plain value.
    fn finish_key_or_scalar(&mut self, data_start: usize, end: usize) -> Result<(), Error> {
        let n = self.tokens.len() as u32;
        if let Some(token) = self.tokens.last_mut() {
            token.next = n;
        }
        let input = self.input;
        let Some(frame) = self.stack.last_mut() else {
            return Ok(());
        };
        if !(frame.is_dict && frame.want_key) {
            self.note_child();
            return Ok(());
        }
        let key = &input[data_start..end];
        if let Some((prev_start, prev_end)) = frame.last_key {
            let prev = &input[prev_start as usize..prev_end as usize];
            if key == prev {
                let err = ErrorKind::DuplicateKey(key.to_vec());
                return Err(self.error(err, data_start));
            }
            if key < prev {
                let err = ErrorKind::UnsortedKey(key.to_vec());
                return Err(self.error(err, data_start));
            }
        }
        frame.last_key = Some((data_start as u32, end as u32));
        frame.want_key = false;
        Ok(())
    }

    /// Validates `i<canonical i64>e` at `start`; returns the offset after `e`.
    fn integer_end(&self, start: usize) -> Result<usize, Error> {
        let mut pos = start + 1;
        let negative = self.input.get(pos) == Some(&b'-');
        if negative {
            pos += 1;
        }
        let digits_start = pos;
        let mut magnitude: u64 = 0;
        loop {
            match self.input.get(pos) {
                None => return Err(self.error(ErrorKind::UnexpectedEof, pos)),
                Some(b'e') => break,
                Some(&d) if d.is_ascii_digit() => {
                    magnitude = magnitude
                        .checked_mul(10)
                        .and_then(|m| m.checked_add(u64::from(d - b'0')))
                        .ok_or_else(|| self.error(ErrorKind::IntegerOverflow, start))?;
                    pos += 1;
                }
                Some(_) => return Err(self.error(ErrorKind::InvalidInteger, pos)),
            }
        }
        let digits = &self.input[digits_start..pos];
        let canonical = match digits {
            [] => false,
            [b'0'] => !negative,
            [b'0', ..] => false,
            _ => true,
        };
        if !canonical {
            return Err(self.error(ErrorKind::InvalidInteger, start));
        }
        let limit = if negative {
            1u64 << 63
        } else {
            i64::MAX as u64
        };
        if magnitude > limit {
            return Err(self.error(ErrorKind::IntegerOverflow, start));
        }
        Ok(pos + 1)
    }

    /// Validates `<len>:` at `start`; returns (header length, string length).
    fn string_header(&self, start: usize) -> Result<(usize, usize), Error> {
        let mut pos = start;
        let mut len: u64 = 0;
        loop {
            match self.input.get(pos) {
                None => return Err(self.error(ErrorKind::UnexpectedEof, pos)),
                Some(b':') => break,
                Some(&d) if d.is_ascii_digit() => {
                    if pos > start && self.input.get(start) == Some(&b'0') {
                        return Err(self.error(ErrorKind::InvalidLength, start));
                    }
                    len = len.saturating_mul(10).saturating_add(u64::from(d - b'0'));
                    pos += 1;
                    if pos - start > 20 {
                        return Err(self.error(ErrorKind::StringTooLong(len), start));
                    }
                }
                Some(_) => return Err(self.error(ErrorKind::InvalidLength, pos)),
            }
        }
        if len > self.limits.max_string as u64 {
            return Err(self.error(ErrorKind::StringTooLong(len), start));
        }
        let header = pos + 1 - start;
        let len = len as usize;
        if self.input.len() - (pos + 1) < len {
            return Err(self.error(ErrorKind::UnexpectedEof, self.input.len()));
        }
        Ok((header, len))
    }

    fn error(&self, kind: ErrorKind, offset: usize) -> Error {
        Error {
            kind,
            offset,
            path: self.path(),
        }
    }

    /// `info.files[3].length` for the value being read. Deep paths keep
    /// their first and last four levels: `info[0][0][0]...[0][0][0][0]`.
    fn path(&self) -> String {
        const KEEP: usize = 4;
        let n = self.stack.len();
        let mut out = String::new();
        for (depth, frame) in self.stack.iter().enumerate() {
            if n > 2 * KEEP && depth >= KEEP && depth < n - KEEP {
                if depth == KEEP {
                    out.push_str("...");
                }
                continue;
            }
            if frame.is_dict {
                if frame.want_key {
                    continue;
                }
                if let Some((s, e)) = frame.last_key {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(&super::show_key(&self.input[s as usize..e as usize]));
                }
            } else {
                out.push_str(&format!("[{}]", frame.n_children));
            }
        }
        out
    }
}

/// The most values [`decode`] can put on its tape for `input` (at most
/// `max`), counted without allocating: it walks the string lengths and the
/// delimiters and checks nothing else. A caller that must pay for the tape
/// before decoding (the control API's memory budget) learns its size here;
/// see [`tape_bytes`].
pub fn count_values(input: &[u8], max: u32) -> usize {
    let max = max as usize;
    let mut n = 0usize;
    let mut pos = 0usize;
    while n < max {
        let Some(rest) = input.get(pos..) else { break };
        let Some(&b) = rest.first() else { break };
        match b {
            b'e' => pos += 1,
            b'l' | b'd' => {
                n += 1;
                pos += 1;
            }
            b'i' => {
                n += 1;
                match rest.iter().position(|&c| c == b'e') {
                    Some(e) => pos += e + 1,
                    None => break,
                }
            }
            b'0'..=b'9' => {
                n += 1;
                let Some(colon) = rest.iter().take(21).position(|&c| c == b':') else {
                    break;
                };
                let digits = rest.get(..colon).unwrap_or_default();
                let Some(len) = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<usize>().ok())
                else {
                    break;
                };
                pos = pos.saturating_add(colon + 1).saturating_add(len);
            }
            _ => break,
        }
    }
    n
}

/// The most bytes of memory the tape of a document of `values` values (see
/// [`count_values`]) occupies while it is decoded: 16 per value, twice
/// while it grows (the old copy beside the new one), plus a page at each
/// end. Capacity reserved and never written is not counted: it is not
/// resident.
pub fn tape_bytes(values: usize) -> u64 {
    let token = std::mem::size_of::<Token>() as u64;
    (values as u64)
        .saturating_mul(2 * token)
        .saturating_add(8192)
}

/// Up-front tape capacity: a guess from the input size, never above the limit.
fn estimate_tokens(input_len: usize, max_tokens: u32) -> usize {
    (input_len / 8 + 1).min(max_tokens as usize).min(1 << 16)
}

impl<'a> Document<'a> {
    /// The top-level value.
    pub fn root(&self) -> Node<'_, 'a> {
        Node { doc: self, idx: 0 }
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }
}

/// A value inside a [`Document`]. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Node<'d, 'a> {
    doc: &'d Document<'a>,
    idx: u32,
}

impl std::fmt::Debug for Node<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({} at {})", self.kind_name(), self.offset())
    }
}

impl<'d, 'a> Node<'d, 'a> {
    fn token(&self) -> Token {
        // The decoder only creates nodes for indices it wrote.
        self.doc
            .tokens
            .get(self.idx as usize)
            .copied()
            .unwrap_or(Token {
                start: 0,
                end: 0,
                next: self.idx + 1,
                kind: KIND_INT,
                header: 0,
            })
    }

    /// The exact bytes of this value in the input.
    pub fn raw(&self) -> &'a [u8] {
        let t = self.token();
        self.doc
            .input
            .get(t.start as usize..t.end as usize)
            .unwrap_or(&[])
    }

    /// Byte offset of this value in the input.
    pub fn offset(&self) -> usize {
        self.token().start as usize
    }

    /// "integer", "string", "list" or "dictionary", for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.token().kind {
            KIND_INT => "integer",
            KIND_BYTES => "string",
            KIND_LIST => "list",
            _ => "dictionary",
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        let t = self.token();
        if t.kind != KIND_INT {
            return None;
        }
        let digits = self
            .doc
            .input
            .get(t.start as usize + 1..(t.end as usize).saturating_sub(1))?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        let t = self.token();
        if t.kind != KIND_BYTES {
            return None;
        }
        self.doc
            .input
            .get(t.start as usize + t.header as usize..t.end as usize)
    }

    /// The string as UTF-8, if it is a string and valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    pub fn as_list(&self) -> Option<ListIter<'d, 'a>> {
        let t = self.token();
        (t.kind == KIND_LIST).then(|| ListIter {
            doc: self.doc,
            idx: self.idx + 1,
            end: t.next,
        })
    }

    pub fn as_dict(&self) -> Option<Dict<'d, 'a>> {
        (self.token().kind == KIND_DICT).then_some(Dict { node: *self })
    }
}

/// A dictionary node.
#[derive(Clone, Copy, Debug)]
pub struct Dict<'d, 'a> {
    node: Node<'d, 'a>,
}

impl<'d, 'a> Dict<'d, 'a> {
    /// The value under `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<Node<'d, 'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Entries in key order.
    pub fn iter(&self) -> DictIter<'d, 'a> {
        let t = self.node.token();
        DictIter {
            doc: self.node.doc,
            idx: self.node.idx + 1,
            end: t.next,
        }
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The dictionary as a node (for [`Node::raw`]).
    pub fn node(&self) -> Node<'d, 'a> {
        self.node
    }
}

/// Iterates a list's elements.
pub struct ListIter<'d, 'a> {
    doc: &'d Document<'a>,
    idx: u32,
    end: u32,
}

impl<'d, 'a> Iterator for ListIter<'d, 'a> {
    type Item = Node<'d, 'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.idx >= self.end {
            return None;
        }
        let node = Node {
            doc: self.doc,
            idx: self.idx,
        };
        self.idx = node.token().next.max(self.idx + 1);
        Some(node)
    }
}

/// Iterates a dictionary's (key, value) entries.
pub struct DictIter<'d, 'a> {
    doc: &'d Document<'a>,
    idx: u32,
    end: u32,
}

impl<'d, 'a> Iterator for DictIter<'d, 'a> {
    type Item = (&'a [u8], Node<'d, 'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.idx >= self.end {
            return None;
        }
        let key = Node {
            doc: self.doc,
            idx: self.idx,
        };
        let value_idx = key.token().next.max(self.idx + 1);
        if value_idx >= self.end {
            return None;
        }
        let value = Node {
            doc: self.doc,
            idx: value_idx,
        };
        self.idx = value.token().next.max(value_idx + 1);
        Some((key.as_bytes().unwrap_or(&[]), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &[u8]) -> Document<'_> {
        decode(input, Limits::MESSAGE).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(input: &[u8]) -> Error {
        decode(input, Limits::MESSAGE).expect_err("should fail")
    }

    #[test]
    fn count_values_bounds_the_tape() {
        let docs: [&[u8]; 7] = [
            b"i42e",
            b"4:spam",
            b"le",
            b"d3:bar4:spam3:fooi42ee",
            b"l4:spaml1:ai1eed1:xleee",
            b"ll10:0123456789ei-3ee",
            b"d4:infod6:lengthi1e4:name1:aee",
        ];
        for input in docs {
            let doc = ok(input);
            assert_eq!(count_values(input, u32::MAX), doc.tokens.len(), "{input:?}");
        }
        // Malformed or truncated input: never fewer than the decoder pushes before its error.
        for input in [
            &b"l4:spami1"[..],
            b"li1ei2e99999:x",
            b"lx",
            b"l1a:",
            b"d1:a",
        ] {
            assert!(count_values(input, u32::MAX) <= input.len());
        }
        // The limit caps the count.
        let many = b"l"
            .iter()
            .chain(b"i0e".repeat(1000).iter())
            .chain(b"e")
            .copied()
            .collect::<Vec<u8>>();
        assert_eq!(count_values(&many, u32::MAX), 1001);
        assert_eq!(count_values(&many, 10), 10);
        assert_eq!(std::mem::size_of::<Token>(), 16);
        assert_eq!(tape_bytes(1001), 32 * 1001 + 8192);
    }

    #[test]
    fn scalars() {
        assert_eq!(ok(b"i42e").root().as_int(), Some(42));
        assert_eq!(ok(b"i-42e").root().as_int(), Some(-42));
        assert_eq!(ok(b"i0e").root().as_int(), Some(0));
        assert_eq!(ok(b"i9223372036854775807e").root().as_int(), Some(i64::MAX));
        assert_eq!(
            ok(b"i-9223372036854775808e").root().as_int(),
            Some(i64::MIN)
        );
        assert_eq!(ok(b"4:spam").root().as_bytes(), Some(&b"spam"[..]));
        assert_eq!(ok(b"0:").root().as_bytes(), Some(&b""[..]));
    }

    #[test]
    fn nested_and_raw_spans() {
        let input = b"d1:ad1:bli1ei2eee1:c3:xyze";
        let doc = ok(input);
        let root = doc.root().as_dict().unwrap();
        assert_eq!(root.len(), 2);
        let a = root.get(b"a").unwrap();
        assert_eq!(a.raw(), b"d1:bli1ei2eee");
        let b: Vec<i64> = a
            .as_dict()
            .unwrap()
            .get(b"b")
            .unwrap()
            .as_list()
            .unwrap()
            .map(|n| n.as_int().unwrap())
            .collect();
        assert_eq!(b, vec![1, 2]);
        assert_eq!(root.get(b"c").unwrap().as_str(), Some("xyz"));
        assert_eq!(root.get(b"c").unwrap().offset(), 20);
        assert!(root.get(b"zz").is_none());
    }

    #[test]
    fn empty_containers() {
        let doc = ok(b"d1:ale1:bdee");
        let root = doc.root().as_dict().unwrap();
        assert_eq!(root.get(b"a").unwrap().as_list().unwrap().count(), 0);
        assert!(root.get(b"b").unwrap().as_dict().unwrap().is_empty());
    }

    #[test]
    fn non_canonical_integers() {
        for bad in [&b"i-0e"[..], b"i03e", b"ie", b"i-e", b"i1x2e", b"i--1e"] {
            assert_eq!(
                err(bad).kind,
                ErrorKind::InvalidInteger,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            err(b"i9223372036854775808e").kind,
            ErrorKind::IntegerOverflow
        );
        assert_eq!(
            err(b"i99999999999999999999999e").kind,
            ErrorKind::IntegerOverflow
        );
    }

    #[test]
    fn strings() {
        assert_eq!(err(b"05:hello").kind, ErrorKind::InvalidLength);
        assert_eq!(err(b"5x:hello").kind, ErrorKind::InvalidLength);
        assert_eq!(
            err(b"9223372036854775807:x").kind,
            ErrorKind::StringTooLong(9223372036854775807)
        );
        assert!(matches!(
            err(b"99999999999999999999999:x").kind,
            ErrorKind::StringTooLong(_)
        ));
        assert_eq!(err(b"5:abc").kind, ErrorKind::UnexpectedEof);
    }

    #[test]
    fn dictionary_keys() {
        let e = err(b"d1:bi1e1:ai2ee");
        assert_eq!(e.kind, ErrorKind::UnsortedKey(b"a".to_vec()));
        assert_eq!(
            e.to_string(),
            "bencode: dictionary key 'a' is out of order at byte 9"
        );
        let e = err(b"d1:ai1e1:ai2ee");
        assert_eq!(e.kind, ErrorKind::DuplicateKey(b"a".to_vec()));
        assert_eq!(err(b"di1ei2ee").kind, ErrorKind::KeyNotString);
        assert_eq!(err(b"d1:ae").kind, ErrorKind::UnexpectedByte(b'e'));
    }

    #[test]
    fn error_path() {
        let e = err(b"d4:infod5:filesld6:lengthi1eed6:lengthi01eeeee");
        assert_eq!(e.kind, ErrorKind::InvalidInteger);
        assert_eq!(e.path, "info.files[1].length");
        assert_eq!(
            e.to_string(),
            "bencode: invalid integer (not canonical) at byte 38 (in info.files[1].length)"
        );
    }

    #[test]
    fn trailing_and_empty() {
        assert_eq!(err(b"i1ei2e").kind, ErrorKind::TrailingBytes);
        assert_eq!(err(b"").kind, ErrorKind::UnexpectedEof);
        assert_eq!(err(b"x").kind, ErrorKind::UnexpectedByte(b'x'));
        assert_eq!(err(b"e").kind, ErrorKind::UnexpectedByte(b'e'));
        assert_eq!(err(b"i1ei2e").offset, 3);
    }

    #[test]
    fn prefix_stops_after_the_first_value() {
        let input = b"d8:msg_typei1e5:piecei0eeRAW\x00BYTES";
        let (doc, n) = decode_prefix(input, Limits::MESSAGE).unwrap();
        assert_eq!(n, 25);
        assert_eq!(doc.input(), &input[..25]);
        assert_eq!(doc.root().raw(), &input[..25]);
        let d = doc.root().as_dict().unwrap();
        assert_eq!(d.get(b"piece").and_then(|v| v.as_int()), Some(0));
        // Nothing after the value is fine too.
        let (doc, n) = decode_prefix(b"4:spam", Limits::MESSAGE).unwrap();
        assert_eq!((n, doc.root().as_bytes()), (6, Some(&b"spam"[..])));
        // Errors inside the value are still errors; so is a truncated value.
        let e = decode_prefix(b"d1:bi1e1:ai2eeXX", Limits::MESSAGE).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsortedKey(b"a".to_vec()));
        assert!(decode_prefix(b"d1:ai1e", Limits::MESSAGE)
            .unwrap_err()
            .is_eof());
        assert!(decode_prefix(b"", Limits::MESSAGE).unwrap_err().is_eof());
        // max_input covers the trailing bytes as well.
        let limits = Limits {
            max_input: 8,
            ..Limits::MESSAGE
        };
        let e = decode_prefix(b"i1e0123456789", limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InputTooLarge(8));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let mut input = vec![b'l'; 1_000_000];
        input.extend(std::iter::repeat_n(b'e', 1_000_000));
        let limits = Limits {
            max_input: 4_000_000,
            ..Limits::METAINFO
        };
        let e = decode(&input, limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooDeep(100));
        assert_eq!(e.offset, 100);
    }

    #[test]
    fn limits() {
        let tight = Limits {
            max_input: 10,
            max_depth: 2,
            max_tokens: 3,
            max_string: 4,
        };
        assert_eq!(
            decode(b"li1ei2ei3ee", tight).unwrap_err().kind,
            ErrorKind::InputTooLarge(10)
        );
        assert_eq!(
            decode(b"li1ei2ee", tight)
                .unwrap()
                .root()
                .as_list()
                .unwrap()
                .count(),
            2
        );
        assert_eq!(
            decode(
                b"li1ei2ei3e",
                Limits {
                    max_input: 20,
                    ..tight
                }
            )
            .unwrap_err()
            .kind,
            ErrorKind::TooManyTokens(3)
        );
        assert_eq!(
            decode(b"5:abcde", tight).unwrap_err().kind,
            ErrorKind::StringTooLong(5)
        );
        assert_eq!(
            decode(b"llleee", tight).unwrap_err().kind,
            ErrorKind::TooDeep(2)
        );
    }

    #[test]
    fn every_prefix_of_valid_input_is_eof_never_panic() {
        let input = b"d8:announce3:url4:infod6:lengthi1048576e4:name4:file12:piece lengthi262144e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
        ok(input);
        for cut in 0..input.len() {
            let e = decode(&input[..cut], Limits::MESSAGE).unwrap_err();
            assert!(e.is_eof(), "prefix {cut}: {e}");
        }
    }

    #[test]
    fn any_bytes_never_panic() {
        // A cheap deterministic sweep; the fuzz target goes much further.
        let mut state = 0x2545F4914F6CDD1Du64;
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            for i in 0..len {
                let alphabet = b"ilde0123456789:-x";
                buf.push(alphabet[((state >> (i * 2)) as usize + i) % alphabet.len()]);
            }
            if let Ok(doc) = decode(&buf, Limits::MESSAGE) {
                assert_eq!(doc.root().raw(), &buf[..]);
            }
        }
    }
}
