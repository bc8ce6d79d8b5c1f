//! The flag table: every flag that takes a value, its placeholder, default, kind of value and
//! help, from which parsing, the environment names, `--help` and the README's table follow.

/// What a flag's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// Any text (a path, an address, a URL).
    Text,
    /// A whole number in this range.
    Count { min: u64, max: u64 },
    /// Seconds, fractions allowed, up to an hour (or a day); zero only when it turns something off.
    Seconds { zero_ok: bool, max: u64 },
    /// One of these words.
    Word(&'static [&'static str]),
    /// No value: present or not (in the environment: `1`, `true`, `yes` or `on`).
    Switch,
}

/// One flag.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    pub name: &'static str,
    /// What `--help` shows after the name.
    pub placeholder: &'static str,
    pub default: Option<&'static str>,
    pub value: Value,
    pub help: &'static str,
}

impl Flag {
    /// `FLUX_RECV_MAX_BODY_BYTES` for `--max-body-bytes`.
    pub fn env_name(&self) -> String {
        format!(
            "FLUX_RECV_{}",
            self.name
                .trim_start_matches('-')
                .replace('-', "_")
                .to_uppercase()
        )
    }
}

const fn flag(
    name: &'static str,
    placeholder: &'static str,
    default: Option<&'static str>,
    value: Value,
    help: &'static str,
) -> Flag {
    Flag {
        name,
        placeholder,
        default,
        value,
        help,
    }
}

const SECONDS: Value = Value::Seconds {
    zero_ok: false,
    max: 3600,
};

/// Every flag that takes a value.
pub const FLAGS: &[Flag] = &[
    flag("--config", "FILE", Some("fluxrecv.yaml"), Value::Text, "config file; key paths are relative to its folder"),
    flag("--listen", "ADDR", Some(":8080"), Value::Text, "address to serve on; :PORT means all interfaces"),
    flag("--listen-metrics", "ADDR", None, Value::Text, "serve /metrics there instead of on --listen (always plain HTTP)"),
    flag("--tls-cert", "FILE", None, Value::Text, "serve --listen over TLS with this PEM certificate (chain); with --tls-key"),
    flag("--tls-key", "FILE", None, Value::Text, "the PEM private key of --tls-cert"),
    flag("--threads", "N", Some("4"), Value::Count { min: 1, max: 1024 }, "handler threads (verify, parse, notify)"),
    flag("--max-body-bytes", "N", Some("26214400"), Value::Count { min: 1, max: 1 << 32 }, "largest request body accepted (25 MiB)"),
    flag("--read-timeout", "SECS", Some("10"), SECONDS, "time to receive a whole request"),
    flag("--notify-timeout", "SECS", Some("5"), SECONDS, "time for all notify calls of one delivery"),
    flag("--max-connections", "N", Some("256"), Value::Count { min: 1, max: 65_536 }, "open connections at once; past it the longest idle one is closed, or 503"),
    flag("--max-connections-per-client", "N", None, Value::Count { min: 1, max: 65_536 }, "connections one client address may hold (IPv6: per /64); default half of --max-connections"),
    flag("--trusted-proxies", "CIDRS", None, Value::Text, "proxies (comma-separated ranges) whose X-Forwarded-For names the client"),
    flag("--redeliver-for", "SECS", Some("900"), Value::Seconds { zero_ok: true, max: 86_400 }, "how long a change a downstream could not take is retried (0: not at all, 502/504 instead of 202)"),
    flag("--redeliver-max", "N", Some("1024"), Value::Count { min: 1, max: 1_000_000 }, "changes waiting for redelivery at once; past it 502"),
    flag("--redeliver-max-bytes", "N", Some("8388608"), Value::Count { min: 4096, max: 1 << 32 }, "bytes of changes waiting for redelivery at once (8 MiB); past it 502"),
    flag("--notify-rate", "N", Some("100"), Value::Count { min: 0, max: 1_000_000 }, "calls a second per downstream; more wait coalesced in the queue (0: no limit)"),
    flag("--spool", "DIR", None, Value::Text, "keep queued changes in DIR, so that a 202 survives a restart or a kill"),
    flag("--dry-run", "", None, Value::Switch, "verify and parse deliveries and log what each downstream would get, but send nothing (for trying flux-recv out)"),
    flag("--shutdown-grace", "SECS", Some("10"), SECONDS, "on SIGTERM/SIGINT, time for requests in progress and a last redelivery try"),
    flag("--watch-interval", "SECS", Some("3"), SECONDS, "how often the config and key files are checked for changes"),
    flag("--log-format", "FORMAT", Some("logfmt"), Value::Word(&["logfmt", "json"]), "logfmt or json"),
    flag("--log-level", "LEVEL", Some("info"), Value::Word(&["error", "warn", "info", "debug"]), "error, warn, info or debug"),
    flag("--base-url", "URL", None, Value::Text, "endpoints: print full URLs under this base"),
    flag("--registry-host", "HOST", None, Value::Text, "digest: the endpoint's registryHost"),
    flag("--url", "URL", None, Value::Text, "notify: the Generic endpoint's full URL"),
    flag("--key-file", "FILE", None, Value::Text, "notify: the endpoint's key file"),
    flag("--git", "URL", None, Value::Text, "notify: the git repository pushed to (with --branch)"),
    flag("--branch", "BRANCH", None, Value::Text, "notify: the branch pushed to"),
    flag("--image", "REF", None, Value::Text, "notify: the image pushed (host/repo[:tag])"),
    flag("--token-file", "FILE", None, Value::Text, "receiver-path: the file holding the Receiver Secret's token"),
    flag("--name", "NAME", None, Value::Text, "receiver-path: the Receiver's name"),
    flag("--namespace", "NS", None, Value::Text, "receiver-path: the Receiver's namespace"),
];

/// The flags only sub-commands read (not in the README's serving flags table).
pub const SUBCOMMAND_FLAGS: &[&str] = &[
    "--base-url",
    "--registry-host",
    "--url",
    "--key-file",
    "--git",
    "--branch",
    "--image",
    "--token-file",
    "--name",
    "--namespace",
];
