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

fn table(source: &'static str, registry_host: Option<&'static str>, cases: Vec<Case>) {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let mut ep = Ep::new(source, KEY);
    ep.registry_host = registry_host;
    let (server, _) = start(&[ep], &fluxd.api(), test_options());
    run_cases(
        source,
        &server,
        &route_of(KEY, registry_host.unwrap_or("")),
        &fluxd,
        cases,
    );
    server.stop();
}

const EVENTS_V1: &str = "application/vnd.docker.distribution.events.v1+json";

#[test]
fn distribution_table() {
    let tag = include_bytes!("fixtures/distribution/tag_push.json");
    let headers = || bearer(&[("Content-Type", EVENTS_V1)]);
    let podinfo = image_change("mirror.internal:5000", "team-a/podinfo");
    let mut cases = vec![
        row("tag push", headers(), tag, 200, Some("OK"), vec![podinfo]),
        row(
            "fifty events with duplicates: one change per image",
            headers(),
            include_bytes!("fixtures/distribution/fifty_events.json"),
            200,
            Some("OK"),
            vec![podinfo, image_change("mirror.internal:5000", "team-b/api")],
        ),
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
        cases.push(row(name, headers(), body, 200, reply, vec![]));
    }
    cases.extend([
        row(
            "no Authorization",
            h(&[("Content-Type", EVENTS_V1)]),
            tag,
            401,
            UNAUTHORIZED,
            vec![],
        ),
        row(
            "the key without Bearer",
            h(&[("Authorization", key())]),
            tag,
            401,
            UNAUTHORIZED,
            vec![],
        ),
        row(
            "malformed JSON",
            headers(),
            b"{\"events\":[",
            400,
            BAD,
            vec![],
        ),
        row(
            "events not a list",
            headers(),
            br#"{"events":{}}"#,
            400,
            BAD,
            vec![],
        ),
    ]);
    table("Distribution", None, cases);
}

#[test]
fn distribution_registry_host_overrides_the_request_host() {
    let tag = include_bytes!("fixtures/distribution/tag_push.json");
    let change = image_change("registry.example.com", "team-a/podinfo");
    let cases = vec![row("tag push", bearer(&[]), tag, 200, None, vec![change])];
    table("Distribution", Some("registry.example.com"), cases);
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
        row(
            "image updated",
            event("zotregistry.image.updated"),
            updated,
            200,
            Some("OK"),
            vec![change],
        ),
        row(
            "image updated, Basic auth",
            with_auth(&basic),
            updated,
            200,
            Some("OK"),
            vec![change],
        ),
        row(
            "update by digest",
            event("zotregistry.image.updated"),
            include_bytes!("fixtures/zot/image_updated_by_digest.json"),
            200,
            ignored("update by digest"),
            vec![],
        ),
        row(
            "image deleted",
            event("zotregistry.image.deleted"),
            include_bytes!("fixtures/zot/image_deleted.json"),
            200,
            ignored("type zotregistry.image.deleted"),
            vec![],
        ),
        row(
            "repository created",
            event("zotregistry.repository.created"),
            include_bytes!("fixtures/zot/repository_created.json"),
            200,
            ignored("type zotregistry.repository.created"),
            vec![],
        ),
        row(
            "wrong Basic password",
            with_auth(&wrong_basic),
            updated,
            401,
            UNAUTHORIZED,
            vec![],
        ),
        row(
            "no Authorization",
            h(&[("Ce-Type", "zotregistry.image.updated")]),
            updated,
            401,
            UNAUTHORIZED,
            vec![],
        ),
        row(
            "malformed data",
            event("zotregistry.image.updated"),
            b"{\"name\":",
            400,
            BAD,
            vec![],
        ),
        row(
            "no event type in headers or body",
            bearer(&[]),
            updated,
            400,
            BAD,
            vec![],
        ),
    ];
    table("Zot", Some("mirror.internal:5000"), cases);
}

#[test]
fn acr_table() {
    let push = include_bytes!("fixtures/acr/push.json");
    let json = || bearer(&[("Content-Type", "application/json")]);
    let cases = vec![
        row(
            "push",
            json(),
            push,
            200,
            Some("OK"),
            vec![image_change("acmeprod.azurecr.io", "team-a/podinfo")],
        ),
        row(
            "ping",
            json(),
            include_bytes!("fixtures/acr/ping.json"),
            200,
            Some("Pong"),
            vec![],
        ),
        row(
            "delete",
            json(),
            include_bytes!("fixtures/acr/delete.json"),
            200,
            ignored("action delete"),
            vec![],
        ),
        row(
            "chart push",
            json(),
            include_bytes!("fixtures/acr/chart_push.json"),
            200,
            ignored("action chart_push"),
            vec![],
        ),
        row(
            "the URL alone",
            h(&[("Content-Type", "application/json")]),
            push,
            401,
            UNAUTHORIZED,
            vec![],
        ),
        row(
            "action of the wrong type",
            json(),
            br#"{"action":7}"#,
            400,
            BAD,
            vec![],
        ),
    ];
    table("AzureContainerRegistry", None, cases);
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
        row(
            "pushed, the key as the secret",
            auth(key()),
            pushed,
            200,
            Some("OK"),
            vec![change],
        ),
        row(
            "pushed, signed payload",
            auth(&mac),
            pushed,
            200,
            Some("OK"),
            vec![change],
        ),
        row(
            "docker deleted",
            auth(key()),
            include_bytes!("fixtures/artifactory/docker_deleted.json"),
            200,
            ignored("docker deleted"),
            vec![],
        ),
        row(
            "artifact deployed",
            auth(key()),
            include_bytes!("fixtures/artifactory/artifact_deployed.json"),
            200,
            ignored("artifact deployed"),
            vec![],
        ),
        row(
            "a MAC with another key",
            auth(&hmac_hex("sha256", b"another key", pushed)),
            pushed,
            401,
            UNAUTHORIZED,
            vec![],
        ),
        row(
            "no X-JFrog-Event-Auth",
            h(&[("Content-Type", "application/json")]),
            pushed,
            401,
            UNAUTHORIZED,
            vec![],
        ),
        row(
            "push without data",
            auth(key()),
            br#"{"domain":"docker","event_type":"pushed"}"#,
            400,
            BAD,
            vec![],
        ),
    ];
    table("Artifactory", Some("acme.jfrog.io"), cases);
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
        row(
            "container package created",
            gitea("package", created),
            created,
            200,
            Some("OK"),
            vec![change],
        ),
        row(
            "the same from Forgejo",
            forgejo,
            created,
            200,
            Some("OK"),
            vec![change],
        ),
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
        cases.push(row(name, headers, body, 200, ignored(reason), vec![]));
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
        row("wrong key", wrong, created, 401, UNAUTHORIZED, vec![]),
        row("unsigned", unsigned, created, 401, UNAUTHORIZED, vec![]),
        row(
            "no package",
            gitea("package", no_package),
            no_package,
            400,
            BAD,
            vec![],
        ),
    ]);
    table("Gitea", Some("gitea.acme.example"), cases);
}

#[test]
fn gitea_without_registry_host_ignores_package_events() {
    let created = include_bytes!("fixtures/gitea/package_container_created.json");
    let headers = gitea("package", created);
    let reply = ignored("container package, but the endpoint has no registryHost");
    let cases = vec![row("package", headers, created, 200, reply, vec![])];
    table("Gitea", None, cases);
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
        row(
            "registry_package published",
            github("registry_package", published),
            published,
            200,
            Some("OK"),
            vec![change],
        ),
        row(
            "package published",
            github("package", &as_package),
            &as_package,
            200,
            Some("OK"),
            vec![change],
        ),
        row(
            "untagged version",
            github("package", untagged),
            untagged,
            200,
            ignored("untagged package version"),
            vec![],
        ),
        row(
            "npm package",
            github("package", npm),
            npm,
            200,
            ignored("npm package"),
            vec![],
        ),
        row("wrong key", forged, published, 401, UNAUTHORIZED, vec![]),
        row(
            "package of the wrong type",
            github("package", br#"{"action":"published","package":7}"#),
            br#"{"action":"published","package":7}"#,
            400,
            BAD,
            vec![],
        ),
    ];
    table("GitHub", None, cases);
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
        row(
            "artifact pushed",
            ce(KEY),
            pushed,
            200,
            Some("OK"),
            vec![image_change("harbor.acme.example", "platform/podinfo")],
        ),
        row(
            "artifact pulled",
            ce(KEY),
            include_bytes!("fixtures/harbor/cloudevents_artifact_pulled.json"),
            200,
            ignored("type harbor.artifact.pulled"),
            vec![],
        ),
        row("wrong key", ce(b"wrong"), pushed, 401, UNAUTHORIZED, vec![]),
        row(
            "no resources",
            ce(KEY),
            br#"{"specversion":"1.0","type":"harbor.artifact.pushed","data":{"resources":[]}}"#,
            400,
            BAD,
            vec![],
        ),
    ];
    table("Harbor", None, cases);
}
