//! Text both the transport and the providers need (the ground layer): a sender-chosen value made
//! safe to show, header lookup, and the cause kept for a log line.

/// A cause kept for the log, with its own `source()` chain.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A sender-chosen value (an event name, a header value, an id) made safe for a reply and a log
/// line: printable ASCII and spaces, at most 64 characters.
pub fn printable(value: &str) -> String {
    // Sized up front: collected char by char, a 36-character delivery id took 4 allocations.
    let mut out = String::with_capacity(value.len().min(64));
    out.extend(
        value
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(64),
    );
    out
}

/// The first header named `name` (ASCII case-insensitive) in a header list.
pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_strips_control_bytes_and_bounds_length() {
        assert_eq!(printable("issue\r\nX: y"), "issueX: y");
        assert_eq!(printable(&"a".repeat(200)).len(), 64);
    }

    #[test]
    fn header_lookup_ignores_case() {
        let headers = vec![("x-github-event".to_owned(), "push".to_owned())];
        assert_eq!(header_in(&headers, "X-GitHub-Event"), Some("push"));
        assert_eq!(header_in(&headers, "X-Gitlab-Event"), None);
    }
}
