//! One endpoint of the config: its source, key, registry host and GCR settings, validated, with
//! its route digest computed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{check_http_url, needs_missing_tls, read_secret};
use crate::cidr::Cidr;
use crate::signature::{constant_time_eq, Key};
use crate::sources::{gcr, RegistryHost, Source};

/// One configured webhook endpoint, ready to serve.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Position in the config's `endpoints` list, for messages.
    pub index: usize,
    pub source: Source,
    pub key: Key,
    /// The key file as written in the config (for logs; never its content).
    pub key_path: PathBuf,
    pub registry_host: Option<String>,
    pub gcr: Option<gcr::PushAuth>,
    /// The downstreams this endpoint feeds, by name; empty: all of them.
    pub notify: Vec<String>,
    /// This endpoint's own `--notify-timeout` (a registry that gives up after 1 s wants less).
    pub notify_timeout: Option<Duration>,
    /// BitbucketCloud: unsigned deliveries are refused (401), not served by the URL alone.
    pub require_signature: bool,
    /// The client addresses deliveries may come from; empty: anywhere.
    pub allow_from: Vec<Cidr>,
    pub(super) digest: [u8; 32],
}

impl Endpoint {
    /// An endpoint with its route digest: sha256(key bytes ‖ registryHost bytes).
    pub fn new(
        index: usize,
        source: Source,
        key: Key,
        key_path: PathBuf,
        registry_host: Option<String>,
    ) -> Endpoint {
        let mut hasher = Sha256::new();
        hasher.update(key.bytes());
        hasher.update(registry_host.as_deref().unwrap_or("").as_bytes());
        Endpoint {
            index,
            source,
            key,
            key_path,
            registry_host,
            gcr: None,
            notify: Vec::new(),
            notify_timeout: None,
            require_signature: false,
            allow_from: Vec::new(),
            digest: hasher.finalize().into(),
        }
    }

    /// `/hook/<lowercase hex digest>`: the URL path providers are given.
    pub fn route(&self) -> String {
        format!("/hook/{}", hex::encode(self.digest))
    }

    /// The first 8 hex digits of the digest: enough to tell endpoints apart in logs, not enough
    /// to call them.
    pub fn digest_prefix(&self) -> String {
        hex::encode(&self.digest[..4])
    }

    /// Whether the route is the endpoint's only credential (a source that signs nothing, or one
    /// whose signature or token is not required here): then logs show only its prefix.
    pub fn route_is_credential(&self) -> bool {
        match self.source {
            Source::DockerHub | Source::Quay => true,
            Source::BitbucketCloud => !self.require_signature,
            Source::GoogleContainerRegistry => {
                self.gcr.as_ref().is_none_or(|g| g.audience.is_none())
            }
            _ => false,
        }
    }

    /// The route as start-up and reload lines show it: whole, as the Go original printed it,
    /// unless it is the credential; then its 8-hex prefix.
    pub fn loggable_route(&self) -> String {
        if self.route_is_credential() {
            format!("/hook/{}…", self.digest_prefix())
        } else {
            self.route()
        }
    }

    /// `endpoints[2] (GitHub)`: how messages name this endpoint.
    pub fn label(&self) -> String {
        format!("endpoints[{}] ({})", self.index, self.source)
    }

    /// Whether a request path is this endpoint's route, compared in constant time.
    pub fn has_digest(&self, digest: &[u8; 32]) -> bool {
        constant_time_eq(&self.digest, digest)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    source: Option<String>,
    #[serde(rename = "keyPath")]
    key_path: Option<String>,
    #[serde(rename = "registryHost")]
    registry_host: Option<String>,
    gcr: Option<gcr::PushAuth>,
    notify: Option<Vec<String>>,
    #[serde(rename = "notifyTimeout")]
    notify_timeout: Option<f64>,
    #[serde(rename = "requireSignature")]
    require_signature: Option<bool>,
    #[serde(rename = "allowFrom")]
    allow_from: Option<Vec<String>>,
}

/// The message for two endpoints that would share a route.
pub(super) fn same_route(endpoint: &Endpoint, other: &Endpoint) -> String {
    format!(
        "{} has the same route as {}: the same key{} gives the same URL; give each endpoint its own key",
        endpoint.label(),
        other.label(),
        if endpoint.registry_host.is_some() {
            " and registryHost"
        } else {
            ""
        },
    )
}

pub(super) fn endpoint(
    index: usize,
    raw: RawEndpoint,
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Endpoint, Vec<String>> {
    let mut problems = Vec::new();
    let label = format!(
        "endpoints[{index}] ({})",
        raw.source.as_deref().unwrap_or("no source")
    );
    let source = source(&label, raw.source.as_deref())
        .map_err(|p| problems.push(p))
        .ok();
    let key = match raw.key_path.as_deref() {
        None | Some("") => {
            problems.push(format!(
                "{label}: keyPath is missing; point it at a file holding the shared secret"
            ));
            None
        }
        Some(key_path) => match read_secret(&label, "keyPath", dir, key_path, warnings) {
            Ok(key) => Some((key, PathBuf::from(key_path))),
            Err(problem) => {
                problems.push(problem);
                None
            }
        },
    };

    if let Some(host) = raw.registry_host.as_deref() {
        if host.trim().is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(format!(
                "{label}: registryHost {host:?} is not a host name; use a host such as registry.example.com, or remove the field"
            ));
        }
    }

    if let Some(gcr) = &raw.gcr {
        problems.extend(check_gcr(&label, source, gcr));
    }

    let notify_timeout = match raw.notify_timeout {
        None => None,
        Some(secs) if secs > 0.0 && secs <= 3600.0 => Some(Duration::from_secs_f64(secs)),
        Some(secs) => {
            problems.push(format!(
                "{label}: notifyTimeout {secs} is not seconds more than 0 and at most 3600; use e.g. 0.8, or remove it to use --notify-timeout"
            ));
            None
        }
    };

    if raw.notify.as_ref().is_some_and(|names| names.is_empty()) {
        problems.push(format!(
            "{label}: notify is empty; name the downstreams this endpoint feeds, or remove it to feed them all"
        ));
    }

    let mut allow_from = Vec::new();
    for range in raw.allow_from.iter().flatten() {
        match Cidr::parse(range) {
            Ok(cidr) => allow_from.push(cidr),
            Err(why) => problems.push(format!(
                "{label}: allowFrom {why}; list the senders' ranges, e.g. GitHub's hooks from https://api.github.com/meta"
            )),
        }
    }
    if raw.allow_from.as_ref().is_some_and(Vec::is_empty) {
        problems.push(format!(
            "{label}: allowFrom is empty, which would refuse every delivery; list the senders' ranges, or remove it"
        ));
    }
    let require_signature = raw.require_signature.unwrap_or(false);
    match source {
        Some(Source::BitbucketCloud) if !require_signature => warnings.push(format!(
            "{label}: accepts unsigned deliveries (the URL alone); set a secret on the Bitbucket webhook (the key file's content) and requireSignature: true"
        )),
        Some(other) if raw.require_signature.is_some() && other != Source::BitbucketCloud => {
            problems.push(format!(
                "{label}: requireSignature only applies to source BitbucketCloud (where the signature is optional); remove it"
            ))
        }
        _ => {}
    }

    if raw.registry_host.is_none() {
        let missing = format!(
            "{label}: no registryHost, but this source's payloads name no registry host; set registryHost to the host your workloads pull from (e.g. registry.example.com:5000)"
        );
        match source.map(Source::registry_host) {
            Some(RegistryHost::Required) => problems.push(missing),
            Some(RegistryHost::Recommended) => warnings.push(format!(
                "{missing}; without it images are announced without a host (acme/app, not registry.example.com/acme/app) and match only workloads that name them so"
            )),
            _ => {}
        }
    }

    match (source, key) {
        (Some(source), Some((key, key_path))) if problems.is_empty() => {
            let mut endpoint = Endpoint::new(index, source, key, key_path, raw.registry_host);
            endpoint.gcr = raw.gcr;
            endpoint.notify = raw.notify.unwrap_or_default();
            endpoint.notify_timeout = notify_timeout;
            endpoint.require_signature = require_signature;
            endpoint.allow_from = allow_from;
            Ok(endpoint)
        }
        _ => Err(problems),
    }
}

/// The source named `name`, or the message saying why there is none.
fn source(label: &str, name: Option<&str>) -> Result<Source, String> {
    let name = name.ok_or_else(|| {
        format!(
            "{label}: source is missing; set it to one of: {}",
            Source::names()
        )
    })?;
    Source::from_name(name).ok_or_else(|| {
        format!(
            "{label}: source {name:?} is not supported; use one of: {} (names are case-sensitive)",
            Source::names()
        )
    })
}

fn check_gcr(label: &str, source: Option<Source>, gcr: &gcr::PushAuth) -> Vec<String> {
    let mut problems = Vec::new();
    if source.is_some_and(|s| s != Source::GoogleContainerRegistry) {
        problems.push(format!(
            "{label}: gcr is only valid with source GoogleContainerRegistry; remove it"
        ));
    }
    match gcr.audience.as_deref() {
        Some(audience) if audience.trim().is_empty() => problems.push(format!(
            "{label}: gcr.audience is empty; set the Pub/Sub push audience or remove the field"
        )),
        Some(_) if gcr.email.is_none() && gcr.accept_any_service_account != Some(true) => {
            problems.push(format!(
                "{label}: gcr.audience without gcr.email accepts any Google-signed token for that audience, and anyone can create a Pub/Sub push subscription with any audience string (CVE-2026-40109, GHSA-h9cx-xjg6-5v2w); set gcr.email to the push subscription's service account, or gcr.insecureAcceptAnyServiceAccount: true to accept that risk"
            ))
        }
        Some(_) => {}
        None if gcr.email.is_some()
            || gcr.token_info_url.is_some()
            || gcr.accept_any_service_account.is_some() =>
        {
            problems.push(format!(
                "{label}: gcr.email, gcr.tokenInfoURL and gcr.insecureAcceptAnyServiceAccount only apply with gcr.audience; set gcr.audience to the push subscription's audience"
            ))
        }
        None => {}
    }
    let url = gcr.token_info_url();
    if let Err(why) = check_http_url(url) {
        problems.push(format!(
            "{label}: gcr.tokenInfoURL {url:?} {why}; use an http(s) URL"
        ));
    } else if url.starts_with("http://") && !is_loopback_url(url) {
        problems.push(format!(
            "{label}: gcr.tokenInfoURL {url:?} is plain http to another host, which would send push tokens in clear text; use https (plain http is for a loopback stand-in only)"
        ));
    } else if gcr.audience.is_some() && needs_missing_tls(url) {
        problems.push(format!(
            "{label}: gcr.audience needs TLS to reach {url}, but this build has no TLS; use a build with the default `tls` feature"
        ));
    }
    problems
}

/// Whether an http(s) URL's host is a loopback address or `localhost`.
fn is_loopback_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return false;
    };
    let host = uri.host().unwrap_or("");
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha256_of_key_then_registry_host() {
        let plain = Endpoint::new(0, Source::GitHub, Key::new(b"k".to_vec()), "k".into(), None);
        let expected: [u8; 32] = Sha256::digest(b"k").into();
        assert_eq!(plain.route(), format!("/hook/{}", hex::encode(expected)));
        let hosted = Endpoint::new(
            0,
            Source::GitHub,
            Key::new(b"k".to_vec()),
            "k".into(),
            Some("r.example.com".into()),
        );
        let expected: [u8; 32] = Sha256::digest(b"kr.example.com").into();
        assert_eq!(hosted.route(), format!("/hook/{}", hex::encode(expected)));
        assert_eq!(hosted.digest_prefix(), hex::encode(&expected[..4]));
    }
}
