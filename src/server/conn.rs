//! One connection's bytes: a buffered reader with deadlines (a socket, or memory for fuzzing),
//! from which heads are parsed by `httparse` (bounded in size and header count) and bodies and
//! chunk lines are read.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::http::{Head, MAX_HEADERS, MAX_HEAD_BYTES};
use super::{Listener, Refusal};

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
            return Err(ReadError::Refused(Refusal::HeadTooLarge));
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
        match read_before(&mut self.stream, out, deadline)? {
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
        loop {
            if let Some(pos) = self.buffered().iter().position(|b| *b == b'\n') {
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
