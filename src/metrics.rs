//! Counters, gauges and histograms, rendered in the Prometheus text format (version 0.0.4).
//! Hand-written: it is small. This is a leaf: it takes label values as strings and knows no
//! domain type. Callers pass values from fixed sets only (source names, verdict words, the
//! config's downstream names), never anything from a request, so no digest, repository or path
//! can become a label.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A counter family: one count per combination of label values.
pub struct Counter {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    /// Series that exist from the start, for a one-label family whose values are fixed.
    zeros: &'static [&'static str],
    /// Also rendered summed over the first label, under this name and help.
    total: Option<(&'static str, &'static str)>,
    /// (label values, count), sorted by label values: a lookup is a binary search.
    series: Mutex<Vec<(Vec<String>, u64)>>,
}

impl Counter {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Counter {
        Counter {
            name,
            help,
            labels,
            zeros: &[],
            total: None,
            series: Mutex::new(Vec::new()),
        }
    }

    /// The series of these values (of the one label) exist at 0 from the start.
    const fn starting_at_zero(mut self, values: &'static [&'static str]) -> Counter {
        self.zeros = values;
        self
    }

    /// Also rendered as the family `name`, summed over the first label.
    const fn with_total(mut self, name: &'static str, help: &'static str) -> Counter {
        self.total = Some((name, help));
        self
    }

    /// Makes the series exist at 0, so that it is scraped before anything happens.
    pub fn declare(&self, values: &[&str]) {
        self.add(values, 0);
    }

    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    fn add(&self, values: &[&str], n: u64) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let mut series = self.series();
        match find(&series, values) {
            Ok(at) => series[at].1 += n,
            Err(at) => series.insert(at, (values.iter().map(|v| (*v).to_owned()).collect(), n)),
        }
    }

    /// The count of one series (0 if never seen).
    pub fn get(&self, values: &[&str]) -> u64 {
        let series = self.series();
        find(&series, values).map_or(0, |at| series[at].1)
    }

    fn series(&self) -> MutexGuard<'_, Vec<(Vec<String>, u64)>> {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if series.is_empty() {
            series.extend(self.zeros.iter().map(|v| (vec![(*v).to_owned()], 0)));
        }
        series
    }

    fn render(&self, out: &mut String) {
        let series = self.series();
        let mut family = |name: &str, help: &str, labels: &[&str], series: &[(&[String], u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (values, count) in series {
                let _ = writeln!(out, "{name}{} {count}", label_set(labels, values));
            }
        };
        let all: Vec<_> = series.iter().map(|(v, n)| (v.as_slice(), *n)).collect();
        family(self.name, self.help, self.labels, &all);
        if let Some((name, help)) = self.total {
            let mut sums: Vec<(&[String], u64)> = Vec::new();
            for (values, count) in &all {
                let rest = values.get(1..).unwrap_or_default();
                match sums.iter_mut().find(|(r, _)| *r == rest) {
                    Some((_, sum)) => *sum += count,
                    None => sums.push((rest, *count)),
                }
            }
            family(name, help, self.labels.get(1..).unwrap_or_default(), &sums);
        }
    }
}

/// Where the series of `values` is in `series`, or where it would go.
fn find(series: &[(Vec<String>, u64)], values: &[&str]) -> Result<usize, usize> {
    series.binary_search_by(|(v, _)| v.iter().map(String::as_str).cmp(values.iter().copied()))
}

/// `{a="x",b="y"}`, or nothing without labels. Values are escaped as the format requires.
fn label_set(names: &[&str], values: &[impl AsRef<str>]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let value = value
            .as_ref()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{name}=\"{value}\"");
    }
    out.push('}');
    out
}

/// A gauge read at scrape time: one value, or one per value of a single label.
pub struct Gauge<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub label: Option<&'a str>,
    pub values: Vec<(String, u64)>,
}

impl Gauge<'_> {
    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {0} {1}\n# TYPE {0} gauge",
            self.name, self.help
        );
        for (label_value, value) in &self.values {
            let labels = match self.label {
                Some(label) => label_set(&[label], &[label_value]),
                None => String::new(),
            };
            let _ = writeln!(out, "{}{labels} {value}", self.name);
        }
    }
}

/// Upper bounds of the notify latency histogram, in seconds.
const LATENCY_BOUNDS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds of the request body size histogram, in bytes.
const BODY_BOUNDS: [f64; 9] = [
    1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 33554432.0,
];

pub struct Histogram<const N: usize> {
    name: &'static str,
    help: &'static str,
    bounds: [f64; N],
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [AtomicU64; 16],
    /// Sum in micro-units (µs or bytes), to stay in integers.
    sum: AtomicU64,
    count: AtomicU64,
    scale: f64,
}

impl<const N: usize> Histogram<N> {
    const fn new(
        name: &'static str,
        help: &'static str,
        bounds: [f64; N],
        scale: f64,
    ) -> Histogram<N> {
        Histogram {
            name,
            help,
            bounds,
            buckets: [const { AtomicU64::new(0) }; 16],
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
            scale,
        }
    }

    pub fn observe(&self, value: f64) {
        let slot = self.bounds.iter().position(|b| value <= *b).unwrap_or(N);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum
            .fetch_add((value * self.scale) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} histogram", self.help);
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

/// The families of the process: a new metric is one entry here (its series with label values
/// from the config are declared in `delivery/observer.rs`), rendered in this order.
macro_rules! families {
    ($($field:ident: $kind:ty = $make:expr,)*) => {
        /// All metrics of the process.
        pub struct Metrics {
            $(pub $field: $kind,)*
            start_time: AtomicU64,
        }

        impl Metrics {
            const fn new() -> Metrics {
                Metrics {
                    $($field: $make,)*
                    start_time: AtomicU64::new(0),
                }
            }

            fn render_families(&self, out: &mut String) {
                $(self.$field.render(out);)*
            }
        }
    };
}

families! {
    requests: Counter = Counter::new(
        "flux_recv_requests_total",
        "Requests by source and outcome.",
        &["source", "outcome"],
    ),
    notify_by_downstream: Counter = Counter::new(
        "flux_recv_notify_by_downstream_total",
        "Notify calls by downstream and result, redeliveries included.",
        &["downstream", "result"],
    )
    .with_total(
        "flux_recv_notify_total",
        "Notify calls to downstreams (fluxd, Flux receivers) by result, redeliveries included.",
    ),
    notify_latency: Histogram<11> = Histogram::new(
        "flux_recv_notify_duration_seconds",
        "Time of one notify call to a downstream, retries included.",
        LATENCY_BOUNDS,
        1_000_000.0,
    ),
    body_bytes: Histogram<9> = Histogram::new(
        "flux_recv_request_body_bytes",
        "Size of request bodies read.",
        BODY_BOUNDS,
        1.0,
    ),
    redeliveries: Counter = Counter::new(
        "flux_recv_redeliveries_total",
        "Background redelivery attempts by downstream and result.",
        &["downstream", "result"],
    ),
    redelivery_drops: Counter = Counter::new(
        "flux_recv_redelivery_dropped_total",
        "Changes given up on, by downstream and reason.",
        &["downstream", "reason"],
    ),
    reloads: Counter = Counter::new(
        "flux_recv_config_reloads_total",
        "Config reloads by result.",
        &["result"],
    )
    .starting_at_zero(&["failed", "ok"]),
}

static METRICS: Metrics = Metrics::new();

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
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

    /// One notify call: to whom, its result word, and how long it took.
    pub fn notified(&self, downstream: &str, result: &str, took: Duration) {
        self.notify_by_downstream.inc(&[downstream, result]);
        self.notify_latency.observe(took.as_secs_f64());
    }

    /// The exposition text, with the gauges the caller reads at scrape time.
    pub fn render(&self, gauges: &[Gauge<'_>]) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_families(&mut out);
        for gauge in gauges {
            gauge.render(&mut out);
        }
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
        let h = Histogram::new("x", "h", [1.0, 2.0], 1000.0);
        for v in [0.5, 1.5, 1.7, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out);
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count 4\n"), "{out}");
        assert!(out.contains("x_sum 12.7\n"), "{out}");
    }

    #[test]
    fn counters_keep_one_series_per_label_set() {
        let c = Counter::new("c_total", "h", &["a", "b"]);
        c.declare(&["x", "1"]);
        c.inc(&["y", "2"]);
        c.inc(&["y", "2"]);
        c.inc(&["x", "1"]);
        assert_eq!(c.get(&["y", "2"]), 2);
        assert_eq!(c.get(&["z", "3"]), 0);
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(
            out,
            "# HELP c_total h\n# TYPE c_total counter\nc_total{a=\"x\",b=\"1\"} 1\nc_total{a=\"y\",b=\"2\"} 2\n"
        );
    }

    #[test]
    fn a_total_sums_over_the_first_label_and_zeros_exist_from_the_start() {
        let c = Counter::new("by_total", "h", &["d", "r"]).with_total("all_total", "t");
        c.inc(&["b", "ok"]);
        c.inc(&["a", "ok"]);
        c.inc(&["a", "failed"]);
        let mut out = String::new();
        c.render(&mut out);
        assert!(
            out.ends_with("# HELP all_total t\n# TYPE all_total counter\nall_total{r=\"failed\"} 1\nall_total{r=\"ok\"} 2\n"),
            "{out}"
        );
        let z = Counter::new("z_total", "h", &["r"]).starting_at_zero(&["failed", "ok"]);
        z.inc(&["ok"]);
        assert_eq!((z.get(&["failed"]), z.get(&["ok"])), (0, 1));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            label_set(&["d"], &["a\"b\\c\nd"]),
            "{d=\"a\\\"b\\\\c\\nd\"}"
        );
    }

    #[test]
    fn gauges_render_with_and_without_a_label() {
        let text = Metrics::new().render(&[
            Gauge {
                name: "flux_recv_open_connections",
                help: "Open client connections.",
                label: None,
                values: vec![(String::new(), 3)],
            },
            Gauge {
                name: "flux_recv_redelivery_pending",
                help: "p",
                label: Some("downstream"),
                values: vec![("cluster-a".into(), 2)],
            },
        ]);
        assert!(text.contains("flux_recv_open_connections 3\n"), "{text}");
        assert!(text.contains("flux_recv_redelivery_pending{downstream=\"cluster-a\"} 2\n"));
    }
}
