//! The client for fluxd's `POST <api>/v11/notify`: one ureq agent built at start-up and shared by
//! every handler, no proxy, no redirects, an explicit time budget, and a typed result so the
//! status policy can tell 502 from 504.

use std::time::{Duration, Instant};

use crate::change::Change;
use crate::metrics::{self, NotifyResult};

/// How much of a success reply is read (fluxd answers 202 with an empty body).
const MAX_REPLY_BYTES: u64 = 64 * 1024;
/// First wait before calling a fluxd that refused the connection again (it may be restarting:
/// a lost notification costs a whole poll interval). Doubles up to [`RETRY_MAX`], within the
/// delivery's budget.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// Why one notify call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyError {
    /// fluxd answered with a status other than 200, 201, 202 or 204.
    Rejected(u16),
    /// fluxd answered 2xx but the body was not JSON, or the reply was cut or malformed.
    Garbled(String),
    /// No connection could be made or it broke before a reply.
    Unreachable(String),
    /// The delivery's time budget ran out.
    TimedOut,
}

impl std::fmt::Display for NotifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifyError::Rejected(status) => write!(f, "fluxd rejected it with status {status}"),
            NotifyError::Garbled(why) => write!(f, "fluxd's reply was malformed: {why}"),
            NotifyError::Unreachable(why) => write!(f, "fluxd unreachable: {why}"),
            NotifyError::TimedOut => f.write_str("fluxd did not answer in time"),
        }
    }
}

impl std::error::Error for NotifyError {}

/// The fluxd API client.
#[derive(Clone)]
pub struct Fluxd {
    agent: ureq::Agent,
    notify_url: String,
    timeout: Duration,
}

impl Fluxd {
    /// A client for `api` (without trailing `/`) that gives each delivery `timeout` in total.
    pub fn new(api: &str, timeout: Duration) -> Fluxd {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // A cluster's HTTP_PROXY must not capture traffic to the local fluxd.
            .proxy(None)
            .max_redirects(0)
            // Statuses are ours to judge, not errors.
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("flux-recv/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Fluxd {
            agent,
            notify_url: format!("{}/v11/notify", api.trim_end_matches('/')),
            timeout,
        }
    }

    /// Notifies every change in order within one shared time budget. On failure, returns the
    /// index of the change that failed and why; later changes are not sent.
    pub fn notify_all(&self, changes: &[Change]) -> Result<(), (usize, NotifyError)> {
        let deadline = Instant::now() + self.timeout;
        for (index, change) in changes.iter().enumerate() {
            self.notify(change, deadline).map_err(|e| (index, e))?;
        }
        Ok(())
    }

    /// One notification that must finish by `deadline`. A refused connection (nothing was sent)
    /// is tried again with a short back-off until the deadline; nothing else is retried.
    pub fn notify(&self, change: &Change, deadline: Instant) -> Result<(), NotifyError> {
        let started = Instant::now();
        let result = self.notify_with_retries(change, deadline);
        let label = match &result {
            Ok(()) => NotifyResult::Ok,
            Err(NotifyError::Rejected(_) | NotifyError::Garbled(_)) => NotifyResult::Rejected,
            Err(NotifyError::Unreachable(_)) => NotifyResult::Unreachable,
            Err(NotifyError::TimedOut) => NotifyResult::TimedOut,
        };
        metrics::get().notify(label, started.elapsed());
        result
    }

    fn notify_with_retries(&self, change: &Change, deadline: Instant) -> Result<(), NotifyError> {
        let mut wait = RETRY_FIRST;
        let mut attempts = 1;
        loop {
            match self.attempt(change, deadline) {
                Err(Attempt::Refused(why)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left <= wait {
                        return Err(NotifyError::Unreachable(format!(
                            "{why} ({attempts} attempts)"
                        )));
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(RETRY_MAX);
                    attempts += 1;
                }
                Err(Attempt::Failed(error)) => return Err(error),
                Ok(()) => return Ok(()),
            }
        }
    }

    /// One `POST /v11/notify`.
    fn attempt(&self, change: &Change, deadline: Instant) -> Result<(), Attempt> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Attempt::Failed(NotifyError::TimedOut));
        }
        let mut response = self
            .agent
            .post(&self.notify_url)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .config()
            .timeout_global(Some(remaining))
            .build()
            .send(&change.to_json()[..])
            .map_err(|e| match e {
                ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Attempt::Refused(io.to_string())
                }
                other => Attempt::Failed(classify(other)),
            })?;
        let status = response.status().as_u16();
        if !matches!(status, 200 | 201 | 202 | 204) {
            return Err(Attempt::Failed(NotifyError::Rejected(status)));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_vec()
            .map_err(|e| Attempt::Failed(classify(e)))?;
        if !body.iter().all(u8::is_ascii_whitespace)
            && serde_json::from_slice::<serde_json::Value>(&body).is_err()
        {
            return Err(Attempt::Failed(NotifyError::Garbled(format!(
                "status {status} with a body that is not JSON"
            ))));
        }
        Ok(())
    }
}

/// How one attempt ended, when it did not succeed.
enum Attempt {
    /// Connection refused: nothing reached fluxd, so trying again is safe.
    Refused(String),
    Failed(NotifyError),
}

fn classify(error: ureq::Error) -> NotifyError {
    match error {
        ureq::Error::Timeout(_) => NotifyError::TimedOut,
        ureq::Error::StatusCode(status) => NotifyError::Rejected(status),
        ureq::Error::Io(e) => classify_io(&e),
        ureq::Error::Protocol(e) => NotifyError::Garbled(e.to_string()),
        ureq::Error::BodyExceedsLimit(limit) => {
            NotifyError::Garbled(format!("reply body over {limit} bytes"))
        }
        other => NotifyError::Unreachable(other.to_string()),
    }
}

fn classify_io(error: &std::io::Error) -> NotifyError {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => NotifyError::TimedOut,
        _ => match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        {
            Some(ureq::Error::Timeout(_)) => NotifyError::TimedOut,
            _ => NotifyError::Unreachable(error.to_string()),
        },
    }
}
