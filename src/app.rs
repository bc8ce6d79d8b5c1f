//! The wiring of a serving flux-recv, shared by `main.rs` and the tests: the transport
//! ([`server`](crate::server)) given the delivery layer as its handler.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::delivery::{self, Delivery};
use crate::server::{self, Server};

/// Every serving flag.
#[derive(Debug, Clone)]
pub struct Options {
    /// `:8080` (all interfaces), `127.0.0.1:8080`, `[::1]:8080` or `host:port`.
    pub listen: String,
    /// A separate listener for `/metrics` (then not served on the main one).
    pub listen_metrics: Option<String>,
    /// Handler threads: requests verified, parsed and notified at once.
    pub threads: usize,
    /// Largest accepted body; GitHub and GitLab never send more than 25 MB.
    pub max_body_bytes: u64,
    /// Time to receive a whole request (head and body) once it starts.
    pub read_timeout: Duration,
    /// Time for all notify calls of one delivery.
    pub notify_timeout: Duration,
    /// Open connections at once; past it, a fast 503 and close.
    pub max_connections: usize,
    /// How long a change a downstream could not take is retried; zero: not at all.
    pub redeliver_for: Duration,
    /// Changes waiting for redelivery at once.
    pub redeliver_max: usize,
}

impl Options {
    fn server(&self) -> server::Options {
        server::Options {
            listen: self.listen.clone(),
            threads: self.threads,
            max_body_bytes: self.max_body_bytes,
            read_timeout: self.read_timeout,
            max_connections: self.max_connections,
            listen_metrics: self.listen_metrics.clone(),
        }
    }

    fn delivery(&self) -> delivery::Options {
        delivery::Options {
            notify_timeout: self.notify_timeout,
            redeliver_for: self.redeliver_for,
            redeliver_max: self.redeliver_max,
            threads: self.threads,
            separate_metrics: self.listen_metrics.is_some(),
        }
    }
}

/// Bound, not yet serving.
pub struct Bound {
    server: Server,
    delivery: Arc<Delivery>,
}

/// Serving on background threads.
pub struct Running {
    server: server::Running,
    delivery: Arc<Delivery>,
}

/// Binds the listeners for `config`; nothing is served until [`Bound::spawn`].
pub fn bind(config: &Config, options: &Options) -> Result<Bound, String> {
    let delivery = Delivery::new(config, options.delivery());
    let handler: Arc<dyn server::Handler> = Arc::clone(&delivery) as Arc<dyn server::Handler>;
    let server = Server::bind(handler, options.server())?;
    Ok(Bound { server, delivery })
}

/// Binds and serves at once (tests).
pub fn start(config: &Config, options: &Options) -> Result<Running, String> {
    bind(config, options).map(Bound::spawn)
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.metrics_addr()
    }

    pub fn spawn(self) -> Running {
        Running {
            server: self.server.spawn(),
            delivery: self.delivery,
        }
    }
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Swaps in a new config; requests in progress finish on the old one.
    pub fn reload(&self, config: &Config) {
        self.delivery.reload(config);
    }

    /// Requests being handled right now.
    pub fn busy(&self) -> usize {
        self.server.busy()
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.server.status().open_connections
    }

    /// Stops accepting; connections in progress finish on their own threads.
    pub fn stop(mut self) {
        self.server.stop_accepting();
    }

    /// Stops accepting, waits up to `grace` for requests in progress, then gives pending
    /// redeliveries one last try in what is left of it. Returns the requests left unanswered.
    pub fn shutdown(mut self, grace: Duration) -> usize {
        let started = std::time::Instant::now();
        let left = self.server.shutdown(grace);
        self.delivery
            .finish(grace.saturating_sub(started.elapsed()));
        left
    }
}
