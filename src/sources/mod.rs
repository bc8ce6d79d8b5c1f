//! Webhook sources: one file per provider, each pure: [`Incoming`] + the endpoint's [`Settings`]
//! → [`Outcome`] or a [`Rejection`]. No sockets, no logging, no config, no status policy; the one
//! network check a provider needs (GCR's token) is passed in as a [`TokenCheck`].
//!
//! Adding a provider = a file here, a line in `sources!` below, its fixtures and a README row.
//! Each file holds everything about its provider: `handle`, `delivery_id` and `sample` (a good
//! delivery for tests and fuzzing). The `--help` list, the README table check, the metrics series
//! and the unknown-source error all read [`Source::ALL`].

pub mod acr;
pub mod artifactory;
mod authorization;
pub mod azure_devops;
pub mod bitbucket_cloud;
pub mod bitbucket_server;
mod bounds;
pub mod distribution;
pub mod dockerhub;
mod events;
pub mod gcr;
pub mod generic;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod harbor;
pub mod nexus;
pub mod quay;
pub mod zot;

pub(crate) use bounds::{bounded_name, Bounded, Changes};
pub use bounds::{MAX_CHANGES, MAX_NAME_BYTES};

use std::sync::Arc;

use crate::change::Change;
use crate::signature::{Key, StandardHeaders};
pub use crate::text::{header_in, printable, Cause};

/// Declares the closed set of sources once: the enum, its config names, and its dispatch.
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

            /// Verifies and parses one delivery. Whatever the provider made of it, the changes
            /// are held to the bounds of [`Changes`]: at most [`MAX_CHANGES`], distinct, each
            /// name at most [`MAX_NAME_BYTES`].
            pub fn handle(self, incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
                match self { $(Source::$variant => $module::handle(incoming, settings)),+ }
                    .and_then(Outcome::bounded)
            }

            /// The provider's own id of a delivery, when it sent one (for the log line and
            /// `X-Request-Id`): from a header, or (Pub/Sub) from the body.
            pub fn delivery_id(self, headers: &[(String, String)], body: &[u8]) -> Option<String> {
                match self { $(Source::$variant => $module::delivery_id(headers, body)),+ }
                    .map(|id| printable(&id))
            }

            /// A delivery of the provider's main notifying event carrying `body`, authenticated
            /// with `key` as the provider would: for tests, fuzzing, examples and (Generic) `flux-recv notify`.
            pub fn sample(self, key: &[u8], body: &[u8]) -> Incoming {
                match self { $(Source::$variant => $module::sample(key, body)),+ }
            }

            /// A small body that [`Source::sample`] turns into a notifying delivery.
            pub fn sample_body(self) -> &'static [u8] {
                match self { $(Source::$variant => $module::SAMPLE_BODY),+ }
            }

            /// Whether the endpoint's `registryHost` is needed by the provider's payloads.
            pub fn registry_host(self) -> RegistryHost {
                match self { $(Source::$variant => $module::REGISTRY_HOST),+ }
            }
        }
    };
}

sources! {
    GitHub => github, "HMAC: X-Hub-Signature-256 (or X-Hub-Signature sha1/sha256/sha512)";
    GitLab => gitlab, "token: X-Gitlab-Token equals the key; with a signing token (whsec_…) as the key, the Standard Webhooks signature";
    BitbucketCloud => bitbucket_cloud, "the URL; X-Hub-Signature sha256 HMAC when present, required with requireSignature: true";
    BitbucketServer => bitbucket_server, "HMAC: X-Hub-Signature";
    DockerHub => dockerhub, "the URL is the secret (Docker Hub signs nothing)";
    Quay => quay, "the URL is the secret (Quay signs nothing)";
    Harbor => harbor, "token: Authorization equals the key";
    Nexus => nexus, "HMAC: X-Nexus-Webhook-Signature (SHA-1)";
    GoogleContainerRegistry => gcr, "the URL; with gcr.audience, the Pub/Sub push token (Bearer), checked at Google's tokeninfo";
    Distribution => distribution, "token: Authorization: Bearer <key>, a header set on the registry's endpoint; CNCF Distribution (registry:2, v3) and GitLab's container registry";
    Zot => zot, "token: Authorization: Bearer <key> (the sink's credentials.token), or Basic with the key as password";
    AzureContainerRegistry => acr, "token: Authorization: Bearer <key>, a custom header of the webhook";
    Artifactory => artifactory, "token: X-JFrog-Event-Auth equals the key, or is its HMAC-SHA256 of the body";
    Gitea => gitea, "HMAC: X-Gitea-Signature (Forgejo: X-Forgejo-Signature, Gogs: X-Gogs-Signature), hex SHA-256; for Gitea, Forgejo and Gogs";
    AzureDevOps => azure_devops, "token: HTTP Basic with the key as the password, set on the service hook";
    Generic => generic, "HMAC: X-Signature sha256= (sha1=, sha512=) of the body, or Standard Webhooks headers; for CI pipelines and `flux-recv notify`";
}

impl Source {
    /// The source with this exact config name.
    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.iter().copied().find(|s| s.name() == name)
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

/// What a provider makes of the endpoint's `registryHost` (always also part of the route
/// digest, as in the Go original).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryHost {
    /// Its payloads are git pushes, or name their images in full: only the digest uses it.
    Unused,
    /// Its payloads name a host; `registryHost`, when set, replaces it (the name workloads
    /// pull by can differ from the host the registry sees behind a proxy).
    Overrides,
    /// Its payloads name no host: without it, images are announced without one. A warning (kept
    /// valid for the Go original's configs).
    Recommended,
    /// Its payloads name no host, and the config is refused without it.
    Required,
}

/// What one endpoint's provider needs besides the request: the narrow part of the config it reads.
#[derive(Clone)]
pub struct Settings {
    pub key: Key,
    /// The registry host for payloads that name none (Nexus).
    pub registry_host: Option<String>,
    /// GCR: authenticate Pub/Sub pushes by their token.
    pub gcr: Option<gcr::PushAuth>,
    /// Where tokens are checked (GCR with an audience); passed in, so providers make no calls.
    pub token_check: Option<Arc<dyn TokenCheck>>,
    /// Refuse deliveries without a signature where the provider makes it optional
    /// (BitbucketCloud's `requireSignature`).
    pub require_signature: bool,
}

impl Settings {
    /// Settings with just a key.
    pub fn new(key: Key) -> Settings {
        Settings {
            key,
            registry_host: None,
            gcr: None,
            token_check: None,
            require_signature: false,
        }
    }
}

/// Checks a bearer token at an authority (Google's tokeninfo for GCR pushes). The error says
/// why, and never holds the token.
pub trait TokenCheck: Send + Sync {
    fn check(
        &self,
        url: &str,
        token: &str,
        audience: &str,
        email: Option<&str>,
    ) -> Result<(), Cause>;
}

/// What a verified delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Tell the downstreams about these changes (in order).
    Notify(Vec<Change>),
    /// Authentic and well-formed, but nothing to do; the reason is short and fixed in shape.
    Ignored(String),
    /// A ping or test delivery.
    Pong,
}

impl Outcome {
    /// The outcome with its changes held to the bounds of [`Changes`].
    fn bounded(self) -> Result<Outcome, Rejection> {
        match self {
            Outcome::Notify(list) => {
                let mut changes = Changes::default();
                for change in list {
                    changes.push(change)?;
                }
                Ok(Outcome::Notify(changes.into_vec()))
            }
            other => Ok(other),
        }
    }
}

/// Why a delivery was refused. The detail is for the log: it never holds a key or a MAC.
#[derive(Debug)]
pub enum Rejection {
    /// Signature or token missing or wrong.
    Unauthorized(Cause),
    /// Malformed body, missing event header, missing field, unparsable image.
    Malformed(Cause),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Unauthorized(cause) | Rejection::Malformed(cause) => cause.fmt(f),
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Rejection::Unauthorized(cause) | Rejection::Malformed(cause) => Some(cause.as_ref()),
        }
    }
}

/// A payload that did not decode: which payload, and serde's reason (which holds no secret: the
/// body is the sender's own).
#[derive(Debug)]
pub struct Undecodable {
    pub what: &'static str,
    pub error: serde_json::Error,
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.error)
    }
}

impl std::error::Error for Undecodable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
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
    /// A POST of `body` with these headers (samples, tests, fuzzing).
    pub fn post(headers: &[(&str, &str)], body: &[u8]) -> Incoming {
        Incoming {
            method: "POST".into(),
            path: "/hook/".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    /// The first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// The value of the first of these headers that is present.
pub(crate) fn first_header(headers: &[(String, String)], names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| header_in(headers, name))
        .map(str::to_owned)
}

/// A header the source needs, or a malformed-request rejection naming it.
pub(crate) fn required_header<'a>(
    incoming: &'a Incoming,
    name: &str,
) -> Result<&'a str, Rejection> {
    incoming
        .header(name)
        .ok_or_else(|| Rejection::Malformed(format!("{name} header missing").into()))
}

/// The Standard Webhooks headers of a delivery (GitLab signing tokens, Generic).
pub(crate) fn standard_headers(incoming: &Incoming) -> StandardHeaders<'_> {
    StandardHeaders {
        id: incoming.header("webhook-id"),
        timestamp: incoming.header("webhook-timestamp"),
        signature: incoming.header("webhook-signature"),
    }
}

/// Standard Webhooks headers signing `body` now with `secret`: for samples and tests.
pub(crate) fn standard_sample_headers(secret: &[u8], body: &[u8]) -> Vec<(&'static str, String)> {
    let id = "msg_2b9kQ1f3sZ7yXw4vT8uR6pLmN0a";
    let timestamp = crate::signature::unix_now().to_string();
    let signature = crate::signature::sign_standard(secret, id, &timestamp, body);
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signature),
    ]
}

/// A rejection for a request that did not authenticate, from any error or text.
pub(crate) fn unauthorized(cause: impl Into<Cause>) -> Rejection {
    Rejection::Unauthorized(cause.into())
}

/// A rejection for a malformed request, from any error or text.
pub(crate) fn malformed(cause: impl Into<Cause>) -> Rejection {
    Rejection::Malformed(cause.into())
}

/// Decodes a JSON payload strictly (types checked, unknown fields allowed).
pub(crate) fn decode_json<'a, T: serde::Deserialize<'a>>(
    what: &'static str,
    body: &'a [u8],
) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|error| malformed(Undecodable { what, error }))
}

/// Decodes the first JSON value of a payload and ignores whatever follows it, as the Go
/// original's stream decoder did for DockerHub, Quay, Harbor and GCR (a GCR delivery seen in the
/// wild ends in a stray `}`).
pub(crate) fn decode_first_json<'a, T: serde::Deserialize<'a>>(
    what: &'static str,
    body: &'a [u8],
) -> Result<T, Rejection> {
    match serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .next()
    {
        Some(Ok(value)) => Ok(value),
        Some(Err(error)) => Err(malformed(Undecodable { what, error })),
        None => Err(malformed(format!("{what}: empty body"))),
    }
}

/// An image change from a pushed reference, or a rejection naming the reference's problem.
pub(crate) fn image_change(reference: &str) -> Result<Change, Rejection> {
    Change::image(reference).map_err(|e| malformed(format!("{e}: {:?}", printable(reference))))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the per-source unit tests.
    use super::*;

    pub const KEY: &[u8] = b"0123456789abcdef-test-key";

    pub fn settings() -> Settings {
        Settings::new(Key::new(KEY.to_vec()))
    }

    pub fn settings_with_host(host: &str) -> Settings {
        Settings {
            registry_host: Some(host.into()),
            ..settings()
        }
    }

    pub fn incoming(headers: &[(&str, &str)], body: &[u8]) -> Incoming {
        Incoming::post(headers, body)
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

    pub fn is_bad_request(r: &Result<Outcome, Rejection>) -> bool {
        matches!(r, Err(Rejection::Malformed(_)))
    }

    pub fn is_unauthorized(r: &Result<Outcome, Rejection>) -> bool {
        matches!(r, Err(Rejection::Unauthorized(_)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_round_trip_and_are_exact() {
        for source in Source::ALL {
            assert_eq!(Source::from_name(source.name()), Some(*source));
            assert_eq!(Source::from_name(&source.name().to_lowercase()), None);
        }
        assert_eq!(Source::from_name("Github"), None);
    }

    /// Strings of a sample payload that name things (not event words like `push`), grown
    /// with `suffix`; lists grown to `entries` copies, each with its names made distinct.
    fn grown(value: &serde_json::Value, entries: usize, suffix: &str) -> serde_json::Value {
        use serde_json::Value;
        const WORDS: [&str; 10] = [
            "action",
            "mediaType",
            "type",
            "Kind",
            "eventType",
            "event_type",
            "domain",
            "format",
            "newObjectId",
            "data",
        ];
        match value {
            Value::Array(items) => Value::Array(
                (0..entries)
                    .flat_map(|i| items.iter().map(move |item| (i, item)))
                    .map(|(i, item)| grown(item, entries, &format!("{suffix}{i}")))
                    .collect(),
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| match v {
                        Value::String(w)
                            if WORDS.contains(&k.as_str()) || w == "ssh" || w == "BRANCH" =>
                        {
                            (k.clone(), v.clone())
                        }
                        Value::String(text) => {
                            (k.clone(), Value::String(format!("{text}{suffix}")))
                        }
                        other => (k.clone(), grown(other, entries, suffix)),
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// What a source made of a grown sample: a 400 with its reason, or changes within bounds.
    fn refused_or_bounded(source: Source, body: &[u8]) -> Option<String> {
        let settings = testing::settings_with_host("registry.example.com");
        match source.handle(&source.sample(testing::KEY, body), &settings) {
            Err(Rejection::Malformed(why)) => Some(why.to_string()),
            Ok(Outcome::Notify(changes)) => {
                assert!(changes.len() <= MAX_CHANGES, "{source}: {}", changes.len());
                let distinct: HashSet<&Change> = changes.iter().collect();
                assert_eq!(distinct.len(), changes.len(), "{source}: repeats");
                for change in &changes {
                    let names = match change {
                        Change::Git { url, branch } => [url, branch],
                        Change::Image(n) => [&n.domain, &n.image],
                    };
                    assert!(names.iter().all(|n| n.len() <= MAX_NAME_BYTES), "{source}");
                }
                None
            }
            other => panic!("{source}: {other:?}"),
        }
    }

    /// However a sender grows a payload (more list entries than [`MAX_CHANGES`], names longer
    /// than [`MAX_NAME_BYTES`]), no source yields more, longer or repeated changes: the
    /// delivery is a 400 naming the bound. The sources that read lists refuse them while
    /// parsing.
    #[test]
    fn every_source_holds_the_change_bounds() {
        let long = "n".repeat(MAX_NAME_BYTES);
        for source in Source::ALL {
            let sample: serde_json::Value =
                serde_json::from_slice(source.sample_body()).expect("samples are JSON");
            let body = serde_json::to_vec(&grown(&sample, 1, &long)).unwrap();
            let why = refused_or_bounded(*source, &body).unwrap_or_default();
            // Harbor's grown name ends in its tag, which is dropped; GCR's names are inside the
            // base64 of `message.data`, which growing breaks.
            let unnamed = [Source::Harbor, Source::GoogleContainerRegistry];
            assert_eq!(
                why.contains("bytes long"),
                !unnamed.contains(source),
                "{source}: a name over {MAX_NAME_BYTES} bytes: {why}"
            );
            let lists = [
                grown(&sample, MAX_CHANGES + 1, "-"),
                serde_json::Value::Array(vec![sample.clone(); MAX_CHANGES + 1]),
            ]
            .map(|v| serde_json::to_vec(&grown(&v, 1, "")).unwrap());
            let refusals: Vec<String> = lists
                .iter()
                .filter_map(|body| refused_or_bounded(*source, body))
                .filter(|why| why.contains(&MAX_CHANGES.to_string()))
                .collect();
            let reads_lists = matches!(
                source,
                Source::BitbucketCloud
                    | Source::BitbucketServer
                    | Source::AzureDevOps
                    | Source::Distribution
                    | Source::Harbor
                    | Source::Generic
            );
            assert_eq!(!refusals.is_empty(), reads_lists, "{source}: {refusals:?}");
        }
    }

    /// Every provider's sample is a good delivery: it notifies with the key it was made with,
    /// and is refused with another key unless the provider checks nothing but the URL.
    #[test]
    fn every_sample_notifies_and_is_bound_to_its_key() {
        for source in Source::ALL {
            let settings = testing::settings_with_host("registry.example.com");
            let good = source.sample(testing::KEY, source.sample_body());
            let outcome = source.handle(&good, &settings);
            assert!(
                matches!(outcome, Ok(Outcome::Notify(ref c)) if !c.is_empty()),
                "{source}: {outcome:?}"
            );
            let other = source.sample(b"another key entirely", source.sample_body());
            if other.headers != good.headers {
                assert!(
                    testing::is_unauthorized(&source.handle(&other, &settings)),
                    "{source}"
                );
            }
        }
    }
}
