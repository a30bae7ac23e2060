//! Magnet links (BEP 9): `magnet:?xt=urn:btih:<hash>&dn=<name>&tr=<url>&x.pe=<host:port>`.
//!
//! The info-hash may be 40 hex digits or 32 base32 characters. Parameters we
//! do not use are ignored; a second, different `btih` or a v2-only link is
//! refused. Input is capped at [`MAX_LEN`] bytes and [`MAX_PARAMS`] parameters,
//! and so is the canonical form ([`Magnet`]'s `Display`, which escapes more
//! than links usually do), so every magnet that parses can be written out and
//! parsed back. Never panics on any input.

use super::InfoHash;
use std::fmt;

/// Longest magnet link accepted.
pub const MAX_LEN: usize = 16 * 1024;
/// Most `&`-separated parameters accepted.
pub const MAX_PARAMS: usize = 256;

/// A parsed magnet link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `dn`: display name.
    pub name: Option<String>,
    /// `tr`: tracker URLs, in order, without duplicates.
    pub trackers: Vec<String>,
    /// `x.pe`: peer addresses as `host:port` (IPv6 as `[addr]:port`).
    pub peers: Vec<String>,
}

/// Why a magnet link was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MagnetError {
    NotMagnet,
    TooLong(usize),
    /// The canonical form would be this many bytes, over [`MAX_LEN`].
    CanonicalTooLong(usize),
    TooManyParams,
    BadEscape(String),
    NoInfoHash,
    BadInfoHash(String),
    ConflictingInfoHashes,
    V2Only,
    BadPeer(String),
}

impl fmt::Display for MagnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MagnetError::NotMagnet => write!(f, "not a magnet link (it must start with 'magnet:?')"),
            MagnetError::TooLong(n) => write!(f, "magnet link of {n} bytes is longer than the limit of {MAX_LEN}"),
            MagnetError::CanonicalTooLong(n) => write!(
                f,
                "magnet link would be {n} bytes once written in canonical form, longer than the limit of {MAX_LEN}"
            ),
            MagnetError::TooManyParams => write!(f, "magnet link has more than {MAX_PARAMS} parameters"),
            MagnetError::BadEscape(p) => write!(f, "bad %-escape in magnet parameter '{p}'"),
            MagnetError::NoInfoHash => write!(f, "magnet link has no 'xt=urn:btih:' info-hash"),
            MagnetError::BadInfoHash(h) => {
                write!(f, "magnet info-hash '{h}' is neither 40 hex digits nor 32 base32 characters")
            }
            MagnetError::ConflictingInfoHashes => write!(f, "magnet link names two different info-hashes"),
            MagnetError::V2Only => write!(f, "magnet link has only a BitTorrent v2 hash (urn:btmh), which peerlet does not support"),
            MagnetError::BadPeer(p) => write!(f, "magnet peer 'x.pe={p}' is not host:port"),
        }
    }
}

impl std::error::Error for MagnetError {}

impl Magnet {
    pub fn parse(s: &str) -> Result<Magnet, MagnetError> {
        if s.len() > MAX_LEN {
            return Err(MagnetError::TooLong(s.len()));
        }
        let query = s
            .strip_prefix("magnet:?")
            .or_else(|| {
                s.get(..8)
                    .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
                    .and_then(|_| s.get(8..))
            })
            .ok_or(MagnetError::NotMagnet)?;
        let mut info_hash: Option<InfoHash> = None;
        let mut saw_v2 = false;
        let mut m = Magnet {
            info_hash: InfoHash([0; 20]),
            name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
        };
        for (n, param) in query.split('&').enumerate() {
            if n >= MAX_PARAMS {
                return Err(MagnetError::TooManyParams);
            }
            if param.is_empty() {
                continue;
            }
            let (key, raw_value) = param.split_once('=').unwrap_or((param, ""));
            let value = percent_decode(raw_value)
                .ok_or_else(|| MagnetError::BadEscape(param.to_string()))?;
            // Keys may carry an index suffix: `xt.1`, `tr.2`.
            let base_key = match key.split_once('.') {
                Some((k, idx)) if idx.bytes().all(|b| b.is_ascii_digit()) => k,
                _ => key,
            };
            match base_key {
                "xt" => {
                    if let Some(h) = value.strip_prefix("urn:btih:") {
                        let parsed = InfoHash::parse(h)
                            .ok_or_else(|| MagnetError::BadInfoHash(h.to_string()))?;
                        if info_hash.is_some_and(|old| old != parsed) {
                            return Err(MagnetError::ConflictingInfoHashes);
                        }
                        info_hash = Some(parsed);
                    } else if value.starts_with("urn:btmh:") {
                        saw_v2 = true;
                    }
                }
                "dn" => m.name = Some(value),
                "tr" if !value.is_empty() && !m.trackers.contains(&value) => m.trackers.push(value),
                "x.pe" => {
                    if !valid_host_port(&value) {
                        return Err(MagnetError::BadPeer(value));
                    }
                    if !m.peers.contains(&value) {
                        m.peers.push(value);
                    }
                }
                _ => {}
            }
        }
        m.info_hash = match info_hash {
            Some(h) => h,
            None if saw_v2 => return Err(MagnetError::V2Only),
            None => return Err(MagnetError::NoInfoHash),
        };
        // Escaping can triple a value (a raw 'é' or '+' becomes "%C3%A9" or
        // "%20"), so a link under the cap can have a canonical form over it.
        let canonical_len = m.canonical_len();
        if canonical_len > MAX_LEN {
            return Err(MagnetError::CanonicalTooLong(canonical_len));
        }
        Ok(m)
    }

    /// Length in bytes of the canonical form, without building it.
    fn canonical_len(&self) -> usize {
        struct Count(usize);
        impl fmt::Write for Count {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 += s.len();
                Ok(())
            }
        }
        let mut count = Count(0);
        // Writing into a counter cannot fail.
        let _ = fmt::write(&mut count, format_args!("{self}"));
        count.0
    }
}

impl fmt::Display for Magnet {
    /// The canonical form: hex info-hash, then `dn`, `tr`..., `x.pe`...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "magnet:?xt=urn:btih:{}", self.info_hash.to_hex())?;
        if let Some(name) = &self.name {
            write!(f, "&dn={}", percent_encode(name))?;
        }
        for tr in &self.trackers {
            write!(f, "&tr={}", percent_encode(tr))?;
        }
        for pe in &self.peers {
            write!(f, "&x.pe={}", percent_encode(pe))?;
        }
        Ok(())
    }
}

/// `host:port` or `[v6]:port`, port 1-65535, host non-empty without spaces.
fn valid_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty() && !host.contains([':', ' ', '/', '[', ']'])
    };
    port_ok && host_ok
}

pub use crate::http::percent_decode;

/// Escapes everything but unreserved characters and a few safe in URLs.
fn percent_encode(s: &str) -> String {
    crate::http::percent_encode(s, crate::http::KEEP_URL)
}

/// RFC 4648 base32 (either case), exactly 32 characters → 20 bytes.
pub(super) fn base32_decode(s: &str) -> Option<[u8; 20]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0;
    let mut n = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (n == 20).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn hex_and_base32() {
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=Some+File%21&tr=udp%3A%2F%2Ft%3A80&x.pe=127.0.0.1:6881&x.pe=[::1]:7000")).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.name.as_deref(), Some("Some File!"));
        assert_eq!(m.trackers, vec!["udp://t:80".to_string()]);
        assert_eq!(
            m.peers,
            vec!["127.0.0.1:6881".to_string(), "[::1]:7000".to_string()]
        );
        let b32 = Magnet::parse("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(b32.info_hash.to_hex(), HEX);
        let lower = Magnet::parse("magnet:?xt=urn:btih:yex6dqdlxisuvhoj6um3gnnkpqjwpkek").unwrap();
        assert_eq!(lower.info_hash.to_hex(), HEX);
    }

    #[test]
    fn round_trip() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=a%20b%26c&tr=http://t/a?x=1&x.pe=h:1"
        ))
        .unwrap();
        let again = Magnet::parse(&m.to_string()).unwrap();
        assert_eq!(m, again);
        assert_eq!(percent_encode("a b\u{e9}\n~"), "a%20b%C3%A9%0A~");
        assert!(m
            .to_string()
            .starts_with(&format!("magnet:?xt=urn:btih:{HEX}&dn=a%20b%26c")));
    }

    #[test]
    fn errors() {
        let e = |s: &str| Magnet::parse(s).unwrap_err().to_string();
        assert_eq!(
            e("http://x"),
            "not a magnet link (it must start with 'magnet:?')"
        );
        assert_eq!(
            e("magnet:?dn=x"),
            "magnet link has no 'xt=urn:btih:' info-hash"
        );
        assert_eq!(
            e("magnet:?xt=urn:btih:1234"),
            "magnet info-hash '1234' is neither 40 hex digits nor 32 base32 characters"
        );
        assert_eq!(e("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKE1"), "magnet info-hash 'YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKE1' is neither 40 hex digits nor 32 base32 characters");
        assert!(e(&format!(
            "magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{}",
            "0".repeat(40)
        ))
        .contains("two different"));
        assert!(e("magnet:?xt=urn:btmh:1220abcd").contains("v2"));
        assert!(e(&format!("magnet:?xt=urn:btih:{HEX}&dn=%zz")).contains("bad %-escape"));
        assert!(e(&format!("magnet:?xt=urn:btih:{HEX}&x.pe=nope")).contains("not host:port"));
        assert!(e(&format!("magnet:?xt=urn:btih:{HEX}&x.pe=h:0")).contains("not host:port"));
        assert!(e(&format!("magnet:?xt=urn:btih:{HEX}&dn=%")).contains("bad %-escape"));
        assert!(e(&"a".repeat(MAX_LEN + 1)).contains("longer than"));
    }

    #[test]
    fn canonical_form_within_the_cap() {
        // Found by fuzz/magnet_parse: a link under MAX_LEN whose canonical
        // form (every '+' written "%20") is over it parsed, but its
        // to_string() did not parse back.
        let head = format!("magnet:?xt=urn:btih:{HEX}&dn=");
        let long = format!("{head}{}", "+".repeat(6000));
        assert!(long.len() <= MAX_LEN);
        assert_eq!(
            Magnet::parse(&long),
            Err(MagnetError::CanonicalTooLong(head.len() + 3 * 6000))
        );
        assert!(Magnet::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("once written in canonical form"));
        // Right at the cap: accepted, and the canonical form parses back.
        let fits = format!("{head}{}", "+".repeat((MAX_LEN - head.len()) / 3));
        let m = Magnet::parse(&fits).unwrap();
        assert!(m.to_string().len() <= MAX_LEN);
        assert_eq!(Magnet::parse(&m.to_string()), Ok(m));
    }
}
