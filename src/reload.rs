//! Serving until stopped: the signals (SIGTERM/SIGINT stop, SIGHUP reloads), the watch of the
//! config and every file it names (a Kubernetes Secret update swaps a symlink, which this sees),
//! and each reload: a new config that validates replaces the old one, one that does not is
//! logged and the old one keeps serving.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::app::Running;
use crate::config::{self, Config};
use crate::log;
use crate::metrics;

/// What starts a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Sighup,
    /// The watch saw the config or a file it names change.
    FileChange,
}

impl Trigger {
    fn word(self) -> &'static str {
        match self {
            Trigger::Sighup => "SIGHUP",
            Trigger::FileChange => "file change",
        }
    }
}

/// What ends serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Sigterm,
    Sigint,
    /// Every event source is gone (cannot happen while the threads live).
    Orphaned,
}

impl Stop {
    pub fn word(self) -> &'static str {
        match self {
            Stop::Sigterm => "SIGTERM",
            Stop::Sigint => "SIGINT",
            Stop::Orphaned => "no event source",
        }
    }
}

enum Event {
    Stop(Stop),
    Reload(Trigger),
    /// Time to look at the files again.
    Watch,
}

/// Registers the signals; before serving, so that a signal never hits the default action.
pub fn signals() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGHUP])
}

/// Logs one line per endpoint (with its full route, as the Go original did, for operators to
/// copy; only its prefix where the route is the endpoint's only credential, since logs travel
/// to places many people read) and one per downstream.
pub fn announce(config: &Config) {
    for downstream in &config.downstreams {
        log::info(
            "downstream",
            &[
                ("name", (&downstream.name).into()),
                ("to", downstream.kind.describe().into()),
                (
                    "filtered",
                    log::text(downstream.filter != Default::default()),
                ),
            ],
        );
    }
    for endpoint in &config.endpoints {
        let notify: Vec<&str> = config
            .downstreams_of(endpoint)
            .into_iter()
            .map(|i| config.downstreams[i].name.as_str())
            .collect();
        let fields = [
            ("source", endpoint.source.name().into()),
            ("key", log::text(endpoint.key_path.display())),
            ("route", endpoint.loggable_route().into()),
            ("notify", notify.join(",").into()),
            (
                "note",
                "the route is this endpoint's credential: `flux-recv endpoints` prints it".into(),
            ),
        ];
        let shown = fields.len() - usize::from(!endpoint.route_is_credential());
        log::info("endpoint", &fields[..shown]);
    }
}

/// Serves until a stop signal, reloading on SIGHUP and on changes to the files.
pub fn serve_until_stopped(
    running: &Running,
    path: &Path,
    config: Config,
    watch_interval: Duration,
    mut signals: Signals,
) -> Stop {
    let (events, inbox) = mpsc::channel();
    let signal_events = events.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let event = match signal {
                SIGHUP => Event::Reload(Trigger::Sighup),
                SIGINT => Event::Stop(Stop::Sigint),
                _ => Event::Stop(Stop::Sigterm),
            };
            if signal_events.send(event).is_err() {
                return;
            }
        }
    });
    std::thread::spawn(move || loop {
        std::thread::sleep(watch_interval);
        if events.send(Event::Watch).is_err() {
            return;
        }
    });

    let mut current = config;
    let mut seen = fingerprint(path, &current);
    let tls_print = || running.tls_files().map(|f| files_print(&[&f.cert, &f.key]));
    let mut tls_seen = tls_print();
    loop {
        let (trigger, config_due, tls_due) = match inbox.recv() {
            Ok(Event::Stop(stop)) => return stop,
            Err(_) => return Stop::Orphaned,
            Ok(Event::Reload(trigger)) => (trigger, true, tls_seen.is_some()),
            Ok(Event::Watch) => (
                Trigger::FileChange,
                fingerprint(path, &current) != seen,
                tls_print() != tls_seen,
            ),
        };
        if config_due {
            if let Some(config) = reload(running, path, trigger) {
                current = config;
            }
            seen = fingerprint(path, &current);
        }
        if tls_due {
            reload_tls(running, trigger);
            tls_seen = tls_print();
        }
    }
}

/// A renewal of the listener's certificate: new connections get the new pair; a pair that does
/// not load is logged and the old one serves on.
fn reload_tls(running: &Running, trigger: Trigger) {
    match running.reload_tls() {
        Ok(true) => log::info(
            "tls certificate reloaded",
            &[("trigger", trigger.word().into())],
        ),
        Ok(false) => {}
        Err(problem) => log::error(
            "tls certificate reload failed; still serving the previous one",
            &[("detail", problem.into())],
        ),
    }
}

/// A fingerprint of these files' contents (a missing one counted as such).
fn files_print(files: &[&Path]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for file in files {
        hash.update(b"\0");
        match std::fs::read(file) {
            Ok(bytes) => hash.update(&bytes),
            Err(_) => hash.update(b"\xffmissing"),
        }
    }
    hash.finalize().into()
}

fn reload(running: &Running, path: &Path, trigger: Trigger) -> Option<Config> {
    match config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                log::warn("config", &[("detail", warning.into())]);
            }
            running.reload(&loaded.config);
            metrics::get().reloads.inc(&["ok"]);
            log::info(
                "config reloaded",
                &[
                    ("trigger", trigger.word().into()),
                    ("endpoints", loaded.config.endpoints.len().into()),
                ],
            );
            announce(&loaded.config);
            Some(loaded.config)
        }
        Err(errors) => {
            metrics::get().reloads.inc(&["failed"]);
            for problem in &errors.0 {
                log::error(
                    "config reload failed; still serving the previous config",
                    &[("detail", problem.into())],
                );
            }
            None
        }
    }
}

/// A fingerprint of the config file and every file it names, to notice changes on disk
/// (including Kubernetes' symlink swap of a mounted Secret, since files are read through it).
fn fingerprint(path: &Path, config: &Config) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(std::fs::read(path).unwrap_or_default());
    let dir = path.parent().unwrap_or(Path::new("."));
    for file in config.files() {
        hash.update(b"\0");
        match std::fs::read(dir.join(file)) {
            Ok(bytes) => hash.update(&bytes),
            Err(_) => hash.update(b"\xffmissing"),
        }
    }
    hash.finalize().into()
}
