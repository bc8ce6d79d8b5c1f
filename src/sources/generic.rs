//! Generic: a CI pipeline (or anything that can sign a body) tells Flux of a change directly,
//! e.g. after `skopeo sync` into a mirror or a push to a repository no webhook reaches.
//!
//! - Authentication, either of:
//!   - `X-Signature: sha256=<hex HMAC of the body>` (also `sha1=`, `sha512=`), the header Flux
//!     v2's `generic-hmac` receiver uses, keyed with the key file's bytes as they are;
//!   - Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,…`;
//!     timestamps more than 5 minutes from now refused), keyed with the secret of a `whsec_…` key,
//!     or with the key's bytes when it is not one. Used when `webhook-signature` is present.
//!
//!   Neither, or a wrong one → 401.
//! - Body: one fluxd `Change` or a JSON list of 1 to [`MAX_CHANGES`] of them, decoded as fluxd
//!   decodes one (`docs/fluxd.md` §2): keys matched case-insensitively, unknown keys
//!   ignored, `Kind` exactly `git` or `image`, `Source` present (`null` = empty), `URL`, `Branch`,
//!   `Domain`, `Image` strings when present; bytes after the first JSON value ignored. Each change is
//!   re-encoded canonically (`{"Kind":"git","Source":{"URL":…,"Branch":…}}`) before it is sent;
//!   repeats are sent once. Anything else → 400, and the log names the problem.
//! - Delivery id: `webhook-id`, else `X-Request-Id`.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

pub use super::MAX_CHANGES;
use super::{first_header, malformed, standard_headers, standard_sample_headers, unauthorized};
use super::{Bounded, Changes, Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::change::{Change, ImageName};
use crate::signature::Algorithm;
use crate::signature::{sign_hex, signing_secret, unix_now, verify_prefixed, verify_standard};

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    authenticate(incoming, settings.key.bytes())?;
    decode_changes(&incoming.body).map(Outcome::Notify)
}

fn authenticate(incoming: &Incoming, key: &[u8]) -> Result<(), Rejection> {
    let body = &incoming.body;
    if incoming.header("webhook-signature").is_some() {
        let secret = signing_secret(key).unwrap_or_else(|| key.to_vec());
        verify_standard(standard_headers(incoming), &secret, body, unix_now())
    } else {
        verify_prefixed("X-Signature", incoming.header("X-Signature"), key, body)
    }
    .map_err(unauthorized)
}

/// The changes a body asks for, in order, each once; or why it is not a change.
pub fn decode_changes(body: &[u8]) -> Result<Vec<Change>, Rejection> {
    let items = match serde_json::Deserializer::from_slice(body)
        .into_iter::<OneOrList>()
        .next()
    {
        Some(Ok(OneOrList(items))) => items,
        Some(Err(e)) => return Err(malformed(format!("Generic body is not JSON: {e}"))),
        None => return Err(malformed("Generic body is empty")),
    };
    if items.is_empty() {
        return Err(malformed(format!(
            "Generic body holds no change (1 to {MAX_CHANGES})"
        )));
    }
    let mut changes = Changes::default();
    for (i, item) in items.iter().enumerate() {
        let change = change_of(item).map_err(|e| malformed(format!("change {i}: {e}")))?;
        changes.push(change)?;
    }
    Ok(changes.into_vec())
}

/// A body's first JSON value: one change (an object), or a list of at most [`MAX_CHANGES`],
/// refused while it is parsed when longer.
struct OneOrList(Vec<Value>);

impl<'de> Deserialize<'de> for OneOrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OneOrListVisitor)
    }
}

struct OneOrListVisitor;

impl<'de> Visitor<'de> for OneOrListVisitor {
    type Value = OneOrList;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a change or a list of at most {MAX_CHANGES} changes")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OneOrList, A::Error> {
        let one = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(OneOrList(vec![one]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<OneOrList, A::Error> {
        let Bounded(items) = Bounded::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(OneOrList(items))
    }
}

/// One change as fluxd's `Change.UnmarshalJSON` reads it.
fn change_of(value: &Value) -> Result<Change, String> {
    let object = value.as_object().ok_or("not a JSON object")?;
    let kind = field(object, "Kind").ok_or("no Kind (git or image)")?;
    let kind = kind.as_str().ok_or("Kind is not a string")?;
    let source = field(object, "Source").ok_or("no Source")?;
    let empty = Map::new();
    let source = match source {
        Value::Null => &empty,
        Value::Object(source) => source,
        _ => return Err("Source is not an object".into()),
    };
    match kind {
        "git" => Ok(Change::Git {
            url: text(source, "URL")?,
            branch: text(source, "Branch")?,
        }),
        "image" => {
            let name = match field(source, "Name") {
                None | Some(Value::Null) => &empty,
                Some(Value::Object(name)) => name,
                Some(_) => return Err("Source.Name is not an object".into()),
            };
            Ok(Change::Image(ImageName {
                domain: text(name, "Domain")?,
                image: text(name, "Image")?,
            }))
        }
        other => Err(format!(
            "unknown Kind {:?} (git or image)",
            super::printable(other)
        )),
    }
}

/// A key as Go's decoder finds it: the exact name first, else any ASCII case of it.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// A string field; absent or `null` is `""`, as in Go.
fn text(object: &Map<String, Value>, name: &str) -> Result<String, String> {
    match field(object, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

pub fn delivery_id(headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    first_header(headers, &["webhook-id", "X-Request-Id"])
}

pub const SAMPLE_BODY: &[u8] =
    br#"{"Kind":"git","Source":{"URL":"git@gitea.example.com:acme/fleet-infra.git","Branch":"main"}}"#;

/// Signed as `flux-recv notify` signs: `X-Signature`, or Standard Webhooks for a `whsec_` key.
pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    let headers: Vec<(&'static str, String)> = match signing_secret(key) {
        Some(secret) => standard_sample_headers(&secret, body),
        None => vec![(
            "X-Signature",
            format!("sha256={}", sign_hex(Algorithm::Sha256, key, body)),
        )],
    };
    let mut headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    headers.push(("Content-Type", "application/json"));
    Incoming::post(&headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const GIT: &[u8] = include_bytes!("../../tests/fixtures/generic/git.json");
    const IMAGE: &[u8] = include_bytes!("../../tests/fixtures/generic/image.json");
    const LIST: &[u8] = include_bytes!("../../tests/fixtures/generic/list.json");
    const REPO: &str = "git@gitea.acme.example:platform/fleet-infra.git";

    fn signed(body: &[u8]) -> Result<Outcome, Rejection> {
        handle(&sample(KEY, body), &settings())
    }

    fn changes(body: &[u8]) -> Vec<Change> {
        match signed(body) {
            Ok(Outcome::Notify(changes)) => changes,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn a_change_or_a_list_is_forwarded_canonically() {
        assert_eq!(changes(GIT), vec![git(REPO, "main")]);
        assert_eq!(
            changes(IMAGE),
            vec![image("mirror.internal:5000", "team-a/podinfo")]
        );
        assert_eq!(
            changes(LIST),
            vec![
                image("mirror.internal:5000", "team-a/podinfo"),
                image("mirror.internal:5000", "team-b/api"),
                git(REPO, "main"),
            ]
        );
        // Re-encoded: the keys as fluxd's encoder writes them, whatever the case sent.
        let sent = br#"{"kind":"git","SOURCE":{"url":"u","bRaNcH":"b","extra":1},"x":[]} trailing"#;
        assert_eq!(
            changes(sent)[0].to_json(),
            br#"{"Kind":"git","Source":{"URL":"u","Branch":"b"}}"#
        );
        // null Source and missing fields are empty, as fluxd has them.
        assert_eq!(
            changes(br#"{"Kind":"git","Source":null}"#),
            vec![git("", "")]
        );
        assert_eq!(
            changes(br#"{"Kind":"image","Source":{}}"#),
            vec![image("", "")]
        );
    }

    #[test]
    fn what_fluxd_would_refuse_is_400() {
        for body in [
            &b""[..],
            b"{",
            b"7",
            b"\"git\"",
            b"[]",
            br#"{"Source":{"URL":"u"}}"#,
            br#"{"Kind":"git"}"#,
            br#"{"Kind":"GIT","Source":{}}"#,
            br#"{"Kind":"helm","Source":{}}"#,
            br#"{"Kind":7,"Source":{}}"#,
            br#"{"Kind":"git","Source":"u"}"#,
            br#"{"Kind":"git","Source":{"URL":7}}"#,
            br#"{"Kind":"image","Source":{"Name":"alpine"}}"#,
            br#"{"Kind":"image","Source":{"Name":{"Image":["a"]}}}"#,
            br#"[{"Kind":"git","Source":{}},7]"#,
        ] {
            assert!(
                is_bad_request(&signed(body)),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let too_many = format!(
            "[{}]",
            vec![std::str::from_utf8(GIT).unwrap().trim(); MAX_CHANGES + 1].join(",")
        );
        assert!(is_bad_request(&signed(too_many.as_bytes())));
        let most = format!(
            "[{}]",
            vec![std::str::from_utf8(GIT).unwrap().trim(); MAX_CHANGES].join(",")
        );
        assert_eq!(changes(most.as_bytes()), vec![git(REPO, "main")]);
    }

    #[test]
    fn the_signature_is_x_signature_or_standard_webhooks() {
        for algorithm in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            let prefix = match algorithm {
                Algorithm::Sha1 => "sha1",
                Algorithm::Sha256 => "sha256",
                Algorithm::Sha512 => "sha512",
            };
            let header = format!("{prefix}={}", sign_hex(algorithm, KEY, GIT));
            let out = handle(&incoming(&[("X-Signature", &header)], GIT), &settings());
            assert!(matches!(out, Ok(Outcome::Notify(_))), "{prefix}");
        }
        assert!(is_unauthorized(&handle(&incoming(&[], GIT), &settings())));
        let other_body = sample(KEY, IMAGE).headers;
        let other: Vec<(&str, &str)> = other_body
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert!(is_unauthorized(&handle(
            &incoming(&other, GIT),
            &settings()
        )));
        // Standard Webhooks, with a whsec_ key and with a plain one.
        let token = b"whsec_c2lnbmluZy10b2tlbi1mb3ItZmx1eC1yZWN2LXRlc3Q=";
        let with_token = Settings::new(crate::signature::Key::new(token.to_vec()));
        assert!(matches!(
            handle(&sample(token, GIT), &with_token),
            Ok(Outcome::Notify(_))
        ));
        let plain = standard_sample_headers(KEY, GIT);
        let plain: Vec<(&str, &str)> = plain.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert!(matches!(
            handle(&incoming(&plain, GIT), &settings()),
            Ok(Outcome::Notify(_))
        ));
        assert!(is_unauthorized(&handle(
            &incoming(&plain, IMAGE),
            &settings()
        )));
        // A bad Standard Webhooks signature is not rescued by a good X-Signature.
        let mut both = plain.clone();
        let good = format!("sha256={}", sign_hex(Algorithm::Sha256, KEY, IMAGE));
        both.push(("X-Signature", &good));
        assert!(is_unauthorized(&handle(
            &incoming(&both, IMAGE),
            &settings()
        )));
        // Unauthenticated junk learns nothing about the body.
        assert!(is_unauthorized(&handle(
            &incoming(&[], b"junk"),
            &settings()
        )));
    }
}
