//! TLS on the listener, against the real binary: a certificate and key made here with the
//! `openssl` command line, a signed push over TLS, plain HTTP and TLS 1.1 refused, a half
//! ClientHello closed in time, a renewal on disk switching new connections to the new
//! certificate while an old connection finishes, a mismatched pair refused at start-up, and
//! the connection bounds of the hostile suite over TLS.
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

const KEY: &[u8] = b"tls-suite-key-0123456789abcdefgh";

/// A certificate for 127.0.0.1 and its key, written as `<name>.crt` and `<name>.key` in
/// `dir`, issued by the test CA of that directory (`ca.crt`, made on first use); its serial, as
/// `openssl x509 -serial` prints it.
fn certificate(dir: &Path, name: &str) -> String {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    if !dir.join("ca.crt").exists() {
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-days", "2", "-subj", "/CN=flux-recv test CA"],
            ][..]
                .concat()
                .iter()
                .copied()
                .chain(["-keyout", "ca.key", "-out", "ca.crt"])
                .collect::<Vec<_>>(),
        );
    }
    let (crt, key, csr) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &csr],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        &crt,
    ]);
    serial_of(&std::fs::read(dir.join(&crt)).unwrap())
}

fn serial_of(pem: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(pem).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct Setup {
    dir: PathBuf,
    config: String,
    server: Proc,
}

fn serve(extra: &[&str]) -> Setup {
    let dir = temp_dir("tls");
    certificate(&dir, "server");
    let config = write_yaml(
        &dir,
        "fluxRecvVersion: 1\napi: http://127.0.0.1:9/api/flux\nendpoints:\n- source: GitHub\n  keyPath: key\n",
        &[("key", KEY)],
    )
    .display()
    .to_string();
    let cert = dir.join("server.crt").display().to_string();
    let key = dir.join("server.key").display().to_string();
    let mut args = vec!["--config", &config, "--tls-cert", &cert, "--tls-key", &key];
    args.extend_from_slice(extra);
    let server = Proc::start(&args);
    Setup {
        dir,
        config,
        server,
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client that trusts the certificate in `ca`, with the peer's certificate once
/// connected.
fn connect(addr: SocketAddr, ca: &Path) -> (Tls, CertificateDer<'static>) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "127.0.0.1".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    let peer = tls.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    (tls, peer)
}

fn signed_push() -> Vec<u8> {
    let body =
        r#"{"ref":"refs/heads/main","repository":{"ssh_url":"git@github.com:acme/app.git"}}"#;
    let sig = hmac_hex("sha256", KEY, body.as_bytes());
    format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256={sig}\r\nContent-Length: {}\r\n\r\n{body}",
        route_of(KEY, ""),
        body.len()
    )
    .into_bytes()
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

/// A signed push over TLS reaches fluxd, and the ALPN is HTTP/1.1.
#[test]
fn a_signed_push_over_tls_is_notified() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let setup = serve(&[]);
    // The config's fluxd is a dead port; this one is reached by reloading.
    let yaml = format!(
        "fluxRecvVersion: 1\napi: {}\nendpoints:\n- source: GitHub\n  keyPath: key\n",
        fluxd.api()
    );
    std::fs::write(&setup.config, yaml).unwrap();
    setup.server.signal("HUP");
    setup.server.stderr_with("config reloaded");
    let (mut tls, _) = connect(setup.server.addr, &setup.dir.join("ca.crt"));
    tls.write_all(&signed_push()).unwrap();
    let reply = read_reply(&mut tls, &mut Vec::new()).expect("a reply");
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
    assert_eq!(fluxd.requests().len(), 1);
    // curl, an ordinary client, gets the same.
    let curl = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--cacert",
        ])
        .arg(setup.dir.join("ca.crt"))
        .arg(format!(
            "https://127.0.0.1:{}/health",
            setup.server.addr.port()
        ))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "200 1.1");
}

/// Reads until the peer closes or `limit` passes; what arrived, and whether it closed.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// A ClientHello record: `version` in its body, these cipher suites, and (when `modern`) the
/// signature_algorithms extension a TLS 1.2 client sends.
fn client_hello(version: u16, modern: bool) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    let suites: [u16; 3] = [0xc02f, 0xc02b, 0x009c];
    body.extend((suites.len() as u16 * 2).to_be_bytes());
    suites.iter().for_each(|s| body.extend(s.to_be_bytes()));
    body.extend([1, 0]); // null compression
    let mut extensions = Vec::new();
    if modern {
        // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
        extensions.extend([
            0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
        ]);
        // supported_groups: x25519, secp256r1; ec_point_formats: uncompressed
        extensions.extend([0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
        extensions.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    }
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![1u8];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// TLS 1.2 and 1.3 only: a ClientHello for TLS 1.1 gets a fatal alert, never a ServerHello.
/// With the signature algorithms a TLS 1.2 stack sends, it is `protocol_version` (70); an old
/// stack's hello, without them, `handshake_failure` (40), since rustls needs them first. Plain
/// HTTP gets an alert and a close, never a hang.
#[test]
fn only_tls_1_2_and_1_3_and_plain_http_is_closed() {
    let setup = serve(&[]);
    let addr = setup.server.addr;
    for (modern, alert) in [(true, 70u8), (false, 40u8)] {
        let mut raw = TcpStream::connect(addr).unwrap();
        raw.write_all(&client_hello(0x0302, modern)).unwrap();
        let (got, closed) = read_until_closed(&mut raw, Duration::from_secs(3));
        assert!(closed, "{got:02x?}");
        // A fatal alert record: 0x15, a version, length 2, level 2, the description.
        assert_eq!(got.first(), Some(&0x15), "{got:02x?}");
        assert_eq!(&got[got.len() - 2..], &[2, alert], "{got:02x?}");
    }
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.write_all(HEALTH).unwrap();
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut plain, Duration::from_secs(3));
    assert!(closed && started.elapsed() < Duration::from_secs(2));
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{got:?}");
}

/// A client that sends half a ClientHello and stalls is closed within --read-timeout, and holds
/// only its own connection meanwhile.
#[test]
fn a_half_client_hello_is_closed_in_time() {
    let setup = serve(&["--read-timeout", "2"]);
    let mut half = TcpStream::connect(setup.server.addr).unwrap();
    half.write_all(&client_hello(0x0303, true)[..20]).unwrap();
    // Meanwhile a whole client is served.
    let (mut tls, _) = connect(setup.server.addr, &setup.dir.join("ca.crt"));
    tls.write_all(HEALTH).unwrap();
    assert_eq!(read_reply(&mut tls, &mut Vec::new()).unwrap().status, 200);
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut half, Duration::from_secs(5));
    assert!(closed, "the half handshake was not closed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// A renewal on disk: new connections get the new certificate, a connection opened before
/// finishes on the old one; a broken pair is refused and the old one serves on.
#[test]
fn a_renewed_certificate_serves_new_connections() {
    let setup = serve(&["--watch-interval", "0.2"]);
    let ca = setup.dir.join("ca.crt");
    let old_serial = serial_of(&std::fs::read(setup.dir.join("server.crt")).unwrap());
    let (mut old, _) = connect(setup.server.addr, &ca);
    // The renewal: a new pair, written over the old files.
    let new_serial = certificate(&setup.dir, "renewed");
    assert_ne!(new_serial, old_serial);
    std::fs::copy(setup.dir.join("renewed.key"), setup.dir.join("server.key")).unwrap();
    std::fs::copy(setup.dir.join("renewed.crt"), setup.dir.join("server.crt")).unwrap();
    assert!(setup
        .server
        .stderr_with("tls certificate reloaded")
        .contains("tls certificate reloaded"));
    let (mut new, peer) = connect(setup.server.addr, &ca);
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64_lines(&peer)
    );
    assert_eq!(serial_of(pem.as_bytes()), new_serial);
    new.write_all(HEALTH).unwrap();
    assert_eq!(read_reply(&mut new, &mut Vec::new()).unwrap().status, 200);
    old.write_all(HEALTH).unwrap();
    assert_eq!(read_reply(&mut old, &mut Vec::new()).unwrap().status, 200);
    // A key that does not go with the certificate: refused, the renewed pair serves on.
    certificate(&setup.dir, "other");
    std::fs::copy(setup.dir.join("other.key"), setup.dir.join("server.key")).unwrap();
    assert!(setup
        .server
        .stderr_with("reload failed")
        .contains("tls certificate reload failed; still serving the previous one"));
    let (_, still) = connect(setup.server.addr, &ca);
    assert_eq!(still, peer);
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A certificate and a key that do not go together stop start-up with exit 1, naming the
/// files; so does one flag without the other.
#[test]
fn a_mismatched_pair_is_refused_at_start_up() {
    let dir = temp_dir("tls-mismatch");
    certificate(&dir, "a");
    certificate(&dir, "b");
    let config = write_yaml(
        &dir,
        "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: key\n",
        &[("key", KEY)],
    );
    let binary = std::env::var("FLUX_RECV_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_flux-recv").to_owned());
    let run = |args: &[&str]| {
        Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap()
    };
    let (a_crt, b_key) = (
        dir.join("a.crt").display().to_string(),
        dir.join("b.key").display().to_string(),
    );
    let out = run(&["--tls-cert", &a_crt, "--tls-key", &b_key]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("b.key") && stderr.contains("does not go with"),
        "{stderr}"
    );
    let missing = dir.join("nope.crt").display().to_string();
    let out = run(&["--tls-cert", &missing, "--tls-key", &b_key]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.crt"));
    let out = run(&["--tls-cert", &a_crt]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

/// The hostile suite's connection bounds hold over TLS: an idle kept-alive connection gives
/// its slot to a newcomer, a connection carries at most 1,000 requests, and one client holds
/// at most its share.
#[test]
fn the_connection_bounds_hold_over_tls() {
    let setup = serve(&[
        "--max-connections",
        "4",
        "--max-connections-per-client",
        "4",
    ]);
    let (addr, ca) = (setup.server.addr, setup.dir.join("ca.crt"));
    let kept_alive = || {
        let (mut tls, _) = connect(addr, &ca);
        tls.write_all(HEALTH).unwrap();
        assert_eq!(read_reply(&mut tls, &mut Vec::new()).unwrap().status, 200);
        tls
    };
    let _held: Vec<Tls> = (0..4).map(|_| kept_alive()).collect();
    thread::sleep(Duration::from_millis(100));
    let mut newcomer = kept_alive();
    let mut buf = Vec::new();
    for n in 2..=1000 {
        newcomer.write_all(HEALTH).unwrap();
        let reply = read_reply(&mut newcomer, &mut buf).expect("a reply");
        assert_eq!(
            reply.header("Connection") == Some("close"),
            n == 1000,
            "request {n}"
        );
    }
    // Four handshakes under way from one client: its whole share; a fifth is refused.
    let busy: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&client_hello(0x0303, true)[..20]).unwrap();
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let mut refused = TcpStream::connect(addr).unwrap();
    let (got, closed) = read_until_closed(&mut refused, Duration::from_secs(3));
    // Closed at once: a plain 503 before a handshake would be garbage to a TLS client.
    assert!(
        closed && got.is_empty(),
        "{got:?} {}",
        setup.server.stderr_text()
    );
    assert!(setup
        .server
        .stderr_with("one client")
        .contains("too many connections or requests from one client"));
    drop(busy);
}
