//! Docker Hub repository webhooks.
//!
//! - Authentication: none from Docker Hub: **the URL is the secret**. Use a long random key; the
//!   route is sha256 of it.
//! - Events: Docker Hub sends only pushes. `repository.repo_name` (`namespace/name`) → an image
//!   change (no `docker.io/` is added: fluxd compares names as written in workloads).
//! - Quirks: the payload's `callback_url` is never called (it would let a forged delivery make
//!   flux-recv fetch a URL of the sender's choice). Trailing bytes after the JSON are ignored, as
//!   the Go original did.
//! - Docs: <https://docs.docker.com/docker-hub/repos/manage/webhooks/>.

use serde::Deserialize;

use super::{
    decode_first_json, image_change, Incoming, Outcome, RegistryHost, Rejection, Settings,
};

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, _settings: &Settings) -> Result<Outcome, Rejection> {
    let push: Push = decode_first_json("Docker Hub payload", &incoming.body)?;
    Ok(Outcome::Notify(vec![image_change(
        &push.repository.repo_name,
    )?]))
}

/// Docker Hub sends no delivery id.
pub fn delivery_id(_headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    None
}

pub const SAMPLE_BODY: &[u8] = br#"{"repository":{"repo_name":"acme/app"}}"#;

/// Docker Hub signs nothing: the key only chooses the URL.
pub fn sample(_key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(&[("Content-Type", "application/json")], body)
}

#[derive(Deserialize)]
struct Push {
    repository: Repository,
}

#[derive(Deserialize)]
struct Repository {
    repo_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/dockerhub/push.json");

    fn run(body: &[u8]) -> Result<Outcome, Rejection> {
        handle(&incoming(&[], body), &settings())
    }

    #[test]
    fn push_notifies_the_repo_name_as_is() {
        assert_eq!(
            run(PUSH).unwrap(),
            Outcome::Notify(vec![image("", "acme/podinfo")])
        );
    }

    #[test]
    fn trailing_bytes_are_ignored_and_bad_payloads_refused() {
        let trailing = [PUSH, b"}\n"].concat();
        assert!(run(&trailing).is_ok());
        assert!(is_bad_request(&run(b"")));
        assert!(is_bad_request(&run(b"{\"repository\":{}}")));
        assert!(is_bad_request(&run(
            b"{\"repository\":{\"repo_name\":\"/x\"}}"
        )));
    }
}
