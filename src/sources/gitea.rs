//! Gitea, Forgejo and Gogs webhooks (one source: Forgejo is a fork of Gitea, Gitea of Gogs, and
//! their hooks share payloads and headers).
//!
//! - Authentication: hex HMAC-SHA256 of the raw body with the key, in `X-Gitea-Signature`
//!   (Forgejo also sends `X-Forgejo-Signature`, Gogs `X-Gogs-Signature`); the first present is
//!   checked; none → 401 (a hook without a secret sends an empty signature, refused too).
//! - Events: `X-Gitea-Event-Type`, else `X-Gitea-Event`, `X-Forgejo-Event`, `X-Gogs-Event` (some
//!   Gitea versions leave `X-Gitea-Event` empty for package events; `…-Type` holds the raw
//!   name). `push` → a git change (`repository.ssh_url`, which fluxd compares protocol-blind,
//!   and `ref`): branch and tag pushes alike; `delete` of a branch or tag → a git change for that
//!   ref, as a GitHub deletion push is; `package` (the package registry, `modules/structs/hook.go`
//!   `PackagePayload`) with `action` `created`, `package.type` `container` and a tag in
//!   `package.version` → an image change for `registryHost` + `/` + `package.owner.login` + `/` +
//!   `package.name` (package payloads name no host: an endpoint without `registryHost` answers
//!   them 200 ignored and says so); versions by digest (the platform manifests of a multi-arch
//!   push), other package types and actions, and every other event (`create`, which comes with
//!   its `push`, issues, pull requests…) → 200 ignored; no event header → 400.
//! - Docs: <https://docs.gitea.com/usage/webhooks>, <https://forgejo.org/docs/latest/user/webhooks/>;
//!   go-gitea/gitea `modules/structs/hook.go`, `services/webhook/deliver.go`.

use serde::Deserialize;

use super::{decode_json, first_header, image_change, printable, unauthorized};
use super::{Incoming, Outcome, RegistryHost, Rejection, Settings};
use crate::change::Change;
use crate::signature::{sign_hex, verify_bare_hex, Algorithm};

/// Git pushes need none; package events name no host (they need it, and say so without).
pub const REGISTRY_HOST: RegistryHost = RegistryHost::Unused;

const SIGNATURES: [&str; 3] = [
    "X-Gitea-Signature",
    "X-Forgejo-Signature",
    "X-Gogs-Signature",
];
const EVENTS: [&str; 4] = [
    "X-Gitea-Event-Type",
    "X-Gitea-Event",
    "X-Forgejo-Event",
    "X-Gogs-Event",
];

pub fn handle(incoming: &Incoming, settings: &Settings) -> Result<Outcome, Rejection> {
    verify(incoming, settings.key.bytes())?;
    let event = EVENTS
        .iter()
        .filter_map(|name| incoming.header(name))
        .find(|value| !value.is_empty())
        .ok_or_else(|| super::malformed("X-Gitea-Event header missing"))?;
    match event {
        "push" => {
            let push: Push = decode_json("Gitea push payload", &incoming.body)?;
            Ok(Outcome::Notify(vec![Change::git(
                push.repository.ssh_url,
                &push.git_ref,
            )]))
        }
        "delete" => {
            let deleted: Deleted = decode_json("Gitea delete payload", &incoming.body)?;
            deleted.outcome()
        }
        "package" => {
            let package: PackageEvent = decode_json("Gitea package payload", &incoming.body)?;
            package.outcome(settings.registry_host.as_deref())
        }
        other => Ok(Outcome::Ignored(format!("event {}", printable(other)))),
    }
}

fn verify(incoming: &Incoming, key: &[u8]) -> Result<(), Rejection> {
    let (name, value) = SIGNATURES
        .iter()
        .find_map(|name| Some((*name, incoming.header(name)?)))
        .ok_or_else(|| unauthorized("X-Gitea-Signature header missing"))?;
    verify_bare_hex(name, Algorithm::Sha256, Some(value), key, &incoming.body).map_err(unauthorized)
}

pub fn delivery_id(headers: &[(String, String)], _body: &[u8]) -> Option<String> {
    first_header(
        headers,
        &["X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery"],
    )
}

pub const SAMPLE_BODY: &[u8] =
    br#"{"ref":"refs/heads/main","repository":{"ssh_url":"git@gitea.example.com:acme/app.git"}}"#;

pub fn sample(key: &[u8], body: &[u8]) -> Incoming {
    Incoming::post(
        &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Event-Type", "push"),
            ("X-Gitea-Delivery", "0f2d3c4b-5a69-4788-96a5-b4c3d2e1f00f"),
            ("Content-Type", "application/json"),
            ("X-Gitea-Signature", &sign_hex(Algorithm::Sha256, key, body)),
        ],
        body,
    )
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

/// A branch or tag deletion (`ref` is the short name).
#[derive(Deserialize)]
struct Deleted {
    #[serde(rename = "ref")]
    name: String,
    ref_type: String,
    repository: Repository,
}

impl Deleted {
    fn outcome(self) -> Result<Outcome, Rejection> {
        let git_ref = match self.ref_type.as_str() {
            "branch" => self.name,
            "tag" => format!("refs/tags/{}", self.name),
            other => {
                return Ok(Outcome::Ignored(format!(
                    "delete of a {}",
                    printable(other)
                )))
            }
        };
        Ok(Outcome::Notify(vec![Change::git(
            self.repository.ssh_url,
            &git_ref,
        )]))
    }
}

#[derive(Deserialize)]
struct PackageEvent {
    action: String,
    package: Package,
}

#[derive(Deserialize)]
struct Package {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    version: String,
    owner: Owner,
}

#[derive(Deserialize)]
struct Owner {
    login: String,
}

impl PackageEvent {
    fn outcome(&self, registry_host: Option<&str>) -> Result<Outcome, Rejection> {
        let package = &self.package;
        if package.kind != "container" {
            return Ok(Outcome::Ignored(format!(
                "{} package",
                printable(&package.kind)
            )));
        }
        if self.action != "created" {
            return Ok(Outcome::Ignored(format!(
                "package {}",
                printable(&self.action)
            )));
        }
        if package.version.starts_with("sha256:") {
            return Ok(Outcome::Ignored("package version by digest".into()));
        }
        let Some(host) = registry_host else {
            return Ok(Outcome::Ignored(
                "container package, but the endpoint has no registryHost".into(),
            ));
        };
        let reference = format!(
            "{}/{}/{}",
            host.trim_end_matches('/'),
            package.owner.login,
            package.name
        );
        Ok(Outcome::Notify(vec![image_change(&reference)?]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::testing::*;

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/gitea/push.json");
    const PUSH_TAG: &[u8] = include_bytes!("../../tests/fixtures/gitea/push_tag.json");
    const DELETE: &[u8] = include_bytes!("../../tests/fixtures/gitea/delete_branch.json");
    const CREATE: &[u8] = include_bytes!("../../tests/fixtures/gitea/create_branch.json");
    const ISSUES: &[u8] = include_bytes!("../../tests/fixtures/gitea/issues.json");
    const PACKAGE: &[u8] =
        include_bytes!("../../tests/fixtures/gitea/package_container_created.json");
    const BY_DIGEST: &[u8] =
        include_bytes!("../../tests/fixtures/gitea/package_container_by_digest.json");
    const NPM: &[u8] = include_bytes!("../../tests/fixtures/gitea/package_npm_created.json");
    const PACKAGE_DELETED: &[u8] =
        include_bytes!("../../tests/fixtures/gitea/package_container_deleted.json");
    const REPO: &str = "git@gitea.acme.example:platform/fleet-infra.git";

    /// A delivery as `flavour` (Gitea, Forgejo, Gogs) sends it.
    fn delivery(flavour: &str, event: &str, key: &[u8], body: &[u8]) -> Incoming {
        let signature = sign_hex(Algorithm::Sha256, key, body);
        let headers = match flavour {
            "Forgejo" => vec![
                ("X-Forgejo-Event", event),
                ("X-Forgejo-Signature", signature.as_str()),
                ("X-Gitea-Event", event),
                ("X-Gitea-Signature", signature.as_str()),
            ],
            "Gogs" => vec![
                ("X-Gogs-Event", event),
                ("X-Gogs-Signature", signature.as_str()),
            ],
            _ => vec![
                ("X-Gitea-Event", event),
                ("X-Gitea-Event-Type", event),
                ("X-Gitea-Signature", signature.as_str()),
            ],
        };
        incoming(&headers, body)
    }

    fn run_on(settings: &Settings, event: &str, body: &[u8]) -> Result<Outcome, Rejection> {
        handle(&delivery("Gitea", event, KEY, body), settings)
    }

    fn run(event: &str, body: &[u8]) -> Result<Outcome, Rejection> {
        run_on(&settings_with_host("gitea.acme.example"), event, body)
    }

    #[test]
    fn pushes_notify_from_each_flavour() {
        for flavour in ["Gitea", "Forgejo", "Gogs"] {
            let out = handle(&delivery(flavour, "push", KEY, PUSH), &settings()).unwrap();
            assert_eq!(out, Outcome::Notify(vec![git(REPO, "main")]), "{flavour}");
        }
        assert_eq!(
            run("push", PUSH_TAG).unwrap(),
            Outcome::Notify(vec![git(REPO, "refs/tags/v1.4.0")])
        );
    }

    #[test]
    fn a_deleted_branch_notifies_its_ref_and_other_events_are_ignored() {
        assert_eq!(
            run("delete", DELETE).unwrap(),
            Outcome::Notify(vec![git(REPO, "feature/old-ui")])
        );
        assert_eq!(
            run("create", CREATE).unwrap(),
            Outcome::Ignored("event create".into())
        );
        assert_eq!(
            run("issues", ISSUES).unwrap(),
            Outcome::Ignored("event issues".into())
        );
    }

    #[test]
    fn a_tagged_container_package_notifies_registry_host_owner_and_name() {
        assert_eq!(
            run("package", PACKAGE).unwrap(),
            Outcome::Notify(vec![image("gitea.acme.example", "platform/podinfo")])
        );
        // Some Gitea versions send an empty X-Gitea-Event for packages; the type header holds it.
        let signature = sign_hex(Algorithm::Sha256, KEY, PACKAGE);
        let empty_event = incoming(
            &[
                ("X-Gitea-Event", ""),
                ("X-Gitea-Event-Type", "package"),
                ("X-Gitea-Signature", &signature),
            ],
            PACKAGE,
        );
        assert!(matches!(
            handle(&empty_event, &settings_with_host("gitea.acme.example")),
            Ok(Outcome::Notify(_))
        ));
        for (body, reason) in [
            (BY_DIGEST, "package version by digest"),
            (NPM, "npm package"),
            (PACKAGE_DELETED, "package deleted"),
        ] {
            assert_eq!(
                run("package", body).unwrap(),
                Outcome::Ignored(reason.into())
            );
        }
        assert_eq!(
            run_on(&settings(), "package", PACKAGE).unwrap(),
            Outcome::Ignored("container package, but the endpoint has no registryHost".into())
        );
    }

    #[test]
    fn signatures_are_required_and_checked() {
        assert!(is_unauthorized(&handle(
            &incoming(&[("X-Gitea-Event", "push")], PUSH),
            &settings()
        )));
        assert!(is_unauthorized(&handle(
            &delivery("Gitea", "push", b"another key", PUSH),
            &settings()
        )));
        let empty = incoming(
            &[("X-Gitea-Event", "push"), ("X-Gitea-Signature", "")],
            PUSH,
        );
        assert!(is_unauthorized(&handle(&empty, &settings())));
    }

    #[test]
    fn malformed_deliveries_are_400() {
        let no_event = incoming(
            &[("X-Gitea-Signature", &sign_hex(Algorithm::Sha256, KEY, PUSH))],
            PUSH,
        );
        assert!(is_bad_request(&handle(&no_event, &settings())));
        assert!(is_bad_request(&run("push", b"{")));
        assert!(is_bad_request(&run(
            "push",
            br#"{"ref":"refs/heads/main"}"#
        )));
        assert!(is_bad_request(&run("package", br#"{"action":"created"}"#)));
    }
}
