//! No key, no expected MAC and no full route digest ever leaves the request path: not in a reply,
//! not on stdout, not on stderr, for good and bad deliveries of every source.

mod common;

use std::collections::BTreeMap;

use common::*;

const FIXTURES: [(&str, &[u8]); 9] = [
    ("GitHub", include_bytes!("fixtures/github/push.json")),
    ("GitLab", include_bytes!("fixtures/gitlab/push.json")),
    (
        "BitbucketCloud",
        include_bytes!("fixtures/bitbucket_cloud/push.json"),
    ),
    (
        "BitbucketServer",
        include_bytes!("fixtures/bitbucket_server/refs_changed.json"),
    ),
    ("DockerHub", include_bytes!("fixtures/dockerhub/push.json")),
    ("Quay", include_bytes!("fixtures/quay/push_list_tags.json")),
    (
        "Harbor",
        include_bytes!("fixtures/harbor/push_artifact_v2.json"),
    ),
    (
        "Nexus",
        include_bytes!("fixtures/nexus/component_created_docker.json"),
    ),
    (
        "GoogleContainerRegistry",
        include_bytes!("fixtures/gcr/insert_tag.json"),
    ),
];

fn key_for(source: &str) -> Vec<u8> {
    format!("SECRET-{source}-{}", "k".repeat(24)).into_bytes()
}

/// Headers for a delivery of `source` signed (or tokened) with `key`.
fn headers(source: &str, key: &[u8], body: &[u8]) -> Vec<(String, String)> {
    let sha256 = format!("sha256={}", hmac_hex("sha256", key, body));
    let key = String::from_utf8(key.to_vec()).unwrap();
    let pairs: Vec<(&str, String)> = match source {
        "GitHub" => vec![
            ("X-GitHub-Event", "push".into()),
            ("Content-Type", "application/json".into()),
            ("X-Hub-Signature-256", sha256),
        ],
        "GitLab" => vec![
            ("X-Gitlab-Event", "Push Hook".into()),
            ("X-Gitlab-Token", key),
        ],
        "BitbucketCloud" => vec![
            ("X-Event-Key", "repo:push".into()),
            ("X-Hub-Signature", sha256),
        ],
        "BitbucketServer" => vec![
            ("X-Event-Key", "repo:refs_changed".into()),
            ("X-Hub-Signature", sha256),
        ],
        "Harbor" => vec![("Authorization", key)],
        "Nexus" => vec![
            ("X-Nexus-Webhook-Id", "rm:repository:component".into()),
            (
                "X-Nexus-Webhook-Signature",
                hmac_hex("sha1", key.as_bytes(), body),
            ),
        ],
        _ => vec![],
    };
    pairs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
}

#[test]
fn no_secret_in_replies_or_logs() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let endpoints: Vec<Ep> = FIXTURES
        .iter()
        .map(|(source, _)| Ep {
            source,
            key: key_for(source),
            registry_host: None,
        })
        .collect();
    let config = config_file(&endpoints, &fluxd.api());
    let server = Proc::start(&["--config", &config.display().to_string()]);
    let startup_lines = server.stderr.lock().unwrap().len();

    let mut secrets: Vec<String> = Vec::new();
    let mut routes: Vec<String> = Vec::new();
    let mut statuses: BTreeMap<String, (u16, u16, u16)> = BTreeMap::new();
    let mut bodies = String::new();
    for (source, body) in FIXTURES {
        let key = key_for(source);
        let route = route_of(&key, "");
        secrets.push(String::from_utf8(key.clone()).unwrap());
        secrets.push(route["/hook/".len()..].to_owned());
        routes.push(route["/hook/".len()..].to_owned());
        for algorithm in ["sha1", "sha256", "sha512"] {
            secrets.push(hmac_hex(algorithm, &key, body));
        }
        let send = |hs: &[(String, String)], path: &str| {
            let hs: Vec<(&str, &str)> = hs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            post(server.addr, path, &hs, body)
        };
        let good = send(&headers(source, &key, body), &route);
        let bad = send(&headers(source, b"a wrong key 0123456789", body), &route);
        // Also ask the right route with the wrong method, and a near-miss route.
        let get_reply = get(server.addr, &route);
        let near = format!("{}0", &route[..route.len() - 1]);
        let _ = send(&headers(source, &key, body), &near);
        statuses.insert(
            source.to_owned(),
            (good.status, bad.status, get_reply.status),
        );
        for reply in [good, bad, get_reply] {
            bodies.push_str(&reply.body);
            for (n, v) in &reply.headers {
                bodies.push_str(&format!("{n}: {v}\n"));
            }
        }
    }
    // 9 sources x 4 requests: wait for the last request's line.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.stderr.lock().unwrap().len() < startup_lines + 36
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // Deliveries were really accepted and refused (else this test proves nothing).
    for (source, (good, bad, get)) in &statuses {
        assert_eq!(*good, 200, "{source}");
        let url_only = [
            "DockerHub",
            "Quay",
            "GoogleContainerRegistry",
            "BitbucketCloud",
        ];
        if !url_only.contains(&source.as_str()) {
            assert_eq!(*bad, 401, "{source}");
        }
        assert_eq!(*get, 405, "{source}");
    }
    let all: Vec<String> = server.stderr.lock().unwrap().clone();
    assert!(
        all.len() >= startup_lines + 36,
        "one log line per request: {all:?}"
    );
    // The documented exception: the start-up (and reload) `endpoint` lines print each route in
    // full, as the Go original did, so operators can copy it. Nothing else may show one.
    let (endpoint_lines, other_lines): (Vec<&String>, Vec<&String>) =
        all.iter().partition(|l| l.contains("msg=endpoint "));
    assert_eq!(endpoint_lines.len(), FIXTURES.len());
    let logs = other_lines
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let endpoint_logs = endpoint_lines
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let stdout = server.stdout.lock().unwrap().join("\n");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "stderr holds a secret: {secret}"
        );
        assert!(
            !stdout.contains(secret.as_str()),
            "stdout holds a secret: {secret}"
        );
        assert!(
            !bodies.contains(secret.as_str()),
            "a reply holds a secret: {secret}"
        );
        // Endpoint lines carry routes, never keys or MACs.
        if !routes.contains(secret) {
            assert!(
                !endpoint_logs.contains(secret.as_str()),
                "an endpoint line holds a key or MAC: {secret}"
            );
        }
    }
    // And no 40+ hex run at all (a full digest or a MAC) anywhere else in the logs.
    let hex_run = logs
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(hex_run < 40, "a long hex run in the logs: {logs}");
}
