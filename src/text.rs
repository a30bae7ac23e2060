//! Untrusted text (from torrents, trackers, peers) made fit for a log line,
//! a terminal or the API. One rule everywhere ([`hidden`]): invalid UTF-8
//! replaced, control characters (C0 and C1: terminal escapes, OSC titles,
//! bells, newlines) and the Unicode bidirectional controls (which make
//! `abc\u{202e}txt.exe` display as `abcexe.txt`) shown as '?'.
//! [`printable`] also bounds the length; [`for_terminal`] keeps the line
//! breaks of a message (errors, log records) and nothing else.

/// True for a character that must never reach a terminal as it is: a C0
/// or C1 control (DEL included) or a bidirectional formatting control
/// (U+061C, U+200E–U+200F, U+202A–U+202E, U+2066–U+2069).
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every [`hidden`] character but '\n' shown as '?': what
/// an error message or a log record may carry to a terminal. Borrowed
/// when there is nothing to change.
pub fn for_terminal(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && hidden(c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| if c != '\n' && hidden(c) { '?' } else { c })
        .collect::<String>()
        .into()
}

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
        .map(|c| if hidden(c) { '?' } else { c })
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
    use super::{for_terminal, hidden, printable};

    #[test]
    fn bidi_controls_are_hidden() {
        assert_eq!(
            printable("abc\u{202e}txt.exe".as_bytes(), 100),
            "abc?txt.exe"
        );
        for c in [
            '\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202d}', '\u{2066}', '\u{2069}',
        ] {
            assert!(hidden(c), "{c:?}");
        }
        // Neighbours stay: letters, a zero-width joiner in an emoji, accents.
        for c in ['a', '\u{200d}', '\u{2065}', '\u{206a}', '\u{202f}', 'é'] {
            assert!(!hidden(c), "{c:?}");
        }
    }

    #[test]
    fn terminal_text_keeps_line_breaks_only() {
        assert!(matches!(
            for_terminal("plain\nlines"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            for_terminal("a\x1b[2J\x1b]0;title\x07b\tc\r\n\u{9b}d\u{202e}e"),
            "a?[2J?]0;title?b?c?\n?d?e"
        );
        let out = for_terminal("\x00\x1f\x7f\u{80}\u{9f}\u{2067}");
        assert!(out.chars().all(|c| c == '?'), "{out:?}");
    }

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
