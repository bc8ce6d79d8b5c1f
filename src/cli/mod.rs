//! The command line: one flag table ([`FLAGS`]) drives parsing, the `FLUX_RECV_*` environment
//! names, `--help` and its defaults. A flag on the command line wins over the environment.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::app::{self, DeliveryOptions, ServerOptions};
use crate::cidr;
use crate::commands::{self, Notify, CHECK_HELP, DIGEST_HELP, ENDPOINTS_HELP, NOTIFY_HELP};
use crate::log::{Format, Level};
use crate::sources::Source;

mod flags;

pub use flags::{Flag, Value, FLAGS, SUBCOMMAND_FLAGS};

/// What to do.
#[derive(Debug)]
pub enum Command {
    Serve(Box<Serve>),
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
    Notify(Notify),
    ReceiverPath(commands::ReceiverPath),
    Help(String),
    Version,
}

/// `flux-recv [FLAGS]`.
#[derive(Debug)]
pub struct Serve {
    pub config: PathBuf,
    pub options: app::Options,
    pub shutdown_grace: Duration,
    pub watch_interval: Duration,
    pub log_format: Format,
    pub log_level: Level,
}

/// The whole `--help` text, from the flag table and the source registry.
pub fn help() -> String {
    let mut text = format!(
        "flux-recv {}: receives git and image push webhooks and notifies Flux (fluxd, or Flux v2 receivers)

Usage:
  flux-recv [FLAGS]                                  serve
  flux-recv endpoints [--config F] [--base-url URL]  print each endpoint's route (or full URL)
  flux-recv check [--config F]                       validate config, keys and tokens; exit 0 or 1
  flux-recv digest KEYFILE [--registry-host H]       print the route of one key
  flux-recv notify --url U --key-file K (--git R --branch B | --image I)
                                                     send one change to a Generic endpoint
  flux-recv receiver-path --token-file F --name N --namespace NS
                                                     print a Flux v2 Receiver's webhook path

Flags (--flag VALUE or --flag=VALUE; each also from the environment, e.g. FLUX_RECV_LISTEN=:9090;
a flag wins over the environment):
",
        env!("CARGO_PKG_VERSION")
    );
    for flag in FLAGS {
        let left = format!("{} {}", flag.name, flag.placeholder)
            .trim_end()
            .to_owned();
        let default = flag
            .default
            .map(|d| format!(" [default: {d}]"))
            .unwrap_or_default();
        text.push_str(&format!("  {left:<22} {}{default}\n", flag.help));
    }
    text.push_str(
        "  -h, --help             this text
  -V, --version          the version

Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads the config (as does a change on disk).
Paths: /hook/<digest> (one per endpoint), /health (liveness), /ready (readiness), /metrics.

Sources (config `source:` names, and how each is authenticated):
",
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

/// Reads flags from `args`, then from the environment through `env`.
struct Reader<'a> {
    args: pico_args::Arguments,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    fn flag(name: &str) -> Flag {
        FLAGS
            .iter()
            .copied()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} is not in FLAGS"))
    }

    /// The text of `name` as given (flag, else environment), else its default, and where it
    /// came from for messages.
    fn raw(&mut self, name: &'static str) -> Result<Option<(String, String)>, String> {
        let flag = Reader::flag(name);
        if let Some(value) = self
            .args
            .opt_value_from_str::<_, String>(name)
            .map_err(|e| e.to_string())?
        {
            return Ok(Some((value, name.to_owned())));
        }
        let env = flag.env_name();
        if let Some(value) = (self.env)(&env).filter(|v| !v.is_empty()) {
            return Ok(Some((value, format!("{env} (--{})", &name[2..]))));
        }
        Ok(flag.default.map(|d| (d.to_owned(), name.to_owned())))
    }

    fn text(&mut self, name: &'static str) -> Result<Option<String>, String> {
        Ok(self.raw(name)?.map(|(value, _)| value))
    }

    fn required(&mut self, name: &'static str) -> Result<String, String> {
        self.text(name)?
            .ok_or_else(|| format!("{name} has no default; set it"))
    }

    fn count(&mut self, name: &'static str) -> Result<u64, String> {
        self.count_or_none(name)?
            .ok_or_else(|| format!("{name} has no value"))
    }

    /// A count, or `None` for a flag without a default that is not given.
    fn count_or_none(&mut self, name: &'static str) -> Result<Option<u64>, String> {
        let Some((text, origin)) = self.raw(name)? else {
            return Ok(None);
        };
        let Value::Count { min, max } = Reader::flag(name).value else {
            return Err(format!("{name} is not a count"));
        };
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(format!(
                "{origin} {text:?}: expected a whole number from {min} to {max}"
            )),
        }
    }

    fn seconds(&mut self, name: &'static str) -> Result<Duration, String> {
        let (text, origin) = self
            .raw(name)?
            .ok_or_else(|| format!("{name} has no value"))?;
        let Value::Seconds { zero_ok, max } = Reader::flag(name).value else {
            return Err(format!("{name} is not seconds"));
        };
        let least = if zero_ok { "at least 0" } else { "more than 0" };
        match text.parse::<f64>() {
            Ok(secs) if (secs > 0.0 || (zero_ok && secs == 0.0)) && secs <= max as f64 => {
                Ok(Duration::from_secs_f64(secs))
            }
            _ => Err(format!(
                "{origin} {text:?}: expected seconds, {least} and at most {max} (e.g. 10 or 0.5)"
            )),
        }
    }

    /// A switch: given on the command line, or set in the environment.
    fn switch(&mut self, name: &'static str) -> Result<bool, String> {
        if self.args.contains(name) {
            return Ok(true);
        }
        let env = Reader::flag(name).env_name();
        match (self.env)(&env).as_deref().map(str::trim) {
            None | Some("" | "0" | "false" | "no" | "off") => Ok(false),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some(other) => Err(format!(
                "{env} ({name}) {other:?}: expected 1, true, yes or on (or 0, false, no, off)"
            )),
        }
    }

    fn word(&mut self, name: &'static str) -> Result<String, String> {
        let (text, origin) = self
            .raw(name)?
            .ok_or_else(|| format!("{name} has no value"))?;
        let Value::Word(words) = Reader::flag(name).value else {
            return Err(format!("{name} is not a word"));
        };
        if words.contains(&text.as_str()) {
            Ok(text)
        } else {
            Err(format!("{origin} {text:?}: expected {}", words.join(", ")))
        }
    }

    /// Rejects anything left on the command line.
    fn finish(self) -> Result<(), String> {
        match self.args.finish().first() {
            Some(first) => Err(format!(
                "unknown argument {:?}; see --help",
                first.to_string_lossy()
            )),
            None => Ok(()),
        }
    }
}

/// Parses a command line (without the program name); `env` looks up environment variables.
pub fn parse(raw: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Command, String> {
    let mut args = pico_args::Arguments::from_vec(raw);
    let sub = args.subcommand().map_err(|e| e.to_string())?;
    let wants_help = args.contains(["-h", "--help"]);
    let mut r = Reader { args, env };
    let config = |r: &mut Reader| r.required("--config").map(PathBuf::from);
    let command = match sub.as_deref() {
        Some("endpoints") if wants_help => Command::Help(ENDPOINTS_HELP.into()),
        Some("check") if wants_help => Command::Help(CHECK_HELP.into()),
        Some("digest") if wants_help => Command::Help(DIGEST_HELP.into()),
        Some("notify") if wants_help => Command::Help(NOTIFY_HELP.into()),
        Some("receiver-path") if wants_help => Command::Help(commands::RECEIVER_PATH_HELP.into()),
        Some("notify") => Command::Notify(Notify::from_flags(
            r.text("--url")?,
            r.text("--key-file")?,
            [r.text("--git")?, r.text("--branch")?, r.text("--image")?],
        )?),
        Some("receiver-path") => {
            Command::ReceiverPath(commands::ReceiverPath::parse(&mut |flag| r.text(flag))?)
        }
        Some("endpoints") => Command::Endpoints {
            config: config(&mut r)?,
            base_url: r.text("--base-url")?,
        },
        Some("check") => Command::Check {
            config: config(&mut r)?,
        },
        Some("digest") => Command::Digest {
            registry_host: r.text("--registry-host")?,
            key_file: r
                .args
                .free_from_str()
                .map_err(|_| "digest needs a KEYFILE; see flux-recv digest --help".to_owned())?,
        },
        Some(other) if other.starts_with('-') => {
            return Err(format!("unknown argument {other:?}; see --help"))
        }
        Some(other) => {
            return Err(format!(
                "unknown command {other:?}; use endpoints, check, digest, notify or receiver-path, or see --help"
            ))
        }
        None if wants_help => return Ok(Command::Help(help())),
        None if r.args.contains(["-V", "--version"]) => return Ok(Command::Version),
        None => Command::Serve(Box::new(serve(&mut r)?)),
    };
    if !matches!(command, Command::Help(_)) {
        r.finish()?;
    }
    Ok(command)
}

/// `:PORT` or `HOST:PORT` (the host is resolved when binding).
fn check_listen(flag: &str, listen: &str) -> Result<(), String> {
    match listen.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!(
            "{flag} {listen:?}: expected :PORT (all interfaces) or HOST:PORT, e.g. :8080 or 127.0.0.1:8080"
        )),
    }
}

fn serve(r: &mut Reader) -> Result<Serve, String> {
    let listen = r.required("--listen")?;
    check_listen("--listen", &listen)?;
    let listen_metrics = r.text("--listen-metrics")?;
    if let Some(addr) = &listen_metrics {
        check_listen("--listen-metrics", addr)?;
    }
    let max_connections = r.count("--max-connections")? as usize;
    let serve = Serve {
        config: PathBuf::from(r.required("--config")?),
        options: app::Options {
            server: ServerOptions {
                listen,
                listen_metrics,
                threads: r.count("--threads")? as usize,
                max_body_bytes: r.count("--max-body-bytes")?,
                read_timeout: r.seconds("--read-timeout")?,
                max_connections,
                max_connections_per_client: r
                    .count_or_none("--max-connections-per-client")?
                    .map_or((max_connections / 2).max(1), |n| n as usize),
                tls: tls_files(r.text("--tls-cert")?, r.text("--tls-key")?)?,
                trusted_proxies: match r.text("--trusted-proxies")? {
                    Some(list) => {
                        cidr::parse_list(&list).map_err(|e| format!("--trusted-proxies {e}"))?
                    }
                    None => Vec::new(),
                },
            },
            delivery: DeliveryOptions {
                notify_timeout: r.seconds("--notify-timeout")?,
                redeliver_for: r.seconds("--redeliver-for")?,
                redeliver_max: r.count("--redeliver-max")? as usize,
                redeliver_max_bytes: r.count("--redeliver-max-bytes")? as usize,
                notify_rate: r.count("--notify-rate")? as f64,
                spool: r.text("--spool")?.map(PathBuf::from),
                dry_run: r.switch("--dry-run")?,
            },
        },
        shutdown_grace: r.seconds("--shutdown-grace")?,
        watch_interval: r.seconds("--watch-interval")?,
        log_format: Format::parse(&r.word("--log-format")?).unwrap_or(Format::Logfmt),
        log_level: Level::parse(&r.word("--log-level")?).unwrap_or(Level::Info),
    };
    // Sub-command flags mean nothing when serving (they may come from the environment).
    for name in SUBCOMMAND_FLAGS.iter().copied() {
        let _ = r.text(name)?;
    }
    Ok(serve)
}

/// `--tls-cert` and `--tls-key`: both or neither, in a build that has TLS.
fn tls_files(cert: Option<String>, key: Option<String>) -> Result<Option<app::TlsFiles>, String> {
    let files = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => app::TlsFiles {
            cert: cert.into(),
            key: key.into(),
        },
        (Some(_), None) => {
            return Err("--tls-cert needs --tls-key, the certificate's private key".into())
        }
        (None, Some(_)) => {
            return Err("--tls-key needs --tls-cert, the certificate (chain) it goes with".into())
        }
    };
    if cfg!(not(feature = "tls")) {
        return Err("--tls-cert and --tls-key need the `tls` feature, which this build does not have; use the default build (cargo build --release), or terminate TLS in a proxy in front".into());
    }
    Ok(Some(files))
}

/// The serving options of an empty command line and environment: every flag at its default.
pub fn defaults() -> app::Options {
    match parse(Vec::new(), &|_| None) {
        Ok(Command::Serve(serve)) => serve.options,
        _ => unreachable!("the flag table's defaults parse"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        parse(args.iter().map(OsString::from).collect(), &lookup)
    }

    #[test]
    fn the_environment_fills_only_flags_not_given() {
        let env = [
            ("FLUX_RECV_LISTEN", ":9999"),
            ("FLUX_RECV_CONFIG", "/env/config.yaml"),
            ("FLUX_RECV_MAX_BODY_BYTES", "100"),
            ("FLUX_RECV_LOG_LEVEL", ""),
        ];
        let Ok(Command::Serve(serve)) = parse_with(&["--config=/cli.yaml"], &env) else {
            panic!("not serve");
        };
        assert_eq!(serve.config, PathBuf::from("/cli.yaml"));
        assert_eq!(serve.options.server.listen, ":9999");
        assert_eq!(serve.options.server.max_body_bytes, 100);
        assert_eq!(serve.log_level, Level::Info);
    }

    #[test]
    fn defaults_come_from_the_table() {
        let Ok(Command::Serve(serve)) = parse_with(&[], &[]) else {
            panic!("not serve");
        };
        assert_eq!(serve.options.server.threads, 4);
        assert_eq!(
            serve.options.delivery.redeliver_for,
            Duration::from_secs(900)
        );
        assert_eq!(
            serve.options.delivery.notify_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(defaults().server.max_connections, 256);
        assert_eq!(serve.config, PathBuf::from("fluxrecv.yaml"));
        assert!(help().contains("--redeliver-for SECS"));
        assert!(help().contains("[default: 900]"));
    }

    #[test]
    fn a_bad_value_names_where_it_came_from() {
        let err = parse_with(&[], &[("FLUX_RECV_THREADS", "many")]).unwrap_err();
        assert!(
            err.contains("FLUX_RECV_THREADS") && err.contains("--threads"),
            "{err}"
        );
        let err = parse_with(&["--threads", "0"], &[]).unwrap_err();
        assert!(err.starts_with("--threads \"0\""), "{err}");
        assert!(parse_with(&["--redeliver-for", "0"], &[]).is_ok());
        assert!(parse_with(&["--notify-timeout", "0"], &[]).is_err());
    }

    #[test]
    fn listen_addresses_need_a_port() {
        for good in [":8080", "127.0.0.1:0", "[::1]:8080", "localhost:9090"] {
            assert!(parse_with(&["--listen", good], &[]).is_ok(), "{good}");
        }
        for bad in ["8080", "", "localhost", ":http", "1.2.3.4:99999"] {
            let err = parse_with(&["--listen", bad], &[]).unwrap_err();
            assert!(err.starts_with("--listen"), "{bad}: {err}");
        }
        assert!(parse_with(&["--listen-metrics", "9102"], &[]).is_err());
    }

    #[test]
    fn a_switch_is_present_or_set_in_the_environment() {
        let dry = |args: &[&str], env: &[(&str, &str)]| match parse_with(args, env) {
            Ok(Command::Serve(serve)) => Ok(serve.options.delivery.dry_run),
            Ok(_) => Err("not serve".to_owned()),
            Err(e) => Err(e),
        };
        assert_eq!(dry(&[], &[]), Ok(false));
        assert_eq!(dry(&["--dry-run"], &[]), Ok(true));
        assert_eq!(dry(&[], &[("FLUX_RECV_DRY_RUN", "true")]), Ok(true));
        assert_eq!(dry(&[], &[("FLUX_RECV_DRY_RUN", "0")]), Ok(false));
        assert!(dry(&[], &[("FLUX_RECV_DRY_RUN", "maybe")])
            .unwrap_err()
            .contains("FLUX_RECV_DRY_RUN"));
        assert!(help().contains("  --dry-run  "));
    }

    #[test]
    fn tls_flags_come_in_pairs_and_only_in_a_build_with_tls() {
        let err = parse_with(&["--tls-cert", "c.pem"], &[]).unwrap_err();
        assert!(err.contains("--tls-key"), "{err}");
        let err = parse_with(&[], &[("FLUX_RECV_TLS_KEY", "k.pem")]).unwrap_err();
        assert!(err.contains("--tls-cert"), "{err}");
        let both = parse_with(&["--tls-cert", "c.pem", "--tls-key", "k.pem"], &[]);
        if cfg!(feature = "tls") {
            assert!(both.is_ok());
        } else {
            let err = both.unwrap_err();
            assert!(err.contains("default build"), "{err}");
        }
    }

    #[test]
    fn env_names() {
        let name = |n: &str| FLAGS.iter().find(|f| f.name == n).unwrap().env_name();
        assert_eq!(name("--max-body-bytes"), "FLUX_RECV_MAX_BODY_BYTES");
        assert_eq!(name("--config"), "FLUX_RECV_CONFIG");
    }
}
