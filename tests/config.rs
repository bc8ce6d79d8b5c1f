//! Config tables: name → YAML (+ key files) → loads, or fails with messages naming the field or
//! file. Every problem in a config is reported, not just the first.

mod common;

use std::path::Path;

use common::{temp_dir, write_key};
use flux_recv::config;

/// One config case.
struct Case {
    name: &'static str,
    yaml: &'static str,
    /// Key files to write beside the config: (name, content).
    keys: &'static [(&'static str, &'static [u8])],
    /// None: loads. Some(parts): fails, and some message contains every part.
    error: Option<&'static [&'static str]>,
    /// Parts some warning must contain.
    warning: Option<&'static [&'static str]>,
}

const GOOD_KEY: &[u8] = b"a-good-random-key-0123456789";

fn run(case: &Case) -> Result<config::Loaded, config::ConfigErrors> {
    let dir = temp_dir("config");
    for (name, content) in case.keys {
        write_key(&dir.join(name), content);
    }
    let path = dir.join("fluxrecv.yaml");
    std::fs::write(&path, case.yaml).unwrap();
    config::load(&path)
}

/// A key file others may read is warned about (through a symlink too, as Kubernetes mounts
/// Secrets); one shared with the group (a Secret with an `fsGroup`) is not.
#[test]
fn key_files_readable_by_everyone_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let yaml = "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: link.key\n";
    for (mode, warned) in [(0o644, true), (0o604, true), (0o640, false), (0o600, false)] {
        let dir = temp_dir("modes");
        write_key(&dir.join("real.key"), b"key-0123456789abcdef");
        let real = dir.join("real.key");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::symlink(&real, dir.join("link.key")).unwrap();
        std::fs::write(dir.join("fluxrecv.yaml"), yaml).unwrap();
        let loaded = config::load(&dir.join("fluxrecv.yaml")).expect("loads");
        let warning = loaded
            .warnings
            .iter()
            .find(|w| w.contains("readable by every user"));
        assert_eq!(warning.is_some(), warned, "{mode:o}: {:?}", loaded.warnings);
        if let Some(warning) = warning {
            assert!(warning.contains(&format!("mode {mode:04o}")), "{warning}");
            assert!(warning.contains("endpoints[0] (GitHub)"), "{warning}");
        }
    }
}

#[test]
fn config_table() {
    let cases = [
        Case {
            name: "minimal",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: None,
            warning: None,
        },
        Case {
            name: "all git sources and an api",
            yaml: "fluxRecvVersion: 1\napi: http://127.0.0.1:3030/api/flux/\nendpoints:\n- source: GitHub\n  keyPath: a\n- source: GitLab\n  keyPath: b\n- source: BitbucketCloud\n  keyPath: c\n- source: BitbucketServer\n  keyPath: d\n  registryHost: bitbucket.example.com\n",
            keys: &[("a", b"key-a-0123456789ab"), ("b", b"key-b-0123456789ab"), ("c", b"key-c-0123456789ab"), ("d", b"key-d-0123456789ab")],
            error: None,
            // Bitbucket Cloud without requireSignature accepts unsigned deliveries: said once.
            warning: Some(&["endpoints[2] (BitbucketCloud)", "unsigned", "requireSignature: true"]),
        },
        Case {
            name: "Bitbucket Cloud requiring its signature: quiet",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: BitbucketCloud\n  keyPath: c\n  requireSignature: true\n",
            keys: &[("c", b"key-c-0123456789ab")],
            error: None,
            warning: None,
        },
        Case {
            name: "allowFrom with a range that is not one",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a\n  allowFrom: [140.82.112.0/20, 10.0.0.0/33]\n",
            keys: &[("a", b"key-a-0123456789ab")],
            error: Some(&["endpoints[0] (GitHub)", "allowFrom", "10.0.0.0/33", "0 to 32"]),
            warning: None,
        },
        Case {
            name: "requireSignature where the signature is not optional",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a\n  requireSignature: true\n",
            keys: &[("a", b"key-a-0123456789ab")],
            error: Some(&["endpoints[0] (GitHub)", "requireSignature only applies to source BitbucketCloud"]),
            warning: None,
        },
        Case {
            name: "version missing",
            yaml: "endpoints:\n- source: GitHub\n  keyPath: gh.key\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["fluxRecvVersion", "missing"]),
            warning: None,
        },
        Case {
            name: "version 2",
            yaml: "fluxRecvVersion: 2\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["fluxRecvVersion is 2"]),
            warning: None,
        },
        Case {
            name: "version as a string",
            yaml: "fluxRecvVersion: \"1\"\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["fluxRecvVersion", "string"]),
            warning: None,
        },
        Case {
            name: "YAML syntax error",
            yaml: "fluxRecvVersion: 1\nendpoints: [\n",
            keys: &[],
            error: Some(&["fluxrecv.yaml", "line"]),
            warning: None,
        },
        Case {
            name: "unknown top-level field",
            yaml: "fluxRecvVersion: 1\napi_url: http://x\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["api_url"]),
            warning: None,
        },
        Case {
            name: "unknown endpoint field (typo)",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keypath: gh.key\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["keypath"]),
            warning: None,
        },
        Case {
            name: "unknown source",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: Github\n  keyPath: gh.key\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["endpoints[0]", "\"Github\"", "GitHub, GitLab, BitbucketCloud, BitbucketServer, DockerHub, Quay, Harbor, Nexus, GoogleContainerRegistry"]),
            warning: None,
        },
        Case {
            name: "source missing",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- keyPath: gh.key\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["endpoints[0]", "source is missing"]),
            warning: None,
        },
        Case {
            name: "keyPath missing",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitLab\n",
            keys: &[],
            error: Some(&["endpoints[0] (GitLab)", "keyPath is missing"]),
            warning: None,
        },
        Case {
            name: "key file unreadable",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n- source: GitLab\n  keyPath: secrets/nope.key\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["endpoints[1] (GitLab)", "keyPath", "nope.key"]),
            warning: None,
        },
        Case {
            name: "key file empty",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
            keys: &[("gh.key", b"")],
            error: Some(&["endpoints[0] (GitHub)", "gh.key", "empty"]),
            warning: None,
        },
        Case {
            name: "duplicate routes",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a\n- source: GitLab\n  keyPath: b\n",
            keys: &[("a", GOOD_KEY), ("b", GOOD_KEY)],
            error: Some(&["endpoints[1] (GitLab)", "endpoints[0] (GitHub)", "same route"]),
            warning: None,
        },
        Case {
            name: "same key, different registryHost: different routes",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a\n- source: GitLab\n  keyPath: a\n  registryHost: r.example.com\n",
            keys: &[("a", GOOD_KEY)],
            error: None,
            warning: None,
        },
        Case {
            name: "api not http",
            yaml: "fluxRecvVersion: 1\napi: localhost:3030\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["api", "localhost:3030", "http"]),
            warning: None,
        },
        Case {
            name: "no endpoints",
            yaml: "fluxRecvVersion: 1\nendpoints: []\n",
            keys: &[],
            error: Some(&["endpoints is empty"]),
            warning: None,
        },
        Case {
            name: "gcr on a git source",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n  gcr:\n    audience: a\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["endpoints[0] (GitHub)", "gcr"]),
            warning: None,
        },
        Case {
            name: "gcr with audience, email and tokenInfoURL on GCR",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: https://flux-recv.example/hook\n    email: push@p.iam.gserviceaccount.com\n    tokenInfoURL: http://127.0.0.1:9/tokeninfo\n",
            keys: &[("gcr.key", GOOD_KEY)],
            error: None,
            warning: None,
        },
        Case {
            name: "gcr.audience without gcr.email: the hole of CVE-2026-40109",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: https://flux-recv.example/hook\n    tokenInfoURL: http://127.0.0.1:9/tokeninfo\n",
            keys: &[("gcr.key", GOOD_KEY)],
            error: Some(&["endpoints[0] (GoogleContainerRegistry)", "CVE-2026-40109", "gcr.email", "insecureAcceptAnyServiceAccount"]),
            warning: None,
        },
        Case {
            name: "gcr.audience without gcr.email, the risk accepted in so many words",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: https://flux-recv.example/hook\n    tokenInfoURL: http://127.0.0.1:9/tokeninfo\n    insecureAcceptAnyServiceAccount: true\n",
            keys: &[("gcr.key", GOOD_KEY)],
            error: None,
            warning: None,
        },
        Case {
            name: "a plain-http tokenInfoURL to another host",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: a\n    email: e@x\n    tokenInfoURL: http://tokeninfo.example/tokeninfo\n",
            keys: &[("gcr.key", GOOD_KEY)],
            error: Some(&["gcr.tokenInfoURL", "clear text", "https"]),
            warning: None,
        },
        Case {
            name: "gcr.email without gcr.audience",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    email: push@p.iam.gserviceaccount.com\n",
            keys: &[("gcr.key", GOOD_KEY)],
            error: Some(&["endpoints[0] (GoogleContainerRegistry)", "gcr.audience"]),
            warning: None,
        },
        Case {
            name: "gcr.tokenInfoURL not a URL",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: a\n    tokenInfoURL: oauth2.googleapis.com\n",
            keys: &[("gcr.key", GOOD_KEY)],
            error: Some(&["gcr.tokenInfoURL", "oauth2.googleapis.com"]),
            warning: None,
        },
        Case {
            name: "Nexus with registryHost",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: Nexus\n  keyPath: n.key\n  registryHost: nexus.example.com:8443\n",
            keys: &[("n.key", GOOD_KEY)],
            error: None,
            warning: None,
        },
        Case {
            name: "registryHost with a space",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: Nexus\n  keyPath: n.key\n  registryHost: nexus example\n",
            keys: &[("n.key", GOOD_KEY)],
            error: Some(&["endpoints[0] (Nexus)", "registryHost"]),
            warning: None,
        },
        Case {
            name: "unknown gcr field",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n  gcr:\n    audiences: a\n",
            keys: &[("gh.key", GOOD_KEY)],
            error: Some(&["audiences"]),
            warning: None,
        },
        Case {
            name: "key with a trailing newline: warned, used verbatim",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
            keys: &[("gh.key", b"a-good-random-key-0123456789\n")],
            error: None,
            warning: Some(&["endpoints[0] (GitHub)", "gh.key", "whitespace"]),
        },
        Case {
            name: "a shipped sample key: warned",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
            keys: &[("gh.key", b"SAMPLE-github-key-do-not-use-in-production")],
            error: None,
            warning: Some(&["endpoints[0] (GitHub)", "gh.key", "SAMPLE"]),
        },
        Case {
            name: "Nexus without registryHost: warned",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: Nexus\n  keyPath: n.key\n",
            keys: &[("n.key", GOOD_KEY)],
            error: None,
            warning: Some(&["endpoints[0] (Nexus)", "registryHost"]),
        },
        Case {
            name: "short key: warned",
            yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitLab\n  keyPath: gl.key\n",
            keys: &[("gl.key", b"short")],
            error: None,
            warning: Some(&["endpoints[0] (GitLab)", "gl.key", "16 bytes"]),
        },
    ];
    for case in &cases {
        let result = run(case);
        match (case.error, result) {
            (None, Ok(loaded)) => {
                if let Some(parts) = case.warning {
                    assert!(
                        loaded
                            .warnings
                            .iter()
                            .any(|w| parts.iter().all(|p| w.contains(p))),
                        "{}: warnings {:?} lack {parts:?}",
                        case.name,
                        loaded.warnings
                    );
                } else {
                    assert!(
                        loaded.warnings.is_empty(),
                        "{}: {:?}",
                        case.name,
                        loaded.warnings
                    );
                }
            }
            (None, Err(errors)) => panic!("{}: expected to load, got:\n{errors}", case.name),
            (Some(parts), Ok(_)) => panic!("{}: expected an error with {parts:?}", case.name),
            (Some(parts), Err(errors)) => assert!(
                errors.0.iter().any(|m| parts.iter().all(|p| m.contains(p))),
                "{}: no message holds all of {parts:?}:\n{errors}",
                case.name
            ),
        }
    }
}

/// The downstream fields: each new field, good and bad, named in its message.
#[test]
fn notify_table() {
    const HEAD: &str = "fluxRecvVersion: 1\n";
    const EP: &str = "endpoints:\n- source: GitHub\n  keyPath: gh.key\n";
    let keys: &[(&str, &[u8])] = &[
        ("gh.key", GOOD_KEY),
        ("b.token", GOOD_KEY),
        ("empty.token", b""),
    ];
    let case = |name: &'static str, notify: &str, error: Option<&'static [&'static str]>| {
        (name, format!("{HEAD}{notify}{EP}"), error)
    };
    let cases = [
        case("two fluxd", "notify:\n- name: a\n  fluxd: http://a:3030/api/flux\n- name: b\n  fluxd: http://b:3030/api/flux\n", None),
        case("a receiver with a token", "notify:\n- name: b\n  fluxReceiver: http://b/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f\n  keyPath: b.token\n", None),
        case("filters", "notify:\n- fluxd: http://a/api/flux\n  images: [\"r.example.com/*\"]\n  git: [\"*/org/infra*\"]\n  branches: [main, \"release-[0-9]*\"]\n", None),
        case("api and notify", "api: http://a/api/flux\nnotify:\n- fluxd: http://a/api/flux\n", Some(&["both api and notify"])),
        case("empty notify", "notify: []\n", Some(&["notify is empty"])),
        case("neither kind", "notify:\n- name: a\n", Some(&["notify[0] (a)", "fluxd", "fluxReceiver"])),
        case("both kinds", "notify:\n- name: a\n  fluxd: http://a/api/flux\n  fluxReceiver: http://a/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f\n  keyPath: b.token\n", Some(&["notify[0] (a)", "both fluxd and fluxReceiver"])),
        case("receiver without keyPath", "notify:\n- name: b\n  fluxReceiver: http://b/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f\n", Some(&["notify[0] (b)", "fluxReceiver needs keyPath"])),
        case("unreadable token", "notify:\n- name: b\n  fluxReceiver: http://b/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f\n  keyPath: gone.token\n", Some(&["notify[0] (b)", "keyPath", "gone.token"])),
        case("keyPath on fluxd", "notify:\n- name: a\n  fluxd: http://a/api/flux\n  keyPath: b.token\n", Some(&["notify[0] (a)", "keyPath only applies to fluxReceiver"])),
        case("bad fluxd URL", "notify:\n- name: a\n  fluxd: a:3030\n", Some(&["notify[0] (a)", "fluxd", "a:3030"])),
        case("bad receiver URL", "notify:\n- name: b\n  fluxReceiver: ftp://b/x\n  keyPath: b.token\n", Some(&["notify[0] (b)", "fluxReceiver", "ftp://b/…"])),
        case("malformed glob", "notify:\n- name: a\n  fluxd: http://a/api/flux\n  images: [\"r/[abc\"]\n", Some(&["notify[0] (a)", "images[0]", "[abc"])),
        case("empty glob", "notify:\n- name: a\n  fluxd: http://a/api/flux\n  branches: [\"\"]\n", Some(&["notify[0] (a)", "branches[0]", "empty"])),
        case("duplicate names", "notify:\n- name: a\n  fluxd: http://a/api/flux\n- name: a\n  fluxd: http://b/api/flux\n", Some(&["notify[1] (a)", "used twice"])),
        case("odd name", "notify:\n- name: \"a b\"\n  fluxd: http://a/api/flux\n", Some(&["notify[0] (a b)", "not a plain name"])),
        case("empty token file", "notify:\n- name: b\n  fluxReceiver: http://b/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f\n  keyPath: empty.token\n", Some(&["notify[0] (b)", "keyPath", "empty.token", "is empty"])),
        case("empty filter list", "notify:\n- name: a\n  fluxd: http://a/api/flux\n  images: []\n", Some(&["notify[0] (a)", "images is empty"])),
        case("a name that a default name takes", "notify:\n- name: notify-1\n  fluxd: http://a/api/flux\n- fluxd: http://b/api/flux\n", Some(&["notify[1] (named notify-1 by default)", "used twice"])),
        case("the shipped placeholder as a receiver path", "notify:\n- name: b\n  fluxReceiver: http://b/hook/REPLACE-WITH-THE-RECEIVERS-WEBHOOKPATH-DIGEST\n  keyPath: b.token\n", Some(&["notify[0] (b): fluxReceiver path \"/hook/REPLACE-WITH-THE-R…\"", "64 lowercase hex", "status.webhookPath", "flux-recv receiver-path --token-file b.token"])),
        case("a receiver path in upper case", "notify:\n- name: b\n  fluxReceiver: http://b/hook/81BAE876B70513C9DECC608EED549977A81AFA1C2B6B4080AEC256339E792E0F\n  keyPath: b.token\n", Some(&["notify[0] (b): fluxReceiver path", "64 lowercase hex"])),
        case("a cut receiver path", "notify:\n- name: b\n  fluxReceiver: http://b/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0\n  keyPath: b.token\n", Some(&["notify[0] (b): fluxReceiver path", "64 lowercase hex"])),
        case("a receiver path with a slash after it", "notify:\n- name: b\n  fluxReceiver: http://b/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f/\n  keyPath: b.token\n", Some(&["notify[0] (b): fluxReceiver path", "64 lowercase hex"])),
        case("a receiver URL without /hook/", "notify:\n- name: b\n  fluxReceiver: http://b/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f\n  keyPath: b.token\n", Some(&["notify[0] (b): fluxReceiver path", "64 lowercase hex"])),
        case("unknown downstream field", "notify:\n- name: a\n  flux: http://a/api/flux\n", Some(&["flux"])),
    ];
    let endpoint_cases = [
        (
            "unknown name on an endpoint",
            format!("{HEAD}notify:\n- name: a\n  fluxd: http://a/api/flux\n{EP}  notify: [b]\n"),
            Some(&["endpoints[0] (GitHub)", "\"b\"", "use one of: a"][..]),
        ),
        (
            "empty notify on an endpoint",
            format!("{HEAD}{EP}  notify: []\n"),
            Some(&["endpoints[0] (GitHub)", "notify is empty"][..]),
        ),
        (
            "the default fluxd by name",
            format!("{HEAD}{EP}  notify: [fluxd]\n"),
            None,
        ),
        (
            "an endpoint's own notify timeout",
            format!("{HEAD}{EP}  notifyTimeout: 0.8\n"),
            None,
        ),
        (
            "a notify timeout of 0",
            format!("{HEAD}{EP}  notifyTimeout: 0\n"),
            Some(&["endpoints[0] (GitHub)", "notifyTimeout"][..]),
        ),
    ];
    for (name, yaml, error) in cases.into_iter().chain(endpoint_cases) {
        let dir = temp_dir("notify");
        for (file, content) in keys {
            std::fs::write(dir.join(file), content).unwrap();
        }
        let path = dir.join("fluxrecv.yaml");
        std::fs::write(&path, &yaml).unwrap();
        match (config::load(&path), error) {
            (Ok(_), None) => {}
            (Err(errors), None) => panic!("{name}: expected to load, got:\n{errors}"),
            (Ok(_), Some(parts)) => panic!("{name}: expected an error with {parts:?}"),
            (Err(errors), Some(parts)) => assert!(
                errors.0.iter().any(|m| parts.iter().all(|p| m.contains(p))),
                "{name}: no message holds all of {parts:?}:\n{errors}"
            ),
        }
    }
}

#[test]
fn an_https_downstream_needs_the_tls_feature() {
    let dir = temp_dir("notify-tls");
    std::fs::write(dir.join("gh.key"), GOOD_KEY).unwrap();
    std::fs::write(dir.join("b.token"), GOOD_KEY).unwrap();
    let path = dir.join("fluxrecv.yaml");
    std::fs::write(
        &path,
        "fluxRecvVersion: 1\nnotify:\n- name: b\n  fluxReceiver: https://b/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f\n  keyPath: b.token\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
    )
    .unwrap();
    let result = config::load(&path);
    if cfg!(feature = "tls") {
        assert!(result.is_ok(), "{:?}", result.err());
    } else {
        let errors = result.unwrap_err();
        assert!(
            errors
                .0
                .iter()
                .any(|m| m.contains("notify[0] (b): fluxReceiver") && m.contains("no TLS")),
            "{errors}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let case = Case {
        name: "three problems",
        yaml: "fluxRecvVersion: 3\nendpoints:\n- source: Gitlab\n  keyPath: a\n- source: GitHub\n  keyPath: missing.key\n",
        keys: &[("a", GOOD_KEY)],
        error: None,
        warning: None,
    };
    let errors = run(&case).unwrap_err();
    assert_eq!(errors.0.len(), 3, "{errors}");
}

#[test]
fn keys_are_relative_to_the_config_folder_and_used_verbatim() {
    let dir = temp_dir("relative");
    std::fs::create_dir_all(dir.join("conf/keys")).unwrap();
    std::fs::write(dir.join("conf/keys/gh.key"), b"key-with-newline-0123\n").unwrap();
    std::fs::write(
        dir.join("conf/fluxrecv.yaml"),
        "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: keys/gh.key\n",
    )
    .unwrap();
    let loaded = config::load(&dir.join("conf/fluxrecv.yaml")).unwrap();
    let endpoint = &loaded.config.endpoints[0];
    assert_eq!(endpoint.key.bytes(), b"key-with-newline-0123\n");
    assert_eq!(
        endpoint.route(),
        common::route_of(b"key-with-newline-0123\n", "")
    );
    assert_eq!(loaded.config.api, config::DEFAULT_API);
}

#[test]
fn missing_config_file_is_named() {
    let errors = config::load(Path::new("/nonexistent/fluxrecv.yaml")).unwrap_err();
    assert!(
        errors.0[0].contains("/nonexistent/fluxrecv.yaml"),
        "{errors}"
    );
    assert!(errors.0[0].contains("--config"), "{errors}");
}

#[test]
fn messages_never_contain_key_bytes() {
    let case = Case {
        name: "duplicate with secret keys",
        yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a\n- source: GitHub\n  keyPath: b\n",
        keys: &[("a", b"TOP-SECRET-KEY-VALUE-1"), ("b", b"TOP-SECRET-KEY-VALUE-1")],
        error: None,
        warning: None,
    };
    let errors = run(&case).unwrap_err();
    let text = errors.to_string();
    assert!(!text.contains("TOP-SECRET"), "{text}");
    assert!(
        !text.contains(&common::route_of(b"TOP-SECRET-KEY-VALUE-1", "")[6..]),
        "{text}"
    );
}

#[test]
fn gcr_audience_over_https_needs_the_tls_feature() {
    let case = Case {
        name: "gcr.audience with Google's default tokeninfo",
        yaml: "fluxRecvVersion: 1\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: gcr.key\n  gcr:\n    audience: https://flux-recv.example/hook\n    email: push@p.iam.gserviceaccount.com\n",
        keys: &[("gcr.key", GOOD_KEY)],
        error: None,
        warning: None,
    };
    let result = run(&case);
    if cfg!(feature = "tls") {
        assert!(result.is_ok(), "{:?}", result.err());
    } else {
        let errors = result.unwrap_err();
        assert!(errors.0[0].contains("no TLS"), "{errors}");
        assert!(errors.0[0].contains("gcr.audience"), "{errors}");
    }
}

#[test]
fn every_unknown_field_is_reported_at_once() {
    let case = Case {
        name: "two typos",
        yaml: "fluxRecvVersion: 1\napi_url: http://x\nendpoints:\n- source: GitHub\n  keypath: gh.key\n",
        keys: &[("gh.key", GOOD_KEY)],
        error: None,
        warning: None,
    };
    let errors = run(&case).unwrap_err();
    assert_eq!(errors.0.len(), 2, "{errors}");
    assert!(errors.0[0].contains("\"api_url\"") && errors.0[0].contains("the top level"));
    assert!(errors.0[1].contains("\"keypath\"") && errors.0[1].contains("endpoints[0]"));
}
