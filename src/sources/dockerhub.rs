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

use super::{decode_first_json, image_change, Incoming, Outcome};
use crate::config::Endpoint;
use crate::error::HookError;

pub fn handle(incoming: &Incoming, _endpoint: &Endpoint) -> Result<Outcome, HookError> {
    let push: Push = decode_first_json("Docker Hub payload", &incoming.body)?;
    Ok(Outcome::Notify(vec![image_change(
        &push.repository.repo_name,
    )?]))
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
    use crate::sources::Source;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/dockerhub/push.json");

    fn run(body: &[u8]) -> Result<Outcome, HookError> {
        handle(&incoming(&[], body), &endpoint(Source::DockerHub))
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
