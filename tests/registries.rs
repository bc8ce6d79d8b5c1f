//! The registry-mirror sources end to end: the real server, a recording fake fluxd, and a table
//! per source over the providers' fixtures: a tag push reaches fluxd as the exact change, the
//! registry's noise is `200 ignored`, bad or missing auth is 401, malformed payloads are 400.

mod common;

use base64::Engine as _;
use common::*;

const KEY: &[u8] = b"registry-integration-key-0123456789";

fn image_change(domain: &str, image: &str) -> &'static str {
    format!(r#"{{"Kind":"image","Source":{{"Name":{{"Domain":"{domain}","Image":"{image}"}}}}}}"#)
        .leak()
}

fn ignored(reason: &str) -> Option<&'static str> {
    Some(format!("ignored: {reason}").leak())
}

fn key() -> &'static str {
    std::str::from_utf8(KEY).unwrap()
}

fn bearer(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let auth = format!("Bearer {}", key());
    let mut headers = h(&[("Authorization", &auth)]);
    headers.extend(h(extra));
    headers
}

const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";

#[test]
fn distribution_table() {
    let tag = include_bytes!("fixtures/distribution/tag_push.json");
    let headers = || bearer(&[("Content-Type", EVENTS_V1)]);
    let podinfo = image_change("mirror.internal:5000", "team-a/podinfo");
    let mut cases = vec![
        Case {
            name: "tag push",
            headers: headers(),
            body: tag.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![podinfo],
        },
        Case {
            name: "fifty events with duplicates: one change per image",
            headers: headers(),
            body: include_bytes!("fixtures/distribution/fifty_events.json").to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![podinfo, image_change("mirror.internal:5000", "team-b/api")],
        },
    ];
    for (name, body) in [
        (
            "digest push",
            &include_bytes!("fixtures/distribution/digest_push.json")[..],
        ),
        (
            "blob push",
            include_bytes!("fixtures/distribution/blob_push.json"),
        ),
        ("pull", include_bytes!("fixtures/distribution/pull.json")),
    ] {
        let reply = ignored("no tag push among 1 event(s)");
        cases.push(Case {
            name,
            headers: headers(),
            body: body.to_vec(),
            status: 200,
            reply,
            notified: vec![],
        });
    }
    cases.extend([
        Case {
            name: "no Authorization",
            headers: h(&[("Content-Type", EVENTS_V1)]),
            body: tag.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "the key without Bearer",
            headers: h(&[("Authorization", key())]),
            body: tag.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "malformed JSON",
            headers: headers(),
            body: b"{\"events\":[".to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
        Case {
            name: "events not a list",
            headers: headers(),
            body: br#"{"events":{}}"#.to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
    ]);
    table("Distribution", KEY, None, cases);
}

#[test]
fn distribution_registry_host_overrides_the_request_host() {
    let tag = include_bytes!("fixtures/distribution/tag_push.json");
    let change = image_change("registry.example.com", "team-a/podinfo");
    let cases = vec![Case {
        name: "tag push",
        headers: bearer(&[]),
        body: tag.to_vec(),
        status: 200,
        reply: None,
        notified: vec![change],
    }];
    table("Distribution", KEY, Some("registry.example.com"), cases);
}

#[test]
fn zot_table() {
    let updated = include_bytes!("fixtures/zot/image_updated.json");
    let event = |kind: &str| {
        bearer(&[
            ("Content-Type", "application/json"),
            ("Ce-Specversion", "1.0"),
            ("Ce-Id", "7f1c2c1e-0b7a-4a51-9b0e-3f5d1c2a4b6e"),
            ("Ce-Source", "zotregistry.dev"),
            ("Ce-Type", kind),
        ])
    };
    let change = image_change("mirror.internal:5000", "team-a/podinfo");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("zot:{}", key()))
    );
    let wrong_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("zot:wrong")
    );
    let with_auth = |auth: &str| {
        h(&[
            ("Ce-Specversion", "1.0"),
            ("Ce-Type", "zotregistry.image.updated"),
            ("Authorization", auth),
        ])
    };
    let cases = vec![
        Case {
            name: "image updated",
            headers: event("zotregistry.image.updated"),
            body: updated.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![change],
        },
        Case {
            name: "image updated, Basic auth",
            headers: with_auth(&basic),
            body: updated.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![change],
        },
        Case {
            name: "update by digest",
            headers: event("zotregistry.image.updated"),
            body: include_bytes!("fixtures/zot/image_updated_by_digest.json").to_vec(),
            status: 200,
            reply: ignored("update by digest"),
            notified: vec![],
        },
        Case {
            name: "image deleted",
            headers: event("zotregistry.image.deleted"),
            body: include_bytes!("fixtures/zot/image_deleted.json").to_vec(),
            status: 200,
            reply: ignored("type zotregistry.image.deleted"),
            notified: vec![],
        },
        Case {
            name: "repository created",
            headers: event("zotregistry.repository.created"),
            body: include_bytes!("fixtures/zot/repository_created.json").to_vec(),
            status: 200,
            reply: ignored("type zotregistry.repository.created"),
            notified: vec![],
        },
        Case {
            name: "wrong Basic password",
            headers: with_auth(&wrong_basic),
            body: updated.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "no Authorization",
            headers: h(&[("Ce-Type", "zotregistry.image.updated")]),
            body: updated.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "malformed data",
            headers: event("zotregistry.image.updated"),
            body: b"{\"name\":".to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
        Case {
            name: "no event type in headers or body",
            headers: bearer(&[]),
            body: updated.to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
    ];
    table("Zot", KEY, Some("mirror.internal:5000"), cases);
}

#[test]
fn acr_table() {
    let push = include_bytes!("fixtures/acr/push.json");
    let json = || bearer(&[("Content-Type", "application/json")]);
    let cases = vec![
        Case {
            name: "push",
            headers: json(),
            body: push.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![image_change("acmeprod.azurecr.io", "team-a/podinfo")],
        },
        Case {
            name: "ping",
            headers: json(),
            body: include_bytes!("fixtures/acr/ping.json").to_vec(),
            status: 200,
            reply: Some("Pong"),
            notified: vec![],
        },
        Case {
            name: "delete",
            headers: json(),
            body: include_bytes!("fixtures/acr/delete.json").to_vec(),
            status: 200,
            reply: ignored("action delete"),
            notified: vec![],
        },
        Case {
            name: "chart push",
            headers: json(),
            body: include_bytes!("fixtures/acr/chart_push.json").to_vec(),
            status: 200,
            reply: ignored("action chart_push"),
            notified: vec![],
        },
        Case {
            name: "the URL alone",
            headers: h(&[("Content-Type", "application/json")]),
            body: push.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "action of the wrong type",
            headers: json(),
            body: br#"{"action":7}"#.to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
    ];
    table("AzureContainerRegistry", KEY, None, cases);
}

#[test]
fn artifactory_table() {
    let pushed = include_bytes!("fixtures/artifactory/docker_pushed.json");
    let auth = |value: &str| {
        h(&[
            ("Content-Type", "application/json"),
            ("X-JFrog-Event-Auth", value),
        ])
    };
    let change = image_change("acme.jfrog.io", "acme/podinfo");
    let mac = hmac_hex("sha256", KEY, pushed);
    let cases = vec![
        Case {
            name: "pushed, the key as the secret",
            headers: auth(key()),
            body: pushed.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![change],
        },
        Case {
            name: "pushed, signed payload",
            headers: auth(&mac),
            body: pushed.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![change],
        },
        Case {
            name: "docker deleted",
            headers: auth(key()),
            body: include_bytes!("fixtures/artifactory/docker_deleted.json").to_vec(),
            status: 200,
            reply: ignored("docker deleted"),
            notified: vec![],
        },
        Case {
            name: "artifact deployed",
            headers: auth(key()),
            body: include_bytes!("fixtures/artifactory/artifact_deployed.json").to_vec(),
            status: 200,
            reply: ignored("artifact deployed"),
            notified: vec![],
        },
        Case {
            name: "a MAC with another key",
            headers: auth(&hmac_hex("sha256", b"another key", pushed)),
            body: pushed.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "no X-JFrog-Event-Auth",
            headers: h(&[("Content-Type", "application/json")]),
            body: pushed.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "push without data",
            headers: auth(key()),
            body: br#"{"domain":"docker","event_type":"pushed"}"#.to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
    ];
    table("Artifactory", KEY, Some("acme.jfrog.io"), cases);
}

fn gitea(event: &str, body: &[u8]) -> Vec<(String, String)> {
    h(&[
        ("Content-Type", "application/json"),
        ("X-Gitea-Delivery", "c3f9a8b2-5d1e-4f7a-9b6c-2e8d0a1f3b4c"),
        ("X-Gitea-Event", event),
        ("X-Gitea-Signature", &hmac_hex("sha256", KEY, body)),
    ])
}

#[test]
fn gitea_package_table() {
    let created = include_bytes!("fixtures/gitea/package_container_created.json");
    let mut forgejo = gitea("package", created);
    forgejo.push((
        "X-Forgejo-Signature".into(),
        hmac_hex("sha256", KEY, created),
    ));
    let change = image_change("gitea.acme.example", "platform/podinfo");
    let mut cases = vec![
        Case {
            name: "container package created",
            headers: gitea("package", created),
            body: created.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![change],
        },
        Case {
            name: "the same from Forgejo",
            headers: forgejo,
            body: created.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![change],
        },
    ];
    for (name, body, reason) in [
        (
            "by digest",
            &include_bytes!("fixtures/gitea/package_container_by_digest.json")[..],
            "package version by digest",
        ),
        (
            "npm package",
            include_bytes!("fixtures/gitea/package_npm_created.json"),
            "npm package",
        ),
        (
            "package deleted",
            include_bytes!("fixtures/gitea/package_container_deleted.json"),
            "package deleted",
        ),
    ] {
        let headers = gitea("package", body);
        cases.push(Case {
            name,
            headers,
            body: body.to_vec(),
            status: 200,
            reply: ignored(reason),
            notified: vec![],
        });
    }
    let mut wrong = gitea("package", created);
    wrong.retain(|(n, _)| n != "X-Gitea-Signature");
    let unsigned = wrong.clone();
    wrong.push((
        "X-Gitea-Signature".into(),
        hmac_hex("sha256", b"another key", created),
    ));
    let no_package = br#"{"action":"created"}"#;
    cases.extend([
        Case {
            name: "wrong key",
            headers: wrong,
            body: created.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "unsigned",
            headers: unsigned,
            body: created.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "no package",
            headers: gitea("package", no_package),
            body: no_package.to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
    ]);
    table("Gitea", KEY, Some("gitea.acme.example"), cases);
}

#[test]
fn gitea_without_registry_host_ignores_package_events() {
    let created = include_bytes!("fixtures/gitea/package_container_created.json");
    let headers = gitea("package", created);
    let reply = ignored("container package, but the endpoint has no registryHost");
    let cases = vec![Case {
        name: "package",
        headers,
        body: created.to_vec(),
        status: 200,
        reply,
        notified: vec![],
    }];
    table("Gitea", KEY, None, cases);
}

fn github(event: &str, body: &[u8]) -> Vec<(String, String)> {
    let signature = format!("sha256={}", hmac_hex("sha256", KEY, body));
    h(&[
        ("Content-Type", "application/json"),
        ("X-GitHub-Delivery", "6c1e7b2a-9d3f-11ef-8a4b-0242ac120002"),
        ("X-GitHub-Event", event),
        ("X-Hub-Signature-256", &signature),
    ])
}

#[test]
fn ghcr_package_table() {
    let published = include_bytes!("fixtures/github/registry_package_published.json");
    let as_package = String::from_utf8_lossy(published)
        .replace("\"registry_package\":", "\"package\":")
        .into_bytes();
    let untagged = include_bytes!("fixtures/github/package_published_untagged.json");
    let npm = include_bytes!("fixtures/github/package_published_npm.json");
    let change = image_change("ghcr.io", "acme/podinfo");
    let mut forged = github("registry_package", published);
    forged.retain(|(n, _)| n != "X-Hub-Signature-256");
    forged.push((
        "X-Hub-Signature-256".into(),
        format!("sha256={}", hmac_hex("sha256", b"another key", published)),
    ));
    let cases = vec![
        Case {
            name: "registry_package published",
            headers: github("registry_package", published),
            body: published.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![change],
        },
        Case {
            name: "package published",
            headers: github("package", &as_package),
            body: as_package.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![change],
        },
        Case {
            name: "untagged version",
            headers: github("package", untagged),
            body: untagged.to_vec(),
            status: 200,
            reply: ignored("untagged package version"),
            notified: vec![],
        },
        Case {
            name: "npm package",
            headers: github("package", npm),
            body: npm.to_vec(),
            status: 200,
            reply: ignored("npm package"),
            notified: vec![],
        },
        Case {
            name: "wrong key",
            headers: forged,
            body: published.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "package of the wrong type",
            headers: github("package", br#"{"action":"published","package":7}"#),
            body: br#"{"action":"published","package":7}"#.to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
    ];
    table("GitHub", KEY, None, cases);
}

#[test]
fn harbor_cloudevents_table() {
    let pushed = include_bytes!("fixtures/harbor/cloudevents_artifact_pushed.json");
    let ce = |auth: &[u8]| {
        h(&[
            ("Content-Type", "application/cloudevents+json"),
            ("Authorization", &String::from_utf8_lossy(auth)),
        ])
    };
    let cases = vec![
        Case {
            name: "artifact pushed",
            headers: ce(KEY),
            body: pushed.to_vec(),
            status: 200,
            reply: Some("OK"),
            notified: vec![image_change("harbor.acme.example", "platform/podinfo")],
        },
        Case {
            name: "artifact pulled",
            headers: ce(KEY),
            body: include_bytes!("fixtures/harbor/cloudevents_artifact_pulled.json").to_vec(),
            status: 200,
            reply: ignored("type harbor.artifact.pulled"),
            notified: vec![],
        },
        Case {
            name: "wrong key",
            headers: ce(b"wrong"),
            body: pushed.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "no resources",
            headers: ce(KEY),
            body:
                br#"{"specversion":"1.0","type":"harbor.artifact.pushed","data":{"resources":[]}}"#
                    .to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
    ];
    table("Harbor", KEY, None, cases);
}
