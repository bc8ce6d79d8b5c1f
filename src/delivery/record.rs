//! The end of every request: the verdict read once, then the request counted, the one request
//! log line written, and the reply made, all from the same words.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::routes::Route;
use crate::log;
use crate::metrics;
use crate::server::Response;
use crate::sources::{printable, Source};
use crate::verdict::{verdict, Ending};

/// What the log line of a request says besides its ending.
#[derive(Debug, Clone)]
pub(super) struct Context {
    source: Option<Source>,
    /// The first 8 hex digits of the route digest, or the path as it may be logged (shared, so
    /// that the context's copy for the work costs no allocation).
    hook: Arc<str>,
    /// The sender's delivery id, when it gave one.
    pub(super) delivery: Option<String>,
    started: Instant,
}

impl Context {
    /// A request that matched no route (or was refused before its head was read).
    pub(super) fn unrouted(path: &str, started: Instant) -> Context {
        Context {
            source: None,
            hook: loggable_path(path).into(),
            delivery: None,
            started,
        }
    }

    /// A request to an endpoint's route.
    pub(super) fn routed(route: &Route, headers: &[(String, String)], started: Instant) -> Context {
        let source = route.endpoint.source;
        Context {
            source: Some(source),
            hook: Arc::clone(&route.hook),
            delivery: source.delivery_id(headers, &[]),
            started,
        }
    }

    /// Counts the request, logs it, and makes its reply.
    pub(super) fn finish(&self, ending: Ending) -> Response {
        let verdict = verdict(&ending);
        let source = self.source.map_or("none", |s| s.name());
        // Counted before the reply goes out, so a scrape that follows an answer includes it.
        metrics::get().requests.inc(&[source, verdict.outcome]);
        let delivery = self.delivery.clone().unwrap_or_else(new_request_id);
        let detail = ending.to_string();
        let fields = [
            ("source", log::Value::from(source)),
            ("hook", (&*self.hook).into()),
            ("delivery", (&delivery).into()),
            ("outcome", verdict.outcome.into()),
            ("status", verdict.status.into()),
            ("changes", ending.changes().into()),
            ("elapsed_ms", log::millis(self.started.elapsed())),
            ("detail", (&detail).into()),
        ];
        // `detail`, the last field, only when there is one.
        let shown = fields.len() - usize::from(detail.is_empty());
        log::emit(verdict.level, "request", &fields[..shown]);
        let mut response = Response::text(verdict.status, verdict.text);
        if verdict.allow_post {
            response.headers.push(("Allow", "POST".into()));
        }
        if let Some(seconds) = verdict.retry_after {
            response.headers.push(("Retry-After", seconds.to_string()));
        }
        response.headers.push(("X-Request-Id", delivery));
        response
    }
}

/// An id for a request whose sender gave none: 16 hex digits, random per process and request.
pub(super) fn new_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

/// A path as it may appear in a log: hook paths are cut to their first 8 hex digits, since a
/// full route is a secret for URL-only sources.
fn loggable_path(path: &str) -> String {
    match path.strip_prefix("/hook/") {
        Some(rest) => format!(
            "/hook/{}",
            printable(&rest.chars().take(8).collect::<String>())
        ),
        None => printable(path),
    }
}
