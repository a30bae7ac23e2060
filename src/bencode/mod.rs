//! Bencode (BEP 3) for untrusted bytes: a strict decoder with limits, and an encoder.
//!
//! The decoder does not build a tree of boxed values. It writes a flat *tape*
//! of fixed-size tokens, one per value, in document order (the layout
//! libtorrent's `bdecode_node` uses): a list or dictionary token is followed by
//! its children, and each token records where its next sibling starts, so
//! skipping a value is O(1). One allocation per document, about 16 bytes per
//! value, and no recursion: a million nested lists cannot overflow the stack.
//!
//! Every value keeps its exact byte span in the input ([`Node::raw`]). The
//! info-hash of a torrent is the SHA-1 of the raw bytes of its `info`
//! dictionary as received, never of a re-encoding.
//!
//! # No-panic contract
//!
//! [`decode`] takes any byte slice and returns either a document or an
//! [`Error`]; it never panics, never reads past the input and allocates at
//! most in proportion to [`Limits::max_tokens`]. A truncated input yields
//! [`ErrorKind::UnexpectedEof`], which a stream reader may treat as "need more
//! bytes". [`Node`] accessors only follow offsets the decoder has checked.
//!
//! # Strictness
//!
//! Integers are canonical (no leading zeros, no `-0`, no empty digits, within
//! `i64`), string lengths are canonical, dictionary keys are byte strings in
//! strictly increasing byte order (so sorted and unique), and nothing may
//! follow the top-level value ([`decode_prefix`] lifts that last rule for a
//! value followed by raw bytes, as in BEP 9 data messages).

mod decode;
mod encode;

pub use decode::{
    count_values, decode, decode_prefix, tape_bytes, Dict, DictIter, Document, ListIter, Node,
};
pub use encode::{Encoder, Value};

use std::fmt;

/// Size limits applied while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_input: usize,
    /// Deepest nesting of lists and dictionaries (the top-level value is depth 1).
    pub max_depth: u32,
    /// Most values (integers, strings, lists, dictionaries, keys included).
    pub max_tokens: u32,
    /// Longest accepted byte string.
    pub max_string: usize,
}

impl Limits {
    /// Limits for .torrent files: the numbers libtorrent uses (10 MB, depth 100),
    /// with fewer tokens so a hostile file stays within a small board's memory.
    pub const METAINFO: Limits = Limits {
        max_input: 10_000_000,
        max_depth: 100,
        max_tokens: 1_000_000,
        max_string: 10_000_000,
    };

    /// Limits for small protocol messages (extension handshakes, tracker and
    /// overlay packets): depth 32, 64 KiB strings.
    pub const MESSAGE: Limits = Limits {
        max_input: 1 << 20,
        max_depth: 32,
        max_tokens: 100_000,
        max_string: 1 << 16,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::MESSAGE
    }
}

/// What went wrong while decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended inside a value (a stream reader may wait for more bytes).
    UnexpectedEof,
    /// A byte that cannot start a value here.
    UnexpectedByte(u8),
    /// An integer with leading zeros, `-0`, no digits, or a stray character.
    InvalidInteger,
    /// An integer outside the signed 64-bit range.
    IntegerOverflow,
    /// A string length with leading zeros or a non-digit.
    InvalidLength,
    /// A string longer than [`Limits::max_string`] (or than the input allows).
    StringTooLong(u64),
    /// A dictionary key that is not a byte string.
    KeyNotString,
    /// A dictionary key equal to the previous key.
    DuplicateKey(Vec<u8>),
    /// A dictionary key smaller than the previous key.
    UnsortedKey(Vec<u8>),
    /// Nesting deeper than [`Limits::max_depth`].
    TooDeep(u32),
    /// More values than [`Limits::max_tokens`].
    TooManyTokens(u32),
    /// Input larger than [`Limits::max_input`].
    InputTooLarge(usize),
    /// Bytes after the top-level value.
    TrailingBytes,
}

/// A decoding error: what, at which byte offset, and under which keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// Byte offset in the input where the problem was found.
    pub offset: usize,
    /// Where in the document: dictionary keys and list indices from the top,
    /// e.g. `info.files[3].length`; empty at the top level.
    pub path: String,
}

impl Error {
    /// True when more input could make the bytes decode (a stream reader's "need more").
    pub fn is_eof(&self) -> bool {
        self.kind == ErrorKind::UnexpectedEof
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedEof => write!(f, "input ends in the middle of a value"),
            ErrorKind::UnexpectedByte(b) => write!(f, "unexpected byte {}", show_byte(*b)),
            ErrorKind::InvalidInteger => write!(f, "invalid integer (not canonical)"),
            ErrorKind::IntegerOverflow => write!(f, "integer does not fit in 64 bits"),
            ErrorKind::InvalidLength => write!(f, "invalid string length (not canonical)"),
            ErrorKind::StringTooLong(n) => write!(f, "string of {n} bytes is too long"),
            ErrorKind::KeyNotString => write!(f, "dictionary key is not a byte string"),
            ErrorKind::DuplicateKey(k) => write!(f, "duplicate dictionary key '{}'", show_key(k)),
            ErrorKind::UnsortedKey(k) => {
                write!(f, "dictionary key '{}' is out of order", show_key(k))
            }
            ErrorKind::TooDeep(n) => write!(f, "nesting deeper than {n} levels"),
            ErrorKind::TooManyTokens(n) => write!(f, "more than {n} values"),
            ErrorKind::InputTooLarge(n) => write!(f, "input larger than {n} bytes"),
            ErrorKind::TrailingBytes => write!(f, "unexpected bytes after the end of the value"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bencode: {} at byte {}", self.kind, self.offset)?;
        if !self.path.is_empty() {
            write!(f, " (in {})", self.path)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

/// A dictionary key for messages: printable ASCII as is, anything else escaped, at most 64 bytes.
pub(crate) fn show_key(key: &[u8]) -> String {
    let mut out = String::new();
    for &b in key.iter().take(64) {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if key.len() > 64 {
        out.push_str("...");
    }
    out
}
