//! The HTTP/1.1 layer: an acceptor that never stops, one small thread per connection (capped,
//! with deadlines) that reads and frames requests, and a fixed pool of handlers that run
//! verify → parse → notify. Slow clients hold only their own connection thread, never a handler.
//!
//! Every limit is a named constant or an [`Options`] field with its reason beside it. The request
//! head is parsed by `httparse`; body framing (`Content-Length` or `chunked`, never both) is here.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::{Config, Endpoint, Routes};
use crate::error::{self, HookError};
use crate::fluxd::Fluxd;
use crate::log;
use crate::metrics::{self, RequestOutcome};
use crate::sources::{self, Incoming, Outcome};

mod http;

pub use http::{frame_request, Framed, MemoryTransport, Transport, MAX_HEADERS, MAX_HEAD_BYTES};
use http::{
    framing, read_body, write_reply, BodyBuf, Budget, Conn, Framing, ReadError, Reply, Reservation,
};

/// How long an idle keep-alive connection is kept open between requests.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);
/// Connection threads only frame requests; they need little stack.
const CONNECTION_STACK_BYTES: usize = 128 * 1024;
/// Upper bound of the acceptor's back-off after an accept error (EMFILE, ENOBUFS, …).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Server limits; each has a flag in `main.rs`.
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
    /// Time for all notify calls of one delivery.
    pub notify_timeout: Duration,
    /// Open connections at once; past it, a fast 503 and close.
    pub max_connections: usize,
    /// A separate listener for `/metrics` (then not served on the main one).
    pub listen_metrics: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            listen: ":8080".into(),
            threads: 4,
            max_body_bytes: 25 * 1024 * 1024,
            read_timeout: Duration::from_secs(10),
            notify_timeout: Duration::from_secs(5),
            max_connections: 256,
            listen_metrics: None,
        }
    }
}

impl Options {
    /// Bytes of request bodies held in memory at once, across all connections: enough for every
    /// handler to hold one body at the cap while the next ones arrive.
    pub fn body_budget(&self) -> u64 {
        (self.threads.max(1) as u64 + 1).saturating_mul(self.max_body_bytes.max(1))
    }
}

/// Resolves `--listen`. `:PORT` means every interface (IPv6 and IPv4 where the host has IPv6).
pub fn listen_addrs(listen: &str) -> Result<Vec<SocketAddr>, String> {
    if let Some(port) = listen.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("--listen {listen:?}: {port:?} is not a port number"))?;
        return Ok(vec![
            SocketAddr::from(([0u16; 8], port)),
            SocketAddr::from(([0u8; 4], port)),
        ]);
    }
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| format!("--listen {listen:?}: {e}; use :PORT or HOST:PORT"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("--listen {listen:?}: resolves to no address"));
    }
    Ok(addrs)
}

/// What a config turns into: the route table and the fluxd client. Swapped whole on reload;
/// requests in progress keep the table they started with.
pub struct Table {
    routes: Routes,
    fluxd: Fluxd,
}

impl Table {
    pub fn new(config: &Config, notify_timeout: Duration) -> Table {
        Table {
            routes: Routes::new(config),
            fluxd: Fluxd::new(&config.api, notify_timeout),
        }
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Hooks, `/health`, `/ready`, and `/metrics` unless it has its own listener.
    Main,
    /// `--listen-metrics`: `/metrics` (and `/health`) only.
    Metrics,
}

struct Shared {
    table: RwLock<Arc<Table>>,
    separate_metrics: bool,
    opts: Options,
    open: AtomicUsize,
    /// Requests between a complete head and a written reply (what a stop waits for).
    busy: AtomicUsize,
    /// Handler-pool threads running a job (the `busy handlers` gauge; at most `--threads`).
    handling: AtomicUsize,
    stopping: AtomicBool,
    jobs: mpsc::Sender<Job>,
    budget: Arc<Budget>,
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shared: Arc<Shared>,
    jobs: mpsc::Receiver<Job>,
}

/// A server serving on its own threads (tests, and `main` through [`Server::run`]).
pub struct Running {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the listener; nothing is served until [`Server::spawn`] or [`Server::run`].
    pub fn bind(config: &Config, opts: Options) -> Result<Server, String> {
        let listener = bind_one("--listen", &opts.listen)?;
        let metrics_listener = match &opts.listen_metrics {
            Some(addr) => Some(bind_one("--listen-metrics", addr)?),
            None => None,
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            table: RwLock::new(Arc::new(Table::new(config, opts.notify_timeout))),
            separate_metrics: metrics_listener.is_some(),
            budget: Arc::new(Budget::new(opts.body_budget())),
            opts,
            open: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            handling: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            jobs: tx,
        });
        Ok(Server {
            listener,
            metrics_listener,
            shared,
            jobs: rx,
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
        let shared = Arc::clone(&self.shared);
        let acceptor = thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || self.run())
            .ok();
        Running {
            addr,
            shared,
            acceptor,
        }
    }

    /// Serves on this thread until stopped.
    pub fn run(self) {
        let jobs = Arc::new(Mutex::new(self.jobs));
        for n in 0..self.shared.opts.threads.max(1) {
            let jobs = Arc::clone(&jobs);
            let shared = Arc::clone(&self.shared);
            let spawned = thread::Builder::new()
                .name(format!("handler-{n}"))
                .spawn(move || handler_loop(&jobs, &shared.handling));
            if let Err(e) = spawned {
                log::error("cannot start handler thread", &[("error", &e)]);
            }
        }
        if let Some(metrics) = self.metrics_listener {
            let shared = Arc::clone(&self.shared);
            let spawned = thread::Builder::new()
                .name("metrics-acceptor".into())
                .spawn(move || accept_loop(&metrics, &shared, Role::Metrics));
            if let Err(e) = spawned {
                log::error("cannot start the metrics listener", &[("error", &e)]);
            }
        }
        accept_loop(&self.listener, &self.shared, Role::Main);
    }
}

fn bind_one(flag: &str, listen: &str) -> Result<TcpListener, String> {
    let addrs = listen_addrs(listen).map_err(|e| e.replace("--listen", flag))?;
    let mut last_error = String::new();
    for addr in &addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = format!("{flag} {listen}: cannot bind {addr}: {e}"),
        }
    }
    Err(last_error)
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting; connections in progress finish on their own threads.
    pub fn stop(mut self) {
        self.stop_accepting();
    }

    fn stop_accepting(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor, blocked in accept(), with a connection of our own.
        let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }

    /// Stops accepting (the listener closes), then waits up to `grace` for requests in progress
    /// to be answered. Returns how many were still in progress when it gave up (0: a clean stop).
    pub fn shutdown(mut self, grace: Duration) -> usize {
        self.stop_accepting();
        let deadline = Instant::now() + grace;
        loop {
            let busy = self.shared.busy.load(Ordering::SeqCst);
            if busy == 0 || Instant::now() >= deadline {
                return busy;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Requests being handled right now.
    pub fn busy(&self) -> usize {
        self.shared.busy.load(Ordering::SeqCst)
    }

    /// Swaps in the table of a new config; requests in progress finish on the old one.
    pub fn reload(&self, config: &Config) {
        let table = Arc::new(Table::new(config, self.shared.opts.notify_timeout));
        *self
            .shared
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = table;
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

fn wake_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], a.port()))
        }
        other => other,
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, role: Role) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                stream
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ECONNABORTED…: log, wait a little, go on. Never stop.
                log::error(
                    "accept failed; retrying",
                    &[("error", &e), ("backoff_ms", &backoff.as_millis())],
                );
                thread::sleep(backoff);
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        if shared.open.fetch_add(1, Ordering::SeqCst) >= shared.opts.max_connections {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            refuse_overloaded(stream);
            continue;
        }
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let _open = OpenGuard(&conn_shared.open);
                serve_connection(stream, &conn_shared, role);
            });
        if let Err(e) = spawned {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            log::error("cannot start connection thread", &[("error", &e)]);
        }
    }
}

/// Past `--max-connections`: a 503 written without blocking the acceptor, then close.
fn refuse_overloaded(stream: TcpStream) {
    let error = HookError::Overloaded("too many open connections");
    let text = error.public_text();
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(reply.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
    log::warn(
        "request",
        &[
            ("outcome", &error.outcome()),
            ("status", &503),
            ("detail", &error),
        ],
    );
}

/// Counts one piece of work in progress (a request, a pool job) while alive.
struct BusyGuard<'a>(&'a AtomicUsize);

impl<'a> BusyGuard<'a> {
    fn new(counter: &'a AtomicUsize) -> BusyGuard<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        BusyGuard(counter)
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct OpenGuard<'a>(&'a AtomicUsize);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Work for the handler pool: one request with its body, and where to send the result.
struct Job {
    incoming: Incoming,
    endpoint: Arc<Endpoint>,
    table: Arc<Table>,
    reply: mpsc::SyncSender<Result<Outcome, HookError>>,
    /// Held until the handler is done with the body.
    _body: Reservation,
}

fn handler_loop(jobs: &Mutex<mpsc::Receiver<Job>>, handling: &AtomicUsize) {
    loop {
        let job = {
            let receiver = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let busy = BusyGuard::new(handling);
        let result = catch_unwind(AssertUnwindSafe(|| {
            process(&job.table, &job.endpoint, &job.incoming)
        }))
        .unwrap_or(Err(HookError::Panic));
        drop(busy);
        let _ = job.reply.send(result);
    }
}

/// verify → parse → notify, for one request.
fn process(table: &Table, endpoint: &Endpoint, incoming: &Incoming) -> Result<Outcome, HookError> {
    #[cfg(test)]
    if incoming.header(tests::PANIC_HEADER).is_some() {
        panic!("test-only panic requested");
    }
    let outcome = endpoint.source.handle(incoming, endpoint)?;
    if let Outcome::Notify(changes) = &outcome {
        table
            .fluxd
            .notify_all(changes)
            .map_err(|(index, error)| HookError::Fluxd {
                change: changes[index].clone(),
                index,
                of: changes.len(),
                error,
            })?;
    }
    Ok(outcome)
}

fn serve_connection(stream: TcpStream, shared: &Shared, role: Role) {
    let opts = &shared.opts;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(opts.read_timeout));
    let mut conn = Conn::new(stream);
    let mut first = true;
    loop {
        // The first request's clock starts at accept; later ones when their first byte arrives.
        let started = Instant::now();
        if !first && !conn.await_request(started + KEEP_ALIVE_IDLE) {
            return;
        }
        let started = if first { started } else { Instant::now() };
        first = false;
        let deadline = started + opts.read_timeout;
        let keep_going = serve_request(&mut conn, shared, role, started, deadline);
        // Once stopping, no connection carries another request.
        if !keep_going || shared.stopping.load(Ordering::SeqCst) {
            let _ = conn.stream.shutdown(Shutdown::Write);
            return;
        }
    }
}

/// Serves one request; `true` when the connection may carry another.
fn serve_request(
    conn: &mut Conn<TcpStream>,
    shared: &Shared,
    role: Role,
    started: Instant,
    deadline: Instant,
) -> bool {
    let head = match conn.read_head(deadline) {
        Ok(head) => head,
        Err(ReadError::Closed) | Err(ReadError::Io) => return false,
        Err(ReadError::TimedOut) => {
            finish_early(conn, HookError::RequestTimeout, started);
            return false;
        }
        Err(ReadError::Reply(error)) => {
            finish_early(conn, error, started);
            return false;
        }
    };
    let _busy = BusyGuard::new(&shared.busy);
    let head_only = head.method == "HEAD";
    let framing = match framing(&head) {
        Ok(f) => f,
        Err(error) => {
            finish_early(conn, error, started);
            return false;
        }
    };
    let path = head.path().to_owned();
    let keep_alive = head.wants_keep_alive();
    let stopping = shared.stopping.load(Ordering::SeqCst);
    let plain = |status: u16, body: &str| Reply {
        status,
        body: body.to_owned(),
        close: framing.has_body() || !keep_alive,
        ..Reply::default()
    };
    let service = match (path.as_str(), role) {
        ("/health", _) => Some(plain(200, "OK")),
        ("/metrics", Role::Metrics) => Some(metrics_reply(shared, plain(200, ""))),
        ("/metrics", Role::Main) if !shared.separate_metrics => {
            Some(metrics_reply(shared, plain(200, "")))
        }
        ("/ready", Role::Main) if stopping => Some(plain(503, "Stopping")),
        ("/ready", Role::Main) => Some(plain(200, "Ready")),
        (_, Role::Metrics) => Some(plain(404, "Not found")),
        _ => None,
    };
    if let Some(reply) = service {
        return write_reply(conn, &reply, head_only).is_ok() && !reply.close;
    }
    let table = shared
        .table
        .read()
        .map(|t| Arc::clone(&t))
        .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()));
    // Anything refused before its body is read closes the connection: the unread body
    // cannot be told apart from a next request.
    let unread_body_close = framing.has_body() || !keep_alive;
    let Some(endpoint) = table.routes.lookup(&path) else {
        let ctx = Done::new(None, None, &path, started);
        return finish(
            conn,
            Err(HookError::NotFound),
            &ctx,
            unread_body_close,
            head_only,
        );
    };
    if head.method != "POST" {
        let ctx = Done::new(Some(&endpoint), None, &path, started);
        return finish(
            conn,
            Err(HookError::MethodNotAllowed),
            &ctx,
            unread_body_close,
            head_only,
        );
    }
    let delivery = sources::delivery_id(&head.headers).map(sources::printable);
    let mut ctx = Done::new(Some(&endpoint), delivery, &path, started);
    if let Framing::Length(n) = framing {
        if n > shared.opts.max_body_bytes {
            return finish(conn, Err(HookError::PayloadTooLarge), &ctx, true, false);
        }
    }
    if head.expects_continue()
        && framing.has_body()
        && conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
    {
        return false;
    }
    let mut body = BodyBuf::new(&shared.budget, shared.opts.max_body_bytes);
    match read_body(conn, framing, &mut body, deadline) {
        Ok(()) => {}
        Err(ReadError::Closed) | Err(ReadError::Io) => return false,
        Err(ReadError::TimedOut) => {
            return finish(conn, Err(HookError::RequestTimeout), &ctx, true, false);
        }
        Err(ReadError::Reply(error)) => return finish(conn, Err(error), &ctx, true, false),
    }
    let BodyBuf {
        data, reservation, ..
    } = body;
    metrics::get().body(data.len());
    if ctx.delivery.is_none() {
        ctx.delivery = endpoint.source.delivery_id_in_body(&data);
    }
    let incoming = Incoming {
        method: head.method,
        path: path.clone(),
        headers: head.headers,
        body: data,
    };
    let (tx, rx) = mpsc::sync_channel(1);
    let job = Job {
        incoming,
        endpoint: Arc::clone(&endpoint),
        table,
        reply: tx,
        _body: reservation,
    };
    let result = match shared.jobs.send(job) {
        Ok(()) => rx.recv().unwrap_or(Err(HookError::Panic)),
        Err(_) => Err(HookError::Overloaded("handler pool stopped")),
    };
    let close = !keep_alive || shared.stopping.load(Ordering::SeqCst);
    finish(conn, result, &ctx, close, false)
}

/// What the log line of a finished request says besides its result.
struct Done<'a> {
    endpoint: Option<&'a Endpoint>,
    delivery: Option<String>,
    path: &'a str,
    started: Instant,
}

impl<'a> Done<'a> {
    fn new(
        endpoint: Option<&'a Endpoint>,
        delivery: Option<String>,
        path: &'a str,
        started: Instant,
    ) -> Done<'a> {
        Done {
            endpoint,
            delivery,
            path,
            started,
        }
    }
}

/// Replies to a request refused before it could be routed, and logs it.
fn finish_early(conn: &mut Conn<TcpStream>, error: HookError, started: Instant) {
    let ctx = Done::new(None, None, "-", started);
    finish(conn, Err(error), &ctx, true, false);
}

fn metrics_reply(shared: &Shared, mut reply: Reply) -> Reply {
    reply.body = metrics::get().render(
        shared.open.load(Ordering::SeqCst),
        shared.handling.load(Ordering::SeqCst),
    );
    reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
    reply
}

/// Writes the reply for `result`, logs the request, and says whether the connection goes on.
fn finish(
    conn: &mut Conn<TcpStream>,
    result: Result<Outcome, HookError>,
    ctx: &Done<'_>,
    close: bool,
    head_only: bool,
) -> bool {
    let (status, body) = error::reply(&result);
    let delivery = ctx.delivery.clone().unwrap_or_else(new_request_id);
    let reply = Reply {
        status,
        body,
        allow_post: status == 405,
        request_id: Some(delivery.clone()),
        close,
        ..Reply::default()
    };
    // Counted before the reply goes out, so a scrape that follows an answer includes it.
    metrics::get().request(ctx.endpoint.map(|e| e.source), request_outcome(&result));
    let written = write_reply(conn, &reply, head_only).is_ok();
    log_request(&result, status, ctx, &delivery);
    written && !close
}

/// The `outcome` label of the requests counter.
fn request_outcome(result: &Result<Outcome, HookError>) -> RequestOutcome {
    match result {
        Ok(Outcome::Notify(_)) => RequestOutcome::Notified,
        Ok(Outcome::Ignored(_)) => RequestOutcome::Ignored,
        Ok(Outcome::Pong) => RequestOutcome::Pong,
        Err(HookError::NotFound) => RequestOutcome::NotFound,
        Err(HookError::Unauthorized(_)) => RequestOutcome::Unauthorized,
        Err(HookError::BadRequest(_) | HookError::MethodNotAllowed) => RequestOutcome::BadRequest,
        Err(HookError::PayloadTooLarge | HookError::HeadTooLarge) => RequestOutcome::TooLarge,
        Err(HookError::RequestTimeout) => RequestOutcome::Timeout,
        Err(HookError::Overloaded(_) | HookError::Fluxd { .. } | HookError::Panic) => {
            RequestOutcome::Error
        }
    }
}

/// An id for a request whose sender gave none: 16 hex digits, random per process and request.
fn new_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish())
}

fn log_request(result: &Result<Outcome, HookError>, status: u16, ctx: &Done<'_>, delivery: &str) {
    let elapsed_ms = format!("{:.1}", ctx.started.elapsed().as_secs_f64() * 1000.0);
    let (outcome, changes, detail) = match result {
        Ok(Outcome::Notify(changes)) => ("notified", changes.len(), String::new()),
        Ok(Outcome::Pong) => ("pong", 0, String::new()),
        Ok(Outcome::Ignored(reason)) => ("ignored", 0, reason.clone()),
        Err(error @ HookError::Fluxd { of, .. }) => (error.outcome(), *of, error.to_string()),
        Err(error) => (error.outcome(), 0, error.to_string()),
    };
    let source = ctx.endpoint.map_or("-", |e| e.source.name());
    let hook = ctx
        .endpoint
        .map_or_else(|| loggable_path(ctx.path), |e| e.digest_prefix());
    let fields: [(&str, &dyn std::fmt::Display); 8] = [
        ("source", &source),
        ("hook", &hook),
        ("delivery", &delivery),
        ("outcome", &outcome),
        ("status", &status),
        ("changes", &changes),
        ("elapsed_ms", &elapsed_ms),
        ("detail", &detail),
    ];
    let fields = if detail.is_empty() {
        &fields[..7]
    } else {
        &fields[..]
    };
    match status {
        200..=399 => log::info("request", fields),
        400..=499 => log::warn("request", fields),
        _ => log::error("request", fields),
    }
}

/// A path as it may appear in a log: hook paths are cut to their first 8 hex digits, since a
/// full route is a secret for URL-only sources.
fn loggable_path(path: &str) -> String {
    match path.strip_prefix("/hook/") {
        Some(rest) => format!("/hook/{}", sources::printable(&rest[..rest.len().min(8)])),
        None => sources::printable(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Key;
    use crate::sources::Source;
    use std::io::Read;

    /// Only in unit-test builds: a request with this header makes its handler panic.
    pub(super) const PANIC_HEADER: &str = "X-Flux-Recv-Test-Panic";

    fn ask(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    }

    #[test]
    fn a_handler_panic_is_a_500_and_the_pool_serves_on() {
        let endpoint = Endpoint::new(
            0,
            Source::DockerHub,
            Key::new(b"panic-test-key-0123456789".to_vec()),
            "k".into(),
            None,
        );
        let route = endpoint.route();
        let config = Config {
            api: "http://127.0.0.1:9/api/flux".into(),
            endpoints: vec![Arc::new(endpoint)],
        };
        let opts = Options {
            listen: "127.0.0.1:0".into(),
            threads: 1,
            notify_timeout: Duration::from_millis(300),
            ..Options::default()
        };
        let server = Server::bind(&config, opts).unwrap().spawn();
        let panic_request = format!(
            "POST {route} HTTP/1.1\r\nHost: x\r\n{PANIC_HEADER}: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        // Twice with one handler thread: the second panic proves the first did not kill it.
        for _ in 0..2 {
            let reply = ask(server.addr(), &panic_request);
            assert!(reply.starts_with("HTTP/1.1 500 "), "{reply}");
            assert!(reply.ends_with("Internal server error"), "{reply}");
        }
        // And a normal delivery still reaches a handler (fluxd is down here: 502, not a hang).
        let body = r#"{"repository":{"repo_name":"a/b"}}"#;
        let normal = format!(
            "POST {route} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let reply = ask(server.addr(), &normal);
        assert!(reply.starts_with("HTTP/1.1 502 "), "{reply}");
        server.stop();
    }
}
