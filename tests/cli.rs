//! The built binary: flags, help, version, exit codes, start-up failures.

mod common;

use std::process::{Command, Output};

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
