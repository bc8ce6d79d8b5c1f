//! The config's downstreams: `api` (one fluxd, as the Go original had) or a `notify` list of
//! named fluxd and Flux v2 Receiver downstreams with filters, and each endpoint's `notify` names.
//!
//! ```yaml
//! notify:
//! - name: cluster-a
//!   fluxd: http://fluxd.cluster-a.internal:3030/api/flux
//!   images: ["mirror.internal:5000/team-a/*"]
//! - name: cluster-b
//!   fluxReceiver: https://flux-webhook.cluster-b.internal/hook/0d5c…
//!   keyPath: cluster-b-receiver.token
//!   git: ["*/org/infra*"]
//! ```
//!
//! A receiver's URL must end in its webhook path, `/hook/` and 64 lowercase hex digits, as
//! notification-controller computes it ([`receiver_webhook_path`]); anything else (a
//! placeholder, a truncated copy) would only ever get 404s.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{check_http_url, needs_missing_tls, read_secret, Endpoint, DEFAULT_API};
use crate::downstream::{origin, Filter, Glob, Kind};

/// The name of the one downstream a config without `notify` has.
pub const DEFAULT_DOWNSTREAM: &str = "fluxd";

/// Longest downstream name (it is a metrics label and a thread name).
const MAX_NAME: usize = 63;

/// One validated downstream.
#[derive(Debug, Clone)]
pub struct DownstreamConfig {
    pub name: String,
    pub kind: Kind,
    pub filter: Filter,
    /// The token file of a receiver, as written.
    token_path: Option<PathBuf>,
}

impl DownstreamConfig {
    /// A fluxd without filters.
    pub fn fluxd(name: &str, api: &str) -> DownstreamConfig {
        DownstreamConfig {
            name: name.to_owned(),
            kind: Kind::Fluxd {
                api: api.trim_end_matches('/').to_owned(),
            },
            filter: Filter::default(),
            token_path: None,
        }
    }

    pub fn token_path(&self) -> Option<&Path> {
        self.token_path.as_deref()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDownstream {
    name: Option<String>,
    fluxd: Option<String>,
    #[serde(rename = "fluxReceiver")]
    flux_receiver: Option<String>,
    #[serde(rename = "keyPath")]
    key_path: Option<String>,
    images: Option<Vec<String>>,
    git: Option<Vec<String>>,
    branches: Option<Vec<String>>,
}

/// The downstreams of a config: `notify` when given, else one fluxd at `api` (or its default).
pub(super) fn downstreams(
    file: &str,
    api: Option<&str>,
    notify: Option<Vec<RawDownstream>>,
    dir: &Path,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Vec<DownstreamConfig> {
    let Some(raw) = notify else {
        let api = api.unwrap_or(DEFAULT_API);
        if needs_missing_tls(api) {
            problems.push(format!(
                "config file {file}: api {api:?} is https, but this build has no TLS; use a build with the default `tls` feature, or http"
            ));
        }
        return vec![DownstreamConfig::fluxd(DEFAULT_DOWNSTREAM, api)];
    };
    if api.is_some() {
        problems.push(format!(
            "config file {file}: both api and notify are set; move api into notify as `- fluxd: <api>`, or remove notify"
        ));
    }
    if raw.is_empty() {
        problems.push(format!(
            "config file {file}: notify is empty; list at least one downstream, or remove it to notify the fluxd at api"
        ));
    }
    let names: Vec<String> = (0..raw.len())
        .map(|i| raw[i].name.clone().unwrap_or_else(|| format!("notify-{i}")))
        .collect();
    let mut found: Vec<DownstreamConfig> = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let name = names[index].clone();
        let label = match &raw.name {
            Some(name) => format!("notify[{index}] ({name})"),
            None => format!("notify[{index}] (named {name} by default)"),
        };
        if names[..index].contains(&name) {
            problems.push(format!(
                "{label}: name {name:?} is used twice; give each downstream its own name"
            ));
        }
        if let Some(downstream) = downstream(&label, name, raw, dir, problems, warnings) {
            found.push(downstream);
        }
    }
    found
}

fn downstream(
    label: &str,
    name: String,
    mut raw: RawDownstream,
    dir: &Path,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<DownstreamConfig> {
    let before = problems.len();
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(plain) {
        problems.push(format!(
            "{label}: name {name:?} is not a plain name; use 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"
        ));
    }
    let filter = Filter {
        images: globs(label, "images", raw.images.take(), problems),
        git: globs(label, "git", raw.git.take(), problems),
        branches: globs(label, "branches", raw.branches.take(), problems),
    };
    let (kind, token_path) = kind(label, raw, dir, problems, warnings)?;
    (problems.len() == before).then_some(DownstreamConfig {
        name,
        kind,
        filter,
        token_path,
    })
}

/// A downstream's kind: fluxd, or a receiver with its token (and the token file's path).
/// The kinds of downstream, each named by the config field that holds its URL (`fluxd`,
/// `fluxReceiver`): exactly one of them is set.
enum Named {
    Fluxd(String),
    Receiver(String),
}

fn named(raw: &mut RawDownstream) -> Result<Named, String> {
    let set: Vec<Named> = [
        raw.fluxd.take().map(Named::Fluxd),
        raw.flux_receiver.take().map(Named::Receiver),
    ]
    .into_iter()
    .flatten()
    .collect();
    match <[Named; 1]>::try_from(set) {
        Ok([one]) => Ok(one),
        Err(set) if set.is_empty() => Err(format!(
            "set fluxd (a Flux v1 API URL such as {DEFAULT_API}) or fluxReceiver (a Flux v2 Receiver's URL)"
        )),
        Err(_) => Err(
            "both fluxd and fluxReceiver are set; a downstream is one of them, so split it in two"
                .into(),
        ),
    }
}

fn kind(
    label: &str,
    mut raw: RawDownstream,
    dir: &Path,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<(Kind, Option<PathBuf>)> {
    let mut problem = |text: String| {
        problems.push(format!("{label}: {text}"));
        None
    };
    match (named(&mut raw), raw.key_path) {
        (Err(text), _) => problem(text),
        (Ok(Named::Fluxd(_)), Some(_)) => problem(
            "keyPath only applies to fluxReceiver (fluxd's API takes no token); remove it".into(),
        ),
        (Ok(Named::Receiver(_)), None) => problem(
            "fluxReceiver needs keyPath: a file holding the token of the Receiver's Secret".into(),
        ),
        (Ok(Named::Fluxd(api)), None) => {
            let api = http_url(label, "fluxd", api, problems)?;
            Some((
                Kind::Fluxd {
                    api: api.trim_end_matches('/').to_owned(),
                },
                None,
            ))
        }
        (Ok(Named::Receiver(url)), Some(path)) => {
            let url = http_url(label, "fluxReceiver", url, problems)?;
            if let Err(why) = check_webhook_path(&url) {
                problems.push(format!(
                    "{label}: fluxReceiver {why}; use the Receiver's status.webhookPath (kubectl -n <namespace> get receiver <name> -o jsonpath='{{.status.webhookPath}}'), or compute it: flux-recv receiver-path --token-file {path} --name <name> --namespace <namespace>"
                ));
                return None;
            }
            match read_secret(label, "keyPath", dir, &path, warnings) {
                Ok(token) => Some((Kind::Receiver { url, token }, Some(PathBuf::from(path)))),
                Err(text) => {
                    problems.push(text);
                    None
                }
            }
        }
    }
}

/// The webhook path notification-controller gives a Receiver (its `status.webhookPath`):
/// `/hook/` and the lowercase hex sha256 of the token, the Receiver's name and its namespace.
pub fn receiver_webhook_path(token: &[u8], name: &str, namespace: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(token);
    digest.update(name.as_bytes());
    digest.update(namespace.as_bytes());
    format!("/hook/{}", hex::encode(digest.finalize()))
}

/// Longest part of a wrong receiver path a message shows.
const SHOWN_PATH: usize = 24;

/// Whether a receiver URL's path is a webhook path: `/hook/` and 64 lowercase hex digits.
fn check_webhook_path(url: &str) -> Result<(), String> {
    let path = url
        .parse::<ureq::http::Uri>()
        .map(|uri| uri.path().to_owned())
        .unwrap_or_default();
    let digest = path.strip_prefix("/hook/").unwrap_or("");
    let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if digest.len() == 64 && digest.chars().all(hex) {
        return Ok(());
    }
    let shown: String = path.chars().take(SHOWN_PATH).collect();
    let cut = if path.chars().count() > SHOWN_PATH {
        "…"
    } else {
        ""
    };
    Err(format!(
        "path {:?} is not a Receiver's webhook path, /hook/ and 64 lowercase hex digits",
        format!("{shown}{cut}")
    ))
}

/// `url` when it is an http(s) URL this build can call.
fn http_url(label: &str, field: &str, url: String, problems: &mut Vec<String>) -> Option<String> {
    // A Receiver's URL is named by its origin only: its path derives from the Receiver's token.
    let shown = match field {
        "fluxReceiver" => format!("{}/…", origin(&url)),
        _ => url.clone(),
    };
    if let Err(why) = check_http_url(&url) {
        problems.push(format!(
            "{label}: {field} {shown:?} {why}; use an http(s) URL"
        ));
        return None;
    }
    if needs_missing_tls(&url) {
        problems.push(format!(
            "{label}: {field} {shown:?} is https, but this build has no TLS; use a build with the default `tls` feature, or http"
        ));
        return None;
    }
    Some(url)
}

fn globs(
    label: &str,
    field: &str,
    raw: Option<Vec<String>>,
    problems: &mut Vec<String>,
) -> Vec<Glob> {
    if raw.as_ref().is_some_and(Vec::is_empty) {
        // An empty list would mean "no filter", the opposite of what it looks like.
        problems.push(format!(
            "{label}: {field} is empty; list at least one glob, or remove it"
        ));
    }
    let raw = raw.unwrap_or_default();
    let mut globs = Vec::with_capacity(raw.len());
    for (i, text) in raw.iter().enumerate() {
        match Glob::parse(text) {
            Ok(glob) => globs.push(glob),
            Err(why) => problems.push(format!(
                "{label}: {field}[{i}] {text:?} {why}; use * and ? (and [a-z] sets), or \\ before a literal one"
            )),
        }
    }
    globs
}

/// An endpoint's `notify` names must name configured downstreams.
pub(super) fn check_endpoint(endpoint: &Endpoint, downstreams: &[DownstreamConfig]) -> Vec<String> {
    let known: Vec<&str> = downstreams.iter().map(|d| d.name.as_str()).collect();
    endpoint
        .notify
        .iter()
        .filter(|name| !known.contains(&name.as_str()))
        .map(|name| {
            format!(
                "{}: notify names {name:?}, which is not a downstream; use one of: {}",
                endpoint.label(),
                known.join(", ")
            )
        })
        .collect()
}
