//! `Authorization` headers that carry an endpoint's key: the schemes the senders' configurable
//! headers allow (registries' notification endpoints, Zot's sink credentials, Azure DevOps'
//! service hooks), checked in constant time.

use base64::Engine as _;

use super::{unauthorized, Rejection};
use crate::signature::tokens_equal;

/// Which `Authorization` schemes carry the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `Bearer <key>`.
    Bearer,
    /// `Bearer <key>`, or `Basic` with the key as the password (any user name).
    BearerOrBasic,
    /// `Basic` with the key as the password (any user name).
    Basic,
}

/// Checks `Authorization` against the key, in constant time; the error never holds either.
pub(crate) fn authorize(header: Option<&str>, key: &[u8], scheme: Scheme) -> Result<(), Rejection> {
    let header = header.ok_or_else(|| unauthorized("Authorization header missing"))?;
    let (kind, credentials) = header
        .trim()
        .split_once(' ')
        .ok_or_else(|| unauthorized("Authorization is not `<scheme> <credentials>`"))?;
    let presented: Vec<u8> = if kind.eq_ignore_ascii_case("Bearer") && scheme != Scheme::Basic {
        credentials.trim().as_bytes().to_vec()
    } else if kind.eq_ignore_ascii_case("Basic") && scheme != Scheme::Bearer {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .map_err(|_| unauthorized("Authorization: Basic credentials are not base64"))?;
        let colon = decoded
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| unauthorized("Authorization: Basic credentials have no password"))?;
        decoded[colon + 1..].to_vec()
    } else {
        return Err(unauthorized("Authorization scheme is not accepted here"));
    };
    if tokens_equal(&presented, key) {
        Ok(())
    } else {
        Err(unauthorized("Authorization does not carry the key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_carry_the_key() {
        let key = b"registry-key-0123456789";
        let basic = |user: &str, pass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            )
        };
        let ok = |h: &str, s| authorize(Some(h), key, s).is_ok();
        assert!(ok("Bearer registry-key-0123456789", Scheme::Bearer));
        assert!(ok("bearer  registry-key-0123456789 ", Scheme::Bearer));
        assert!(ok(
            &basic("zot", "registry-key-0123456789"),
            Scheme::BearerOrBasic
        ));
        assert!(ok(
            &basic("", "registry-key-0123456789"),
            Scheme::BearerOrBasic
        ));
        assert!(!ok(
            &basic("zot", "registry-key-0123456789"),
            Scheme::Bearer
        ));
        assert!(!ok(
            &basic("registry-key-0123456789", "x"),
            Scheme::BearerOrBasic
        ));
        assert!(!ok("Bearer wrong", Scheme::BearerOrBasic));
        assert!(!ok("registry-key-0123456789", Scheme::Bearer));
        assert!(!ok("Basic !!!", Scheme::BearerOrBasic));
        assert!(authorize(None, key, Scheme::Bearer).is_err());
    }
}
