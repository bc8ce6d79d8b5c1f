//! flux-recv: the command line → config → server. Exit codes: 0 served and stopped (or a
//! sub-command succeeded), 1 bad config or cannot listen (here for serving; each sub-command in
//! `commands.rs` returns its own 0 or 1), 2 bad command line (here).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use flux_recv::cli::{self, Command, Serve};
use flux_recv::log::Format;
use flux_recv::{app, commands, log, metrics, reload};

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    match cli::parse(args, &|name| std::env::var(name).ok()) {
        Ok(Command::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("flux-recv {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Serve(serve)) => {
            log::configure(serve.log_format, serve.log_level);
            run(*serve)
        }
        Ok(Command::Endpoints { config, base_url }) => {
            commands::endpoints(&config, base_url.as_deref())
        }
        Ok(Command::Check { config }) => commands::check(&config),
        Ok(Command::Digest {
            key_file,
            registry_host,
        }) => commands::digest(&key_file, registry_host),
        Ok(Command::Notify(request)) => commands::notify(&request),
        Ok(Command::ReceiverPath(receiver)) => commands::receiver_path(&receiver),
        Err(why) => {
            eprintln!("flux-recv: {why}");
            ExitCode::from(2)
        }
    }
}

/// A problem that stops start-up: a log line in JSON when the logs are JSON, so that a log
/// pipeline sees it, else plain text.
fn fatal(format: Format) -> impl Fn(&str) {
    move |problem: &str| match format {
        Format::Json => log::error("fatal", &[("detail", problem.into())]),
        Format::Logfmt => commands::print(problem),
    }
}

/// Serves until SIGTERM or SIGINT, then stops gracefully.
fn run(serve: Serve) -> ExitCode {
    metrics::get().started();
    let fatal = fatal(serve.log_format);
    let Some(loaded) = commands::load_or_report(&serve.config, &fatal) else {
        return ExitCode::from(1);
    };
    for warning in &loaded.warnings {
        log::warn("config", &[("detail", warning.into())]);
    }
    let config = loaded.config;
    let o = &serve.options;
    let bound = match app::bind(&config, o) {
        Ok(bound) => bound,
        Err(why) => {
            fatal(&why);
            return ExitCode::from(1);
        }
    };
    let signals = match reload::signals() {
        Ok(signals) => signals,
        Err(e) => {
            fatal(&format!("cannot handle signals: {e}"));
            return ExitCode::from(1);
        }
    };
    reload::announce(&config);
    log_listening(&bound, config.downstreams.len(), o);
    if o.delivery.dry_run {
        log::warn(
            "dry run: deliveries are verified and parsed, and each downstream's body is logged, but nothing is sent to any downstream; do not run this in production",
            &[],
        );
    }
    let running = bound.spawn();
    let stop = reload::serve_until_stopped(
        &running,
        &serve.config,
        config,
        serve.watch_interval,
        signals,
    );
    log::info(
        "stopping",
        &[
            ("signal", stop.word().into()),
            ("in_flight", running.in_flight().into()),
            ("grace_s", serve.shutdown_grace.as_secs_f64().into()),
        ],
    );
    let left = running.shutdown(serve.shutdown_grace);
    if left > 0 {
        log::warn(
            "stopped with requests unanswered",
            &[("in_flight", left.into())],
        );
    } else {
        log::info("stopped", &[]);
    }
    ExitCode::SUCCESS
}

/// The start-up line with the addresses and the limits in force.
fn log_listening(bound: &app::Bound, downstreams: usize, o: &app::Options) {
    let metrics_addr = bound
        .metrics_addr()
        .map_or_else(|| "same".to_owned(), |a| a.to_string());
    log::info(
        "listening",
        &[
            ("addr", log::text(bound.local_addr())),
            ("metrics", metrics_addr.into()),
            ("version", env!("CARGO_PKG_VERSION").into()),
            ("downstreams", downstreams.into()),
            ("threads", o.server.threads.into()),
            ("max_connections", o.server.max_connections.into()),
            ("max_body_bytes", o.server.max_body_bytes.into()),
            ("read_timeout_s", o.server.read_timeout.as_secs_f64().into()),
            (
                "notify_timeout_s",
                o.delivery.notify_timeout.as_secs_f64().into(),
            ),
            (
                "redeliver_for_s",
                o.delivery.redeliver_for.as_secs_f64().into(),
            ),
            ("dry_run", log::text(o.delivery.dry_run)),
            ("tls", log::text(o.server.tls.is_some())),
        ],
    );
}
