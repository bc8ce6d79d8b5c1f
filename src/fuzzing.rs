//! Entry points for the fuzz targets (`tests/fuzz/`) and for replaying their corpus in
//! `cargo test` on stable (`tests/fuzz_corpus.rs`). Each runs real code on arbitrary bytes and
//! asserts what must hold whatever the input; a panic is a finding.

use std::path::Path;

use crate::change::ImageName;
use crate::config::{self, Endpoint, Key};
use crate::error::HookError;
use crate::server::frame_request;
use crate::signature::{self, Algorithm};
use crate::sources::{Incoming, Outcome, Source};

const FUZZ_KEY: &[u8] = b"fuzz-key-0123456789abcdef";
const FUZZ_MAX_BODY: u64 = 64 * 1024;

/// Request framing: byte 0 chooses how many bytes each read returns, the rest is the stream.
pub fn http_request(data: &[u8]) {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    match frame_request(bytes, usize::from(step % 64) + 1, FUZZ_MAX_BODY) {
        Ok(framed) => {
            assert!(framed.body.len() as u64 <= FUZZ_MAX_BODY);
            assert!(framed.headers.len() <= crate::server::MAX_HEADERS);
            // Framing does not depend on how the bytes were split into reads.
            let whole = frame_request(bytes, bytes.len().max(1), FUZZ_MAX_BODY);
            assert_eq!(whole.as_ref().ok(), Some(&framed));
        }
        Err(error) => {
            assert!(
                matches!(error.status(), 400 | 413 | 431),
                "framing error with status {}",
                error.status()
            );
        }
    }
}

/// Event headers tried per source, chosen by byte 1.
fn events(source: Source) -> &'static [(&'static str, &'static str)] {
    match source {
        Source::GitHub => &[("X-GitHub-Event", "push"), ("X-GitHub-Event", "ping")],
        Source::GitLab => &[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Event", "Tag Push Hook"),
        ],
        Source::BitbucketCloud => &[("X-Event-Key", "repo:push")],
        Source::BitbucketServer => &[
            ("X-Event-Key", "repo:refs_changed"),
            ("X-Event-Key", "diagnostics:ping"),
        ],
        Source::Nexus => &[
            ("X-Nexus-Webhook-Id", "rm:repository:component"),
            ("X-Nexus-Webhook-Id", "rm:repository:asset"),
        ],
        Source::DockerHub | Source::Quay | Source::Harbor | Source::GoogleContainerRegistry => {
            &[("X-Unused", "")]
        }
    }
}

/// A source's parse entry point: byte 0 picks the source, byte 1 the event; the rest is the body,
/// correctly signed (or with the right token) so that the payload parser is reached.
pub fn source_payload(data: &[u8]) {
    let [pick, event, body @ ..] = data else {
        return;
    };
    let source = Source::ALL[usize::from(*pick) % Source::ALL.len()];
    let choices = events(source);
    let (name, value) = choices[usize::from(*event) % choices.len()];
    let key = std::str::from_utf8(FUZZ_KEY).unwrap_or_default();
    let sha256 = format!(
        "sha256={}",
        signature::sign_hex(Algorithm::Sha256, FUZZ_KEY, body)
    );
    let sha1 = signature::sign_hex(Algorithm::Sha1, FUZZ_KEY, body);
    let headers: Vec<(String, String)> = [
        (name, value),
        ("Content-Type", "application/json"),
        ("X-Hub-Signature-256", &sha256),
        ("X-Hub-Signature", &sha256),
        ("X-Gitlab-Token", key),
        ("Authorization", key),
        ("X-Nexus-Webhook-Signature", &sha1),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let incoming = Incoming {
        method: "POST".into(),
        path: "/hook/fuzz".into(),
        headers,
        body: body.to_vec(),
    };
    let endpoint = Endpoint::new(
        0,
        source,
        Key::new(FUZZ_KEY.to_vec()),
        "fuzz.key".into(),
        Some("registry.example.com".into()),
    );
    match source.handle(&incoming, &endpoint) {
        Ok(Outcome::Notify(changes)) => {
            assert!(!changes.is_empty());
            for change in changes {
                let json: serde_json::Value =
                    serde_json::from_slice(&change.to_json()).expect("a change is JSON");
                assert!(json["Kind"] == "git" || json["Kind"] == "image");
            }
        }
        Ok(Outcome::Ignored(reason)) => assert!(reason.len() < 200),
        Ok(Outcome::Pong) => {}
        Err(HookError::BadRequest(_)) => {}
        Err(other) => panic!("a correctly signed delivery gave {other:?}"),
    }
}

/// The image reference parser.
pub fn image_ref(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(name) = ImageName::parse(&text) {
        assert!(!name.image.contains(':'), "image keeps a colon: {name:?}");
        assert!(!name.domain.contains('/'), "domain holds a slash: {name:?}");
        assert!(text.contains(&name.image));
        assert!(text.starts_with(&name.domain));
        assert_eq!(ImageName::parse(&text), Ok(name));
    }
}

/// The signature header parser and checker.
pub fn signature_header(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some((algorithm, tag)) = signature::parse_prefixed(&text) {
        let expected = match algorithm {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        };
        assert_eq!(tag.len(), expected);
    }
    let verdict = signature::verify_prefixed("X", Some(&text), FUZZ_KEY, data);
    let expected = format!(
        "sha256={}",
        signature::sign_hex(Algorithm::Sha256, FUZZ_KEY, data)
    );
    if text.trim() != expected && verdict.is_ok() {
        // Only a MAC of this exact body under this key may pass (any algorithm, any hex case).
        let lower = text.trim().to_ascii_lowercase();
        let any = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]
            .iter()
            .any(|a| lower.ends_with(&signature::sign_hex(*a, FUZZ_KEY, data)));
        assert!(any, "a forged signature passed: {text:?}");
    }
}

/// The config parser (key files are looked up in a folder that does not exist).
pub fn config_yaml(data: &[u8]) {
    match config::parse(data, Path::new("/nonexistent-flux-recv-fuzz"), "fuzz.yaml") {
        Ok(loaded) => assert!(!loaded.config.endpoints.is_empty()),
        Err(errors) => {
            assert!(!errors.0.is_empty());
            assert!(errors.0.iter().all(|m| !m.is_empty()));
        }
    }
}
