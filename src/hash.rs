//! SHA-1, through one small interface with two backends.
//!
//! `sha1_smol` is tiny, pure Rust and fast enough on every board.
//! RustCrypto's `sha1` uses SHA-NI (x86) or the ARMv8 crypto extensions
//! and is about three times faster where the CPU has them (a leecher's
//! CPU time drops by about 40 %). The backend is chosen once, at run time:
//! RustCrypto's where the CPU has the instructions, `sha1_smol` elsewhere
//! (a Raspberry Pi 4 or any 32-bit ARM board), so no machine gets slower.
//! The `hw-sha1` cargo feature takes RustCrypto's everywhere (its portable
//! code where the instructions are missing), which lets the tests run that
//! backend on any machine. Everything that hashes (piece checks,
//! info-hashes, torrent creation) goes through [`Sha1`] or [`sha1`], so
//! both backends pass the same tests.

use std::sync::atomic::{AtomicU8, Ordering};

/// A 20-byte SHA-1 digest.
pub type Digest = [u8; 20];

/// Name of the backend in use, for logs and benchmarks.
pub fn backend() -> &'static str {
    if use_crypto() {
        if cfg!(feature = "hw-sha1") && !cpu_has_sha1() {
            "sha1 (RustCrypto, portable: forced by the hw-sha1 feature)"
        } else {
            "sha1 (RustCrypto, CPU instructions)"
        }
    } else {
        "sha1_smol"
    }
}

/// Whether this CPU has SHA-1 instructions that RustCrypto's `sha1` uses.
pub fn cpu_has_sha1() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// 0: not decided yet, 1: sha1_smol, 2: RustCrypto.
static CHOICE: AtomicU8 = AtomicU8::new(0);

fn use_crypto() -> bool {
    if cfg!(feature = "hw-sha1") {
        return true;
    }
    // No SHA-1 instructions for RustCrypto's code to use on other
    // architectures: decided at compile time, so its code is not linked
    // (the static armv7 build stays under 2 MiB).
    if cfg!(not(any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "aarch64"
    ))) {
        return false;
    }
    match CHOICE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let crypto = cpu_has_sha1();
            CHOICE.store(if crypto { 2 } else { 1 }, Ordering::Relaxed);
            crypto
        }
    }
}

// RustCrypto's backend exists only where it can be chosen: on 32-bit ARM
// (without `hw-sha1`) its code is not even linked (the static armv7 build
// stays under 2 MiB).
#[derive(Clone)]
enum Inner {
    Smol(sha1_smol::Sha1),
    #[cfg(any(
        feature = "hw-sha1",
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "aarch64"
    ))]
    Crypto(sha1::Sha1),
}

/// An incremental SHA-1 state.
#[derive(Clone)]
pub struct Sha1 {
    inner: Inner,
}

impl Default for Sha1 {
    fn default() -> Self {
        Self::with_backend(use_crypto())
    }
}

impl Sha1 {
    pub fn new() -> Self {
        Self::default()
    }

    /// A state of the given backend (RustCrypto's when `crypto`).
    fn with_backend(crypto: bool) -> Self {
        #[cfg(any(
            feature = "hw-sha1",
            target_arch = "x86",
            target_arch = "x86_64",
            target_arch = "aarch64"
        ))]
        if crypto {
            return Sha1 {
                inner: Inner::Crypto(<sha1::Sha1 as sha1::Digest>::new()),
            };
        }
        #[cfg(not(any(
            feature = "hw-sha1",
            target_arch = "x86",
            target_arch = "x86_64",
            target_arch = "aarch64"
        )))]
        let _ = crypto;
        Sha1 {
            inner: Inner::Smol(sha1_smol::Sha1::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.inner {
            Inner::Smol(h) => h.update(data),
            #[cfg(any(
                feature = "hw-sha1",
                target_arch = "x86",
                target_arch = "x86_64",
                target_arch = "aarch64"
            ))]
            Inner::Crypto(h) => sha1::Digest::update(h, data),
        }
    }

    pub fn finish(self) -> Digest {
        match self.inner {
            Inner::Smol(h) => h.digest().bytes(),
            #[cfg(any(
                feature = "hw-sha1",
                target_arch = "x86",
                target_arch = "x86_64",
                target_arch = "aarch64"
            ))]
            Inner::Crypto(h) => sha1::Digest::finalize(h).into(),
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

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) as BEP 40 (peer
/// priority) and BEP 42 (DHT node ids) use it: not a cryptographic hash.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
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
    fn both_backends_agree() {
        // Lengths around the 64-byte block and its padding, pieces fed in
        // uneven slices.
        let mut data = vec![0u8; 70_000];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        for len in [
            0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 16_384, 70_000,
        ] {
            let mut a = Sha1::with_backend(false);
            let mut b = Sha1::with_backend(true);
            for chunk in data[..len].chunks(777) {
                a.update(chunk);
                b.update(chunk);
            }
            assert_eq!(a.finish(), b.finish(), "length {len}");
        }
        assert!(!backend().is_empty());
    }

    #[test]
    fn hex_round_trip() {
        let d = sha1(b"peerlet");
        assert_eq!(from_hex(&to_hex(&d)), Some(d));
        assert_eq!(from_hex(&to_hex(&d).to_uppercase()), Some(d));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(40)), None);
    }

    #[test]
    fn crc32c_known_values() {
        // RFC 3720 B.4 and the common check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        assert_eq!(crc32c(b""), 0);
    }
}
