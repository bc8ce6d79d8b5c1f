//! The git hosts and the CI source end to end: Gitea/Forgejo/Gogs, Azure DevOps, GitLab with a
//! signing token, and Generic through the real server and the recording fake fluxd; and the
//! `flux-recv notify` sub-command against a running flux-recv.

mod common;

use base64::Engine as _;
use common::*;
use flux_recv::signature::{sign_standard, signing_secret, unix_now};

const KEY: &[u8] = b"git-hosts-integration-key-0123456789";
/// A signing token as GitLab shows it, ending in the newline `echo` adds to a key file.
const TOKEN: &[u8] = b"whsec_Z2l0bGFiLXNpZ25pbmctdG9rZW4tZm9yLWUyZS10ZXN0\n";

const OK: Option<&str> = Some("OK");

fn git_change(url: &str, branch: &str) -> &'static str {
    format!(r#"{{"Kind":"git","Source":{{"URL":"{url}","Branch":"{branch}"}}}}"#).leak()
}

const GITEA_REPO: &str = "git@gitea.acme.example:platform/fleet-infra.git";

/// A delivery as each flavour sends it: its event and signature headers.
fn gitea(flavour: &str, event: &str, key: &[u8], body: &[u8]) -> Vec<(String, String)> {
    let signature = hmac_hex("sha256", key, body);
    let mut headers = h(&[("Content-Type", "application/json")]);
    let names: &[(&str, &str)] = match flavour {
        "Forgejo" => &[
            ("X-Forgejo-Event", "X-Forgejo-Signature"),
            ("X-Gitea-Event", "X-Gitea-Signature"),
        ],
        "Gogs" => &[("X-Gogs-Event", "X-Gogs-Signature")],
        _ => &[("X-Gitea-Event", "X-Gitea-Signature")],
    };
    for (event_header, signature_header) in names {
        headers.extend(h(&[(event_header, event), (signature_header, &signature)]));
    }
    headers.extend(h(&[(
        "X-Gitea-Delivery",
        "f6266f16-1bf3-46a5-9ea4-602e06ead473",
    )]));
    headers
}

#[test]
fn gitea_table() {
    let push = include_bytes!("fixtures/gitea/push.json");
    let tag = include_bytes!("fixtures/gitea/push_tag.json");
    let main = git_change(GITEA_REPO, "main");
    let mut cases = Vec::new();
    for flavour in ["Gitea", "Forgejo", "Gogs"] {
        let name: &'static str = format!("{flavour} push").leak();
        cases.push(Case {
            name,
            headers: gitea(flavour, "push", KEY, push),
            body: push.to_vec(),
            status: 200,
            reply: OK,
            notified: vec![main],
        });
    }
    cases.extend([
        Case {
            name: "tag push",
            headers: gitea("Gitea", "push", KEY, tag),
            body: tag.to_vec(),
            status: 200,
            reply: OK,
            notified: vec![git_change(GITEA_REPO, "refs/tags/v1.4.0")],
        },
        Case {
            name: "branch deleted",
            headers: gitea(
                "Gitea",
                "delete",
                KEY,
                include_bytes!("fixtures/gitea/delete_branch.json"),
            ),
            body: include_bytes!("fixtures/gitea/delete_branch.json").to_vec(),
            status: 200,
            reply: OK,
            notified: vec![git_change(GITEA_REPO, "feature/old-ui")],
        },
        Case {
            name: "create",
            headers: gitea(
                "Gitea",
                "create",
                KEY,
                include_bytes!("fixtures/gitea/create_branch.json"),
            ),
            body: include_bytes!("fixtures/gitea/create_branch.json").to_vec(),
            status: 200,
            reply: Some("ignored: event create"),
            notified: vec![],
        },
        Case {
            name: "issues",
            headers: gitea(
                "Gitea",
                "issues",
                KEY,
                include_bytes!("fixtures/gitea/issues.json"),
            ),
            body: include_bytes!("fixtures/gitea/issues.json").to_vec(),
            status: 200,
            reply: Some("ignored: event issues"),
            notified: vec![],
        },
        Case {
            name: "wrong key",
            headers: gitea("Gitea", "push", b"another key", push),
            body: push.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "unsigned",
            headers: h(&[("X-Gitea-Event", "push")]),
            body: push.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "no event header",
            headers: h(&[("X-Gitea-Signature", &hmac_hex("sha256", KEY, push))]),
            body: push.to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
        Case {
            name: "malformed",
            headers: gitea("Gitea", "push", KEY, b"{\"ref\":"),
            body: b"{\"ref\":".to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
    ]);
    table("Gitea", KEY, None, cases);
}

fn basic(password: &[u8]) -> Vec<(String, String)> {
    let credentials = [b"flux-recv:".as_slice(), password].concat();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    h(&[
        ("Content-Type", "application/json; charset=utf-8"),
        ("Authorization", &auth),
    ])
}

#[test]
fn azure_devops_table() {
    let push = include_bytes!("fixtures/azure_devops/git_push.json");
    let ssh = "git@ssh.dev.azure.com:v3/acme/platform/fleet-infra";
    let cases = vec![
        Case {
            name: "push",
            headers: basic(KEY),
            body: push.to_vec(),
            status: 200,
            reply: OK,
            notified: vec![git_change(ssh, "main")],
        },
        Case {
            name: "push without sshUrl",
            headers: basic(KEY),
            body: include_bytes!("fixtures/azure_devops/git_push_remote_url_only.json").to_vec(),
            status: 200,
            reply: OK,
            notified: vec![git_change(
                "https://dev.azure.com/acme/platform/_git/fleet-infra",
                "main",
            )],
        },
        Case {
            name: "three refs, one deleted",
            headers: basic(KEY),
            body: include_bytes!("fixtures/azure_devops/git_push_three_refs.json").to_vec(),
            status: 200,
            reply: OK,
            notified: vec![git_change(ssh, "main"), git_change(ssh, "refs/tags/v1.4.0")],
        },
        Case {
            name: "branch deleted",
            headers: basic(KEY),
            body: include_bytes!("fixtures/azure_devops/branch_deleted.json").to_vec(),
            status: 200,
            reply: Some("ignored: push of deletions only"),
            notified: vec![],
        },
        Case {
            name: "pull request",
            headers: basic(KEY),
            body: include_bytes!("fixtures/azure_devops/pullrequest_created.json").to_vec(),
            status: 200,
            reply: Some("ignored: event git.pullrequest.created"),
            notified: vec![],
        },
        Case {
            name: "wrong password",
            headers: basic(b"wrong"),
            body: push.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "no Authorization",
            headers: h(&[("Content-Type", "application/json")]),
            body: push.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "malformed",
            headers: basic(KEY),
            body: b"{\"eventType\":".to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
    ];
    table("AzureDevOps", KEY, None, cases);
}

/// Standard Webhooks headers for `body`, signed at `timestamp` with `secret`.
fn standard(secret: &[u8], timestamp: u64, body: &[u8]) -> Vec<(String, String)> {
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let timestamp = timestamp.to_string();
    h(&[
        ("webhook-id", id),
        ("webhook-timestamp", &timestamp),
        (
            "webhook-signature",
            &sign_standard(secret, id, &timestamp, body),
        ),
    ])
}

#[test]
fn gitlab_signing_token_table() {
    let push = common::GITLAB_PUSH;
    let secret = signing_secret(TOKEN).expect("a signing token");
    let with_event = |mut headers: Vec<(String, String)>| {
        headers.extend(h(&[
            ("X-Gitlab-Event", "Push Hook"),
            ("Content-Type", "application/json"),
        ]));
        headers
    };
    let main = git_change("git@gitlab.example.com:platform/fleet-infra.git", "main");
    let now = unix_now();
    let several = {
        let mut headers = standard(&secret, now, push);
        let good = headers[2].1.clone();
        headers[2].1 = format!("v1,AAAA v2,{} {good}", &good[3..]);
        headers
    };
    let cases = vec![
        Case {
            name: "signed push",
            headers: with_event(standard(&secret, now, push)),
            body: push.to_vec(),
            status: 200,
            reply: OK,
            notified: vec![main],
        },
        Case {
            name: "one good signature among several",
            headers: with_event(several),
            body: push.to_vec(),
            status: 200,
            reply: OK,
            notified: vec![main],
        },
        Case {
            name: "signed 10 minutes ago",
            headers: with_event(standard(&secret, now - 600, push)),
            body: push.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "signed 10 minutes ahead",
            headers: with_event(standard(&secret, now + 600, push)),
            body: push.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "another body",
            headers: with_event(standard(&secret, now, b"{}")),
            body: push.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "X-Gitlab-Token alone",
            headers: with_event(h(&[(
                "X-Gitlab-Token",
                std::str::from_utf8(TOKEN).unwrap().trim(),
            )])),
            body: push.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
    ];
    table("GitLab", TOKEN, None, cases);
}

fn x_signature(key: &[u8], body: &[u8]) -> Vec<(String, String)> {
    h(&[(
        "X-Signature",
        &format!("sha256={}", hmac_hex("sha256", key, body)),
    )])
}

#[test]
fn generic_table() {
    let git = include_bytes!("fixtures/generic/git.json");
    let list = include_bytes!("fixtures/generic/list.json");
    let main = git_change(GITEA_REPO, "main");
    let image = |name: &str| -> &'static str {
        format!(r#"{{"Kind":"image","Source":{{"Name":{{"Domain":"mirror.internal:5000","Image":"{name}"}}}}}}"#).leak()
    };
    let lowercase = br#"{"kind":"image","source":{"name":{"domain":"mirror.internal:5000","image":"team-a/podinfo"}}}"#;
    let sha512 = h(&[(
        "X-Signature",
        &format!("sha512={}", hmac_hex("sha512", KEY, git)),
    )]);
    let cases = vec![
        Case {
            name: "one git change",
            headers: x_signature(KEY, git),
            body: git.to_vec(),
            status: 200,
            reply: OK,
            notified: vec![main],
        },
        Case {
            name: "a list, repeats sent once",
            headers: x_signature(KEY, list),
            body: list.to_vec(),
            status: 200,
            reply: OK,
            notified: vec![image("team-a/podinfo"), image("team-b/api"), main],
        },
        Case {
            name: "keys in lower case, re-encoded",
            headers: x_signature(KEY, lowercase),
            body: lowercase.to_vec(),
            status: 200,
            reply: OK,
            notified: vec![image("team-a/podinfo")],
        },
        Case {
            name: "sha512",
            headers: sha512,
            body: git.to_vec(),
            status: 200,
            reply: OK,
            notified: vec![main],
        },
        Case {
            name: "Standard Webhooks",
            headers: standard(KEY, unix_now(), git),
            body: git.to_vec(),
            status: 200,
            reply: OK,
            notified: vec![main],
        },
        Case {
            name: "wrong key",
            headers: x_signature(b"another key", git),
            body: git.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "unsigned",
            headers: vec![],
            body: git.to_vec(),
            status: 401,
            reply: UNAUTHORIZED,
            notified: vec![],
        },
        Case {
            name: "unknown kind",
            headers: x_signature(KEY, br#"{"Kind":"helm","Source":{}}"#),
            body: br#"{"Kind":"helm","Source":{}}"#.to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
        Case {
            name: "no Source",
            headers: x_signature(KEY, br#"{"Kind":"git"}"#),
            body: br#"{"Kind":"git"}"#.to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
        Case {
            name: "not JSON",
            headers: x_signature(KEY, b"push!"),
            body: b"push!".to_vec(),
            status: 400,
            reply: BAD,
            notified: vec![],
        },
    ];
    table("Generic", KEY, None, cases);
}

fn notify(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flux-recv"))
        .arg("notify")
        .args(args)
        .output()
        .expect("run flux-recv notify")
}

#[test]
fn notify_sends_a_signed_change_and_reports_a_refusal() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let dir = temp_dir("notify");
    let yaml = format!(
        "fluxRecvVersion: 1\napi: {}\nendpoints:\n- source: Generic\n  keyPath: ci.key\n- source: Generic\n  keyPath: sw.key\n",
        fluxd.api()
    );
    let config = write_yaml(&dir, &yaml, &[("ci.key", KEY), ("sw.key", TOKEN)]);
    let recv = Proc::start(&["--config", &config.display().to_string()]);
    let url = |key: &[u8]| format!("http://{}{}", recv.addr, route_of(key, ""));
    let key_file = |name: &str| dir.join(name).display().to_string();

    let out = notify(&[
        "--url",
        &url(KEY),
        "--key-file",
        &key_file("ci.key"),
        "--git",
        GITEA_REPO,
        "--branch",
        "main",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("200 "), "{stdout}");
    assert_eq!(fluxd.bodies(), vec![git_change(GITEA_REPO, "main")]);

    // A whsec_ key signs with Standard Webhooks; an image is split as fluxd splits it.
    fluxd.clear();
    let out = notify(&[
        "--url",
        &url(TOKEN),
        "--key-file",
        &key_file("sw.key"),
        "--image",
        "mirror.internal:5000/team-a/podinfo:6.5.1",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fluxd.bodies(),
        vec![
            r#"{"Kind":"image","Source":{"Name":{"Domain":"mirror.internal:5000","Image":"team-a/podinfo"}}}"#
        ]
    );

    // The wrong key: exit 1, the 401 printed, fluxd not called.
    fluxd.clear();
    std::fs::write(dir.join("wrong.key"), b"not the key").unwrap();
    let out = notify(&[
        "--url",
        &url(KEY),
        "--key-file",
        &key_file("wrong.key"),
        "--git",
        GITEA_REPO,
        "--branch",
        "main",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(fluxd.bodies().is_empty());

    // Nobody listening: exit 1 and say so; a bad command line: exit 2.
    let out = notify(&[
        "--url",
        &format!("http://{}/hook/x", free_addr()),
        "--key-file",
        &key_file("ci.key"),
        "--image",
        "a/b",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
    let out = notify(&[
        "--url",
        &url(KEY),
        "--key-file",
        &key_file("ci.key"),
        "--git",
        GITEA_REPO,
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--branch"));
}

/// Each source's own delivery id is the reply's `X-Request-Id` (and the log line's `delivery=`).
#[test]
fn delivery_ids_become_the_request_id() {
    let fluxd = FakeFluxd::start(Behaviour::Real);
    let keys: [&[u8]; 4] = [
        b"gitea-id-key-0123456789",
        b"azure-id-key-0123456789",
        b"generic-id-key-0123456789",
        TOKEN,
    ];
    let endpoints = [
        Ep::new("Gitea", keys[0]),
        Ep::new("AzureDevOps", keys[1]),
        Ep::new("Generic", keys[2]),
        Ep::new("GitLab", keys[3]),
    ];
    let (server, _) = start(&endpoints, &fluxd.api(), test_options());
    let push = include_bytes!("fixtures/gitea/push.json");
    let forgejo = {
        let mut headers = gitea("Forgejo", "push", keys[0], push);
        headers.retain(|(n, _)| n != "X-Gitea-Delivery");
        headers.extend(h(&[("X-Forgejo-Delivery", "forgejo-delivery-7")]));
        headers
    };
    let azure = include_bytes!("fixtures/azure_devops/git_push.json");
    let generic = include_bytes!("fixtures/generic/git.json");
    let gitlab = common::GITLAB_PUSH;
    let secret = signing_secret(TOKEN).unwrap();
    let mut gitlab_headers = standard(&secret, unix_now(), gitlab);
    gitlab_headers.extend(h(&[("X-Gitlab-Event", "Push Hook")]));
    for (key, headers, body, id) in [
        (
            keys[0],
            gitea("Gitea", "push", keys[0], push),
            &push[..],
            "f6266f16-1bf3-46a5-9ea4-602e06ead473",
        ),
        (keys[0], forgejo, push, "forgejo-delivery-7"),
        (
            keys[1],
            basic(keys[1]),
            azure,
            "03c164c2-8912-4d5e-8009-3707d5f83734",
        ),
        (
            keys[2],
            standard(keys[2], unix_now(), generic),
            generic,
            "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        ),
        (
            keys[3],
            gitlab_headers,
            gitlab,
            "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let reply = post(server.addr(), &route_of(key, ""), &headers, body);
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("X-Request-Id"), Some(id), "{reply:?}");
    }
    server.stop();
}
