//! Google Container Registry / Artifact Registry, through a Pub/Sub push subscription on the
//! `gcr` topic.
//!
//! - Authentication: the URL is the secret. With `gcr.audience` set, the push must carry
//!   `Authorization: Bearer <token>` (enable authentication on the subscription); the token is
//!   checked at Google's tokeninfo endpoint (`gcr.tokenInfoURL`): `aud` must equal
//!   `gcr.audience`, and with `gcr.email` set, `email` must equal it and be verified. Any failure
//!   → 401 (the Go original answered 200 and so hid misconfiguration). The check is the one
//!   network call a source needs; it is passed in ([`TokenCheck`]), so this file makes none.
//! - Events: the envelope's `message.data` is base64 of `{action, digest, tag}`. `action` INSERT
//!   (any case) → an image change from `tag`, or from `digest` when there is no tag (fluxd drops
//!   the digest part); DELETE and other actions → 200 ignored. An envelope or `data` that does not
//!   decode → 400.
//! - Quirks: trailing bytes after the JSON are ignored, as the Go original did (a delivery seen in
//!   the wild ends in a stray `}`).
//! - Docs: <https://cloud.google.com/artifact-registry/docs/configure-notifications>,
//!   <https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions>.

use base64::Engine as _;
use serde::Deserialize;

#[cfg(doc)]
use super::TokenCheck;
use super::{decode_first_json, image_change, malformed, printable, unauthorized};
use super::{Incoming, Outcome, RegistryHost, Rejection, Settings};

/// Google's tokeninfo endpoint, used when `gcr.tokenInfoURL` is not set.
pub const DEFAULT_TOKEN_INFO_URL: &str = "https://oauth2.googleapis.com/tokeninfo";

/// The endpoint's `gcr:` settings: how Pub/Sub pushes are authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushAuth {
    /// The Pub/Sub push token's required audience.
    pub audience: Option<String>,
    /// The service account the token must be for.
    pub email: Option<String>,
    /// Where tokens are checked (default Google's tokeninfo endpoint).
    #[serde(rename = "tokenInfoURL")]
    pub token_info_url: Option<String>,
    /// Accept a token for the audience whatever its service account: the hole of
    /// CVE-2026-40109, only on the operator's explicit word.
    #[serde(rename = "insecureAcceptAnyServiceAccount")]
    pub accept_any_service_account: Option<bool>,
}

impl PushAuth {
    /// Where tokens are checked.
    pub fn token_info_url(&self) -> &str {
        self.token_info_url
            .as_deref()
            .unwrap_or(DEFAULT_TOKEN_INFO_URL)
    }
}

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    authenticate(incoming, settings)?;
    let envelope: Envelope = decode_first_json("Pub/Sub envelope", &incoming.body)?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(envelope.message.data.trim())
        .map_err(|e| malformed(format!("Pub/Sub message.data is not base64: {e}")))?;
    let event: Event = decode_first_json("GCR event in message.data", &data)?;
    if !event.action.eq_ignore_ascii_case("INSERT") {
        return Ok(Outcome::Ignored(format!(
            "action {}",
            printable(&event.action)
        )));
    }
    let reference = [event.tag.as_deref(), event.digest.as_deref()]
        .into_iter()
        .flatten()
        .find(|r| !r.is_empty())
        .ok_or_else(|| malformed("GCR INSERT with neither tag nor digest"))?;
    Ok(Outcome::Notify(vec![image_change(reference)?]))
}

fn authenticate(incoming: &Incoming, settings: &Settings) -> Result<(), Rejection> {
    let Some(auth) = &settings.gcr else {
        return Ok(());
    };
    let Some(audience) = auth.audience.as_deref() else {
        return Ok(());
    };
    let token = bearer_token(incoming.header("Authorization"))
        .ok_or_else(|| unauthorized("Authorization: Bearer token missing"))?;
    let check = settings
        .token_check
        .as_ref()
        .ok_or_else(|| unauthorized("no token check configured for gcr.audience"))?;
    check
        .check(
            auth.token_info_url(),
            token,
            audience,
            auth.email.as_deref(),
        )
        .map_err(unauthorized)
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

/// The Pub/Sub `message.messageId` of an envelope.
pub fn delivery_id(_headers: &[(String, String)], body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Ids {
        message: IdMessage,
    }
    #[derive(Deserialize)]
    struct IdMessage {
        #[serde(rename = "messageId")]
        message_id: Option<String>,
    }
    serde_json::Deserializer::from_slice(body)
        .into_iter::<Ids>()
        .next()?
        .ok()?
        .message
        .message_id
}

/// `message.data` is base64 of `{"action":"INSERT","tag":"gcr.io/acme/app:1.0"}`.
pub const SAMPLE_BODY: &[u8] = br#"{"message":{"data":"eyJhY3Rpb24iOiJJTlNFUlQiLCJ0YWciOiJnY3IuaW8vYWNtZS9hcHA6MS4wIn0=","messageId":"4242"},"subscription":"projects/acme/subscriptions/flux-recv"}"#;

/// Pub/Sub signs nothing in the body; without `gcr.audience` the key only chooses the URL.
pub fn sample(_key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(&[("Content-Type", "application/json")], body)
}

#[derive(Deserialize)]
struct Envelope {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    data: String,
}

#[derive(Deserialize)]
struct Event {
    action: String,
    digest: Option<String>,
    tag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const INSERT_TAG: &[u8] = include_bytes!("../../tests/fixtures/gcr/insert_tag.json");
    const INSERT_DIGEST: &[u8] = include_bytes!("../../tests/fixtures/gcr/insert_digest_only.json");
    const DELETE: &[u8] = include_bytes!("../../tests/fixtures/gcr/delete.json");
    const TRAILING: &[u8] =
        include_bytes!("../../tests/fixtures/gcr/insert_lowercase_trailing_brace.json");
    const BAD_BASE64: &[u8] = include_bytes!("../../tests/fixtures/gcr/bad_base64.json");

    fn run(body: &[u8]) -> Result<Outcome, Rejection> {
        handle(&incoming(&[], body), &settings())
    }

    #[test]
    fn insert_with_a_tag_notifies_the_tagged_name() {
        assert_eq!(
            run(INSERT_TAG).unwrap(),
            Outcome::Notify(vec![image("us.gcr.io", "acme-prod/podinfo")])
        );
    }

    #[test]
    fn insert_with_a_digest_only_notifies_the_name() {
        assert_eq!(
            run(INSERT_DIGEST).unwrap(),
            Outcome::Notify(vec![image("us-docker.pkg.dev", "acme-prod/images/podinfo")])
        );
    }

    #[test]
    fn lowercase_action_and_a_stray_trailing_brace_are_accepted() {
        assert_eq!(
            run(TRAILING).unwrap(),
            Outcome::Notify(vec![image("gcr.io", "acme-prod/hello")])
        );
    }

    #[test]
    fn delete_is_ignored() {
        assert_eq!(
            run(DELETE).unwrap(),
            Outcome::Ignored("action DELETE".into())
        );
    }

    #[test]
    fn undecodable_envelopes_and_data_are_400() {
        assert!(is_bad_request(&run(BAD_BASE64)));
        assert!(is_bad_request(&run(b"{\"message\":{}}")));
        assert!(is_bad_request(&run(b"[]")));
        let not_json = base64::engine::general_purpose::STANDARD.encode("not json");
        let body = format!("{{\"message\":{{\"data\":\"{not_json}\"}}}}");
        assert!(is_bad_request(&run(body.as_bytes())));
        let nothing = base64::engine::general_purpose::STANDARD.encode(r#"{"action":"INSERT"}"#);
        let body = format!("{{\"message\":{{\"data\":\"{nothing}\"}}}}");
        assert!(is_bad_request(&run(body.as_bytes())));
    }

    #[test]
    fn the_sample_data_is_the_documented_insert() {
        let envelope: Envelope = serde_json::from_slice(SAMPLE_BODY).unwrap();
        let data = base64::engine::general_purpose::STANDARD
            .decode(envelope.message.data)
            .unwrap();
        assert_eq!(data, br#"{"action":"INSERT","tag":"gcr.io/acme/app:1.0"}"#);
    }

    /// A token check that accepts one token, and records what it was asked.
    struct OneToken(std::sync::Mutex<Vec<String>>);

    impl super::super::TokenCheck for OneToken {
        fn check(
            &self,
            url: &str,
            token: &str,
            audience: &str,
            email: Option<&str>,
        ) -> Result<(), super::super::Cause> {
            self.0
                .lock()
                .unwrap()
                .push(format!("{url} {audience} {email:?}"));
            if token == "good" {
                Ok(())
            } else {
                Err("token refused".into())
            }
        }
    }

    #[test]
    fn with_an_audience_the_bearer_token_is_checked_by_the_injected_check() {
        let check = std::sync::Arc::new(OneToken(Default::default()));
        let mut settings = settings();
        settings.gcr = Some(PushAuth {
            audience: Some("aud".into()),
            email: Some("a@b".into()),
            token_info_url: None,
            accept_any_service_account: None,
        });
        settings.token_check = Some(check.clone());
        let with = |auth: &str| incoming(&[("Authorization", auth)], INSERT_TAG);
        assert!(handle(&with("Bearer good"), &settings).is_ok());
        assert!(is_unauthorized(&handle(&with("Bearer bad"), &settings)));
        assert!(is_unauthorized(&handle(&with("Basic good"), &settings)));
        assert!(is_unauthorized(&handle(
            &incoming(&[], INSERT_TAG),
            &settings
        )));
        let asked = check.0.lock().unwrap().clone();
        assert_eq!(
            asked,
            vec![format!("{DEFAULT_TOKEN_INFO_URL} aud Some(\"a@b\")"); 2]
        );
    }
}
