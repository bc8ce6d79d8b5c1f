//! The config file (compatible with the Go flux-recv), its validation, key loading, digests and
//! the route table. Everything here happens before the socket binds; nothing here does network I/O.
//!
//! ```yaml
//! fluxRecvVersion: 1
//! api: http://localhost:3030/api/flux   # optional, this is the default
//! endpoints:
//! - source: GitHub
//!   keyPath: github.key                 # relative to this file's folder
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::signature::constant_time_eq;
use crate::sources::Source;

/// The fluxd API used when the config names none (the Go original's default).
pub const DEFAULT_API: &str = "http://localhost:3030/api/flux";

/// Keys shorter than this are guessable for URL-only sources; warned about, still used.
const SHORT_KEY_BYTES: usize = 16;
/// A key file larger than this is a mistake (or `/dev/zero`); it is refused, not read whole.
const MAX_KEY_BYTES: u64 = 64 * 1024;
/// A config file larger than this is a mistake; it is refused, not read whole.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads at most `limit` bytes of a file; more is an error naming the limit.
fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB",
            limit / 1024
        )));
    }
    Ok(bytes)
}

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct Config {
    /// fluxd's API base, without a trailing `/`.
    pub api: String,
    pub endpoints: Vec<Arc<Endpoint>>,
}

/// A shared secret, used byte for byte as stored. Never printed.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn new(bytes: Vec<u8>) -> Key {
        Key(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Google Container Registry push authentication (used by the GCR source).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gcr {
    /// The Pub/Sub push token's required audience.
    pub audience: Option<String>,
    /// The service account the token must be for.
    pub email: Option<String>,
    /// Where tokens are checked (default Google's tokeninfo endpoint).
    #[serde(rename = "tokenInfoURL")]
    pub token_info_url: Option<String>,
}

/// One configured webhook endpoint, ready to serve.
#[derive(Debug)]
pub struct Endpoint {
    /// Position in the config's `endpoints` list, for messages.
    pub index: usize,
    pub source: Source,
    pub key: Key,
    /// The key file as written in the config (for logs; never its content).
    pub key_path: PathBuf,
    pub registry_host: Option<String>,
    pub gcr: Option<Gcr>,
    digest: [u8; 32],
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

    /// `endpoints[2] (GitHub)`: how messages name this endpoint.
    pub fn label(&self) -> String {
        format!("endpoints[{}] ({})", self.index, self.source)
    }
}

/// Every problem found in a config, one message each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A loaded config plus the warnings to print at start-up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(rename = "fluxRecvVersion")]
    version: Option<serde_yaml_ng::Value>,
    api: Option<String>,
    endpoints: Option<Vec<RawEndpoint>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    source: Option<String>,
    #[serde(rename = "keyPath")]
    key_path: Option<String>,
    #[serde(rename = "registryHost")]
    registry_host: Option<String>,
    gcr: Option<Gcr>,
}

/// Reads and validates the config file at `path`; key paths are relative to its folder.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let text = read_capped(path, MAX_CONFIG_BYTES).map_err(|e| {
        ConfigErrors(vec![format!(
            "config file {}: cannot read it: {e}; pass the right file with --config",
            path.display()
        )])
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, dir, &path.display().to_string())
}

/// Validates config text; `dir` resolves relative key paths, `name` names the file in messages.
pub fn parse(text: &[u8], dir: &Path, name: &str) -> Result<Loaded, ConfigErrors> {
    let raw: RawConfig = serde_yaml_ng::from_slice(text).map_err(|e| {
        ConfigErrors(vec![format!(
            "config file {name}: {e}; fix the YAML (known fields: fluxRecvVersion, api, endpoints[].source, endpoints[].keyPath, endpoints[].registryHost, endpoints[].gcr)"
        )])
    })?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    match &raw.version {
        None => problems.push(format!(
            "config file {name}: fluxRecvVersion is missing; add `fluxRecvVersion: 1`"
        )),
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => problems.push(format!(
            "config file {name}: fluxRecvVersion is {}; only `fluxRecvVersion: 1` is supported",
            yaml_scalar(v)
        )),
    }

    let api = match raw.api.as_deref() {
        None => DEFAULT_API.to_owned(),
        Some(api) => match check_http_url(api) {
            Ok(()) => api.trim_end_matches('/').to_owned(),
            Err(why) => {
                problems.push(format!(
                    "config file {name}: api {api:?} {why}; use an http(s) URL such as {DEFAULT_API}"
                ));
                String::new()
            }
        },
    };

    let raw_endpoints = raw.endpoints.unwrap_or_default();
    if raw_endpoints.is_empty() {
        problems.push(format!(
            "config file {name}: endpoints is empty; add at least one endpoint with source and keyPath"
        ));
    }

    let mut endpoints: Vec<Arc<Endpoint>> = Vec::new();
    for (index, raw) in raw_endpoints.into_iter().enumerate() {
        match endpoint(index, raw, dir, &mut warnings) {
            Ok(endpoint) => {
                if let Some(other) = endpoints
                    .iter()
                    .find(|e| constant_time_eq(&e.digest, &endpoint.digest))
                {
                    problems.push(format!(
                        "{} has the same route as {}: the same key{} gives the same URL; give each endpoint its own key",
                        endpoint.label(),
                        other.label(),
                        if endpoint.registry_host.is_some() { " and registryHost" } else { "" },
                    ));
                } else {
                    endpoints.push(Arc::new(endpoint));
                }
            }
            Err(mut found) => problems.append(&mut found),
        }
    }

    if problems.is_empty() {
        Ok(Loaded {
            config: Config { api, endpoints },
            warnings,
        })
    } else {
        Err(ConfigErrors(problems))
    }
}

fn endpoint(
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
    let source = match raw.source.as_deref() {
        None => {
            problems.push(format!(
                "{label}: source is missing; set it to one of: {}",
                Source::names()
            ));
            None
        }
        Some(name) => match Source::from_name(name) {
            Some(source) => Some(source),
            None => {
                problems.push(format!(
                    "{label}: source {name:?} is not supported; use one of: {} (names are case-sensitive)",
                    Source::names()
                ));
                None
            }
        },
    };

    let key = match raw.key_path.as_deref() {
        None | Some("") => {
            problems.push(format!(
                "{label}: keyPath is missing; point it at a file holding the shared secret"
            ));
            None
        }
        Some(key_path) => {
            let full = dir.join(key_path);
            match read_capped(&full, MAX_KEY_BYTES) {
                Err(e) => {
                    problems.push(format!(
                        "{label}: keyPath: cannot read key file {}: {e}; create it or fix keyPath (relative to the config file's folder)",
                        full.display()
                    ));
                    None
                }
                Ok(bytes) if bytes.is_empty() => {
                    problems.push(format!(
                        "{label}: keyPath: key file {} is empty, so its route would be public; put a random secret in it (e.g. `head -c 32 /dev/urandom | base64 -w0 > {key_path}`)",
                        full.display()
                    ));
                    None
                }
                Ok(bytes) => {
                    if bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                        warnings.push(format!(
                            "{label}: key file {} ends in whitespace (often a trailing newline); the bytes are used as they are, so the provider must be given the same secret; write it with `printf %s` to avoid this",
                            full.display()
                        ));
                    }
                    if bytes.len() < SHORT_KEY_BYTES {
                        warnings.push(format!(
                            "{label}: key file {} holds fewer than {SHORT_KEY_BYTES} bytes; use a longer random secret",
                            full.display()
                        ));
                    }
                    Some((Key::new(bytes), PathBuf::from(key_path)))
                }
            }
        }
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

    match (source, key) {
        (Some(source), Some((key, key_path))) if problems.is_empty() => {
            let mut endpoint = Endpoint::new(index, source, key, key_path, raw.registry_host);
            endpoint.gcr = raw.gcr;
            Ok(endpoint)
        }
        _ => Err(problems),
    }
}

fn check_gcr(label: &str, source: Option<Source>, gcr: &Gcr) -> Vec<String> {
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
        Some(_) => {}
        None if gcr.email.is_some() || gcr.token_info_url.is_some() => problems.push(format!(
            "{label}: gcr.email and gcr.tokenInfoURL only apply with gcr.audience; set gcr.audience to the push subscription's audience"
        )),
        None => {}
    }
    let url = gcr
        .token_info_url
        .as_deref()
        .unwrap_or(crate::tokeninfo::DEFAULT_URL);
    if let Err(why) = check_http_url(url) {
        problems.push(format!(
            "{label}: gcr.tokenInfoURL {url:?} {why}; use an http(s) URL"
        ));
    } else if gcr.audience.is_some() && url.starts_with("https:") && !cfg!(feature = "tls") {
        problems.push(format!(
            "{label}: gcr.audience needs TLS to reach {url}, but this build has no TLS; use a build with the default `tls` feature"
        ));
    }
    problems
}

/// Accepts `http://host[:port][/path]` and `https://…`, nothing else.
pub fn check_http_url(url: &str) -> Result<(), &'static str> {
    let uri: ureq::http::Uri = url.parse().map_err(|_| "is not a URL")?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("is not an http or https URL"),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => {}
        _ => return Err("has no host"),
    }
    if uri.query().is_some() {
        return Err("must not have a query");
    }
    Ok(())
}

/// A YAML value as a message shows it. (Not through serde_yaml_ng's emitter: linking it for one
/// message cost 20 KB of binary.)
fn yaml_scalar(v: &serde_yaml_ng::Value) -> String {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) => format!("{s:?} (a string)"),
        Value::Null => "empty".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(_) => "a tagged value".to_owned(),
    }
}

/// The route table: digest → endpoint, looked up in constant time over all entries.
#[derive(Debug, Clone)]
pub struct Routes {
    endpoints: Vec<Arc<Endpoint>>,
}

impl Routes {
    pub fn new(config: &Config) -> Routes {
        Routes {
            endpoints: config.endpoints.clone(),
        }
    }

    /// The endpoint for a request path `/hook/<64 lowercase hex>`, or `None`.
    ///
    /// Every entry is compared, with no early exit, so the time taken says nothing about which
    /// digest (if any) matched or how much of one did.
    pub fn lookup(&self, path: &str) -> Option<Arc<Endpoint>> {
        let hex_digest = path.strip_prefix("/hook/")?;
        if hex_digest.len() != 64
            || !hex_digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let mut wanted = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut wanted).ok()?;
        let mut found = None;
        for endpoint in &self.endpoints {
            if constant_time_eq(&endpoint.digest, &wanted) {
                found = Some(Arc::clone(endpoint));
            }
        }
        found
    }
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

    #[test]
    fn key_debug_is_redacted() {
        let key = Key::new(b"super-secret".to_vec());
        assert!(!format!("{key:?}").contains("super"));
    }

    #[test]
    fn lookup_finds_only_exact_lowercase_routes() {
        let endpoint = Arc::new(Endpoint::new(
            0,
            Source::GitLab,
            Key::new(b"key-one-1234567890".to_vec()),
            "k".into(),
            None,
        ));
        let routes = Routes {
            endpoints: vec![endpoint.clone()],
        };
        let route = endpoint.route();
        assert!(routes.lookup(&route).is_some());
        assert!(routes
            .lookup(&route.to_uppercase().replace("/HOOK/", "/hook/"))
            .is_none());
        assert!(routes.lookup(&route[..route.len() - 1]).is_none());
        assert!(routes.lookup(&format!("{route}0")).is_none());
        assert!(routes
            .lookup(&format!("/hook/{}", "0".repeat(64)))
            .is_none());
        assert!(routes.lookup("/hook/").is_none());
    }

    #[test]
    fn http_urls_only() {
        assert!(check_http_url("http://localhost:3030/api/flux").is_ok());
        assert!(check_http_url("https://flux.example.com").is_ok());
        assert!(check_http_url("ftp://x/").is_err());
        assert!(check_http_url("localhost:3030").is_err());
        assert!(check_http_url("not a url").is_err());
        assert!(check_http_url("http://").is_err());
    }
}
