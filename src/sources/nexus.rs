//! Sonatype Nexus Repository 3 webhooks (repository capability, "rm:repository:component").
//!
//! - Authentication: `X-Nexus-Webhook-Signature` = lowercase hex HMAC-SHA1 of the body with the
//!   key (Nexus's "Secret Key"); missing or wrong → 401.
//! - Events: `X-Nexus-Webhook-Id` must be `rm:repository:component` (`rm:repository:asset` → 200
//!   ignored; anything else or missing → 400). `component.format` `docker` with `action`
//!   `CREATED` → an image change for `registryHost` + `/` + `component.name` (a trailing `/` of
//!   `registryHost` is trimmed; with no `registryHost`, the name alone). Other formats and actions →
//!   200 ignored (the Go original answered 400, which makes Nexus log failures).
//! - Quirks: Nexus payloads name no host, so `registryHost` in the config supplies it (and is part
//!   of the route digest).
//! - Docs: <https://help.sonatype.com/en/webhooks.html>.

use serde::Deserialize;

use super::{decode_json, image_change, malformed, printable, required_header, unauthorized};
use super::{first_header, Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::signature::{sign_hex, verify_bare_hex, Algorithm};

/// Payloads name no host: `registryHost` supplies it.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Recommended;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    verify_bare_hex(
        "X-Nexus-Webhook-Signature",
        Algorithm::Sha1,
        incoming.header("X-Nexus-Webhook-Signature"),
        settings.key.bytes(),
        &incoming.body,
    )
    .map_err(unauthorized)?;
    match required_header(incoming, "X-Nexus-Webhook-Id")? {
        "rm:repository:component" => {}
        "rm:repository:asset" => return Ok(Outcome::Ignored("asset event".into())),
        other => {
            return Err(malformed(format!(
                "X-Nexus-Webhook-Id {:?} is not rm:repository:component",
                printable(other)
            )))
        }
    }
    let event: ComponentEvent = decode_json("Nexus component payload", &incoming.body)?;
    let component = &event.component;
    if component.format != "docker" || event.action != "CREATED" {
        return Ok(Outcome::Ignored(format!(
            "{} component {}",
            printable(&component.format),
            printable(&event.action)
        )));
    }
    let reference = match settings.registry_host.as_deref() {
        Some(host) => format!("{}/{}", host.trim_end_matches('/'), component.name),
        None => component.name.clone(),
    };
    Ok(Outcome::Notify(vec![image_change(&reference)?]))
}

pub fn delivery_id(headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    first_header(headers, &["X-Nexus-Webhook-Delivery"])
}

pub const SAMPLE_BODY: &[u8] =
    br#"{"action":"CREATED","component":{"format":"docker","name":"acme/app"}}"#;

pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(
        &[
            ("X-Nexus-Webhook-Id", "rm:repository:component"),
            (
                "X-Nexus-Webhook-Delivery",
                "7f2a9c4e-3b1d-4e8f-a6c5-0d9b8e7f6a5c",
            ),
            ("Content-Type", "application/json; charset=UTF-8"),
            (
                "X-Nexus-Webhook-Signature",
                &sign_hex(Algorithm::Sha1, key, body),
            ),
        ],
        body,
    )
}

#[derive(Deserialize)]
struct ComponentEvent {
    action: String,
    component: Component,
}

#[derive(Deserialize)]
struct Component {
    format: String,
    name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const DOCKER: &[u8] =
        include_bytes!("../../tests/fixtures/nexus/component_created_docker.json");
    const ASSET: &[u8] = include_bytes!("../../tests/fixtures/nexus/asset_created.json");
    const MAVEN: &[u8] = include_bytes!("../../tests/fixtures/nexus/component_created_maven.json");

    fn run_on(
        settings: &Settings,
        id: Option<&str>,
        signed: bool,
        body: &[u8],
    ) -> Result<Outcome, Rejection> {
        let sig = sign_hex(Algorithm::Sha1, KEY, body);
        let mut headers = vec![("Content-Type", "application/json; charset=UTF-8")];
        if let Some(id) = id {
            headers.push(("X-Nexus-Webhook-Id", id));
        }
        if signed {
            headers.push(("X-Nexus-Webhook-Signature", &sig));
        }
        handle(&incoming(&headers, body), settings)
    }

    fn run(id: Option<&str>, signed: bool, body: &[u8]) -> Result<Outcome, Rejection> {
        run_on(
            &settings_with_host("nexus.acme.example:8443/"),
            id,
            signed,
            body,
        )
    }

    const COMPONENT: Option<&str> = Some("rm:repository:component");

    #[test]
    fn docker_component_created_notifies_host_and_name() {
        assert_eq!(
            run(COMPONENT, true, DOCKER).unwrap(),
            Outcome::Notify(vec![image("nexus.acme.example:8443", "acme/podinfo")])
        );
        let no_host = settings();
        assert_eq!(
            run_on(&no_host, COMPONENT, true, DOCKER).unwrap(),
            Outcome::Notify(vec![image("", "acme/podinfo")])
        );
    }

    #[test]
    fn assets_and_other_formats_are_ignored() {
        assert_eq!(
            run(Some("rm:repository:asset"), true, ASSET).unwrap(),
            Outcome::Ignored("asset event".into())
        );
        assert_eq!(
            run(COMPONENT, true, MAVEN).unwrap(),
            Outcome::Ignored("maven2 component CREATED".into())
        );
        let deleted = String::from_utf8(DOCKER.to_vec())
            .unwrap()
            .replace("CREATED", "DELETED");
        assert!(matches!(
            run(COMPONENT, true, deleted.as_bytes()),
            Ok(Outcome::Ignored(_))
        ));
    }

    #[test]
    fn signature_is_required() {
        assert!(is_unauthorized(&run(COMPONENT, false, DOCKER)));
        let mut req = incoming(
            &[
                ("X-Nexus-Webhook-Id", "rm:repository:component"),
                (
                    "X-Nexus-Webhook-Signature",
                    &sign_hex(Algorithm::Sha1, b"other", DOCKER),
                ),
            ],
            DOCKER,
        );
        assert!(is_unauthorized(&handle(&req, &settings())));
        req.headers[1].1 = sign_hex(Algorithm::Sha256, KEY, DOCKER);
        assert!(is_unauthorized(&handle(&req, &settings())));
    }

    #[test]
    fn unknown_webhook_ids_and_bad_payloads_are_400() {
        assert!(is_bad_request(&run(None, true, DOCKER)));
        assert!(is_bad_request(&run(Some("rm:repository"), true, DOCKER)));
        assert!(is_bad_request(&run(COMPONENT, true, ASSET)));
        assert!(is_bad_request(&run(COMPONENT, true, b"{")));
    }
}
