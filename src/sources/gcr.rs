//! Google Container Registry / Artifact Registry, through a Pub/Sub push subscription on the
//! `gcr` topic.
//!
//! - Authentication: the URL is the secret. With `gcr.audience` set, the push must carry
//!   `Authorization: Bearer <token>` (enable authentication on the subscription); the token is
//!   checked at Google's tokeninfo endpoint (`gcr.tokenInfoURL`): `aud` must equal
//!   `gcr.audience`, and with `gcr.email` set, `email` must equal it and be verified. Any failure
//!   → 401 (the Go original answered 200 and so hid misconfiguration). This is the one source that
//!   makes a network call of its own (see `tokeninfo.rs`).
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

use super::{decode_first_json, image_change, printable, Incoming, Outcome};
use crate::config::Endpoint;
use crate::error::HookError;
use crate::tokeninfo;

pub fn handle(incoming: &Incoming, endpoint: &Endpoint) -> Result<Outcome, HookError> {
    authenticate(incoming, endpoint)?;
    let envelope: Envelope = decode_first_json("Pub/Sub envelope", &incoming.body)?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(envelope.message.data.trim())
        .map_err(|e| HookError::BadRequest(format!("Pub/Sub message.data is not base64: {e}")))?;
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
        .ok_or_else(|| HookError::BadRequest("GCR INSERT with neither tag nor digest".into()))?;
    Ok(Outcome::Notify(vec![image_change(reference)?]))
}

fn authenticate(incoming: &Incoming, endpoint: &Endpoint) -> Result<(), HookError> {
    let Some(gcr) = &endpoint.gcr else {
        return Ok(());
    };
    let Some(audience) = gcr.audience.as_deref() else {
        return Ok(());
    };
    let token = incoming
        .header("Authorization")
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("Bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| HookError::Unauthorized("Authorization: Bearer token missing".into()))?;
    let url = gcr
        .token_info_url
        .as_deref()
        .unwrap_or(tokeninfo::DEFAULT_URL);
    tokeninfo::check(url, token, audience, gcr.email.as_deref()).map_err(HookError::Unauthorized)
}

/// The Pub/Sub `message.messageId` of an envelope, for the log line.
pub fn message_id(body: &[u8]) -> Option<String> {
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
    use crate::sources::Source;

    const INSERT_TAG: &[u8] = include_bytes!("../../tests/fixtures/gcr/insert_tag.json");
    const INSERT_DIGEST: &[u8] = include_bytes!("../../tests/fixtures/gcr/insert_digest_only.json");
    const DELETE: &[u8] = include_bytes!("../../tests/fixtures/gcr/delete.json");
    const TRAILING: &[u8] =
        include_bytes!("../../tests/fixtures/gcr/insert_lowercase_trailing_brace.json");
    const BAD_BASE64: &[u8] = include_bytes!("../../tests/fixtures/gcr/bad_base64.json");

    fn run(body: &[u8]) -> Result<Outcome, HookError> {
        handle(
            &incoming(&[], body),
            &endpoint(Source::GoogleContainerRegistry),
        )
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
}
