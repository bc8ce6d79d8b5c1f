//! Counters, gauges and histograms, rendered in the Prometheus text format (version 0.0.4).
//! Hand-written: it is small, and label values come only from fixed sets (sources, outcomes,
//! results), never from a request, so no digest, repository or path can become a label.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sources::Source;

/// Request outcomes, the `outcome` label of `flux_recv_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    Notified,
    Ignored,
    Pong,
    Unauthorized,
    BadRequest,
    TooLarge,
    Timeout,
    NotFound,
    Error,
}

impl RequestOutcome {
    const ALL: [RequestOutcome; 9] = [
        RequestOutcome::Notified,
        RequestOutcome::Ignored,
        RequestOutcome::Pong,
        RequestOutcome::Unauthorized,
        RequestOutcome::BadRequest,
        RequestOutcome::TooLarge,
        RequestOutcome::Timeout,
        RequestOutcome::NotFound,
        RequestOutcome::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            RequestOutcome::Notified => "notified",
            RequestOutcome::Ignored => "ignored",
            RequestOutcome::Pong => "pong",
            RequestOutcome::Unauthorized => "unauthorized",
            RequestOutcome::BadRequest => "bad_request",
            RequestOutcome::TooLarge => "too_large",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::NotFound => "not_found",
            RequestOutcome::Error => "error",
        }
    }
}

/// Notify call results, the `result` label of `flux_recv_notify_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyResult {
    Ok,
    Rejected,
    Unreachable,
    TimedOut,
}

impl NotifyResult {
    const ALL: [NotifyResult; 4] = [
        NotifyResult::Ok,
        NotifyResult::Rejected,
        NotifyResult::Unreachable,
        NotifyResult::TimedOut,
    ];

    fn label(self) -> &'static str {
        match self {
            NotifyResult::Ok => "ok",
            NotifyResult::Rejected => "rejected",
            NotifyResult::Unreachable => "unreachable",
            NotifyResult::TimedOut => "timed_out",
        }
    }
}

/// Source slots: one per source, plus one for requests that matched no endpoint.
const SOURCE_SLOTS: usize = 16;
const NO_SOURCE: usize = SOURCE_SLOTS - 1;

/// Upper bounds of the notify latency histogram, in seconds.
const LATENCY_BOUNDS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds of the request body size histogram, in bytes.
const BODY_BOUNDS: [f64; 9] = [
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 33554432.0,
];

struct Histogram<const N: usize> {
    bounds: [f64; N],
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [AtomicU64; 16],
    /// Sum in micro-units (µs or bytes), to stay in integers.
    sum: AtomicU64,
    count: AtomicU64,
    scale: f64,
}

impl<const N: usize> Histogram<N> {
    const fn new(bounds: [f64; N], scale: f64) -> Histogram<N> {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; 16],
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
            scale,
        }
    }

    fn observe(&self, value: f64) {
        let slot = self.bounds.iter().position(|b| value <= *b).unwrap_or(N);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum
            .fetch_add((value * self.scale) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.buckets[N].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.scale;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

/// All metrics of the process.
pub struct Metrics {
    requests: [[AtomicU64; 9]; SOURCE_SLOTS],
    notify: [AtomicU64; 4],
    notify_latency: Histogram<11>,
    body_bytes: Histogram<9>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    endpoints: AtomicU64,
    start_time: AtomicU64,
}

static METRICS: Metrics = Metrics::new();

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

fn source_slot(source: Option<Source>) -> usize {
    source
        .and_then(|s| Source::ALL.iter().position(|x| *x == s))
        .unwrap_or(NO_SOURCE)
        .min(NO_SOURCE)
}

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            requests: [const { [const { AtomicU64::new(0) }; 9] }; SOURCE_SLOTS],
            notify: [const { AtomicU64::new(0) }; 4],
            notify_latency: Histogram::new(LATENCY_BOUNDS, 1_000_000.0),
            body_bytes: Histogram::new(BODY_BOUNDS, 1.0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            endpoints: AtomicU64::new(0),
            start_time: AtomicU64::new(0),
        }
    }

    /// Records the process start (for `process_start_time_seconds`).
    pub fn started(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let _ = self
            .start_time
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub fn request(&self, source: Option<Source>, outcome: RequestOutcome) {
        let i = RequestOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(8);
        self.requests[source_slot(source)][i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn notify(&self, result: NotifyResult, took: Duration) {
        let i = NotifyResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(0);
        self.notify[i].fetch_add(1, Ordering::Relaxed);
        self.notify_latency.observe(took.as_secs_f64());
    }

    pub fn body(&self, bytes: usize) {
        self.body_bytes.observe(bytes as f64);
    }

    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn set_endpoints(&self, n: usize) {
        self.endpoints.store(n as u64, Ordering::Relaxed);
    }

    /// The exposition text; `open` and `busy` are read from the server at scrape time.
    pub fn render(&self, open: usize, busy: usize) -> String {
        let mut out = String::with_capacity(8 * 1024);
        out.push_str("# HELP flux_recv_requests_total Requests by source and outcome.\n# TYPE flux_recv_requests_total counter\n");
        for (slot, counters) in self.requests.iter().enumerate() {
            let source = match Source::ALL.get(slot) {
                Some(s) => s.name(),
                None if slot == NO_SOURCE => "none",
                None => continue,
            };
            for (i, outcome) in RequestOutcome::ALL.iter().enumerate() {
                let n = counters[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "flux_recv_requests_total{{source=\"{source}\",outcome=\"{}\"}} {n}",
                    outcome.label()
                );
            }
        }
        out.push_str("# HELP flux_recv_notify_total Notify calls to fluxd by result.\n# TYPE flux_recv_notify_total counter\n");
        for (i, result) in NotifyResult::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "flux_recv_notify_total{{result=\"{}\"}} {}",
                result.label(),
                self.notify[i].load(Ordering::Relaxed)
            );
        }
        self.notify_latency.render(
            &mut out,
            "flux_recv_notify_duration_seconds",
            "Time of one notify call to fluxd, retries included.",
        );
        self.body_bytes.render(
            &mut out,
            "flux_recv_request_body_bytes",
            "Size of request bodies read.",
        );
        let gauges = [
            (
                "flux_recv_open_connections",
                "Open client connections.",
                open as u64,
            ),
            (
                "flux_recv_busy_handlers",
                "Handler-pool threads running a delivery (at most --threads).",
                busy as u64,
            ),
            (
                "flux_recv_endpoints",
                "Endpoints configured.",
                self.endpoints.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP flux_recv_config_reloads_total Config reloads by result.\n# TYPE flux_recv_config_reloads_total counter\nflux_recv_config_reloads_total{{result=\"ok\"}} {}\nflux_recv_config_reloads_total{{result=\"failed\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP flux_recv_build_info Build information.\n# TYPE flux_recv_build_info gauge\nflux_recv_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP process_start_time_seconds Start time of the process since the Unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}",
            self.start_time.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new([1.0, 2.0], 1000.0);
        for v in [0.5, 1.5, 1.7, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "h");
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count 4\n"), "{out}");
        assert!(out.contains("x_sum 12.7\n"), "{out}");
    }

    #[test]
    fn every_source_and_outcome_has_a_series() {
        let text = Metrics::new().render(3, 1);
        for source in Source::ALL {
            assert!(text.contains(&format!(
                "source=\"{}\",outcome=\"notified\"",
                source.name()
            )));
        }
        assert!(text.contains("source=\"none\",outcome=\"not_found\""));
        assert!(text.contains("flux_recv_open_connections 3\n"));
        assert!(text.contains("flux_recv_busy_handlers 1\n"));
        assert!(Source::ALL.len() < SOURCE_SLOTS);
    }
}
