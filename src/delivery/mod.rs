//! What a request means: the server hands each head to [`Delivery`], which answers `/health`,
//! `/ready` and `/metrics` at once, looks up the route, and for a hook delivery returns the work
//! the pool runs with the body: the source verifies and parses it, the changes go to the
//! downstreams that want them (`fanout.rs`), and the ending becomes the reply, the one request log
//! line and the request metrics, all read from the verdict (`record.rs`).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::cidr::any_contains;
use crate::config::Config;
use crate::downstream::calls::Calls;
use crate::downstream::redelivery::spool::Spool;
use crate::downstream::redelivery::{Limits, Redelivery};
use crate::log;
use crate::metrics::{self, Gauge};
use crate::server::{
    self, Begin, Handler, Head, Listener, Refusal, Request, Response, Status, Work,
};
use crate::sources::gcr::bearer_token;
use crate::sources::{Incoming, Outcome, Rejection, TokenCheck};
use crate::tokeninfo::{Tokeninfo, Verdict};
use crate::verdict::Ending;

mod fanout;
pub(super) mod observer;
mod record;
mod routes;

use record::Context;
use routes::Table;

/// The delivery layer's flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time for all notify calls of one delivery (and for each background try).
    pub notify_timeout: Duration,
    /// How long a change that a downstream could not take is retried; zero: not at all.
    pub redeliver_for: Duration,
    /// Changes waiting for redelivery at once.
    pub redeliver_max: usize,
    /// Bytes of changes waiting for redelivery at once.
    pub redeliver_max_bytes: usize,
    /// Calls a second per downstream; zero: no limit.
    pub notify_rate: f64,
    /// Where queued changes are kept on disk, so that a 202 survives the process.
    pub spool: Option<PathBuf>,
    /// Verify and parse, log what each downstream would get, send nothing.
    pub dry_run: bool,
}

/// What the delivery layer reads of the transport's flags.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// The handler pool's size (each downstream's share of it, and the callers' number).
    threads: usize,
    /// `/metrics` has its own listener (and is not served on the main one).
    separate_metrics: bool,
}

/// The server's handler.
pub struct Delivery {
    table: RwLock<Arc<Table>>,
    redelivery: Arc<Redelivery>,
    calls: Arc<Calls>,
    /// GCR's token checks: called from `begin` on the connection thread, and handed to the
    /// source (which then finds the answer cached).
    tokeninfo: Arc<Tokeninfo>,
    tokens: Arc<dyn TokenCheck>,
    options: Options,
    shape: Shape,
}

impl Delivery {
    /// The handler for `config`; with a spool, what it holds is read back and queued again.
    pub fn new(
        config: &Config,
        options: Options,
        server: &server::Options,
    ) -> Result<Arc<Delivery>, String> {
        let shape = Shape {
            threads: server.threads,
            separate_metrics: server.listen_metrics.is_some(),
        };
        let spool = match &options.spool {
            Some(_) if options.redeliver_for.is_zero() => {
                return Err(
                    "--spool keeps changes queued for redelivery, which --redeliver-for 0 turns off; set --redeliver-for above 0, or remove --spool".into(),
                )
            }
            Some(dir) => Some(Spool::open(dir)?),
            None => None,
        };
        let limits = Limits {
            horizon: options.redeliver_for,
            max_entries: options.redeliver_max,
            max_bytes: options.redeliver_max_bytes,
            timeout: options.notify_timeout,
            rate: options.notify_rate,
        };
        let calls = Calls::start(shape.threads);
        let observer = Arc::new(observer::Recorder::default());
        let redelivery = Redelivery::new(limits, observer, Arc::clone(&calls), spool);
        let tokeninfo = Arc::new(Tokeninfo::default());
        let tokens: Arc<dyn TokenCheck> = Arc::clone(&tokeninfo) as Arc<dyn TokenCheck>;
        let table = Arc::new(Table::new(config, shape.threads, &tokens, &redelivery));
        let delivery = Delivery {
            table: RwLock::new(Arc::clone(&table)),
            redelivery,
            calls,
            tokeninfo,
            tokens,
            options,
            shape,
        };
        delivery.serve(table);
        let (recovered, warnings) = delivery.redelivery.recover();
        for warning in &warnings {
            log::warn("spool", &[("detail", warning.into())]);
        }
        if let Some(dir) = &delivery.options.spool {
            log::info(
                "spool",
                &[
                    ("dir", log::text(dir.display())),
                    ("recovered", recovered.into()),
                ],
            );
        }
        Ok(Arc::new(delivery))
    }

    /// Swaps in the table of a new config; requests in progress finish on the old one.
    pub fn reload(&self, config: &Config) {
        let table = Arc::new(Table::new(
            config,
            self.shape.threads,
            &self.tokens,
            &self.redelivery,
        ));
        self.serve(table);
    }

    /// Serves `table` (whose lanes exist already); lanes of downstreams it no longer has are
    /// closed after.
    fn serve(&self, table: Arc<Table>) {
        observer::declare(
            table.routes.iter().map(|r| r.endpoint.source.name()),
            table.names().into_iter(),
        );
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&table);
        self.redelivery.retain(&table.names());
    }

    /// On shutdown: pending redeliveries get one last try within `grace`; what is left stays
    /// in the spool, or is dropped.
    pub fn finish(&self, grace: Duration) {
        let kept = self.redelivery.finish(grace);
        if kept > 0 {
            log::info(
                "changes kept in the spool for the next start",
                &[("changes", kept.into())],
            );
        }
    }

    fn table(&self) -> Arc<Table> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&table)
    }

    fn metrics(&self, status: Status) -> Response {
        let table = self.table();
        let pending = self.redelivery.pending_by_downstream();
        let (spooled, spool_bytes) = self.redelivery.spool_stats().unwrap_or_default();
        let gauge = |name, help, value: usize| Gauge {
            name,
            help,
            label: None,
            values: vec![(String::new(), value as u64)],
        };
        let mut gauges = vec![
            gauge(
                "flux_recv_open_connections",
                "Open client connections.",
                status.open_connections,
            ),
            gauge(
                "flux_recv_busy_handlers",
                "Deliveries being verified, parsed and notified right now (at most --threads).",
                status.busy_handlers,
            ),
            gauge(
                "flux_recv_endpoints",
                "Endpoints configured.",
                table.routes.len(),
            ),
            Gauge {
                name: "flux_recv_redelivery_pending",
                help: "Changes waiting for redelivery, by downstream.",
                label: Some("downstream"),
                values: table
                    .targets
                    .iter()
                    .map(|t| {
                        let name = &t.downstream.name;
                        let n = pending.iter().find(|(p, _)| p == name).map_or(0, |p| p.1);
                        (name.clone(), n as u64)
                    })
                    .collect(),
            },
        ];
        if self.options.spool.is_some() {
            gauges.push(gauge(
                "flux_recv_spool_entries",
                "Changes queued for redelivery and kept in the spool.",
                spooled,
            ));
            gauges.push(gauge(
                "flux_recv_spool_bytes",
                "Bytes of the spool's files.",
                spool_bytes as usize,
            ));
        }
        Response {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            ..Response::text(200, metrics::get().render(&gauges))
        }
    }

    /// `/health`, `/ready`, `/metrics`: answered on the connection's thread, not logged.
    fn service(&self, head: &Head, status: Status) -> Option<Response> {
        let metrics_here = match head.listener {
            Listener::Metrics => true,
            Listener::Main => !self.shape.separate_metrics,
        };
        match (head.path(), head.listener) {
            ("/health", _) => Some(Response::text(200, "OK")),
            ("/metrics", _) if metrics_here => Some(self.metrics(status)),
            ("/ready", Listener::Main) if status.stopping => Some(Response::text(503, "Stopping")),
            ("/ready", Listener::Main) => Some(Response::text(200, "Ready")),
            (_, Listener::Metrics) => Some(Response::text(404, "Not found")),
            _ => None,
        }
    }
}

impl Delivery {
    /// GCR with `gcr.audience`: the push token is checked here, on the connection's thread and
    /// before the body is read, so that no forged token holds a handler or waits for one.
    fn check_token(&self, route: &routes::Route, head: &Head) -> Option<Ending> {
        let auth = route.settings.gcr.as_ref()?;
        let audience = auth.audience.as_deref()?;
        let token = bearer_token(head.header("Authorization"))?;
        let email = auth.email.as_deref();
        match self
            .tokeninfo
            .verify(auth.token_info_url(), token, audience, email)
        {
            Verdict::Valid => None,
            Verdict::Invalid(cause) => Some(Ending::Unauthorized(cause)),
            Verdict::Busy => Some(Ending::Overloaded("every GCR token check slot is busy")),
        }
    }
}

impl Handler for Delivery {
    fn begin(&self, head: &Head, status: Status) -> Begin {
        if let Some(response) = self.service(head, status) {
            return Begin::Answer(response);
        }
        let table = self.table();
        let path = head.path();
        let Some(route) = table.lookup(path) else {
            return Begin::Answer(Context::unrouted(path, head.started).finish(Ending::NotFound));
        };
        let context = Context::routed(&table.routes[route], &head.headers, head.started);
        let allow_from = &table.routes[route].endpoint.allow_from;
        if !allow_from.is_empty() && !head.client.is_some_and(|c| any_contains(allow_from, c)) {
            let client = head
                .client
                .map_or_else(|| "unknown".into(), |c| c.to_string());
            return Begin::Answer(context.finish(Ending::Forbidden(client)));
        }
        if head.method != "POST" {
            return Begin::Answer(context.finish(Ending::MethodNotAllowed));
        }
        if let Some(refused) = self.check_token(&table.routes[route], head) {
            return Begin::Answer(context.finish(refused));
        }
        Begin::Read(Box::new(Hook {
            table,
            route,
            context,
            redelivery: Arc::clone(&self.redelivery),
            calls: Arc::clone(&self.calls),
            notify_timeout: self.options.notify_timeout,
            dry_run: self.options.dry_run,
        }))
    }

    fn refuse(&self, refusal: Refusal, started: Instant) -> Response {
        Context::unrouted("-", started).finish(ending_of(refusal))
    }
}

/// One hook delivery's work, run in the pool with the body.
struct Hook {
    table: Arc<Table>,
    route: usize,
    context: Context,
    redelivery: Arc<Redelivery>,
    calls: Arc<Calls>,
    notify_timeout: Duration,
    dry_run: bool,
}

/// Only in unit-test builds: a request with this header makes its handler panic.
#[cfg(test)]
const PANIC_HEADER: &str = "X-Flux-Recv-Test-Panic";

impl Work for Hook {
    fn run(&self, request: Request) -> Response {
        let route = &self.table.routes[self.route];
        metrics::get().body_bytes.observe(request.body.len() as f64);
        let mut context = self.context.clone();
        if context.delivery.is_none() {
            context.delivery = route
                .endpoint
                .source
                .delivery_id(&request.head.headers, &request.body);
        }
        // The id the reply and the log carry, passed on to the downstreams.
        let request_id = context
            .delivery
            .get_or_insert_with(record::new_request_id)
            .clone();
        let path = request.head.path().to_owned();
        let incoming = Incoming {
            method: request.head.method,
            path,
            headers: request.head.headers,
            body: request.body,
        };
        #[cfg(test)]
        if incoming.header(PANIC_HEADER).is_some() {
            panic!("test-only panic requested");
        }
        let ending = match route.endpoint.source.handle(&incoming, &route.settings) {
            Err(Rejection::Unauthorized(cause)) => Ending::Unauthorized(cause),
            Err(Rejection::Malformed(cause)) => Ending::BadRequest(cause),
            Ok(Outcome::Pong) => Ending::Pong,
            Ok(Outcome::Ignored(reason)) => Ending::Ignored(reason),
            Ok(Outcome::Notify(changes)) if self.dry_run => {
                fanout::dry_run(&self.table, route, &changes, &request_id)
            }
            Ok(Outcome::Notify(changes)) => {
                let budget = route.endpoint.notify_timeout.unwrap_or(self.notify_timeout);
                let deadline = Instant::now() + budget;
                fanout::notify(
                    &self.table,
                    route,
                    &changes,
                    deadline,
                    &request_id,
                    &self.redelivery,
                    &self.calls,
                )
            }
        };
        context.finish(ending)
    }

    fn refuse(self: Box<Self>, refusal: Refusal) -> Response {
        self.context.finish(ending_of(refusal))
    }
}

/// What a transport refusal means for the reply, the log and the metrics.
fn ending_of(refusal: Refusal) -> Ending {
    match refusal {
        Refusal::BadRequest(why) => Ending::BadRequest(why.into()),
        Refusal::HeadTooLarge => Ending::HeadTooLarge,
        Refusal::TooLarge => Ending::TooLarge,
        Refusal::TimedOut => Ending::Timeout,
        Refusal::TooManyConnections => Ending::Overloaded("too many open connections"),
        Refusal::TooManyFromClient => {
            Ending::Overloaded("too many connections or requests from one client")
        }
        Refusal::NoBudget => Ending::Overloaded("no memory budget for the body in time"),
        Refusal::PoolStopped => Ending::Overloaded("handler pool stopped"),
        Refusal::Panic => Ending::Panic,
    }
}

#[cfg(test)]
mod tests;
