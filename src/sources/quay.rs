//! Quay (quay.io and Red Hat Quay) repository notifications, "Push to Repository" → webhook.
//!
//! - Authentication: none in the request (quay.io can present a TLS client certificate, which a
//!   TLS-terminating ingress would have to check): **the URL is the secret**.
//! - Events: pushes only. `docker_url` (`quay.io/namespace/name`) → an image change.
//! - Quirks: `updated_tags` arrives as a list or as a map of tag → digest; both are accepted (it is
//!   not used). Trailing bytes after the JSON are ignored, as the Go original did.
//! - Docs: <https://docs.quay.io/guides/notifications.html>.

use serde::Deserialize;

use super::{decode_first_json, image_change, Incoming, Outcome};
use crate::config::Endpoint;
use crate::error::HookError;

pub fn handle(incoming: &Incoming, _endpoint: &Endpoint) -> Result<Outcome, HookError> {
    let push: Push = decode_first_json("Quay payload", &incoming.body)?;
    Ok(Outcome::Notify(vec![image_change(&push.docker_url)?]))
}

#[derive(Deserialize)]
struct Push {
    docker_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;
    use crate::sources::Source;

    const LIST_TAGS: &[u8] = include_bytes!("../../tests/fixtures/quay/push_list_tags.json");
    const MAP_TAGS: &[u8] = include_bytes!("../../tests/fixtures/quay/push_map_tags.json");

    fn run(body: &[u8]) -> Result<Outcome, HookError> {
        handle(&incoming(&[], body), &endpoint(Source::Quay))
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
