//! No key, no expected MAC and no full route digest ever leaves the request path: not in a reply,
//! not on stdout, not on stderr, for good and bad deliveries of every source.

mod common;

use std::collections::BTreeMap;

use common::*;
use flux_recv::sources::{RegistryHost, Source};

fn key_for(source: &str) -> Vec<u8> {
    format!("SECRET-{source}-{}", "k".repeat(24)).into_bytes()
}

/// A registry host for the sources whose payloads name none (their config needs one).
fn host_for(source: Source) -> Option<&'static str> {
    (source.registry_host() == RegistryHost::Required).then_some("registry.example.com")
}

/// A delivery of `source` signed (or tokened) with `key`: the provider's own sample.
fn headers(source: Source, key: &[u8], body: &[u8]) -> Vec<(String, String)> {
    source.sample(key, body).headers
}

#[test]
fn no_secret_in_replies_or_logs() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let endpoints: Vec<Ep> = Source::ALL
        .iter()
        .map(|source| Ep {
            source: source.name(),
            key: key_for(source.name()),
            registry_host: host_for(*source),
        })
        .collect();
    let config = config_file(&endpoints, &fluxd.api());
    let server = Proc::start(&["--config", &config.display().to_string()]);
    let startup_lines = server.stderr.lock().unwrap().len();

    let mut secrets: Vec<String> = Vec::new();
    let mut routes: Vec<String> = Vec::new();
    let mut statuses: BTreeMap<String, (u16, u16, u16, bool)> = BTreeMap::new();
    let mut bodies = String::new();
    for source in Source::ALL.iter().copied() {
        let body = source.sample_body();
        let key = key_for(source.name());
        let route = route_of(&key, host_for(source).unwrap_or(""));
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
        // A provider whose sample depends on the key checks it: a wrong key must be refused.
        let checks_key = headers(source, &key, body) != headers(source, b"other", body);
        statuses.insert(
            source.name().to_owned(),
            (good.status, bad.status, get_reply.status, checks_key),
        );
        for reply in [good, bad, get_reply] {
            bodies.push_str(&reply.body);
            for (n, v) in &reply.headers {
                bodies.push_str(&format!("{n}: {v}\n"));
            }
        }
    }
    // 4 requests per source: wait for the last request's line.
    let requests = 4 * Source::ALL.len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.stderr.lock().unwrap().len() < startup_lines + requests
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    // Deliveries were really accepted and refused (else this test proves nothing).
    for (source, (good, bad, get, checks_key)) in &statuses {
        assert_eq!(*good, 200, "{source}");
        if *checks_key {
            assert_eq!(*bad, 401, "{source}");
        }
        assert_eq!(*get, 405, "{source}");
    }
    let all: Vec<String> = server.stderr.lock().unwrap().clone();
    assert!(
        all.len() >= startup_lines + requests,
        "one log line per request: {all:?}"
    );
    // The documented exception: the start-up (and reload) `endpoint` lines print each route in
    // full, as the Go original did, so operators can copy it. Nothing else may show one.
    let (endpoint_lines, other_lines): (Vec<&String>, Vec<&String>) =
        all.iter().partition(|l| l.contains("msg=endpoint "));
    assert_eq!(endpoint_lines.len(), Source::ALL.len());
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
    // Where the route is the only credential (URL-only sources), the endpoint line shows its
    // 8-hex prefix and says where to get it whole; routes of sources that verify a signature or
    // token stay whole, as the Go original printed them.
    for (source, route) in Source::ALL.iter().zip(&routes) {
        let line = endpoint_lines
            .iter()
            .find(|l| l.contains(&format!("source={} ", source.name())))
            .unwrap_or_else(|| panic!("no endpoint line for {source}"));
        let url_only = matches!(
            source,
            Source::DockerHub
                | Source::Quay
                | Source::BitbucketCloud
                | Source::GoogleContainerRegistry
        );
        assert_eq!(line.contains(route.as_str()), !url_only, "{line}");
        assert!(line.contains(&route[..8]), "{line}");
        assert_eq!(line.contains("flux-recv endpoints"), url_only, "{line}");
    }
    // And no 40+ hex run at all (a full digest or a MAC) anywhere else in the logs.
    let hex_run = logs
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(hex_run < 40, "a long hex run in the logs: {logs}");
}
