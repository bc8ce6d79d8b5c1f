//! Request bodies: `Content-Length` or `chunked`, bounded by `--max-body-bytes` and by one memory
//! budget shared by all connections, read within the request's deadline.

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::http::{Framing, MAX_HEAD_BYTES};
use super::stream::{Conn, DeadlineReader, ReadError, Transport};
use super::Refusal;

/// A chunk-size line longer than this (extensions included) is refused (→ 400).
const MAX_CHUNK_LINE: usize = 1024;
/// Body buffers start this small and double, so a client that declares a large body but sends
/// nothing holds almost no memory.
pub(crate) const BODY_FIRST_ALLOCATION: usize = 64 * 1024;
/// Bodies up to this size (nearly every webhook) are read without touching the shared budget:
/// a per-connection constant. Past it, the buffer takes from the budget what it grows by, as
/// the bytes arrive: a client that declares 25 MiB and stalls holds what it sent, not what it
/// declared, so stalled uploads cannot starve a genuine delivery of the budget.
pub(crate) const BODY_ALLOWANCE: u64 = 64 * 1024;

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
    data: Vec<u8>,
    /// What the buffer holds past [`BODY_ALLOWANCE`], taken from the budget.
    reservation: Reservation,
    /// Largest body accepted; one byte more means 413.
    cap: u64,
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
        }
    }

    /// The bytes, and the budget they hold (to keep until the handler is done with them).
    pub(crate) fn into_parts(self) -> (Vec<u8>, Reservation) {
        (self.data, self.reservation)
    }

    /// Grows the buffer for `target` bytes: doubling (at most to `target`), each growth past
    /// [`BODY_ALLOWANCE`] first paid for from the budget, waiting for it until `deadline`.
    fn grow(&mut self, target: usize, deadline: Instant) -> Result<(), ReadError> {
        let capacity = self.data.capacity();
        let new_capacity = (capacity * 2).max(BODY_FIRST_ALLOCATION).min(target);
        let owed = (new_capacity as u64).saturating_sub(BODY_ALLOWANCE);
        if owed > self.reservation.bytes
            && !self
                .reservation
                .grow(owed - self.reservation.bytes, deadline)
        {
            return Err(ReadError::Refused(Refusal::NoBudget));
        }
        self.data.reserve_exact(new_capacity - self.data.len());
        Ok(())
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
            return Err(ReadError::Refused(Refusal::TooLarge));
        }
        let target = target as usize;
        while self.data.len() < target {
            if self.data.len() == self.data.capacity() {
                self.grow(target, deadline)?;
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
    let bad = |why: &str| ReadError::Refused(Refusal::BadRequest(why.to_owned()));
    loop {
        let line = conn.read_line(MAX_CHUNK_LINE, deadline)?;
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let rest = &line[digits..];
        let rest_ok = rest.is_empty() || rest.trim_ascii_start().first() == Some(&b';');
        if digits == 0 || digits > 15 || !rest_ok {
            return Err(bad("malformed chunk size"));
        }
        // A front proxy may read control bytes in an extension differently: none is allowed.
        if rest.iter().any(|&b| is_ctl(b)) {
            return Err(bad("control character in a chunk extension"));
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
                if !is_header_field(&trailer) {
                    return Err(bad("a trailer line is not a header field"));
                }
                trailer_bytes += trailer.len();
                if trailer_bytes > MAX_HEAD_BYTES {
                    return Err(ReadError::Refused(Refusal::HeadTooLarge));
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

/// A control byte (HTAB excepted), as RFC 9110 defines CTL.
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// `name: value` as RFC 9110 defines a field line: a token, a colon, a value of visible
/// characters, spaces and tabs (obs-text allowed), no control byte.
fn is_header_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    !name.is_empty() && name.iter().all(tchar) && !value.iter().any(|&b| is_ctl(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::stream::MemoryTransport;
    use std::time::Duration;

    fn chunked(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut conn = Conn::new(MemoryTransport::new(bytes, bytes.len()));
        let mut body = BodyBuf::new(&Arc::new(Budget::new(1 << 20)), 1 << 20);
        let deadline = Instant::now() + Duration::from_secs(5);
        match read_chunked(&mut conn, &mut body, deadline) {
            Ok(()) => Ok(body.into_parts().0),
            Err(ReadError::Refused(Refusal::BadRequest(why))) => Err(why),
            Err(_) => Err("other".into()),
        }
    }

    #[test]
    fn chunk_extensions_and_trailers_are_held_to_the_grammar() {
        assert_eq!(chunked(b"5;a=b\r\nhello\r\n0\r\n\r\n").unwrap(), b"hello");
        assert_eq!(
            chunked(b"5 ; a=\"x y\"\r\nhello\r\n0\r\nX-T: v\tw\r\n\r\n").unwrap(),
            b"hello"
        );
        for bad in [
            &b"5;a\rb\r\nhello\r\n0\r\n\r\n"[..],
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
            b"5;\x7f\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\x00\x01GET / HTTP/1.1\r\n\r\n",
            b"5\r\nhello\r\n0\r\nno colon here\r\n\r\n",
            b"5\r\nhello\r\n0\r\nBad Name: v\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX: a\x01b\r\n\r\n",
        ] {
            assert!(chunked(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// A body past the allowance holds from the budget what has arrived, not what was
    /// declared: a declared 25 MiB that stalls after 70 KB holds 64 KiB of it.
    #[test]
    fn the_budget_follows_the_bytes_that_arrived() {
        let budget = Arc::new(Budget::new(10 << 20));
        let sent = vec![b'x'; 70_000];
        let mut conn = Conn::new(MemoryTransport::new(&sent, 4096));
        let mut body = BodyBuf::new(&budget, 25 << 20);
        let deadline = Instant::now() + Duration::from_secs(5);
        let stalled = body.read_exact(&mut conn, 25 << 20, deadline);
        assert!(matches!(stalled, Err(ReadError::Closed)));
        let held = *budget.used.lock().unwrap();
        assert_eq!(held, 64 * 1024, "held {held}");
        drop(body);
        assert_eq!(*budget.used.lock().unwrap(), 0);
    }
}
