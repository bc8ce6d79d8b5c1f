//! The sub-commands that read a config or a key and bind nothing: `endpoints`, `check`, `digest`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Endpoint};
use crate::signature::Key;
use crate::sources::Source;

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

/// Where a downstream's calls go, and whether it filters.
fn describe(downstream: &config::DownstreamConfig) -> String {
    let filtered = if downstream.filter == Default::default() {
        ""
    } else {
        ", filtered"
    };
    format!("{}{filtered}", downstream.kind.describe())
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
