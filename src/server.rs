//! The HTTP/1.1 layer: an acceptor that never stops, one small thread per connection (capped,
//! with deadlines) that reads and frames requests, and a fixed pool of handlers that run
//! verify → parse → notify. Slow clients hold only their own connection thread, never a handler.
//!
//! Every limit is a named constant or an [`Options`] field with its reason beside it. The request
//! head is parsed by `httparse`; body framing (`Content-Length` or `chunked`, never both) is here.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::{Config, Endpoint, Routes};
use crate::error::{self, HookError};
use crate::fluxd::Fluxd;
use crate::log;
use crate::sources::{self, Incoming, Outcome};

/// A request head larger than this is an attack, not a webhook (→ 431).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// More headers than this is an attack, not a webhook (→ 431).
pub const MAX_HEADERS: usize = 64;
/// How long an idle keep-alive connection is kept open between requests.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);
/// A chunk-size line longer than this (extensions included) is refused (→ 400).
const MAX_CHUNK_LINE: usize = 1024;
/// Connection threads only frame requests; they need little stack.
const CONNECTION_STACK_BYTES: usize = 128 * 1024;
/// Body buffers start this small and double, so a client that declares a large body but sends
/// nothing holds almost no memory.
const BODY_FIRST_ALLOCATION: usize = 64 * 1024;
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

struct Shared {
    routes: Routes,
    fluxd: Fluxd,
    opts: Options,
    open: AtomicUsize,
    stopping: AtomicBool,
    jobs: mpsc::Sender<Job>,
    budget: Arc<Budget>,
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
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
        let addrs = listen_addrs(&opts.listen)?;
        let mut last_error = None;
        let listener = addrs.iter().find_map(|addr| match TcpListener::bind(addr) {
            Ok(l) => Some(l),
            Err(e) => {
                last_error = Some(format!("--listen {}: cannot bind {addr}: {e}", opts.listen));
                None
            }
        });
        let listener = listener.ok_or_else(|| last_error.unwrap_or_default())?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            routes: Routes::new(config),
            fluxd: Fluxd::new(&config.api, opts.notify_timeout),
            budget: Arc::new(Budget::new(opts.body_budget())),
            opts,
            open: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            jobs: tx,
        });
        Ok(Server {
            listener,
            shared,
            jobs: rx,
        })
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
                .spawn(move || handler_loop(&shared, &jobs));
            if let Err(e) = spawned {
                log::error("cannot start handler thread", &[("error", &e)]);
            }
        }
        accept_loop(&self.listener, &self.shared);
    }
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting; connections in progress finish on their own threads.
    pub fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor, blocked in accept(), with a connection of our own.
        let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
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

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
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
                serve_connection(stream, &conn_shared);
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
    reply: mpsc::SyncSender<Result<Outcome, HookError>>,
    /// Held until the handler is done with the body.
    _body: Reservation,
}

fn handler_loop(shared: &Shared, jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = {
            let receiver = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            process(shared, &job.endpoint, &job.incoming)
        }))
        .unwrap_or(Err(HookError::Panic));
        let _ = job.reply.send(result);
    }
}

/// verify → parse → notify, for one request.
fn process(
    shared: &Shared,
    endpoint: &Endpoint,
    incoming: &Incoming,
) -> Result<Outcome, HookError> {
    let outcome = endpoint.source.handle(incoming, endpoint)?;
    if let Outcome::Notify(changes) = &outcome {
        shared
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

/// A request head, owned.
struct Head {
    method: String,
    target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    minor: u8,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        sources::header_in(&self.headers, name)
    }

    fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn connection_has(&self, token: &str) -> bool {
        self.headers_named("Connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn wants_keep_alive(&self) -> bool {
        if self.minor == 0 {
            self.connection_has("keep-alive")
        } else {
            !self.connection_has("close")
        }
    }

    fn expects_continue(&self) -> bool {
        self.header("Expect")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

impl Framing {
    fn has_body(self) -> bool {
        self != Framing::Length(0)
    }
}

/// One framing or 400: no request may be read two ways (no smuggling).
fn framing(head: &Head) -> Result<Framing, HookError> {
    let mut length: Option<u64> = None;
    for value in head.headers_named("Content-Length") {
        let value = value.trim();
        if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HookError::BadRequest(format!(
                "Content-Length {:?} is not a number",
                sources::printable(value)
            )));
        }
        let n: u64 = value
            .parse()
            .map_err(|_| HookError::BadRequest("Content-Length out of range".into()))?;
        if length.is_some_and(|l| l != n) {
            return Err(HookError::BadRequest(
                "two different Content-Length values".into(),
            ));
        }
        length = Some(n);
    }
    let mut encodings = head.headers_named("Transfer-Encoding");
    match (encodings.next(), length) {
        (None, length) => Ok(Framing::Length(length.unwrap_or(0))),
        (Some(_), Some(_)) => Err(HookError::BadRequest(
            "both Content-Length and Transfer-Encoding".into(),
        )),
        (Some(_), None) if head.minor == 0 => Err(HookError::BadRequest(
            "Transfer-Encoding in an HTTP/1.0 request".into(),
        )),
        (Some(value), None) => {
            if value.trim().eq_ignore_ascii_case("chunked") && encodings.next().is_none() {
                Ok(Framing::Chunked)
            } else {
                Err(HookError::BadRequest(format!(
                    "Transfer-Encoding {:?} is not just chunked",
                    sources::printable(value)
                )))
            }
        }
    }
}

/// What went wrong while reading from the client.
enum ReadError {
    /// The client closed the connection.
    Closed,
    /// The deadline passed.
    TimedOut,
    /// Anything the client should hear about (400, 413, 431, 503).
    Reply(HookError),
    /// The socket failed (reset, …): nothing more can be said to the client.
    Io,
}

/// A connection with its read buffer (head bytes and any pipelined bytes after them).
struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: vec![0u8; MAX_HEAD_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more bytes into the buffer, waiting at most until `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<usize, ReadError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(0);
        }
        let n = read_before(&mut self.stream, &mut self.buf[self.end..], deadline)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        self.end += n;
        Ok(n)
    }

    /// Waits for the first byte of the next request; `false` when the client closes or idles out.
    fn await_request(&mut self, deadline: Instant) -> bool {
        self.end > self.start || self.fill(deadline).is_ok()
    }

    /// Reads and parses one request head.
    fn read_head(&mut self, deadline: Instant) -> Result<Head, ReadError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(self.buffered()) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = Head {
                        method: request.method.unwrap_or("").to_owned(),
                        target: request.path.unwrap_or("").to_owned(),
                        minor: request.version.unwrap_or(1),
                        headers: request
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_owned(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                    };
                    self.start += len;
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {
                    if self.end - self.start >= MAX_HEAD_BYTES {
                        return Err(ReadError::Reply(HookError::HeadTooLarge));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(ReadError::Reply(HookError::HeadTooLarge))
                }
                Err(e) => {
                    return Err(ReadError::Reply(HookError::BadRequest(format!(
                        "malformed request head: {e}"
                    ))))
                }
            }
            self.fill(deadline)?;
        }
    }

    /// Copies up to `out.len()` bytes, buffered ones first, then from the socket.
    fn read_some(&mut self, out: &mut [u8], deadline: Instant) -> Result<usize, ReadError> {
        let buffered = self.buffered();
        if !buffered.is_empty() {
            let n = buffered.len().min(out.len());
            out[..n].copy_from_slice(&buffered[..n]);
            self.start += n;
            return Ok(n);
        }
        match read_before(&mut self.stream, out, deadline)? {
            0 => Err(ReadError::Closed),
            n => Ok(n),
        }
    }

    /// One CRLF-terminated line (without the CRLF), at most `limit` bytes.
    fn read_line(&mut self, limit: usize, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(pos) = self.buffered().iter().position(|b| *b == b'\n') {
                let line = &self.buffered()[..pos];
                let Some(line) = line.strip_suffix(b"\r") else {
                    return Err(ReadError::Reply(HookError::BadRequest(
                        "chunked body line not ended by CRLF".into(),
                    )));
                };
                let line = line.to_vec();
                self.start += pos + 1;
                return Ok(line);
            }
            if self.end - self.start > limit {
                return Err(ReadError::Reply(HookError::BadRequest(
                    "chunked body line too long".into(),
                )));
            }
            self.fill(deadline)?;
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}

/// `read` with the socket's timeout set to what is left before `deadline`.
fn read_before(
    stream: &mut TcpStream,
    out: &mut [u8],
    deadline: Instant,
) -> Result<usize, ReadError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ReadError::TimedOut);
    }
    stream
        .set_read_timeout(Some(left))
        .map_err(|_| ReadError::Io)?;
    loop {
        match stream.read(out) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::TimedOut)
            }
            Err(_) => return Err(ReadError::Io),
        }
    }
}

/// Bytes of request bodies held at once, across connections.
struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
    cap: u64,
}

impl Budget {
    fn new(cap: u64) -> Budget {
        Budget {
            used: Mutex::new(0),
            freed: Condvar::new(),
            cap,
        }
    }

    /// Takes `n` bytes, waiting for others to finish until `deadline`.
    fn take(&self, n: u64, deadline: Instant) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if used.saturating_add(n) <= self.cap {
                *used += n;
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            used = self
                .freed
                .wait_timeout(used, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn give_back(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }
}

/// Bytes taken from the [`Budget`]; given back when dropped.
struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Reservation {
    fn grow(&mut self, n: u64, deadline: Instant) -> bool {
        if self.budget.take(n, deadline) {
            self.bytes += n;
            true
        } else {
            false
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// A body being received: its bytes and the budget they hold.
struct BodyBuf {
    data: Vec<u8>,
    reservation: Reservation,
    /// Largest body accepted; one byte more means 413.
    cap: u64,
}

impl BodyBuf {
    fn new(budget: &Arc<Budget>, cap: u64) -> BodyBuf {
        BodyBuf {
            data: Vec::new(),
            reservation: Reservation {
                budget: Arc::clone(budget),
                bytes: 0,
            },
            cap,
        }
    }

    /// Reads exactly `n` more bytes into the body.
    fn read_exact(&mut self, conn: &mut Conn, n: u64, deadline: Instant) -> Result<(), ReadError> {
        let target = self.data.len() as u64 + n;
        if target > self.cap {
            return Err(ReadError::Reply(HookError::PayloadTooLarge));
        }
        let target = target as usize;
        while self.data.len() < target {
            if self.data.len() == self.data.capacity() {
                self.grow(target, deadline)?;
            }
            let len = self.data.len();
            let room = (self.data.capacity() - len).min(target - len);
            self.data.resize(len + room, 0);
            match conn.read_some(&mut self.data[len..], deadline) {
                Ok(got) => self.data.truncate(len + got),
                Err(e) => {
                    self.data.truncate(len);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Doubles the buffer (at least the first allocation, at most up to `target`), taking the
    /// extra bytes from the budget first.
    fn grow(&mut self, target: usize, deadline: Instant) -> Result<(), ReadError> {
        let capacity = self.data.capacity();
        let new_capacity = (capacity * 2).max(BODY_FIRST_ALLOCATION).min(target);
        let extra = (new_capacity - capacity) as u64;
        if !self.reservation.grow(extra, deadline) {
            return Err(ReadError::Reply(HookError::Overloaded(
                "no memory budget for the body in time",
            )));
        }
        self.data.reserve_exact(new_capacity - self.data.len());
        Ok(())
    }
}

fn read_body(
    conn: &mut Conn,
    framing: Framing,
    body: &mut BodyBuf,
    deadline: Instant,
) -> Result<(), ReadError> {
    match framing {
        Framing::Length(n) => body.read_exact(conn, n, deadline),
        Framing::Chunked => read_chunked(conn, body, deadline),
    }
}

fn read_chunked(conn: &mut Conn, body: &mut BodyBuf, deadline: Instant) -> Result<(), ReadError> {
    let bad = |why: &str| ReadError::Reply(HookError::BadRequest(why.to_owned()));
    loop {
        let line = conn.read_line(MAX_CHUNK_LINE, deadline)?;
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let rest = &line[digits..];
        let rest_ok = rest.is_empty() || rest.trim_ascii_start().first() == Some(&b';');
        if digits == 0 || digits > 15 || !rest_ok {
            return Err(bad("malformed chunk size"));
        }
        let size = line[..digits].iter().fold(0u64, |n, b| {
            n * 16 + u64::from((*b as char).to_digit(16).unwrap_or(0))
        });
        if size == 0 {
            // Trailers, bounded like a head, then the empty line.
            let mut trailer_bytes = 0;
            loop {
                let trailer = conn.read_line(MAX_HEAD_BYTES, deadline)?;
                if trailer.is_empty() {
                    return Ok(());
                }
                trailer_bytes += trailer.len();
                if trailer_bytes > MAX_HEAD_BYTES {
                    return Err(ReadError::Reply(HookError::HeadTooLarge));
                }
            }
        }
        body.read_exact(conn, size, deadline)?;
        if !conn.read_line(0, deadline)?.is_empty() {
            return Err(bad("chunk data longer than its size"));
        }
    }
}

/// A reply to write.
struct Reply {
    status: u16,
    body: String,
    allow_post: bool,
    close: bool,
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn write_reply(conn: &mut Conn, reply: &Reply, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len()
    );
    if reply.allow_post {
        out.push_str("Allow: POST\r\n");
    }
    if reply.close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&reply.body);
    }
    conn.write_all(out.as_bytes())
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
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
        let keep_going = serve_request(&mut conn, shared, started, deadline);
        if !keep_going || shared.stopping.load(Ordering::SeqCst) {
            let _ = conn.stream.shutdown(Shutdown::Write);
            return;
        }
    }
}

/// Serves one request; `true` when the connection may carry another.
fn serve_request(conn: &mut Conn, shared: &Shared, started: Instant, deadline: Instant) -> bool {
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
    if path == "/health" {
        let reply = Reply {
            status: 200,
            body: "OK".into(),
            allow_post: false,
            close: framing.has_body() || !keep_alive,
        };
        return write_reply(conn, &reply, head_only).is_ok() && !reply.close;
    }
    // Anything refused before its body is read closes the connection: the unread body
    // cannot be told apart from a next request.
    let unread_body_close = framing.has_body() || !keep_alive;
    let Some(endpoint) = shared.routes.lookup(&path) else {
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
    let ctx = Done::new(Some(&endpoint), delivery.as_deref(), &path, started);
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
        reply: tx,
        _body: reservation,
    };
    let result = match shared.jobs.send(job) {
        Ok(()) => rx.recv().unwrap_or(Err(HookError::Panic)),
        Err(_) => Err(HookError::Overloaded("handler pool stopped")),
    };
    finish(conn, result, &ctx, !keep_alive, false)
}

/// What the log line of a finished request says besides its result.
struct Done<'a> {
    endpoint: Option<&'a Endpoint>,
    delivery: Option<&'a str>,
    path: &'a str,
    started: Instant,
}

impl<'a> Done<'a> {
    fn new(
        endpoint: Option<&'a Endpoint>,
        delivery: Option<&'a str>,
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
fn finish_early(conn: &mut Conn, error: HookError, started: Instant) {
    let ctx = Done::new(None, None, "-", started);
    finish(conn, Err(error), &ctx, true, false);
}

/// Writes the reply for `result`, logs the request, and says whether the connection goes on.
fn finish(
    conn: &mut Conn,
    result: Result<Outcome, HookError>,
    ctx: &Done<'_>,
    close: bool,
    head_only: bool,
) -> bool {
    let (status, body) = error::reply(&result);
    let reply = Reply {
        status,
        body,
        allow_post: status == 405,
        close,
    };
    let written = write_reply(conn, &reply, head_only).is_ok();
    log_request(&result, status, ctx);
    written && !close
}

fn log_request(result: &Result<Outcome, HookError>, status: u16, ctx: &Done<'_>) {
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
    let delivery = ctx.delivery.unwrap_or("-");
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
