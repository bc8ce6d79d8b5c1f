//! One connection's bytes: a buffered reader with deadlines (a socket, or memory for fuzzing),
//! from which heads are parsed by `httparse` (bounded in size and header count) and bodies and
//! chunk lines are read.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{Head, MAX_HEADERS, MAX_HEAD_BYTES};
use super::{Listener, Refusal};

/// A byte stream with a read deadline: a socket, or memory in fuzzing and tests.
pub trait Transport: Read + Write {
    /// Makes the next read give up after `left`.
    fn set_read_deadline(&mut self, left: Duration) -> io::Result<()>;
}

/// A connection's socket, shared with the registry of connections (`clients.rs`), which may
/// shut it down to give its slot to a newcomer: one descriptor, not a duplicate.
pub(crate) struct Socket(pub(crate) Arc<TcpStream>);

impl Read for Socket {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(out)
    }
}

impl Write for Socket {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        (&*self.0).write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

impl Transport for Socket {
    fn set_read_deadline(&mut self, left: Duration) -> io::Result<()> {
        self.0.set_read_timeout(Some(left))
    }
}

/// What a connection reads and writes: its socket, or TLS over it. The connection code is the
/// same for both.
pub(crate) enum Stream {
    Plain(Socket),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, Socket>>),
}

impl Stream {
    pub(crate) fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(socket) => &socket.0,
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => &tls.sock.0,
        }
    }

    /// Ends the sending side: TLS's close_notify first, then the socket's FIN.
    pub(crate) fn close(&mut self) {
        #[cfg(feature = "tls")]
        if let Stream::Tls(tls) = self {
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
        }
        let _ = self.socket().shutdown(std::net::Shutdown::Write);
    }
}

impl Read for Stream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.read(out),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.read(out),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => socket.write(bytes),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(socket) => socket.flush(),
            #[cfg(feature = "tls")]
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

impl Transport for Stream {
    fn set_read_deadline(&mut self, left: Duration) -> io::Result<()> {
        self.socket().set_read_timeout(Some(left))
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
pub(crate) struct DeadlineReader<'a, T: Transport> {
    pub(crate) conn: &'a mut Conn<T>,
    pub(crate) deadline: Instant,
    pub(crate) error: Option<ReadError>,
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
    Refused(Refusal),
    /// The socket failed (reset, …): nothing more can be said to the client.
    Io,
}

/// Whether `bytes` hold the empty line that ends a head (`\n\n` or `\n\r\n`: `httparse` takes
/// bare LF line ends too).
fn ends_head(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, pair)| match pair {
        [b'\n', b'\n'] => true,
        [b'\n', b'\r'] => bytes.get(i + 2) == Some(&b'\n'),
        _ => false,
    })
}

/// A connection with its read buffer (head bytes and any pipelined bytes after them).
pub(crate) struct Conn<T: Transport> {
    pub(crate) stream: T,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The read timeout set on the stream, if any (see [`read_before`]).
    armed: Option<Duration>,
}

impl<T: Transport> Conn<T> {
    pub(crate) fn new(stream: T) -> Conn<T> {
        Conn {
            stream,
            buf: vec![0u8; MAX_HEAD_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            armed: None,
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
            return Err(ReadError::Refused(Refusal::HeadTooLarge));
        }
        let n = read_before(
            &mut self.stream,
            &mut self.armed,
            &mut self.buf[self.end..],
            deadline,
        )?;
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

    /// Reads and parses one request head. A dripped head costs linear time: each read is searched
    /// for the end of the head only in its new bytes, and `httparse` runs when the end has come,
    /// when the head has doubled since it last ran (so that garbage is refused early), when the
    /// buffer is full, and when the client stops sending.
    pub(crate) fn read_head(
        &mut self,
        deadline: Instant,
        listener: Listener,
        started: Instant,
    ) -> Result<Head, ReadError> {
        let (mut scanned, mut parsed) = (0usize, 0usize);
        loop {
            let len = self.buffered().len();
            let ended = ends_head(&self.buffered()[scanned.saturating_sub(2)..]);
            if ended || len >= 2 * parsed || len >= MAX_HEAD_BYTES {
                parsed = len;
                if let Some(head) = self.parse_head(listener, started)? {
                    return Ok(head);
                }
                if len >= MAX_HEAD_BYTES {
                    return Err(ReadError::Refused(Refusal::HeadTooLarge));
                }
            }
            scanned = len;
            if let Err(error) = self.fill(deadline) {
                // What came since the last parse may be a whole or a malformed head.
                if parsed < self.buffered().len() {
                    if let Some(head) = self.parse_head(listener, started)? {
                        return Ok(head);
                    }
                }
                return Err(error);
            }
        }
    }

    /// Parses the buffered bytes as a head: the head (its bytes consumed), `None` if incomplete.
    fn parse_head(
        &mut self,
        listener: Listener,
        started: Instant,
    ) -> Result<Option<Head>, ReadError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&self.buf[self.start..self.end]) {
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
                    listener,
                    started,
                    client: None,
                };
                self.start += len;
                Ok(Some(head))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => Err(ReadError::Refused(Refusal::HeadTooLarge)),
            Err(e) => Err(ReadError::Refused(Refusal::BadRequest(format!(
                "malformed request head: {e}"
            )))),
        }
    }

    /// Copies up to `out.len()` bytes, buffered ones first, then from the socket.
    pub(crate) fn read_some(
        &mut self,
        out: &mut [u8],
        deadline: Instant,
    ) -> Result<usize, ReadError> {
        let buffered = self.buffered();
        if !buffered.is_empty() {
            let n = buffered.len().min(out.len());
            out[..n].copy_from_slice(&buffered[..n]);
            self.start += n;
            return Ok(n);
        }
        match read_before(&mut self.stream, &mut self.armed, out, deadline)? {
            0 => Err(ReadError::Closed),
            n => Ok(n),
        }
    }

    /// One CRLF-terminated line (without the CRLF), at most `limit` bytes.
    pub(crate) fn read_line(
        &mut self,
        limit: usize,
        deadline: Instant,
    ) -> Result<Vec<u8>, ReadError> {
        // Only bytes not searched yet are searched: a line dripped a byte at a time costs
        // linear time, not quadratic.
        let mut scanned = 0;
        loop {
            let found = self.buffered()[scanned..].iter().position(|b| *b == b'\n');
            if let Some(pos) = found.map(|p| scanned + p) {
                let line = &self.buffered()[..pos];
                let Some(line) = line.strip_suffix(b"\r") else {
                    return Err(ReadError::Refused(Refusal::BadRequest(
                        "chunked body line not ended by CRLF".into(),
                    )));
                };
                let line = line.to_vec();
                self.start += pos + 1;
                return Ok(line);
            }
            if self.end - self.start > limit {
                return Err(ReadError::Refused(Refusal::BadRequest(
                    "chunked body line too long".into(),
                )));
            }
            scanned = self.end - self.start;
            self.fill(deadline)?;
        }
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}

/// How far past its deadline a read may block: the socket's timeout is set again only when the
/// one already set would overshoot by more (or is under half of what is left), so a request
/// whose bytes come within this time costs one `setsockopt` at most, not one per read.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

/// `read` that gives up at `deadline` (within [`DEADLINE_SLACK`]). A timeout that fires before
/// the deadline (one set for a shorter wait) sets the timeout again and reads on.
fn read_before<T: Transport>(
    stream: &mut T,
    armed: &mut Option<Duration>,
    out: &mut [u8],
    deadline: Instant,
) -> Result<usize, ReadError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::TimedOut);
        }
        let fits = armed.is_some_and(|set| set <= left + DEADLINE_SLACK && set >= left / 2);
        if !fits {
            stream.set_read_deadline(left).map_err(|_| ReadError::Io)?;
            *armed = Some(left);
        }
        match stream.read(out) {
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return Err(ReadError::Io),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes handed out one per read, with a timeout that fires before each of them once the
    /// script says so; counts how often the timeout is set.
    struct Dripping {
        bytes: Vec<u8>,
        sent: usize,
        early_timeouts: usize,
        sets: Vec<Duration>,
    }

    impl Read for Dripping {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.early_timeouts > 0 {
                self.early_timeouts -= 1;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let Some(byte) = self.bytes.get(self.sent) else {
                return Ok(0);
            };
            out[0] = *byte;
            self.sent += 1;
            Ok(1)
        }
    }

    impl Write for Dripping {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Transport for Dripping {
        fn set_read_deadline(&mut self, left: Duration) -> io::Result<()> {
            self.sets.push(left);
            Ok(())
        }
    }

    fn conn(bytes: &[u8], early_timeouts: usize) -> Conn<Dripping> {
        Conn::new(Dripping {
            bytes: bytes.to_vec(),
            sent: 0,
            early_timeouts,
            sets: Vec::new(),
        })
    }

    #[test]
    fn a_request_read_byte_by_byte_sets_the_timeout_once() {
        let request = b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n";
        let mut bytes = request.to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 2000));
        let mut conn = conn(&bytes, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let head = conn.read_head(deadline, Listener::Main, Instant::now());
        assert!(head.is_ok_and(|h| h.target == "/hook"));
        let mut body = [0u8; 2000];
        let mut got = 0;
        while got < body.len() {
            match conn.read_some(&mut body[got..], deadline) {
                Ok(n) => got += n,
                Err(_) => panic!("the body ended after {got} bytes"),
            }
        }
        assert_eq!(conn.stream.sent, bytes.len());
        assert_eq!(conn.stream.sets.len(), 1, "{:?}", conn.stream.sets);
    }

    #[test]
    fn the_timeout_is_set_again_for_a_much_later_or_earlier_deadline() {
        let mut conn = conn(b"abc", 0);
        let mut byte = [0u8; 1];
        let now = Instant::now();
        for (deadline, sets) in [
            (now + Duration::from_secs(5), 1),
            // Later but within twice the timeout already set: kept.
            (now + Duration::from_secs(9), 1),
            // Earlier: the timeout set would overshoot it.
            (now + Duration::from_secs(1), 2),
        ] {
            assert!(conn.read_some(&mut byte, deadline).is_ok());
            assert_eq!(conn.stream.sets.len(), sets);
        }
    }

    #[test]
    fn a_timeout_before_the_deadline_reads_on_and_a_passed_deadline_is_timed_out() {
        let mut conn = conn(b"a", 3);
        let mut byte = [0u8; 1];
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(conn.read_some(&mut byte, deadline), Ok(1)));
        assert_eq!(&byte, b"a");
        let passed = Instant::now() - Duration::from_millis(1);
        assert!(matches!(
            conn.read_some(&mut byte, passed),
            Err(ReadError::TimedOut)
        ));
    }
}
