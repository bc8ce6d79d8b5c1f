//! The wiring of a serving flux-recv, shared by `main.rs` and the tests: the transport
//! ([`server`](crate::server)) given the delivery layer as its handler.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::delivery::Delivery;
use crate::server::{self, Server};

pub use crate::delivery::Options as DeliveryOptions;
pub use crate::server::Options as ServerOptions;
pub use crate::server::TlsFiles;

/// Every serving flag, grouped by the layer that reads it (the flag table in `cli.rs` fills them).
#[derive(Debug, Clone)]
pub struct Options {
    pub server: ServerOptions,
    pub delivery: DeliveryOptions,
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
    let delivery = Delivery::new(config, options.delivery.clone(), &options.server)?;
    let handler: Arc<dyn server::Handler> = Arc::clone(&delivery) as Arc<dyn server::Handler>;
    let server = Server::bind(handler, options.server.clone())?;
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

    /// Reads the listener's TLS certificate and key again; see [`server::Running::reload_tls`].
    pub fn reload_tls(&self) -> Result<bool, String> {
        self.server.reload_tls()
    }

    /// The listener's TLS files, to watch.
    pub fn tls_files(&self) -> Option<&server::TlsFiles> {
        self.server.tls_files()
    }

    /// Requests between a complete head and a written reply, right now.
    pub fn in_flight(&self) -> usize {
        self.server.in_flight()
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
