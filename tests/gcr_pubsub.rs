//! GCR with a real sender: the Google Cloud CLI's Pub/Sub emulator pushes to a running
//! flux-recv's `GoogleContainerRegistry` endpoint, as Google's `gcr` topic does. A DELETE and then
//! an INSERT message (GCR's documented format, `{"action":…,"tag":…}`) are published; fluxd must
//! hear of exactly the INSERT's image, once. Without `gcr.audience` the endpoint authenticates by
//! its URL only, which is all the emulator can do (it sends no OIDC token).
//!
//! Where the emulator is missing the test says so and skips; under CI (`CI` set) it fails.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;

const KEY: &[u8] = b"gcr-pubsub-emulator-key-0123456789abcdef";
const PROJECT: &str = "flux-recv-test";

/// The emulator, in a process group of its own: gcloud starts a Java server as its child, and
/// both go when this is dropped.
struct Emulator {
    child: Child,
    base: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// Starts the emulator on a free loopback port and waits until it answers; None when this machine
/// has no emulator (said so, or failed under CI).
fn start_emulator() -> Option<Emulator> {
    if !runs("gcloud", &["--version"]) {
        skip_without(
            "gcloud (the Google Cloud CLI, with its Pub/Sub emulator)",
            "install google-cloud-cli and google-cloud-cli-pubsub-emulator",
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = temp_dir("pubsub");
    let log = dir.join("emulator.log");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let child = Command::new("gcloud")
        .args(["beta", "emulators", "pubsub", "start"])
        .arg(format!("--host-port=127.0.0.1:{port}"))
        .arg(format!("--data-dir={}", dir.join("data").display()))
        // Its own settings folder, no prompts, no update checks or usage reports: offline.
        .env("CLOUDSDK_CONFIG", dir.join("gcloud"))
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "1")
        .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ))
        .process_group(0)
        .spawn()
        .expect("gcloud");
    let mut emulator = Emulator {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if ureq::get(&emulator.base).call().is_ok() {
            return Some(emulator);
        }
        if let Ok(Some(status)) = emulator.child.try_wait() {
            skip_without(
                "the Pub/Sub emulator",
                &format!(
                    "`gcloud beta emulators pubsub start` exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            );
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "the Pub/Sub emulator did not answer within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One call to the emulator's REST API; its JSON answer.
fn call(method: &str, url: &str, body: &serde_json::Value) -> serde_json::Value {
    let mut reply = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .map(ureq::run)
        .unwrap()
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let text = reply.body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"))
}

/// Publishes one GCR message (its JSON, base64 in `data`, as Google's `gcr` topic carries it).
fn publish(emulator: &Emulator, message: &serde_json::Value) {
    let data = base64::engine::general_purpose::STANDARD.encode(message.to_string());
    let answer = call(
        "POST",
        &format!("{}/v1/projects/{PROJECT}/topics/gcr:publish", emulator.base),
        &serde_json::json!({"messages": [{"data": data}]}),
    );
    assert_eq!(
        answer["messageIds"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
}

/// flux-recv's request lines for the GCR endpoint, by outcome.
fn outcomes(recv: &Proc) -> Vec<String> {
    recv.stderr_text()
        .lines()
        .filter(|l| l.contains("msg=request source=GoogleContainerRegistry"))
        .filter_map(|l| Some(l.split(" outcome=").nth(1)?.split(' ').next()?.to_owned()))
        .collect()
}

#[test]
fn the_pubsub_emulator_pushes_gcr_messages_and_only_the_insert_reaches_fluxd() {
    let Some(emulator) = start_emulator() else {
        return;
    };
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let yaml = format!(
        "fluxRecvVersion: 1\napi: {}\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: gcr.key\n",
        fluxd.api()
    );
    let config = write_yaml(&temp_dir("gcr-pubsub"), &yaml, &[("gcr.key", KEY)]);
    let recv = Proc::start(&["--config", &config.display().to_string()]);
    let endpoint = format!("http://{}{}", recv.addr, route_of(KEY, ""));

    let topic = format!("projects/{PROJECT}/topics/gcr");
    let answer = call(
        "PUT",
        &format!("{}/v1/{topic}", emulator.base),
        &serde_json::json!({}),
    );
    assert_eq!(answer["name"], topic.as_str());
    let subscription = format!("projects/{PROJECT}/subscriptions/flux-recv");
    let answer = call(
        "PUT",
        &format!("{}/v1/{subscription}", emulator.base),
        &serde_json::json!({
            "topic": topic,
            "pushConfig": {"pushEndpoint": endpoint},
            "ackDeadlineSeconds": 10,
        }),
    );
    assert_eq!(answer["pushConfig"]["pushEndpoint"], endpoint.as_str());

    // A deleted tag: authentic, nothing to do.
    publish(
        &emulator,
        &serde_json::json!({"action": "DELETE", "tag": "gcr.io/project/app:0.9"}),
    );
    wait_until("the DELETE's push", Duration::from_secs(30), || {
        !outcomes(&recv).is_empty()
    });
    assert_eq!(outcomes(&recv), ["ignored"], "{}", recv.stderr_text());
    assert!(fluxd.bodies().is_empty(), "{:?}", fluxd.bodies());

    // A pushed tag: fluxd hears of that image.
    publish(
        &emulator,
        &serde_json::json!({
            "action": "INSERT",
            "digest": "gcr.io/project/app@sha256:6ec128e26cd5bf8c1a5fc2ac3c5e0e3b7b3c5e6e0f9a1b2c3d4e5f60718293a4",
            "tag": "gcr.io/project/app:1.0",
        }),
    );
    fluxd.wait_for_requests(1);
    // Both pushes were answered 2xx, so the emulator acked them and sends neither again.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        outcomes(&recv),
        ["ignored", "notified"],
        "{}",
        recv.stderr_text()
    );
    let requests = fluxd.requests();
    assert_eq!(requests.len(), 1, "{:?}", fluxd.bodies());
    assert_eq!(requests[0].path, "/api/flux/v11/notify");
    let got: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"Kind": "image", "Source": {"Name": {"Domain": "gcr.io", "Image": "project/app"}}})
    );
    // The push came from the emulator, with its Pub/Sub envelope: flux-recv's log names the
    // message id as the delivery.
    let log = recv.stderr_text();
    let line = log
        .lines()
        .find(|l| l.contains("outcome=notified"))
        .unwrap();
    let delivery = line
        .split(" delivery=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(
        !delivery.is_empty() && delivery.chars().all(|c| c.is_ascii_digit()),
        "the emulator's message id: {line}"
    );
}
