//! Each git source end to end: the real server, a recording fake fluxd, and a table of deliveries
//! asserting the status, whether fluxd was called, and the exact JSON it got.

mod common;

use common::*;

const GITHUB_KEY: &[u8] = b"gh-integration-key-0123456789";
const GITLAB_KEY: &[u8] = b"gl-integration-key-0123456789";
const BBC_KEY: &[u8] = b"bbc-integration-key-0123456789";
const BBS_KEY: &[u8] = b"bbs-integration-key-0123456789";

const GH_PUSH: &[u8] = include_bytes!("fixtures/github/push.json");
const GH_TAG: &[u8] = include_bytes!("fixtures/github/push_tag.json");
const GH_PING: &[u8] = include_bytes!("fixtures/github/ping.json");
const GH_ISSUES: &[u8] = include_bytes!("fixtures/github/issues.json");
const GL_PUSH: &[u8] = include_bytes!("fixtures/gitlab/push.json");
const GL_TAG: &[u8] = include_bytes!("fixtures/gitlab/tag_push.json");
const GL_MR: &[u8] = include_bytes!("fixtures/gitlab/merge_request.json");
const BBC_PUSH: &[u8] = include_bytes!("fixtures/bitbucket_cloud/push.json");
const BBS_REFS: &[u8] = include_bytes!("fixtures/bitbucket_server/refs_changed.json");
const BBS_PING: &[u8] = include_bytes!("fixtures/bitbucket_server/ping.json");

fn run_table(source: &'static str, key: &[u8], cases: Vec<Case>) {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let (server, _config) = start(&[Ep::new(source, key)], &fluxd.api(), test_options());
    run_cases(source, &server, &route_of(key, ""), &fluxd, cases);
    server.stop();
}

fn gh(event: Option<&str>, sig: Option<String>, content_type: &str) -> Vec<(String, String)> {
    let mut headers = h(&[
        ("Content-Type", content_type),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ]);
    if let Some(event) = event {
        headers.push(("X-GitHub-Event".into(), event.into()));
    }
    if let Some(sig) = sig {
        headers.push(("X-Hub-Signature-256".into(), sig));
    }
    headers
}

fn sha256_sig(key: &[u8], body: &[u8]) -> Option<String> {
    Some(format!("sha256={}", hmac_hex("sha256", key, body)))
}

const GH_MAIN: &str =
    r#"{"Kind":"git","Source":{"URL":"git@github.com:acme/fleet-infra.git","Branch":"main"}}"#;

#[test]
fn github_table() {
    let json = "application/json";
    let mut form = b"payload=".to_vec();
    for &b in GH_PUSH {
        if b.is_ascii_alphanumeric() {
            form.push(b);
        } else {
            form.extend(format!("%{b:02x}").bytes());
        }
    }
    let legacy_sha1 = {
        let mut headers = gh(Some("push"), None, json);
        headers.push((
            "X-Hub-Signature".into(),
            format!("sha1={}", hmac_hex("sha1", GITHUB_KEY, GH_PUSH)),
        ));
        headers
    };
    run_table(
        "GitHub",
        GITHUB_KEY,
        vec![
            Case {
                name: "push",
                headers: gh(Some("push"), sha256_sig(GITHUB_KEY, GH_PUSH), json),
                body: GH_PUSH.to_vec(),
                status: 200,
                reply: Some("OK"),
                notified: vec![GH_MAIN],
            },
            Case {
                name: "tag push",
                headers: gh(Some("push"), sha256_sig(GITHUB_KEY, GH_TAG), json),
                body: GH_TAG.to_vec(),
                status: 200,
                reply: Some("OK"),
                notified: vec![
                    r#"{"Kind":"git","Source":{"URL":"git@github.com:acme/fleet-infra.git","Branch":"refs/tags/v1.4.0"}}"#,
                ],
            },
            Case {
                name: "form-encoded push",
                headers: gh(
                    Some("push"),
                    sha256_sig(GITHUB_KEY, &form),
                    "application/x-www-form-urlencoded",
                ),
                body: form.clone(),
                status: 200,
                reply: Some("OK"),
                notified: vec![GH_MAIN],
            },
            Case {
                name: "legacy sha1 signature",
                headers: legacy_sha1,
                body: GH_PUSH.to_vec(),
                status: 200,
                reply: Some("OK"),
                notified: vec![GH_MAIN],
            },
            Case {
                name: "bad signature",
                headers: gh(Some("push"), sha256_sig(b"another key", GH_PUSH), json),
                body: GH_PUSH.to_vec(),
                status: 401,
                reply: Some("Unauthorized: signature or token missing or wrong"),
                notified: vec![],
            },
            Case {
                name: "missing signature",
                headers: gh(Some("push"), None, json),
                body: GH_PUSH.to_vec(),
                status: 401,
                reply: Some("Unauthorized: signature or token missing or wrong"),
                notified: vec![],
            },
            Case {
                name: "ping",
                headers: gh(Some("ping"), sha256_sig(GITHUB_KEY, GH_PING), json),
                body: GH_PING.to_vec(),
                status: 200,
                reply: Some("Pong"),
                notified: vec![],
            },
            Case {
                name: "ignored event",
                headers: gh(Some("issues"), sha256_sig(GITHUB_KEY, GH_ISSUES), json),
                body: GH_ISSUES.to_vec(),
                status: 200,
                reply: Some("ignored: event issues"),
                notified: vec![],
            },
            Case {
                name: "wrong event for the body (push header, ping body)",
                headers: gh(Some("push"), sha256_sig(GITHUB_KEY, GH_PING), json),
                body: GH_PING.to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
            Case {
                name: "missing event",
                headers: gh(None, sha256_sig(GITHUB_KEY, GH_PUSH), json),
                body: GH_PUSH.to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
            Case {
                name: "malformed JSON",
                headers: gh(Some("push"), sha256_sig(GITHUB_KEY, b"{\"ref\":"), json),
                body: b"{\"ref\":".to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
            Case {
                name: "other content type",
                headers: gh(Some("push"), sha256_sig(GITHUB_KEY, GH_PUSH), "text/plain"),
                body: GH_PUSH.to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
        ],
    );
}

fn gl(event: Option<&str>, token: Option<&[u8]>) -> Vec<(String, String)> {
    let mut headers = h(&[("Content-Type", "application/json")]);
    if let Some(event) = event {
        headers.push(("X-Gitlab-Event".into(), event.into()));
    }
    if let Some(token) = token {
        headers.push((
            "X-Gitlab-Token".into(),
            String::from_utf8(token.to_vec()).unwrap(),
        ));
    }
    headers
}

#[test]
fn gitlab_table() {
    run_table(
        "GitLab",
        GITLAB_KEY,
        vec![
            Case {
                name: "push",
                headers: gl(Some("Push Hook"), Some(GITLAB_KEY)),
                body: GL_PUSH.to_vec(),
                status: 200,
                reply: Some("OK"),
                notified: vec![
                    r#"{"Kind":"git","Source":{"URL":"git@gitlab.example.com:platform/fleet-infra.git","Branch":"main"}}"#,
                ],
            },
            Case {
                name: "tag push",
                headers: gl(Some("Tag Push Hook"), Some(GITLAB_KEY)),
                body: GL_TAG.to_vec(),
                status: 200,
                reply: Some("OK"),
                notified: vec![
                    r#"{"Kind":"git","Source":{"URL":"git@gitlab.example.com:platform/fleet-infra.git","Branch":"refs/tags/v1.4.0"}}"#,
                ],
            },
            Case {
                name: "bad token",
                headers: gl(Some("Push Hook"), Some(b"gl-integration-key-0123456788")),
                body: GL_PUSH.to_vec(),
                status: 401,
                reply: Some("Unauthorized: signature or token missing or wrong"),
                notified: vec![],
            },
            Case {
                name: "missing token",
                headers: gl(Some("Push Hook"), None),
                body: GL_PUSH.to_vec(),
                status: 401,
                reply: Some("Unauthorized: signature or token missing or wrong"),
                notified: vec![],
            },
            Case {
                name: "ignored event",
                headers: gl(Some("Merge Request Hook"), Some(GITLAB_KEY)),
                body: GL_MR.to_vec(),
                status: 200,
                reply: Some("ignored: event Merge Request Hook"),
                notified: vec![],
            },
            Case {
                name: "wrong event for the body (Push Hook, merge request body)",
                headers: gl(Some("Push Hook"), Some(GITLAB_KEY)),
                body: GL_MR.to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
            Case {
                name: "missing event",
                headers: gl(None, Some(GITLAB_KEY)),
                body: GL_PUSH.to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
            Case {
                name: "malformed JSON",
                headers: gl(Some("Push Hook"), Some(GITLAB_KEY)),
                body: b"{\"ref\": [".to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
        ],
    );
}

fn bb(event: Option<&str>, sig: Option<String>) -> Vec<(String, String)> {
    let mut headers = h(&[
        ("Content-Type", "application/json"),
        ("X-Request-UUID", "6a1f0b7e-7c1d-4a55-9c55-0f1e2d3c4b5a"),
    ]);
    if let Some(event) = event {
        headers.push(("X-Event-Key".into(), event.into()));
    }
    if let Some(sig) = sig {
        headers.push(("X-Hub-Signature".into(), sig));
    }
    headers
}

#[test]
fn bitbucket_cloud_table() {
    let main = r#"{"Kind":"git","Source":{"URL":"git@bitbucket.org:acme/fleet-infra.git","Branch":"main"}}"#;
    let tag = r#"{"Kind":"git","Source":{"URL":"git@bitbucket.org:acme/fleet-infra.git","Branch":"v1.4.0"}}"#;
    run_table(
        "BitbucketCloud",
        BBC_KEY,
        vec![
            Case {
                name: "push, unsigned hook",
                headers: bb(Some("repo:push"), None),
                body: BBC_PUSH.to_vec(),
                status: 200,
                reply: Some("OK"),
                notified: vec![main, tag],
            },
            Case {
                name: "push, signed hook",
                headers: bb(Some("repo:push"), sha256_sig(BBC_KEY, BBC_PUSH)),
                body: BBC_PUSH.to_vec(),
                status: 200,
                reply: Some("OK"),
                notified: vec![main, tag],
            },
            Case {
                name: "bad signature",
                headers: bb(Some("repo:push"), sha256_sig(b"nope", BBC_PUSH)),
                body: BBC_PUSH.to_vec(),
                status: 401,
                reply: Some("Unauthorized: signature or token missing or wrong"),
                notified: vec![],
            },
            Case {
                name: "ignored event",
                headers: bb(Some("repo:fork"), None),
                body: b"{}".to_vec(),
                status: 200,
                reply: Some("ignored: event repo:fork"),
                notified: vec![],
            },
            Case {
                name: "wrong event for the body (repo:push, fork body)",
                headers: bb(Some("repo:push"), None),
                body:
                    br#"{"fork":{"full_name":"x/y"},"repository":{"full_name":"acme/fleet-infra"}}"#
                        .to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
            Case {
                name: "missing event",
                headers: bb(None, None),
                body: BBC_PUSH.to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
            Case {
                name: "malformed JSON",
                headers: bb(Some("repo:push"), None),
                body: b"{{".to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
        ],
    );
}

#[test]
fn bitbucket_server_table() {
    let url = "ssh://git@bitbucket.acme.example:7999/plat/fleet-infra.git";
    let main: &'static str = Box::leak(
        format!(r#"{{"Kind":"git","Source":{{"URL":"{url}","Branch":"main"}}}}"#).into_boxed_str(),
    );
    let release: &'static str = Box::leak(
        format!(r#"{{"Kind":"git","Source":{{"URL":"{url}","Branch":"release/1.x"}}}}"#)
            .into_boxed_str(),
    );
    run_table(
        "BitbucketServer",
        BBS_KEY,
        vec![
            Case {
                name: "refs_changed",
                headers: bb(Some("repo:refs_changed"), sha256_sig(BBS_KEY, BBS_REFS)),
                body: BBS_REFS.to_vec(),
                status: 200,
                reply: Some("OK"),
                notified: vec![main, release],
            },
            Case {
                name: "ping",
                headers: bb(Some("diagnostics:ping"), sha256_sig(BBS_KEY, BBS_PING)),
                body: BBS_PING.to_vec(),
                status: 200,
                reply: Some("Pong"),
                notified: vec![],
            },
            Case {
                name: "bad signature",
                headers: bb(Some("repo:refs_changed"), sha256_sig(b"x", BBS_REFS)),
                body: BBS_REFS.to_vec(),
                status: 401,
                reply: Some("Unauthorized: signature or token missing or wrong"),
                notified: vec![],
            },
            Case {
                name: "missing signature",
                headers: bb(Some("repo:refs_changed"), None),
                body: BBS_REFS.to_vec(),
                status: 401,
                reply: Some("Unauthorized: signature or token missing or wrong"),
                notified: vec![],
            },
            Case {
                name: "ignored event",
                headers: bb(Some("pr:opened"), sha256_sig(BBS_KEY, b"{}")),
                body: b"{}".to_vec(),
                status: 200,
                reply: Some("ignored: event pr:opened"),
                notified: vec![],
            },
            Case {
                name: "wrong event for the body (refs_changed, ping body)",
                headers: bb(Some("repo:refs_changed"), sha256_sig(BBS_KEY, BBS_PING)),
                body: BBS_PING.to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
            Case {
                name: "missing event",
                headers: bb(None, sha256_sig(BBS_KEY, BBS_REFS)),
                body: BBS_REFS.to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
            Case {
                name: "malformed JSON",
                headers: bb(Some("repo:refs_changed"), sha256_sig(BBS_KEY, b"[1,")),
                body: b"[1,".to_vec(),
                status: 400,
                reply: Some("Bad request"),
                notified: vec![],
            },
        ],
    );
}

#[test]
fn endpoints_with_a_registry_host_route_by_key_and_host() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let mut ep = Ep::new("GitLab", GITLAB_KEY);
    ep.registry_host = Some("registry.example.com");
    let (server, _config) = start(&[ep], &fluxd.api(), test_options());
    let headers = [
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", std::str::from_utf8(GITLAB_KEY).unwrap()),
    ];
    let without_host = post(server.addr(), &route_of(GITLAB_KEY, ""), &headers, GL_PUSH);
    assert_eq!(without_host.status, 404);
    let with_host = post(
        server.addr(),
        &route_of(GITLAB_KEY, "registry.example.com"),
        &headers,
        GL_PUSH,
    );
    assert_eq!(with_host.status, 200, "{with_host:?}");
    assert_eq!(fluxd.requests().len(), 1);
    server.stop();
}
