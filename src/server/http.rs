//! HTTP/1.1 messages: the request head, the framing rules (`Content-Length` or `chunked`, never
//! both) and the replies. Bytes are read in `stream.rs`, bodies in `body.rs`. No routing, no
//! providers.

use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Instant;

use super::{Listener, Refusal, Response};
use crate::text::{header_in, printable};

/// A request head larger than this is an attack, not a webhook (→ 431).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// More headers than this is an attack, not a webhook (→ 431).
pub const MAX_HEADERS: usize = 64;
/// A request head, owned: what a handler sees before any body byte is read.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<(String, String)>,
    /// Which listener the request came in on.
    pub listener: Listener,
    /// When the request's clock started (accept, or its first byte on a kept-alive connection).
    pub started: Instant,
    /// Who sent it: the peer, or behind a trusted proxy the client it forwarded (none when the
    /// bytes came from memory).
    pub client: Option<IpAddr>,
}

impl Head {
    /// The first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
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
pub(crate) fn framing(head: &Head) -> Result<Framing, Refusal> {
    let bad = |why: String| Refusal::BadRequest(why);
    let mut length: Option<u64> = None;
    for value in head.headers_named("Content-Length") {
        let value = value.trim();
        if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "Content-Length {:?} is not a number",
                printable(value)
            )));
        }
        let n: u64 = value
            .parse()
            .map_err(|_| bad("Content-Length out of range".into()))?;
        if length.is_some_and(|l| l != n) {
            return Err(bad("two different Content-Length values".into()));
        }
        length = Some(n);
    }
    let mut encodings = head.headers_named("Transfer-Encoding");
    match (encodings.next(), length) {
        (None, length) => Ok(Framing::Length(length.unwrap_or(0))),
        (Some(_), Some(_)) => Err(bad("both Content-Length and Transfer-Encoding".into())),
        (Some(_), None) if head.minor == 0 => {
            Err(bad("Transfer-Encoding in an HTTP/1.0 request".into()))
        }
        (Some(value), None) => {
            if value.trim().eq_ignore_ascii_case("chunked") && encodings.next().is_none() {
                Ok(Framing::Chunked)
            } else {
                Err(bad(format!(
                    "Transfer-Encoding {:?} is not just chunked",
                    printable(value)
                )))
            }
        }
    }
}

/// Whether the connection stays open after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    KeepOpen,
    Close,
}

/// What the client asked of the reply besides its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// GET, POST, …: head and body.
    Everything,
    /// HEAD: the head alone.
    HeadOnly,
}

/// The reason phrase of a status, from the `http` crate's table.
fn reason(status: u16) -> &'static str {
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Writes one reply in one `write`.
pub(crate) fn write_reply(
    out_stream: &mut impl Write,
    response: &Response,
    asked: Asked,
    after: After,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    if after == After::Close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    if asked == Asked::Everything {
        out.push_str(&response.body);
    }
    out_stream.write_all(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_phrases_come_from_the_status_table() {
        assert_eq!(reason(200), "OK");
        assert_eq!(reason(202), "Accepted");
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(504), "Gateway Timeout");
    }
}
