//! CNCF Distribution (the `registry:2` and v3 image, most registry mirrors) notifications, and
//! GitLab's container registry, its fork with the same envelope.
//!
//! - Authentication: the registry sends the static `headers` an endpoint is configured with;
//!   configure `Authorization: [Bearer <key>]` (README) and it must match, in constant time;
//!   missing or wrong → 401.
//! - Events (`notifications/event.go`): a POST of `{"events":[…]}` (`Content-Type:
//!   application/vnd.docker.distribution.events.v1+json`). Every event with `action` `push`, a
//!   manifest `target.mediaType` (Docker v2 schema 2 and list, OCI manifest and index, schema 1)
//!   and a `target.tag` → an image change for `registryHost` (when set) or `request.host`, then
//!   `/` + `target.repository`; one change per image however many events name it (a multi-arch
//!   push sends the index and every platform manifest). Pushes by digest only, blob pushes,
//!   pulls, mounts and deletes are not notified; a delivery with nothing to notify → 200 ignored.
//! - Quirks: the registry retries a failed delivery in memory, in order, backing up the events
//!   behind it, and gives up on a reply after the endpoint's `timeout` (default 1 s): give this
//!   endpoint a short `notifyTimeout` so a slow downstream is queued and the registry answered in
//!   time.
//! - Docs: <https://distribution.github.io/distribution/about/notifications/>.

use serde::Deserialize;

use super::authorization::{authorize, Scheme};
use super::events::{distinct_changes, Event, Pushed, NO_HOST};
use super::{decode_json, Bounded, Incoming, Outcome, RegistryHost, Rejection, Settings};

/// Payloads name the host the registry saw; `registryHost` replaces it.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Overrides;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    authorize(
        incoming.header("Authorization"),
        settings.key.bytes(),
        Scheme::Bearer,
    )?;
    let envelope: Envelope = decode_json("Distribution notification envelope", &incoming.body)?;
    let pushed: Vec<Pushed> = envelope
        .events
        .iter()
        .map(|e| e.pushed_image(settings.registry_host.as_deref()))
        .collect();
    let images: Vec<String> = pushed
        .iter()
        .filter_map(|p| match p {
            Pushed::Image(image) => Some(image.clone()),
            _ => None,
        })
        .collect();
    if images.is_empty() && pushed.contains(&Pushed::NoHost) {
        return Ok(Outcome::Ignored(NO_HOST.into()));
    }
    if images.is_empty() {
        return Ok(Outcome::Ignored(format!(
            "no tag push among {} event(s)",
            envelope.events.len()
        )));
    }
    Ok(Outcome::Notify(distinct_changes(&images)?))
}

/// The envelope has no id of its own; each event has one.
pub fn delivery_id(_headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    None
}

pub const SAMPLE_BODY: &[u8] = br#"{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"team/app","tag":"1.0"},"request":{"host":"mirror.internal:5000"}}]}"#;

/// A delivery with the header the README tells operators to configure.
pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(
        &[
            (
                "Content-Type",
                "application/vnd.docker.distribution.events.v1+json",
            ),
            (
                "Authorization",
                &format!("Bearer {}", String::from_utf8_lossy(key)),
            ),
        ],
        body,
    )
}

#[derive(Deserialize)]
struct Envelope {
    events: Bounded<Event>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const TAG: &[u8] = include_bytes!("../../tests/fixtures/distribution/tag_push.json");
    const DIGEST: &[u8] = include_bytes!("../../tests/fixtures/distribution/digest_push.json");
    const BLOB: &[u8] = include_bytes!("../../tests/fixtures/distribution/blob_push.json");
    const PULL: &[u8] = include_bytes!("../../tests/fixtures/distribution/pull.json");
    const FIFTY: &[u8] = include_bytes!("../../tests/fixtures/distribution/fifty_events.json");

    fn run_with(
        settings: &Settings,
        auth: Option<&str>,
        body: &[u8],
    ) -> Result<Outcome, Rejection> {
        let mut headers = vec![(
            "Content-Type",
            "application/vnd.docker.distribution.events.v1+json",
        )];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        handle(&incoming(&headers, body), settings)
    }

    fn run(body: &[u8]) -> Result<Outcome, Rejection> {
        let auth = format!("Bearer {}", std::str::from_utf8(KEY).unwrap());
        run_with(&settings(), Some(&auth), body)
    }

    #[test]
    fn a_push_that_names_no_host_is_ignored_unless_registry_host_names_one() {
        let hostless = String::from_utf8(TAG.to_vec())
            .unwrap()
            .replace("mirror.internal:5000", "");
        assert_eq!(
            run(hostless.as_bytes()).unwrap(),
            Outcome::Ignored(NO_HOST.into())
        );
        let auth = format!("Bearer {}", std::str::from_utf8(KEY).unwrap());
        assert_eq!(
            run_with(
                &settings_with_host("registry.example.com"),
                Some(&auth),
                hostless.as_bytes()
            )
            .unwrap(),
            Outcome::Notify(vec![image("registry.example.com", "team-a/podinfo")])
        );
    }

    #[test]
    fn a_tag_push_notifies_the_request_host_or_the_registry_host() {
        assert_eq!(
            run(TAG).unwrap(),
            Outcome::Notify(vec![image("mirror.internal:5000", "team-a/podinfo")])
        );
        let auth = format!("Bearer {}", std::str::from_utf8(KEY).unwrap());
        let behind_a_proxy = settings_with_host("registry.example.com");
        assert_eq!(
            run_with(&behind_a_proxy, Some(&auth), TAG).unwrap(),
            Outcome::Notify(vec![image("registry.example.com", "team-a/podinfo")])
        );
    }

    #[test]
    fn digest_pushes_blobs_and_pulls_are_ignored() {
        for body in [DIGEST, BLOB, PULL] {
            assert_eq!(
                run(body).unwrap(),
                Outcome::Ignored("no tag push among 1 event(s)".into())
            );
        }
    }

    #[test]
    fn fifty_events_with_duplicates_are_one_change_per_image() {
        assert_eq!(
            run(FIFTY).unwrap(),
            Outcome::Notify(vec![
                image("mirror.internal:5000", "team-a/podinfo"),
                image("mirror.internal:5000", "team-b/api"),
            ])
        );
    }

    #[test]
    fn the_configured_authorization_must_match() {
        assert!(is_unauthorized(&run_with(&settings(), None, TAG)));
        assert!(is_unauthorized(&run_with(
            &settings(),
            Some("Bearer nope"),
            TAG
        )));
        let key = std::str::from_utf8(KEY).unwrap();
        assert!(is_unauthorized(&run_with(&settings(), Some(key), TAG)));
    }

    #[test]
    fn malformed_envelopes_are_400() {
        assert!(is_bad_request(&run(b"{")));
        assert!(is_bad_request(&run(b"{}")));
        assert!(is_bad_request(&run(br#"{"events":{}}"#)));
        assert!(is_bad_request(&run(
            br#"{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"a:b:c","tag":"1"},"request":{"host":"h.example"}}]}"#
        )));
    }
}
