//! Randomness: the operating system's generator for anything secret, and
//! cheap seeds for what only needs to differ between runs.
//!
//! Key material (the node key, a network secret, the API token, the
//! overlay's token secret and sealing session) comes from [`bytes`] or
//! [`fill`], which read the operating system's generator (`getrandom(2)`,
//! or `/dev/urandom` where that call is missing) and fail with [`Error`]
//! when it fails. There is no weaker fallback: a caller turns the error into
//! a refusal to start, with one line saying why.
//!
//! [`seed`] is for values that are not secrets (a piece picker's
//! tie-breaks, the random characters of a peer id): the standard library's
//! per-process hash keys, which never fail.
//!
//! Tests inject a [`Source`] that fails, through [`bytes_from`].

use std::fmt;

/// The operating system's generator failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the operating system's random number generator failed ({}); no keys can be made without it",
            self.0
        )
    }
}

impl std::error::Error for Error {}

/// Where random bytes come from.
pub trait Source {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error>;
}

/// The operating system's generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct Os;

impl Source for Os {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        getrandom::fill(buf).map_err(|e| Error(e.to_string()))
    }
}

/// Fills `buf` from the operating system's generator.
pub fn fill(buf: &mut [u8]) -> Result<(), Error> {
    Os.fill(buf)
}

/// `N` bytes from the operating system's generator.
pub fn bytes<const N: usize>() -> Result<[u8; N], Error> {
    bytes_from(&mut Os)
}

/// `N` bytes from `source`.
pub fn bytes_from<const N: usize>(source: &mut dyn Source) -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    source.fill(&mut b)?;
    Ok(b)
}

/// A seed that differs between runs and between calls; not a secret.
pub fn seed(salt: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.write_u32(std::process::id());
    h.finish()
}

/// A source that always fails, for tests of the error paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct Broken;

impl Source for Broken {
    fn fill(&mut self, _buf: &mut [u8]) -> Result<(), Error> {
        Err(Error("injected failure".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_bytes_differ() {
        let a: [u8; 32] = bytes().unwrap();
        let b: [u8; 32] = bytes().unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0; 32]);
    }

    #[test]
    fn a_failing_source_is_an_error_with_one_clear_line() {
        let e = bytes_from::<32>(&mut Broken).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("random number generator failed"), "{text}");
        assert!(text.contains("injected failure"), "{text}");
        assert!(!text.contains('\n'));
    }

    #[test]
    fn seeds_differ_between_calls() {
        assert_ne!(seed(1), seed(1));
    }
}

/// A small, fast generator (xoshiro256**) for the protocol machines
/// (transaction and query ids, lookups), seeded by the caller from the
/// operating system's randomness; it never reads the generator itself. Query ids
/// need to be hard to guess, not secret: a guessed id lets a stranger send a
/// hit, which still has to come from a node the query went to.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: [u8; 32]) -> Rng {
        let mut s = [0u64; 4];
        for (i, w) in s.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&seed[i * 8..i * 8 + 8]);
            *w = u64::from_le_bytes(b);
        }
        if s == [0; 4] {
            s[0] = 0x9e37_79b9_7f4a_7c15;
        }
        Rng(s)
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        out
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}
