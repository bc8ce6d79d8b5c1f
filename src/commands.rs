//! The sub-commands that bind nothing: `endpoints`, `check`, `digest` read a config or a key;
//! `receiver-path` computes a Flux v2 Receiver's webhook path; `notify` sends one change to a
//! Generic endpoint, as a CI pipeline would.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::change::Change;
use crate::config::{self, Endpoint};
use crate::downstream::{origin, Kind};
use crate::signature::Key;
use crate::sources::Source;

pub const ENDPOINTS_HELP: &str = "Usage: flux-recv endpoints [--config FILE] [--base-url URL]

Prints one row per endpoint: source, key path, its hook path (or, with --base-url, the full URL
to give the provider) and the downstreams it feeds. Reads the config and keys; binds nothing.
Exit 0, or 1 on a bad config.
";

pub const CHECK_HELP: &str = "Usage: flux-recv check [--config FILE]

Validates the config and every key and token file without binding a socket, lists every problem
and warning, the downstreams and what each endpoint feeds, and exits 0 (usable) or 1 (not).
";

pub const DIGEST_HELP: &str = "Usage: flux-recv digest KEYFILE [--registry-host HOST]

Prints the route /hook/<hex sha256(key bytes ++ registryHost)> of one key file, as the server
would serve it. Key bytes are used as stored (a trailing newline counts).
";

pub const NOTIFY_HELP: &str =
    "Usage: flux-recv notify --url URL --key-file FILE (--git URL --branch BRANCH | --image REF)

Sends one change to a flux-recv endpoint of source Generic, signed with its key (X-Signature
sha256=, or Standard Webhooks when the key file holds a whsec_ token), and prints the reply.
For a CI pipeline after a push: --git git@host:org/repo.git --branch main, or
--image mirror.internal:5000/team/app:1.2 (split as fluxd splits it; the tag is dropped).
Exit 0 when flux-recv accepted it (2xx), 1 when it refused it or could not be reached, 2 on a
bad command line.
";

pub const RECEIVER_PATH_HELP: &str =
    "Usage: flux-recv receiver-path --token-file FILE --name NAME --namespace NAMESPACE

Prints the webhook path notification-controller gives a Flux v2 Receiver: /hook/ and the hex
sha256 of its Secret's token, its name and its namespace (its status.webhookPath). Append it to
the webhook Service's URL for a notify[].fluxReceiver. The token file is used byte for byte, as
the Secret holds it (a trailing newline counts). Exit 0, or 1 when the file cannot be read.
";

/// `flux-recv notify`: one change, signed with a Generic endpoint's key, sent to its URL.
#[derive(Debug)]
pub struct Notify {
    pub url: String,
    pub key_file: PathBuf,
    pub change: Change,
}

impl Notify {
    /// The request its flags (`--url`, `--key-file`, `--git`, `--branch`, `--image`) make.
    pub fn from_flags(
        url: Option<String>,
        key_file: Option<String>,
        [git, branch, image]: [Option<String>; 3],
    ) -> Result<Notify, String> {
        let needs = |what: &str| format!("notify needs {what}; see flux-recv notify --help");
        let url = url.ok_or_else(|| needs("--url, the Generic endpoint's URL"))?;
        let key_file = key_file.ok_or_else(|| needs("--key-file"))?;
        let change = match (git, branch, image) {
            (Some(git), Some(branch), None) => Change::git(git, &branch),
            (None, None, Some(image)) => {
                Change::image(&image).map_err(|e| format!("--image {image:?}: {e}"))?
            }
            (Some(_), None, None) => return Err(needs("--branch with --git")),
            _ => return Err(needs("either --git URL --branch BRANCH or --image REF")),
        };
        Ok(Notify {
            url,
            key_file: key_file.into(),
            change,
        })
    }
}

/// Loads the config, telling `report` every problem; `None` when it cannot be used.
pub fn load_or_report(path: &Path, report: &dyn Fn(&str)) -> Option<config::Loaded> {
    match config::load(path) {
        Ok(loaded) => Some(loaded),
        Err(errors) => {
            for problem in &errors.0 {
                report(problem);
            }
            report(&format!(
                "{} problem(s) in {}; not starting",
                errors.0.len(),
                path.display()
            ));
            None
        }
    }
}

/// A problem on stderr, as the sub-commands print them.
pub fn print(problem: &str) {
    eprintln!("flux-recv: {problem}");
}

/// The names of the downstreams `endpoint` feeds.
fn feeds(config: &config::Config, endpoint: &Endpoint) -> String {
    config
        .downstreams_of(endpoint)
        .into_iter()
        .map(|i| config.downstreams[i].name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// One row per endpoint: source, key path, route (or URL), downstreams.
pub fn endpoints(path: &Path, base_url: Option<&str>) -> ExitCode {
    let Some(loaded) = load_or_report(path, &print) else {
        return ExitCode::from(1);
    };
    let config = &loaded.config;
    let base = base_url.map(|b| b.trim_end_matches('/'));
    let heading = [
        "SOURCE".to_owned(),
        "KEY".to_owned(),
        "NOTIFY".to_owned(),
        if base.is_some() { "URL" } else { "ROUTE" }.to_owned(),
    ];
    let rows: Vec<[String; 4]> = std::iter::once(heading)
        .chain(config.endpoints.iter().map(|e| {
            [
                e.source.name().to_owned(),
                e.key_path.display().to_string(),
                feeds(config, e),
                format!("{}{}", base.unwrap_or(""), e.route()),
            ]
        }))
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for [source, key, notify, route] in &rows {
        println!("{source:<w0$}  {key:<w1$}  {notify:<w2$}  {route}");
    }
    ExitCode::SUCCESS
}

/// Validates the config and its files; lists warnings, downstreams and what each endpoint feeds.
pub fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("flux-recv: warning: {warning}");
            }
            let config = &loaded.config;
            println!(
                "{}: ok, {} endpoint(s), {} downstream(s)",
                path.display(),
                config.endpoints.len(),
                config.downstreams.len()
            );
            for downstream in &config.downstreams {
                println!("  downstream {}: {}", downstream.name, describe(downstream));
            }
            for endpoint in &config.endpoints {
                println!(
                    "  {} notifies {}",
                    endpoint.label(),
                    feeds(config, endpoint)
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for problem in &errors.0 {
                eprintln!("flux-recv: {problem}");
            }
            eprintln!(
                "flux-recv: {} problem(s) in {}",
                errors.0.len(),
                path.display()
            );
            ExitCode::from(1)
        }
    }
}

/// Where a downstream's calls go, and whether it filters. A receiver shows the first 8 hex
/// digits of its webhook path, enough to compare with the Receiver's `status.webhookPath`.
fn describe(downstream: &config::DownstreamConfig) -> String {
    let filtered = if downstream.filter == Default::default() {
        ""
    } else {
        ", filtered"
    };
    let place = match &downstream.kind {
        Kind::Receiver { url, .. } => {
            let path = url
                .parse::<ureq::http::Uri>()
                .map(|uri| uri.path().to_owned())
                .unwrap_or_default();
            let prefix: String = path.chars().take("/hook/".len() + 8).collect();
            format!("receiver {}{prefix}…", origin(url))
        }
        kind => kind.describe(),
    };
    format!("{place}{filtered}")
}

/// The route of one key file.
pub fn digest(key_file: &Path, registry_host: Option<String>) -> ExitCode {
    let bytes = match std::fs::read(key_file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!(
                "flux-recv: cannot read key file {}: {e}",
                key_file.display()
            );
            return ExitCode::from(1);
        }
    };
    if bytes.is_empty() {
        eprintln!(
            "flux-recv: warning: {} is empty; the server refuses empty keys",
            key_file.display()
        );
    }
    let endpoint = Endpoint::new(
        0,
        Source::ALL[0],
        Key::new(bytes),
        key_file.into(),
        registry_host,
    );
    println!("{}", endpoint.route());
    ExitCode::SUCCESS
}

/// `flux-recv receiver-path`: a Flux v2 Receiver's token file, name and namespace.
#[derive(Debug)]
pub struct ReceiverPath {
    pub token_file: PathBuf,
    pub name: String,
    pub namespace: String,
}

impl ReceiverPath {
    /// From the sub-command's flags; `text` reads one (command line, else environment).
    pub fn parse(
        text: &mut dyn FnMut(&'static str) -> Result<Option<String>, String>,
    ) -> Result<ReceiverPath, String> {
        let mut needs = |flag: &'static str| {
            text(flag)?.filter(|v| !v.is_empty()).ok_or_else(|| {
                format!("receiver-path needs {flag}; see flux-recv receiver-path --help")
            })
        };
        Ok(ReceiverPath {
            token_file: needs("--token-file")?.into(),
            name: needs("--name")?,
            namespace: needs("--namespace")?,
        })
    }
}

/// A Receiver's webhook path from its token file, name and namespace.
pub fn receiver_path(receiver: &ReceiverPath) -> ExitCode {
    let ReceiverPath {
        token_file,
        name,
        namespace,
    } = receiver;
    let token = match std::fs::read(token_file) {
        Ok(token) => token,
        Err(e) => {
            print(&format!(
                "cannot read token file {}: {e}",
                token_file.display()
            ));
            return ExitCode::from(1);
        }
    };
    if token.last().is_some_and(u8::is_ascii_whitespace) {
        print(&format!(
            "warning: {} ends in whitespace, which is part of the token; write it with printf %s",
            token_file.display()
        ));
    }
    println!("{}", config::receiver_webhook_path(&token, name, namespace));
    ExitCode::SUCCESS
}

/// How long `notify` waits for flux-recv's reply (it answers within its notify timeout).
const NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends the change signed as a Generic delivery; prints the reply; 0 on a 2xx answer, else 1.
pub fn notify(request: &Notify) -> ExitCode {
    let key = match std::fs::read(&request.key_file) {
        Ok(key) if !key.is_empty() => key,
        Ok(_) => {
            print(&format!("key file {} is empty", request.key_file.display()));
            return ExitCode::from(1);
        }
        Err(e) => {
            print(&format!(
                "cannot read key file {}: {e}",
                request.key_file.display()
            ));
            return ExitCode::from(1);
        }
    };
    let body = request.change.to_json();
    let signed = Source::Generic.sample(&key, &body);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(NOTIFY_WAIT))
        .user_agent(concat!("flux-recv/", env!("CARGO_PKG_VERSION"), " notify"))
        .build()
        .into();
    let mut call = agent.post(&request.url);
    for (name, value) in &signed.headers {
        call = call.header(name, value);
    }
    match call.send(&body[..]) {
        Ok(mut reply) => {
            let status = reply.status().as_u16();
            let text = reply
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .unwrap_or_default();
            let line = format!("{status} {}: {}", request.change, text.trim());
            if (200..300).contains(&status) {
                println!("{line}");
                ExitCode::SUCCESS
            } else {
                print(&format!("notify refused: {line}"));
                ExitCode::from(1)
            }
        }
        Err(e) => {
            print(&format!("notify: cannot reach flux-recv: {e}"));
            ExitCode::from(1)
        }
    }
}
