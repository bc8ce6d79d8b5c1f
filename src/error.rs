//! The one error enum at the handler boundary, and the one mapping from a request's result to an
//! HTTP status and a fixed public text (DESIGN.md §5). Detail goes to the log through `Display`;
//! clients only ever see [`HookError::public_text`].

use crate::change::Change;
use crate::fluxd::NotifyError;
use crate::sources::Outcome;

/// Everything that can end a request other than success.
#[derive(Debug)]
pub enum HookError {
    /// No route for this path (decided from the head, before any body byte).
    NotFound,
    /// A hook path with a method other than POST.
    MethodNotAllowed,
    /// Signature or token missing or wrong. The detail never holds the expected value.
    Unauthorized(String),
    /// Malformed body, missing event header, missing field, bad framing.
    BadRequest(String),
    /// Declared or received body larger than `--max-body-bytes`.
    PayloadTooLarge,
    /// The request was not read within `--read-timeout`.
    RequestTimeout,
    /// Request head over 16 KiB or 64 headers.
    HeadTooLarge,
    /// Past `--max-connections`, or no memory budget for the body in time.
    Overloaded(&'static str),
    /// fluxd refused (non-2xx), was unreachable, or answered nonsense for one change.
    Fluxd {
        change: Change,
        index: usize,
        of: usize,
        error: NotifyError,
    },
    /// A handler panicked; the worker survived.
    Panic,
}

impl HookError {
    pub fn status(&self) -> u16 {
        match self {
            HookError::NotFound => 404,
            HookError::MethodNotAllowed => 405,
            HookError::Unauthorized(_) => 401,
            HookError::BadRequest(_) => 400,
            HookError::PayloadTooLarge => 413,
            HookError::RequestTimeout => 408,
            HookError::HeadTooLarge => 431,
            HookError::Overloaded(_) => 503,
            HookError::Fluxd { error, .. } => match error {
                NotifyError::TimedOut => 504,
                _ => 502,
            },
            HookError::Panic => 500,
        }
    }

    /// The fixed text sent to the client.
    pub fn public_text(&self) -> &'static str {
        match self {
            HookError::NotFound => "Not found",
            HookError::MethodNotAllowed => "Method not allowed: use POST",
            HookError::Unauthorized(_) => "Unauthorized: signature or token missing or wrong",
            HookError::BadRequest(_) => "Bad request",
            HookError::PayloadTooLarge => "Payload too large",
            HookError::RequestTimeout => "Request timeout",
            HookError::HeadTooLarge => "Request header fields too large",
            HookError::Overloaded(_) => "Server busy, try again",
            HookError::Fluxd { error, .. } => match error {
                NotifyError::TimedOut => "Timed out waiting for fluxd",
                _ => "fluxd did not accept the notification",
            },
            HookError::Panic => "Internal server error",
        }
    }

    /// The short outcome word for the log line.
    pub fn outcome(&self) -> &'static str {
        match self {
            HookError::NotFound => "not_found",
            HookError::MethodNotAllowed => "method_not_allowed",
            HookError::Unauthorized(_) => "unauthorized",
            HookError::BadRequest(_) => "bad_request",
            HookError::PayloadTooLarge => "too_large",
            HookError::RequestTimeout => "timeout",
            HookError::HeadTooLarge => "head_too_large",
            HookError::Overloaded(_) => "overloaded",
            HookError::Fluxd { error, .. } => match error {
                NotifyError::TimedOut => "fluxd_timeout",
                _ => "fluxd_failed",
            },
            HookError::Panic => "panic",
        }
    }
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookError::Unauthorized(detail) | HookError::BadRequest(detail) => f.write_str(detail),
            HookError::Overloaded(why) => f.write_str(why),
            HookError::Fluxd {
                change,
                index,
                of,
                error,
            } => write!(f, "change {}/{of} ({change}): {error}", index + 1),
            other => f.write_str(other.public_text()),
        }
    }
}

impl std::error::Error for HookError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HookError::Fluxd { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Status and body for a request that succeeded (after any notify calls).
pub fn success(outcome: &Outcome) -> (u16, String) {
    match outcome {
        Outcome::Notify(_) => (200, "OK".to_owned()),
        Outcome::Pong => (200, "Pong".to_owned()),
        Outcome::Ignored(reason) => (200, format!("ignored: {reason}")),
    }
}

/// Status and body for any result at the handler boundary: the status policy in one place.
pub fn reply(result: &Result<Outcome, HookError>) -> (u16, String) {
    match result {
        Ok(outcome) => success(outcome),
        Err(error) => (error.status(), error.public_text().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_policy_table() {
        let change = Change::git("git@h:o/r.git", "main");
        let fluxd = |error| HookError::Fluxd {
            change: change.clone(),
            index: 0,
            of: 1,
            error,
        };
        let cases: Vec<(HookError, u16)> = vec![
            (HookError::NotFound, 404),
            (HookError::MethodNotAllowed, 405),
            (HookError::Unauthorized("x".into()), 401),
            (HookError::BadRequest("x".into()), 400),
            (HookError::PayloadTooLarge, 413),
            (HookError::RequestTimeout, 408),
            (HookError::HeadTooLarge, 431),
            (HookError::Overloaded("x"), 503),
            (fluxd(NotifyError::Rejected(500)), 502),
            (fluxd(NotifyError::Unreachable("refused".into())), 502),
            (fluxd(NotifyError::TimedOut), 504),
            (HookError::Panic, 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(reply(&Err(error)).0, status);
        }
    }

    #[test]
    fn successes_are_200_with_the_documented_bodies() {
        assert_eq!(reply(&Ok(Outcome::Notify(vec![]))), (200, "OK".into()));
        assert_eq!(reply(&Ok(Outcome::Pong)), (200, "Pong".into()));
        assert_eq!(
            reply(&Ok(Outcome::Ignored("event issues".into()))),
            (200, "ignored: event issues".into())
        );
    }

    #[test]
    fn public_text_never_carries_the_detail() {
        let detail = "X-Hub-Signature-256 does not match: deadbeef";
        let error = HookError::Unauthorized(detail.into());
        assert!(!reply(&Err(error)).1.contains("deadbeef"));
    }
}
