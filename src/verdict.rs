//! The status policy in one place (the README's Replies table): [`verdict`] maps how a request ended to
//! everything said about it: the status, the fixed public text, extra headers, the one word that
//! is both the metrics' `outcome` label and the log's `outcome` field, and the log level. The
//! reply, the log line and the metrics all read it, so their words cannot drift. Details go to
//! the log only, through each ending's `Display` and `source()`.

use std::borrow::Cow;

use crate::log::Level;

pub use crate::text::Cause;

/// How a request ended.
#[derive(Debug)]
pub enum Ending {
    /// Every downstream that wanted the changes took them.
    Notified { changes: usize },
    /// `--dry-run`: what each downstream would have got is logged; nothing was sent.
    DryRun { changes: usize },
    /// Some downstream failed transiently; what it did not take is queued for redelivery.
    Queued { changes: usize, cause: Cause },
    /// A ping or test delivery.
    Pong,
    /// Authentic and well-formed, but nothing to do.
    Ignored(String),
    /// No route for this path (decided from the head, before any body byte).
    NotFound,
    /// A hook path with a method other than POST.
    MethodNotAllowed,
    /// The client is not in the endpoint's `allowFrom` (its address, for the log).
    Forbidden(String),
    /// Signature or token missing or wrong. The cause never holds the expected value.
    Unauthorized(Cause),
    /// Malformed body, missing event header, missing field, bad framing.
    BadRequest(Cause),
    /// Declared or received body larger than `--max-body-bytes`.
    TooLarge,
    /// Request head over 16 KiB or 64 headers.
    HeadTooLarge,
    /// The request was not read within `--read-timeout`.
    Timeout,
    /// Past `--max-connections`, or no memory budget for the body in time.
    Overloaded(&'static str),
    /// A downstream declined a change for good (a 4xx, a redirect, a reply that makes no sense).
    Declined { changes: usize, cause: Cause },
    /// A change could not be queued for redelivery: the queue is full.
    QueueFull { changes: usize, cause: Cause },
    /// Redelivery off: a downstream is over its rate (`--notify-rate`); try again.
    Throttled { changes: usize, cause: Cause },
    /// Redelivery off: a downstream could not be reached, or failed (5xx, 429).
    Failed { changes: usize, cause: Cause },
    /// Redelivery off: a downstream did not answer in time.
    DownstreamTimeout { changes: usize, cause: Cause },
    /// A handler panicked; the worker survived.
    Panic,
}

/// Everything said about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: u16,
    /// The reply body: fixed text, plus an ignored delivery's short reason.
    pub text: Cow<'static, str>,
    /// `Allow: POST` (405).
    pub allow_post: bool,
    /// `Retry-After`, in seconds (503).
    pub retry_after: Option<u32>,
    /// The `outcome` of both the request log line and `flux_recv_requests_total`.
    pub outcome: &'static str,
    pub level: Level,
}

/// Every outcome word, for declaring the metrics' series and for the README's table.
pub const OUTCOMES: [&str; 20] = [
    "notified",
    "dry_run",
    "queued",
    "pong",
    "ignored",
    "not_found",
    "method_not_allowed",
    "forbidden",
    "unauthorized",
    "bad_request",
    "too_large",
    "head_too_large",
    "timeout",
    "overloaded",
    "refused",
    "queue_full",
    "throttled",
    "failed",
    "downstream_timeout",
    "panic",
];

/// The one mapping from an ending to what is said about it.
pub fn verdict(ending: &Ending) -> Verdict {
    let (status, text, outcome): (u16, &'static str, &'static str) = match ending {
        Ending::Notified { .. } => (200, "OK", "notified"),
        Ending::DryRun { .. } => (200, "OK (dry run: nothing was sent)", "dry_run"),
        Ending::Queued { .. } => (202, "Accepted: queued for redelivery", "queued"),
        Ending::Pong => (200, "Pong", "pong"),
        Ending::Ignored(reason) => {
            return Verdict {
                text: Cow::Owned(format!("ignored: {reason}")),
                ..plain(200, "", "ignored")
            }
        }
        Ending::NotFound => (404, "Not found", "not_found"),
        Ending::MethodNotAllowed => (405, "Method not allowed: use POST", "method_not_allowed"),
        Ending::Forbidden(_) => (403, "Forbidden", "forbidden"),
        Ending::Unauthorized(_) => (
            401,
            "Unauthorized: signature or token missing or wrong",
            "unauthorized",
        ),
        Ending::BadRequest(_) => (400, "Bad request", "bad_request"),
        Ending::TooLarge => (413, "Payload too large", "too_large"),
        Ending::HeadTooLarge => (431, "Request header fields too large", "head_too_large"),
        Ending::Timeout => (408, "Request timeout", "timeout"),
        Ending::Overloaded(_) => (503, "Server busy, try again", "overloaded"),
        Ending::Declined { .. } => (
            502,
            "A downstream did not accept the notification",
            "refused",
        ),
        Ending::QueueFull { .. } => (
            502,
            "A downstream did not take the notification; redelivery queue full",
            "queue_full",
        ),
        Ending::Throttled { .. } => (503, "Server busy, try again", "throttled"),
        Ending::Failed { .. } => (502, "A downstream did not take the notification", "failed"),
        Ending::DownstreamTimeout { .. } => (
            504,
            "Timed out waiting for a downstream",
            "downstream_timeout",
        ),
        Ending::Panic => (500, "Internal server error", "panic"),
    };
    plain(status, text, outcome)
}

fn plain(status: u16, text: &'static str, outcome: &'static str) -> Verdict {
    Verdict {
        status,
        text: Cow::Borrowed(text),
        allow_post: status == 405,
        retry_after: (status == 503).then_some(1),
        outcome,
        level: match status {
            200..=399 => Level::Info,
            400..=499 => Level::Warn,
            _ => Level::Error,
        },
    }
}

impl Ending {
    /// How many changes the request carried (for the log line).
    pub fn changes(&self) -> usize {
        match self {
            Ending::Notified { changes }
            | Ending::DryRun { changes }
            | Ending::Queued { changes, .. }
            | Ending::Declined { changes, .. }
            | Ending::QueueFull { changes, .. }
            | Ending::Throttled { changes, .. }
            | Ending::Failed { changes, .. }
            | Ending::DownstreamTimeout { changes, .. } => *changes,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Ending {
    /// The detail for the log line; empty where the outcome says it all.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Ignored(reason) => f.write_str(reason),
            Ending::Forbidden(client) => {
                write!(f, "client {client} is not in the endpoint's allowFrom")
            }
            Ending::Overloaded(why) => f.write_str(why),
            Ending::Unauthorized(cause) | Ending::BadRequest(cause) => cause.fmt(f),
            Ending::Queued { cause, .. }
            | Ending::Declined { cause, .. }
            | Ending::QueueFull { cause, .. }
            | Ending::Throttled { cause, .. }
            | Ending::Failed { cause, .. }
            | Ending::DownstreamTimeout { cause, .. } => cause.fmt(f),
            Ending::NotFound
            | Ending::MethodNotAllowed
            | Ending::TooLarge
            | Ending::HeadTooLarge
            | Ending::Timeout => f.write_str(&verdict(self).text),
            Ending::Notified { .. } | Ending::Pong => Ok(()),
            Ending::DryRun { .. } => f.write_str("dry run: nothing was sent"),
            Ending::Panic => f.write_str("handler panicked"),
        }
    }
}

impl std::error::Error for Ending {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Ending::Unauthorized(cause) | Ending::BadRequest(cause) => Some(cause.as_ref()),
            Ending::Queued { cause, .. }
            | Ending::Declined { cause, .. }
            | Ending::QueueFull { cause, .. }
            | Ending::Throttled { cause, .. }
            | Ending::Failed { cause, .. }
            | Ending::DownstreamTimeout { cause, .. } => Some(cause.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause() -> Cause {
        "fluxd rejected it with status 500".into()
    }

    #[test]
    fn status_policy_table() {
        let n = 1;
        let cases: Vec<(Ending, u16)> = vec![
            (Ending::Notified { changes: n }, 200),
            (Ending::DryRun { changes: n }, 200),
            (
                Ending::Queued {
                    changes: n,
                    cause: cause(),
                },
                202,
            ),
            (Ending::Pong, 200),
            (Ending::Ignored("event issues".into()), 200),
            (Ending::NotFound, 404),
            (Ending::MethodNotAllowed, 405),
            (Ending::Forbidden("192.0.2.1".into()), 403),
            (Ending::Unauthorized("x".into()), 401),
            (Ending::BadRequest("x".into()), 400),
            (Ending::TooLarge, 413),
            (Ending::Timeout, 408),
            (Ending::HeadTooLarge, 431),
            (Ending::Overloaded("x"), 503),
            (
                Ending::Declined {
                    changes: n,
                    cause: cause(),
                },
                502,
            ),
            (
                Ending::QueueFull {
                    changes: n,
                    cause: cause(),
                },
                502,
            ),
            (
                Ending::Throttled {
                    changes: n,
                    cause: cause(),
                },
                503,
            ),
            (
                Ending::Failed {
                    changes: n,
                    cause: cause(),
                },
                502,
            ),
            (
                Ending::DownstreamTimeout {
                    changes: n,
                    cause: cause(),
                },
                504,
            ),
            (Ending::Panic, 500),
        ];
        let mut words: Vec<&str> = Vec::new();
        for (ending, status) in &cases {
            let v = verdict(ending);
            assert_eq!(v.status, *status, "{ending:?}");
            assert!(OUTCOMES.contains(&v.outcome), "{}", v.outcome);
            words.push(v.outcome);
        }
        // One word per ending: the vocabulary tells every case apart.
        words.sort();
        words.dedup();
        assert_eq!(words.len(), OUTCOMES.len());
    }

    #[test]
    fn successes_have_the_documented_bodies() {
        assert_eq!(verdict(&Ending::Notified { changes: 0 }).text, "OK");
        assert_eq!(verdict(&Ending::Pong).text, "Pong");
        assert_eq!(
            verdict(&Ending::Ignored("event issues".into())).text,
            "ignored: event issues"
        );
    }

    #[test]
    fn headers_and_levels_follow_the_status() {
        let busy = verdict(&Ending::Overloaded("too many open connections"));
        assert_eq!((busy.retry_after, busy.level), (Some(1), Level::Error));
        let wrong = verdict(&Ending::MethodNotAllowed);
        assert!(wrong.allow_post && wrong.level == Level::Warn);
        assert_eq!(verdict(&Ending::Pong).level, Level::Info);
    }

    #[test]
    fn public_text_never_carries_the_detail() {
        let detail = "X-Hub-Signature-256 does not match: deadbeef";
        let ending = Ending::Unauthorized(detail.into());
        assert!(!verdict(&ending).text.contains("deadbeef"));
        assert_eq!(ending.to_string(), detail);
        assert!(std::error::Error::source(&ending).is_some());
    }
}
