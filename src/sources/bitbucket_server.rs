//! Bitbucket Server and Data Center repository webhooks.
//!
//! - Authentication: `X-Hub-Signature` HMAC of the raw body with the key (`sha256=…`, as
//!   Bitbucket sends it; `sha1=`/`sha512=` accepted as for GitHub); missing or wrong → 401. Every
//!   event is checked, the "Test connection" ping included, so a passing test proves the secret.
//! - Events (`X-Event-Key`): `repo:refs_changed` → one git change per distinct
//!   `changes[].ref.id` of type `BRANCH` (tags are skipped, as in the Go original), URL = the
//!   `repository.links.clone[]` entry named `ssh` (none → 400); `diagnostics:ping` → `Pong`;
//!   other keys → 200 ignored; header missing → 400.
//! - Docs: <https://confluence.atlassian.com/bitbucketserver/event-payload-938025882.html>,
//!   <https://confluence.atlassian.com/bitbucketserver/manage-webhooks-938025878.html>.

use serde::Deserialize;

use super::{bounded_name, first_header, Bounded, Changes};
use super::{decode_json, malformed, printable, required_header, unauthorized};
use super::{Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::change::Change;
use crate::signature::{sign_hex, verify_prefixed, Algorithm};

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    verify_prefixed(
        "X-Hub-Signature",
        incoming.header("X-Hub-Signature"),
        settings.key.bytes(),
        &incoming.body,
    )
    .map_err(unauthorized)?;
    match required_header(incoming, "X-Event-Key")? {
        "repo:refs_changed" => {
            let event: RefsChanged =
                decode_json("Bitbucket Server refs_changed payload", &incoming.body)?;
            let url = event
                .ssh_clone_link()
                .ok_or_else(|| malformed("repository.links.clone has no entry named ssh"))?;
            let url = bounded_name("ssh clone link", url)?;
            let mut changes = Changes::default();
            for change in event.changes.iter() {
                if change.git_ref.kind == "BRANCH" {
                    changes.push(Change::git(url, &change.git_ref.id))?;
                }
            }
            if changes.is_empty() {
                Ok(Outcome::Ignored("no branch changed".into()))
            } else {
                Ok(Outcome::Notify(changes.into_vec()))
            }
        }
        "diagnostics:ping" => Ok(Outcome::Pong),
        other => Ok(Outcome::Ignored(format!("event {}", printable(other)))),
    }
}

pub fn delivery_id(headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    first_header(headers, &["X-Request-Id"])
}

pub const SAMPLE_BODY: &[u8] = br#"{"repository":{"links":{"clone":[{"name":"ssh","href":"ssh://git@bitbucket.example.com:7999/acme/app.git"}]}},"changes":[{"ref":{"id":"refs/heads/main","type":"BRANCH"}}]}"#;

pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    let signature = format!("sha256={}", sign_hex(Algorithm::Sha256, key, body));
    Incoming::post(
        &[
            ("X-Event-Key", "repo:refs_changed"),
            ("X-Request-Id", "4c6d2b1a-0f9e-4d8c-b7a6-5e4f3d2c1b0a"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("X-Hub-Signature", &signature),
        ],
        body,
    )
}

#[derive(Deserialize)]
struct RefsChanged {
    repository: Repository,
    changes: Bounded<RefChange>,
}

#[derive(Deserialize)]
struct Repository {
    links: Links,
}

#[derive(Deserialize)]
struct Links {
    clone: Bounded<CloneLink>,
}

#[derive(Deserialize)]
struct CloneLink {
    name: String,
    href: String,
}

#[derive(Deserialize)]
struct RefChange {
    #[serde(rename = "ref")]
    git_ref: Ref,
}

#[derive(Deserialize)]
struct Ref {
    id: String,
    #[serde(rename = "type")]
    kind: String,
}

impl RefsChanged {
    fn ssh_clone_link(&self) -> Option<&str> {
        self.repository
            .links
            .clone
            .iter()
            .find(|link| link.name == "ssh")
            .map(|link| link.href.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const REFS_CHANGED: &[u8] =
        include_bytes!("../../tests/fixtures/bitbucket_server/refs_changed.json");
    const TAG_ONLY: &[u8] =
        include_bytes!("../../tests/fixtures/bitbucket_server/refs_changed_tag_only.json");
    const PING: &[u8] = include_bytes!("../../tests/fixtures/bitbucket_server/ping.json");
    const REPO: &str = "ssh://git@bitbucket.acme.example:7999/plat/fleet-infra.git";

    fn run(event: Option<&str>, sign: bool, body: &[u8]) -> Result<Outcome, Rejection> {
        let sig = format!("sha256={}", sign_hex(Algorithm::Sha256, KEY, body));
        let mut headers = vec![("Content-Type", "application/json; charset=utf-8")];
        if let Some(event) = event {
            headers.push(("X-Event-Key", event));
        }
        if sign {
            headers.push(("X-Hub-Signature", &sig));
        }
        handle(&incoming(&headers, body), &settings())
    }

    #[test]
    fn refs_changed_notifies_each_distinct_branch_and_skips_tags() {
        assert_eq!(
            run(Some("repo:refs_changed"), true, REFS_CHANGED).unwrap(),
            Outcome::Notify(vec![git(REPO, "main"), git(REPO, "release/1.x")])
        );
        assert_eq!(
            run(Some("repo:refs_changed"), true, TAG_ONLY).unwrap(),
            Outcome::Ignored("no branch changed".into())
        );
    }

    #[test]
    fn ping_pongs_only_when_signed() {
        assert_eq!(
            run(Some("diagnostics:ping"), true, PING).unwrap(),
            Outcome::Pong
        );
        assert!(is_unauthorized(&run(Some("diagnostics:ping"), false, PING)));
    }

    #[test]
    fn unsigned_or_tampered_is_401() {
        assert!(is_unauthorized(&run(
            Some("repo:refs_changed"),
            false,
            REFS_CHANGED
        )));
        let sig = format!("sha256={}", sign_hex(Algorithm::Sha256, KEY, REFS_CHANGED));
        let mut req = incoming(
            &[
                ("X-Event-Key", "repo:refs_changed"),
                ("X-Hub-Signature", &sig),
            ],
            REFS_CHANGED,
        );
        req.body.push(b' ');
        assert!(is_unauthorized(&handle(&req, &settings())));
    }

    #[test]
    fn bad_requests() {
        assert!(is_bad_request(&run(None, true, REFS_CHANGED)));
        assert!(is_bad_request(&run(Some("repo:refs_changed"), true, b"{")));
        let no_ssh = String::from_utf8(REFS_CHANGED.to_vec())
            .unwrap()
            .replace("\"name\": \"ssh\"", "\"name\": \"ssh2\"");
        assert!(is_bad_request(&run(
            Some("repo:refs_changed"),
            true,
            no_ssh.as_bytes()
        )));
        assert_eq!(
            run(Some("repo:modified"), true, b"{}").unwrap(),
            Outcome::Ignored("event repo:modified".into())
        );
    }
}
