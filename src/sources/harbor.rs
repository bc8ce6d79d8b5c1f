//! Harbor (v1.9+ and v2) project webhooks.
//!
//! - Authentication: the `Authorization` header must equal the key byte for byte (Harbor sends its
//!   "Auth Header" setting verbatim), compared in constant time; else 401.
//! - Events (body `type`): `pushImage` (v1) and `PUSH_ARTIFACT` (v2) → an image change from the
//!   first `event_data.resources[].resource_url` (an empty list → 400; the Go original crashed
//!   here); with a policy's payload format CloudEvents (Harbor ≥ 2.8, structured mode,
//!   `src/pkg/notifier/formats/cloudevents.go`), `harbor.artifact.pushed` → the same, from
//!   `data.resources[]`; the format is told by the payload, no config. Other types → 200 ignored.
//! - Quirks: Harbor's "Test Endpoint" button sends an empty POST without the auth header: an empty
//!   body → 200 ignored whatever the header, and nothing is notified. Harbor gives up after 3 s.
//!   Trailing bytes after the JSON are ignored, as the Go original did.
//! - Docs: <https://goharbor.io/docs/main/working-with-projects/project-configuration/configure-webhooks/>.

use serde::Deserialize;

use super::{decode_first_json, image_change, malformed, printable, unauthorized};
use super::{Bounded, Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::signature::tokens_equal;

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    if incoming.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Outcome::Ignored("empty body (Harbor test delivery)".into()));
    }
    let authorization = incoming
        .header("Authorization")
        .ok_or_else(|| unauthorized("Authorization header missing"))?;
    if !tokens_equal(authorization.as_bytes(), settings.key.bytes()) {
        return Err(unauthorized("Authorization does not match the key"));
    }
    let event: Event = decode_first_json("Harbor payload", &incoming.body)?;
    let pushed = match event.kind.as_str() {
        "pushImage" | "PUSH_ARTIFACT" => &event.event_data,
        "harbor.artifact.pushed" => &event.data,
        other => return Ok(Outcome::Ignored(format!("type {}", printable(other)))),
    };
    let resource = pushed
        .resources
        .first()
        .ok_or_else(|| malformed("Harbor push with no resources"))?;
    Ok(Outcome::Notify(vec![image_change(&resource.resource_url)?]))
}

/// Harbor sends no delivery id.
pub fn delivery_id(_headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    None
}

pub const SAMPLE_BODY: &[u8] = br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"resource_url":"harbor.example.com/acme/app:1.0"}]}}"#;

/// Harbor sends its "Auth Header" setting, the key, as `Authorization`.
pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &String::from_utf8_lossy(key)),
        ],
        body,
    )
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    /// The default payload format's data.
    #[serde(default)]
    event_data: EventData,
    /// The CloudEvents format's data (`application/cloudevents+json`, Harbor ≥ 2.8).
    #[serde(default)]
    data: EventData,
}

#[derive(Deserialize, Default)]
struct EventData {
    #[serde(default)]
    resources: Bounded<Resource>,
}

#[derive(Deserialize)]
struct Resource {
    resource_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const V1: &[u8] = include_bytes!("../../tests/fixtures/harbor/push_image_v1.json");
    const V2: &[u8] = include_bytes!("../../tests/fixtures/harbor/push_artifact_v2.json");
    const DELETE: &[u8] = include_bytes!("../../tests/fixtures/harbor/delete_artifact_v2.json");
    const EMPTY_RESOURCES: &[u8] =
        include_bytes!("../../tests/fixtures/harbor/push_artifact_no_resources.json");

    fn run(auth: Option<&[u8]>, body: &[u8]) -> Result<Outcome, Rejection> {
        let auth = auth.map(|a| String::from_utf8(a.to_vec()).unwrap());
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = auth.as_deref() {
            headers.push(("Authorization", auth));
        }
        handle(&incoming(&headers, body), &settings())
    }

    #[test]
    fn v1_and_v2_pushes_notify_the_first_resource() {
        assert_eq!(
            run(Some(KEY), V1).unwrap(),
            Outcome::Notify(vec![image("demo.goharbor.io", "test123/alpine")])
        );
        assert_eq!(
            run(Some(KEY), V2).unwrap(),
            Outcome::Notify(vec![image("harbor.acme.example", "platform/podinfo")])
        );
    }

    #[test]
    fn other_types_ignored_empty_resources_refused() {
        assert_eq!(
            run(Some(KEY), DELETE).unwrap(),
            Outcome::Ignored("type DELETE_ARTIFACT".into())
        );
        assert!(is_bad_request(&run(Some(KEY), EMPTY_RESOURCES)));
    }

    #[test]
    fn the_test_button_empty_post_is_ignored_without_auth() {
        assert!(matches!(run(None, b""), Ok(Outcome::Ignored(_))));
        assert!(matches!(
            run(Some(b"wrong"), b"\n"),
            Ok(Outcome::Ignored(_))
        ));
    }

    const CE_PUSHED: &[u8] =
        include_bytes!("../../tests/fixtures/harbor/cloudevents_artifact_pushed.json");
    const CE_PULLED: &[u8] =
        include_bytes!("../../tests/fixtures/harbor/cloudevents_artifact_pulled.json");

    #[test]
    fn cloudevents_pushes_notify_and_other_cloudevents_are_ignored() {
        assert_eq!(
            run(Some(KEY), CE_PUSHED).unwrap(),
            Outcome::Notify(vec![image("harbor.acme.example", "platform/podinfo")])
        );
        assert_eq!(
            run(Some(KEY), CE_PULLED).unwrap(),
            Outcome::Ignored("type harbor.artifact.pulled".into())
        );
        assert!(is_unauthorized(&run(Some(b"wrong"), CE_PUSHED)));
        assert!(is_bad_request(&run(
            Some(KEY),
            br#"{"specversion":"1.0","type":"harbor.artifact.pushed","data":{"resources":[]}}"#
        )));
    }

    #[test]
    fn authorization_must_match() {
        assert!(is_unauthorized(&run(None, V2)));
        assert!(is_unauthorized(&run(Some(b"Bearer x"), V2)));
        let with_newline = [KEY, b"\n"].concat();
        assert!(is_unauthorized(&run(Some(&with_newline), V2)));
        assert!(is_bad_request(&run(Some(KEY), b"{\"type\": 1}")));
    }
}
