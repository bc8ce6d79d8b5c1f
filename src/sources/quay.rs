//! Quay (quay.io and Red Hat Quay) repository notifications, "Push to Repository" → webhook.
//!
//! - Authentication: none in the request (quay.io can present a TLS client certificate, which a
//!   TLS-terminating ingress would have to check): **the URL is the secret**.
//! - Events: pushes only. `docker_url` (`quay.io/namespace/name`) → an image change.
//! - Quirks: `updated_tags` arrives as a list or as a map of tag → digest; both are accepted (it is
//!   not used). Trailing bytes after the JSON are ignored, as the Go original did.
//! - Docs: <https://docs.quay.io/guides/notifications.html>.

use serde::Deserialize;

use super::{
    decode_first_json, image_change, Incoming, Outcome, RegistryHost, Rejection, Settings,
};

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, _settings: &Settings) -> Result<Outcome, Rejection> {
    let push: Push = decode_first_json("Quay payload", &incoming.body)?;
    Ok(Outcome::Notify(vec![image_change(&push.docker_url)?]))
}

/// Quay sends no delivery id.
pub fn delivery_id(_headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    None
}

pub const SAMPLE_BODY: &[u8] = br#"{"docker_url":"quay.io/acme/app","updated_tags":["1.0"]}"#;

/// Quay signs nothing: the key only chooses the URL.
pub fn sample(_key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(&[("Content-Type", "application/json")], body)
}

#[derive(Deserialize)]
struct Push {
    docker_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const LIST_TAGS: &[u8] = include_bytes!("../../tests/fixtures/quay/push_list_tags.json");
    const MAP_TAGS: &[u8] = include_bytes!("../../tests/fixtures/quay/push_map_tags.json");

    fn run(body: &[u8]) -> Result<Outcome, Rejection> {
        handle(&incoming(&[], body), &settings())
    }

    #[test]
    fn both_tag_shapes_notify_the_docker_url() {
        let expected = Outcome::Notify(vec![image("quay.io", "acme/podinfo")]);
        assert_eq!(run(LIST_TAGS).unwrap(), expected);
        assert_eq!(run(MAP_TAGS).unwrap(), expected);
    }

    #[test]
    fn bad_payloads_are_400() {
        assert!(is_bad_request(&run(b"{\"docker_url\": 5}")));
        assert!(is_bad_request(&run(b"{\"docker_url\": \"quay.io/a:b:c\"}")));
        assert!(is_bad_request(&run(b"not json")));
    }
}
