//! GitLab project and group webhooks (gitlab.com and self-managed).
//!
//! - Authentication: `X-Gitlab-Token` must equal the key byte for byte (compared in constant
//!   time); missing or different → 401. A key file with a trailing newline never matches: GitLab
//!   sends the token as typed.
//! - Signing tokens (Standard Webhooks; GitLab's webhook form's "Signing token", added in 2026
//!   behind the `webhook_signing_token` feature flag): when the key file holds the token as GitLab
//!   shows it, `whsec_<base64 of 32 bytes>`, the delivery must carry `webhook-id` (the same value
//!   as `Idempotency-Key`), `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
//!   "{id}.{timestamp}.{body}">` (one of several space-separated ones matching is enough), with a
//!   timestamp within 5 minutes of now; `X-Gitlab-Token` is then not looked at.
//! - Events (`X-Gitlab-Event`): `Push Hook` and `Tag Push Hook` → a git change
//!   (`project.git_ssh_url`, `ref`); any other event → 200 ignored, because GitLab disables hooks
//!   that keep answering 4xx; header missing → 400.
//! - Quirks: GitLab's "Test" button sends an ordinary push hook. Pushes touching more than three
//!   refs send no hook at all (`push_event_hooks_limit`).
//! - Docs: <https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events>.

use serde::Deserialize;

use super::{decode_json, printable, required_header, unauthorized};
use super::{first_header, standard_headers, standard_sample_headers};
use super::{Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::change::Change;
use crate::signature::{signing_secret, tokens_equal, unix_now, verify_standard};

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    authenticate(incoming, settings.key.bytes())?;
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

fn authenticate(incoming: &Incoming, key: &[u8]) -> Result<(), Rejection> {
    if let Some(secret) = signing_secret(key) {
        let headers = standard_headers(incoming);
        return verify_standard(headers, &secret, &incoming.body, unix_now()).map_err(unauthorized);
    }
    let token = incoming
        .header("X-Gitlab-Token")
        .ok_or_else(|| unauthorized("X-Gitlab-Token header missing"))?;
    if tokens_equal(token.as_bytes(), key) {
        Ok(())
    } else {
        Err(unauthorized("X-Gitlab-Token does not match the key"))
    }
}

pub fn delivery_id(headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    first_header(
        headers,
        &["Idempotency-Key", "webhook-id", "X-Gitlab-Event-UUID"],
    )
}

/// The smallest push GitLab could send.
pub const SAMPLE_BODY: &[u8] =
    br#"{"ref":"refs/heads/main","project":{"git_ssh_url":"git@gitlab.com:acme/app.git"}}"#;

/// With a signing token as the key, signed as GitLab signs; else with `X-Gitlab-Token`.
pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    if let Some(secret) = signing_secret(key) {
        let mut headers = standard_sample_headers(&secret, body);
        headers.push(("X-Gitlab-Event", "Push Hook".into()));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        return Incoming::post(&headers, body);
    }
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

    /// A signing token as GitLab shows it (`whsec_` + base64 of 32 bytes), with the newline a
    /// key file written by `echo` ends in.
    const TOKEN: &[u8] = b"whsec_c2lnbmluZy10b2tlbi1mb3ItZmx1eC1yZWN2LXRlc3Q=\n";

    fn signed(headers: &[(&'static str, String)], body: &[u8]) -> Result<Outcome, Rejection> {
        let mut all: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        all.push(("X-Gitlab-Event", "Push Hook"));
        let settings = Settings::new(crate::signature::Key::new(TOKEN.to_vec()));
        handle(&incoming(&all, body), &settings)
    }

    #[test]
    fn a_signing_token_checks_the_standard_webhooks_signature() {
        let secret = signing_secret(TOKEN).unwrap();
        assert_eq!(secret.len(), 32);
        let good = standard_sample_headers(&secret, PUSH);
        assert_eq!(
            signed(&good, PUSH).unwrap(),
            Outcome::Notify(vec![git(REPO, "main")])
        );
        // Tampered body, another token's signature, no signature, a stale timestamp: all 401.
        assert!(is_unauthorized(&signed(&good, TAG_PUSH)));
        let other = standard_sample_headers(b"another secret of thirty-two b!!", PUSH);
        assert!(is_unauthorized(&signed(&other, PUSH)));
        assert!(is_unauthorized(&signed(&good[..2], PUSH)));
        let old = (unix_now() - 301).to_string();
        let id = "msg_1";
        let stale = vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", old.clone()),
            (
                "webhook-signature",
                crate::signature::sign_standard(&secret, id, &old, PUSH),
            ),
        ];
        assert!(is_unauthorized(&signed(&stale, PUSH)));
        // The plain token is no longer accepted in place of a signature.
        let token = vec![(
            "X-Gitlab-Token",
            String::from_utf8_lossy(TOKEN).trim().to_owned(),
        )];
        assert!(is_unauthorized(&signed(&token, PUSH)));
    }
}
