//! Bitbucket Cloud (bitbucket.org) repository webhooks.
//!
//! - Authentication: the URL is the secret. When the hook has a secret, Bitbucket Cloud (since
//!   2023) sends `X-Hub-Signature: sha256=<HMAC of the body>`; when that header is present it is
//!   checked against the key and a mismatch → 401. With `requireSignature: true` a delivery
//!   without it is 401 too; without that, hooks without a secret stay URL-only (and `check`
//!   warns).
//! - Events (`X-Event-Key`): `repo:push` → one git change per `push.changes[]` entry with a
//!   non-null `new` (URL `git@bitbucket.org:<repository.full_name>.git`, branch `new.name`; tags
//!   too); other keys → 200 ignored; header missing → 400.
//! - Quirks: payloads carry no clone URL, so the SSH URL is built from `full_name`. Deleted refs
//!   have `new: null` and are skipped. `X-Hook-UUID` is not a secret and is not used.
//! - Docs: <https://support.atlassian.com/bitbucket-cloud/docs/event-payloads/#Push>,
//!   <https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/>.

use serde::Deserialize;

use super::{bounded_name, decode_json, printable, required_header, unauthorized};
use super::{first_header, Bounded, Changes, Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::change::Change;
use crate::signature::{sign_hex, verify_prefixed, Algorithm};

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    let signature = incoming.header("X-Hub-Signature");
    if signature.is_some() || settings.require_signature {
        verify_prefixed(
            "X-Hub-Signature",
            signature,
            settings.key.bytes(),
            &incoming.body,
        )
        .map_err(unauthorized)?;
    }
    match required_header(incoming, "X-Event-Key")? {
        "repo:push" => {
            let push: Push = decode_json("Bitbucket Cloud push payload", &incoming.body)?;
            let changes = push.changes()?;
            if changes.is_empty() {
                Ok(Outcome::Ignored("push has only deleted refs".into()))
            } else {
                Ok(Outcome::Notify(changes.into_vec()))
            }
        }
        other => Ok(Outcome::Ignored(format!("event {}", printable(other)))),
    }
}

pub fn delivery_id(headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    first_header(headers, &["X-Request-UUID"])
}

pub const SAMPLE_BODY: &[u8] =
    br#"{"push":{"changes":[{"new":{"name":"main"}}]},"repository":{"full_name":"acme/app"}}"#;

/// A push from a hook with a secret: signed with `X-Hub-Signature: sha256=`.
pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    let signature = format!("sha256={}", sign_hex(Algorithm::Sha256, key, body));
    Incoming::post(
        &[
            ("X-Event-Key", "repo:push"),
            ("X-Request-UUID", "6a1f0b7e-7c1d-4a55-9c55-0f1e2d3c4b5a"),
            ("Content-Type", "application/json"),
            ("X-Hub-Signature", &signature),
        ],
        body,
    )
}

#[derive(Deserialize)]
struct Push {
    push: PushBody,
    repository: Repository,
}

#[derive(Deserialize)]
struct PushBody {
    changes: Bounded<RefChange>,
}

#[derive(Deserialize)]
struct RefChange {
    new: Option<RefState>,
}

#[derive(Deserialize)]
struct RefState {
    name: String,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

impl Push {
    fn clone_url(&self) -> Result<String, Rejection> {
        let name = bounded_name("repository.full_name", &self.repository.full_name)?;
        Ok(format!("git@bitbucket.org:{name}.git"))
    }

    /// One change per ref that still exists after the push, in payload order.
    fn changes(&self) -> Result<Changes, Rejection> {
        let url = self.clone_url()?;
        let mut changes = Changes::default();
        for new in self.push.changes.iter().filter_map(|c| c.new.as_ref()) {
            changes.push(Change::Git {
                url: url.clone(),
                branch: new.name.clone(),
            })?;
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/bitbucket_cloud/push.json");
    const DELETE_ONLY: &[u8] =
        include_bytes!("../../tests/fixtures/bitbucket_cloud/push_delete_only.json");
    const REPO: &str = "git@bitbucket.org:acme/fleet-infra.git";

    fn run(headers: &[(&str, &str)], body: &[u8]) -> Result<Outcome, Rejection> {
        handle(&incoming(headers, body), &settings())
    }

    #[test]
    fn push_gives_one_change_per_surviving_ref() {
        let out = run(&[("X-Event-Key", "repo:push")], PUSH).unwrap();
        assert_eq!(
            out,
            Outcome::Notify(vec![git(REPO, "main"), git(REPO, "v1.4.0")])
        );
    }

    #[test]
    fn a_push_of_deletions_only_is_ignored() {
        assert_eq!(
            run(&[("X-Event-Key", "repo:push")], DELETE_ONLY).unwrap(),
            Outcome::Ignored("push has only deleted refs".into())
        );
    }

    #[test]
    fn signature_is_checked_when_present() {
        let good = format!("sha256={}", sign_hex(Algorithm::Sha256, KEY, PUSH));
        assert!(run(
            &[("X-Event-Key", "repo:push"), ("X-Hub-Signature", &good)],
            PUSH
        )
        .is_ok());
        let bad = format!("sha256={}", sign_hex(Algorithm::Sha256, b"other", PUSH));
        assert!(is_unauthorized(&run(
            &[("X-Event-Key", "repo:push"), ("X-Hub-Signature", &bad)],
            PUSH
        )));
        assert!(is_unauthorized(&run(
            &[("X-Event-Key", "repo:push"), ("X-Hub-Signature", "garbage")],
            PUSH
        )));
    }

    #[test]
    fn with_require_signature_an_unsigned_push_is_refused() {
        let strict = Settings {
            require_signature: true,
            ..settings()
        };
        let unsigned = incoming(&[("X-Event-Key", "repo:push")], PUSH);
        assert!(is_unauthorized(&handle(&unsigned, &strict)));
        assert!(handle(&unsigned, &settings()).is_ok());
        let good = format!("sha256={}", sign_hex(Algorithm::Sha256, KEY, PUSH));
        let signed = incoming(
            &[("X-Event-Key", "repo:push"), ("X-Hub-Signature", &good)],
            PUSH,
        );
        assert!(handle(&signed, &strict).is_ok());
    }

    #[test]
    fn other_keys_ignored_missing_key_and_bad_json_refused() {
        assert_eq!(
            run(&[("X-Event-Key", "pullrequest:created")], b"{}").unwrap(),
            Outcome::Ignored("event pullrequest:created".into())
        );
        assert!(is_bad_request(&run(&[], PUSH)));
        assert!(is_bad_request(&run(&[("X-Event-Key", "repo:push")], b"[]")));
        assert!(is_bad_request(&run(
            &[("X-Event-Key", "repo:push")],
            br#"{"push":{"changes":[]}}"#
        )));
    }
}
