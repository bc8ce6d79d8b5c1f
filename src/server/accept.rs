//! The acceptors: one per listener, never stopped by an accept error, each connection on its own
//! small thread, and a fast 503 past `--max-connections`.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::http::{write_reply, After, Asked};
use super::{connection, Listener, Refusal, Shared};
use crate::log;

/// Connection threads frame requests and, when no other work runs, run a request's work (the
/// JSON parse, the notify call). 256 KiB was enough for a debug build parsing 5,000-deep JSON
/// for every source (`tests/junk.rs`); this is twice that. Only touched pages are resident.
const CONNECTION_STACK_BYTES: usize = 512 * 1024;
/// Upper bound of the acceptor's back-off after an accept error (EMFILE, ENOBUFS, …).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The address that reaches a listener bound to `addr` (unspecified → loopback).
pub(super) fn wake_addr(addr: SocketAddr) -> SocketAddr {
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

pub(super) fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, role: Listener) {
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
                    &[
                        ("error", log::text(e)),
                        ("backoff_ms", log::millis(backoff)),
                    ],
                );
                thread::sleep(backoff);
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        if shared.open.fetch_add(1, Ordering::SeqCst) >= shared.opts.max_connections {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            refuse_overloaded(stream, shared);
            continue;
        }
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let _open = OpenGuard(&conn_shared.open);
                connection::serve(stream, &conn_shared, role);
            });
        if let Err(e) = spawned {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            log::error("cannot start connection thread", &[("error", log::text(e))]);
        }
    }
}

/// Past `--max-connections`: the handler's reply, written without blocking the acceptor (a full
/// send buffer loses the reply, never the acceptor's time), then close.
fn refuse_overloaded(stream: TcpStream, shared: &Shared) {
    let response = shared
        .handler
        .refuse(Refusal::TooManyConnections, Instant::now());
    let _ = stream.set_nonblocking(true);
    let _ = write_reply(&mut &stream, &response, Asked::Everything, After::Close);
    let _ = stream.shutdown(Shutdown::Both);
}

struct OpenGuard<'a>(&'a AtomicUsize);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
