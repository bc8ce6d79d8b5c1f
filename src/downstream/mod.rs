//! Who is told: the downstreams a change goes to. Each is a fluxd (Flux v1, `POST
//! <api>/v11/notify`) or a Flux v2 notification-controller `Receiver` of type `generic-hmac`,
//! with optional filters. A call returns what happened ([`Sent`]); the caller records metrics and
//! logs. Transient failures can be queued for background redelivery ([`redelivery`]).
//!
//! The JSON a downstream receives is the change's wire format (`change.rs`), for both kinds: a
//! Receiver's CEL `resourceFilter` reads it as `req.Kind`, `req.Source.URL`, ….

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ureq::http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};

use crate::change::Change;
use crate::signature::{sign_hex, Algorithm, Key};
pub(crate) use crate::sync::lock;

pub mod calls;
pub mod filter;
pub mod redelivery;
mod resolve;

pub use filter::{Filter, Glob};

/// How much of a success reply is read (fluxd answers 202 with an empty body).
const MAX_REPLY_BYTES: u64 = 64 * 1024;
/// First wait before calling a downstream that refused the connection again (it may be
/// restarting). Doubles up to [`RETRY_MAX`], within the call's deadline.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(500);
/// Idle connections kept, for all downstreams together and per host: at least one per call that
/// can run at once at the default `--threads` (4 handlers and 4 callers), so a busy pool reuses
/// them instead of reconnecting (ureq's default of 3 made a 4-thread pool close and reopen a
/// fluxd connection on most rounds of concurrent calls). One pool for all downstreams, not one
/// each: with one each, a fleet of 1,000 Receivers kept 1,000 connections and their buffers (45
/// MiB of RSS after a few seconds of pushes). Not more: ureq's pool recounts its connections per
/// host on every check-in, in time that grows with the square of the idle connections; at 64,
/// one push to 1,000 Receivers at distinct hosts spent 55 % of its CPU there and took 437 ms
/// (`bench/fleet.py`), at 16 it takes 112 ms.
const IDLE_CONNECTIONS: usize = 16;
/// Buffer for a downstream's reply head and for the request we write, per pooled connection.
/// fluxd's and a Receiver's replies have heads of a few hundred bytes; ureq's default, 128 KiB
/// each way, is zeroed per new connection and is 256 KiB of RSS per idle connection.
const CONNECTION_BUFFER_BYTES: usize = 16 * 1024;

/// What kind of downstream, and where.
#[derive(Clone)]
pub enum Kind {
    /// Flux v1: fluxd's API base (`…/api/flux`); `/v11/notify` is appended.
    Fluxd { api: String },
    /// Flux v2: a `generic-hmac` Receiver's full URL, and the Secret's token as the HMAC key.
    Receiver { url: String, token: Key },
}

/// A URL's `scheme://host[:port]`, without user, path or query: how a Receiver's URL (whose
/// path derives from its token) is shown.
pub fn origin(url: &str) -> String {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return "(not a URL)".into();
    };
    let scheme = uri.scheme_str().unwrap_or("");
    let host = uri.host().unwrap_or("");
    match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Kind {
    /// What a permanent refusal from this kind of downstream usually means, for the log.
    pub fn explain(&self, sent: &Sent) -> Option<&'static str> {
        match (self, sent) {
            (Kind::Receiver { .. }, Sent::Declined(400 | 401 | 403)) => Some(
                "a Flux v2 Receiver refuses a notification whose X-Signature does not match its token: compare the downstream's keyPath file with the Receiver's Secret, byte for byte",
            ),
            (Kind::Receiver { .. }, Sent::Declined(404)) => Some(
                "no Receiver has this webhook path: check fluxReceiver against the Receiver's status.webhookPath",
            ),
            _ => None,
        }
    }

    /// `fluxd` or `receiver`, for messages.
    pub fn word(&self) -> &'static str {
        match self {
            Kind::Fluxd { .. } => "fluxd",
            Kind::Receiver { .. } => "receiver",
        }
    }

    /// Where calls go, for `check` and start-up lines: a receiver's URL is cut to its origin,
    /// since its path is derived from the Receiver's token.
    pub fn describe(&self) -> String {
        match self {
            Kind::Fluxd { api } => format!("fluxd {api}"),
            Kind::Receiver { url, .. } => format!("receiver {}/…", origin(url)),
        }
    }
}

/// One downstream, ready to be told.
pub struct Downstream {
    /// As logs and metrics name it.
    pub name: String,
    pub kind: Kind,
    pub filter: Filter,
    /// Where each call goes, parsed once (a URL that does not parse is ureq's error per call).
    url: Result<ureq::http::Uri, String>,
}

impl std::fmt::Debug for Downstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downstream")
            .field("name", &self.name)
            .field("kind", &self.kind.word())
            .finish()
    }
}

/// The underlying error of a failed call, kept for the log's `source()` chain.
pub use crate::text::Cause;

/// What one call did.
#[derive(Debug)]
pub enum Sent {
    /// 200, 201, 202 or 204, with an empty or JSON body.
    Accepted,
    /// Any other status: the downstream declined the change.
    Declined(u16),
    /// A success status whose reply was not JSON, cut, or malformed.
    Garbled(Cause),
    /// No connection could be made, or it broke before a reply.
    Unreachable { cause: Cause, attempts: u32 },
    /// The deadline passed.
    TimedOut,
}

impl std::error::Error for Sent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Sent::Garbled(cause) | Sent::Unreachable { cause, .. } => Some(cause.as_ref()),
            _ => None,
        }
    }
}

/// How a failed call is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Delivered,
    /// Worth trying again later: refused, reset, timeout, 5xx, 408, 429.
    Transient,
    /// Trying again cannot help: another 4xx, a redirect, a reply that makes no sense.
    Permanent,
}

impl Sent {
    pub fn class(&self) -> Class {
        match self {
            Sent::Accepted => Class::Delivered,
            Sent::Unreachable { .. } | Sent::TimedOut => Class::Transient,
            Sent::Declined(408 | 429 | 500..=599) => Class::Transient,
            Sent::Declined(_) | Sent::Garbled(_) => Class::Permanent,
        }
    }

    /// Every [`Sent::result_word`].
    pub const RESULTS: [&'static str; 4] = ["ok", "rejected", "unreachable", "timed_out"];

    /// The `result` label of `flux_recv_notify_total`.
    pub fn result_word(&self) -> &'static str {
        match self {
            Sent::Accepted => "ok",
            Sent::Declined(_) | Sent::Garbled(_) => "rejected",
            Sent::Unreachable { .. } => "unreachable",
            Sent::TimedOut => "timed_out",
        }
    }
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sent::Accepted => f.write_str("accepted"),
            Sent::Declined(status) => write!(f, "rejected it with status {status}"),
            Sent::Garbled(why) => write!(f, "answered with a malformed reply: {why}"),
            Sent::Unreachable { cause, attempts: 1 } => write!(f, "unreachable: {cause}"),
            Sent::Unreachable { cause, attempts } => {
                write!(
                    f,
                    "unreachable: {cause} (after {attempts} connection attempts)"
                )
            }
            Sent::TimedOut => f.write_str("did not answer in time"),
        }
    }
}

/// What to do when the connection is refused (nothing was sent, so trying again is safe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConnectionRefused {
    /// Try again with a short back-off until the deadline (a restarting fluxd).
    Retry,
    /// Report it at once (it will be redelivered in the background).
    GiveUp,
}

/// The agent every downstream call goes through: one connection pool (see [`IDLE_CONNECTIONS`]).
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let config = ureq::Agent::config_builder()
            // A cluster's HTTP_PROXY must not capture traffic to a local fluxd.
            .proxy(None)
            .max_redirects(0)
            .max_idle_connections(IDLE_CONNECTIONS)
            .max_idle_connections_per_host(IDLE_CONNECTIONS)
            .input_buffer_size(CONNECTION_BUFFER_BYTES)
            .output_buffer_size(CONNECTION_BUFFER_BYTES)
            // Statuses are ours to judge, not errors.
            .http_status_as_error(false)
            .user_agent(concat!("flux-recv/", env!("CARGO_PKG_VERSION")))
            .build();
        ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            resolve::LiteralFirst::default(),
        )
    })
}

impl Downstream {
    pub fn new(name: impl Into<String>, kind: Kind, filter: Filter) -> Downstream {
        let url = match &kind {
            Kind::Fluxd { api } => format!("{api}/v11/notify"),
            Kind::Receiver { url, .. } => url.clone(),
        };
        Downstream {
            name: name.into(),
            url: url.parse().map_err(|_| url),
            kind,
            filter,
        }
    }

    /// Tells the downstream about one change, by `deadline`; `request_id` (the sender's
    /// delivery id, printable and bounded) goes with it as `X-Request-Id`, so that both sides'
    /// logs can be matched.
    pub fn send(
        &self,
        change: &Change,
        deadline: Instant,
        on_refused: OnConnectionRefused,
        request_id: Option<&str>,
    ) -> Sent {
        let mut wait = RETRY_FIRST;
        let mut attempts = 1;
        loop {
            match self.attempt(change, deadline, request_id) {
                Attempt::ConnectionRefused(cause) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if on_refused == OnConnectionRefused::GiveUp || left <= wait {
                        return Sent::Unreachable {
                            cause: Box::new(cause),
                            attempts,
                        };
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(RETRY_MAX);
                    attempts += 1;
                }
                Attempt::Done(sent) => return sent,
            }
        }
    }

    /// One POST of the change's JSON.
    fn attempt(&self, change: &Change, deadline: Instant, request_id: Option<&str>) -> Attempt {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Attempt::Done(Sent::TimedOut);
        }
        let body = change.to_json();
        let request = match self.url.clone() {
            Ok(uri) => agent().post(uri),
            Err(url) => agent().post(url),
        };
        let request = match &self.kind {
            Kind::Fluxd { .. } => {
                request.header(ACCEPT, HeaderValue::from_static("application/json"))
            }
            Kind::Receiver { token, .. } => {
                let signature = format!(
                    "sha256={}",
                    sign_hex(Algorithm::Sha256, token.bytes(), &body)
                );
                request.header("X-Signature", &signature)
            }
        };
        let request = match request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            Some(id) => request.header("X-Request-Id", id),
            None => request,
        };
        let sent = request
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .config()
            .timeout_global(Some(remaining))
            .build()
            .send(&body[..]);
        let mut response = match sent {
            Ok(response) => response,
            Err(ureq::Error::Io(io)) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Attempt::ConnectionRefused(io)
            }
            Err(other) => return Attempt::Done(classify(other)),
        };
        let status = response.status().as_u16();
        if !matches!(status, 200 | 201 | 202 | 204) {
            return Attempt::Done(Sent::Declined(status));
        }
        let reply = response
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_vec();
        Attempt::Done(match reply {
            Err(e) => classify(e),
            Ok(body)
                if !body.iter().all(u8::is_ascii_whitespace)
                    && serde_json::from_slice::<serde_json::Value>(&body).is_err() =>
            {
                Sent::Garbled(format!("status {status} with a body that is not JSON").into())
            }
            Ok(_) => Sent::Accepted,
        })
    }
}

/// How one attempt ended.
enum Attempt {
    /// Connection refused: nothing reached the downstream.
    ConnectionRefused(std::io::Error),
    Done(Sent),
}

fn classify(error: ureq::Error) -> Sent {
    match error {
        ureq::Error::Timeout(_) => Sent::TimedOut,
        ureq::Error::StatusCode(status) => Sent::Declined(status),
        ureq::Error::Io(e) => classify_io(e),
        e @ (ureq::Error::Protocol(_) | ureq::Error::BodyExceedsLimit(_)) => {
            Sent::Garbled(Box::new(e))
        }
        other => Sent::Unreachable {
            cause: Box::new(other),
            attempts: 1,
        },
    }
}

fn classify_io(error: std::io::Error) -> Sent {
    use std::io::ErrorKind;
    let timed_out = matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
        || matches!(
            error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<ureq::Error>()),
            Some(ureq::Error::Timeout(_))
        );
    if timed_out {
        return Sent::TimedOut;
    }
    Sent::Unreachable {
        cause: Box::new(error),
        attempts: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_status_policy() {
        for (sent, class) in [
            (Sent::Accepted, Class::Delivered),
            (Sent::TimedOut, Class::Transient),
            (
                Sent::Unreachable {
                    cause: "refused".into(),
                    attempts: 1,
                },
                Class::Transient,
            ),
            (Sent::Declined(500), Class::Transient),
            (Sent::Declined(503), Class::Transient),
            (Sent::Declined(429), Class::Transient),
            (Sent::Declined(408), Class::Transient),
            (Sent::Declined(400), Class::Permanent),
            (Sent::Declined(404), Class::Permanent),
            (Sent::Declined(302), Class::Permanent),
            (Sent::Garbled("x".into()), Class::Permanent),
        ] {
            assert_eq!(sent.class(), class, "{sent:?}");
        }
    }

    #[test]
    fn a_receiver_is_described_without_its_hook_path() {
        let receiver = Downstream::new(
            "b",
            Kind::Receiver {
                url: "https://flux-webhook.b.internal/hook/0d5c0ffee".into(),
                token: Key::new(b"t".to_vec()),
            },
            Filter::default(),
        );
        assert_eq!(
            receiver.kind.describe(),
            "receiver https://flux-webhook.b.internal/…"
        );
        assert!(!format!("{receiver:?}").contains("0d5c"));
        assert!(!format!("{:?}", receiver.kind).contains("0d5c"));
        assert_eq!(
            origin("https://u:p@h.example:8443/hook/x?y"),
            "https://h.example:8443"
        );
    }
}
