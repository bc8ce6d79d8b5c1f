//! Hostile traffic against the real binary: each attack that once let one request, one client or
//! one forged token hurt everyone else, kept as a test so that it stays fixed. Bounds on time and
//! memory are generous multiples of what the fix measures, so that they hold on a busy machine.

mod common;

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const KEY: &[u8] = b"hostile-suite-key-0123456789abcdef";

/// A config with these endpoint lines (each `- source: …` block; keys written as given).
fn config(head: &str, endpoints: &str, keys: &[(&str, &[u8])]) -> String {
    let yaml = format!("fluxRecvVersion: 1\n{head}endpoints:\n{endpoints}");
    write_yaml(&temp_dir("hostile"), &yaml, keys)
        .display()
        .to_string()
}

/// A Bitbucket Cloud push naming `branches` of the repository `full_name`.
fn bitbucket_push(full_name: &str, branches: impl Iterator<Item = String>) -> Vec<u8> {
    let changes: Vec<String> = branches
        .map(|b| format!(r#"{{"new":{{"name":"{b}"}}}}"#))
        .collect();
    format!(
        r#"{{"push":{{"changes":[{}]}},"repository":{{"full_name":"{full_name}"}}}}"#,
        changes.join(",")
    )
    .into_bytes()
}

fn bitbucket_post(server: &Proc, body: &[u8]) -> Reply {
    post(
        server.addr,
        &route_of(KEY, ""),
        &[("X-Event-Key", "repo:push"), ("Connection", "close")],
        body,
    )
}

fn rss_kib(server: &Proc) -> u64 {
    server.status("VmRSS")
}

/// One unsigned Bitbucket Cloud request (the URL is the credential) once turned into gigabytes,
/// seconds of lock time and thousands of calls. Now a list over the cap or a name over its
/// bound is a 400, refused while parsing, and the process stays small and responsive.
#[test]
fn one_request_cannot_multiply_into_memory_calls_or_lock_time() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let cfg = config(
        &format!("api: {}\n", fluxd.api()),
        "- source: BitbucketCloud\n  keyPath: key\n",
        &[("key", KEY)],
    );
    let server = Proc::start(&["--config", &cfg, "--threads", "2"]);
    let before = rss_kib(&server);

    // 100 changes of a 200 KB repository name: each change once copied the name.
    let long = bitbucket_push(&"a".repeat(200_000), (0..100).map(|i| format!("b{i}")));
    let reply = bitbucket_post(&server, &long);
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(server
        .stderr_with("bytes long")
        .contains("repository.full_name is 200000 bytes long"));

    // 40,000 distinct branches: refused at the 101st while parsing, in well under a second,
    // while /metrics and another push are answered at once.
    let many = bitbucket_push("acme/app", (0..40_000).map(|i| format!("branch-{i}")));
    let flood = {
        let addr = server.addr;
        let route = route_of(KEY, "");
        thread::spawn(move || {
            let started = Instant::now();
            let reply = post(addr, &route, &[("X-Event-Key", "repo:push")], &many);
            (reply.status, started.elapsed())
        })
    };
    let started = Instant::now();
    assert_eq!(get(server.addr, "/metrics").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let (status, took) = flood.join().unwrap();
    assert_eq!(status, 400);
    assert!(took < Duration::from_secs(2), "40k branches took {took:?}");
    assert!(server
        .stderr_with("more than 100 entries")
        .contains("a list of more than 100 entries"));

    // Over the cap by one is refused; at the cap, 100 calls and no more.
    let over = bitbucket_push("acme/app", (0..101).map(|i| format!("b{i}")));
    assert_eq!(bitbucket_post(&server, &over).status, 400);
    assert!(
        fluxd.requests().is_empty(),
        "{} calls",
        fluxd.requests().len()
    );
    let at = bitbucket_push("acme/app", (0..100).map(|i| format!("b{}", i % 50)));
    assert_eq!(bitbucket_post(&server, &at).status, 200);
    assert_eq!(fluxd.requests().len(), 50, "repeats are one call each");

    let after = rss_kib(&server);
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // One line per refused delivery, not one per change.
    let lines = server.stderr_text().lines().count();
    assert!(lines < 40, "{lines} log lines");
}

/// An operator who set a secret on the Bitbucket hook and `requireSignature: true` gets unsigned
/// deliveries refused; without it they are served by the URL alone, and the start-up says so.
#[test]
fn bitbucket_cloud_can_require_its_signature() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let body = bitbucket_push("acme/app", ["main".to_owned()].into_iter());
    for (required, unsigned_status) in [(true, 401), (false, 200)] {
        let cfg = config(
            &format!("api: {}\n", fluxd.api()),
            &format!("- source: BitbucketCloud\n  keyPath: key\n  requireSignature: {required}\n"),
            &[("key", KEY)],
        );
        let server = Proc::start(&["--config", &cfg]);
        assert_eq!(bitbucket_post(&server, &body).status, unsigned_status);
        let signed = post(
            server.addr,
            &route_of(KEY, ""),
            &[
                ("X-Event-Key", "repo:push"),
                (
                    "X-Hub-Signature",
                    &format!("sha256={}", hmac_hex("sha256", KEY, &body)),
                ),
            ],
            &body,
        );
        assert_eq!(signed.status, 200);
        assert_eq!(
            server.stderr_text().contains("accepts unsigned deliveries"),
            !required
        );
    }
}

/// A Distribution event without `request.host`, on an endpoint without `registryHost`, once
/// announced an image with an empty domain, which fluxd reads as Docker Hub's.
#[test]
fn an_image_event_that_names_no_host_is_ignored() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let cfg = config(
        &format!("api: {}\n", fluxd.api()),
        "- source: Distribution\n  keyPath: key\n",
        &[("key", KEY)],
    );
    let server = Proc::start(&["--config", &cfg]);
    let body = br#"{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"team/app","tag":"1.0"}}]}"#;
    let bearer = format!("Bearer {}", String::from_utf8_lossy(KEY));
    let reply = post(
        server.addr,
        &route_of(KEY, ""),
        &[("Authorization", &bearer)],
        body,
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("set registryHost"), "{}", reply.body);
    assert!(fluxd.requests().is_empty());
}

/// A GitHub ping of `size` bytes, signed with `key`: the genuine delivery the attacks must not
/// delay.
fn github_ping(size: usize, key: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let mut body = br#"{"zen":"Keep it logically awesome.","pad":""#.to_vec();
    body.resize(size - 2, b'x');
    body.extend_from_slice(b"\"}");
    let headers = vec![
        ("X-GitHub-Event".to_owned(), "ping".to_owned()),
        (
            "X-Hub-Signature-256".to_owned(),
            format!("sha256={}", hmac_hex("sha256", key, &body)),
        ),
        ("Connection".to_owned(), "close".to_owned()),
    ];
    (headers, body)
}

fn send_ping(addr: std::net::SocketAddr, key: &[u8], size: usize) -> (Reply, Duration) {
    let (headers, body) = github_ping(size, key);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let started = Instant::now();
    let reply = post(addr, &route_of(key, ""), &headers, &body);
    (reply, started.elapsed())
}

/// Uploads that declare 25 MiB, send 70 KB and stall once drained the shared body budget from
/// their heads alone: a signed 100 KB ping waited 9.8 s. The budget now follows the bytes that
/// arrived.
#[test]
fn stalled_uploads_do_not_starve_the_body_budget() {
    let cfg = config("", "- source: GitHub\n  keyPath: key\n", &[("key", KEY)]);
    let server = Proc::start(&["--config", &cfg, "--threads", "2", "--read-timeout", "10"]);
    let route = route_of(KEY, "");
    let stalled: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            let head = format!(
                "POST {route} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nContent-Length: {}\r\n\r\n",
                25 * 1024 * 1024
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&vec![b'{'; 70_000]).unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let (reply, took) = send_ping(server.addr, KEY, 100_000);
    assert_eq!((reply.status, reply.body.as_str()), (200, "Pong"));
    assert!(took < Duration::from_secs(1), "the ping took {took:?}");
    drop(stalled);
}

/// Chunk extensions with control bytes and trailers that are not header fields were accepted;
/// a front proxy may read such framing differently. Both are 400 now, and the server serves on.
#[test]
fn lenient_chunked_framing_is_refused() {
    let cfg = config("", "- source: GitHub\n  keyPath: key\n", &[("key", KEY)]);
    let server = Proc::start(&["--config", &cfg]);
    for framing in [
        &b"5;a\rb\r\nhello\r\n0\r\n\r\n"[..],
        b"5\r\nhello\r\n0\r\n\x00\x01GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: ping\r\nTransfer-Encoding: chunked\r\n\r\n",
            route_of(KEY, "")
        )
        .into_bytes();
        request.extend_from_slice(framing);
        let reply = raw(server.addr, &request).expect("a reply");
        assert_eq!(reply.status, 400, "{framing:?}");
    }
    assert_eq!(send_ping(server.addr, KEY, 200).0.status, 200);
}

/// Sends `GET /health` on a new kept-alive connection and keeps the connection.
fn kept_alive_health(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut s, &mut Vec::new()).expect("a reply");
    assert_eq!(reply.status, 200);
    s
}

/// With `--max-connections 8`, 8 kept-alive connections asking `/health` now and then once
/// kept every later connection at 503. An idle connection now gives its slot to a newcomer (the
/// one idle the longest first); only connections busy with a request keep a newcomer out.
#[test]
fn idle_kept_alive_connections_never_keep_a_new_one_out() {
    let cfg = config("", "- source: GitHub\n  keyPath: key\n", &[("key", KEY)]);
    let server = Proc::start(&[
        "--config",
        &cfg,
        "--max-connections",
        "8",
        "--max-connections-per-client",
        "8",
    ]);
    let mut held: Vec<std::net::TcpStream> =
        (0..8).map(|_| kept_alive_health(server.addr)).collect();
    for round in 0..3 {
        let (reply, _) = send_ping(server.addr, KEY, 200);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "Pong"),
            "round {round}"
        );
        // The holders come back for more: each reconnects, as a client whose kept-alive
        // connection was closed does, and the slots go round.
        held.remove(0);
        held.push(kept_alive_health(server.addr));
    }
    drop(held);
    thread::sleep(Duration::from_millis(200));
    // Eight connections mid-request (a head that never ends) are busy: a newcomer gets 503.
    let busy: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let (refused, _) = send_ping(server.addr, KEY, 200);
    assert_eq!(refused.status, 503, "{refused:?}");
    drop(busy);
}

/// A connection carries at most 1,000 requests: the 1,000th reply says `Connection: close`.
#[test]
fn a_connection_carries_a_bounded_number_of_requests() {
    use std::io::Write;
    let cfg = config("", "- source: GitHub\n  keyPath: key\n", &[("key", KEY)]);
    let server = Proc::start(&["--config", &cfg]);
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    for n in 1..=1000 {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let reply = read_reply(&mut s, &mut buf).expect("a reply");
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("Connection") == Some("close"),
            n == 1000,
            "request {n}"
        );
    }
}

/// One client address holds at most its share of connections; another client is served.
#[test]
fn one_client_holds_at_most_its_share() {
    let cfg = config("", "- source: GitHub\n  keyPath: key\n", &[("key", KEY)]);
    let server = Proc::start_on(
        &format!("[::]:{}", free_addr().port()),
        &["--config", &cfg, "--max-connections-per-client", "4"],
    );
    let port = server.addr.port();
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Four connections mid-request from 127.0.0.1: its whole share.
    let busy: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(v4).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let (refused, _) = send_ping(v4, KEY, 200);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(server
        .stderr_with("one client")
        .contains("too many connections or requests from one client"));
    // Another client (::1 is another address) is served.
    let v6 = std::net::SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port));
    match std::net::TcpStream::connect(v6) {
        Ok(_) => assert_eq!(send_ping(v6, KEY, 200).0.status, 200),
        Err(e) => eprintln!("no IPv6 loopback here ({e}); the other client is not tried"),
    }
    drop(busy);
}

/// `allowFrom` takes the client from `X-Forwarded-For` only when the peer is a trusted proxy;
/// a delivery from elsewhere is 403, logged with its address.
#[test]
fn allow_from_reads_forwarded_addresses_only_from_trusted_proxies() {
    let endpoint = "- source: GitHub\n  keyPath: key\n  allowFrom: [203.0.113.0/24]\n";
    let cfg = config("", endpoint, &[("key", KEY)]);
    let (headers, body) = github_ping(200, KEY);
    let ping = |server: &Proc, forwarded: &str| {
        let mut headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        headers.push(("X-Forwarded-For", forwarded));
        post(server.addr, &route_of(KEY, ""), &headers, &body).status
    };
    let behind = Proc::start(&["--config", &cfg, "--trusted-proxies", "127.0.0.0/8"]);
    assert_eq!(ping(&behind, "203.0.113.7"), 200);
    // The proxy appends what it saw: a client cannot name itself past it.
    assert_eq!(ping(&behind, "203.0.113.7, 198.51.100.1"), 403);
    assert_eq!(ping(&behind, "198.51.100.1"), 403);
    assert!(behind
        .stderr_with("198.51.100.1")
        .contains("client 198.51.100.1 is not in the endpoint's allowFrom"));
    let direct = Proc::start(&["--config", &cfg]);
    assert_eq!(
        ping(&direct, "203.0.113.7"),
        403,
        "the header from anyone else is ignored"
    );
}

/// GCR with `gcr.audience`: every forged token once cost an outbound call on the handler pool,
/// and two slow checks made a valid GitHub ping wait. Now a token that can be refused locally
/// costs no call, at most two checks run at once (a third is 503 with `Retry-After`, which
/// Pub/Sub retries), and they run before the body is read, on no handler.
#[test]
fn forged_gcr_tokens_cost_no_call_and_slow_checks_hold_no_handler() {
    const GCR_KEY: &[u8] = b"hostile-gcr-key-0123456789abcdef";
    let tokeninfo = FakeFluxd::start(Behaviour::Answer(tokeninfo_stand_in));
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let endpoints = format!(
        "- source: GitHub\n  keyPath: key\n- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: {GCR_AUDIENCE}\n    email: {GCR_EMAIL}\n    tokenInfoURL: http://{}/tokeninfo\n",
        tokeninfo.addr
    );
    let cfg = config(
        &format!("api: {}\n", fluxd.api()),
        &endpoints,
        &[("key", KEY), ("gcr.key", GCR_KEY)],
    );
    let server = Proc::start(&["--config", &cfg, "--threads", "2"]);
    let body = include_bytes!("fixtures/gcr/insert_tag.json");
    let push = |token: &str| {
        post(
            server.addr,
            &route_of(GCR_KEY, ""),
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Connection", "close"),
            ],
            body,
        )
    };
    let google = "https://accounts.google.com";
    for token in [
        "junk".to_owned(),
        google_jwt("good", "https://another.example", google, 3600),
        google_jwt("good", GCR_AUDIENCE, "https://evil.example", 3600),
        google_jwt("good", GCR_AUDIENCE, google, -1),
    ] {
        assert_eq!(push(&token).status, 401);
    }
    assert!(
        tokeninfo.requests().is_empty(),
        "a forged token made a call"
    );

    // Two slow checks hold both slots; a third is 503 at once; a GitHub ping is not delayed.
    // Two distinct tokens that the stand-in answers slowly (their expiry differs, by more than a
    // clock tick between the two makings could close).
    let slow_tokens = [3600, 3500].map(|exp| google_jwt("slow", GCR_AUDIENCE, google, exp));
    let slow: Vec<_> = slow_tokens
        .iter()
        .map(|token| {
            let (addr, route) = (server.addr, route_of(GCR_KEY, ""));
            let auth = format!("Bearer {token}");
            thread::spawn(move || post(addr, &route, &[("Authorization", &auth)], body).status)
        })
        .collect();
    wait_until("two checks in flight", Duration::from_secs(2), || {
        tokeninfo.requests().len() == 2
    });
    let started = Instant::now();
    let busy = push(&google_jwt("good", GCR_AUDIENCE, google, 3400));
    assert_eq!(busy.status, 503, "{busy:?}");
    assert_eq!(busy.header("Retry-After"), Some("1"));
    let (ping, took) = send_ping(server.addr, KEY, 200);
    assert_eq!(ping.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    for slow in slow {
        assert_eq!(slow.join().unwrap(), 200);
    }
    // Checked once, remembered: the same token again makes no call.
    let calls = tokeninfo.requests().len();
    assert_eq!(push(&slow_tokens[0]).status, 200);
    assert_eq!(tokeninfo.requests().len(), calls);
}

/// With `--redeliver-for 0`, a hanging downstream once held every handler for
/// `--notify-timeout`, stalling endpoints that feed only healthy downstreams. Its share of calls
/// now holds with redelivery on or off: past it, its deliveries fail at once (502).
#[test]
fn a_hanging_downstream_holds_only_its_share_with_redelivery_off() {
    const HUNG_KEY: &[u8] = b"hostile-hung-key-0123456789abcdef";
    let healthy = FakeFluxd::start(Behaviour::Real);
    let hanging = FakeFluxd::start(Behaviour::Hang);
    let head = format!(
        "notify:\n- name: healthy\n  fluxd: {}\n- name: hanging\n  fluxd: {}\n",
        healthy.api(),
        hanging.api()
    );
    let endpoints = "- source: GitHub\n  keyPath: key\n  notify: [healthy]\n- source: GitHub\n  keyPath: hung.key\n  notify: [hanging]\n";
    let cfg = config(&head, endpoints, &[("key", KEY), ("hung.key", HUNG_KEY)]);
    let server = Proc::start(&[
        "--config",
        &cfg,
        "--threads",
        "4",
        "--redeliver-for",
        "0",
        "--notify-timeout",
        "3",
    ]);
    let push = |key: &'static [u8], branch: String| {
        let addr = server.addr;
        thread::spawn(move || {
            let body = format!(
                r#"{{"ref":"refs/heads/{branch}","repository":{{"ssh_url":"git@github.com:acme/app.git"}}}}"#
            );
            let signature = format!("sha256={}", hmac_hex("sha256", key, body.as_bytes()));
            let started = Instant::now();
            let reply = post(
                addr,
                &route_of(key, ""),
                &[
                    ("X-GitHub-Event", "push"),
                    ("Content-Type", "application/json"),
                    ("X-Hub-Signature-256", &signature),
                ],
                body.as_bytes(),
            );
            (reply.status, started.elapsed())
        })
    };
    // Eight pushes for the hanging downstream at once: two (its share of 4 threads) wait on it,
    // the others fail at once.
    let hung: Vec<_> = (0..8).map(|i| push(HUNG_KEY, format!("h{i}"))).collect();
    hanging.wait_for_requests(2);
    let healthy_pushes: Vec<_> = (0..4).map(|i| push(KEY, format!("ok{i}"))).collect();
    for pushed in healthy_pushes {
        let (status, took) = pushed.join().unwrap();
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_secs(1),
            "a healthy push waited {took:?}"
        );
    }
    let hung: Vec<(u16, Duration)> = hung.into_iter().map(|h| h.join().unwrap()).collect();
    let timed_out = hung.iter().filter(|(s, _)| *s == 504).count();
    let refused = hung
        .iter()
        .filter(|(s, d)| *s == 502 && *d < Duration::from_secs(1));
    assert_eq!(timed_out, 2, "{hung:?}");
    assert_eq!(refused.count(), 6, "{hung:?}");
    assert_eq!(hanging.requests().len(), 2);
}

/// A leaked URL-only route replayed (or a signed delivery replayed) once drove a reconcile per
/// change without limit. Calls to a downstream are held to `--notify-rate`; what exceeds it
/// waits coalesced in the queue (202) and drains at the rate.
#[test]
fn replayed_deliveries_drive_calls_at_most_at_the_rate() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let cfg = config(
        &format!("api: {}\n", fluxd.api()),
        "- source: BitbucketCloud\n  keyPath: key\n",
        &[("key", KEY)],
    );
    let server = Proc::start(&["--config", &cfg, "--notify-rate", "20"]);
    let started = Instant::now();
    let mut statuses = BTreeSet::new();
    // 30 deliveries of 100 changes each: 3,000 changes, of which 200 distinct.
    for i in 0..30 {
        let body = bitbucket_push(
            "acme/app",
            (0..100).map(|b| format!("b{}", (i * 100 + b) % 200)),
        );
        statuses.insert(bitbucket_post(&server, &body).status);
    }
    let sent_in = started.elapsed();
    let calls_then = fluxd.requests().len();
    let bound = 20 + (20.0 * sent_in.as_secs_f64()).ceil() as usize;
    assert!(calls_then <= bound, "{calls_then} calls in {sent_in:?}");
    assert!(statuses.contains(&202), "{statuses:?}");
    assert!(!statuses.iter().any(|s| *s >= 400), "{statuses:?}");
    // The excess drains at the rate; every distinct change arrives, none twice while waiting.
    wait_until("the 200 distinct changes", Duration::from_secs(30), || {
        let got: BTreeSet<String> = fluxd.bodies().into_iter().collect();
        got.len() == 200
    });
    let took = started.elapsed();
    let calls = fluxd.requests().len();
    assert!(
        calls <= 20 + (20.0 * took.as_secs_f64()).ceil() as usize,
        "{calls} in {took:?}"
    );
    assert!(calls < 400, "{calls} calls for 200 changes");
}

/// Line and paragraph separators and bidi controls in a signed payload's ref reached the log
/// raw; they are escaped now, in both log formats.
#[test]
fn separators_and_bidi_controls_from_a_payload_reach_no_log_raw() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let cfg = config(
        &format!("api: {}\n", fluxd.api()),
        "- source: GitHub\n  keyPath: key\n",
        &[("key", KEY)],
    );
    let sneaky = "main\u{2028}level=error msg=forged\u{2029}\u{202e}txt.exe";
    let body = format!(
        r#"{{"ref":"refs/heads/{sneaky}","repository":{{"ssh_url":"git@github.com:acme/app.git"}}}}"#
    );
    let signature = format!("sha256={}", hmac_hex("sha256", KEY, body.as_bytes()));
    let headers = [
        ("X-GitHub-Event", "push"),
        ("Content-Type", "application/json"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    for format in ["logfmt", "json"] {
        let server = Proc::start(&["--config", &cfg, "--log-format", format]);
        // fluxd refuses it (a 400 for this stand-in's odd branch does not matter): the change
        // is named in the request's detail either way.
        fluxd.set(Behaviour::Status(400));
        let reply = post(server.addr, &route_of(KEY, ""), &headers, body.as_bytes());
        assert_eq!(reply.status, 502);
        let log = server.stderr_with("refused");
        assert!(
            !log.contains('\u{2028}') && !log.contains('\u{2029}') && !log.contains('\u{202e}'),
            "{format}: {log}"
        );
        let escaped = if format == "json" {
            "\\u2028"
        } else {
            "\\u{2028}"
        };
        assert!(log.contains(escaped), "{format}: {log}");
    }
}

/// A key file readable by every user loaded silently; start-up warns now.
#[test]
fn a_key_file_readable_by_everyone_is_warned_about_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let cfg = config("", "- source: GitHub\n  keyPath: key\n", &[("key", KEY)]);
    let key = std::path::Path::new(&cfg).with_file_name("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Proc::start(&["--config", &cfg]);
    assert!(server
        .stderr_with("readable by every user")
        .contains("mode 0644"));
}

/// A backlog of hundreds of changes once wrote a line per change when it drained; at most 10
/// lines of a kind per downstream a second are written now, the rest summed in one line.
#[test]
fn a_draining_backlog_writes_a_bounded_number_of_lines() {
    let fluxd_addr = free_addr();
    let cfg = config(
        &format!("api: http://{fluxd_addr}/api/flux\n"),
        "- source: BitbucketCloud\n  keyPath: key\n",
        &[("key", KEY)],
    );
    let server = Proc::start(&["--config", &cfg, "--notify-rate", "0"]);
    for i in 0..5 {
        let body = bitbucket_push("acme/app", (0..100).map(|b| format!("b{i}-{b}")));
        assert_eq!(bitbucket_post(&server, &body).status, 202);
    }
    let fluxd = FakeFluxd::start_on(fluxd_addr, Behaviour::Real);
    wait_until("500 redeliveries", Duration::from_secs(20), || {
        fluxd.requests().len() >= 500
    });
    let log = server.stderr_with("redelivery lines held back");
    let redelivered = log.matches("msg=redelivered ").count();
    assert!(redelivered <= 40, "{redelivered} redelivered lines");
    assert!(log.contains("msg=\"redelivery lines held back\""), "{log}");
    // Each delivery wrote its one request line and one queued line.
    assert_eq!(log.matches("msg=\"queued for redelivery\"").count(), 5);
}
