//! Reliability suite: the built binary as a child process under slow clients, floods, descriptor
//! exhaustion, bodies at the cap, fluxd faults and signals. Loopback only; every loop is bounded
//! in count and time. Figures (threads, RSS) are printed with `--nocapture`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const KEY: &[u8] = b"reliability-key-0123456789abcdef";

fn gitlab(api: &str) -> String {
    config_file(&[Ep::new("GitLab", KEY)], api)
        .display()
        .to_string()
}

fn delivery(route: &str) -> Vec<u8> {
    gitlab_push_request(route, KEY, "Connection: close\r\n")
}

#[test]
fn slow_clients_hold_only_their_own_connection() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let config = gitlab(&fluxd.api());
    let server = Proc::start(&[
        "--config",
        &config,
        "--read-timeout",
        "3",
        "--max-connections",
        "600",
        // 400 clients, all on loopback: one address, so its share is all of it.
        "--max-connections-per-client",
        "600",
    ]);
    let route = route_of(KEY, "");
    // Watches (up to `limit`) until `n` threads are up; the highest (threads, RSS) seen.
    let watch = |n: u64, limit: Duration| {
        let (mut peak, deadline) = ((0, 0), Instant::now() + limit);
        loop {
            let now = (server.status("Threads"), server.status("VmRSS"));
            peak = (peak.0.max(now.0), peak.1.max(now.1));
            if peak.0 >= n || Instant::now() >= deadline {
                return peak;
            }
            thread::sleep(Duration::from_millis(10));
        }
    };
    // main, acceptor, 4 handlers, 4 callers, the redelivery scheduler, the signal thread and
    // the file watcher
    let before = watch(13, Duration::from_secs(3));

    let full = std::sync::Arc::new(delivery(&route));
    // Each stalled client waits for its answer on its own thread and reports (status, waited).
    let stalled: Vec<_> = (0..400)
        .map(|i| {
            let mut s = TcpStream::connect(server.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
            // Half stall mid-head, half mid-body.
            let part = if i % 2 == 0 {
                &full[..40]
            } else {
                &full[..full.len() - 100]
            };
            s.write_all(part).unwrap();
            let opened = Instant::now();
            thread::spawn(move || {
                let reply = read_reply(&mut s, &mut Vec::new());
                (reply.map_or(0, |r| r.status), opened.elapsed())
            })
        })
        .collect();
    // The acceptor may still be spawning on a loaded machine: watch for up to 2 s (less than the
    // read timeout, so no stalled connection has been let go yet) and keep the peak.
    let during = watch(before.0 + 400, Duration::from_secs(2));

    // A real delivery in the middle is answered within 1 s.
    let started = Instant::now();
    let reply = raw(server.addr, &delivery(&route)).expect("reply");
    let answered = started.elapsed();
    assert_eq!(reply.status, 200);
    assert!(answered < Duration::from_secs(1), "{answered:?}");

    // Every stalled connection gets 408 or is closed within read-timeout + 1 s.
    let mut statuses = std::collections::BTreeMap::new();
    let mut longest = Duration::ZERO;
    for client in stalled {
        let (status, waited) = client.join().unwrap();
        longest = longest.max(waited);
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert!(
        longest < Duration::from_secs(4),
        "a stalled connection was held {longest:?}"
    );
    assert_eq!(statuses.get(&408), Some(&400), "{statuses:?}");
    // Connection threads end once their 408 is written; give a loaded machine a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.status("Threads") > before.0 + 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let after = (server.status("Threads"), server.status("VmRSS"));
    eprintln!(
        "slow clients: threads before/during/after = {}/{}/{}; RSS kB before/during/after = {}/{}/{}; delivery answered in {answered:?}; longest stall answered after {longest:?}",
        before.0, during.0, after.0, before.1, during.1, after.1
    );
    // One thread per open connection plus the fixed ones, and they all go away.
    assert!(
        during.0 >= before.0 + 400 && during.0 <= before.0 + 400 + 2,
        "{during:?} {before:?}"
    );
    assert!(
        after.0 <= before.0 + 1,
        "threads left: {after:?} vs {before:?}"
    );
    // 400 stalled connections cost well under 64 KiB of RSS each.
    assert!(
        during.1 < before.1 + 400 * 64,
        "RSS during {during:?} vs {before:?}"
    );
    assert_eq!(fluxd.requests().len(), 1);
}

#[test]
fn past_max_connections_503_and_then_normal_service() {
    let config = gitlab(&dead_api());
    let server = Proc::start(&[
        "--config",
        &config,
        "--max-connections",
        "20",
        "--read-timeout",
        "5",
    ]);
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(200));
    let mut refused = 0;
    for _ in 0..10 {
        let started = Instant::now();
        let reply = raw(server.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(started.elapsed() < Duration::from_millis(500));
        if reply.map(|r| r.status) == Some(503) {
            refused += 1;
        }
    }
    assert_eq!(refused, 10);
    drop(held);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(get(server.addr, "/health").status, 200);
}

#[test]
fn accept_failing_with_emfile_does_not_stop_the_server() {
    let config = gitlab(&dead_api());
    // 24 descriptors: a few for the process itself, the rest fill up with connections.
    let server = Proc::start_with_prefix(
        "ulimit -n 24;",
        &["--config", &config, "--read-timeout", "30"],
    );
    let held: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.stderr_text().contains("accept failed") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let log = server.stderr_text();
    assert!(log.contains("accept failed"), "{log}");
    // EMFILE: glibc says "Too many open files", musl "No file descriptors available".
    assert!(log.contains("(os error 24)"), "{log}");
    drop(held);
    // It serves again once descriptors free up (back-off is at most 1 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut status = 0;
    while Instant::now() < deadline {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if let Some(reply) = read_reply(&mut s, &mut Vec::new()) {
            status = reply.status;
            if status == 200 {
                break;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status, 200);
}

#[test]
fn sixteen_bodies_at_the_cap_stay_within_the_memory_formula() {
    const CAP: usize = 4 * 1024 * 1024;
    const THREADS: u64 = 4;
    const CONNS: u64 = 64;
    let fluxd = FakeFluxd::start(Behaviour::Slow(Duration::from_millis(200)));
    let config = config_file(&[Ep::new("DockerHub", KEY)], &fluxd.api());
    let config = config.display().to_string();
    // glibc (this debug build's allocator) keeps freed multi-MiB blocks in per-thread arenas once
    // its dynamic mmap threshold has grown, which the shipped musl binary does not; a fixed
    // threshold makes glibc hand large blocks back as musl does, so the figure is the server's.
    let server = Proc::start_with_prefix(
        "export MALLOC_MMAP_THRESHOLD_=131072;",
        &[
            "--config",
            &config,
            "--max-body-bytes",
            &CAP.to_string(),
            "--threads",
            &THREADS.to_string(),
            "--max-connections",
            &CONNS.to_string(),
            // Every client is on loopback: one address, so its share is all of it.
            "--max-connections-per-client",
            &CONNS.to_string(),
        ],
    );
    let route = route_of(KEY, "");
    let prefix = br#"{"repository":{"repo_name":"acme/podinfo"},"pad":""#;
    let mut body = prefix.to_vec();
    body.resize(CAP - 2, b'x');
    body.extend_from_slice(b"\"}");
    let body = std::sync::Arc::new(body);
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (addr, route, body) = (server.addr, route.clone(), body.clone());
            thread::spawn(move || post(addr, &route, &[], &body).status)
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let peak_kb = server.status("VmHWM");
    // README: RSS ≤ 3 MiB + connections × 208 KiB + (threads + 1) × cap + threads × cap.
    let formula_kb =
        3 * 1024 + CONNS * 144 + (THREADS + 1) * CAP as u64 / 1024 + THREADS * CAP as u64 / 1024;
    eprintln!("16 bodies of {CAP} bytes: peak RSS {peak_kb} kB, formula {formula_kb} kB");
    assert!(
        peak_kb <= formula_kb,
        "peak {peak_kb} kB over the formula's {formula_kb} kB"
    );
    assert_eq!(fluxd.requests().len(), 16);
}

#[test]
fn a_busy_pool_reuses_its_fluxd_connections() {
    // Every round has all four handlers in a fluxd call at once; a pool that kept fewer idle
    // connections than that would close one after each round and connect again in the next.
    const THREADS: usize = 4;
    let fluxd = FakeFluxd::start(Behaviour::Slow(Duration::from_millis(50)));
    let config = config_file(&[Ep::new("DockerHub", KEY)], &fluxd.api());
    let config = config.display().to_string();
    let server = Proc::start(&["--config", &config, "--threads", &THREADS.to_string()]);
    let route = route_of(KEY, "");
    let body = br#"{"repository":{"repo_name":"acme/podinfo"},"push_data":{"tag":"v1"}}"#;
    for round in 0..5 {
        let clients: Vec<_> = (0..THREADS)
            .map(|_| {
                let (addr, route) = (server.addr, route.clone());
                thread::spawn(move || post(addr, &route, &[], body).status)
            })
            .collect();
        let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "round {round}: {statuses:?}"
        );
    }
    assert_eq!(fluxd.requests().len(), 5 * THREADS);
    assert!(
        fluxd.connections() <= THREADS,
        "{} connections to fluxd for {THREADS} handlers",
        fluxd.connections()
    );
}

#[test]
fn fluxd_faults_are_answered_in_time_and_logged_by_kind() {
    let cases = [
        (Behaviour::Status(500), 502, "rejected it with status 500"),
        (Behaviour::Status(400), 502, "rejected it with status 400"),
        (
            Behaviour::Slow(Duration::from_secs(5)),
            504,
            "did not answer in time",
        ),
        (Behaviour::Garbage, 502, "not JSON"),
        (Behaviour::Hangup, 502, "unreachable"),
        (Behaviour::Redirect, 502, "status 302"),
    ];
    // Without redelivery, as the Go original: every fault is answered at once.
    let start = |api: &str| {
        let config = gitlab(api);
        Proc::start(&[
            "--config",
            &config,
            "--notify-timeout",
            "1",
            "--redeliver-for",
            "0",
        ])
    };
    for (behaviour, status, logged) in cases {
        let fluxd = FakeFluxd::start(behaviour);
        let server = start(&fluxd.api());
        let started = Instant::now();
        let reply = raw(server.addr, &delivery(&route_of(KEY, ""))).expect("reply");
        assert_eq!(reply.status, status, "{behaviour:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{behaviour:?}");
        let log = server.stderr_with(logged);
        assert!(log.contains(logged), "{behaviour:?}: {log}");
        // Nothing blocks after: the next request is served at once.
        assert_eq!(get(server.addr, "/health").status, 200);
    }
    // fluxd down: retried within the budget, then 502 saying so.
    let server = start(&dead_api());
    let started = Instant::now();
    let reply = raw(server.addr, &delivery(&route_of(KEY, ""))).expect("reply");
    assert_eq!(reply.status, 502);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        server.stderr_with("attempts").contains("attempts"),
        "{}",
        server.stderr_text()
    );
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let fluxd = FakeFluxd::start(Behaviour::Slow(Duration::from_millis(800)));
    let config = gitlab(&fluxd.api());
    let mut server = Proc::start(&["--config", &config]);
    let (addr, route) = (server.addr, route_of(KEY, ""));
    let in_flight = thread::spawn(move || raw(addr, &delivery(&route)).map(|r| r.status));
    fluxd.wait_for_requests(1);
    server.signal("TERM");
    thread::sleep(Duration::from_millis(100));
    // No new connections once stopping.
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "still accepting after SIGTERM"
    );
    assert_eq!(in_flight.join().unwrap(), Some(200));
    assert_eq!(server.wait_exit(Duration::from_secs(3)), Some(0));
    let log = server.stderr_with("msg=stopped");
    assert!(
        log.contains("msg=stopping signal=SIGTERM in_flight=1"),
        "{log}"
    );
    assert!(log.contains("msg=stopped"), "{log}");
}

#[test]
fn sigint_with_nothing_in_flight_exits_0_at_once() {
    let config = gitlab(&dead_api());
    let mut server = Proc::start(&["--config", &config]);
    // An idle keep-alive connection does not hold the stop up.
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let _ = idle.read(&mut buf).unwrap();
    let started = Instant::now();
    server.signal("INT");
    assert_eq!(server.wait_exit(Duration::from_secs(3)), Some(0));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn sigterm_gives_up_after_the_grace_period() {
    let fluxd = FakeFluxd::start(Behaviour::Slow(Duration::from_secs(10)));
    let config = gitlab(&fluxd.api());
    let mut server = Proc::start(&[
        "--config",
        &config,
        "--notify-timeout",
        "20",
        "--shutdown-grace",
        "0.5",
    ]);
    let (addr, route) = (server.addr, route_of(KEY, ""));
    thread::spawn(move || raw(addr, &delivery(&route)));
    fluxd.wait_for_requests(1);
    let started = Instant::now();
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(3)), Some(0));
    assert!(started.elapsed() < Duration::from_millis(1500));
    let log = server.stderr_with("unanswered");
    assert!(log.contains("unanswered"), "{log}");
}
