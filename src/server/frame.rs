//! One request framed from bytes with the server's own reading code (head, framing rules, body):
//! the entry of the fuzz targets and their replay tests. Kept apart from `http.rs` so that the
//! message rules do not depend on the body reader that depends on them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::body::{read_body, BodyBuf, Budget, BODY_FIRST_ALLOCATION};
use super::http::{framing, Framing};
use super::stream::{Conn, MemoryTransport, ReadError};
use super::{Listener, Refusal};

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
pub fn frame_request(bytes: &[u8], step: usize, max_body: u64) -> Result<Framed, Refusal> {
    let far = Instant::now() + Duration::from_secs(3600);
    let mut conn = Conn::new(MemoryTransport::new(bytes, step));
    let closed = |what: &str| Refusal::BadRequest(format!("closed before {what}"));
    let head = match conn.read_head(far, Listener::Main, Instant::now()) {
        Ok(head) => head,
        Err(ReadError::Refused(refusal)) => return Err(refusal),
        Err(_) => return Err(closed("a full head")),
    };
    let framing = framing(&head)?;
    if let Framing::Length(n) = framing {
        if n > max_body {
            return Err(Refusal::TooLarge);
        }
    }
    let budget = Arc::new(Budget::new(
        max_body.saturating_add(BODY_FIRST_ALLOCATION as u64),
    ));
    let mut body = BodyBuf::new(&budget, max_body);
    match read_body(&mut conn, framing, &mut body, far) {
        Ok(()) => {}
        Err(ReadError::Refused(refusal)) => return Err(refusal),
        Err(_) => return Err(closed("the whole body")),
    }
    let path = head.path().to_owned();
    Ok(Framed {
        method: head.method,
        path,
        headers: head.headers,
        body: body.into_parts().0,
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

    /// Dripped heads (one byte per read) end where `httparse` says, bare LF line ends included,
    /// and garbage is refused as it would be read whole: early, and also when the client stops.
    #[test]
    fn dripped_heads_are_framed_and_refused_as_whole_ones() {
        for request in [
            &b"GET /health HTTP/1.1\nHost: x\n\n"[..],
            b"GET /health HTTP/1.1\r\nHost: x\n\r\n",
            b"\r\nGET /health HTTP/1.1\r\n\r\n",
        ] {
            let whole = frame_request(request, request.len(), 1024);
            assert!(whole.is_ok(), "{whole:?}");
            assert_eq!(frame_request(request, 1, 1024), whole);
        }
        let bad = |r: &Result<Framed, Refusal>| matches!(r, Err(Refusal::BadRequest(why)) if why.starts_with("malformed request head"));
        // A TLS ClientHello, with no line end at all: refused long before the 16 KiB cap, and
        // refused too when it stops short.
        let hello = [&[0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01][..], &[0x42; 20_000]].concat();
        assert!(bad(&frame_request(&hello, 1, 1024)));
        assert!(bad(&frame_request(&hello[..7], 1, 1024)));
        assert!(bad(&frame_request(
            b"GET / HTTP/1.1\r\nBad Name: v\r\n",
            1,
            1024
        )));
        // A head with no end is 431 at the cap, dripped or whole.
        let endless = [&b"GET / HTTP/1.1\r\nX: "[..], &[b'a'; 20_000]].concat();
        assert_eq!(frame_request(&endless, 1, 1024), Err(Refusal::HeadTooLarge));
        assert_eq!(
            frame_request(&endless, endless.len(), 1024),
            Err(Refusal::HeadTooLarge)
        );
    }
}
