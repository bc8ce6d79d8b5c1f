//! One connection's life: requests read one after another (keep-alive, pipelining), each head
//! shown to the handler, each body read within the request's deadline, the work run in the
//! pool (or here, when no other work runs), and the reply written. A slow client holds only this
//! thread, never a handler: work starts once the body is in. Between requests the connection is
//! idle (its slot may go to a newcomer); after [`MAX_REQUESTS_PER_CONNECTION`] requests or
//! [`MAX_CONNECTION_AGE`] it is closed after its reply.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::body::{read_body, BodyBuf};
use super::clients::{Clients, Ticket};
use super::http::{framing, write_reply, After, Asked, Framing, Head};
use super::pool::Reply;
use super::stream::{Conn, ReadError, Socket, Stream};
use super::{Begin, Counted, Listener, Refusal, Request, Response, Shared, Work, KEEP_ALIVE_IDLE};
use super::{MAX_CONNECTION_AGE, MAX_REQUESTS_PER_CONNECTION};

pub(super) fn serve(stream: Arc<TcpStream>, shared: &Shared, listener: Listener, ticket: &Ticket) {
    let opened = Instant::now();
    let _ = stream.set_nodelay(true);
    let Some(stream) = open(Socket(stream), shared, listener, opened) else {
        return;
    };
    let mut conn = Conn::new(stream);
    let reply = Arc::new(Reply::default());
    for served in 1.. {
        // The first request's clock starts at accept; later ones when their first byte arrives.
        if served > 1 {
            ticket.between_requests();
            let arrived = conn.await_request(Instant::now() + KEEP_ALIVE_IDLE);
            if !ticket.in_request() || !arrived {
                return;
            }
        }
        let last = served >= MAX_REQUESTS_PER_CONNECTION || opened.elapsed() >= MAX_CONNECTION_AGE;
        let on = Connection {
            shared,
            listener,
            ticket,
            last,
        };
        // The first request's clock started at accept (a TLS handshake counts against it).
        let started = if served == 1 { opened } else { Instant::now() };
        let after = serve_one(&mut conn, &reply, &on, started);
        // Once stopping, no connection carries another request.
        if after == After::Close || shared.stopping.load(Ordering::SeqCst) {
            conn.stream.close();
            return;
        }
    }
}

/// The connection's stream: TLS on the main listener when it has a certificate (the handshake
/// done within `--read-timeout` of accept, else the connection closes), plain otherwise.
fn open(socket: Socket, shared: &Shared, listener: Listener, opened: Instant) -> Option<Stream> {
    #[cfg(feature = "tls")]
    let socket = match (&shared.tls, listener) {
        (Some(tls), Listener::Main) => {
            let deadline = opened + shared.opts.read_timeout;
            let stream = super::tls::handshake(socket, tls.config(), deadline)?;
            let _ = stream
                .socket()
                .set_write_timeout(Some(shared.opts.read_timeout));
            return Some(stream);
        }
        _ => socket,
    };
    let _ = (listener, opened);
    let _ = socket.0.set_write_timeout(Some(shared.opts.read_timeout));
    Some(Stream::Plain(socket))
}

/// What a request needs to know of its connection.
struct Connection<'a> {
    shared: &'a Shared,
    listener: Listener,
    ticket: &'a Ticket,
    /// The connection closes after this request (its request or age cap).
    last: bool,
}

/// One request whose head has been read: what the reply must honour.
struct Exchange {
    head: Head,
    framing: Framing,
    asked: Asked,
    /// The client allows another request on this connection.
    keep_alive: bool,
    deadline: Instant,
}

/// Serves one request, from its first byte to its reply.
fn serve_one(
    conn: &mut Conn<Stream>,
    reply: &Arc<Reply>,
    on: &Connection,
    started: Instant,
) -> After {
    let shared = on.shared;
    let deadline = started + shared.opts.read_timeout;
    let refuse = |conn: &mut Conn<Stream>, refusal| {
        let response = shared.handler.refuse(refusal, started);
        send(conn, &response, Asked::Everything, After::Close)
    };
    let mut head = match conn.read_head(deadline, on.listener, started) {
        Ok(head) => head,
        Err(ReadError::Closed | ReadError::Io) => return After::Close,
        Err(ReadError::TimedOut) => return refuse(conn, Refusal::TimedOut),
        Err(ReadError::Refused(refusal)) => return refuse(conn, refusal),
    };
    let client = Clients::client_of(on.ticket, &head, &shared.opts);
    head.client = Some(client);
    // Through a trusted proxy, the forwarded client's share counts its requests in progress.
    let _forwarded = match on.ticket.proxy {
        true => match shared.clients.enter_forwarded(client, &shared.opts) {
            Ok(forwarded) => Some(forwarded),
            Err(refusal) => return refuse(conn, refusal),
        },
        false => None,
    };
    let _busy = Counted::new(&shared.in_flight);
    let framing = match framing(&head) {
        Ok(framing) => framing,
        Err(refusal) => return refuse(conn, refusal),
    };
    let exchange = Exchange {
        asked: if head.method == "HEAD" {
            Asked::HeadOnly
        } else {
            Asked::Everything
        },
        keep_alive: head.wants_keep_alive() && !on.last,
        framing,
        deadline,
        head,
    };
    match shared.handler.begin(&exchange.head, shared.status()) {
        Begin::Answer(response) => {
            // Answered before its body is read: the unread body cannot be told apart from a
            // next request, so the connection closes.
            let after = if exchange.framing.has_body() || !exchange.keep_alive {
                After::Close
            } else {
                After::KeepOpen
            };
            send(conn, &response, exchange.asked, after)
        }
        Begin::Read(work) => read_and_run(conn, reply, shared, exchange, work),
    }
}

/// Reads the body and runs the work in the pool.
fn read_and_run(
    conn: &mut Conn<Stream>,
    reply: &Arc<Reply>,
    shared: &Shared,
    exchange: Exchange,
    work: Box<dyn Work>,
) -> After {
    let max_body = shared.opts.max_body_bytes;
    let refuse = |conn: &mut Conn<Stream>, work: Box<dyn Work>, refusal| {
        send(conn, &work.refuse(refusal), exchange.asked, After::Close)
    };
    if matches!(exchange.framing, Framing::Length(n) if n > max_body) {
        return refuse(conn, work, Refusal::TooLarge);
    }
    if exchange.head.expects_continue()
        && exchange.framing.has_body()
        && conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
    {
        return After::Close;
    }
    let mut body = BodyBuf::new(&shared.budget, max_body);
    match read_body(conn, exchange.framing, &mut body, exchange.deadline) {
        Ok(()) => {}
        Err(ReadError::Closed | ReadError::Io) => return After::Close,
        Err(ReadError::TimedOut) => return refuse(conn, work, Refusal::TimedOut),
        Err(ReadError::Refused(refusal)) => return refuse(conn, work, refusal),
    }
    let (body, reservation) = body.into_parts();
    let request = Request {
        head: exchange.head,
        body,
    };
    let response = shared.pool.run(reply, work, request, reservation);
    let after = if exchange.keep_alive && !shared.stopping.load(Ordering::SeqCst) {
        After::KeepOpen
    } else {
        After::Close
    };
    send(conn, &response, exchange.asked, after)
}

/// Writes a reply; the connection goes on only if the write worked and `after` allows it.
fn send(conn: &mut Conn<Stream>, response: &Response, asked: Asked, after: After) -> After {
    match write_reply(&mut conn.stream, response, asked, after).and_then(|()| conn.stream.flush()) {
        Ok(()) => after,
        Err(_) => After::Close,
    }
}
