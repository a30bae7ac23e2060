//! Pieces of HTTP and URLs that the tracker client and the control API
//! share: RFC 3986 %-encoding and decoding, and what counts as a timeout.
//! Pure: no sockets, no clock.
//!
//! # No-panic contract
//!
//! [`percent_decode`] accepts any text and returns `None` on a broken
//! escape; the encoders accept any bytes.

use std::io;

/// What [`percent_encode_into`] leaves as it is besides the RFC 3986
/// unreserved characters (letters, digits, `-._~`): nothing (tracker
/// parameters: raw info-hashes and peer ids).
pub const KEEP_UNRESERVED: &[u8] = b"";
/// ... and `/` (control API query values, which are often paths).
pub const KEEP_PATH: &[u8] = b"/";
/// ... and `:/[]` (magnet link values, which are often URLs and addresses).
pub const KEEP_URL: &[u8] = b":/[]";

/// Appends `bytes` to `out`, RFC 3986 unreserved characters and those in
/// `keep` as they are, every other byte as `%XX` (upper-case hex).
pub fn percent_encode_into(bytes: &[u8], keep: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0x0f)] as char);
        }
    }
}

/// [`percent_encode_into`] a new string.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    percent_encode_into(s.as_bytes(), keep, &mut out);
    out
}

/// Decodes `%XX` escapes and `+` (a space, as in form encoding). `None` on a
/// broken escape or bytes that are not UTF-8. Used for magnet links and the
/// control API's query strings.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hi = (*hex.first()? as char).to_digit(16)?;
                let lo = (*hex.get(1)? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Whether an I/O error means "no answer in time": a read or write timeout
/// (`WouldBlock` on some systems, `TimedOut` on others).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_each_keep_set() {
        let s = "a b\u{e9}\n~:/[]&";
        assert_eq!(
            percent_encode(s, KEEP_UNRESERVED),
            "a%20b%C3%A9%0A~%3A%2F%5B%5D%26"
        );
        assert_eq!(percent_encode(s, KEEP_PATH), "a%20b%C3%A9%0A~%3A/%5B%5D%26");
        assert_eq!(percent_encode(s, KEEP_URL), "a%20b%C3%A9%0A~:/[]%26");
        let mut out = String::from("x=");
        percent_encode_into(&[0, 0xff, b'A'], KEEP_UNRESERVED, &mut out);
        assert_eq!(out, "x=%00%FFA");
        for keep in [KEEP_UNRESERVED, KEEP_PATH, KEEP_URL] {
            assert_eq!(percent_decode(&percent_encode(s, keep)).as_deref(), Some(s));
        }
    }

    #[test]
    fn decodes_and_refuses_broken_escapes() {
        assert_eq!(percent_decode("a+b%20c").as_deref(), Some("a b c"));
        for bad in ["%", "%4", "%zz", "%ff", "a%e9"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn timeouts() {
        assert!(is_timeout(&io::ErrorKind::WouldBlock.into()));
        assert!(is_timeout(&io::ErrorKind::TimedOut.into()));
        assert!(!is_timeout(&io::ErrorKind::ConnectionReset.into()));
    }
}
