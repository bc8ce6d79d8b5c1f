//! What the redelivery queue reports, turned into log lines and metrics.

use std::time::Duration;

use crate::change::Change;
use crate::downstream::redelivery::{Dropped, Observer};
use crate::downstream::{Class, Sent};
use crate::log;
use crate::metrics;

/// The `result` of `flux_recv_redeliveries_total`, by how a background try ended.
fn redelivery_result(class: Class) -> &'static str {
    match class {
        Class::Delivered => "delivered",
        Class::Transient => "failed",
        Class::Permanent => "rejected",
    }
}

/// Makes a downstream's series exist at 0 before anything happens to it.
pub(super) fn declare(downstream: &str) {
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
pub(super) struct Recorder;

impl Observer for Recorder {
    fn tried(&self, downstream: &str, change: &Change, sent: &Sent, took: Duration) {
        metrics::get().notified(downstream, sent.result_word(), took);
        metrics::get()
            .redeliveries
            .inc(&[downstream, redelivery_result(sent.class())]);
        if sent.class() == Class::Transient {
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

    fn dropped(&self, downstream: &str, change: &Change, reason: Dropped, waited: Duration) {
        metrics::get()
            .redelivery_drops
            .inc(&[downstream, reason.word()]);
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
