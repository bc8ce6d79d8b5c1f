//! GitHub (github.com and GitHub Enterprise Server) repository and organisation webhooks.
//!
//! - Authentication: HMAC of the raw body with the key. `X-Hub-Signature-256: sha256=…` is used
//!   when present; otherwise `X-Hub-Signature` with `sha1=`, `sha256=` or `sha512=`. Missing or
//!   wrong → 401. With the form content type the MAC covers the whole form body.
//! - Bodies: `application/json`, or `application/x-www-form-urlencoded` with the JSON in the
//!   `payload` field. Any other content type → 400.
//! - Events (`X-GitHub-Event`): `push` → a git change (`repository.ssh_url`, `ref`; branch and tag
//!   pushes and deletions alike); `package` and `registry_package` (GHCR), action `published` or
//!   `updated`, `package.package_type` `container` (any case; also `docker`) with a tag in
//!   `package.package_version.container_metadata.tag.name` → an image change for
//!   `ghcr.io/<package.owner.login, lowercased>/<package.name>`; untagged versions (the
//!   per-platform manifests of a multi-arch push) and other package types → 200 ignored; `ping` →
//!   `Pong`; anything else → 200 ignored; header missing → 400.
//! - Quirks: push payloads carry `created_at`/`pushed_at` as integers (only the two fields used
//!   here are read). No push hook is sent when more than three tags are pushed at once.
//! - Docs: <https://docs.github.com/en/webhooks/webhook-events-and-payloads#push>,
//!   <https://docs.github.com/en/webhooks/webhook-events-and-payloads#registry_package> (and
//!   octokit/webhooks' `payload-schemas/api.github.com/{package,registry_package}`),
//!   <https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>.

use std::borrow::Cow;

use serde::Deserialize;

use super::{decode_json, image_change, malformed, printable, required_header, unauthorized};
use super::{first_header, Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::change::Change;
use crate::signature::{sign_hex, verify_prefixed, Algorithm};

/// Only the route digest uses `registryHost`.
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    verify(incoming, settings.key.bytes())?;
    let event = required_header(incoming, "X-GitHub-Event")?;
    match event {
        "push" => {
            let json = payload(incoming)?;
            let push: Push = decode_json("GitHub push payload", &json)?;
            Ok(Outcome::Notify(vec![push.change()]))
        }
        "package" | "registry_package" => {
            let json = payload(incoming)?;
            let event: PackageEvent = decode_json("GitHub package payload", &json)?;
            event.outcome()
        }
        "ping" => Ok(Outcome::Pong),
        other => Ok(Outcome::Ignored(format!("event {}", printable(other)))),
    }
}

/// A `package` or `registry_package` event: the package sits under either name.
#[derive(Deserialize)]
struct PackageEvent {
    action: String,
    #[serde(alias = "registry_package")]
    package: Package,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    package_type: String,
    owner: Owner,
    package_version: Option<PackageVersion>,
}

#[derive(Deserialize)]
struct Owner {
    login: String,
}

#[derive(Deserialize)]
struct PackageVersion {
    container_metadata: Option<ContainerMetadata>,
}

#[derive(Deserialize)]
struct ContainerMetadata {
    tag: Option<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
}

impl PackageEvent {
    fn outcome(&self) -> Result<Outcome, Rejection> {
        let package = &self.package;
        let kind = package.package_type.to_ascii_lowercase();
        if kind != "container" && kind != "docker" {
            return Ok(Outcome::Ignored(format!("{} package", printable(&kind))));
        }
        if self.action != "published" && self.action != "updated" {
            return Ok(Outcome::Ignored(format!(
                "package {}",
                printable(&self.action)
            )));
        }
        let tag = package
            .package_version
            .as_ref()
            .and_then(|v| v.container_metadata.as_ref())
            .and_then(|m| m.tag.as_ref())
            .map(|t| t.name.as_str())
            .unwrap_or("");
        if tag.is_empty() {
            return Ok(Outcome::Ignored("untagged package version".into()));
        }
        let reference = format!(
            "ghcr.io/{}/{}",
            package.owner.login.to_ascii_lowercase(),
            package.name
        );
        Ok(Outcome::Notify(vec![image_change(&reference)?]))
    }
}

pub fn delivery_id(headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    first_header(headers, &["X-GitHub-Delivery"])
}

/// The smallest push GitHub could send: a branch push with its repository's SSH URL.
pub const SAMPLE_BODY: &[u8] =
    br#"{"ref":"refs/heads/main","repository":{"ssh_url":"git@github.com:acme/app.git"}}"#;

pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    let signature = format!("sha256={}", sign_hex(Algorithm::Sha256, key, body));
    Incoming::post(
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", &signature),
        ],
        body,
    )
}

fn verify(incoming: &Incoming, key: &[u8]) -> Result<(), Rejection> {
    let result = match incoming.header("X-Hub-Signature-256") {
        Some(value) => verify_prefixed("X-Hub-Signature-256", Some(value), key, &incoming.body),
        None => verify_prefixed(
            "X-Hub-Signature",
            incoming.header("X-Hub-Signature"),
            key,
            &incoming.body,
        ),
    };
    result.map_err(unauthorized)
}

/// The JSON payload, from either body encoding GitHub offers.
fn payload(incoming: &Incoming) -> Result<Cow<'_, [u8]>, Rejection> {
    let content_type = incoming.header("Content-Type").unwrap_or("");
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/json" => Ok(Cow::Borrowed(&incoming.body)),
        "application/x-www-form-urlencoded" => form_field(&incoming.body, b"payload")
            .map(Cow::Owned)
            .ok_or_else(|| malformed("form body has no payload field")),
        _ => Err(malformed(format!(
            "content type {:?} is neither application/json nor application/x-www-form-urlencoded",
            printable(content_type)
        ))),
    }
}

/// The decoded value of the first `name=` field of a form body.
fn form_field(body: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (form_decode(key) == name).then(|| form_decode(value))
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XY` a byte. A bad escape
/// stays as it is (the payload is then not JSON, and refused as such).
fn form_decode(input: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = input
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced).collect()
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    repository: Repository,
}

#[derive(Deserialize)]
struct Repository {
    ssh_url: String,
}

impl Push {
    fn change(&self) -> Change {
        Change::git(&self.repository.ssh_url, &self.git_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/github/push.json");
    const PUSH_TAG: &[u8] = include_bytes!("../../tests/fixtures/github/push_tag.json");
    const PUSH_DELETE: &[u8] = include_bytes!("../../tests/fixtures/github/push_delete.json");
    const PING: &[u8] = include_bytes!("../../tests/fixtures/github/ping.json");
    const ISSUES: &[u8] = include_bytes!("../../tests/fixtures/github/issues.json");

    fn signed(event: &str, content_type: &str, body: &[u8]) -> Incoming {
        let sig = format!("sha256={}", sign_hex(Algorithm::Sha256, KEY, body));
        incoming(
            &[
                ("X-GitHub-Event", event),
                ("Content-Type", content_type),
                ("X-Hub-Signature-256", &sig),
            ],
            body,
        )
    }

    fn run(incoming: &Incoming) -> Result<Outcome, Rejection> {
        handle(incoming, &settings())
    }

    const REPO: &str = "git@github.com:acme/fleet-infra.git";

    #[test]
    fn branch_push_notifies_the_ssh_url_and_branch() {
        let out = run(&signed("push", "application/json", PUSH)).unwrap();
        assert_eq!(out, Outcome::Notify(vec![git(REPO, "main")]));
    }

    #[test]
    fn tag_push_keeps_refs_tags() {
        let out = run(&signed("push", "application/json", PUSH_TAG)).unwrap();
        assert_eq!(out, Outcome::Notify(vec![git(REPO, "refs/tags/v1.4.0")]));
    }

    #[test]
    fn branch_deletion_still_notifies_its_branch() {
        let out = run(&signed("push", "application/json", PUSH_DELETE)).unwrap();
        assert_eq!(out, Outcome::Notify(vec![git(REPO, "feature/old-ui")]));
    }

    #[test]
    fn ping_pongs_and_other_events_are_ignored() {
        assert_eq!(
            run(&signed("ping", "application/json", PING)).unwrap(),
            Outcome::Pong
        );
        assert_eq!(
            run(&signed("issues", "application/json", ISSUES)).unwrap(),
            Outcome::Ignored("event issues".into())
        );
    }

    fn form_encode(json: &[u8]) -> Vec<u8> {
        let mut body = b"payload=".to_vec();
        for &b in json {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => body.push(b),
                b' ' => body.push(b'+'),
                _ => body.extend(format!("%{b:02X}").bytes()),
            }
        }
        body
    }

    #[test]
    fn form_encoded_push_is_signed_over_the_whole_form_body() {
        let body = form_encode(PUSH);
        let out = run(&signed(
            "push",
            "application/x-www-form-urlencoded; charset=utf-8",
            &body,
        ))
        .unwrap();
        assert_eq!(out, Outcome::Notify(vec![git(REPO, "main")]));

        // A signature over the decoded JSON (what Gitea does) is not GitHub's and fails.
        let sig = format!("sha256={}", sign_hex(Algorithm::Sha256, KEY, PUSH));
        let wrong = incoming(
            &[
                ("X-GitHub-Event", "push"),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Hub-Signature-256", &sig),
            ],
            &body,
        );
        assert!(is_unauthorized(&run(&wrong)));
    }

    #[test]
    fn legacy_signature_header_with_each_algorithm() {
        for (algorithm, prefix) in [
            (Algorithm::Sha1, "sha1"),
            (Algorithm::Sha256, "sha256"),
            (Algorithm::Sha512, "sha512"),
        ] {
            let sig = format!("{prefix}={}", sign_hex(algorithm, KEY, PUSH));
            let req = incoming(
                &[
                    ("X-GitHub-Event", "push"),
                    ("Content-Type", "application/json"),
                    ("X-Hub-Signature", &sig),
                ],
                PUSH,
            );
            assert!(run(&req).is_ok(), "{prefix}");
        }
    }

    #[test]
    fn the_sha256_header_wins_over_a_valid_legacy_one() {
        let good_sha1 = format!("sha1={}", sign_hex(Algorithm::Sha1, KEY, PUSH));
        let bad_256 = format!("sha256={}", "0".repeat(64));
        let req = incoming(
            &[
                ("X-GitHub-Event", "push"),
                ("Content-Type", "application/json"),
                ("X-Hub-Signature", &good_sha1),
                ("X-Hub-Signature-256", &bad_256),
            ],
            PUSH,
        );
        assert!(is_unauthorized(&run(&req)));
    }

    #[test]
    fn missing_or_wrong_signature_is_401() {
        let unsigned = incoming(
            &[
                ("X-GitHub-Event", "push"),
                ("Content-Type", "application/json"),
            ],
            PUSH,
        );
        assert!(is_unauthorized(&run(&unsigned)));
        let mut tampered = signed("push", "application/json", PUSH);
        tampered.body[10] ^= 1;
        assert!(is_unauthorized(&run(&tampered)));
    }

    #[test]
    fn bad_requests_are_400() {
        let mut no_event = signed("push", "application/json", PUSH);
        no_event.headers.retain(|(n, _)| n != "X-GitHub-Event");
        assert!(is_bad_request(&run(&no_event)));
        assert!(is_bad_request(&run(&signed("push", "text/plain", PUSH))));
        assert!(is_bad_request(&run(&signed(
            "push",
            "application/json",
            b"{\"ref\":"
        ))));
        assert!(is_bad_request(&run(&signed(
            "push",
            "application/json",
            br#"{"ref":"refs/heads/main","repository":{}}"#
        ))));
        assert!(is_bad_request(&run(&signed(
            "push",
            "application/json",
            br#"{"ref":7,"repository":{"ssh_url":"git@h:o/r.git"}}"#
        ))));
        assert!(is_bad_request(&run(&signed(
            "push",
            "application/x-www-form-urlencoded",
            b"other=1"
        ))));
        assert!(is_bad_request(&run(&signed(
            "push",
            "application/x-www-form-urlencoded",
            b"payload=%7"
        ))));
    }

    const REGISTRY_PACKAGE: &[u8] =
        include_bytes!("../../tests/fixtures/github/registry_package_published.json");
    const UNTAGGED: &[u8] =
        include_bytes!("../../tests/fixtures/github/package_published_untagged.json");
    const NPM: &[u8] = include_bytes!("../../tests/fixtures/github/package_published_npm.json");

    #[test]
    fn a_tagged_container_package_notifies_its_ghcr_name() {
        let want = Outcome::Notify(vec![image("ghcr.io", "acme/podinfo")]);
        for event in ["registry_package", "package"] {
            let body = String::from_utf8(REGISTRY_PACKAGE.to_vec())
                .unwrap()
                .replace("\"registry_package\":", &format!("\"{event}\":"));
            let out = run(&signed(event, "application/json", body.as_bytes())).unwrap();
            assert_eq!(out, want, "{event}");
        }
        let updated = String::from_utf8(REGISTRY_PACKAGE.to_vec())
            .unwrap()
            .replace("\"published\"", "\"updated\"");
        let out = run(&signed(
            "registry_package",
            "application/json",
            updated.as_bytes(),
        ));
        assert_eq!(out.unwrap(), want);
    }

    #[test]
    fn untagged_versions_other_types_and_actions_are_ignored() {
        assert_eq!(
            run(&signed("package", "application/json", UNTAGGED)).unwrap(),
            Outcome::Ignored("untagged package version".into())
        );
        assert_eq!(
            run(&signed("package", "application/json", NPM)).unwrap(),
            Outcome::Ignored("npm package".into())
        );
        let deleted = String::from_utf8(REGISTRY_PACKAGE.to_vec())
            .unwrap()
            .replace("\"published\"", "\"deleted\"");
        assert_eq!(
            run(&signed(
                "registry_package",
                "application/json",
                deleted.as_bytes()
            ))
            .unwrap(),
            Outcome::Ignored("package deleted".into())
        );
        assert!(is_bad_request(&run(&signed(
            "package",
            "application/json",
            br#"{"action":"published","package":{"name":"x"}}"#
        ))));
        let sig = format!(
            "sha256={}",
            sign_hex(Algorithm::Sha256, b"other", REGISTRY_PACKAGE)
        );
        let forged = incoming(
            &[
                ("X-GitHub-Event", "registry_package"),
                ("Content-Type", "application/json"),
                ("X-Hub-Signature-256", &sig),
            ],
            REGISTRY_PACKAGE,
        );
        assert!(is_unauthorized(&run(&forged)));
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode(b"a+b%2Fc%7e%2B"), b"a b/c~+");
        assert_eq!(form_decode(b"%zz"), b"%zz");
        assert_eq!(
            form_field(b"x=1&payload=%7B%7D", b"payload").unwrap(),
            b"{}"
        );
        assert_eq!(form_field(b"payload", b"payload").unwrap(), b"");
        assert!(form_field(b"payloads=1", b"payload").is_none());
    }
}
