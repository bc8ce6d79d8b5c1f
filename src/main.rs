//! flux-recv: flags (and their `FLUX_RECV_*` environment twins) → config → routes → server, the
//! sub-commands, signals and reloads, and the one place that turns an error into an exit code:
//! 0 served and stopped (or a sub-command succeeded), 1 bad config or cannot listen, 2 bad
//! command line.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use flux_recv::config::{self, Config, Endpoint, Key};
use flux_recv::log::{self, Format, Level};
use flux_recv::metrics;
use flux_recv::server::{Options, Running, Server};
use flux_recv::sources::Source;
use sha2::{Digest, Sha256};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every flag that takes a value; each can also come from `FLUX_RECV_<NAME>` (a flag wins).
const VALUE_FLAGS: [&str; 14] = [
    "--config",
    "--listen",
    "--listen-metrics",
    "--threads",
    "--max-body-bytes",
    "--read-timeout",
    "--notify-timeout",
    "--max-connections",
    "--shutdown-grace",
    "--log-format",
    "--log-level",
    "--watch-interval",
    "--base-url",
    "--registry-host",
];

struct Cli {
    config: PathBuf,
    options: Options,
    shutdown_grace: Duration,
    watch_interval: Duration,
}

enum Command {
    Serve(Cli),
    Endpoints {
        config: PathBuf,
        base_url: Option<String>,
    },
    Check {
        config: PathBuf,
    },
    Digest {
        key_file: PathBuf,
        registry_host: Option<String>,
    },
    Help(&'static str),
    Version,
}

fn env_name(flag: &str) -> String {
    format!(
        "FLUX_RECV_{}",
        flag.trim_start_matches('-')
            .replace('-', "_")
            .to_uppercase()
    )
}

/// Appends `--flag=value` for every flag not on the command line whose environment variable is
/// set, so that flags win over the environment.
fn with_environment(
    mut args: Vec<OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Vec<OsString> {
    for flag in VALUE_FLAGS {
        let given = args.iter().any(|a| {
            let a = a.to_string_lossy();
            a == flag || a.starts_with(&format!("{flag}="))
        });
        if given {
            continue;
        }
        if let Some(value) = env(&env_name(flag)).filter(|v| !v.is_empty()) {
            args.push(format!("{flag}={value}").into());
        }
    }
    args
}

fn help() -> String {
    let d = Options::default();
    let mut text = format!(
        "flux-recv {VERSION}: receives git and image push webhooks and notifies the Flux daemon

Usage:
  flux-recv [FLAGS]                              serve
  flux-recv endpoints [--config F] [--base-url URL]  print each endpoint's route (or full URL)
  flux-recv check [--config F]                   validate config and keys; exit 0 or 1
  flux-recv digest KEYFILE [--registry-host H]   print the route of one key

Flags (--flag VALUE or --flag=VALUE; each also from the environment, e.g. FLUX_RECV_LISTEN=:9090;
a flag wins over the environment):
  --config FILE          config file; key paths are relative to its folder [default: fluxrecv.yaml]
  --listen ADDR          address to serve on; :PORT means all interfaces [default: {listen}]
  --listen-metrics ADDR  serve /metrics there instead of on --listen
  --threads N            handler threads (verify, parse, notify) [default: {threads}]
  --max-body-bytes N     largest request body accepted [default: {body} (25 MiB)]
  --read-timeout SECS    time to receive a whole request [default: {read}]
  --notify-timeout SECS  time for all fluxd notify calls of one delivery [default: {notify}]
  --max-connections N    open connections at once; past it 503 [default: {conns}]
  --shutdown-grace SECS  on SIGTERM/SIGINT, time for requests in progress [default: 10]
  --watch-interval SECS  how often the config and key files are checked for changes [default: 3]
  --log-format FORMAT    logfmt or json [default: logfmt]
  --log-level LEVEL      error, warn, info or debug [default: info]
  -h, --help             this text
  -V, --version          the version

Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads the config (as does a change on disk).
Paths: /hook/<digest> (one per endpoint), /health (liveness), /ready (readiness), /metrics.

Sources (config `source:` names, and how each is authenticated):
",
        listen = d.listen,
        threads = d.threads,
        body = d.max_body_bytes,
        read = d.read_timeout.as_secs(),
        notify = d.notify_timeout.as_secs(),
        conns = d.max_connections,
    );
    for source in Source::ALL {
        text.push_str(&format!(
            "  {:<24} {}\n",
            source.name(),
            source.authentication()
        ));
    }
    text.push_str("\nEach endpoint is served at /hook/<hex sha256(key bytes ++ registryHost)>.\n");
    text
}

const ENDPOINTS_HELP: &str = "Usage: flux-recv endpoints [--config FILE] [--base-url URL]

Prints one row per endpoint: source, key path, and its hook path (or, with --base-url, the full
URL to give the provider). Reads the config and keys; binds nothing. Exit 0, or 1 on a bad config.
";

const CHECK_HELP: &str = "Usage: flux-recv check [--config FILE]

Validates the config and every key file without binding a socket, lists every problem and
warning, and exits 0 (usable) or 1 (not).
";

const DIGEST_HELP: &str = "Usage: flux-recv digest KEYFILE [--registry-host HOST]

Prints the route /hook/<hex sha256(key bytes ++ registryHost)> of one key file, as the server
would serve it. Key bytes are used as stored (a trailing newline counts).
";

fn parse_args(raw: Vec<OsString>) -> Result<Command, String> {
    let mut args = pico_args::Arguments::from_vec(raw);
    let sub = args.subcommand().map_err(|e| e.to_string())?;
    let wants_help = args.contains(["-h", "--help"]);
    match sub.as_deref() {
        None => {}
        Some("endpoints") if wants_help => return Ok(Command::Help(ENDPOINTS_HELP)),
        Some("check") if wants_help => return Ok(Command::Help(CHECK_HELP)),
        Some("digest") if wants_help => return Ok(Command::Help(DIGEST_HELP)),
        Some("endpoints") => {
            let config = config_path(&mut args)?;
            let base_url = value(&mut args, "--base-url")?;
            finish(args)?;
            return Ok(Command::Endpoints { config, base_url });
        }
        Some("check") => {
            let config = config_path(&mut args)?;
            finish(args)?;
            return Ok(Command::Check { config });
        }
        Some("digest") => {
            let registry_host = value(&mut args, "--registry-host")?;
            let key_file: PathBuf = args
                .free_from_str()
                .map_err(|_| "digest needs a KEYFILE; see flux-recv digest --help".to_owned())?;
            finish(args)?;
            return Ok(Command::Digest {
                key_file,
                registry_host,
            });
        }
        Some(other) if other.starts_with('-') => {
            return Err(format!("unknown argument {other:?}; see --help"))
        }
        Some(other) => {
            return Err(format!(
                "unknown command {other:?}; use endpoints, check or digest, or see --help"
            ))
        }
    }
    if wants_help {
        return Ok(Command::Help(""));
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Command::Version);
    }
    let defaults = Options::default();
    let config = config_path(&mut args)?;
    let listen = value(&mut args, "--listen")?.unwrap_or(defaults.listen);
    let listen_metrics = value(&mut args, "--listen-metrics")?;
    let threads = count(&mut args, "--threads", defaults.threads, 1024)?;
    let max_body_bytes = count(
        &mut args,
        "--max-body-bytes",
        defaults.max_body_bytes as usize,
        1 << 32,
    )? as u64;
    let read_timeout = seconds(&mut args, "--read-timeout", defaults.read_timeout)?;
    let notify_timeout = seconds(&mut args, "--notify-timeout", defaults.notify_timeout)?;
    let max_connections = count(
        &mut args,
        "--max-connections",
        defaults.max_connections,
        65_536,
    )?;
    let shutdown_grace = seconds(&mut args, "--shutdown-grace", Duration::from_secs(10))?;
    let watch_interval = seconds(&mut args, "--watch-interval", Duration::from_secs(3))?;
    let format = match value(&mut args, "--log-format")? {
        None => Format::Logfmt,
        Some(f) => Format::parse(&f)
            .ok_or_else(|| format!("--log-format {f:?}: expected logfmt or json"))?,
    };
    let level = match value(&mut args, "--log-level")? {
        None => Level::Info,
        Some(l) => Level::parse(&l)
            .ok_or_else(|| format!("--log-level {l:?}: expected error, warn, info or debug"))?,
    };
    // Sub-command flags that came from the environment mean nothing when serving.
    let _ = value(&mut args, "--base-url")?;
    let _ = value(&mut args, "--registry-host")?;
    finish(args)?;
    if listen.is_empty() {
        return Err("--listen is empty; use :PORT or HOST:PORT".into());
    }
    log::configure(format, level);
    Ok(Command::Serve(Cli {
        config,
        shutdown_grace,
        watch_interval,
        options: Options {
            listen,
            threads,
            max_body_bytes,
            read_timeout,
            notify_timeout,
            max_connections,
            listen_metrics,
        },
    }))
}

/// Rejects anything left on the command line.
fn finish(args: pico_args::Arguments) -> Result<(), String> {
    match args.finish().first() {
        Some(first) => Err(format!(
            "unknown argument {:?}; see --help",
            first.to_string_lossy()
        )),
        None => Ok(()),
    }
}

fn config_path(args: &mut pico_args::Arguments) -> Result<PathBuf, String> {
    Ok(value(args, "--config")?
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fluxrecv.yaml")))
}

/// The raw value of `flag`, if given.
fn value(args: &mut pico_args::Arguments, flag: &'static str) -> Result<Option<String>, String> {
    args.opt_value_from_str(flag).map_err(|e| e.to_string())
}

fn count(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    default: usize,
    max: usize,
) -> Result<usize, String> {
    match value(args, flag)? {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "{flag} {s:?}: expected a whole number from 1 to {max}"
            )),
        },
    }
}

fn seconds(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    default: Duration,
) -> Result<Duration, String> {
    match value(args, flag)? {
        None => Ok(default),
        Some(s) => match s.parse::<f64>() {
            Ok(secs) if secs > 0.0 && secs <= 3600.0 => Ok(Duration::from_secs_f64(secs)),
            _ => Err(format!(
                "{flag} {s:?}: expected seconds, more than 0 and at most 3600 (e.g. 10 or 0.5)"
            )),
        },
    }
}

/// Loads the config, printing every problem; `None` when it cannot be used.
fn load_or_report(path: &Path) -> Option<config::Loaded> {
    match config::load(path) {
        Ok(loaded) => Some(loaded),
        Err(errors) => {
            for problem in &errors.0 {
                eprintln!("flux-recv: {problem}");
            }
            eprintln!(
                "flux-recv: {} problem(s) in {}; not starting",
                errors.0.len(),
                path.display()
            );
            None
        }
    }
}

fn endpoints(path: &Path, base_url: Option<&str>) -> ExitCode {
    let Some(loaded) = load_or_report(path) else {
        return ExitCode::from(1);
    };
    let base = base_url.map(|b| b.trim_end_matches('/'));
    let rows: Vec<[String; 3]> = loaded
        .config
        .endpoints
        .iter()
        .map(|e| {
            [
                e.source.name().to_owned(),
                e.key_path.display().to_string(),
                format!("{}{}", base.unwrap_or(""), e.route()),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0).max(6);
    let (w0, w1) = (width(0), width(1));
    println!(
        "{:<w0$}  {:<w1$}  {}",
        "SOURCE",
        "KEY",
        if base.is_some() { "URL" } else { "ROUTE" }
    );
    for [source, key, route] in &rows {
        println!("{source:<w0$}  {key:<w1$}  {route}");
    }
    ExitCode::SUCCESS
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("flux-recv: warning: {warning}");
            }
            println!(
                "{}: ok, {} endpoint(s), api {}",
                path.display(),
                loaded.config.endpoints.len(),
                loaded.config.api
            );
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

fn digest(key_file: &Path, registry_host: Option<String>) -> ExitCode {
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

fn log_endpoints(config: &Config) {
    for endpoint in &config.endpoints {
        log::info(
            "endpoint",
            &[
                ("source", &endpoint.source),
                ("key", &endpoint.key_path.display()),
                ("route", &endpoint.route()),
            ],
        );
    }
}

/// A fingerprint of the config file and every key file it names, to notice changes on disk
/// (including Kubernetes' symlink swap of a mounted Secret, since files are read through it).
fn fingerprint(path: &Path, config: &Config) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(std::fs::read(path).unwrap_or_default());
    let dir = path.parent().unwrap_or(Path::new("."));
    for endpoint in &config.endpoints {
        hash.update(b"\0");
        match std::fs::read(dir.join(&endpoint.key_path)) {
            Ok(bytes) => hash.update(&bytes),
            Err(_) => hash.update(b"\xffmissing"),
        }
    }
    hash.finalize().into()
}

enum Event {
    Stop(&'static str),
    Reload(&'static str),
}

fn reload(running: &Running, path: &Path, why: &str) -> Option<Config> {
    match config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                log::warn("config", &[("detail", warning)]);
            }
            running.reload(&loaded.config);
            metrics::get().reload(true);
            metrics::get().set_endpoints(loaded.config.endpoints.len());
            log::info(
                "config reloaded",
                &[
                    ("trigger", &why),
                    ("endpoints", &loaded.config.endpoints.len()),
                ],
            );
            log_endpoints(&loaded.config);
            Some(loaded.config)
        }
        Err(errors) => {
            metrics::get().reload(false);
            for problem in &errors.0 {
                log::error(
                    "config reload failed; still serving the previous config",
                    &[("detail", problem)],
                );
            }
            None
        }
    }
}

fn serve(cli: Cli) -> ExitCode {
    metrics::get().started();
    let Some(loaded) = load_or_report(&cli.config) else {
        return ExitCode::from(1);
    };
    for warning in &loaded.warnings {
        log::warn("config", &[("detail", warning)]);
    }
    let config = loaded.config;
    if config.api.starts_with("https:") && !cfg!(feature = "tls") {
        log::warn(
            "config",
            &[(
                "detail",
                &"api is https but this build has no TLS; notify calls will fail",
            )],
        );
    }
    let server = match Server::bind(&config, cli.options.clone()) {
        Ok(server) => server,
        Err(why) => {
            eprintln!("flux-recv: {why}");
            return ExitCode::from(1);
        }
    };
    // Registered before serving, so a signal can never hit the default (die at once) action.
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("flux-recv: cannot handle signals: {e}");
            return ExitCode::from(1);
        }
    };
    metrics::get().set_endpoints(config.endpoints.len());
    log_endpoints(&config);
    let o = &cli.options;
    let metrics_addr = server
        .metrics_addr()
        .map_or_else(|| "same".to_owned(), |a| a.to_string());
    log::info(
        "listening",
        &[
            ("addr", &server.local_addr()),
            ("metrics", &metrics_addr),
            ("version", &VERSION),
            ("api", &config.api),
            ("threads", &o.threads),
            ("max_connections", &o.max_connections),
            ("max_body_bytes", &o.max_body_bytes),
            ("read_timeout_s", &o.read_timeout.as_secs_f64()),
            ("notify_timeout_s", &o.notify_timeout.as_secs_f64()),
        ],
    );
    let running = server.spawn();

    let (events, inbox) = mpsc::channel();
    let signal_events = events.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let event = match signal {
                SIGHUP => Event::Reload("SIGHUP"),
                SIGINT => Event::Stop("SIGINT"),
                _ => Event::Stop("SIGTERM"),
            };
            if signal_events.send(event).is_err() {
                return;
            }
        }
    });
    let watched_path = cli.config.clone();
    let interval = cli.watch_interval;
    std::thread::spawn(move || loop {
        std::thread::sleep(interval);
        if events.send(Event::Reload("watch")).is_err() {
            return;
        }
    });

    let mut current = config;
    let mut seen = fingerprint(&watched_path, &current);
    let stop = loop {
        match inbox.recv() {
            Ok(Event::Stop(name)) => break name,
            Ok(Event::Reload(why)) => {
                let now = fingerprint(&watched_path, &current);
                if why == "watch" && now == seen {
                    continue;
                }
                let trigger = if why == "watch" { "file change" } else { why };
                if let Some(config) = reload(&running, &watched_path, trigger) {
                    current = config;
                }
                seen = fingerprint(&watched_path, &current);
            }
            Err(_) => break "no event source",
        }
    };
    log::info(
        "stopping",
        &[
            ("signal", &stop),
            ("in_flight", &running.busy()),
            ("grace_s", &cli.shutdown_grace.as_secs_f64()),
        ],
    );
    let left = running.shutdown(cli.shutdown_grace);
    if left > 0 {
        log::warn("stopped with requests unanswered", &[("in_flight", &left)]);
    } else {
        log::info("stopped", &[]);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = with_environment(std::env::args_os().skip(1).collect(), |name| {
        std::env::var(name).ok()
    });
    match parse_args(args) {
        Ok(Command::Help(text)) => {
            if text.is_empty() {
                print!("{}", help());
            } else {
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("flux-recv {VERSION}");
            ExitCode::SUCCESS
        }
        Ok(Command::Serve(cli)) => serve(cli),
        Ok(Command::Endpoints { config, base_url }) => endpoints(&config, base_url.as_deref()),
        Ok(Command::Check { config }) => check(&config),
        Ok(Command::Digest {
            key_file,
            registry_host,
        }) => digest(&key_file, registry_host),
        Err(why) => {
            eprintln!("flux-recv: {why}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_fills_only_flags_not_given() {
        let env = |name: &str| match name {
            "FLUX_RECV_LISTEN" => Some(":9999".to_owned()),
            "FLUX_RECV_CONFIG" => Some("/env/config.yaml".to_owned()),
            "FLUX_RECV_MAX_BODY_BYTES" => Some("100".to_owned()),
            "FLUX_RECV_LOG_LEVEL" => Some(String::new()),
            _ => None,
        };
        let args = with_environment(vec!["--config=/cli.yaml".into()], env);
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            vec![
                "--config=/cli.yaml",
                "--listen=:9999",
                "--max-body-bytes=100"
            ]
        );
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("--max-body-bytes"), "FLUX_RECV_MAX_BODY_BYTES");
        assert_eq!(env_name("--config"), "FLUX_RECV_CONFIG");
    }
}
