//! The config file (compatible with the Go flux-recv), its validation, key loading and digests.
//! Everything here happens before the socket binds; nothing here does network I/O. The
//! downstreams (`api`, or a `notify` list) are validated in `notify.rs`.
//!
//! ```yaml
//! fluxRecvVersion: 1
//! api: http://localhost:3030/api/flux   # optional, this is the default
//! endpoints:
//! - source: GitHub
//!   keyPath: github.key                 # relative to this file's folder
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::signature::Key;

mod endpoint;
mod fields;
mod notify;

pub use endpoint::Endpoint;
pub use notify::{receiver_webhook_path, DownstreamConfig, DEFAULT_DOWNSTREAM};

/// The fluxd API used when the config names none (the Go original's default).
pub const DEFAULT_API: &str = "http://localhost:3030/api/flux";

/// Keys shorter than this are guessable for URL-only sources; warned about, still used.
const SHORT_KEY_BYTES: usize = 16;
/// What every sample key and token shipped in `example/` carries.
const SAMPLE_MARK: &str = "do-not-use-in-production";
/// A key file larger than this is a mistake (or `/dev/zero`); it is refused, not read whole.
const MAX_KEY_BYTES: u64 = 64 * 1024;
/// A config file larger than this is a mistake; it is refused, not read whole.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads at most `limit` bytes of a file; more is an error naming the limit.
pub(crate) fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
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
    /// The `api` field, or its default: fluxd's API base without a trailing `/`. It is the one
    /// downstream when there is no `notify` list.
    pub api: String,
    pub endpoints: Vec<Endpoint>,
    /// Who is told: the `notify` list, or one fluxd at `api`.
    pub downstreams: Vec<DownstreamConfig>,
}

impl Config {
    /// Every file the config names (key and token files), as written, for change detection.
    pub fn files(&self) -> Vec<&Path> {
        let keys = self.endpoints.iter().map(|e| e.key_path.as_path());
        let tokens = self.downstreams.iter().filter_map(|d| d.token_path());
        keys.chain(tokens).collect()
    }

    /// The downstreams an endpoint feeds, by index into [`Config::downstreams`].
    pub fn downstreams_of(&self, endpoint: &Endpoint) -> Vec<usize> {
        (0..self.downstreams.len())
            .filter(|&i| {
                endpoint.notify.is_empty() || endpoint.notify.contains(&self.downstreams[i].name)
            })
            .collect()
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
    notify: Option<Vec<notify::RawDownstream>>,
    endpoints: Option<Vec<endpoint::RawEndpoint>>,
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
    let syntax = |e| ConfigErrors(vec![format!("config file {name}: {e}; fix the YAML")]);
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_slice(text).map_err(syntax)?;
    let unknown = fields::unknown(name, &value);
    if !unknown.is_empty() {
        return Err(ConfigErrors(unknown));
    }
    let raw: RawConfig = serde_yaml_ng::from_value(value).map_err(|e| {
        ConfigErrors(vec![format!(
            "config file {name}: {e}; fix the YAML (known fields: {})",
            fields::known()
        )])
    })?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    problems.extend(check_version(name, raw.version.as_ref()));
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
    let downstreams = notify::downstreams(
        name,
        raw.api.is_some().then_some(api.as_str()),
        raw.notify,
        dir,
        &mut problems,
        &mut warnings,
    );

    let raw_endpoints = raw.endpoints.unwrap_or_default();
    if raw_endpoints.is_empty() {
        problems.push(format!(
            "config file {name}: endpoints is empty; add at least one endpoint with source and keyPath"
        ));
    }

    let mut endpoints: Vec<Endpoint> = Vec::new();
    for (index, raw) in raw_endpoints.into_iter().enumerate() {
        match endpoint::endpoint(index, raw, dir, &mut warnings) {
            Ok(endpoint) => {
                problems.extend(notify::check_endpoint(&endpoint, &downstreams));
                match endpoints.iter().find(|e| e.has_digest(&endpoint.digest)) {
                    Some(other) => problems.push(endpoint::same_route(&endpoint, other)),
                    None => endpoints.push(endpoint),
                }
            }
            Err(mut found) => problems.append(&mut found),
        }
    }

    if problems.is_empty() {
        Ok(Loaded {
            config: Config {
                api,
                endpoints,
                downstreams,
            },
            warnings,
        })
    } else {
        Err(ConfigErrors(problems))
    }
}

/// `fluxRecvVersion` must be 1.
fn check_version(name: &str, version: Option<&serde_yaml_ng::Value>) -> Option<String> {
    match version {
        None => Some(format!(
            "config file {name}: fluxRecvVersion is missing; add `fluxRecvVersion: 1`"
        )),
        Some(v) if v.as_u64() == Some(1) => None,
        Some(v) => Some(format!(
            "config file {name}: fluxRecvVersion is {}; only `fluxRecvVersion: 1` is supported",
            yaml_scalar(v)
        )),
    }
}

/// Reads a secret file (`field` of `label`, relative to `dir`), warning about the usual mistakes.
pub(crate) fn read_secret(
    label: &str,
    field: &str,
    dir: &Path,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Key, String> {
    let full = dir.join(path);
    let bytes = read_capped(&full, MAX_KEY_BYTES).map_err(|e| {
        format!(
            "{label}: {field}: cannot read {}: {e}; create it or fix {field} (relative to the config file's folder)",
            full.display()
        )
    })?;
    if bytes.is_empty() {
        return Err(format!(
            "{label}: {field}: {} is empty; put a random secret in it (e.g. `head -c 32 /dev/urandom | base64 -w0 > {path}`)",
            full.display()
        ));
    }
    if bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        warnings.push(format!(
            "{label}: {} ends in whitespace (often a trailing newline); the bytes are used as they are, so the other side must be given the same secret; write it with `printf %s` to avoid this",
            full.display()
        ));
    }
    if bytes
        .windows(SAMPLE_MARK.len())
        .any(|w| w == SAMPLE_MARK.as_bytes())
    {
        warnings.push(format!(
            "{label}: {} is one of the SAMPLE secrets shipped in example/, public to anyone; replace it with your own random secret before anything reaches this endpoint",
            full.display()
        ));
    }
    if let Some(mode) = readable_by_others(&full) {
        warnings.push(format!(
            "{label}: {} is readable by every user on this machine (mode {mode:04o}); make it readable by its owner (and group) only: chmod o-r, or on Kubernetes the Secret volume's defaultMode: 0440",
            full.display()
        ));
    }
    if bytes.len() < SHORT_KEY_BYTES {
        warnings.push(format!(
            "{label}: {} holds fewer than {SHORT_KEY_BYTES} bytes; use a longer random secret",
            full.display()
        ));
    }
    Ok(Key::new(bytes))
}

/// The permission bits of a file (through symlinks, as Kubernetes mounts Secrets) when others
/// may read it. Group access is how Kubernetes shares a Secret with an `fsGroup`: not warned.
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o004 != 0).then_some(mode)
}

/// An https URL in a build without TLS.
pub(crate) fn needs_missing_tls(url: &str) -> bool {
    url.starts_with("https:") && !cfg!(feature = "tls")
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

#[cfg(test)]
mod tests {
    use super::*;

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
