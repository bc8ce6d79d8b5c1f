//! JFrog Artifactory webhooks, domain `docker`.
//!
//! - Authentication: `X-JFrog-Event-Auth` carries the webhook's secret token, either as it is
//!   (the default) or, with "Use secret for payload signing", as the lowercase hex HMAC-SHA256 of
//!   the body keyed with it. Both are accepted, each compared in constant time; missing or wrong
//!   → 401.
//! - Events (body): `domain` `docker` with `event_type` `pushed` → an image change for
//!   `registryHost` + `/` + `data.image_name` + `:` + `data.tag`, split as fluxd does (the tag is
//!   dropped). Other Docker events (`deleted`, `promoted`) and other domains (`artifact`, `build`,
//!   …) → 200 ignored. `registryHost` is required: the payload's `jpd_origin` is the UI's URL,
//!   not the Docker host workloads pull from (with the repository-path access method, include the
//!   repository: `acme.jfrog.io/docker-local`).
//! - Quirks: one `pushed` per tag, the manifest list included (`data.platforms` lists the
//!   platforms); `jpd_origin` and `data.image_type` are not always present and are not read.
//! - Docs: <https://jfrog.com/help/r/jfrog-platform-administration-documentation/webhooks>,
//!   the Docker domain's "Docker Tag was Pushed" event in "Event Types".

use serde::Deserialize;

use super::{decode_json, image_change, printable, unauthorized};
use super::{Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::signature::{sign_hex, tokens_equal, verify_bare_hex, Algorithm};

/// Payloads name no Docker host.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Required;

const AUTH: &str = "X-JFrog-Event-Auth";

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    let auth = incoming
        .header(AUTH)
        .ok_or_else(|| unauthorized(format!("{AUTH} header missing")))?;
    let key = settings.key.bytes();
    let signed = || verify_bare_hex(AUTH, Algorithm::Sha256, Some(auth), key, &incoming.body);
    if !tokens_equal(auth.as_bytes(), key) && signed().is_err() {
        return Err(unauthorized(format!(
            "{AUTH} is neither the secret nor its HMAC-SHA256 of the body"
        )));
    }
    let event: Event = decode_json("Artifactory webhook payload", &incoming.body)?;
    if event.domain != "docker" || event.event_type != "pushed" {
        return Ok(Outcome::Ignored(format!(
            "{} {}",
            printable(&event.domain),
            printable(&event.event_type)
        )));
    }
    let data: DockerData = serde_json::from_value(event.data).map_err(|error| {
        super::malformed(super::Undecodable {
            what: "Artifactory docker event data",
            error,
        })
    })?;
    let host = settings.registry_host.as_deref().unwrap_or("");
    let reference = format!(
        "{}/{}:{}",
        host.trim_end_matches('/'),
        data.image_name,
        data.tag
    );
    Ok(Outcome::Notify(vec![image_change(&reference)?]))
}

/// Artifactory sends no delivery id.
pub fn delivery_id(_headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    None
}

pub const SAMPLE_BODY: &[u8] = br#"{"domain":"docker","event_type":"pushed","data":{"repo_key":"docker-local","image_name":"acme/app","tag":"1.0"}}"#;

/// A push signed with the secret (payload signing on).
pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(
        &[
            ("Content-Type", "application/json"),
            (AUTH, &sign_hex(Algorithm::Sha256, key, body)),
        ],
        body,
    )
}

#[derive(Deserialize)]
struct Event {
    domain: String,
    event_type: String,
    /// Its shape depends on the domain and event: read only for a Docker push.
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct DockerData {
    image_name: String,
    tag: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const PUSHED: &[u8] = include_bytes!("../../tests/fixtures/artifactory/docker_pushed.json");
    const DELETED: &[u8] = include_bytes!("../../tests/fixtures/artifactory/docker_deleted.json");
    const ARTIFACT: &[u8] =
        include_bytes!("../../tests/fixtures/artifactory/artifact_deployed.json");

    fn run(auth: Option<&str>, body: &[u8]) -> Result<Outcome, Rejection> {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = auth {
            headers.push((AUTH, auth));
        }
        handle(
            &incoming(&headers, body),
            &settings_with_host("acme.jfrog.io"),
        )
    }

    fn key() -> &'static str {
        std::str::from_utf8(KEY).unwrap()
    }

    #[test]
    fn a_pushed_tag_notifies_host_and_image_with_either_kind_of_auth() {
        let want = Outcome::Notify(vec![image("acme.jfrog.io", "acme/podinfo")]);
        assert_eq!(run(Some(key()), PUSHED).unwrap(), want);
        let signature = sign_hex(Algorithm::Sha256, KEY, PUSHED);
        assert_eq!(run(Some(&signature), PUSHED).unwrap(), want);
    }

    #[test]
    fn other_events_and_domains_are_ignored() {
        assert_eq!(
            run(Some(key()), DELETED).unwrap(),
            Outcome::Ignored("docker deleted".into())
        );
        assert_eq!(
            run(Some(key()), ARTIFACT).unwrap(),
            Outcome::Ignored("artifact deployed".into())
        );
    }

    #[test]
    fn auth_must_be_the_key_or_its_mac() {
        assert!(is_unauthorized(&run(None, PUSHED)));
        assert!(is_unauthorized(&run(Some("wrong"), PUSHED)));
        let other = sign_hex(Algorithm::Sha256, b"another key", PUSHED);
        assert!(is_unauthorized(&run(Some(&other), PUSHED)));
        // A MAC of another body does not pass.
        let stale = sign_hex(Algorithm::Sha256, KEY, DELETED);
        assert!(is_unauthorized(&run(Some(&stale), PUSHED)));
    }

    #[test]
    fn malformed_payloads_are_400() {
        assert!(is_bad_request(&run(Some(key()), b"{")));
        assert!(is_bad_request(&run(
            Some(key()),
            br#"{"domain":"docker","event_type":"pushed"}"#
        )));
        assert!(is_bad_request(&run(
            Some(key()),
            br#"{"domain":"docker","event_type":"pushed","data":{"image_name":"a:b:c","tag":"1"}}"#
        )));
    }
}
