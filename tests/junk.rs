//! Malformed requests: each gets its documented status or a clean close, and the next good
//! request is served. One framing or 400: no request-smuggling ambiguity.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::*;

const KEY: &[u8] = b"junk-test-key-0123456789abcdef";

/// One malformed (or borderline) request and what it must get.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// Statuses of the replies, in order, before the server closes (empty: closed, no reply).
    replies: &'static [u16],
}

fn case(name: &'static str, bytes: impl AsRef<[u8]>, replies: &'static [u16]) -> Case {
    Case {
        name,
        bytes: bytes.as_ref().to_vec(),
        replies,
    }
}

/// Sends the bytes, closes the sending side, and collects every reply status until EOF.
fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u16> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text[i + 9..].get(..3)?.parse().ok())
        .filter(|s| *s != 100)
        .collect()
}

#[test]
fn junk_table() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let (server, _) = start(&[Ep::new("DockerHub", KEY)], &fluxd.api(), test_options());
    let route = route_of(KEY, "");
    let good_body = br#"{"repository":{"repo_name":"acme/podinfo"}}"#;
    let hook = |headers: &str, body: &[u8]| -> Vec<u8> {
        [
            format!("POST {route} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes(),
            body,
        ]
        .concat()
    };
    let good = hook(
        &format!("Content-Length: {}\r\n", good_body.len()),
        good_body,
    );
    let many_headers: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
    let client_hello = [
        &[
            0x16u8, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
        ][..],
        &[0x42; 32],
        b"\x00\x00\x04\x13\x01\x13\x02\x01\x00\r\n\r\n",
    ]
    .concat();
    let cases = vec![
        case("bare method", "GET\r\n\r\n", &[400]),
        case(
            "extra request-line field",
            "GET / HTTP/1.1 x\r\n\r\n",
            &[400],
        ),
        case("HTTP/9.9", "GET / HTTP/9.9\r\n\r\n", &[400]),
        case("lowercase version", "GET / http/1.1\r\n\r\n", &[400]),
        case("NUL in method", "G\0T / HTTP/1.1\r\n\r\n", &[400]),
        case("NUL in target", "GET /\0 HTTP/1.1\r\n\r\n", &[400]),
        case(
            "NUL in header value",
            "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            &[400],
        ),
        case(
            "non-ASCII header name",
            b"GET / HTTP/1.1\r\nX\xff: v\r\n\r\n",
            &[400],
        ),
        case(
            "non-ASCII header value (obs-text)",
            b"GET /health HTTP/1.1\r\nX: \xc3\xbc\r\n\r\n",
            &[200],
        ),
        case(
            "space in header name",
            "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
            &[400],
        ),
        case(
            "header without colon",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            &[400],
        ),
        case(
            "obs-fold continuation",
            "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            &[400],
        ),
        case(
            "header flood (65)",
            format!("GET /health HTTP/1.1\r\n{many_headers}\r\n"),
            &[431],
        ),
        case(
            "20 KiB header",
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)),
            &[431],
        ),
        case(
            "20 KiB request line",
            format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000)),
            &[431],
        ),
        case(
            "huge Content-Length",
            hook("Content-Length: 1000000000000\r\n", b""),
            &[413],
        ),
        case(
            "negative Content-Length",
            hook("Content-Length: -5\r\n", b"hello"),
            &[400],
        ),
        case(
            "overflowing Content-Length",
            hook("Content-Length: 18446744073709551616\r\n", b""),
            &[400],
        ),
        case(
            "Content-Length with letters",
            hook("Content-Length: 12abc\r\n", b""),
            &[400],
        ),
        case(
            "Content-Length with inner space",
            hook("Content-Length: 1 2\r\n", b""),
            &[400],
        ),
        case(
            "Content-Length list",
            hook("Content-Length: 5, 5\r\n", b"hello"),
            &[400],
        ),
        case(
            "two different lengths",
            hook("Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
            &[400],
        ),
        case(
            "two equal lengths",
            hook(
                &format!(
                    "Content-Length: {0}\r\nContent-Length: {0}\r\n",
                    good_body.len()
                ),
                good_body,
            ),
            &[200],
        ),
        case(
            "Content-Length and Transfer-Encoding",
            hook(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\n",
            ),
            &[400],
        ),
        case(
            "Transfer-Encoding then Content-Length 0",
            hook(
                "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
                b"0\r\n\r\n",
            ),
            &[400],
        ),
        case(
            "Transfer-Encoding gzip",
            hook("Transfer-Encoding: gzip\r\n", b""),
            &[400],
        ),
        case(
            "Transfer-Encoding list",
            hook("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
            &[400],
        ),
        case(
            "Transfer-Encoding xchunked",
            hook("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
            &[400],
        ),
        case(
            "Transfer-Encoding in HTTP/1.0",
            format!("POST {route} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            &[400],
        ),
        case(
            "bad chunk size",
            hook(
                "Transfer-Encoding: chunked\r\n",
                b"zz\r\nhello\r\n0\r\n\r\n",
            ),
            &[400],
        ),
        case(
            "overflowing chunk size",
            hook("Transfer-Encoding: chunked\r\n", b"fffffffffffffffffff\r\n"),
            &[400],
        ),
        case(
            "negative chunk size",
            hook("Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n"),
            &[400],
        ),
        case(
            "chunk longer than its size",
            hook("Transfer-Encoding: chunked\r\n", b"2\r\nhello\r\n0\r\n\r\n"),
            &[400],
        ),
        case(
            "chunk line ended by a bare LF",
            hook("Transfer-Encoding: chunked\r\n", b"5\nhello\r\n0\r\n\r\n"),
            &[400],
        ),
        case(
            "chunked body truncated",
            hook("Transfer-Encoding: chunked\r\n", b"100\r\nhello"),
            &[],
        ),
        case(
            "chunked trailer line of 16 KiB, no end",
            hook(
                "Transfer-Encoding: chunked\r\n",
                &[b"0\r\nX-T: ".as_slice(), &vec![b'a'; 16 * 1024]].concat(),
            ),
            &[431],
        ),
        case(
            "chunked trailer line of 20 KiB",
            hook(
                "Transfer-Encoding: chunked\r\n",
                &[
                    b"0\r\nX-T: ".as_slice(),
                    &vec![b'a'; 20 * 1024],
                    b"\r\n\r\n",
                ]
                .concat(),
            ),
            &[431],
        ),
        case(
            "chunked over the cap",
            hook(
                "Transfer-Encoding: chunked\r\n",
                &[b"200000\r\n".as_slice(), &vec![b'a'; 0x200000]].concat(),
            ),
            &[413],
        ),
        case(
            "body shorter than declared",
            hook("Content-Length: 100\r\n", b"short"),
            &[],
        ),
        case(
            "body longer than declared",
            [good.clone(), b"junk after the body\r\n\r\n".to_vec()].concat(),
            &[200, 400],
        ),
        case(
            "pipelined requests",
            [good.as_slice(), b"GET /health HTTP/1.1\r\n\r\n", &good].concat(),
            &[200, 200, 200],
        ),
        case("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &[400]),
        case("TLS ClientHello on the plain port", client_hello, &[400]),
        case("request line only, then EOF", "GET / HTTP/1.1\r\n", &[]),
        case("empty lines only", "\r\n\r\n\r\n", &[]),
        case("nothing at all", "", &[]),
        case(
            "absolute-form target",
            "GET http://x/health HTTP/1.1\r\n\r\n",
            &[404],
        ),
        case(
            "lowercase post on a hook",
            format!("post {route} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            &[405],
        ),
        case(
            "unknown path with a body",
            "POST /nope HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            &[404],
        ),
        case("HEAD on health", "HEAD /health HTTP/1.1\r\n\r\n", &[200]),
        case(
            "Expect on an unknown path",
            "POST /nope HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
            &[404],
        ),
        case(
            "hook with a query and a bad digest",
            "POST /hook/zz?x=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            &[404],
        ),
        case(
            "uppercase digest",
            format!(
                "POST {} HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                route.to_uppercase().replace("/HOOK/", "/hook/")
            ),
            &[404],
        ),
    ];
    assert!(cases.len() >= 40);
    for case in &cases {
        let replies = exchange(server.addr(), &case.bytes);
        assert_eq!(
            replies,
            case.replies,
            "case {:?}: sent {:?}",
            case.name,
            String::from_utf8_lossy(&case.bytes[..case.bytes.len().min(200)])
        );
        // The next good request is served.
        let reply = get(server.addr(), "/health");
        assert_eq!(reply.status, 200, "after case {:?}", case.name);
    }
    server.stop();
}

/// Well-authenticated deliveries whose bodies are junk, to every source: each gets `400 Bad
/// request` or `200 ignored`, fluxd hears nothing, and the source's own good delivery is still
/// notified after every one of them.
#[test]
fn junk_bodies_to_every_source() {
    use flux_recv::sources::{RegistryHost, Source};
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let key_of = |source: Source| format!("{}-{source}", String::from_utf8_lossy(KEY)).into_bytes();
    let host = |source: Source| {
        (source.registry_host() == RegistryHost::Required).then_some("registry.example.com")
    };
    let endpoints: Vec<Ep> = Source::ALL
        .iter()
        .map(|&source| Ep {
            source: source.name(),
            key: key_of(source),
            registry_host: host(source),
        })
        .collect();
    let (server, _) = start(&endpoints, &fluxd.api(), test_options());
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let junk: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated", b"{\"a\":".to_vec()),
        ("null", b"null".to_vec()),
        ("a list", b"[]".to_vec()),
        ("a string", b"\"push\"".to_vec()),
        ("an empty object", b"{}".to_vec()),
        ("not UTF-8", b"{\"\xff\xfe\":1}".to_vec()),
        ("nested 5000 deep", deep.into_bytes()),
        ("huge number", format!("{{\"n\":1{}}}", "0".repeat(400)).into_bytes()),
        ("every field null", br#"{"events":null,"repository":null,"data":null,"message":null,"push":null,"action":null,"type":null,"package":null,"ref":null,"eventType":null}"#.to_vec()),
        ("every field of the wrong type", br#"{"events":1,"repository":1,"data":1,"message":1,"push":1,"action":1,"type":1,"package":1,"ref":1,"target":1,"resource":1}"#.to_vec()),
    ];
    for &source in Source::ALL {
        let key = key_of(source);
        let route = route_of(&key, host(source).unwrap_or(""));
        let send = |body: &[u8]| {
            let incoming = source.sample(&key, body);
            let headers: Vec<(&str, &str)> = incoming
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            post(server.addr(), &route, &headers, body)
        };
        for (name, body) in &junk {
            fluxd.clear();
            let reply = send(body);
            let context = format!("{source} {name}: {reply:?}");
            assert!(
                reply.status == 400 && reply.body == "Bad request"
                    || reply.status == 200 && reply.body.starts_with("ignored: "),
                "{context}"
            );
            assert!(fluxd.bodies().is_empty(), "{context}");
            assert_eq!(send(source.sample_body()).status, 200, "after {context}");
            assert_eq!(fluxd.bodies().len(), 1, "after {context}");
        }
    }
    server.stop();
}
