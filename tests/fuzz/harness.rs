//! Entry points for the fuzz targets (`tests/fuzz/`) and for replaying their corpus in
//! `cargo test` on stable (`tests/fuzz_corpus.rs`). Each runs real code on arbitrary bytes and
//! asserts what must hold whatever the input; a panic is a finding.

use std::collections::HashSet;
use std::path::Path;

use flux_recv::change::{Change, ImageName};
use flux_recv::config;
use flux_recv::server::{frame_request, Refusal};
use flux_recv::signature::{self, Algorithm, Key, StandardHeaders};
use flux_recv::sources::{generic, Outcome, Rejection, Settings, Source};
use flux_recv::sources::{MAX_CHANGES, MAX_NAME_BYTES};

const FUZZ_KEY: &[u8] = b"fuzz-key-0123456789abcdef";
const FUZZ_MAX_BODY: u64 = 64 * 1024;

/// What [`http_request`] frames of an input: enough for every framing rule (a head, chunk
/// lines, trailers), and short enough that a byte-at-a-time read under coverage
/// instrumentation runs thousands of times a second. [`http_request_long`] takes any length.
pub const HTTP_INPUT_BYTES: usize = 4096;

/// Request framing: byte 0 chooses how many bytes each read returns, the rest is the stream
/// (its first [`HTTP_INPUT_BYTES`]).
pub fn http_request(data: &[u8]) {
    http_request_long(&data[..data.len().min(HTTP_INPUT_BYTES + 1)]);
}

/// Request framing of inputs of any length (heads up to the 16 KiB cap, dripped), for a
/// slower campaign of its own.
pub fn http_request_long(data: &[u8]) {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    match frame_request(bytes, usize::from(step % 64) + 1, FUZZ_MAX_BODY) {
        Ok(framed) => {
            assert!(framed.body.len() as u64 <= FUZZ_MAX_BODY);
            assert!(framed.headers.len() <= flux_recv::server::MAX_HEADERS);
            // Framing does not depend on how the bytes were split into reads.
            let whole = frame_request(bytes, bytes.len().max(1), FUZZ_MAX_BODY);
            assert_eq!(whole.as_ref().ok(), Some(&framed));
        }
        Err(refusal) => {
            assert!(
                matches!(
                    refusal,
                    Refusal::BadRequest(_) | Refusal::TooLarge | Refusal::HeadTooLarge
                ),
                "framing refused with {refusal:?}"
            );
        }
    }
}

/// A source's parse entry point: byte 0 picks the source, byte 1 the event (see [`payload_of`]).
pub fn source_payload(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    payload_of(Source::ALL[usize::from(pick) % Source::ALL.len()], rest);
}

/// Header values a delivery's event header is set to, so that every parser of a source is
/// reached: `None` keeps the sample's own event.
const EVENTS: &[Option<&str>] = &[
    None,
    Some("push"),
    Some("package"),
    Some("registry_package"),
    Some("delete"),
    Some("ping"),
    Some("create"),
    Some("zotregistry.image.updated"),
    Some("zotregistry.image.deleted"),
];

/// The headers that name a delivery's event, for the sources that have one.
const EVENT_HEADERS: &[&str] = &[
    "X-GitHub-Event",
    "X-Gitlab-Event",
    "X-Event-Key",
    "X-Gitea-Event",
    "X-Gitea-Event-Type",
    "Ce-Type",
];

/// One source's payload parsers: byte 0 picks the event from [`EVENTS`], the rest is the body
/// of the source's sample delivery, correctly signed (or with the right token) so that the
/// parser is reached.
pub fn payload_of(source: Source, data: &[u8]) {
    let Some((&event, body)) = data.split_first() else {
        return;
    };
    let mut incoming = source.sample(FUZZ_KEY, body);
    if let Some(event) = EVENTS[usize::from(event) % EVENTS.len()] {
        for (name, value) in &mut incoming.headers {
            if EVENT_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                *value = event.into();
            }
        }
    }
    let mut settings = Settings::new(Key::new(FUZZ_KEY.to_vec()));
    settings.registry_host = Some("registry.example.com".into());
    match source.handle(&incoming, &settings) {
        Ok(Outcome::Notify(changes)) => {
            assert_bounded(&changes);
            for change in changes {
                let json: serde_json::Value =
                    serde_json::from_slice(&change.to_json()).expect("a change is JSON");
                assert!(json["Kind"] == "git" || json["Kind"] == "image");
            }
        }
        Ok(Outcome::Ignored(reason)) => assert!(reason.len() < 200),
        Ok(Outcome::Pong) => {}
        Err(Rejection::Malformed(_)) => {}
        Err(other) => panic!("a correctly signed {source:?} delivery gave {other:?}"),
    }
}

/// What every delivery's changes keep to, whatever the payload: some, at most
/// [`MAX_CHANGES`], no two alike, no name over [`MAX_NAME_BYTES`].
fn assert_bounded(changes: &[Change]) {
    assert!(!changes.is_empty() && changes.len() <= MAX_CHANGES);
    let distinct: HashSet<&Change> = changes.iter().collect();
    assert_eq!(distinct.len(), changes.len(), "repeated changes");
    for change in changes {
        let names = match change {
            Change::Git { url, branch } => [url, branch],
            Change::Image(name) => [&name.domain, &name.image],
        };
        assert!(names.iter().all(|n| n.len() <= MAX_NAME_BYTES), "{change}");
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

/// The Standard Webhooks checker: the input is `id`, `timestamp`, `signature` and the body,
/// separated by newlines; "now" is the timestamp itself, so that the window lets it through.
pub fn standard_webhooks(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let (id, timestamp, signature) = (parts.next(), parts.next(), parts.next());
    let body = parts.next().unwrap_or("").as_bytes();
    let now = timestamp.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    let headers = StandardHeaders {
        id,
        timestamp,
        signature,
    };
    let verdict = signature::verify_standard(headers, FUZZ_KEY, body, now);
    let (Some(id), Some(timestamp)) = (id, timestamp) else {
        assert!(verdict.is_err());
        return;
    };
    let genuine = signature::sign_standard(FUZZ_KEY, id, timestamp, body);
    if verdict.is_ok() {
        // Only the MAC of this id, timestamp and body under this key may pass.
        let decode =
            |s: &str| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s);
        let want = decode(&genuine[3..]).ok();
        let presented = signature
            .unwrap_or("")
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"));
        assert!(
            presented.map(|s| decode(s).ok()).any(|tag| tag == want),
            "a forged signature passed: {text:?}"
        );
    }
    // The genuine signature, among whatever else was sent, passes whenever the timestamp is one.
    let appended = format!("{} {genuine}", signature.unwrap_or(""));
    let headers = StandardHeaders {
        id: Some(id),
        timestamp: Some(timestamp),
        signature: Some(&appended),
    };
    let timestamp_ok = !timestamp.is_empty()
        && timestamp.len() <= 19
        && timestamp.bytes().all(|b| b.is_ascii_digit());
    assert_eq!(
        signature::verify_standard(headers, FUZZ_KEY, body, now).is_ok(),
        timestamp_ok,
        "{text:?}"
    );
}

/// Generic's change decoding: what it accepts re-encodes to JSON that decodes to the same change.
pub fn generic_changes(data: &[u8]) {
    match generic::decode_changes(data) {
        Ok(changes) => {
            assert_bounded(&changes);
            for change in changes {
                let again = generic::decode_changes(&change.to_json()).ok();
                assert_eq!(again, Some(vec![change]));
            }
        }
        Err(Rejection::Malformed(_)) => {}
        Err(other) => panic!("decoding refused with {other:?}"),
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
