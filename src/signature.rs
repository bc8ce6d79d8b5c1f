//! Authenticity checks: HMAC signatures over the raw body and constant-time token compares.
//!
//! Every comparison of a secret or of a value derived from one (MACs, tokens, route digests) goes
//! through the one function [`constant_time_eq`], never through `==`.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

/// A shared secret, used byte for byte as stored. Never printed.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn new(bytes: Vec<u8>) -> Key {
        Key(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The hash behind an HMAC signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    fn tag_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }
}

/// Why a signature did not check out. The text is for the log: it never holds a MAC or a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// The header was absent.
    Missing(&'static str),
    /// The header was not `algo=hex` with a known algorithm and the right length.
    Malformed(&'static str),
    /// Well-formed, but the MAC does not match the body.
    Mismatch(&'static str),
    /// A signed timestamp further than [`REPLAY_WINDOW_SECS`] from now: a replay, or a clock off.
    Stale(&'static str),
}

impl std::error::Error for SignatureError {}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::Missing(h) => write!(f, "{h} header missing"),
            SignatureError::Malformed(h) => write!(f, "{h} header malformed"),
            SignatureError::Mismatch(h) => write!(f, "{h} does not match the body"),
            SignatureError::Stale(h) => write!(f, "{h} is more than 5 minutes from now"),
        }
    }
}

/// Parses a prefixed signature header value (`sha1=…`, `sha256=…`, `sha512=…`) into the
/// algorithm and the decoded MAC. Hex digits of either case are accepted.
pub fn parse_prefixed(value: &str) -> Option<(Algorithm, Vec<u8>)> {
    let (name, hex_tag) = value.trim().split_once('=')?;
    let algorithm = match name {
        "sha1" => Algorithm::Sha1,
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        _ => return None,
    };
    let tag = decode_tag(algorithm, hex_tag)?;
    Some((algorithm, tag))
}

fn decode_tag(algorithm: Algorithm, hex_tag: &str) -> Option<Vec<u8>> {
    if hex_tag.len() != algorithm.tag_len() * 2 {
        return None;
    }
    // One allocation of the right size (hex::decode grows its Vec from 8 bytes: 3 for a tag).
    let mut tag = vec![0u8; algorithm.tag_len()];
    hex::decode_to_slice(hex_tag, &mut tag).ok()?;
    Some(tag)
}

/// Checks `header` (named `name`, prefixed form) against the HMAC of `body` under `key`.
pub fn verify_prefixed(
    name: &'static str,
    header: Option<&str>,
    key: &[u8],
    body: &[u8],
) -> Result<(), SignatureError> {
    let value = header.ok_or(SignatureError::Missing(name))?;
    let (algorithm, tag) = parse_prefixed(value).ok_or(SignatureError::Malformed(name))?;
    check(algorithm, key, body, &tag, name)
}

/// Checks a bare-hex header (Nexus style) of the given algorithm.
pub fn verify_bare_hex(
    name: &'static str,
    algorithm: Algorithm,
    header: Option<&str>,
    key: &[u8],
    body: &[u8],
) -> Result<(), SignatureError> {
    let value = header.ok_or(SignatureError::Missing(name))?;
    let tag = decode_tag(algorithm, value.trim()).ok_or(SignatureError::Malformed(name))?;
    check(algorithm, key, body, &tag, name)
}

fn check(
    algorithm: Algorithm,
    key: &[u8],
    body: &[u8],
    tag: &[u8],
    name: &'static str,
) -> Result<(), SignatureError> {
    if constant_time_eq(&mac(algorithm, key, body), tag) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch(name))
    }
}

/// The HMAC of `body` under `key`.
fn mac(algorithm: Algorithm, key: &[u8], body: &[u8]) -> Vec<u8> {
    match algorithm {
        Algorithm::Sha1 => mac_with::<Hmac<Sha1>>(key, body),
        Algorithm::Sha256 => mac_with::<Hmac<Sha256>>(key, body),
        Algorithm::Sha512 => mac_with::<Hmac<Sha512>>(key, body),
    }
}

fn mac_with<M: Mac + KeyInit>(key: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac.chain_update(body).finalize().into_bytes().to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Compares a presented token with the key without leaking where they differ or the key's
/// length: both sides are hashed to 32 bytes first, then compared in constant time.
pub fn tokens_equal(presented: &[u8], key: &[u8]) -> bool {
    let a: [u8; 32] = Sha256::digest(presented).into();
    let b: [u8; 32] = Sha256::digest(key).into();
    constant_time_eq(&a, &b)
}

/// The one constant-time equality of this crate: its time depends on the lengths only, never on
/// where the bytes differ. Lengths are not secret here (a MAC's length is its algorithm's).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Lowercase hex HMAC of `body` under `key`, for tests, fuzzing and examples that sign deliveries.
pub fn sign_hex(algorithm: Algorithm, key: &[u8], body: &[u8]) -> String {
    hex::encode(mac(algorithm, key, body))
}

/// How far a Standard Webhooks timestamp may be from now, either way, in seconds (the spec's
/// reference libraries use the same 5 minutes).
pub const REPLAY_WINDOW_SECS: u64 = 300;

/// The secret of a Standard Webhooks signing token, `whsec_<base64>` (as GitLab shows it; white
/// space around it, such as a key file's final newline, is ignored). `None` for any other key.
pub fn signing_secret(key: &[u8]) -> Option<Vec<u8>> {
    let token = std::str::from_utf8(key).ok()?.trim();
    let encoded = token.strip_prefix("whsec_")?;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|secret| !secret.is_empty())
}

/// The three headers of a Standard Webhooks delivery, as sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Checks a Standard Webhooks delivery (standard-webhooks/standard-webhooks `spec/standard-webhooks.md`):
/// `webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256>` signatures of
/// `{webhook-id}.{webhook-timestamp}.{body}`; one that matches is enough, other versions are
/// skipped. `webhook-timestamp` (Unix seconds) must be within [`REPLAY_WINDOW_SECS`] of `now`.
pub fn verify_standard(
    headers: StandardHeaders<'_>,
    secret: &[u8],
    body: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    let id = headers.id.ok_or(SignatureError::Missing("webhook-id"))?;
    let timestamp = headers
        .timestamp
        .ok_or(SignatureError::Missing("webhook-timestamp"))?;
    let signatures = headers
        .signature
        .ok_or(SignatureError::Missing("webhook-signature"))?;
    let seconds =
        parse_unix_seconds(timestamp).ok_or(SignatureError::Malformed("webhook-timestamp"))?;
    if seconds.abs_diff(now) > REPLAY_WINDOW_SECS {
        return Err(SignatureError::Stale("webhook-timestamp"));
    }
    let expected = standard_mac(secret, id, timestamp, body);
    let mut any = false;
    for encoded in signatures.split(' ').filter_map(|s| s.strip_prefix("v1,")) {
        any = true;
        let tag = base64::engine::general_purpose::STANDARD.decode(encoded);
        if tag.is_ok_and(|tag| constant_time_eq(&expected, &tag)) {
            return Ok(());
        }
    }
    Err(if any {
        SignatureError::Mismatch("webhook-signature")
    } else {
        SignatureError::Malformed("webhook-signature")
    })
}

/// The `webhook-signature` value a Standard Webhooks sender computes: `v1,<base64>`.
pub fn sign_standard(secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let tag = standard_mac(secret, id, timestamp, body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

fn standard_mac(secret: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    mac(Algorithm::Sha256, secret, &signed)
}

/// Decimal Unix seconds, digits only (no sign, no space), at most 19 digits.
fn parse_unix_seconds(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";

    #[test]
    fn known_answer_from_githubs_docs() {
        // The test vector GitHub publishes in "Validating webhook deliveries".
        let documented = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign_hex(Algorithm::Sha256, KEY, BODY), documented);
        let header = format!("sha256={documented}");
        assert_eq!(verify_prefixed("X", Some(&header), KEY, BODY), Ok(()));
    }

    #[test]
    fn every_algorithm_round_trips_and_rejects_a_changed_body() {
        for (algorithm, prefix) in [
            (Algorithm::Sha1, "sha1"),
            (Algorithm::Sha256, "sha256"),
            (Algorithm::Sha512, "sha512"),
        ] {
            let header = format!("{prefix}={}", sign_hex(algorithm, KEY, BODY));
            assert_eq!(verify_prefixed("X", Some(&header), KEY, BODY), Ok(()));
            assert_eq!(
                verify_prefixed("X", Some(&header), KEY, b"Hello, World?"),
                Err(SignatureError::Mismatch("X"))
            );
            assert_eq!(
                verify_prefixed("X", Some(&header), b"other key", BODY),
                Err(SignatureError::Mismatch("X"))
            );
            let upper = format!("{prefix}={}", sign_hex(algorithm, KEY, BODY).to_uppercase());
            assert_eq!(verify_prefixed("X", Some(&upper), KEY, BODY), Ok(()));
        }
    }

    #[test]
    fn malformed_headers_are_told_apart_from_missing_ones() {
        let good = sign_hex(Algorithm::Sha256, KEY, BODY);
        assert_eq!(
            verify_prefixed("X", None, KEY, BODY),
            Err(SignatureError::Missing("X"))
        );
        for bad in [
            String::new(),
            "sha256".into(),
            format!("md5={good}"),
            format!("sha256={}", &good[..63]),
            format!("sha256={good}00"),
            format!("sha1={good}"),
            format!("sha256={}zz", &good[..62]),
            format!("SHA256={good}"),
        ] {
            assert_eq!(
                verify_prefixed("X", Some(&bad), KEY, BODY),
                Err(SignatureError::Malformed("X")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bare_hex_sha1_as_nexus_sends_it() {
        let sig = sign_hex(Algorithm::Sha1, KEY, BODY);
        assert_eq!(
            verify_bare_hex("N", Algorithm::Sha1, Some(&sig), KEY, BODY),
            Ok(())
        );
        assert_eq!(
            verify_bare_hex(
                "N",
                Algorithm::Sha1,
                Some(&format!("sha1={sig}")),
                KEY,
                BODY
            ),
            Err(SignatureError::Malformed("N"))
        );
    }

    #[test]
    fn key_debug_is_redacted() {
        let key = Key::new(b"super-secret".to_vec());
        assert!(!format!("{key:?}").contains("super"));
    }

    #[test]
    fn tokens_compare_by_content_only() {
        assert!(tokens_equal(b"secret-token", b"secret-token"));
        assert!(!tokens_equal(b"secret-token", b"secret-token\n"));
        assert!(!tokens_equal(b"", b"secret-token"));
        assert!(!tokens_equal(b"secret-tokem", b"secret-token"));
    }

    #[test]
    fn constant_time_eq_is_plain_equality_in_result() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn errors_never_carry_the_expected_mac() {
        let expected = sign_hex(Algorithm::Sha256, KEY, BODY);
        let wrong = format!("sha256={}", "0".repeat(64));
        let err = verify_prefixed("X-Hub-Signature-256", Some(&wrong), KEY, BODY).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains(&expected));
        assert!(!text.contains("Secret"));
    }

    // The spec's own vector (standard-webhooks `libraries/go/webhook_test.go`, `TestWebhookSign`,
    // and every other reference library).
    const SW_TOKEN: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TIMESTAMP: &str = "1614265330";
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw(signature: &str, timestamp: &str) -> StandardHeaders<'static> {
        StandardHeaders {
            id: Some(SW_ID),
            timestamp: Some(timestamp.to_owned().leak()),
            signature: Some(signature.to_owned().leak()),
        }
    }

    fn sw_secret() -> Vec<u8> {
        signing_secret(SW_TOKEN).unwrap()
    }

    #[test]
    fn standard_webhooks_spec_vector() {
        let secret = sw_secret();
        assert_eq!(
            sign_standard(&secret, SW_ID, SW_TIMESTAMP, SW_BODY),
            SW_SIGNATURE
        );
        let at = 1_614_265_330;
        assert_eq!(
            verify_standard(sw(SW_SIGNATURE, SW_TIMESTAMP), &secret, SW_BODY, at),
            Ok(())
        );
        // The key file's newline is ignored; a key that is not a token is not one.
        assert_eq!(
            signing_secret(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"),
            Some(secret)
        );
        assert_eq!(signing_secret(b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None);
        assert_eq!(signing_secret(b"whsec_not base64!"), None);
        assert_eq!(signing_secret(b"whsec_"), None);
    }

    #[test]
    fn standard_webhooks_refuses_tampering_wrong_keys_and_stale_timestamps() {
        let secret = sw_secret();
        let at = 1_614_265_330;
        let check =
            |headers, secret: &[u8], body: &[u8], now| verify_standard(headers, secret, body, now);
        let mismatch = Err(SignatureError::Mismatch("webhook-signature"));
        assert_eq!(
            check(
                sw(SW_SIGNATURE, SW_TIMESTAMP),
                &secret,
                br#"{"test": 2432232315}"#,
                at
            ),
            mismatch
        );
        assert_eq!(
            check(
                sw(SW_SIGNATURE, SW_TIMESTAMP),
                b"another secret",
                SW_BODY,
                at
            ),
            mismatch
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            check(sw(SW_SIGNATURE, "1614265331"), &secret, SW_BODY, at),
            mismatch
        );
        let stale = Err(SignatureError::Stale("webhook-timestamp"));
        assert_eq!(
            check(sw(SW_SIGNATURE, SW_TIMESTAMP), &secret, SW_BODY, at + 301),
            stale
        );
        assert_eq!(
            check(sw(SW_SIGNATURE, SW_TIMESTAMP), &secret, SW_BODY, at - 301),
            stale
        );
        assert_eq!(
            check(sw(SW_SIGNATURE, SW_TIMESTAMP), &secret, SW_BODY, at + 300),
            Ok(())
        );
        assert_eq!(
            check(sw(SW_SIGNATURE, SW_TIMESTAMP), &secret, SW_BODY, at - 300),
            Ok(())
        );
    }

    #[test]
    fn standard_webhooks_takes_any_one_of_several_signatures() {
        let secret = sw_secret();
        let at = 1_614_265_330;
        let other = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        let v2 = "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        let several = format!("{other} {v2} {SW_SIGNATURE} {other}");
        assert_eq!(
            verify_standard(sw(&several, SW_TIMESTAMP), &secret, SW_BODY, at),
            Ok(())
        );
        let none_good = format!("{other} {v2}");
        assert_eq!(
            verify_standard(sw(&none_good, SW_TIMESTAMP), &secret, SW_BODY, at),
            Err(SignatureError::Mismatch("webhook-signature"))
        );
        assert_eq!(
            verify_standard(sw(v2, SW_TIMESTAMP), &secret, SW_BODY, at),
            Err(SignatureError::Malformed("webhook-signature"))
        );
    }

    #[test]
    fn standard_webhooks_headers_missing_or_malformed() {
        let secret = sw_secret();
        let at = 1_614_265_330;
        let full = sw(SW_SIGNATURE, SW_TIMESTAMP);
        for (headers, want) in [
            (
                StandardHeaders { id: None, ..full },
                SignatureError::Missing("webhook-id"),
            ),
            (
                StandardHeaders {
                    timestamp: None,
                    ..full
                },
                SignatureError::Missing("webhook-timestamp"),
            ),
            (
                StandardHeaders {
                    signature: None,
                    ..full
                },
                SignatureError::Missing("webhook-signature"),
            ),
            (
                sw(SW_SIGNATURE, "+1614265330"),
                SignatureError::Malformed("webhook-timestamp"),
            ),
            (
                sw(SW_SIGNATURE, "1614265330.0"),
                SignatureError::Malformed("webhook-timestamp"),
            ),
            (
                sw(SW_SIGNATURE, ""),
                SignatureError::Malformed("webhook-timestamp"),
            ),
            (
                sw(SW_SIGNATURE, "99999999999999999999"),
                SignatureError::Malformed("webhook-timestamp"),
            ),
        ] {
            assert_eq!(verify_standard(headers, &secret, SW_BODY, at), Err(want));
        }
    }
}
