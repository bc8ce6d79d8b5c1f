//! Several downstreams, Flux v2 receivers, filters and background redelivery, against the real
//! binary and recording fake downstreams. Figures are printed with `--nocapture`.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use flux_recv::sources::Source;

const GH_KEY: &[u8] = b"downstreams-github-key-0123456789";
const GL_KEY: &[u8] = b"downstreams-gitlab-key-0123456789";
const DH_KEY: &[u8] = b"downstreams-dockerhub-key-0123456789";
const TOKEN: &[u8] = b"receiver-token-0123456789abcdef";

/// A delivery of `source`'s main event with `body`, signed as the provider would.
fn push(server: &Proc, source: Source, key: &[u8], body: &str) -> Reply {
    let sample = source.sample(key, body.as_bytes());
    let headers: Vec<(&str, &str)> = sample
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    post(server.addr, &route_of(key, ""), &headers, body.as_bytes())
}

fn gitlab_body(repo: &str) -> String {
    format!(
        r#"{{"ref":"refs/heads/main","project":{{"git_ssh_url":"git@gitlab.com:acme/{repo}.git"}}}}"#
    )
}

fn gitlab_change(repo: &str) -> String {
    format!(
        r#"{{"Kind":"git","Source":{{"URL":"git@gitlab.com:acme/{repo}.git","Branch":"main"}}}}"#
    )
}

/// One GitLab endpoint notifying the fluxd at `api`.
fn gitlab_config(api: &str) -> String {
    let yaml = format!(
        "fluxRecvVersion: 1\napi: {api}\nendpoints:\n- source: GitLab\n  keyPath: gl.key\n"
    );
    let path = write_yaml(&temp_dir("redeliver"), &yaml, &[("gl.key", GL_KEY)]);
    path.display().to_string()
}

/// A metrics sample's value (the line as rendered, labels in their order).
fn metric(server: &Proc, series: &str) -> f64 {
    let body = get(server.addr, "/metrics").body;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
}

#[test]
fn one_push_fans_out_to_the_downstreams_that_want_it() {
    let a = FakeFluxd::start(Behaviour::Real);
    let b = FakeFluxd::start(Behaviour::Real);
    let v2 = FakeFluxd::start(Behaviour::Receiver(TOKEN));
    let yaml = format!(
        "fluxRecvVersion: 1
notify:
- name: cluster-a
  fluxd: {a}
- name: cluster-b
  fluxd: {b}
  images: [\"mirror.example.com:5000/team-b/*\"]
- name: cluster-v2
  fluxReceiver: http://{v2}/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f
  keyPath: v2.token
  git: [\"github.com/acme/*\"]
endpoints:
- source: GitHub
  keyPath: gh.key
- source: DockerHub
  keyPath: dh.key
  notify: [cluster-b]
",
        a = a.api(),
        b = b.api(),
        v2 = v2.addr,
    );
    let dir = temp_dir("fanout");
    let config = write_yaml(
        &dir,
        &yaml,
        &[("gh.key", GH_KEY), ("dh.key", DH_KEY), ("v2.token", TOKEN)],
    );
    let server = Proc::start(&["--config", &config.display().to_string()]);

    // A git push: cluster-a (no filters) and the Flux v2 receiver (git filter), not cluster-b.
    let body =
        r#"{"ref":"refs/heads/main","repository":{"ssh_url":"git@github.com:acme/app.git"}}"#;
    let reply = push(&server, Source::GitHub, GH_KEY, body);
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "OK"),
        "{reply:?}"
    );
    let git = r#"{"Kind":"git","Source":{"URL":"git@github.com:acme/app.git","Branch":"main"}}"#;
    assert_eq!(a.bodies(), vec![git]);
    assert!(b.requests().is_empty());
    let to_v2 = v2.requests();
    assert_eq!(to_v2.len(), 1);
    assert_eq!(
        to_v2[0].path,
        "/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f"
    );
    assert_eq!(to_v2[0].body_str(), git);
    assert_eq!(to_v2[0].header("Content-Type"), Some("application/json"));
    let signature = format!("sha256={}", hmac_hex("sha256", TOKEN, git.as_bytes()));
    assert_eq!(to_v2[0].header("X-Signature"), Some(signature.as_str()));

    // A push of another org's repo: only cluster-a wants it.
    a.clear();
    v2.clear();
    let body = r#"{"ref":"refs/heads/main","repository":{"ssh_url":"git@github.com:other/x.git"}}"#;
    assert_eq!(push(&server, Source::GitHub, GH_KEY, body).status, 200);
    assert_eq!(a.requests().len(), 1);
    assert!(v2.requests().is_empty());

    // An image push on an endpoint that feeds cluster-b only, matching its filter.
    a.clear();
    let body = r#"{"repository":{"repo_name":"mirror.example.com:5000/team-b/api"}}"#;
    assert_eq!(push(&server, Source::DockerHub, DH_KEY, body).status, 200);
    assert_eq!(
        b.bodies(),
        vec![
            r#"{"Kind":"image","Source":{"Name":{"Domain":"mirror.example.com:5000","Image":"team-b/api"}}}"#
        ]
    );
    assert!(a.requests().is_empty() && v2.requests().is_empty());

    // An image nobody wants: 200 ignored, nobody called.
    b.clear();
    let body = r#"{"repository":{"repo_name":"mirror.example.com:5000/team-c/api"}}"#;
    let reply = push(&server, Source::DockerHub, DH_KEY, body);
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "ignored: no downstream wants this change")
    );
    assert!(a.requests().is_empty() && b.requests().is_empty() && v2.requests().is_empty());

    // The start-up lines name each endpoint's downstreams.
    let log = server.stderr_with("msg=endpoint source=DockerHub");
    assert!(
        log.contains("notify=cluster-a,cluster-b,cluster-v2"),
        "{log}"
    );
    assert!(log.contains("notify=cluster-b"), "{log}");
}

#[test]
fn the_fake_receiver_checks_signatures_as_go_github_does() {
    // The stand-in must itself be right, or the fan-out test proves nothing.
    let v2 = FakeFluxd::start(Behaviour::Receiver(TOKEN));
    let body = br#"{"Kind":"git","Source":{"URL":"u","Branch":"b"}}"#;
    for (header, status) in [
        (format!("sha1={}", hmac_hex("sha1", TOKEN, body)), 200),
        (format!("sha256={}", hmac_hex("sha256", TOKEN, body)), 200),
        (format!("sha512={}", hmac_hex("sha512", TOKEN, body)), 200),
        (
            format!("sha256={}", hmac_hex("sha256", b"other", body)),
            400,
        ),
        (format!("md5={}", hmac_hex("sha256", TOKEN, body)), 400),
        (String::new(), 400),
    ] {
        let reply = post(v2.addr, "/hook/x", &[("X-Signature", &header)], body);
        assert_eq!(reply.status, status, "{header}");
    }
}

#[test]
fn a_receiver_that_refuses_the_signature_is_502_and_not_retried() {
    let v2 = FakeFluxd::start(Behaviour::Receiver(b"the receiver's real token"));
    let yaml = format!(
        "fluxRecvVersion: 1\nnotify:\n- name: v2\n  fluxReceiver: http://{}/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f\n  keyPath: v2.token\nendpoints:\n- source: GitLab\n  keyPath: gl.key\n",
        v2.addr
    );
    let config = write_yaml(
        &temp_dir("v2-refused"),
        &yaml,
        &[("gl.key", GL_KEY), ("v2.token", TOKEN)],
    );
    let server = Proc::start(&["--config", &config.display().to_string()]);
    let reply = push(&server, Source::GitLab, GL_KEY, &gitlab_body("app"));
    assert_eq!(reply.status, 502, "{reply:?}");
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(v2.requests().len(), 1, "a permanent refusal is not retried");
    let log = server.stderr_with("outcome=refused");
    assert!(log.contains("rejected it with status 400"), "{log}");
    // The log says what a Receiver's 400 usually means; the reply names no downstream kind.
    assert!(
        log.contains("compare the downstream's keyPath file with the Receiver's Secret"),
        "{log}"
    );
    assert_eq!(reply.body, "A downstream did not accept the notification");
}

/// The sender's delivery id goes on to the downstream as `X-Request-Id`, on the direct call and
/// on a redelivery, so that both sides' logs can be matched.
#[test]
fn the_delivery_id_goes_on_to_the_downstream() {
    let fluxd_addr = free_addr();
    let config = gitlab_config(&format!("http://{fluxd_addr}/api/flux"));
    let server = Proc::start(&["--config", &config]);
    let sample = Source::GitLab.sample(GL_KEY, gitlab_body("queued").as_bytes());
    let mut headers: Vec<(&str, &str)> = sample
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .filter(|(n, _)| !n.eq_ignore_ascii_case("X-Gitlab-Event-UUID"))
        .collect();
    headers.push(("X-Gitlab-Event-UUID", "redelivered-id\t1"));
    let queued = post(server.addr, &route_of(GL_KEY, ""), &headers, &sample.body);
    assert_eq!(queued.status, 202);
    assert_eq!(queued.header("X-Request-Id"), Some("redelivered-id1"));
    let fluxd = FakeFluxd::start_on(fluxd_addr, Behaviour::Real);
    fluxd.wait_for_requests(1);
    assert_eq!(
        fluxd.requests()[0].header("X-Request-Id"),
        Some("redelivered-id1")
    );
    fluxd.clear();
    // Now up: a direct call, with a generated id when the sender gave none.
    let reply = push(&server, Source::GitLab, GL_KEY, &gitlab_body("direct"));
    assert_eq!(reply.status, 200);
    let sent = fluxd.requests()[0]
        .header("X-Request-Id")
        .map(str::to_owned);
    assert!(sent.is_some());
    assert_eq!(sent.as_deref(), reply.header("X-Request-Id"));
}

#[test]
fn while_fluxd_is_down_pushes_are_queued_coalesced_and_delivered_when_it_is_back() {
    let fluxd_addr = free_addr();
    let config = gitlab_config(&format!("http://{fluxd_addr}/api/flux"));
    let server = Proc::start(&["--config", &config, "--notify-timeout", "1"]);
    let started = Instant::now();
    let repos = ["infra", "apps", "platform"];
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let sent = Instant::now();
        let reply = push(&server, Source::GitLab, GL_KEY, &gitlab_body(repos[i % 3]));
        slowest = slowest.max(sent.elapsed());
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (202, "Accepted: queued for redelivery"),
            "delivery {i}"
        );
    }
    assert_eq!(
        metric(
            &server,
            r#"flux_recv_redelivery_pending{downstream="fluxd"}"#
        ),
        3.0,
        "20 pushes for 3 repos are 3 entries"
    );
    // fluxd comes back about 5 s after the first push.
    thread::sleep(Duration::from_secs(5).saturating_sub(started.elapsed()));
    let fluxd = FakeFluxd::start_on(fluxd_addr, Behaviour::Real);
    let back = Instant::now();
    wait_until("3 redeliveries", Duration::from_secs(20), || {
        fluxd.requests().len() >= 3
    });
    let caught_up = back.elapsed();
    thread::sleep(Duration::from_millis(300));
    let mut got = fluxd.bodies();
    got.sort();
    let mut want: Vec<String> = repos.iter().map(|r| gitlab_change(r)).collect();
    want.sort();
    assert_eq!(got, want, "each change exactly once");
    assert_eq!(
        metric(
            &server,
            r#"flux_recv_redelivery_pending{downstream="fluxd"}"#
        ),
        0.0
    );
    assert_eq!(
        metric(
            &server,
            r#"flux_recv_redeliveries_total{downstream="fluxd",result="delivered"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &server,
            r#"flux_recv_requests_total{source="GitLab",outcome="queued"}"#
        ),
        20.0
    );
    let log = server.stderr_with("msg=redelivered");
    assert_eq!(log.matches("msg=redelivered ").count(), 3, "{log}");
    assert!(log.contains("msg=\"queued for redelivery\""), "{log}");
    println!(
        "redelivery: 20 pushes answered 202 (slowest {:.1} ms); fluxd back after {:.1} s; last queued change delivered {:.2} s after fluxd came back",
        slowest.as_secs_f64() * 1000.0,
        back.duration_since(started).as_secs_f64(),
        caught_up.as_secs_f64()
    );
}

#[test]
fn an_endpoints_own_notify_timeout_answers_a_registry_in_time() {
    // A registry gives up after 1 s; fluxd takes 3 s: the endpoint's 0.3 s budget queues the
    // change and answers 202 long before the registry's timeout.
    let fluxd = FakeFluxd::start(Behaviour::Slow(Duration::from_secs(3)));
    let yaml = format!(
        "fluxRecvVersion: 1\napi: {}\nendpoints:\n- source: GitLab\n  keyPath: gl.key\n  notifyTimeout: 0.3\n",
        fluxd.api()
    );
    let config = write_yaml(&temp_dir("endpoint-timeout"), &yaml, &[("gl.key", GL_KEY)]);
    let server = Proc::start(&["--config", &config.display().to_string()]);
    let started = Instant::now();
    let reply = push(&server, Source::GitLab, GL_KEY, &gitlab_body("app"));
    let took = started.elapsed();
    assert_eq!(reply.status, 202, "{reply:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(900),
        "{took:?}"
    );
}

#[test]
fn a_fluxd_that_answers_400_is_502_and_never_retried() {
    let fluxd = FakeFluxd::start(Behaviour::Status(400));
    let server = Proc::start(&["--config", &gitlab_config(&fluxd.api())]);
    let reply = push(&server, Source::GitLab, GL_KEY, &gitlab_body("app"));
    assert_eq!(reply.status, 502, "{reply:?}");
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(fluxd.requests().len(), 1);
    assert_eq!(
        metric(
            &server,
            r#"flux_recv_redelivery_pending{downstream="fluxd"}"#
        ),
        0.0
    );
}

#[test]
fn a_full_queue_refuses_with_502_and_counts_the_drop() {
    let server = Proc::start(&[
        "--config",
        &gitlab_config(&dead_api()),
        "--redeliver-max",
        "2",
    ]);
    assert_eq!(
        push(&server, Source::GitLab, GL_KEY, &gitlab_body("one")).status,
        202
    );
    assert_eq!(
        push(&server, Source::GitLab, GL_KEY, &gitlab_body("two")).status,
        202
    );
    // The same change again coalesces: no room needed.
    assert_eq!(
        push(&server, Source::GitLab, GL_KEY, &gitlab_body("one")).status,
        202
    );
    let full = push(&server, Source::GitLab, GL_KEY, &gitlab_body("three"));
    assert_eq!(full.status, 502, "{full:?}");
    assert_eq!(
        metric(
            &server,
            r#"flux_recv_redelivery_dropped_total{downstream="fluxd",reason="queue_full"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &server,
            r#"flux_recv_requests_total{source="GitLab",outcome="queue_full"}"#
        ),
        1.0
    );
    assert!(server
        .stderr_with("reason=queue_full")
        .contains("acme/three.git"));
}

#[test]
fn a_change_past_the_horizon_is_dropped_and_counted() {
    let server = Proc::start(&[
        "--config",
        &gitlab_config(&dead_api()),
        "--redeliver-for",
        "1.5",
    ]);
    assert_eq!(
        push(&server, Source::GitLab, GL_KEY, &gitlab_body("app")).status,
        202
    );
    // Tries at about 1 s (fails) and 3 s (past the 1.5 s horizon: dropped).
    let series = r#"flux_recv_redelivery_dropped_total{downstream="fluxd",reason="expired"}"#;
    wait_until("the drop", Duration::from_secs(8), || {
        metric(&server, series) == 1.0
    });
    assert_eq!(
        metric(
            &server,
            r#"flux_recv_redelivery_pending{downstream="fluxd"}"#
        ),
        0.0
    );
    assert!(server
        .stderr_with("reason=expired")
        .contains("msg=\"redelivery dropped\""));
}

#[test]
fn sigterm_gives_pending_changes_one_last_try_then_logs_what_is_dropped() {
    // fluxd stays down: the last try fails, the drop is logged, the exit is clean.
    let mut down = Proc::start(&[
        "--config",
        &gitlab_config(&dead_api()),
        "--shutdown-grace",
        "2",
    ]);
    assert_eq!(
        push(&down, Source::GitLab, GL_KEY, &gitlab_body("app")).status,
        202
    );
    down.signal("TERM");
    assert_eq!(down.wait_exit(Duration::from_secs(4)), Some(0));
    let log = down.stderr_with("reason=shutdown");
    assert!(
        log.contains("msg=\"redelivery dropped\"") && log.contains("reason=shutdown"),
        "{log}"
    );

    // fluxd is back just before the stop: the last try delivers.
    let fluxd_addr = free_addr();
    let config = gitlab_config(&format!("http://{fluxd_addr}/api/flux"));
    let mut back = Proc::start(&["--config", &config, "--shutdown-grace", "2"]);
    assert_eq!(
        push(&back, Source::GitLab, GL_KEY, &gitlab_body("app")).status,
        202
    );
    let fluxd = FakeFluxd::start_on(fluxd_addr, Behaviour::Real);
    back.signal("TERM");
    assert_eq!(back.wait_exit(Duration::from_secs(4)), Some(0));
    assert_eq!(fluxd.bodies(), vec![gitlab_change("app")]);
    assert!(back
        .stderr_with("msg=redelivered")
        .contains("msg=redelivered"));
}

/// p99 of `n` sequential pushes' reply times.
fn p99(server: &Proc, key: &[u8], n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let started = Instant::now();
            let reply = push(
                server,
                Source::GitLab,
                key,
                &gitlab_body(&format!("healthy-{}", i % 5)),
            );
            assert_eq!(reply.status, 200, "{reply:?}");
            started.elapsed()
        })
        .collect();
    times.sort();
    times[(n * 99 / 100).min(n - 1)]
}

#[test]
fn a_hanging_downstream_does_not_slow_the_healthy_one() {
    const HANGING_KEY: &[u8] = b"downstreams-hanging-key-0123456789";
    const BOTH_KEY: &[u8] = b"downstreams-both-key-0123456789";
    let healthy = FakeFluxd::start(Behaviour::Real);
    let hanging = FakeFluxd::start(Behaviour::Hang);
    let yaml = format!(
        "fluxRecvVersion: 1\nnotify:\n- name: healthy\n  fluxd: {}\n- name: hanging\n  fluxd: {}\nendpoints:\n- source: GitLab\n  keyPath: healthy.key\n  notify: [healthy]\n- source: GitLab\n  keyPath: hanging.key\n  notify: [hanging]\n- source: GitLab\n  keyPath: both.key\n",
        healthy.api(),
        hanging.api()
    );
    let config = write_yaml(
        &temp_dir("hanging"),
        &yaml,
        &[
            ("healthy.key", GL_KEY),
            ("hanging.key", HANGING_KEY),
            ("both.key", BOTH_KEY),
        ],
    );
    // The pushes below come back to back, faster than --notify-rate lets through: this test
    // measures isolation, so the rate is off.
    let server = Proc::start(&[
        "--config",
        &config.display().to_string(),
        "--notify-timeout",
        "1",
        "--notify-rate",
        "0",
    ]);
    let without = p99(&server, GL_KEY, 200);

    // Now 8 clients keep pushing to the hanging downstream the whole time (each pausing 5 ms, so
    // that the machine's 2 cores are not what is measured).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = server.addr;
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            thread::spawn(move || {
                let sample = Source::GitLab.sample(HANGING_KEY, gitlab_body("hung").as_bytes());
                let headers: Vec<(&str, &str)> = sample
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let reply = post(addr, &route_of(HANGING_KEY, ""), &headers, &sample.body);
                    assert_eq!(reply.status, 202, "{reply:?}");
                    thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    hanging.wait_for_requests(1);
    let with = p99(&server, GL_KEY, 200);

    // A push for both: the healthy one hears of it at once, whatever the other does.
    healthy.clear();
    let sent = Instant::now();
    let reply = push(&server, Source::GitLab, BOTH_KEY, &gitlab_body("both"));
    let arrived = {
        wait_until("the healthy copy", Duration::from_secs(2), || {
            !healthy.requests().is_empty()
        });
        sent.elapsed()
    };
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for client in flood {
        client.join().unwrap();
    }
    assert_eq!(reply.status, 202, "the hanging half is queued: {reply:?}");
    println!(
        "healthy-path p99 over 200 pushes: {:.2} ms alone, {:.2} ms beside a hanging downstream under 8 clients; a push for both reached the healthy one in {:.1} ms",
        without.as_secs_f64() * 1000.0,
        with.as_secs_f64() * 1000.0,
        arrived.as_secs_f64() * 1000.0
    );
    let bound = (without * 5).max(Duration::from_millis(250));
    assert!(
        with <= bound,
        "p99 {with:?} beside the hanging downstream, {without:?} alone"
    );
    assert!(arrived < Duration::from_millis(500), "{arrived:?}");
}

#[test]
fn check_and_endpoints_show_each_endpoints_downstreams() {
    let yaml = "fluxRecvVersion: 1
notify:
- name: a
  fluxd: http://fluxd.a.internal:3030/api/flux
- name: b
  fluxReceiver: https://flux-webhook.b.internal/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f
  keyPath: b.token
  images: [\"mirror.internal/*\"]
endpoints:
- source: GitLab
  keyPath: gl.key
  notify: [b]
- source: GitHub
  keyPath: gh.key
";
    let config = write_yaml(
        &temp_dir("show"),
        yaml,
        &[("gl.key", GL_KEY), ("gh.key", GH_KEY), ("b.token", TOKEN)],
    );
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flux-recv"))
            .args(args)
            .output()
            .unwrap()
    };
    // A bad downstream stops start-up and check alike, naming it and the field.
    let bad = write_yaml(
        &temp_dir("show-bad"),
        "fluxRecvVersion: 1\nnotify:\n- name: b\n  fluxReceiver: http://b/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
        &[("gh.key", GH_KEY)],
    )
    .display()
    .to_string();
    for args in [
        &["check", "--config", &bad][..],
        &["--config", &bad, "--listen", "127.0.0.1:0"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("notify[0] (b): fluxReceiver needs keyPath"),
            "{args:?}: {err}"
        );
    }
    let config = config.display().to_string();
    let out = run(&["check", "--config", &config]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if cfg!(feature = "tls") {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("downstream a: fluxd http://fluxd.a.internal:3030/api/flux"),
            "{text}"
        );
        assert!(
            text.contains(
                "downstream b: receiver https://flux-webhook.b.internal/hook/81bae876…, filtered"
            ),
            "{text}"
        );
        assert!(
            !text.contains("81bae876b70513c9"),
            "a receiver's whole path is not printed, only its first 8 hex digits: {text}"
        );
        assert!(text.contains("endpoints[0] (GitLab) notifies b"), "{text}");
        assert!(
            text.contains("endpoints[1] (GitHub) notifies a,b"),
            "{text}"
        );
        let out = run(&["endpoints", "--config", &config]);
        let rows = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            rows.lines().nth(1).is_some_and(|r| r.contains(" b ")),
            "{rows}"
        );
        assert!(
            rows.lines().nth(2).is_some_and(|r| r.contains(" a,b ")),
            "{rows}"
        );
    } else {
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("notify[1] (b): fluxReceiver") && err.contains("no TLS"),
            "{err}"
        );
    }
}

#[test]
fn one_hanging_downstream_among_a_thousand_delays_none_of_the_others() {
    const FLEET: usize = 1000;
    let healthy = FakeFluxd::start(Behaviour::Receiver(TOKEN));
    let hanging = FakeFluxd::start(Behaviour::Hang);
    let mut yaml = String::from("fluxRecvVersion: 1\nnotify:\n");
    for i in 0..FLEET {
        // The hanging one sits in the middle, so calls are queued both before and after it.
        let at = if i == FLEET / 2 {
            hanging.addr
        } else {
            healthy.addr
        };
        yaml += &format!(
            "- name: cluster-{i}\n  fluxReceiver: http://{at}/hook/{i:064x}\n  keyPath: v2.token\n"
        );
    }
    yaml += "endpoints:\n- source: GitLab\n  keyPath: gl.key\n";
    let config = write_yaml(
        &temp_dir("fleet"),
        &yaml,
        &[("gl.key", GL_KEY), ("v2.token", TOKEN)],
    );
    // Under the test client's 10 s wait for the reply, which comes once the hanging call ends.
    let timeout = Duration::from_secs(4);
    let server = Proc::start(&[
        "--config",
        &config.display().to_string(),
        "--notify-timeout",
        &timeout.as_secs().to_string(),
    ]);

    let sent = Instant::now();
    let (arrived, reply) = thread::scope(|scope| {
        let pusher = scope.spawn(|| push(&server, Source::GitLab, GL_KEY, &gitlab_body("fleet")));
        wait_until("every healthy receiver", timeout, || {
            healthy.requests().len() >= FLEET - 1
        });
        (sent.elapsed(), pusher.join().unwrap())
    });
    println!(
        "{} healthy receivers beside a hanging one all had the push {:.0} ms after it was sent",
        FLEET - 1,
        arrived.as_secs_f64() * 1000.0
    );
    // Every healthy receiver had it long before the hanging call's deadline, each once and
    // verified (the fake answers 400 to a bad signature, which would have been a 502).
    assert!(arrived < timeout / 2, "{arrived:?}");
    let requests = healthy.requests();
    assert_eq!(requests.len(), FLEET - 1);
    let paths: std::collections::HashSet<_> = requests.iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths.len(), FLEET - 1, "one call per receiver");
    assert!(
        hanging.connections() >= 1,
        "the hanging receiver was called"
    );
    assert_eq!(reply.status, 202, "the hanging part is queued: {reply:?}");
}
