//! The built binary: flags, help, version, exit codes, start-up failures.

mod common;

use std::process::{Command, Output};

use common::webhook_path;

fn flux_recv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flux-recv"))
        .args(args)
        .output()
        .expect("run flux-recv")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_lists_flags_and_every_source() {
    let out = flux_recv(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in common::flags() {
        assert!(text.contains(flag), "help lacks {flag}:\n{text}");
    }
    for source in flux_recv::sources::Source::ALL {
        assert!(text.contains(source.name()), "help lacks {source}");
    }
}

#[test]
fn version() {
    let out = flux_recv(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("flux-recv {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_flags_and_bad_values_exit_2_naming_them() {
    for (args, named) in [
        (&["--lissten", ":80"][..], "--lissten"),
        (&["--threads", "zero"][..], "--threads"),
        (&["--threads=0"][..], "--threads"),
        (&["--read-timeout", "-1"][..], "--read-timeout"),
        (&["--notify-timeout=soon"][..], "--notify-timeout"),
        (&["--max-body-bytes", "1e9"][..], "--max-body-bytes"),
        (&["--max-connections"][..], "--max-connections"),
        (&["stray"][..], "stray"),
    ] {
        let out = flux_recv(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn bad_config_exits_1_with_every_problem() {
    let dir = common::temp_dir("cli");
    let path = dir.join("fluxrecv.yaml");
    std::fs::write(
        &path,
        "fluxRecvVersion: 1\nendpoints:\n- source: Gitub\n  keyPath: gh.key\n",
    )
    .unwrap();
    let config = format!("--config={}", path.display());
    let out = flux_recv(&[&config]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("\"Gitub\""), "{err}");
    assert!(err.contains("gh.key"), "{err}");
    let missing = flux_recv(&["--config", "/nonexistent/x.yaml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("/nonexistent/x.yaml"));
}

#[test]
fn cannot_listen_exits_1() {
    let dir = common::temp_dir("cli-listen");
    std::fs::write(dir.join("k"), b"a-key-0123456789abcdef").unwrap();
    std::fs::write(
        dir.join("c.yaml"),
        "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: k\n",
    )
    .unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let config = dir.join("c.yaml").display().to_string();
    let out = flux_recv(&["--config", &config, "--listen", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&addr), "{}", stderr(&out));
}

#[test]
fn a_bad_listen_address_is_a_bad_command_line() {
    let out = flux_recv(&["--listen", "8080"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--listen \"8080\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn with_json_logs_fatal_start_up_errors_are_json_lines() {
    let out = flux_recv(&["--config", "/nonexistent/x.yaml", "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 2, "{err}");
    assert!(lines
        .iter()
        .all(|v| v["level"] == "error" && v["msg"] == "fatal"));
    assert!(lines[0]["detail"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/x.yaml"));
}

#[test]
fn check_warns_about_the_shipped_sample_keys() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/example/fluxrecv.yaml");
    let out = flux_recv(&["check", "--config", config]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let warnings: Vec<String> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("flux-recv: warning:") && l.contains("SAMPLE"))
        .map(str::to_owned)
        .collect();
    // One per shipped key the example config names.
    let keys = std::fs::read_to_string(config)
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("keyPath:"))
        .count();
    assert_eq!(warnings.len(), keys, "{warnings:#?}");
}

#[test]
fn receiver_path_is_what_notification_controller_computes() {
    let dir = common::temp_dir("receiver-path");
    let token = dir.join("token");
    std::fs::write(&token, b"a-receiver-token-0123456789").unwrap();
    let token = token.display().to_string();
    let run = |name: &str, namespace: &str| {
        flux_recv(&[
            "receiver-path",
            "--token-file",
            &token,
            "--name",
            name,
            "--namespace",
            namespace,
        ])
    };
    let out = run("flux-recv", "flux-system");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        printed,
        webhook_path(b"a-receiver-token-0123456789", "flux-recv", "flux-system")
    );
    // Name and namespace are both part of it.
    let other = run("flux-recv", "apps");
    assert_ne!(String::from_utf8_lossy(&other.stdout).trim(), printed);

    // A trailing newline is part of the token: used, and warned about.
    let with_newline = dir.join("token-nl");
    std::fs::write(&with_newline, b"a-receiver-token-0123456789\n").unwrap();
    let out = flux_recv(&[
        "receiver-path",
        &format!("--token-file={}", with_newline.display()),
        "--name=flux-recv",
        "--namespace=flux-system",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        webhook_path(b"a-receiver-token-0123456789\n", "flux-recv", "flux-system")
    );
    assert!(stderr(&out).contains("whitespace"), "{}", stderr(&out));

    // A missing flag is a bad command line; a missing file exits 1 naming it.
    let out = flux_recv(&["receiver-path", "--token-file", &token, "--name", "r"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--namespace"), "{}", stderr(&out));
    let out = flux_recv(&[
        "receiver-path",
        "--token-file=/nonexistent/token",
        "--name=r",
        "--namespace=n",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/token"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_shows_the_start_of_a_receivers_path_and_refuses_a_placeholder() {
    let dir = common::temp_dir("check-receiver");
    std::fs::write(dir.join("gh.key"), b"a-key-0123456789abcdef").unwrap();
    std::fs::write(dir.join("b.token"), b"a-receiver-token-0123456789").unwrap();
    let path = webhook_path(b"a-receiver-token-0123456789", "flux-recv", "flux-system");
    let config = |receiver_path: &str| {
        let file = dir.join("fluxrecv.yaml");
        std::fs::write(
            &file,
            format!(
                "fluxRecvVersion: 1\nnotify:\n- name: b\n  fluxReceiver: http://webhook.b.internal{receiver_path}\n  keyPath: b.token\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n"
            ),
        )
        .unwrap();
        file.display().to_string()
    };
    let out = flux_recv(&["check", "--config", &config(&path)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let shown = format!(
        "downstream b: receiver http://webhook.b.internal{}…",
        &path[..14]
    );
    assert!(text.contains(&shown), "{shown:?} not in:\n{text}");
    assert!(
        !text.contains(&path[14..]),
        "the whole path is shown:\n{text}"
    );

    let out = flux_recv(&[
        "check",
        "--config",
        &config("/hook/REPLACE-WITH-THE-RECEIVERS-WEBHOOKPATH-DIGEST"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("notify[0] (b): fluxReceiver path")
            && err.contains("flux-recv receiver-path --token-file b.token"),
        "{err}"
    );
}
