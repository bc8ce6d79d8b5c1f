//! Azure Container Registry webhooks.
//!
//! - Authentication: ACR sends the custom headers a webhook is created with (`az acr webhook
//!   create --headers "Authorization=Bearer <key>"`); `Authorization: Bearer <key>` must match, in
//!   constant time; missing or wrong → 401. That is stronger than the URL alone, which is all
//!   Flux v2's own `acr` receiver checks.
//! - Events (body `action`, one event per delivery, in Distribution's shape without the
//!   envelope): `push` of a manifest with a `target.tag` → an image change for `request.host`
//!   (the registry's login server; `registryHost` overrides it) + `/` + `target.repository`;
//!   `ping` → `Pong`; `delete`, `chart_push`, `chart_delete`, `quarantine`, pushes by digest and
//!   any other JSON object (the body of the portal's Ping is not documented) → 200 ignored.
//! - Docs: <https://learn.microsoft.com/azure/container-registry/container-registry-webhook-reference>.

use super::authorization::{authorize, Scheme};
use super::events::{Event, Pushed, NO_HOST};
use super::{decode_json, image_change, printable, Incoming, Outcome, RegistryHost};
use super::{Rejection, Settings};

/// Payloads name the login server; `registryHost` replaces it.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Overrides;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    authorize(
        incoming.header("Authorization"),
        settings.key.bytes(),
        Scheme::Bearer,
    )?;
    let event: Event = decode_json("ACR webhook payload", &incoming.body)?;
    if event.action == "ping" {
        return Ok(Outcome::Pong);
    }
    match event.pushed_image(settings.registry_host.as_deref()) {
        Pushed::Image(reference) => Ok(Outcome::Notify(vec![image_change(&reference)?])),
        Pushed::NoHost => Ok(Outcome::Ignored(NO_HOST.into())),
        Pushed::Nothing if event.action == "push" => {
            Ok(Outcome::Ignored("push without a tag".into()))
        }
        Pushed::Nothing if event.action.is_empty() => {
            Ok(Outcome::Ignored("event without an action".into()))
        }
        Pushed::Nothing => Ok(Outcome::Ignored(format!(
            "action {}",
            printable(&event.action)
        ))),
    }
}

/// ACR's event id is in the body; the log line uses no body field here.
pub fn delivery_id(_headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    None
}

pub const SAMPLE_BODY: &[u8] = br#"{"action":"push","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"team/app","tag":"1.0"},"request":{"host":"acme.azurecr.io"}}"#;

/// A delivery with the custom header the README tells operators to configure.
pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(
        &[
            ("Content-Type", "application/json"),
            (
                "Authorization",
                &format!("Bearer {}", String::from_utf8_lossy(key)),
            ),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/acr/push.json");
    const DELETE: &[u8] = include_bytes!("../../tests/fixtures/acr/delete.json");
    const CHART: &[u8] = include_bytes!("../../tests/fixtures/acr/chart_push.json");
    const PING: &[u8] = include_bytes!("../../tests/fixtures/acr/ping.json");

    fn run_with(
        settings: &Settings,
        auth: Option<&str>,
        body: &[u8],
    ) -> Result<Outcome, Rejection> {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        handle(&incoming(&headers, body), settings)
    }

    fn bearer() -> String {
        format!("Bearer {}", std::str::from_utf8(KEY).unwrap())
    }

    fn run(body: &[u8]) -> Result<Outcome, Rejection> {
        run_with(&settings(), Some(&bearer()), body)
    }

    #[test]
    fn a_push_that_names_no_host_is_ignored() {
        let hostless = String::from_utf8(SAMPLE_BODY.to_vec())
            .unwrap()
            .replace("acme.azurecr.io", "");
        assert_eq!(
            run(hostless.as_bytes()).unwrap(),
            Outcome::Ignored(NO_HOST.into())
        );
    }

    #[test]
    fn a_tag_push_notifies_the_login_server_or_the_registry_host() {
        assert_eq!(
            run(PUSH).unwrap(),
            Outcome::Notify(vec![image("acmeprod.azurecr.io", "team-a/podinfo")])
        );
        let private = settings_with_host("acmeprod.privatelink.azurecr.io");
        assert_eq!(
            run_with(&private, Some(&bearer()), PUSH).unwrap(),
            Outcome::Notify(vec![image(
                "acmeprod.privatelink.azurecr.io",
                "team-a/podinfo"
            )])
        );
    }

    #[test]
    fn ping_pongs_and_other_actions_are_ignored() {
        assert_eq!(run(PING).unwrap(), Outcome::Pong);
        assert_eq!(
            run(DELETE).unwrap(),
            Outcome::Ignored("action delete".into())
        );
        assert_eq!(
            run(CHART).unwrap(),
            Outcome::Ignored("action chart_push".into())
        );
        let by_digest = String::from_utf8(PUSH.to_vec())
            .unwrap()
            .replace("\"tag\": \"6.5.1\"", "\"tag\": \"\"");
        assert_eq!(
            run(by_digest.as_bytes()).unwrap(),
            Outcome::Ignored("push without a tag".into())
        );
    }

    #[test]
    fn the_custom_header_must_carry_the_key() {
        assert!(is_unauthorized(&run_with(&settings(), None, PUSH)));
        assert!(is_unauthorized(&run_with(
            &settings(),
            Some("Bearer x"),
            PUSH
        )));
        assert!(is_unauthorized(&run_with(&settings(), None, PING)));
        assert!(is_bad_request(&run(b"{")));
        assert!(is_bad_request(&run(br#"{"action":7}"#)));
        assert_eq!(
            run(br#"{"id":"x","timestamp":"2026-11-30T16:50:11Z"}"#).unwrap(),
            Outcome::Ignored("event without an action".into())
        );
    }
}
