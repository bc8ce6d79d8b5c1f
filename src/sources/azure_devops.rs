//! Azure DevOps (Services and Server) service hooks, the "Web Hooks" consumer.
//!
//! - Authentication: the subscription's "Basic authentication username / password": HTTP Basic
//!   with the key as the password (any user name) must match, in constant time; missing, another
//!   scheme or another password → 401. (Service hooks sign nothing; without Basic auth the URL is
//!   all there is, which flux-recv does not accept here.)
//! - Events (body `eventType`): `git.push` ("Code pushed") → one git change per
//!   `resource.refUpdates[]` entry: the repository's `resource.repository.sshUrl` when the payload
//!   has it (fluxd compares git URLs protocol-blind), else `remoteUrl`, and the ref `name`
//!   (`refs/heads/` dropped, tags kept as `refs/tags/…`). A ref whose `newObjectId` is all zeros
//!   was deleted: not notified (a push of deletions only → 200 ignored). Any other event type
//!   (pull requests, builds, work items…) → 200 ignored. The subscription's "Test" sends the
//!   sample `git.push` (Fabrikam's repository), which notifies a repository fluxd does not sync.
//! - Delivery id: the body's `id` (the notification event's id).
//! - Docs: <https://learn.microsoft.com/azure/devops/service-hooks/events#git.push> (payload),
//!   <https://learn.microsoft.com/azure/devops/service-hooks/services/webhooks> (Basic auth).

use serde::Deserialize;

use super::authorization::{authorize, Scheme};
use super::{bounded_name, decode_json, printable, Bounded, Changes};
use super::{Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::change::Change;

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    authorize(
        incoming.header("Authorization"),
        settings.key.bytes(),
        Scheme::Basic,
    )?;
    let event: Event = decode_json("Azure DevOps service hook payload", &incoming.body)?;
    if event.event_type != "git.push" {
        return Ok(Outcome::Ignored(format!(
            "event {}",
            printable(&event.event_type)
        )));
    }
    let push: Resource = serde_json::from_value(event.resource)
        .map_err(|e| super::malformed(format!("Azure DevOps git.push resource: {e}")))?;
    let repository = push.repository;
    let url = repository.ssh_url.unwrap_or(repository.remote_url);
    let url = bounded_name("repository URL", &url)?;
    let mut changes = Changes::default();
    for update in push.ref_updates.iter() {
        if !update.new_object_id.bytes().all(|b| b == b'0') {
            changes.push(Change::git(url, &update.name))?;
        }
    }
    if changes.is_empty() {
        return Ok(Outcome::Ignored("push of deletions only".into()));
    }
    Ok(Outcome::Notify(changes.into_vec()))
}

pub fn delivery_id(_headers: &[(String, String)], body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        id: Option<String>,
    }
    serde_json::from_slice::<Id>(body).ok()?.id
}

pub const SAMPLE_BODY: &[u8] = br#"{"id":"03c164c2-8912-4d5e-8009-3707d5f83734","eventType":"git.push","resource":{"refUpdates":[{"name":"refs/heads/main","newObjectId":"33b55f7cb7e7e245323987634f960cf4a6e6bc74"}],"repository":{"remoteUrl":"https://dev.azure.com/acme/platform/_git/fleet-infra","sshUrl":"git@ssh.dev.azure.com:v3/acme/platform/fleet-infra"}}}"#;

/// A delivery with the Basic credentials the README tells operators to set.
pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    use base64::Engine as _;
    let credentials = [b"flux-recv:".as_slice(), key].concat();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    Incoming::post(
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Authorization", &auth),
        ],
        body,
    )
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "eventType")]
    event_type: String,
    /// Its shape depends on the event type: read only for `git.push`.
    #[serde(default)]
    resource: serde_json::Value,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(rename = "refUpdates")]
    ref_updates: Bounded<RefUpdate>,
    repository: Repository,
}

#[derive(Deserialize)]
struct RefUpdate {
    name: String,
    #[serde(rename = "newObjectId")]
    new_object_id: String,
}

#[derive(Deserialize)]
struct Repository {
    #[serde(rename = "remoteUrl")]
    remote_url: String,
    #[serde(rename = "sshUrl")]
    ssh_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;
    use base64::Engine as _;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/azure_devops/git_push.json");
    const REMOTE_ONLY: &[u8] =
        include_bytes!("../../tests/fixtures/azure_devops/git_push_remote_url_only.json");
    const THREE_REFS: &[u8] =
        include_bytes!("../../tests/fixtures/azure_devops/git_push_three_refs.json");
    const DELETED: &[u8] = include_bytes!("../../tests/fixtures/azure_devops/branch_deleted.json");
    const PULL_REQUEST: &[u8] =
        include_bytes!("../../tests/fixtures/azure_devops/pullrequest_created.json");
    const SSH: &str = "git@ssh.dev.azure.com:v3/acme/platform/fleet-infra";

    fn basic(user: &str, password: &[u8]) -> String {
        let credentials = [user.as_bytes(), b":", password].concat();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    fn run_with(auth: Option<&str>, body: &[u8]) -> Result<Outcome, Rejection> {
        let mut headers = vec![("Content-Type", "application/json; charset=utf-8")];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        handle(&incoming(&headers, body), &settings())
    }

    fn run(body: &[u8]) -> Result<Outcome, Rejection> {
        run_with(Some(&basic("azure", KEY)), body)
    }

    #[test]
    fn a_push_notifies_the_ssh_url_or_else_the_remote_url() {
        assert_eq!(run(PUSH).unwrap(), Outcome::Notify(vec![git(SSH, "main")]));
        assert_eq!(
            run(REMOTE_ONLY).unwrap(),
            Outcome::Notify(vec![git(
                "https://dev.azure.com/acme/platform/_git/fleet-infra",
                "main"
            )])
        );
    }

    #[test]
    fn one_change_per_updated_ref_and_none_for_deletions() {
        assert_eq!(
            run(THREE_REFS).unwrap(),
            Outcome::Notify(vec![git(SSH, "main"), git(SSH, "refs/tags/v1.4.0")])
        );
        assert_eq!(
            run(DELETED).unwrap(),
            Outcome::Ignored("push of deletions only".into())
        );
    }

    #[test]
    fn other_event_types_are_ignored() {
        assert_eq!(
            run(PULL_REQUEST).unwrap(),
            Outcome::Ignored("event git.pullrequest.created".into())
        );
    }

    #[test]
    fn basic_auth_must_carry_the_key_as_password() {
        assert!(run_with(Some(&basic("", KEY)), PUSH).is_ok());
        assert!(is_unauthorized(&run_with(None, PUSH)));
        assert!(is_unauthorized(&run_with(
            Some(&basic("azure", b"wrong")),
            PUSH
        )));
        let bearer = format!("Bearer {}", std::str::from_utf8(KEY).unwrap());
        assert!(is_unauthorized(&run_with(Some(&bearer), PUSH)));
        // Checked before the body is read: an unauthenticated caller learns nothing.
        assert!(is_unauthorized(&run_with(None, b"junk")));
    }

    #[test]
    fn malformed_payloads_are_400() {
        assert!(is_bad_request(&run(b"{")));
        assert!(is_bad_request(&run(br#"{"eventType":7}"#)));
        assert!(is_bad_request(&run(br#"{"eventType":"git.push"}"#)));
        assert!(is_bad_request(&run(
            br#"{"eventType":"git.push","resource":{"refUpdates":[{"name":"refs/heads/main"}],"repository":{"remoteUrl":"x"}}}"#
        )));
    }

    #[test]
    fn the_delivery_id_is_the_events_id() {
        assert_eq!(
            delivery_id(&[], PUSH).as_deref(),
            Some("03c164c2-8912-4d5e-8009-3707d5f83734")
        );
        assert_eq!(delivery_id(&[], b"{"), None);
    }
}
