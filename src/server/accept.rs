//! The acceptors: one per listener, never stopped by an accept error, each connection on its own
//! small thread once `clients.rs` gives it a slot, and a fast 503 when it does not.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
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
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                accepted
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
        let stream = Arc::new(stream);
        let ticket = match shared.clients.admit(&stream, peer, &shared.opts) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                refuse(&stream, shared, role, refusal);
                continue;
            }
        };
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || connection::serve(stream, &conn_shared, role, &ticket));
        if let Err(e) = spawned {
            log::error("cannot start connection thread", &[("error", log::text(e))]);
        }
    }
}

/// A connection refused at accept (`--max-connections` with none idle, or the client's share):
/// the handler's reply, written without blocking the acceptor (a full send buffer loses the
/// reply, never the acceptor's time), then close.
/// On a TLS listener the connection is only closed: a plain reply before a handshake would be
/// garbage to the client.
fn refuse(stream: &TcpStream, shared: &Shared, role: Listener, refusal: Refusal) {
    let response = shared.handler.refuse(refusal, Instant::now());
    let _ = stream.set_nonblocking(true);
    if !shared.speaks_tls(role) {
        let _ = write_reply(&mut &*stream, &response, Asked::Everything, After::Close);
    }
    let _ = stream.shutdown(Shutdown::Both);
}
