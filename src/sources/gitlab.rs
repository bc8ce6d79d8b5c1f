//! GitLab project and group webhooks (gitlab.com and self-managed).
//!
//! - Authentication: `X-Gitlab-Token` must equal the key byte for byte (compared in constant
//!   time); missing or different → 401. A key file with a trailing newline never matches: GitLab
//!   sends the token as typed.
//! - Events (`X-Gitlab-Event`): `Push Hook` and `Tag Push Hook` → a git change
//!   (`project.git_ssh_url`, `ref`); any other event → 200 ignored, because GitLab disables hooks
//!   that keep answering 4xx; header missing → 400.
//! - Quirks: GitLab's "Test" button sends an ordinary push hook. Pushes touching more than three
//!   refs send no hook at all (`push_event_hooks_limit`).
//! - Docs: <https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events>.

use serde::Deserialize;

use super::{decode_json, printable, required_header, unauthorized};
use super::{first_header, Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::change::Change;
use crate::signature::tokens_equal;

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    let token = incoming
        .header("X-Gitlab-Token")
        .ok_or_else(|| unauthorized("X-Gitlab-Token header missing"))?;
    if !tokens_equal(token.as_bytes(), settings.key.bytes()) {
        return Err(unauthorized("X-Gitlab-Token does not match the key"));
    }
    match required_header(incoming, "X-Gitlab-Event")? {
        "Push Hook" | "Tag Push Hook" => {
            let push: Push = decode_json("GitLab push payload", &incoming.body)?;
            Ok(Outcome::Notify(vec![Change::git(
                push.project.git_ssh_url,
                &push.git_ref,
            )]))
        }
        other => Ok(Outcome::Ignored(format!("event {}", printable(other)))),
    }
}

pub fn delivery_id(headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    first_header(headers, &["Idempotency-Key", "X-Gitlab-Event-UUID"])
}

/// The smallest push GitLab could send.
pub const SAMPLE_BODY: &[u8] =
    br#"{"ref":"refs/heads/main","project":{"git_ssh_url":"git@gitlab.com:acme/app.git"}}"#;

pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(
        &[
            ("X-Gitlab-Event", "Push Hook"),
            (
                "X-Gitlab-Event-UUID",
                "9b7d1e22-aaaa-bbbb-cccc-ddddeeeeffff",
            ),
            ("Content-Type", "application/json"),
            ("X-Gitlab-Token", &String::from_utf8_lossy(key)),
        ],
        body,
    )
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    project: Project,
}

#[derive(Deserialize)]
struct Project {
    git_ssh_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/gitlab/push.json");
    const TAG_PUSH: &[u8] = include_bytes!("../../tests/fixtures/gitlab/tag_push.json");
    const MERGE_REQUEST: &[u8] = include_bytes!("../../tests/fixtures/gitlab/merge_request.json");
    const REPO: &str = "git@gitlab.example.com:platform/fleet-infra.git";

    fn run(event: Option<&str>, token: Option<&[u8]>, body: &[u8]) -> Result<Outcome, Rejection> {
        let token = token.map(|t| String::from_utf8(t.to_vec()).unwrap());
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(event) = event {
            headers.push(("X-Gitlab-Event", event));
        }
        if let Some(token) = token.as_deref() {
            headers.push(("X-Gitlab-Token", token));
        }
        handle(&incoming(&headers, body), &settings())
    }

    #[test]
    fn push_and_tag_push_notify() {
        assert_eq!(
            run(Some("Push Hook"), Some(KEY), PUSH).unwrap(),
            Outcome::Notify(vec![git(REPO, "main")])
        );
        assert_eq!(
            run(Some("Tag Push Hook"), Some(KEY), TAG_PUSH).unwrap(),
            Outcome::Notify(vec![git(REPO, "refs/tags/v1.4.0")])
        );
    }

    #[test]
    fn other_events_are_ignored_not_refused() {
        assert_eq!(
            run(Some("Merge Request Hook"), Some(KEY), MERGE_REQUEST).unwrap(),
            Outcome::Ignored("event Merge Request Hook".into())
        );
    }

    #[test]
    fn token_must_match_exactly() {
        assert!(is_unauthorized(&run(Some("Push Hook"), None, PUSH)));
        assert!(is_unauthorized(&run(
            Some("Push Hook"),
            Some(b"wrong"),
            PUSH
        )));
        let with_newline = [KEY, b"\n"].concat();
        assert!(is_unauthorized(&run(
            Some("Push Hook"),
            Some(&with_newline),
            PUSH
        )));
        // The token is checked before anything else: an unauthenticated caller learns nothing.
        assert!(is_unauthorized(&run(None, Some(b"wrong"), b"junk")));
    }

    #[test]
    fn missing_event_or_bad_payload_is_400() {
        assert!(is_bad_request(&run(None, Some(KEY), PUSH)));
        assert!(is_bad_request(&run(
            Some("Push Hook"),
            Some(KEY),
            b"not json"
        )));
        assert!(is_bad_request(&run(
            Some("Push Hook"),
            Some(KEY),
            br#"{"ref":"refs/heads/main","project":{"git_ssh_url":null}}"#
        )));
    }
}
