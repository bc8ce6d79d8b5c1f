//! Webhook sources: one file per provider, each with one pure entry point
//! `handle(&Incoming, &Endpoint) -> Result<Outcome, HookError>`.
//!
//! Adding a provider = a file here, a line in `sources!` below, a fixture folder and a README row.
//! The `--help` list, the README table check and the unknown-source error all read [`Source::ALL`].

pub mod bitbucket_cloud;
pub mod bitbucket_server;
pub mod dockerhub;
pub mod gcr;
pub mod github;
pub mod gitlab;
pub mod harbor;
pub mod nexus;
pub mod quay;

use crate::change::Change;
use crate::config::Endpoint;
use crate::error::HookError;

/// Declares the closed set of sources once: the enum, its config names, and `ALL`.
macro_rules! sources {
    ($($variant:ident => $module:ident, $auth:literal;)+) => {
        /// A webhook provider, named in the config's `source:` exactly as the Go flux-recv names it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Source { $($variant),+ }

        impl Source {
            /// Every source, in the order `--help` and errors list them.
            pub const ALL: &'static [Source] = &[$(Source::$variant),+];

            /// The config name (`source: GitHub`).
            pub fn name(self) -> &'static str {
                match self { $(Source::$variant => stringify!($variant)),+ }
            }

            /// How the provider's deliveries are authenticated, for `--help` and the README.
            pub fn authentication(self) -> &'static str {
                match self { $(Source::$variant => $auth),+ }
            }

            /// Verifies and parses one delivery.
            pub fn handle(self, incoming: &Incoming, endpoint: &Endpoint) -> Result<Outcome, HookError> {
                match self { $(Source::$variant => $module::handle(incoming, endpoint)),+ }
            }
        }
    };
}

sources! {
    GitHub => github, "HMAC: X-Hub-Signature-256 (or X-Hub-Signature sha1/sha256/sha512)";
    GitLab => gitlab, "token: X-Gitlab-Token equals the key";
    BitbucketCloud => bitbucket_cloud, "the URL; X-Hub-Signature sha256 HMAC when present";
    BitbucketServer => bitbucket_server, "HMAC: X-Hub-Signature";
    DockerHub => dockerhub, "the URL is the secret (Docker Hub signs nothing)";
    Quay => quay, "the URL is the secret (Quay signs nothing)";
    Harbor => harbor, "token: Authorization equals the key";
    Nexus => nexus, "HMAC: X-Nexus-Webhook-Signature (SHA-1)";
    GoogleContainerRegistry => gcr, "the URL; with gcr.audience, the Pub/Sub push token (Bearer), checked at Google's tokeninfo";
}

impl Source {
    /// The source with this exact config name.
    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// A delivery id carried in the body rather than a header (Pub/Sub's `message.messageId`).
    pub fn delivery_id_in_body(self, body: &[u8]) -> Option<String> {
        match self {
            Source::GoogleContainerRegistry => gcr::message_id(body).map(|id| printable(&id)),
            _ => None,
        }
    }

    /// All config names, comma separated, for error messages and `--help`.
    pub fn names() -> String {
        Source::ALL
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a verified delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Tell fluxd about these changes (in order).
    Notify(Vec<Change>),
    /// Authentic and well-formed, but nothing to do; the reason is short and fixed in shape.
    Ignored(String),
    /// A ping or test delivery.
    Pong,
}

/// One request as a source sees it: no sockets, just the head and the whole body.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    pub method: String,
    pub path: String,
    /// Header names as sent; looked up case-insensitively.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Incoming {
    /// The first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// The first header named `name` (ASCII case-insensitive) in a header list.
pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The provider's own delivery id, when it sent one (for the log line only).
pub fn delivery_id(headers: &[(String, String)]) -> Option<&str> {
    const HEADERS: [&str; 6] = [
        "X-GitHub-Delivery",
        "Idempotency-Key",
        "X-Gitlab-Event-UUID",
        "X-Request-UUID",
        "X-Request-Id",
        "X-Nexus-Webhook-Delivery",
    ];
    HEADERS.iter().find_map(|h| header_in(headers, h))
}

/// A header the source needs, or 400 naming it.
pub(crate) fn required_header<'a>(
    incoming: &'a Incoming,
    name: &str,
) -> Result<&'a str, HookError> {
    incoming
        .header(name)
        .ok_or_else(|| HookError::BadRequest(format!("{name} header missing")))
}

/// Decodes a JSON payload strictly (types checked, unknown fields allowed), or 400 naming the
/// payload kind and serde's reason (which holds no secret: the body is the sender's own).
pub(crate) fn decode_json<'a, T: serde::Deserialize<'a>>(
    what: &str,
    body: &'a [u8],
) -> Result<T, HookError> {
    serde_json::from_slice(body).map_err(|e| HookError::BadRequest(format!("{what}: {e}")))
}

/// Decodes the first JSON value of a payload and ignores whatever follows it, as the Go
/// original's stream decoder did for DockerHub, Quay, Harbor and GCR (a GCR delivery seen in the
/// wild ends in a stray `}`).
pub(crate) fn decode_first_json<'a, T: serde::Deserialize<'a>>(
    what: &str,
    body: &'a [u8],
) -> Result<T, HookError> {
    match serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .next()
    {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(HookError::BadRequest(format!("{what}: {e}"))),
        None => Err(HookError::BadRequest(format!("{what}: empty body"))),
    }
}

/// An image change from a pushed reference, or 400 naming the reference's problem.
pub(crate) fn image_change(reference: &str) -> Result<Change, HookError> {
    Change::image(reference)
        .map_err(|e| HookError::BadRequest(format!("{e}: {:?}", printable(reference))))
}

/// A sender-chosen name (event, action) made safe for a reply and a log line: printable ASCII,
/// at most 64 characters.
pub(crate) fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the per-source unit tests.
    use super::*;
    use crate::config::{Endpoint, Key};

    pub const KEY: &[u8] = b"0123456789abcdef-test-key";

    pub fn endpoint(source: Source) -> Endpoint {
        Endpoint::new(0, source, Key::new(KEY.to_vec()), "test.key".into(), None)
    }

    pub fn incoming(headers: &[(&str, &str)], body: &[u8]) -> Incoming {
        Incoming {
            method: "POST".into(),
            path: "/hook/x".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    pub fn endpoint_with_host(source: Source, host: &str) -> Endpoint {
        Endpoint::new(
            0,
            source,
            Key::new(KEY.to_vec()),
            "test.key".into(),
            Some(host.into()),
        )
    }

    pub fn image(domain: &str, image: &str) -> Change {
        Change::Image(crate::change::ImageName {
            domain: domain.into(),
            image: image.into(),
        })
    }

    pub fn git(url: &str, branch: &str) -> Change {
        Change::Git {
            url: url.into(),
            branch: branch.into(),
        }
    }

    pub fn is_bad_request(r: &Result<Outcome, HookError>) -> bool {
        matches!(r, Err(HookError::BadRequest(_)))
    }

    pub fn is_unauthorized(r: &Result<Outcome, HookError>) -> bool {
        matches!(r, Err(HookError::Unauthorized(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_exact() {
        for source in Source::ALL {
            assert_eq!(Source::from_name(source.name()), Some(*source));
            assert_eq!(Source::from_name(&source.name().to_lowercase()), None);
        }
        assert_eq!(Source::from_name("Github"), None);
    }

    #[test]
    fn header_lookup_ignores_case() {
        let incoming = testing::incoming(&[("x-github-event", "push")], b"");
        assert_eq!(incoming.header("X-GitHub-Event"), Some("push"));
        assert_eq!(incoming.header("X-Gitlab-Event"), None);
    }

    #[test]
    fn printable_strips_control_bytes_and_bounds_length() {
        assert_eq!(printable("issue\r\nX: y"), "issueX: y");
        assert_eq!(printable(&"a".repeat(200)).len(), 64);
    }
}
