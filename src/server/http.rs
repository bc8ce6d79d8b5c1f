//! HTTP/1.1 request framing: the head (parsed by `httparse`, bounded in size and header count),
//! the body (`Content-Length` or `chunked`, never both, bounded by `--max-body-bytes` and a shared
//! memory budget), everything within one deadline, and the replies. No routing, no providers.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::HookError;
use crate::sources;

/// A request head larger than this is an attack, not a webhook (→ 431).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// More headers than this is an attack, not a webhook (→ 431).
pub const MAX_HEADERS: usize = 64;
/// A chunk-size line longer than this (extensions included) is refused (→ 400).
const MAX_CHUNK_LINE: usize = 1024;
/// Body buffers start this small and double, so a client that declares a large body but sends
/// nothing holds almost no memory.
const BODY_FIRST_ALLOCATION: usize = 64 * 1024;
/// Bodies up to this size (nearly every webhook) are read without touching the shared budget:
/// a per-connection constant. A larger body takes its whole size from the budget at once (its
/// `Content-Length`, or the cap when chunked), so no request ever waits for the budget while
/// holding part of it, and bodies cannot deadlock each other.
pub(crate) const BODY_ALLOWANCE: u64 = 64 * 1024;

/// A request head, owned.
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor: u8,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        sources::header_in(&self.headers, name)
    }

    fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn connection_has(&self, token: &str) -> bool {
        self.headers_named("Connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub(crate) fn wants_keep_alive(&self) -> bool {
        if self.minor == 0 {
            self.connection_has("keep-alive")
        } else {
            !self.connection_has("close")
        }
    }

    pub(crate) fn expects_continue(&self) -> bool {
        self.header("Expect")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
}

impl Framing {
    pub(crate) fn has_body(self) -> bool {
        self != Framing::Length(0)
    }
}

/// One framing or 400: no request may be read two ways (no smuggling).
pub(crate) fn framing(head: &Head) -> Result<Framing, HookError> {
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

/// A byte stream with a read deadline: a socket, or memory in fuzzing and tests.
pub trait Transport: Read + Write {
    /// Makes the next read give up after `left`.
    fn set_read_deadline(&mut self, left: Duration) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn set_read_deadline(&mut self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))
    }
}

/// Request bytes in memory, handed out `step` bytes per read; replies are collected.
pub struct MemoryTransport {
    input: Vec<u8>,
    position: usize,
    step: usize,
    pub output: Vec<u8>,
}

impl MemoryTransport {
    pub fn new(input: &[u8], step: usize) -> MemoryTransport {
        MemoryTransport {
            input: input.to_vec(),
            position: 0,
            step: step.max(1),
            output: Vec::new(),
        }
    }
}

impl Read for MemoryTransport {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = (self.input.len() - self.position)
            .min(out.len())
            .min(self.step);
        out[..n].copy_from_slice(&self.input[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

impl Transport for MemoryTransport {
    fn set_read_deadline(&mut self, _left: Duration) -> io::Result<()> {
        Ok(())
    }
}

impl Write for MemoryTransport {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection as `io::Read` within a deadline, keeping the real error for the caller.
struct DeadlineReader<'a, T: Transport> {
    conn: &'a mut Conn<T>,
    deadline: Instant,
    error: Option<ReadError>,
}

impl<T: Transport> Read for DeadlineReader<'_, T> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        match self.conn.read_some(out, self.deadline) {
            Ok(n) => Ok(n),
            Err(ReadError::Closed) => Ok(0),
            Err(error) => {
                self.error = Some(error);
                Err(io::Error::other("read failed"))
            }
        }
    }
}

/// What went wrong while reading from the client.
pub(crate) enum ReadError {
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
pub(crate) struct Conn<T: Transport> {
    pub(crate) stream: T,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<T: Transport> Conn<T> {
    pub(crate) fn new(stream: T) -> Conn<T> {
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
            // A full buffer without what the caller looks for (the end of a head, a line):
            // waiting for more could never help, and returning nothing would spin.
            return Err(ReadError::Reply(HookError::HeadTooLarge));
        }
        let n = read_before(&mut self.stream, &mut self.buf[self.end..], deadline)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        self.end += n;
        Ok(n)
    }

    /// Waits for the first byte of the next request; `false` when the client closes or idles out.
    pub(crate) fn await_request(&mut self, deadline: Instant) -> bool {
        self.end > self.start || self.fill(deadline).is_ok()
    }

    /// Reads and parses one request head.
    pub(crate) fn read_head(&mut self, deadline: Instant) -> Result<Head, ReadError> {
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

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}

/// `read` with the socket's timeout set to what is left before `deadline`.
fn read_before<T: Transport>(
    stream: &mut T,
    out: &mut [u8],
    deadline: Instant,
) -> Result<usize, ReadError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ReadError::TimedOut);
    }
    stream.set_read_deadline(left).map_err(|_| ReadError::Io)?;
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
pub(crate) struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
    cap: u64,
}

impl Budget {
    pub(crate) fn new(cap: u64) -> Budget {
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
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Reservation {
    pub(crate) fn grow(&mut self, n: u64, deadline: Instant) -> bool {
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
pub(crate) struct BodyBuf {
    pub(crate) data: Vec<u8>,
    pub(crate) reservation: Reservation,
    /// Largest body accepted; one byte more means 413.
    cap: u64,
    /// What to take from the budget once past [`BODY_ALLOWANCE`]: the declared length, or the cap.
    whole: u64,
}

impl BodyBuf {
    pub(crate) fn new(budget: &Arc<Budget>, cap: u64) -> BodyBuf {
        BodyBuf {
            data: Vec::new(),
            reservation: Reservation {
                budget: Arc::clone(budget),
                bytes: 0,
            },
            cap,
            whole: cap,
        }
    }

    /// Reads exactly `n` more bytes into the body.
    fn read_exact(
        &mut self,
        conn: &mut Conn<impl Transport>,
        n: u64,
        deadline: Instant,
    ) -> Result<(), ReadError> {
        let target = self.data.len() as u64 + n;
        if target > self.cap {
            return Err(ReadError::Reply(HookError::PayloadTooLarge));
        }
        if target > BODY_ALLOWANCE && self.reservation.bytes == 0 {
            let whole = self.whole.max(target);
            if !self.reservation.grow(whole, deadline) {
                return Err(ReadError::Reply(HookError::Overloaded(
                    "no memory budget for the body in time",
                )));
            }
        }
        let target = target as usize;
        if self.reservation.bytes >= self.whole && self.data.capacity() < target {
            // The whole declared body is paid for: one allocation, no copies while it grows.
            // Pages are only touched as bytes arrive.
            self.data
                .reserve_exact(self.whole as usize - self.data.len());
        }
        while self.data.len() < target {
            if self.data.len() == self.data.capacity() {
                let capacity = self.data.capacity();
                let new_capacity = (capacity * 2).max(BODY_FIRST_ALLOCATION).min(target);
                self.data.reserve_exact(new_capacity - self.data.len());
            }
            // Fill the spare capacity straight from the connection: std's `read_to_end` reads
            // into it without zeroing it first (zeroing was 6 % of a push's CPU time).
            let before = self.data.len();
            let limit = (self.data.capacity() - before).min(target - before);
            let mut reader = DeadlineReader {
                conn: &mut *conn,
                deadline,
                error: None,
            };
            let read = (&mut reader).take(limit as u64).read_to_end(&mut self.data);
            if let Err(_) | Ok(0) = read {
                return Err(reader.error.take().unwrap_or(ReadError::Closed));
            }
            if self.data.len() < before + limit {
                // `read_to_end` stopped short of the limit: the client closed.
                return Err(ReadError::Closed);
            }
        }
        Ok(())
    }
}

pub(crate) fn read_body(
    conn: &mut Conn<impl Transport>,
    framing: Framing,
    body: &mut BodyBuf,
    deadline: Instant,
) -> Result<(), ReadError> {
    if let Framing::Length(n) = framing {
        body.whole = n;
    }
    match framing {
        Framing::Length(n) => body.read_exact(conn, n, deadline),
        Framing::Chunked => read_chunked(conn, body, deadline),
    }
}

pub(crate) fn read_chunked(
    conn: &mut Conn<impl Transport>,
    body: &mut BodyBuf,
    deadline: Instant,
) -> Result<(), ReadError> {
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
        // The CRLF after the data: allow its `\r` to arrive before its `\n`.
        if !conn.read_line(2, deadline)?.is_empty() {
            return Err(bad("chunk data longer than its size"));
        }
    }
}

/// A reply to write.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) content_type: &'static str,
    pub(crate) allow_post: bool,
    pub(crate) request_id: Option<String>,
    pub(crate) close: bool,
}

impl Default for Reply {
    fn default() -> Reply {
        Reply {
            status: 200,
            body: String::new(),
            content_type: "text/plain; charset=utf-8",
            allow_post: false,
            request_id: None,
            close: false,
        }
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
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

pub(crate) fn write_reply(
    conn: &mut Conn<impl Transport>,
    reply: &Reply,
    head_only: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    );
    if reply.allow_post {
        out.push_str("Allow: POST\r\n");
    }
    if let Some(id) = &reply.request_id {
        out.push_str("X-Request-Id: ");
        out.push_str(id);
        out.push_str("\r\n");
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

/// One request framed from bytes, as the server would read it off a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Frames the first request in `bytes` (handed over `step` bytes at a time) with the server's
/// own code: head, framing rules, body. Used by the fuzz targets and their replay tests.
pub fn frame_request(bytes: &[u8], step: usize, max_body: u64) -> Result<Framed, HookError> {
    let far = Instant::now() + Duration::from_secs(3600);
    let mut conn = Conn::new(MemoryTransport::new(bytes, step));
    let head = match conn.read_head(far) {
        Ok(head) => head,
        Err(ReadError::Reply(error)) => return Err(error),
        Err(_) => return Err(HookError::BadRequest("closed before a full head".into())),
    };
    let framing = framing(&head)?;
    if let Framing::Length(n) = framing {
        if n > max_body {
            return Err(HookError::PayloadTooLarge);
        }
    }
    let budget = Arc::new(Budget::new(
        max_body.saturating_add(BODY_FIRST_ALLOCATION as u64),
    ));
    let mut body = BodyBuf::new(&budget, max_body);
    match read_body(&mut conn, framing, &mut body, far) {
        Ok(()) => {}
        Err(ReadError::Reply(error)) => return Err(error),
        Err(_) => return Err(HookError::BadRequest("closed before the whole body".into())),
    }
    Ok(Framed {
        method: head.method.clone(),
        path: head.path().to_owned(),
        headers: head.headers.clone(),
        body: std::mem::take(&mut body.data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However the bytes are split into reads, a request frames the same way.
    #[test]
    fn framing_does_not_depend_on_how_reads_split_the_bytes() {
        let requests: [&[u8]; 4] = [
            b"POST /hook/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: v\r\n\r\n",
            b"POST /hook/x HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /hook/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ];
        for request in requests {
            let whole = frame_request(request, request.len(), 1024).expect("frames whole");
            for step in 1..=request.len() {
                assert_eq!(
                    frame_request(request, step, 1024).as_ref().ok(),
                    Some(&whole),
                    "step {step} of {:?}",
                    String::from_utf8_lossy(request)
                );
            }
        }
    }
}
