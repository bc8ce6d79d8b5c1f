//! flux-recv: flags → config → routes → server, and the one place that turns an error into an
//! exit code (0 served and stopped, 1 bad config or cannot listen, 2 bad command line).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use flux_recv::config;
use flux_recv::log;
use flux_recv::server::{Options, Server};
use flux_recv::sources::Source;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Cli {
    config: PathBuf,
    options: Options,
    shutdown_grace: Duration,
}

enum Command {
    Serve(Cli),
    Help,
    Version,
}

fn help() -> String {
    let d = Options::default();
    let mut text = format!(
        "flux-recv {VERSION}: receives git and image push webhooks and notifies the Flux daemon

Usage: flux-recv [FLAGS]

Flags (--flag VALUE or --flag=VALUE):
  --config FILE          config file; key paths are relative to its folder [default: fluxrecv.yaml]
  --listen ADDR          address to serve on; :PORT means all interfaces [default: {listen}]
  --threads N            handler threads (verify, parse, notify) [default: {threads}]
  --max-body-bytes N     largest request body accepted [default: {body} (25 MiB)]
  --read-timeout SECS    time to receive a whole request [default: {read}]
  --notify-timeout SECS  time for all fluxd notify calls of one delivery [default: {notify}]
  --max-connections N    open connections at once; past it 503 [default: {conns}]
  --shutdown-grace SECS  on SIGTERM/SIGINT, time for requests in progress [default: 10]
  -h, --help             this text
  -V, --version          the version

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
            "  {:<17} {}\n",
            source.name(),
            source.authentication()
        ));
    }
    text.push_str(
        "\nEach endpoint is served at /hook/<hex sha256(key bytes ++ registryHost)>; /health answers 200.\n",
    );
    text
}

fn parse_args(raw: Vec<std::ffi::OsString>) -> Result<Command, String> {
    let mut args = pico_args::Arguments::from_vec(raw);
    if args.contains(["-h", "--help"]) {
        return Ok(Command::Help);
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Command::Version);
    }
    let defaults = Options::default();
    let e = |err: pico_args::Error| err.to_string();
    let config: PathBuf = args
        .opt_value_from_str("--config")
        .map_err(e)?
        .unwrap_or_else(|| PathBuf::from("fluxrecv.yaml"));
    let listen: String = args
        .opt_value_from_str("--listen")
        .map_err(e)?
        .unwrap_or(defaults.listen);
    let threads = count(&mut args, "--threads", defaults.threads, 1024)?;
    let max_body_bytes = count(
        &mut args,
        "--max-body-bytes",
        defaults.max_body_bytes as usize,
        1 << 32,
    )? as u64;
    let read_timeout = seconds(&mut args, "--read-timeout", defaults.read_timeout)?;
    let notify_timeout = seconds(&mut args, "--notify-timeout", defaults.notify_timeout)?;
    let shutdown_grace = seconds(&mut args, "--shutdown-grace", Duration::from_secs(10))?;
    let max_connections = count(
        &mut args,
        "--max-connections",
        defaults.max_connections,
        65_536,
    )?;
    let rest = args.finish();
    if let Some(first) = rest.first() {
        return Err(format!(
            "unknown argument {:?}; see --help",
            first.to_string_lossy()
        ));
    }
    if listen.is_empty() {
        return Err("--listen is empty; use :PORT or HOST:PORT".into());
    }
    Ok(Command::Serve(Cli {
        config,
        shutdown_grace,
        options: Options {
            listen,
            threads,
            max_body_bytes,
            read_timeout,
            notify_timeout,
            max_connections,
        },
    }))
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

fn serve(cli: Cli) -> ExitCode {
    let loaded = match config::load(&cli.config) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for problem in &errors.0 {
                eprintln!("flux-recv: {problem}");
            }
            eprintln!(
                "flux-recv: {} problem(s) in {}; not starting",
                errors.0.len(),
                cli.config.display()
            );
            return ExitCode::from(1);
        }
    };
    for warning in &loaded.warnings {
        log::warn("config", &[("detail", warning)]);
    }
    let config = loaded.config;
    if config.api.starts_with("https:") {
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
    let o = &cli.options;
    log::info(
        "listening",
        &[
            ("addr", &server.local_addr()),
            ("version", &VERSION),
            ("api", &config.api),
            ("threads", &o.threads),
            ("max_connections", &o.max_connections),
            ("max_body_bytes", &o.max_body_bytes),
            ("read_timeout_s", &o.read_timeout.as_secs_f64()),
            ("notify_timeout_s", &o.notify_timeout.as_secs_f64()),
        ],
    );
    // Registered before serving, so a signal can never hit the default (die at once) action.
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("flux-recv: cannot handle signals: {e}");
            return ExitCode::from(1);
        }
    };
    let running = server.spawn();
    if let Some(signal) = signals.forever().next() {
        let name = if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        log::info(
            "stopping",
            &[
                ("signal", &name),
                ("in_flight", &running.busy()),
                ("grace_s", &cli.shutdown_grace.as_secs_f64()),
            ],
        );
    }
    let left = running.shutdown(cli.shutdown_grace);
    if left > 0 {
        log::warn("stopped with requests unanswered", &[("in_flight", &left)]);
    } else {
        log::info("stopped", &[]);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(Command::Help) => {
            print!("{}", help());
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("flux-recv {VERSION}");
            ExitCode::SUCCESS
        }
        Ok(Command::Serve(cli)) => serve(cli),
        Err(why) => {
            eprintln!("flux-recv: {why}");
            ExitCode::from(2)
        }
    }
}
