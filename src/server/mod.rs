//! The HTTP/1.1 transport, and nothing else: an acceptor per listener that no accept error stops
//! (only a shutdown does), one small thread per
//! connection (capped, with deadlines) that reads and frames requests, and a fixed pool that runs
//! the work a [`Handler`] hands back (on the connection's own thread when no other work runs). It knows no provider, no config and no downstream: what a
//! request means is the handler's business, what went wrong in the transport is a [`Refusal`]
//! the handler turns into a [`Response`].
//!
//! Every limit is a named constant or an [`Options`] field with its reason beside it.

use std::borrow::Cow;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::cidr::Cidr;
use crate::log;

mod accept;
mod body;
mod clients;
mod connection;
mod frame;
mod http;
mod pool;
mod stream;
#[cfg(feature = "tls")]
mod tls;

pub use frame::{frame_request, Framed};
pub use http::MAX_HEAD_BYTES;
pub use http::{Head, MAX_HEADERS};
pub use stream::{MemoryTransport, Transport};

/// How long an idle keep-alive connection is kept open between requests.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);
/// Requests one connection carries before it is closed (nginx's `keepalive_requests`), and how
/// long it may live: a client cannot keep a slot for ever by sending requests now and then.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);

/// Transport limits; each has a flag.
#[derive(Debug, Clone)]
pub struct Options {
    /// `:8080` (all interfaces), `127.0.0.1:8080`, `[::1]:8080` or `host:port`.
    pub listen: String,
    /// Handler threads: requests verified, parsed and notified at once.
    pub threads: usize,
    /// Largest accepted body; GitHub and GitLab never send more than 25 MB.
    pub max_body_bytes: u64,
    /// Time to receive a whole request (head and body) once it starts.
    pub read_timeout: Duration,
    /// Open connections at once; past it, the longest idle kept-alive one is closed, and if
    /// none is idle, a fast 503 and close.
    pub max_connections: usize,
    /// Connections one client address may hold (an IPv6 client per /64); through a trusted
    /// proxy, requests in progress per forwarded client.
    pub max_connections_per_client: usize,
    /// Proxies whose `X-Forwarded-For` names the client (for the share, and for the handler).
    pub trusted_proxies: Vec<Cidr>,
    /// A separate listener for `/metrics` (the handler decides what it serves); always plain.
    pub listen_metrics: Option<String>,
    /// TLS on `--listen` (`--tls-cert`, `--tls-key`); plain HTTP without.
    pub tls: Option<TlsFiles>,
}

/// Where the listener's certificate (chain) and private key are, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl Options {
    /// Bytes of request bodies held in memory at once, across all connections: enough for every
    /// handler to hold one body at the cap while the next ones arrive.
    pub fn body_budget(&self) -> u64 {
        (self.threads.max(1) as u64 + 1).saturating_mul(self.max_body_bytes.max(1))
    }
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `--listen`.
    Main,
    /// `--listen-metrics`.
    Metrics,
}

/// A reply, as the handler wants it written. The transport adds the framing headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Extra headers (`Allow`, `Retry-After`, `X-Request-Id`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Cow<'static, str>,
}

impl Response {
    /// A plain-text reply.
    pub fn text(status: u16, body: impl Into<Cow<'static, str>>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

/// A request with its whole body, for the handler pool.
#[derive(Debug)]
pub struct Request {
    pub head: Head,
    pub body: Vec<u8>,
}

/// Why the transport could not hand a request over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed head or framing; the detail says how.
    BadRequest(String),
    /// Head over [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`].
    HeadTooLarge,
    /// Body over `--max-body-bytes` (declared or received).
    TooLarge,
    /// The request was not received within `--read-timeout`.
    TimedOut,
    /// Past `--max-connections`, with no idle connection to close.
    TooManyConnections,
    /// Past `--max-connections-per-client` for this client.
    TooManyFromClient,
    /// No memory budget for a large body within the read timeout.
    NoBudget,
    /// The handler pool is gone (stopping).
    PoolStopped,
    /// The handler's work panicked; the pool thread lives on.
    Panic,
}

/// What a handler makes of a request head.
pub enum Begin {
    /// Answer now, without reading any body (health, not found, wrong method…).
    Answer(Response),
    /// Read the body, then run this work in the pool.
    Read(Box<dyn Work>),
}

/// The server's view of itself, for the handler (readiness, metrics).
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub open_connections: usize,
    /// Requests' work running right now, on pool or connection threads (at most `--threads`).
    pub busy_handlers: usize,
    pub stopping: bool,
}

/// What a request means, given to the server. Called on connection threads; must be cheap.
pub trait Handler: Send + Sync {
    /// A complete head, before any body byte is read.
    fn begin(&self, head: &Head, status: Status) -> Begin;
    /// A request refused before [`Handler::begin`] could be asked (bad head, too many
    /// connections, too slow); `started` is when its clock started.
    fn refuse(&self, refusal: Refusal, started: Instant) -> Response;
}

/// One request's work, made by [`Handler::begin`] and run in the pool with the body.
pub trait Work: Send {
    fn run(&self, request: Request) -> Response;
    /// The body could not be read, the pool is gone, or `run` panicked.
    fn refuse(self: Box<Self>, refusal: Refusal) -> Response;
}

/// Counts one piece of work in progress (a request in flight, a work running) while alive,
/// however it ends.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Counted<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resolves a listen address (`flag` names it in errors). `:PORT` means every interface (IPv6
/// and IPv4 where the host has IPv6).
pub fn listen_addrs(flag: &str, listen: &str) -> Result<Vec<SocketAddr>, String> {
    if let Some(port) = listen.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{flag} {listen:?}: {port:?} is not a port number"))?;
        return Ok(vec![
            SocketAddr::from(([0u16; 8], port)),
            SocketAddr::from(([0u8; 4], port)),
        ]);
    }
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| format!("{flag} {listen:?}: {e}; use :PORT or HOST:PORT"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{flag} {listen:?}: resolves to no address"));
    }
    Ok(addrs)
}

fn bind_one(flag: &str, listen: &str) -> Result<TcpListener, String> {
    let addrs = listen_addrs(flag, listen)?;
    let mut last_error = String::new();
    for addr in &addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = format!("{flag} {listen}: cannot bind {addr}: {e}"),
        }
    }
    Err(last_error)
}

/// What every thread of the server shares.
struct Shared {
    handler: Arc<dyn Handler>,
    opts: Options,
    clients: Arc<clients::Clients>,
    /// Requests between a complete head and a written reply (what a stop waits for).
    in_flight: AtomicUsize,
    stopping: AtomicBool,
    pool: pool::Pool,
    budget: Arc<body::Budget>,
    #[cfg(feature = "tls")]
    tls: Option<tls::Tls>,
}

impl Shared {
    /// Whether connections on this listener speak TLS.
    fn speaks_tls(&self, listener: Listener) -> bool {
        listener == Listener::Main && self.opts.tls.is_some()
    }

    fn status(&self) -> Status {
        Status {
            open_connections: self.clients.open.load(Ordering::SeqCst),
            busy_handlers: self.pool.running(),
            stopping: self.stopping.load(Ordering::SeqCst),
        }
    }
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shared: Arc<Shared>,
}

/// A server serving on its own threads.
pub struct Running {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Each acceptor with the address that wakes it.
    acceptors: Vec<(SocketAddr, JoinHandle<()>)>,
}

impl Server {
    /// Binds the listeners; nothing is served until [`Server::spawn`].
    pub fn bind(handler: Arc<dyn Handler>, opts: Options) -> Result<Server, String> {
        #[cfg(feature = "tls")]
        let tls = opts.tls.as_ref().map(tls::Tls::load).transpose()?;
        #[cfg(not(feature = "tls"))]
        if opts.tls.is_some() {
            return Err("--tls-cert and --tls-key need the `tls` feature (the default build); this build has none".into());
        }
        let listener = bind_one("--listen", &opts.listen)?;
        let metrics_listener = match &opts.listen_metrics {
            Some(addr) => Some(bind_one("--listen-metrics", addr)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            handler,
            budget: Arc::new(body::Budget::new(opts.body_budget())),
            pool: pool::Pool::start(opts.threads.max(1)),
            opts,
            #[cfg(feature = "tls")]
            tls,
            clients: Arc::new(clients::Clients::new()),
            in_flight: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        Ok(Server {
            listener,
            metrics_listener,
            shared,
        })
    }

    /// The `--listen-metrics` address, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0u8; 4], 0)))
    }

    /// Serves on background threads and returns at once.
    pub fn spawn(self) -> Running {
        let addr = self.local_addr();
        let listeners = [
            Some((self.listener, Listener::Main)),
            self.metrics_listener.map(|l| (l, Listener::Metrics)),
        ];
        let mut acceptors = Vec::new();
        for (listener, role) in listeners.into_iter().flatten() {
            let Ok(local) = listener.local_addr() else {
                continue;
            };
            let shared = Arc::clone(&self.shared);
            let spawned = thread::Builder::new()
                .name("acceptor".into())
                .spawn(move || accept::accept_loop(&listener, &shared, role));
            match spawned {
                Ok(handle) => acceptors.push((local, handle)),
                Err(e) => log::error("cannot start an acceptor", &[("error", log::text(e))]),
            }
        }
        Running {
            addr,
            shared: self.shared,
            acceptors,
        }
    }
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting (the listeners close); connections in progress finish on their threads.
    pub fn stop_accepting(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for (addr, acceptor) in self.acceptors.drain(..) {
            // Wake each acceptor, blocked in accept(), with a connection of our own; if that
            // cannot connect, the next client wakes it, and nobody waits for one that may never
            // come.
            match TcpStream::connect_timeout(&accept::wake_addr(addr), Duration::from_secs(1)) {
                Ok(_) => {
                    let _ = acceptor.join();
                }
                Err(e) => log::warn(
                    "cannot wake an acceptor; it stops at its next connection",
                    &[("addr", log::text(addr)), ("error", log::text(e))],
                ),
            }
        }
    }

    /// Stops accepting, then waits up to `grace` for requests in progress to be answered.
    /// Returns how many were still in progress when it gave up (0: a clean stop).
    pub fn shutdown(&mut self, grace: Duration) -> usize {
        self.stop_accepting();
        let deadline = Instant::now() + grace;
        loop {
            let in_flight = self.in_flight();
            if in_flight == 0 {
                // Nothing left for the handler pool: its threads are joined.
                self.shared.pool.close();
                return 0;
            }
            if Instant::now() >= deadline {
                return in_flight;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Requests between a complete head and a written reply, right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The server's view of itself.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Reads the TLS certificate and key again (a renewal): `Ok(true)` when new connections now
    /// get a new pair, `Ok(false)` without TLS or a change; an error keeps the old pair.
    pub fn reload_tls(&self) -> Result<bool, String> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.shared.tls {
            return tls.reload();
        }
        Ok(false)
    }

    /// The TLS files being served, to watch for renewals.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.shared.opts.tls.as_ref()
    }
}
