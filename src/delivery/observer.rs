//! What the redelivery queue reports, turned into log lines and metrics. Every change is
//! counted; log lines per change are bounded (a backlog of thousands draining must not write
//! thousands of lines): past [`LINES_PER_SECOND`] of one kind for one downstream in a second,
//! the rest are summed into one line when the second is over.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::change::Change;
use crate::downstream::redelivery::{Dropped, Observer};
use crate::downstream::{lock, Class, Sent};
use crate::log;
use crate::metrics;
use crate::verdict::OUTCOMES;

/// Lines of one kind (failed, redelivered, dropped) for one downstream in one second.
const LINES_PER_SECOND: usize = 10;

/// The `result` of `flux_recv_redeliveries_total`, by how a background try ended.
fn redelivery_result(class: Class) -> &'static str {
    match class {
        Class::Delivered => "delivered",
        Class::Transient => "failed",
        Class::Permanent => "rejected",
    }
}

/// Makes the series of a config's sources (and `none`, for requests that match no route) and
/// downstreams exist at 0 before anything happens to them: a config with two sources scrapes
/// two, not every source flux-recv knows. The one place series with label values from the
/// config are declared.
pub(super) fn declare<'a>(
    sources: impl Iterator<Item = &'static str>,
    downstreams: impl Iterator<Item = &'a str>,
) {
    let m = metrics::get();
    for source in sources.chain(["none"]) {
        for outcome in OUTCOMES {
            m.requests.declare(&[source, outcome]);
        }
    }
    for downstream in downstreams {
        declare_downstream(downstream);
    }
}

fn declare_downstream(downstream: &str) {
    let m = metrics::get();
    for result in Sent::RESULTS {
        m.notify_by_downstream.declare(&[downstream, result]);
    }
    for class in [Class::Delivered, Class::Transient, Class::Permanent] {
        m.redeliveries
            .declare(&[downstream, redelivery_result(class)]);
    }
    for reason in Dropped::ALL {
        m.redelivery_drops.declare(&[downstream, reason.word()]);
    }
}

/// Logs and counts background redeliveries.
#[derive(Default)]
pub(super) struct Recorder {
    window: Mutex<Window>,
}

/// Lines written and held back in the current second, by (downstream, message).
#[derive(Default)]
struct Window {
    started: Option<Instant>,
    lines: BTreeMap<(String, &'static str), (usize, usize)>,
}

impl Recorder {
    /// Whether a line of `msg` for `downstream` may be written now; counts it either way.
    fn allow(&self, downstream: &str, msg: &'static str) -> bool {
        let mut window = lock(&self.window);
        Self::roll(&mut window);
        let (written, held) = window
            .lines
            .entry((downstream.to_owned(), msg))
            .or_default();
        if *written < LINES_PER_SECOND {
            *written += 1;
            true
        } else {
            *held += 1;
            false
        }
    }

    /// Starts a new second when the last one is over, with one line per kind held back in it.
    fn roll(window: &mut Window) {
        let now = Instant::now();
        let over = window
            .started
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1));
        if !over {
            return;
        }
        window.started = Some(now);
        for ((downstream, msg), (_, held)) in std::mem::take(&mut window.lines) {
            if held > 0 {
                log::warn(
                    "redelivery lines held back",
                    &[
                        ("downstream", downstream.as_str().into()),
                        ("kind", msg.into()),
                        ("changes", held.into()),
                    ],
                );
            }
        }
    }
}

impl Observer for Recorder {
    fn tried(&self, downstream: &str, change: &Change, sent: &Sent, took: Duration) {
        metrics::get().notified(downstream, sent.result_word(), took);
        metrics::get()
            .redeliveries
            .inc(&[downstream, redelivery_result(sent.class())]);
        if sent.class() == Class::Transient && self.allow(downstream, "redelivery failed") {
            log::warn(
                "redelivery failed; will retry",
                &[
                    ("downstream", downstream.into()),
                    ("change", log::text(change)),
                    ("detail", log::text(sent)),
                ],
            );
        }
    }

    fn delivered(&self, downstream: &str, change: &Change, waited: Duration, attempts: u32) {
        if self.allow(downstream, "redelivered") {
            log::info(
                "redelivered",
                &[
                    ("downstream", downstream.into()),
                    ("change", log::text(change)),
                    ("attempts", u64::from(attempts).into()),
                    ("waited_ms", log::millis(waited)),
                ],
            );
        }
    }

    fn dropped(&self, downstream: &str, change: &Change, reason: Dropped, waited: Duration) {
        metrics::get()
            .redelivery_drops
            .inc(&[downstream, reason.word()]);
        if self.allow(downstream, "redelivery dropped") {
            log::error(
                "redelivery dropped",
                &[
                    ("downstream", downstream.into()),
                    ("change", log::text(change)),
                    ("reason", reason.word().into()),
                    ("waited_ms", log::millis(waited)),
                ],
            );
        }
    }

    fn tick(&self) {
        Self::roll(&mut lock(&self.window));
    }
}
