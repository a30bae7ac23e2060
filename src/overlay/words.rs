//! Search words: how a name or a query is cut into words, and when a query
//! matches a name. Used by the packet format (a query must have a word),
//! the content table and the node.

/// The words of a name or a query: lower case, split at anything that is
/// not a letter or digit; at most 16 words.
pub fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| w.to_lowercase())
        .collect()
}

/// True when every query word starts some word of the name
/// ("ubu 24" matches "Ubuntu-24.04-desktop.iso").
pub fn matches(query: &[String], name: &str) -> bool {
    if query.is_empty() {
        return false;
    }
    let name_words = words_all(name);
    query
        .iter()
        .all(|q| name_words.iter().any(|w| w.starts_with(q.as_str())))
}

fn words_all(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}
