//! Request bodies: `Content-Length` or `chunked`, bounded by `--max-body-bytes` and by one memory
//! budget shared by all connections, read within the request's deadline.

use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::conn::{Conn, DeadlineReader, ReadError, Transport};
use super::http::{Framing, MAX_HEAD_BYTES};
use super::Refusal;

/// A chunk-size line longer than this (extensions included) is refused (→ 400).
const MAX_CHUNK_LINE: usize = 1024;
/// Body buffers start this small and double, so a client that declares a large body but sends
/// nothing holds almost no memory.
pub(crate) const BODY_FIRST_ALLOCATION: usize = 64 * 1024;
/// Bodies up to this size (nearly every webhook) are read without touching the shared budget:
/// a per-connection constant. A larger body takes its whole size from the budget at once (its
/// `Content-Length`, or the cap when chunked), so no request ever waits for the budget while
/// holding part of it, and bodies cannot deadlock each other.
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
    reservation: Reservation,
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

    /// The bytes, and the budget they hold (to keep until the handler is done with them).
    pub(crate) fn into_parts(self) -> (Vec<u8>, Reservation) {
        (self.data, self.reservation)
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
        if target > BODY_ALLOWANCE && self.reservation.bytes == 0 {
            let whole = self.whole.max(target);
            if !self.reservation.grow(whole, deadline) {
                return Err(ReadError::Refused(Refusal::NoBudget));
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
    let bad = |why: &str| ReadError::Refused(Refusal::BadRequest(why.to_owned()));
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
