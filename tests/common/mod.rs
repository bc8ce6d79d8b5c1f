//! Shared test kit: a recording fake downstream (fluxd, a Flux v2 receiver, or any answer), the
//! real server on 127.0.0.1:0, one config writer, a raw HTTP client, the binary as a child.
#![allow(dead_code)] // each test binary uses a different part of the kit

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flux_recv::app::{self, Options, Running};
use flux_recv::config;

/// Every flag `flux-recv` takes: the flag table's, and the two without a value.
pub fn flags() -> Vec<&'static str> {
    flux_recv::cli::FLAGS
        .iter()
        .map(|f| f.name)
        .chain(["--help", "--version"])
        .collect()
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "flux-recv-test-{}-{tag}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// How the fake fluxd answers.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Like fluxd: 202 with an empty body for a valid change, 400 otherwise.
    Real,
    /// This status, empty body.
    Status(u16),
    /// Waits this long, then answers like `Real`.
    Slow(Duration),
    /// 200 with a body that is not JSON.
    Garbage,
    /// Reads the request, then closes without answering.
    Hangup,
    /// 302 to another URL.
    Redirect,
    /// Accepts the connection and never answers.
    Hang,
    /// A Flux v2 `generic-hmac` Receiver with this token: 200 when `X-Signature` is a good
    /// sha1/sha256/sha512 HMAC of the body (checked as go-github's `ValidateSignature` does),
    /// 400 otherwise.
    Receiver(&'static [u8]),
    /// Whatever this function answers (a tokeninfo stand-in).
    Answer(fn(&Recorded) -> Vec<u8>),
}

/// One request fluxd received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A fake downstream on loopback that records every request.
pub struct FakeFluxd {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Recorded>>>,
    /// The bodies it answered with a success status, in order.
    pub accepted: Arc<Mutex<Vec<String>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Connections accepted so far.
    connections: Arc<AtomicUsize>,
}

impl FakeFluxd {
    pub fn start(behaviour: Behaviour) -> FakeFluxd {
        FakeFluxd::start_on("127.0.0.1:0".parse().unwrap(), behaviour)
    }

    /// A fake fluxd on a given address (to stand in for a fluxd that comes back).
    pub fn start_on(addr: SocketAddr, behaviour: Behaviour) -> FakeFluxd {
        let listener = TcpListener::bind(addr).expect("bind fake fluxd");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let connections = Arc::new(AtomicUsize::new(0));
        let (rec, acc, beh, count) = (
            Arc::clone(&received),
            Arc::clone(&accepted),
            Arc::clone(&behaviour),
            Arc::clone(&connections),
        );
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let (rec, acc, beh) = (Arc::clone(&rec), Arc::clone(&acc), Arc::clone(&beh));
                thread::spawn(move || serve_fluxd(stream, &rec, &acc, &beh));
            }
        });
        FakeFluxd {
            addr,
            received,
            accepted,
            behaviour,
            connections,
        }
    }

    /// The `api:` value pointing at this fake.
    pub fn api(&self) -> String {
        format!("http://{}/api/flux", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.received.lock().unwrap().clone()
    }

    /// The bodies of all notify calls so far, as strings.
    pub fn bodies(&self) -> Vec<String> {
        self.requests().iter().map(Recorded::body_str).collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn clear(&self) {
        self.received.lock().unwrap().clear();
    }

    /// Waits (up to 5 s) until `n` notify calls have arrived; a slow fake records each
    /// before it sleeps, so this is how a test knows a delivery is in flight.
    pub fn wait_for_requests(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.received.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "fake fluxd never got {n} requests"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Waits up to `limit` until `ok()`, failing the test naming `what`.
pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// An address where nothing listens, for a fake to take later: a port of 127.0.0.2 (bound,
/// then released). Every other listener of the tests is on 127.0.0.1, so none can take it
/// meanwhile and answer in its place.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    listener.local_addr().unwrap()
}

/// An API where nothing listens.
pub fn dead_api() -> String {
    format!("http://{}/api/flux", free_addr())
}

fn serve_fluxd(
    mut stream: TcpStream,
    received: &Mutex<Vec<Recorded>>,
    accepted: &Mutex<Vec<String>>,
    behaviour: &Mutex<Behaviour>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buf) else {
            return;
        };
        received.lock().unwrap().push(request.clone());
        let behaviour = *behaviour.lock().unwrap();
        let reply: Vec<u8> = match behaviour {
            Behaviour::Real => real_reply(&request),
            Behaviour::Slow(d) => {
                thread::sleep(d);
                real_reply(&request)
            }
            Behaviour::Status(s) => {
                format!("HTTP/1.1 {s} X\r\nContent-Length: 0\r\n\r\n").into_bytes()
            }
            Behaviour::Garbage => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n<html>hi".to_vec()
            }
            Behaviour::Hangup => return,
            Behaviour::Redirect => {
                b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\n\r\n"
                    .to_vec()
            }
            Behaviour::Hang => {
                thread::sleep(Duration::from_secs(60));
                return;
            }
            Behaviour::Receiver(token) => receiver_reply(&request, token),
            Behaviour::Answer(answer) => answer(&request),
        };
        if reply.starts_with(b"HTTP/1.1 2") {
            accepted.lock().unwrap().push(request.body_str());
        }
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

/// fluxd's own check: one JSON change of a known kind with the right shape.
fn real_reply(request: &Recorded) -> Vec<u8> {
    let ok = request.method == "POST"
        && request.path == "/api/flux/v11/notify"
        && serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .is_some_and(|v| valid_change(&v));
    if ok {
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec()
    } else {
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}"
            .to_vec()
    }
}

/// A Flux v2 generic-hmac Receiver: `X-Signature: <algo>=<hex>`, split on the first `=`, the
/// algorithm one of sha1/sha256/sha512, the hex an HMAC of the raw body keyed with the token.
fn receiver_reply(request: &Recorded, token: &[u8]) -> Vec<u8> {
    let good = request
        .header("X-Signature")
        .and_then(|sig| sig.split_once('='))
        .is_some_and(|(algo, hex_mac)| {
            matches!(algo, "sha1" | "sha256" | "sha512")
                && hmac_hex(algo, token, &request.body) == hex_mac.to_ascii_lowercase()
        });
    let status = if good { "200 OK" } else { "400 Bad Request" };
    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

fn valid_change(v: &serde_json::Value) -> bool {
    let source = &v["Source"];
    match v["Kind"].as_str() {
        Some("git") => source["URL"].is_string() && source["Branch"].is_string(),
        Some("image") => {
            source["Name"]["Domain"].is_string() && source["Name"]["Image"].is_string()
        }
        _ => false,
    }
}

/// One HTTP message as read off the wire.
struct Message {
    first: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one Content-Length framed HTTP message (what ureq and flux-recv send), or None at EOF.
fn read_message(stream: &mut impl Read, buf: &mut Vec<u8>) -> Option<Message> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    buf.drain(..head_end + 4);
    while buf.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..length).collect();
    Some(Message {
        first,
        headers,
        body,
    })
}

/// Reads one request, or None at EOF.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Recorded> {
    let message = read_message(stream, buf)?;
    let mut parts = message.first.split(' ');
    Some(Recorded {
        method: parts.next()?.to_owned(),
        path: parts.next()?.to_owned(),
        headers: message.headers,
        body: message.body,
    })
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One endpoint to configure: source name, key bytes, optional registryHost.
pub struct Ep {
    pub source: &'static str,
    pub key: Vec<u8>,
    pub registry_host: Option<&'static str>,
}

impl Ep {
    pub fn new(source: &'static str, key: &[u8]) -> Ep {
        Ep {
            source,
            key: key.to_vec(),
            registry_host: None,
        }
    }
}

/// A key or token file, readable by its owner only, as an operator writes one (a key readable
/// by everyone is warned about).
pub fn write_key(path: &Path, content: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The one config writer: `yaml` and its key files into `dir`; the config's path.
pub fn write_yaml(dir: &Path, yaml: &str, files: &[(&str, &[u8])]) -> PathBuf {
    for (name, content) in files {
        write_key(&dir.join(name), content);
    }
    let path = dir.join("fluxrecv.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// YAML for these endpoints (key files `key0`, `key1`, …) after `head` (`api:` or `notify:`).
pub fn endpoints_yaml(head: &str, endpoints: &[Ep]) -> (String, Vec<(String, Vec<u8>)>) {
    let mut yaml = format!("fluxRecvVersion: 1\n{head}endpoints:\n");
    let mut keys = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let key_file = format!("key{i}");
        yaml.push_str(&format!("- source: {}\n  keyPath: {key_file}\n", ep.source));
        if let Some(host) = ep.registry_host {
            yaml.push_str(&format!("  registryHost: {host}\n"));
        }
        keys.push((key_file, ep.key.clone()));
    }
    (yaml, keys)
}

/// Writes a config for these endpoints notifying the fluxd at `api`, in a fresh directory.
pub fn config_file(endpoints: &[Ep], api: &str) -> PathBuf {
    let (yaml, keys) = endpoints_yaml(&format!("api: {api}\n"), endpoints);
    let keys: Vec<(&str, &[u8])> = keys
        .iter()
        .map(|(n, k)| (n.as_str(), k.as_slice()))
        .collect();
    write_yaml(&temp_dir("config"), &yaml, &keys)
}

/// Loads the config at `path`, or fails the test with every problem.
pub fn load(path: &Path) -> config::Config {
    match config::load(path) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("test config does not load:\n{e}"),
    }
}

/// Loads a config from YAML text and key files written to a fresh directory.
pub fn config_from_yaml(yaml: &str, keys: &[(&str, &[u8])]) -> config::Config {
    load(&write_yaml(&temp_dir("yaml"), yaml, keys))
}

/// The real server on 127.0.0.1:0 with these endpoints, notifying `api`.
pub fn start(endpoints: &[Ep], api: &str, opts: Options) -> (Running, config::Config) {
    let config = load(&config_file(endpoints, api));
    (start_config(&config, opts), config)
}

/// The real server for an already loaded config. Its log lines go through the test harness's
/// capture: shown with a failing test, not mixed into a passing run's output.
pub fn start_config(config: &config::Config, opts: Options) -> Running {
    flux_recv::log::set_sink(|line| eprint!("{line}"));
    let mut opts = opts;
    opts.server.listen = "127.0.0.1:0".into();
    app::start(config, &opts).expect("bind")
}

/// Options for tests: short timeouts, small limits, redelivery off, so that a failing fluxd
/// is a 502/504 at once, and no rate limit, so that back-to-back deliveries are all sent
/// (redelivery and the rate have tests of their own).
pub fn test_options() -> Options {
    let mut o = flux_recv::cli::defaults();
    o.server.listen = "127.0.0.1:0".into();
    o.server.threads = 2;
    o.server.max_body_bytes = 1024 * 1024;
    o.server.read_timeout = Duration::from_secs(1);
    o.server.max_connections = 64;
    o.delivery.notify_timeout = Duration::from_secs(1);
    o.delivery.redeliver_for = Duration::ZERO;
    o.delivery.redeliver_max = 64;
    o.delivery.notify_rate = 0.0;
    o
}

/// A parsed reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes on a new connection and reads one reply (or None if closed without one).
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Option<Reply> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    read_reply(&mut stream, &mut Vec::new())
}

/// Reads one reply from `stream` (Content-Length framed, as flux-recv always sends).
pub fn read_reply(stream: &mut impl Read, buf: &mut Vec<u8>) -> Option<Reply> {
    let message = read_message(stream, buf)?;
    Some(Reply {
        status: message.first.split(' ').nth(1)?.parse().ok()?,
        headers: message.headers,
        body: String::from_utf8_lossy(&message.body).into_owned(),
    })
}

/// A POST with these headers and body, `Connection: close`.
pub fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: flux-recv\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    )
    .into_bytes();
    for (n, v) in headers {
        req.extend(format!("{n}: {v}\r\n").bytes());
    }
    req.extend(b"\r\n");
    req.extend(body);
    raw(addr, &req).expect("a reply")
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: flux-recv\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("a reply")
}

/// Lowercase hex HMAC, computed here with the hmac crate directly (not the crate under test).
pub fn hmac_hex(algorithm: &str, key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    match algorithm {
        "sha1" => {
            let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key).unwrap();
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        "sha512" => {
            let mut mac = <Hmac<sha2::Sha512> as KeyInit>::new_from_slice(key).unwrap();
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        _ => {
            let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
    }
}

/// The route of a key, computed here independently: /hook/hex(sha256(key ‖ host)).
pub fn route_of(key: &[u8], registry_host: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(key);
    h.update(registry_host.as_bytes());
    format!("/hook/{}", hex::encode(h.finalize()))
}

/// A 200 reply with a JSON body.
pub fn json_reply(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The address of a `listening` log line, logfmt or JSON.
fn listening_addr(line: &str) -> Option<String> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        return (v["msg"] == "listening").then(|| v["addr"].as_str().map(str::to_owned))?;
    }
    line.contains("msg=listening")
        .then(|| line.split(' ').find_map(|f| f.strip_prefix("addr=")))?
        .map(str::to_owned)
}

/// The flux-recv binary running as a child process, with its stderr collected line by line.
pub struct Proc {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `sh -c "<prefix> exec flux-recv --listen 127.0.0.1:0 <args>"` and waits for its
    /// `listening` line.
    pub fn start_with_prefix(prefix: &str, args: &[&str]) -> Proc {
        Proc::start_listening(prefix, "127.0.0.1:0", args)
    }

    /// Starts flux-recv listening on `listen` (a fixed address, for a proxy in front of it).
    pub fn start_on(listen: &str, args: &[&str]) -> Proc {
        Proc::start_listening("", listen, args)
    }

    fn start_listening(prefix: &str, listen: &str, args: &[&str]) -> Proc {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        // FLUX_RECV_BIN runs the suite against another build (e.g. the static musl release).
        let binary = std::env::var("FLUX_RECV_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_flux-recv").to_owned());
        let mut script = format!("{prefix} exec '{binary}' --listen {listen}");
        for arg in args {
            script.push_str(&format!(" '{arg}'"));
        }
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flux-recv");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let addr = listening_addr(&line);
                lines.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let out_lines = Arc::clone(&stdout);
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                out_lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("flux-recv did not start: {:?}", stderr.lock().unwrap()));
        Proc {
            child,
            addr: addr.parse().expect("listening addr"),
            stderr,
            stdout,
        }
    }

    pub fn start(args: &[&str]) -> Proc {
        Proc::start_with_prefix("", args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of /proc/<pid>/status, in the unit the kernel gives (kB for memory).
    pub fn status(&self, field: &str) -> u64 {
        let text =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits up to 5 s for `needle` in stderr (a request's line is written after its reply),
    /// and returns all of stderr.
    pub fn stderr_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.stderr_text();
            if text.contains(needle) || Instant::now() >= deadline {
                return text;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name}");
    }

    /// Waits up to `limit` for the process to exit; its exit code, or None if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One row of a source's table: a delivery and what must come of it.
pub struct Case {
    pub name: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    /// The exact reply body, when the row checks it.
    pub reply: Option<&'static str>,
    /// Exact JSON bodies fluxd must receive, in order; empty = fluxd not called.
    pub notified: Vec<&'static str>,
}

/// The reply to a delivery that did not authenticate.
pub const UNAUTHORIZED: Option<&str> = Some("Unauthorized: signature or token missing or wrong");
/// The reply to a malformed delivery.
pub const BAD: Option<&str> = Some("Bad request");

/// A source's table: a server with one endpoint of `source` (with `registry_host`, if any) in
/// front of a recording fluxd, and each case sent to its route by [`run_cases`].
pub fn table(
    source: &'static str,
    key: &[u8],
    registry_host: Option<&'static str>,
    cases: Vec<Case>,
) {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let mut ep = Ep::new(source, key);
    ep.registry_host = registry_host;
    let (server, _) = start(&[ep], &fluxd.api(), test_options());
    let route = route_of(key, registry_host.unwrap_or(""));
    run_cases(source, &server, &route, &fluxd, cases);
    server.stop();
}

/// Owned header pairs.
pub fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Sends each case to `route` and checks the status, the reply, and exactly what fluxd got
/// (a POST to /api/flux/v11/notify with JSON headers). A failure prints the whole exchange.
pub fn run_cases(label: &str, server: &Running, route: &str, fluxd: &FakeFluxd, cases: Vec<Case>) {
    for case in cases {
        fluxd.clear();
        let headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let reply = post(server.addr(), route, &headers, &case.body);
        let got = fluxd.bodies();
        let context = format!(
            "{label} case {:?}\nrequest headers: {:?}\nreply: {reply:?}\nfluxd got: {got:?}",
            case.name, case.headers
        );
        assert_eq!(reply.status, case.status, "{context}");
        if let Some(body) = case.reply {
            assert_eq!(reply.body, body, "{context}");
        }
        assert_eq!(got, case.notified, "{context}");
        for request in fluxd.requests() {
            assert_eq!(request.method, "POST", "{context}");
            assert_eq!(request.path, "/api/flux/v11/notify", "{context}");
            assert_eq!(
                request.header("Accept"),
                Some("application/json"),
                "{context}"
            );
            assert_eq!(
                request.header("Content-Type"),
                Some("application/json"),
                "{context}"
            );
        }
    }
}

/// The GitLab push fixture, used by the raw-socket tests.
pub const GITLAB_PUSH: &[u8] = include_bytes!("../fixtures/gitlab/push.json");

/// A raw GitLab push delivery to `route` with token `key`; `extra` is more header lines.
pub fn gitlab_push_request(route: &str, key: &[u8], extra: &str) -> Vec<u8> {
    let mut req = format!(
        "POST {route} HTTP/1.1\r\nHost: x\r\nX-Gitlab-Event: Push Hook\r\nX-Gitlab-Token: {}\r\nContent-Length: {}\r\n{extra}\r\n",
        String::from_utf8_lossy(key),
        GITLAB_PUSH.len()
    )
    .into_bytes();
    req.extend_from_slice(GITLAB_PUSH);
    req
}

/// Whether this run is CI's (`CI` set, as `.ci/run` does): there a missing tool fails the test
/// instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// For a test that needs `what`, which this machine lacks: under CI the test fails; elsewhere it
/// says so on the terminal (past the test harness's capture, so it shows in a passing run) and
/// the caller skips.
pub fn skip_without(what: &str, how: &str) {
    let text = format!("SKIPPED: {what} is missing; {how}");
    assert!(!in_ci(), "{text} (CI is set, so this fails)");
    let _ = writeln!(std::io::stderr(), "\n*** {text} ***");
}

/// Whether `program args…` runs and exits 0 (a tool's `--version`).
pub fn runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The audience and service account of the GCR endpoints the tests configure.
pub const GCR_AUDIENCE: &str = "https://flux-recv.acme.example/hook";
pub const GCR_EMAIL: &str = "gcr-push@acme-prod.iam.gserviceaccount.com";

/// An ID token shaped as Google's (unsigned: the tokeninfo stand-in decides), for `audience`,
/// issued by `iss`, expiring `exp_in` seconds from now (negative: in the past); `sub` tells the
/// stand-in how to answer.
pub fn google_jwt(sub: &str, audience: &str, iss: &str, exp_in: i64) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = format!(
        r#"{{"iss":"{iss}","aud":"{audience}","sub":"{sub}","exp":{}}}"#,
        now + exp_in
    );
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&claims),
        b64("signature")
    )
}

/// A good token for the tests' GCR endpoints; `sub` chooses the stand-in's answer.
pub fn gcr_token(sub: &str) -> String {
    google_jwt(sub, GCR_AUDIENCE, "https://accounts.google.com", 3600)
}

/// A tokeninfo stand-in: what Google would say of each kind of token, by its `sub` (`good`,
/// `wrong-aud`, `wrong-email`, `unverified`, `not-google`, `slow` (3 s), `too-slow` (8 s), anything
/// else invalid).
pub fn tokeninfo_stand_in(request: &Recorded) -> Vec<u8> {
    use base64::Engine as _;
    let token = request.path.split_once("id_token=").map_or("", |(_, t)| t);
    let sub = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|j| serde_json::from_slice::<serde_json::Value>(&j).ok())
        .and_then(|v| v["sub"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let info = |aud: &str, iss: &str, email: &str, verified: &str| {
        json_reply(&format!(
            r#"{{"iss":"{iss}","aud":"{aud}","email":"{email}","email_verified":"{verified}","exp":"4102444800","alg":"RS256"}}"#
        ))
    };
    let google = "https://accounts.google.com";
    match sub.as_str() {
        "good" => info(GCR_AUDIENCE, google, GCR_EMAIL, "true"),
        "wrong-aud" => info("https://elsewhere.example", google, GCR_EMAIL, "true"),
        "wrong-email" => info(GCR_AUDIENCE, google, "someone@else.iam.gserviceaccount.com", "true"),
        "unverified" => info(GCR_AUDIENCE, google, GCR_EMAIL, "false"),
        "not-google" => info(GCR_AUDIENCE, "https://evil.example", GCR_EMAIL, "true"),
        "slow" => {
            std::thread::sleep(Duration::from_secs(3));
            info(GCR_AUDIENCE, google, GCR_EMAIL, "true")
        }
        "too-slow" => {
            std::thread::sleep(Duration::from_secs(8));
            info(GCR_AUDIENCE, google, GCR_EMAIL, "true")
        }
        _ => b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 55\r\n\r\n{\"error\":\"invalid_token\",\"error_description\":\"Invalid\"}".to_vec(),
    }
}

/// notification-controller's webhook path for a Receiver, computed here with sha2 directly:
/// `/hook/` and the hex sha256 of its token, name and namespace.
pub fn webhook_path(token: &[u8], name: &str, namespace: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(token);
    digest.update(name.as_bytes());
    digest.update(namespace.as_bytes());
    format!("/hook/{}", hex::encode(digest.finalize()))
}
