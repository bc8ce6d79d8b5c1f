//! The image sources end to end: real server, recording fake fluxd, a table per source, and GCR
//! against a stand-in tokeninfo server on loopback.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;

const KEY: &[u8] = b"image-integration-key-0123456789";

const DOCKERHUB: &[u8] = include_bytes!("fixtures/dockerhub/push.json");
const QUAY_LIST: &[u8] = include_bytes!("fixtures/quay/push_list_tags.json");
const QUAY_MAP: &[u8] = include_bytes!("fixtures/quay/push_map_tags.json");
const HARBOR_V1: &[u8] = include_bytes!("fixtures/harbor/push_image_v1.json");
const HARBOR_V2: &[u8] = include_bytes!("fixtures/harbor/push_artifact_v2.json");
const HARBOR_DELETE: &[u8] = include_bytes!("fixtures/harbor/delete_artifact_v2.json");
const HARBOR_EMPTY: &[u8] = include_bytes!("fixtures/harbor/push_artifact_no_resources.json");
const NEXUS_DOCKER: &[u8] = include_bytes!("fixtures/nexus/component_created_docker.json");
const NEXUS_ASSET: &[u8] = include_bytes!("fixtures/nexus/asset_created.json");
const NEXUS_MAVEN: &[u8] = include_bytes!("fixtures/nexus/component_created_maven.json");
const GCR_TAG: &[u8] = include_bytes!("fixtures/gcr/insert_tag.json");
const GCR_DIGEST: &[u8] = include_bytes!("fixtures/gcr/insert_digest_only.json");
const GCR_DELETE: &[u8] = include_bytes!("fixtures/gcr/delete.json");
const GCR_TRAILING: &[u8] = include_bytes!("fixtures/gcr/insert_lowercase_trailing_brace.json");
const GCR_BAD: &[u8] = include_bytes!("fixtures/gcr/bad_base64.json");

#[test]
fn dockerhub_table() {
    table(
        "DockerHub",
        KEY,
        None,
        vec![
            Case {
                name: "push",
                headers: h(&[("Content-Type", "application/json")]),
                body: DOCKERHUB.to_vec(),
                status: 200,
                reply: None,
                notified: vec![
                    r#"{"Kind":"image","Source":{"Name":{"Domain":"","Image":"acme/podinfo"}}}"#,
                ],
            },
            Case {
                name: "trailing bytes after the JSON",
                headers: vec![],
                body: [DOCKERHUB, b"}"].concat(),
                status: 200,
                reply: None,
                notified: vec![
                    r#"{"Kind":"image","Source":{"Name":{"Domain":"","Image":"acme/podinfo"}}}"#,
                ],
            },
            Case {
                name: "malformed JSON",
                headers: vec![],
                body: b"{\"repository\":".to_vec(),
                status: 400,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "unparsable image",
                headers: vec![],
                body: br#"{"repository":{"repo_name":"a:b:c"}}"#.to_vec(),
                status: 400,
                reply: None,
                notified: vec![],
            },
        ],
    );
}

#[test]
fn quay_table() {
    let quay = r#"{"Kind":"image","Source":{"Name":{"Domain":"quay.io","Image":"acme/podinfo"}}}"#;
    table(
        "Quay",
        KEY,
        None,
        vec![
            Case {
                name: "push, tags as a list",
                headers: vec![],
                body: QUAY_LIST.to_vec(),
                status: 200,
                reply: None,
                notified: vec![quay],
            },
            Case {
                name: "push, tags as a map",
                headers: vec![],
                body: QUAY_MAP.to_vec(),
                status: 200,
                reply: None,
                notified: vec![quay],
            },
            Case {
                name: "missing docker_url",
                headers: vec![],
                body: br#"{"repository":"acme/podinfo"}"#.to_vec(),
                status: 400,
                reply: None,
                notified: vec![],
            },
        ],
    );
}

#[test]
fn harbor_table() {
    let auth = std::str::from_utf8(KEY).unwrap();
    table(
        "Harbor",
        KEY,
        None,
        vec![
            Case {
                name: "v1 pushImage",
                headers: h(&[("Authorization", auth)]),
                body: HARBOR_V1.to_vec(),
                status: 200,
                reply: None,
                notified: vec![
                    r#"{"Kind":"image","Source":{"Name":{"Domain":"demo.goharbor.io","Image":"test123/alpine"}}}"#,
                ],
            },
            Case {
                name: "v2 PUSH_ARTIFACT",
                headers: h(&[("Authorization", auth)]),
                body: HARBOR_V2.to_vec(),
                status: 200,
                reply: None,
                notified: vec![
                    r#"{"Kind":"image","Source":{"Name":{"Domain":"harbor.acme.example","Image":"platform/podinfo"}}}"#,
                ],
            },
            Case {
                name: "wrong Authorization",
                headers: h(&[("Authorization", "Basic Zm9vOmJhcg==")]),
                body: HARBOR_V2.to_vec(),
                status: 401,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "missing Authorization",
                headers: vec![],
                body: HARBOR_V2.to_vec(),
                status: 401,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "test button: empty POST, no Authorization",
                headers: vec![],
                body: vec![],
                status: 200,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "other type",
                headers: h(&[("Authorization", auth)]),
                body: HARBOR_DELETE.to_vec(),
                status: 200,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "empty resources",
                headers: h(&[("Authorization", auth)]),
                body: HARBOR_EMPTY.to_vec(),
                status: 400,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "malformed JSON",
                headers: h(&[("Authorization", auth)]),
                body: b"{\"type\":".to_vec(),
                status: 400,
                reply: None,
                notified: vec![],
            },
        ],
    );
}

fn nexus(id: &str, sig_key: Option<&[u8]>, body: &[u8]) -> Vec<(String, String)> {
    let mut headers = h(&[
        ("X-Nexus-Webhook-Id", id),
        (
            "X-Nexus-Webhook-Delivery",
            "7f0e6a9c-8d3b-4c1a-9e2f-5b6a7c8d9e0f",
        ),
    ]);
    if let Some(key) = sig_key {
        headers.push((
            "X-Nexus-Webhook-Signature".into(),
            hmac_hex("sha1", key, body),
        ));
    }
    headers
}

#[test]
fn nexus_table() {
    let component = "rm:repository:component";
    table(
        "Nexus",
        KEY,
        Some("nexus.acme.example:8443/"),
        vec![
            Case {
                name: "docker component created",
                headers: nexus(component, Some(KEY), NEXUS_DOCKER),
                body: NEXUS_DOCKER.to_vec(),
                status: 200,
                reply: None,
                notified: vec![
                    r#"{"Kind":"image","Source":{"Name":{"Domain":"nexus.acme.example:8443","Image":"acme/podinfo"}}}"#,
                ],
            },
            Case {
                name: "bad signature",
                headers: nexus(component, Some(b"wrong"), NEXUS_DOCKER),
                body: NEXUS_DOCKER.to_vec(),
                status: 401,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "missing signature",
                headers: nexus(component, None, NEXUS_DOCKER),
                body: NEXUS_DOCKER.to_vec(),
                status: 401,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "asset event ignored",
                headers: nexus("rm:repository:asset", Some(KEY), NEXUS_ASSET),
                body: NEXUS_ASSET.to_vec(),
                status: 200,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "maven component ignored",
                headers: nexus(component, Some(KEY), NEXUS_MAVEN),
                body: NEXUS_MAVEN.to_vec(),
                status: 200,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "unknown webhook id",
                headers: nexus("rm:audit", Some(KEY), NEXUS_DOCKER),
                body: NEXUS_DOCKER.to_vec(),
                status: 400,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "malformed JSON",
                headers: nexus(component, Some(KEY), b"{"),
                body: b"{".to_vec(),
                status: 400,
                reply: None,
                notified: vec![],
            },
        ],
    );
}

#[test]
fn gcr_table_without_authentication() {
    table(
        "GoogleContainerRegistry",
        KEY,
        None,
        vec![
            Case {
                name: "insert with tag",
                headers: vec![],
                body: GCR_TAG.to_vec(),
                status: 200,
                reply: None,
                notified: vec![
                    r#"{"Kind":"image","Source":{"Name":{"Domain":"us.gcr.io","Image":"acme-prod/podinfo"}}}"#,
                ],
            },
            Case {
                name: "insert with digest only",
                headers: vec![],
                body: GCR_DIGEST.to_vec(),
                status: 200,
                reply: None,
                notified: vec![
                    r#"{"Kind":"image","Source":{"Name":{"Domain":"us-docker.pkg.dev","Image":"acme-prod/images/podinfo"}}}"#,
                ],
            },
            Case {
                name: "lowercase insert with a stray trailing brace",
                headers: vec![],
                body: GCR_TRAILING.to_vec(),
                status: 200,
                reply: None,
                notified: vec![
                    r#"{"Kind":"image","Source":{"Name":{"Domain":"gcr.io","Image":"acme-prod/hello"}}}"#,
                ],
            },
            Case {
                name: "delete ignored",
                headers: vec![],
                body: GCR_DELETE.to_vec(),
                status: 200,
                reply: None,
                notified: vec![],
            },
            Case {
                name: "bad base64",
                headers: vec![],
                body: GCR_BAD.to_vec(),
                status: 400,
                reply: None,
                notified: vec![],
            },
        ],
    );
}

fn gcr_server(token_info_url: &str, api: &str) -> flux_recv::app::Running {
    let yaml = format!(
        "fluxRecvVersion: 1\napi: {api}\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: {GCR_AUDIENCE}\n    email: {GCR_EMAIL}\n    tokenInfoURL: {token_info_url}\n"
    );
    let config = config_from_yaml(&yaml, &[("gcr.key", KEY)]);
    start_config(&config, test_options())
}

#[test]
fn gcr_with_audience_checks_the_token_at_tokeninfo() {
    let tokeninfo = FakeFluxd::start(Behaviour::Answer(tokeninfo_stand_in));
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let server = gcr_server(
        &format!("http://{}/tokeninfo", tokeninfo.addr),
        &fluxd.api(),
    );
    let route = route_of(KEY, "");
    let google = "https://accounts.google.com";
    let bearer = |token: &str| format!("Bearer {token}");
    // Made once: a token made a second later would differ in its expiry, and so in the cache.
    let good = gcr_token("good");
    let cases = [
        (Some(bearer(&good)), 200, true),
        // Cached: no second call.
        (Some(format!("bearer {good}")), 200, false),
        (Some(bearer(&gcr_token("wrong-aud"))), 401, true),
        (Some(bearer(&gcr_token("wrong-email"))), 401, true),
        (Some(bearer(&gcr_token("unverified"))), 401, true),
        (Some(bearer(&gcr_token("not-google"))), 401, true),
        (Some(bearer(&gcr_token("forged"))), 401, true),
        // Refused without a call: not a JWT, another audience or issuer, expired.
        (Some(bearer("forged")), 401, false),
        (
            Some(bearer(&google_jwt(
                "good",
                "https://elsewhere.example",
                google,
                3600,
            ))),
            401,
            false,
        ),
        (
            Some(bearer(&google_jwt(
                "good",
                GCR_AUDIENCE,
                "https://evil.example",
                3600,
            ))),
            401,
            false,
        ),
        (
            Some(bearer(&google_jwt("good", GCR_AUDIENCE, google, -60))),
            401,
            false,
        ),
        (Some(format!("Basic {}", gcr_token("good"))), 401, false),
        (Some("Bearer ".to_owned()), 401, false),
        (None, 401, false),
    ];
    for (token, status, asked) in &cases {
        fluxd.clear();
        let calls = tokeninfo.requests().len();
        let headers: Vec<(&str, &str)> = token
            .as_deref()
            .map(|t| ("Authorization", t))
            .into_iter()
            .collect();
        let reply = post(server.addr(), &route, &headers, GCR_TAG);
        assert_eq!(reply.status, *status, "{token:?}: {reply:?}");
        assert_eq!(
            fluxd.requests().len(),
            usize::from(*status == 200),
            "{token:?}"
        );
        assert_eq!(
            tokeninfo.requests().len() - calls,
            usize::from(*asked),
            "{token:?}"
        );
    }
    // The token went out as id_token, on a GET.
    let first = &tokeninfo.requests()[0];
    assert_eq!(first.method, "GET");
    assert_eq!(first.path, format!("/tokeninfo?id_token={good}"));
    server.stop();
}

#[test]
fn gcr_tokeninfo_down_is_401_at_once() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let dead = dead_api();
    let server = gcr_server(&dead, &fluxd.api());
    let started = Instant::now();
    let reply = post(
        server.addr(),
        &route_of(KEY, ""),
        &[("Authorization", &format!("Bearer {}", gcr_token("good")))],
        GCR_TAG,
    );
    assert_eq!(reply.status, 401);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(fluxd.requests().is_empty());
    server.stop();
}

#[test]
fn gcr_tokeninfo_slow_is_401_within_its_timeout() {
    let tokeninfo = FakeFluxd::start(Behaviour::Answer(tokeninfo_stand_in));
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let server = gcr_server(
        &format!("http://{}/tokeninfo", tokeninfo.addr),
        &fluxd.api(),
    );
    let started = Instant::now();
    // The read timeout of the test server (1 s) covers only the request; the handler's tokeninfo
    // budget is its own 5 s.
    let reply = post(
        server.addr(),
        &route_of(KEY, ""),
        &[(
            "Authorization",
            &format!("Bearer {}", gcr_token("too-slow")),
        )],
        GCR_TAG,
    );
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(elapsed >= Duration::from_millis(4500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    assert!(fluxd.requests().is_empty());
    server.stop();
}

#[test]
fn image_sources_report_fluxd_failures() {
    let dead = dead_api();
    let (server, _) = start(&[Ep::new("Quay", KEY)], &dead, test_options());
    let reply = post(server.addr(), &route_of(KEY, ""), &[], QUAY_LIST);
    assert_eq!(reply.status, 502);
    server.stop();
    let slow = FakeFluxd::start(Behaviour::Slow(Duration::from_secs(3)));
    let (server, _) = start(&[Ep::new("DockerHub", KEY)], &slow.api(), test_options());
    let reply = post(server.addr(), &route_of(KEY, ""), &[], DOCKERHUB);
    assert_eq!(reply.status, 504);
    server.stop();
}

#[test]
fn gcr_data_is_standard_base64_as_pubsub_sends_it() {
    // An envelope built here, end to end, with padding and a tag.
    let inner = r#"{"action":"INSERT","tag":"europe-docker.pkg.dev/acme/apps/api:2.0"}"#;
    let data = base64::engine::general_purpose::STANDARD.encode(inner);
    let body = format!(
        r#"{{"message":{{"data":"{data}","messageId":"42","publishTime":"2026-11-29T17:40:51Z"}},"subscription":"projects/acme/subscriptions/s"}}"#
    );
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let (server, _) = start(
        &[Ep::new("GoogleContainerRegistry", KEY)],
        &fluxd.api(),
        test_options(),
    );
    let reply = post(server.addr(), &route_of(KEY, ""), &[], body.as_bytes());
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        fluxd.bodies(),
        vec![
            r#"{"Kind":"image","Source":{"Name":{"Domain":"europe-docker.pkg.dev","Image":"acme/apps/api"}}}"#
        ]
    );
    server.stop();
}
