//! SHA-1, through one small interface with two backends.
//!
//! The default backend is `sha1_smol`: tiny, pure Rust, no dependencies, fast
//! enough on every board. The `hw-sha1` cargo feature switches to RustCrypto's
//! `sha1`, which detects SHA-NI (x86) or the ARMv8 crypto extensions at run
//! time and is about three times faster where they exist. Everything that
//! hashes (piece checks, info-hashes, torrent creation) goes through
//! [`Sha1`] or [`sha1`], so both backends pass the same tests.

/// A 20-byte SHA-1 digest.
pub type Digest = [u8; 20];

/// Name of the backend compiled in, for logs and benchmarks.
pub const BACKEND: &str = if cfg!(feature = "hw-sha1") {
    "sha1 (RustCrypto, CPU-detected)"
} else {
    "sha1_smol"
};

/// An incremental SHA-1 state.
#[derive(Clone, Default)]
pub struct Sha1 {
    #[cfg(not(feature = "hw-sha1"))]
    inner: sha1_smol::Sha1,
    #[cfg(feature = "hw-sha1")]
    inner: sha1::Sha1,
}

impl Sha1 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        #[cfg(feature = "hw-sha1")]
        sha1::Digest::update(&mut self.inner, data);
        #[cfg(not(feature = "hw-sha1"))]
        self.inner.update(data);
    }

    pub fn finish(self) -> Digest {
        #[cfg(feature = "hw-sha1")]
        {
            sha1::Digest::finalize(self.inner).into()
        }
        #[cfg(not(feature = "hw-sha1"))]
        {
            self.inner.digest().bytes()
        }
    }
}

/// SHA-1 of `data` in one call.
pub fn sha1(data: &[u8]) -> Digest {
    let mut h = Sha1::new();
    h.update(data);
    h.finish()
}

/// Lower-case hex of any bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Parses exactly 40 hex digits (either case) into a digest.
pub fn from_hex(s: &str) -> Option<Digest> {
    let bytes = s.as_bytes();
    if bytes.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            to_hex(&sha1(b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            to_hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let mut h = Sha1::new();
        for _ in 0..1000 {
            h.update(&[b'a'; 1000]);
        }
        assert_eq!(
            to_hex(&h.finish()),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn hex_round_trip() {
        let d = sha1(b"peerlet");
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        assert_eq!(from_hex(&to_hex(&d).to_uppercase()), Some(d));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(40)), None);
    }
}
