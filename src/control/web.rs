//! The web page the control server answers at `/`: one HTML file, one
//! script and one style sheet, compiled into the binary from
//! `src/control/web/` (no CDN, works offline). The page only calls the JSON
//! API on its own origin; the server's Host and Origin checks apply to these
//! routes as to every other, and [`SECURITY_HEADERS`] go with every answer.
//! This module does no I/O and knows nothing of the engine.

/// Headers sent with every answer of the control server: the page loads
/// its script and style from the same origin only (no inline code), may
/// not be framed, and leaks no referrer. JSON answers are not harmed by them.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
         object-src 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
];

/// The files of the page: (path, Content-Type, bytes).
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("web/app.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_str!("web/app.css"),
    ),
];

/// The Content-Type and bytes of the page's file at `path`, if it is one.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ctype, text)| (*ctype, text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_small_and_self_contained() {
        let total: usize = ASSETS.iter().map(|(_, _, t)| t.len()).sum();
        assert!(total < 64 * 1024, "the page is {total} bytes");
        for (path, _, text) in ASSETS {
            // Nothing from elsewhere, no inline handlers the CSP would block.
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{path}"
            );
            assert!(!text.contains(" onclick="), "{path}");
            assert!(!text.contains("innerHTML"), "{path}");
        }
        assert!(asset("/").is_some_and(|(t, _)| t.starts_with("text/html")));
        assert!(asset("/app.js").is_some());
        assert!(asset("/nope").is_none());
    }
}
