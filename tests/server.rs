//! The HTTP layer and the fluxd side, end to end on loopback: routes, limits, framing, timeouts,
//! and every way fluxd can fail.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const KEY: &[u8] = b"server-test-key-0123456789";
const PUSH: &[u8] = include_bytes!("fixtures/gitlab/push.json");
const BBC_PUSH: &[u8] = include_bytes!("fixtures/bitbucket_cloud/push.json");

fn gitlab_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", std::str::from_utf8(KEY).unwrap()),
        ("Content-Type", "application/json"),
    ]
}

fn gitlab_server(api: &str) -> flux_recv::app::Running {
    start(&[Ep::new("GitLab", KEY)], api, test_options()).0
}

fn push_request(route: &str, extra: &str) -> Vec<u8> {
    gitlab_push_request(route, KEY, extra)
}

#[test]
fn health_not_found_and_method_not_allowed() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let server = gitlab_server(&fluxd.api());
    let health = get(server.addr(), "/health");
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));
    for path in [
        "/",
        "/hook/",
        "/hook/abc",
        "/healthz",
        &route_of(b"other", ""),
    ] {
        let reply = get(server.addr(), path);
        assert_eq!(reply.status, 404, "{path}");
    }
    let route = route_of(KEY, "");
    let reply = get(server.addr(), &route);
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("Allow"), Some("POST"));
    // A query string does not change the route (Pub/Sub and others append one).
    let reply = post(
        server.addr(),
        &format!("{route}?x=1"),
        &gitlab_headers(),
        PUSH,
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(fluxd.requests().len(), 1);
    server.stop();
}

#[test]
fn unknown_paths_are_refused_before_the_body_is_read() {
    let server = gitlab_server(&dead_api());
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Declares a body it never sends: the 404 must come at once, not after the read timeout.
    let started = Instant::now();
    stream
        .write_all(b"POST /hook/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut stream, &mut Vec::new()).expect("reply");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(started.elapsed() < Duration::from_millis(500));
    server.stop();
}

#[test]
fn declared_body_over_the_cap_is_413_before_reading() {
    let server = gitlab_server(&dead_api());
    let route = route_of(KEY, "");
    let started = Instant::now();
    let reply = raw(
        server.addr(),
        format!("POST {route} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
            .as_bytes(),
    )
    .expect("reply");
    assert_eq!(reply.status, 413);
    assert!(started.elapsed() < Duration::from_millis(500));
    server.stop();
}

#[test]
fn chunked_body_over_the_cap_is_413() {
    let server = gitlab_server(&dead_api());
    let route = route_of(KEY, "");
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(
            format!("POST {route} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut status = None;
    // 1 MiB cap in test_options: at most 17 chunks of 64 KiB get in.
    for _ in 0..40 {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).is_err() {
            break;
        }
    }
    if let Some(reply) = read_reply(&mut stream, &mut Vec::new()) {
        status = Some(reply.status);
    }
    assert_eq!(status, Some(413));
    server.stop();
}

#[test]
fn head_over_the_cap_is_431() {
    let server = gitlab_server(&dead_api());
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    assert_eq!(raw(server.addr(), big.as_bytes()).unwrap().status, 431);
    let mut many = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..70 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(raw(server.addr(), many.as_bytes()).unwrap().status, 431);
    // The server goes on serving.
    assert_eq!(get(server.addr(), "/health").status, 200);
    server.stop();
}

#[test]
fn framing_is_one_or_400() {
    let server = gitlab_server(&dead_api());
    let route = route_of(KEY, "");
    let cases = [
        (
            "both lengths",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        ("two lengths", "Content-Length: 5\r\nContent-Length: 6\r\n"),
        ("negative", "Content-Length: -1\r\n"),
        ("overflow", "Content-Length: 99999999999999999999999\r\n"),
        ("plus sign", "Content-Length: +5\r\n"),
        ("gzip coding", "Transfer-Encoding: gzip\r\n"),
        (
            "chunked twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ),
    ];
    for (name, headers) in cases {
        let req = format!("POST {route} HTTP/1.1\r\nHost: x\r\n{headers}\r\nhello");
        let reply = raw(server.addr(), req.as_bytes()).expect(name);
        assert_eq!(reply.status, 400, "{name}");
        assert_eq!(reply.header("Connection"), Some("close"), "{name}");
    }
    server.stop();
}

#[test]
fn chunked_bodies_keep_alive_and_100_continue() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let server = gitlab_server(&fluxd.api());
    let route = route_of(KEY, "");
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = Vec::new();

    // 1: chunked, in two chunks with an extension.
    let (a, b) = PUSH.split_at(100);
    let mut req = format!(
        "POST {route} HTTP/1.1\r\nHost: x\r\nX-Gitlab-Event: Push Hook\r\nX-Gitlab-Token: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        std::str::from_utf8(KEY).unwrap()
    )
    .into_bytes();
    req.extend(format!("{:x};ext=1\r\n", a.len()).bytes());
    req.extend(a);
    req.extend(format!("\r\n{:X}\r\n", b.len()).bytes());
    req.extend(b);
    req.extend(b"\r\n0\r\nX-Trailer: t\r\n\r\n");
    stream.write_all(&req).unwrap();
    let reply = read_reply(&mut stream, &mut buf).expect("chunked reply");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("Connection"), None);

    // 2: same connection, Expect: 100-continue, head first, body after the interim reply.
    let full = push_request(&route, "Expect: 100-continue\r\n");
    let split = find(&full, b"\r\n\r\n").unwrap() + 4;
    stream.write_all(&full[..split]).unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(&full[split..]).unwrap();
    let reply = read_reply(&mut stream, &mut buf).expect("second reply");
    assert_eq!(reply.status, 200);

    // 3: pipelined: two requests in one write, two replies in order.
    let two = [
        push_request(&route, ""),
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ]
    .concat();
    stream.write_all(&two).unwrap();
    assert_eq!(read_reply(&mut stream, &mut buf).unwrap().status, 200);
    let health = read_reply(&mut stream, &mut buf).unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));

    // 4: Connection: close is honoured.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let last = read_reply(&mut stream, &mut buf).unwrap();
    assert_eq!(last.header("Connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0, "closed after");
    assert_eq!(fluxd.requests().len(), 3);
    server.stop();
}

#[test]
fn a_body_longer_than_declared_does_not_smuggle_a_request() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let server = gitlab_server(&fluxd.api());
    let route = route_of(KEY, "");
    let mut req = push_request(&route, "");
    // The bytes after the declared body are read as the next request, which is garbage → 400.
    req.extend(b"GARBAGE\x00\r\n\r\n");
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(&req).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_reply(&mut stream, &mut buf).unwrap().status, 200);
    assert_eq!(read_reply(&mut stream, &mut buf).unwrap().status, 400);
    assert_eq!(fluxd.requests().len(), 1);
    server.stop();
}

fn timed_push(api: &str, opts: flux_recv::app::Options) -> (Reply, Duration) {
    let (server, _) = start(&[Ep::new("GitLab", KEY)], api, opts);
    let started = Instant::now();
    let reply = post(server.addr(), &route_of(KEY, ""), &gitlab_headers(), PUSH);
    let elapsed = started.elapsed();
    // The server still serves after the failure.
    assert_eq!(get(server.addr(), "/health").status, 200);
    server.stop();
    (reply, elapsed)
}

#[test]
fn fluxd_down_is_502() {
    let (reply, _) = timed_push(&dead_api(), test_options());
    assert_eq!(reply.status, 502, "{reply:?}");
}

#[test]
fn fluxd_errors_are_502() {
    for behaviour in [
        Behaviour::Status(500),
        Behaviour::Status(400),
        Behaviour::Garbage,
        Behaviour::Hangup,
        Behaviour::Redirect,
    ] {
        let fluxd = FakeFluxd::start(behaviour);
        let (reply, elapsed) = timed_push(&fluxd.api(), test_options());
        assert_eq!(reply.status, 502, "{behaviour:?}: {reply:?}");
        assert!(
            elapsed < Duration::from_secs(2),
            "{behaviour:?}: {elapsed:?}"
        );
        assert_eq!(
            fluxd.requests().len(),
            1,
            "{behaviour:?}: one call, no retry"
        );
    }
}

#[test]
fn fluxd_slower_than_the_notify_timeout_is_504_within_the_timeout_plus_1s() {
    let fluxd = FakeFluxd::start(Behaviour::Slow(Duration::from_secs(3)));
    let opts = test_options(); // notify timeout 1 s
    let (reply, elapsed) = timed_push(&fluxd.api(), opts);
    assert_eq!(reply.status, 504, "{reply:?}");
    assert_eq!(reply.body, "Timed out waiting for a downstream");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[test]
fn several_changes_share_one_notify_budget() {
    // Two changes, fluxd takes 0.6 s each, budget 1 s: the second one times out.
    let fluxd = FakeFluxd::start(Behaviour::Slow(Duration::from_millis(600)));
    let (server, _) = start(
        &[Ep::new("BitbucketCloud", KEY)],
        &fluxd.api(),
        test_options(),
    );
    let started = Instant::now();
    let reply = post(
        server.addr(),
        &route_of(KEY, ""),
        &[("X-Event-Key", "repo:push")],
        BBC_PUSH,
    );
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(fluxd.requests().len(), 2);
    server.stop();
}

#[test]
fn a_stalled_client_gets_408_while_others_are_served() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let server = gitlab_server(&fluxd.api()); // read timeout 1 s
    let route = route_of(KEY, "");

    let mut stalled_head = TcpStream::connect(server.addr()).unwrap();
    stalled_head
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stalled_head
        .write_all(b"POST /hook/abc HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut stalled_body = TcpStream::connect(server.addr()).unwrap();
    stalled_body
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let full = push_request(&route, "");
    stalled_body.write_all(&full[..full.len() - 10]).unwrap();
    let started = Instant::now();

    // Meanwhile, real deliveries are served at once.
    for _ in 0..5 {
        let t = Instant::now();
        let reply = post(server.addr(), &route, &gitlab_headers(), PUSH);
        assert_eq!(reply.status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }

    for stream in [&mut stalled_head, &mut stalled_body] {
        let reply = read_reply(stream, &mut Vec::new()).expect("a 408");
        assert_eq!(reply.status, 408);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(800), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }
    assert_eq!(fluxd.requests().len(), 5);
    server.stop();
}

#[test]
fn past_max_connections_a_fast_503_then_normal_service() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let mut opts = test_options();
    opts.server.max_connections = 4;
    opts.server.read_timeout = Duration::from_secs(5);
    let (server, _) = start(&[Ep::new("GitLab", KEY)], &fluxd.api(), opts);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    // Let the acceptor count them.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.open_connections() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let reply = raw(server.addr(), b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(reply.map(|r| r.status), Some(503));
    assert!(started.elapsed() < Duration::from_millis(500));
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.open_connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(get(server.addr(), "/health").status, 200);
    server.stop();
}

#[test]
fn notify_sends_exactly_the_contract() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let server = gitlab_server(&fluxd.api());
    let reply = post(server.addr(), &route_of(KEY, ""), &gitlab_headers(), PUSH);
    assert_eq!(reply.status, 200);
    let requests = fluxd.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/flux/v11/notify");
    assert_eq!(r.header("Accept"), Some("application/json"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.body_str(),
        r#"{"Kind":"git","Source":{"URL":"git@gitlab.example.com:platform/fleet-infra.git","Branch":"main"}}"#
    );
    server.stop();
}

#[test]
fn a_restarting_fluxd_is_retried_within_the_notify_budget() {
    // fluxd is down when the delivery arrives and back 300 ms later, on the same port.
    let fluxd_addr = free_addr();
    let api = format!("http://{fluxd_addr}/api/flux");
    let server = gitlab_server(&api); // notify timeout 1 s
    let comes_back = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        FakeFluxd::start_on(fluxd_addr, Behaviour::Real)
    });
    let started = Instant::now();
    let reply = post(server.addr(), &route_of(KEY, ""), &gitlab_headers(), PUSH);
    let elapsed = started.elapsed();
    let fluxd = comes_back.join().unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(fluxd.requests().len(), 1);
    server.stop();
}
