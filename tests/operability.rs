//! What an operator sees: /metrics (checked with Prometheus's own text parser), logfmt and JSON
//! logs, request ids, /ready, sub-commands, the environment, and hot reload.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const KEY: &[u8] = b"operability-key-0123456789abcdef";
const PUSH: &[u8] = include_bytes!("fixtures/gitlab/push.json");

fn gitlab_headers(key: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("X-Gitlab-Event", "Push Hook".into()),
        ("X-Gitlab-Token", String::from_utf8(key.to_vec()).unwrap()),
    ]
}

fn push(addr: std::net::SocketAddr, key: &[u8], extra: &[(&str, &str)]) -> Reply {
    let mut headers: Vec<(&str, String)> = gitlab_headers(key);
    headers.extend(extra.iter().map(|(n, v)| (*n, v.to_string())));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    post(addr, &route_of(key, ""), &headers, PUSH)
}

/// Where `prometheus_client` can be imported from: the Python's own when it has it, else a
/// folder under the target dir that pip fills once, so `cargo test` alone runs on a fresh machine.
fn prometheus_client_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = concat!(env!("CARGO_TARGET_TMPDIR"), "/pydeps");
        let importable = Command::new("python3")
            .args(["-c", "import prometheus_client"])
            .env("PYTHONPATH", dir)
            .output()
            .is_ok_and(|out| out.status.success());
        if !importable {
            let out = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(["--target", dir, "prometheus_client"])
                .output()
                .expect("python3");
            assert!(
                out.status.success(),
                "pip could not install prometheus_client into {dir}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir.to_owned()
    })
}

/// Parses exposition text with prometheus_client's parser; returns `name{labels} value` lines.
fn prometheus_parse(text: &str) -> Vec<String> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .env("PYTHONPATH", prometheus_client_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn sample(samples: &[String], name_and_labels: &str) -> f64 {
    samples
        .iter()
        .find_map(|s| {
            s.strip_prefix(name_and_labels)?
                .strip_prefix(' ')?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no sample {name_and_labels}"))
}

#[test]
fn metrics_parse_and_move_after_deliveries() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let config = config_file(&[Ep::new("GitLab", KEY)], &fluxd.api());
    let server = Proc::start(&["--config", &config.display().to_string()]);
    let scrape = || {
        let reply = get(server.addr, "/metrics");
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("Content-Type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        prometheus_parse(&reply.body)
    };
    let before = scrape();
    // Series for the config's one source and `none`, not for every source flux-recv knows.
    let sources: std::collections::BTreeSet<&str> = before
        .iter()
        .filter(|s| s.starts_with("flux_recv_requests_total{"))
        .filter_map(|s| s.split("source=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(sources.into_iter().collect::<Vec<_>>(), ["GitLab", "none"]);
    let notified = r#"flux_recv_requests_total{outcome="notified",source="GitLab"}"#;
    let unauthorized = r#"flux_recv_requests_total{outcome="unauthorized",source="GitLab"}"#;
    let not_found = r#"flux_recv_requests_total{outcome="not_found",source="none"}"#;
    assert_eq!(sample(&before, notified), 0.0);
    assert_eq!(push(server.addr, KEY, &[]).status, 200);
    assert_eq!(push(server.addr, KEY, &[]).status, 200);
    assert_eq!(push(server.addr, b"wrong", &[]).status, 404);
    let wrong_token = post(
        server.addr,
        &route_of(KEY, ""),
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "nope")],
        PUSH,
    );
    assert_eq!(wrong_token.status, 401);
    let after = scrape();
    assert_eq!(sample(&after, notified), 2.0);
    assert_eq!(sample(&after, unauthorized), 1.0);
    assert_eq!(sample(&after, not_found), 1.0);
    assert_eq!(
        sample(&after, r#"flux_recv_notify_total{result="ok"}"#),
        2.0
    );
    assert_eq!(
        sample(&after, "flux_recv_notify_duration_seconds_count{}"),
        2.0
    );
    assert_eq!(sample(&after, "flux_recv_request_body_bytes_count{}"), 3.0);
    assert_eq!(sample(&after, "flux_recv_endpoints{}"), 1.0);
    // Scrapes are answered on their connection's thread; no delivery is in the pool.
    assert_eq!(sample(&after, "flux_recv_busy_handlers{}"), 0.0);
    assert!(sample(&after, "flux_recv_open_connections{}") >= 1.0);
    assert_eq!(
        sample(
            &after,
            &format!(
                r#"flux_recv_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    let started = sample(&after, "process_start_time_seconds{}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(started > now - 60.0 && started <= now, "{started} vs {now}");
    // No label value comes from a request.
    for line in &after {
        assert!(
            !line.contains("/hook/") && !line.contains("fleet-infra"),
            "{line}"
        );
    }
    // A delivery waiting on a slow fluxd holds one pool handler, and gives it back.
    fluxd.set(Behaviour::Slow(Duration::from_millis(800)));
    let addr = server.addr;
    let in_flight = thread::spawn(move || push(addr, KEY, &[]).status);
    fluxd.wait_for_requests(3);
    assert_eq!(sample(&scrape(), "flux_recv_busy_handlers{}"), 1.0);
    assert_eq!(in_flight.join().unwrap(), 200);
    assert_eq!(sample(&scrape(), "flux_recv_busy_handlers{}"), 0.0);
}

#[test]
fn metrics_on_their_own_listener_leave_the_main_one() {
    let config = config_file(&[Ep::new("GitLab", KEY)], &dead_api());
    let server = Proc::start(&[
        "--config",
        &config.display().to_string(),
        "--listen-metrics",
        "127.0.0.1:0",
    ]);
    let line = server.stderr_text();
    let metrics_addr: std::net::SocketAddr = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("metrics="))
        .expect("metrics= on the listening line")
        .parse()
        .unwrap();
    assert_eq!(get(server.addr, "/metrics").status, 404);
    let reply = get(metrics_addr, "/metrics");
    assert_eq!(reply.status, 200);
    assert!(!prometheus_parse(&reply.body).is_empty());
    assert_eq!(get(metrics_addr, "/health").status, 200);
    assert_eq!(get(metrics_addr, &route_of(KEY, "")).status, 404);
}

#[test]
fn logfmt_and_json_lines_carry_the_same_fields() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let config = config_file(&[Ep::new("GitLab", KEY)], &fluxd.api());
    let config = config.display().to_string();
    let fields = [
        "source",
        "hook",
        "delivery",
        "outcome",
        "status",
        "changes",
        "elapsed_ms",
    ];
    let logfmt = Proc::start(&["--config", &config]);
    push(
        logfmt.addr,
        KEY,
        &[("Idempotency-Key", "e0c6f4a1-1111-2222-3333-444455556666")],
    );
    let text = logfmt.stderr_with("msg=request");
    let line = text
        .lines()
        .find(|l| l.contains("msg=request"))
        .expect("a request line");
    assert!(line.starts_with("ts=20"), "{line}");
    assert!(
        line.contains(" level=info msg=request source=GitLab "),
        "{line}"
    );
    assert!(
        line.contains(" delivery=e0c6f4a1-1111-2222-3333-444455556666 "),
        "{line}"
    );
    assert!(
        line.contains(" outcome=notified status=200 changes=1 "),
        "{line}"
    );
    for field in fields {
        assert!(
            line.contains(&format!(" {field}=")),
            "{field} missing: {line}"
        );
    }

    let json = Proc::start(&["--config", &config, "--log-format", "json"]);
    push(
        json.addr,
        KEY,
        &[(
            "X-Gitlab-Event-UUID",
            "9b7d1e22-aaaa-bbbb-cccc-ddddeeeeffff",
        )],
    );
    let text = json.stderr_with("\"msg\":\"request\"");
    let mut request_lines = 0;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["ts"].is_string() && v["level"].is_string() && v["msg"].is_string(),
            "{line}"
        );
        if v["msg"] == "request" {
            request_lines += 1;
            for field in fields {
                assert!(!v[field].is_null(), "{field} missing: {line}");
            }
            assert_eq!(v["status"], 200);
            assert_eq!(v["delivery"], "9b7d1e22-aaaa-bbbb-cccc-ddddeeeeffff");
        }
    }
    assert_eq!(request_lines, 1);
}

#[test]
fn log_level_warn_hides_info_lines() {
    let config = config_file(&[Ep::new("GitLab", KEY)], &dead_api());
    // The listening line is info: without it the kit cannot find the port, so read it from
    // /proc instead is overkill; use a known port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(env!("CARGO_BIN_EXE_flux-recv"))
        .args([
            "--config",
            &config.display().to_string(),
            "--log-level=warn",
        ])
        .arg(format!("--listen=127.0.0.1:{port}"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_err() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(push(addr, b"wrong-key", &[]).status, 404); // warn
    assert_eq!(get(addr, "/health").status, 200);
    // A graceful stop: requests in progress (and their log lines) finish first.
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("level=info"), "{text}");
    assert!(text.contains("level=warn msg=request"), "{text}");
}

#[test]
fn request_ids_are_echoed_or_generated() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let config = config_file(&[Ep::new("GitLab", KEY)], &fluxd.api());
    let server = Proc::start(&["--config", &config.display().to_string()]);
    let given = push(server.addr, KEY, &[("X-Gitlab-Event-UUID", "given-id-1")]);
    assert_eq!(given.header("X-Request-Id"), Some("given-id-1"));
    let first = push(server.addr, KEY, &[]);
    let second = push(server.addr, KEY, &[]);
    let (a, b) = (
        first.header("X-Request-Id").unwrap(),
        second.header("X-Request-Id").unwrap(),
    );
    assert_eq!(a.len(), 16);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
    assert!(server
        .stderr_with(&format!("delivery={a}"))
        .contains(&format!("delivery={a}")));
}

#[test]
fn ready_is_200_while_serving_and_503_while_stopping() {
    let fluxd = FakeFluxd::start(Behaviour::Slow(Duration::from_millis(800)));
    let config = config_file(&[Ep::new("GitLab", KEY)], &fluxd.api());
    let mut server = Proc::start(&["--config", &config.display().to_string()]);
    assert_eq!(get(server.addr, "/ready").status, 200);
    // A kept-alive connection, opened before the stop.
    let mut kept = TcpStream::connect(server.addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::Write;
    kept.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_reply(&mut kept, &mut buf).unwrap().status, 200);
    let addr = server.addr;
    let in_flight = thread::spawn(move || push(addr, KEY, &[]).status);
    fluxd.wait_for_requests(1);
    server.signal("TERM");
    thread::sleep(Duration::from_millis(100));
    kept.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut kept, &mut buf).unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (503, "Stopping"));
    assert_eq!(in_flight.join().unwrap(), 200);
    assert_eq!(server.wait_exit(Duration::from_secs(3)), Some(0));
}

fn flux_recv(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flux-recv"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn sub_commands() {
    let dir = temp_dir("subcommands");
    std::fs::write(dir.join("gh.key"), b"github-key-0123456789").unwrap();
    std::fs::write(dir.join("nx.key"), b"nexus-key-0123456789").unwrap();
    let config = dir.join("fluxrecv.yaml");
    std::fs::write(
        &config,
        "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n- source: Nexus\n  keyPath: nx.key\n  registryHost: r.example.com\n",
    )
    .unwrap();
    let config_s = config.display().to_string();

    let out = flux_recv(&["endpoints", "--config", &config_s], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[1].starts_with("GitHub") && rows[1].contains("gh.key"));
    assert!(rows[1].ends_with(&route_of(b"github-key-0123456789", "")));
    assert!(rows[2].ends_with(&route_of(b"nexus-key-0123456789", "r.example.com")));

    let out = flux_recv(
        &[
            "endpoints",
            &format!("--config={config_s}"),
            "--base-url",
            "https://recv.example.com/",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "https://recv.example.com{}",
            route_of(b"github-key-0123456789", "")
        )),
        "{text}"
    );

    let out = flux_recv(&["check", "--config", &config_s], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 endpoint(s)"));

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "fluxRecvVersion: 2\nendpoints:\n- source: Nope\n  keyPath: none.key\n",
    )
    .unwrap();
    let out = flux_recv(&["check", "--config", &bad.display().to_string()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fluxRecvVersion") && err.contains("\"Nope\"") && err.contains("none.key"),
        "{err}"
    );

    let key = dir.join("nx.key").display().to_string();
    let out = flux_recv(&["digest", &key, "--registry-host", "r.example.com"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        route_of(b"nexus-key-0123456789", "r.example.com")
    );
    let out = flux_recv(&["digest", "/nonexistent/key"], &[]);
    assert_eq!(out.status.code(), Some(1));

    for sub in ["endpoints", "check", "digest"] {
        let out = flux_recv(&[sub, "--help"], &[]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("flux-recv {sub}")));
    }
    let out = flux_recv(&["--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "endpoints",
        "check",
        "digest",
        "FLUX_RECV_",
        "--log-format",
        "--listen-metrics",
        "SIGHUP",
    ] {
        assert!(help.contains(word), "help lacks {word}");
    }
    let out = flux_recv(&["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_environment_sets_flags_and_flags_win() {
    let dir = temp_dir("env");
    std::fs::write(dir.join("gh.key"), b"github-key-0123456789").unwrap();
    let config = dir.join("fluxrecv.yaml");
    std::fs::write(
        &config,
        "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
    )
    .unwrap();
    let config_s = config.display().to_string();
    // FLUX_RECV_CONFIG alone is enough for a sub-command.
    let out = flux_recv(&["check"], &[("FLUX_RECV_CONFIG", &config_s)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The flag wins over the environment.
    let out = flux_recv(
        &["check", "--config", &config_s],
        &[("FLUX_RECV_CONFIG", "/nonexistent.yaml")],
    );
    assert_eq!(out.status.code(), Some(0));
    // A bad value from the environment is named like a flag.
    let out = flux_recv(
        &[],
        &[
            ("FLUX_RECV_THREADS", "many"),
            ("FLUX_RECV_CONFIG", &config_s),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
    // And the server takes its listen address from the environment.
    let server = Proc::start_with_prefix(
        &format!("export FLUX_RECV_CONFIG='{config_s}' FLUX_RECV_LOG_FORMAT=json;"),
        &[],
    );
    assert_eq!(get(server.addr, "/health").status, 200);
    assert!(
        server.stderr_text().starts_with('{'),
        "{}",
        server.stderr_text()
    );
}

/// Writes a config whose only endpoint is a GitLab one with `key`.
fn write_config(dir: &Path, key: &[u8], api: &str) {
    let yaml = format!(
        "fluxRecvVersion: 1\napi: {api}\nendpoints:\n- source: GitLab\n  keyPath: gl.key\n"
    );
    write_yaml(dir, &yaml, &[("gl.key", key)]);
}

#[test]
fn sighup_reloads_and_a_broken_config_keeps_the_old_one() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let dir = temp_dir("sighup");
    let (old, new) = (
        b"old-key-0123456789abcdef".as_slice(),
        b"new-key-0123456789abcdef".as_slice(),
    );
    write_config(&dir, old, &fluxd.api());
    let config = dir.join("fluxrecv.yaml").display().to_string();
    // A long watch interval: only the signal can trigger this reload.
    let server = Proc::start(&["--config", &config, "--watch-interval", "3600"]);
    assert_eq!(push(server.addr, old, &[]).status, 200);
    write_config(&dir, new, &fluxd.api());
    server.signal("HUP");
    wait_until("the new key", Duration::from_secs(3), || {
        push(server.addr, new, &[]).status == 200
    });
    assert_eq!(push(server.addr, old, &[]).status, 404);
    let reloaded = "msg=\"config reloaded\" trigger=SIGHUP";
    assert!(server.stderr_with(reloaded).contains(reloaded));

    // A broken config: the previous one keeps serving, every problem is logged, the failure counted.
    std::fs::write(
        dir.join("fluxrecv.yaml"),
        "fluxRecvVersion: 7\nendpoints:\n- source: Nope\n  keyPath: gone.key\n",
    )
    .unwrap();
    server.signal("HUP");
    wait_until("the failed reload", Duration::from_secs(3), || {
        server.stderr_text().contains("config reload failed")
    });
    assert_eq!(push(server.addr, new, &[]).status, 200);
    let log = server.stderr_text();
    assert!(
        log.contains("fluxRecvVersion is 7") && log.contains("\\\"Nope\\\""),
        "{log}"
    );
    let metrics = get(server.addr, "/metrics").body;
    assert!(
        metrics.contains("flux_recv_config_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flux_recv_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_key_file_change_on_disk_reloads_without_a_signal() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let dir = temp_dir("watch");
    let (old, new) = (
        b"old-key-0123456789abcdef".as_slice(),
        b"new-key-0123456789abcdef".as_slice(),
    );
    write_config(&dir, old, &fluxd.api());
    let config = dir.join("fluxrecv.yaml").display().to_string();
    let server = Proc::start(&["--config", &config, "--watch-interval", "0.2"]);
    assert_eq!(push(server.addr, old, &[]).status, 200);
    std::fs::write(dir.join("gl.key"), new).unwrap();
    wait_until("the new key", Duration::from_secs(3), || {
        push(server.addr, new, &[]).status == 200
    });
    assert_eq!(push(server.addr, old, &[]).status, 404);
    let reloaded = "trigger=\"file change\"";
    assert!(server.stderr_with(reloaded).contains(reloaded));
}

#[test]
fn a_kubernetes_style_symlink_swap_reloads() {
    // A mounted Secret: files are symlinks into ..data, itself a symlink to a timestamped
    // folder; an update writes a new folder and swaps ..data atomically.
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let dir = temp_dir("symlink");
    let (old, new) = (
        b"old-key-0123456789abcdef".as_slice(),
        b"new-key-0123456789abcdef".as_slice(),
    );
    let v1 = dir.join("..2026_11_30_v1");
    std::fs::create_dir(&v1).unwrap();
    write_config(&v1, old, &fluxd.api());
    std::os::unix::fs::symlink("..2026_11_30_v1", dir.join("..data")).unwrap();
    for file in ["fluxrecv.yaml", "gl.key"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).unwrap();
    }
    let config = dir.join("fluxrecv.yaml").display().to_string();
    let server = Proc::start(&["--config", &config, "--watch-interval", "0.2"]);
    assert_eq!(push(server.addr, old, &[]).status, 200);

    let v2 = dir.join("..2026_11_30_v2");
    std::fs::create_dir(&v2).unwrap();
    write_config(&v2, new, &fluxd.api());
    std::os::unix::fs::symlink("..2026_11_30_v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    wait_until("the swapped key", Duration::from_secs(3), || {
        push(server.addr, new, &[]).status == 200
    });
    assert_eq!(push(server.addr, old, &[]).status, 404);
}

#[test]
fn a_request_in_flight_finishes_on_the_table_it_started_with() {
    // The old config points at a slow fluxd, the new one at another fluxd.
    let old_fluxd = FakeFluxd::start(Behaviour::Slow(Duration::from_millis(800)));
    let new_fluxd = FakeFluxd::start(Behaviour::Real);
    let dir = temp_dir("inflight");
    write_config(&dir, KEY, &old_fluxd.api());
    let config = dir.join("fluxrecv.yaml").display().to_string();
    let server = Proc::start(&["--config", &config, "--watch-interval", "3600"]);
    let addr = server.addr;
    let in_flight = thread::spawn(move || push(addr, KEY, &[]).status);
    old_fluxd.wait_for_requests(1);
    write_config(&dir, KEY, &new_fluxd.api());
    server.signal("HUP");
    let reloaded = "msg=\"config reloaded\"";
    assert!(server.stderr_with(reloaded).contains(reloaded));
    // After the swap, new deliveries go to the new fluxd...
    assert_eq!(push(server.addr, KEY, &[]).status, 200);
    assert_eq!(new_fluxd.requests().len(), 1);
    // ...while the one in flight finishes against the old one.
    assert_eq!(in_flight.join().unwrap(), 200);
    assert_eq!(old_fluxd.requests().len(), 1);
}

/// `--dry-run`: a push is verified and parsed, each downstream's body is logged, the reply says
/// dry run, and nothing reaches fluxd; start-up warns.
#[test]
fn a_dry_run_logs_what_each_downstream_would_get_and_sends_nothing() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let config = config_file(&[Ep::new("GitLab", KEY)], &fluxd.api());
    let server = Proc::start(&["--config", &config.display().to_string(), "--dry-run"]);
    let reply = push(server.addr, KEY, &[]);
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "OK (dry run: nothing was sent)")
    );
    // The request line comes after the dry-run line.
    let log = server.stderr_with("outcome=dry_run");
    assert!(
        log.contains("msg=\"dry run: deliveries are verified and parsed"),
        "{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("msg=\"dry run: would notify\""))
        .expect("a dry-run line");
    assert!(line.contains("downstream=fluxd"), "{line}");
    assert!(line.contains(r#"{\"Kind\":\"git\""#), "{line}");
    assert!(log.contains("outcome=dry_run"), "{log}");
    // A wrong token is refused as it would be.
    assert_eq!(push(server.addr, b"wrong", &[]).status, 404);
    thread::sleep(Duration::from_millis(200));
    assert!(fluxd.requests().is_empty());
}
