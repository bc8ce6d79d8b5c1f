//! Zot (≥ 2.1.3) registry events, through an `http` sink of its `events` extension.
//!
//! - Authentication: the sink's `credentials`: `token` is sent as `Authorization: Bearer
//!   <token>`, `username`/`password` as `Basic`; the key must be the token or the password, in
//!   constant time; missing or wrong → 401 (`pkg/extensions/events/http_sink.go`).
//! - Events: CloudEvents 1.0 from the CloudEvents Go SDK, binary mode: the type in `Ce-Type`, the
//!   id in `Ce-Id`, the event's data as the JSON body (`pkg/extensions/events/common.go`,
//!   `events.go`, `builder.go`). A structured-mode body (`application/cloudevents+json`) is read
//!   too. `zotregistry.image.updated` with a tag in `reference` → an image change for
//!   `registryHost` + `/` + `name` (Zot's events name no host, so `registryHost` is required);
//!   an update by digest (the platform manifests of a multi-arch push), `image.deleted`,
//!   `image.lint_failed`, `image.scanned`, `repository.created` → 200 ignored.
//! - Docs: <https://zotregistry.dev/> (Events), `examples/config-events.json`.

use serde::Deserialize;

use super::authorization::{authorize, Scheme};
use super::{decode_json, first_header, image_change, malformed, printable};
use super::{Incoming, Outcome, RegistryHost, Rejection, Settings};

/// Zot's events name no host.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Required;

const IMAGE_UPDATED: &str = "zotregistry.image.updated";

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    authorize(
        incoming.header("Authorization"),
        settings.key.bytes(),
        Scheme::BearerOrBasic,
    )?;
    let (kind, data): (String, Data) = match incoming.header("Ce-Type") {
        Some(kind) => (
            kind.to_owned(),
            decode_json("Zot event data", &incoming.body)?,
        ),
        None => {
            let event: Structured = decode_json("Zot CloudEvent", &incoming.body)
                .map_err(|_| malformed("no Ce-Type header and not a structured CloudEvent"))?;
            (event.kind, event.data)
        }
    };
    if kind != IMAGE_UPDATED {
        return Ok(Outcome::Ignored(format!("type {}", printable(&kind))));
    }
    if data.reference.is_empty() || data.reference.starts_with("sha256:") {
        return Ok(Outcome::Ignored("update by digest".into()));
    }
    let host = settings.registry_host.as_deref().unwrap_or("");
    let reference = format!("{}/{}", host.trim_end_matches('/'), data.name);
    Ok(Outcome::Notify(vec![image_change(&reference)?]))
}

pub fn delivery_id(headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    first_header(headers, &["Ce-Id"])
}

pub const SAMPLE_BODY: &[u8] = br#"{"name":"team/app","reference":"1.0","digest":"sha256:00","mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;

/// An image update as Zot's HTTP sink sends it, with a `token` credential.
pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(
        &[
            ("Content-Type", "application/json"),
            ("Ce-Specversion", "1.0"),
            ("Ce-Type", IMAGE_UPDATED),
            ("Ce-Source", "zotregistry.dev"),
            ("Ce-Id", "2b3f6a4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"),
            (
                "Authorization",
                &format!("Bearer {}", String::from_utf8_lossy(key)),
            ),
        ],
        body,
    )
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    name: String,
    #[serde(default)]
    reference: String,
}

/// A structured-mode CloudEvent.
#[derive(Deserialize)]
struct Structured {
    #[serde(rename = "type")]
    kind: String,
    data: Data,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;
    use base64::Engine as _;

    const UPDATED: &[u8] = include_bytes!("../../tests/fixtures/zot/image_updated.json");
    const BY_DIGEST: &[u8] =
        include_bytes!("../../tests/fixtures/zot/image_updated_by_digest.json");
    const DELETED: &[u8] = include_bytes!("../../tests/fixtures/zot/image_deleted.json");
    const CREATED: &[u8] = include_bytes!("../../tests/fixtures/zot/repository_created.json");

    fn run(kind: Option<&str>, auth: Option<&str>, body: &[u8]) -> Result<Outcome, Rejection> {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Ce-Specversion", "1.0"),
        ];
        if let Some(kind) = kind {
            headers.push(("Ce-Type", kind));
        }
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        handle(
            &incoming(&headers, body),
            &settings_with_host("mirror.internal:5000"),
        )
    }

    fn bearer() -> String {
        format!("Bearer {}", std::str::from_utf8(KEY).unwrap())
    }

    #[test]
    fn a_tag_update_notifies_the_registry_host_and_name() {
        let want = Outcome::Notify(vec![image("mirror.internal:5000", "team-a/podinfo")]);
        assert_eq!(
            run(Some(IMAGE_UPDATED), Some(&bearer()), UPDATED).unwrap(),
            want
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("zot:{}", std::str::from_utf8(KEY).unwrap()))
        );
        assert_eq!(
            run(Some(IMAGE_UPDATED), Some(&basic), UPDATED).unwrap(),
            want
        );
        // The same event in structured mode.
        let structured = format!(
            r#"{{"specversion":"1.0","type":"{IMAGE_UPDATED}","source":"zotregistry.dev","id":"1","datacontenttype":"application/json","data":{}}}"#,
            std::str::from_utf8(UPDATED).unwrap()
        );
        assert_eq!(
            run(None, Some(&bearer()), structured.as_bytes()).unwrap(),
            want
        );
    }

    #[test]
    fn digest_updates_and_other_types_are_ignored() {
        assert_eq!(
            run(Some(IMAGE_UPDATED), Some(&bearer()), BY_DIGEST).unwrap(),
            Outcome::Ignored("update by digest".into())
        );
        for (kind, body) in [
            ("zotregistry.image.deleted", DELETED),
            ("zotregistry.repository.created", CREATED),
            ("zotregistry.image.lint_failed", UPDATED),
        ] {
            assert_eq!(
                run(Some(kind), Some(&bearer()), body).unwrap(),
                Outcome::Ignored(format!("type {kind}"))
            );
        }
    }

    #[test]
    fn credentials_must_carry_the_key() {
        assert!(is_unauthorized(&run(Some(IMAGE_UPDATED), None, UPDATED)));
        assert!(is_unauthorized(&run(
            Some(IMAGE_UPDATED),
            Some("Bearer x"),
            UPDATED
        )));
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("zot:wrong")
        );
        assert!(is_unauthorized(&run(
            Some(IMAGE_UPDATED),
            Some(&wrong),
            UPDATED
        )));
    }

    #[test]
    fn malformed_events_are_400() {
        assert!(is_bad_request(&run(
            Some(IMAGE_UPDATED),
            Some(&bearer()),
            b"{"
        )));
        assert!(is_bad_request(&run(None, Some(&bearer()), UPDATED)));
        assert!(is_bad_request(&run(
            Some(IMAGE_UPDATED),
            Some(&bearer()),
            br#"{"name":"a:b:c","reference":"1"}"#
        )));
    }
}
