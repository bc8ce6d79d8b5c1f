//! A real CNCF Distribution registry (Debian's `docker-registry`, 2.8) notifying flux-recv: an
//! image is pushed through the registry's own HTTP API (blobs, a manifest by tag, the same
//! manifest by digest) and fluxd must hear of the tag push once, and of nothing else.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

const KEY: &[u8] = b"registry-mirror-key-0123456789abcdef";

/// The registry binary: on the PATH (CI installs the package), or unpacked once from Debian's
/// package under the target dir, so that `cargo test` alone runs on a fresh Debian machine.
fn registry_binary() -> PathBuf {
    for candidate in ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    let dir = PathBuf::from(concat!(env!("CARGO_TARGET_TMPDIR"), "/docker-registry"));
    let unpacked = dir.join("root/usr/bin/docker-registry");
    if !unpacked.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let download = Command::new("apt-get")
            .args(["download", "docker-registry"])
            .current_dir(&dir)
            .output();
        let deb = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"));
        let Some(deb) = deb else {
            panic!(
                "no docker-registry: install Debian's docker-registry package (apt-get said {:?})",
                download.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            );
        };
        let status = Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(dir.join("root"))
            .status()
            .unwrap();
        assert!(status.success(), "dpkg -x {}", deb.display());
    }
    unpacked
}

struct Registry {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry on a free loopback port, notifying `hook` with the Authorization header.
fn start_registry(hook: &str) -> Registry {
    start_registry_logging(hook, "info")
}

/// The same, with the registry's `log.level`.
fn start_registry_logging(hook: &str, level: &str) -> Registry {
    let dir = temp_dir("registry");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "version: 0.1
log:
  level: {level}
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
notifications:
  endpoints:
  - name: flux-recv
    url: {hook}
    headers:
      Authorization: [Bearer {key}]
    timeout: 1s
    threshold: 5
    backoff: 1s
",
        root = dir.join("data").display(),
        key = String::from_utf8_lossy(KEY),
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let log = dir.join("registry.log");
    let child = Command::new(registry_binary())
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start docker-registry");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let registry = Registry { child, addr, log };
    wait_until("the registry", Duration::from_secs(10), || {
        request(addr, "GET", "/v2/", &[], b"").is_some_and(|r| r.status == 200)
    });
    registry
}

/// One request on its own connection.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Reply> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    std::io::Write::write_all(&mut stream, &bytes).ok()?;
    read_reply(&mut stream, &mut Vec::new())
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Uploads a blob: a POST opens the upload, one PUT to its location sends it whole.
fn push_blob(registry: &Registry, repository: &str, blob: &[u8]) -> String {
    let digest = digest(blob);
    let opened = request(
        registry.addr,
        "POST",
        &format!("/v2/{repository}/blobs/uploads/"),
        &[],
        b"",
    )
    .expect("a reply");
    assert_eq!(opened.status, 202, "upload: {opened:?}");
    let location = opened.header("Location").expect("an upload location");
    let path = location
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(location);
    let separator = if path.contains('?') { '&' } else { '?' };
    let reply = request(
        registry.addr,
        "PUT",
        &format!("{path}{separator}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        blob,
    )
    .expect("a reply");
    assert_eq!(reply.status, 201, "blob upload: {reply:?}");
    digest
}

#[test]
fn a_real_registry_tag_push_reaches_fluxd_once() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let yaml = format!(
        "fluxRecvVersion: 1\napi: {}\nendpoints:\n- source: Distribution\n  keyPath: registry.key\n  notifyTimeout: 0.5\n",
        fluxd.api()
    );
    let config = write_yaml(&temp_dir("mirror"), &yaml, &[("registry.key", KEY)]);
    let recv = Proc::start(&["--config", &config.display().to_string()]);
    let hook = format!("http://{}{}", recv.addr, route_of(KEY, ""));
    let registry = start_registry(&hook);

    let repository = "team/app";
    let layer = b"not really a tar, but the registry only checks digests".to_vec();
    let config_blob = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        digest(&layer)
    );
    let layer_digest = push_blob(&registry, repository, &layer);
    let config_digest = push_blob(&registry, repository, config_blob.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{config_digest}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":{},"digest":"{layer_digest}"}}]}}"#,
        config_blob.len(),
        layer.len()
    );
    let content_type = [(
        "Content-Type",
        "application/vnd.docker.distribution.manifest.v2+json",
    )];
    let pushed = Instant::now();
    for reference in ["1.0".to_owned(), digest(manifest.as_bytes())] {
        let reply = request(
            registry.addr,
            "PUT",
            &format!("/v2/{repository}/manifests/{reference}"),
            &content_type,
            manifest.as_bytes(),
        )
        .expect("a reply");
        assert_eq!(reply.status, 201, "manifest {reference}: {reply:?}");
    }
    // And a pull, which is an event too.
    let pulled = request(
        registry.addr,
        "GET",
        &format!("/v2/{repository}/manifests/1.0"),
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )],
        b"",
    );
    assert_eq!(pulled.map(|r| r.status), Some(200));

    wait_until("fluxd to hear of the push", Duration::from_secs(10), || {
        !fluxd.requests().is_empty()
    });
    let heard = pushed.elapsed();
    // Every event of the registry has had its time to arrive: blobs, both manifests, the pull.
    wait_until("the registry's deliveries", Duration::from_secs(10), || {
        recv.stderr_text()
            .matches("msg=request source=Distribution")
            .count()
            >= 2
    });
    thread::sleep(Duration::from_millis(1500));
    let expected = format!(
        r#"{{"Kind":"image","Source":{{"Name":{{"Domain":"{}","Image":"team/app"}}}}}}"#,
        registry.addr
    );
    assert_eq!(
        fluxd.bodies(),
        vec![expected],
        "flux-recv log:\n{}\nregistry log:\n{}",
        recv.stderr_text(),
        std::fs::read_to_string(&registry.log).unwrap_or_default()
    );
    let log = recv.stderr_text();
    assert!(log.contains("outcome=notified"), "{log}");
    assert!(
        log.contains("outcome=ignored"),
        "the blob, digest and pull events: {log}"
    );
    assert!(!log.contains("outcome=unauthorized"), "{log}");
    let outcomes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("msg=request source=Distribution"))
        .filter_map(|l| l.split(" outcome=").nth(1)?.split(' ').next())
        .collect();
    println!("registry mirror: the registry's deliveries: {outcomes:?}");
    println!(
        "registry mirror: tag push reached fluxd {:.0} ms after the manifest PUT",
        heard.as_secs_f64() * 1000.0
    );
}

/// What the README's air-gapped section warns of: the registry's own start-up log shows each
/// notification endpoint's headers, the Authorization key included, at level info; at warn that
/// line is not written.
#[test]
fn the_registry_logs_the_notification_key_at_info_and_not_at_warn() {
    let hook = format!("http://{}/hook/x", free_addr());
    let key = String::from_utf8_lossy(KEY).into_owned();
    let log_of = |level: &str| {
        let registry = start_registry_logging(&hook, level);
        // Serving /v2/ means start-up, and its endpoint lines, are behind it.
        std::fs::read_to_string(&registry.log).unwrap()
    };
    let info = log_of("info");
    assert!(
        info.contains("configuring endpoint flux-recv") && info.contains(&format!("Bearer {key}")),
        "{info}"
    );
    let warn = log_of("warn");
    assert!(!warn.contains(&key), "{warn}");
}
