//! Untrusted text (from torrents, trackers, peers) made fit for a log line,
//! a terminal or the API. One rule everywhere: invalid UTF-8 replaced,
//! control characters (terminal escapes, newlines) shown as '?', and a
//! bound in bytes.

/// `bytes` as printable text of at most `max` bytes; a cut ends in '…'
/// (inside the bound) and falls on a character boundary.
pub fn printable(bytes: &[u8], max: usize) -> String {
    const MORE: char = '…';
    // Every two input bytes give at least one byte of output (a two-byte
    // control character becomes one '?'): what lies past twice `max` (and
    // a partial character) can only be cut.
    let bytes = bytes
        .get(..max.saturating_mul(2).saturating_add(4))
        .unwrap_or(bytes);
    let mut out: String = String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if out.len() > max {
        let mut end = max.saturating_sub(MORE.len_utf8());
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        if max >= MORE.len_utf8() {
            out.push(MORE);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn controls_invalid_utf8_and_bounds() {
        assert_eq!(printable(b"plain", 100), "plain");
        assert_eq!(printable(b"a\x1b[31mred\nx\x7f", 100), "a?[31mred?x?");
        assert_eq!(printable(b"bad \xff byte", 100), "bad \u{fffd} byte");
        assert_eq!(printable(b"", 0), "");
        // Cut: the mark fits inside the bound.
        assert_eq!(printable(b"abcdefgh", 6), "abc…");
        assert_eq!(printable(b"abcdef", 6), "abcdef");
        assert_eq!(printable(b"abcdefg", 2), "");
        // Two-byte controls (C1) shrink to one byte each.
        let c1 = "\u{85}".repeat(100);
        assert_eq!(printable(c1.as_bytes(), 100), "?".repeat(100));
        let c1 = "\u{85}".repeat(101);
        assert_eq!(
            printable(c1.as_bytes(), 100),
            format!("{}…", "?".repeat(97))
        );
        let mixed = format!("{}a\u{1F600}", "\u{85}".repeat(5));
        assert_eq!(printable(mixed.as_bytes(), 10), "?????a\u{1F600}");
        for max in 0..40 {
            for input in [
                "ééééééééé",
                "a\u{1F600}b\u{1F600}c\u{1F600}",
                "\x00\x01\x02abc",
            ] {
                let s = printable(input.as_bytes(), max);
                assert!(s.len() <= max, "{max}: {s:?}");
            }
        }
    }
}
