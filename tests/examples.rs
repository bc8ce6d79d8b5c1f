//! The examples, checked by the real tools: every kustomization renders offline with `kubectl
//! kustomize` (the legacy sidecar and the flux-system patches against local stand-ins of what
//! they patch), the rendered built-in kinds validate against Kubernetes' schemas
//! (`kubernetes-validate`), the NetworkPolicies admit only flux-recv to notification-controller's
//! webhook receiver, every CEL `resourceFilter` selects what its comment says (`cel-python`, on
//! the Change JSON flux-recv sends), the alert rules pass `promtool check rules` and `promtool
//! test rules`, and the dashboard and rules use only metrics the binary exports.
//!
//! A missing tool skips its test on a developer's machine, saying so, and fails under CI.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use flux_recv::change::Change;
use serde::Deserialize;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a YAML stream, as JSON values.
fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn yaml_file(path: &Path) -> Value {
    yaml_docs(&read(path)).remove(0)
}

fn kubectl() -> bool {
    let ok = common::runs("kubectl", &["version", "--client"]);
    if !ok {
        common::skip_without(
            "kubectl (with kustomize)",
            "install kubectl (the Google Cloud CLI ships one) to render the examples",
        );
    }
    ok
}

/// Python with `cel-python` and `kubernetes-validate`: the system's when it has them, else a
/// folder under the target dir that pip fills once (as tests/operability.rs does for
/// prometheus_client), so `cargo test` alone runs on a fresh machine. None: skip.
fn python_path() -> Option<&'static str> {
    static PATH: OnceLock<Option<String>> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = concat!(env!("CARGO_TARGET_TMPDIR"), "/pydeps-examples");
        let importable = || {
            Command::new("python3")
                .args(["-c", "import celpy, kubernetes_validate"])
                .env("PYTHONPATH", dir)
                .output()
                .is_ok_and(|out| out.status.success())
        };
        if !importable() {
            let out = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args([
                    "--target",
                    dir,
                    "cel-python==0.5.0",
                    "kubernetes-validate==1.37.0",
                ])
                .output();
            if !importable() {
                common::skip_without(
                    "Python with cel-python and kubernetes-validate",
                    &format!(
                        "pip could not install them into {dir}: {:?}",
                        out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    ),
                );
                return None;
            }
        }
        Some(dir.to_owned())
    })
    .as_deref()
}

/// Runs a Python script with the packages above, `input` as JSON on stdin; its stdout as JSON.
fn python(script: &str, input: &Value) -> Value {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .env("PYTHONPATH", python_path().expect("python deps"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python's JSON")
}

/// One kustomization under example/, rendered.
struct Rendered {
    /// Its folder, relative to example/.
    dir: String,
    docs: Vec<Value>,
}

fn kustomizations(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            kustomizations(&path, found);
        } else if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
            found.push(path.parent().unwrap().to_owned());
        }
    }
}

/// The remote base of the legacy sidecar, and what stands in for it offline.
const FLUX_V1_BASE: &str = "github.com/fluxcd/flux//deploy?ref=1.25.4";

/// `dir`, copied where its resources that live elsewhere are stood in for: the files `flux
/// bootstrap` writes (Flux's own NetworkPolicies, tests/fixtures/flux2) and Flux v1's remote
/// base (its flux Deployment, tests/fixtures/flux, and namespace). Other remote resources fail:
/// an example must render offline.
fn with_stand_ins(dir: &Path) -> PathBuf {
    let text = read(&dir.join("kustomization.yaml"));
    let k = yaml_file(&dir.join("kustomization.yaml"));
    let resources: Vec<&str> = k["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let bootstrap = resources.contains(&"gotk-components.yaml");
    let remote: Vec<&str> = resources
        .iter()
        .copied()
        .filter(|r| r.contains("://") || r.starts_with("github.com/") || r.contains("?ref="))
        .collect();
    if !bootstrap && remote.is_empty() {
        return dir.to_owned();
    }
    let copy = common::temp_dir("example");
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    let fixtures = root().join("tests/fixtures");
    if bootstrap {
        for file in ["gotk-components.yaml", "gotk-sync.yaml"] {
            std::fs::copy(fixtures.join("flux2").join(file), copy.join(file)).unwrap();
        }
    }
    for resource in remote {
        assert_eq!(
            resource,
            FLUX_V1_BASE,
            "{}: a remote resource does not render offline",
            dir.display()
        );
        let base = copy.join("flux-base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::copy(
            fixtures.join("flux/flux-deployment.yaml"),
            base.join("flux-deployment.yaml"),
        )
        .unwrap();
        std::fs::write(
            base.join("namespace.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux\n",
        )
        .unwrap();
        std::fs::write(
            base.join("kustomization.yaml"),
            "resources:\n- namespace.yaml\n- flux-deployment.yaml\n",
        )
        .unwrap();
        std::fs::write(
            copy.join("kustomization.yaml"),
            text.replace(FLUX_V1_BASE, "flux-base"),
        )
        .unwrap();
    }
    copy
}

fn render(dir: &Path) -> Vec<Value> {
    let source = with_stand_ins(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&source)
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8_lossy(&out.stdout))
}

/// Every kustomization under example/, rendered once for all the tests here.
fn rendered() -> &'static [Rendered] {
    static ALL: OnceLock<Vec<Rendered>> = OnceLock::new();
    ALL.get_or_init(|| {
        let example = root().join("example");
        let mut dirs = Vec::new();
        kustomizations(&example, &mut dirs);
        dirs.iter()
            .map(|dir| Rendered {
                dir: dir.strip_prefix(&example).unwrap().display().to_string(),
                docs: render(dir),
            })
            .collect()
    })
}

fn rendered_dir(dir: &str) -> &'static Rendered {
    rendered()
        .iter()
        .find(|r| r.dir == dir)
        .unwrap_or_else(|| panic!("no kustomization in example/{dir}"))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn every_example_renders_offline_and_creates_the_namespaces_it_uses() {
    if !kubectl() {
        return;
    }
    let all = rendered();
    let dirs: Vec<&str> = all.iter().map(|r| r.dir.as_str()).collect();
    // The Flux v2 example, its clusters' parts, the legacy sidecar and the others all render.
    for dir in [
        "flux-v2",
        "flux-v2/clusters/cluster-a/receiver",
        "flux-v2/clusters/cluster-a/flux-system",
        "flux-v2/clusters/cluster-b/receiver",
        "flux-v2/clusters/cluster-b/flux-system",
        "flux-v1-sidecar",
        "registry-mirror",
        "monitoring",
        "ngrok",
    ] {
        assert!(dirs.contains(&dir), "{dir} not among {dirs:?}");
    }
    let created: BTreeSet<&str> = all
        .iter()
        .flat_map(|r| &r.docs)
        .filter(|d| d["kind"] == "Namespace")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    for r in all {
        assert!(!r.docs.is_empty(), "{} renders nothing", r.dir);
        for doc in r.docs.iter().filter(|d| d["kind"] != "Namespace") {
            let what = format!("{}: {} {}", r.dir, doc["kind"], doc["metadata"]["name"]);
            let namespace = doc["metadata"]["namespace"]
                .as_str()
                .unwrap_or_else(|| panic!("{what} has no namespace"));
            assert!(
                created.contains(namespace),
                "{what} is in namespace {namespace}, which no example creates"
            );
        }
    }
}

/// API groups of custom resources: Kubernetes' schemas do not know them.
const CUSTOM_GROUPS: &[&str] = &[
    "notification.toolkit.fluxcd.io",
    "source.toolkit.fluxcd.io",
    "image.toolkit.fluxcd.io",
    "kustomize.toolkit.fluxcd.io",
    "monitoring.coreos.com",
];

#[test]
fn rendered_kubernetes_kinds_validate_against_a_current_kubernetes() {
    if !kubectl() || python_path().is_none() {
        return;
    }
    let docs: Vec<Value> = rendered()
        .iter()
        .flat_map(|r| {
            r.docs
                .iter()
                .map(|d| json!({"where": format!("example/{}", r.dir), "doc": d}))
        })
        .collect();
    let script = r#"
import json, sys
import kubernetes_validate
from kubernetes_validate.utils import latest_version
items, custom = json.load(sys.stdin)
version = latest_version()
out = {"version": version, "results": []}
for item in items:
    doc = item["doc"]
    group = doc["apiVersion"].rsplit("/", 1)[0] if "/" in doc["apiVersion"] else ""
    result = {"where": item["where"], "kind": doc["kind"], "name": doc["metadata"]["name"]}
    if group in custom:
        result["status"] = "custom"
    else:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            result["status"] = "ok"
        except Exception as e:
            result["status"] = "invalid: %s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
    out["results"].append(result)
print(json.dumps(out))
"#;
    let out = python(script, &json!([docs, CUSTOM_GROUPS]));
    let version = out["version"].as_str().unwrap();
    let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    assert!(minor >= 33, "validated against Kubernetes {version}");
    let results = out["results"].as_array().unwrap();
    let mut validated = BTreeSet::new();
    for result in results {
        let status = result["status"].as_str().unwrap();
        assert!(
            status == "ok" || status == "custom",
            "{} {} {} (Kubernetes {version}): {status}",
            result["where"],
            result["kind"],
            result["name"]
        );
        if status == "ok" {
            validated.insert(result["kind"].as_str().unwrap().to_owned());
        }
    }
    for kind in [
        "Namespace",
        "StatefulSet",
        "Deployment",
        "Service",
        "Ingress",
        "Secret",
        "ConfigMap",
        "NetworkPolicy",
    ] {
        assert!(
            validated.contains(kind),
            "no {kind} validated: {validated:?}"
        );
    }
    // Custom resources: what Kubernetes cannot check, checked here.
    for result in results.iter().filter(|r| r["status"] == "custom") {
        let kind = result["kind"].as_str().unwrap();
        assert!(
            [
                "Receiver",
                "ImageRepository",
                "GitRepository",
                "Kustomization",
                "PrometheusRule",
                "PodMonitor"
            ]
            .contains(&kind),
            "unexpected custom resource {kind}"
        );
    }
}

/// A label selector as Kubernetes reads one (matchLabels; the examples use nothing else).
fn selects(selector: &Value, labels: &BTreeMap<&str, &str>) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "matchExpressions: not evaluated here"
    );
    selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k.as_str()).copied() == v.as_str())
}

/// Who calls notification-controller's webhook receiver.
struct Caller {
    what: &'static str,
    /// A pod's namespace and its labels, or None for an address outside the cluster.
    pod: Option<(&'static str, BTreeMap<&'static str, &'static str>)>,
    ip: Option<Ipv4Addr>,
}

fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').unwrap();
    let net: Ipv4Addr = net.parse().unwrap();
    let bits: u32 = bits.parse().unwrap();
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn peer_matches(peer: &Value, policy_namespace: &str, caller: &Caller) -> bool {
    if let Some(block) = peer.get("ipBlock") {
        let Some(ip) = caller.ip else { return false };
        let except = block["except"].as_array().into_iter().flatten();
        return in_cidr(ip, block["cidr"].as_str().unwrap())
            && !except.into_iter().any(|e| in_cidr(ip, e.as_str().unwrap()));
    }
    let Some((namespace, labels)) = &caller.pod else {
        return false; // pod and namespace selectors match pods of this cluster only
    };
    let ns_labels = BTreeMap::from([("kubernetes.io/metadata.name", *namespace)]);
    let pod_ok = peer
        .get("podSelector")
        .is_none_or(|selector| selects(selector, labels));
    match peer.get("namespaceSelector") {
        Some(selector) => selects(selector, &ns_labels) && pod_ok,
        None => *namespace == policy_namespace && pod_ok,
    }
}

/// Whether the policies let `caller` reach the pod labelled `target` in `namespace` on TCP
/// `port`: the pod is isolated once any policy selects it for ingress, and then admitted when
/// any rule of any of them admits the caller (policies add up).
fn admitted(
    policies: &[&Value],
    namespace: &str,
    target: &BTreeMap<&str, &str>,
    port: u64,
    caller: &Caller,
) -> bool {
    let selecting: Vec<&&Value> = policies
        .iter()
        .filter(|p| p["metadata"]["namespace"] == namespace)
        .filter(|p| selects(&p["spec"]["podSelector"], target))
        .filter(|p| {
            p["spec"]["policyTypes"]
                .as_array()
                .is_none_or(|types| types.iter().any(|t| t == "Ingress"))
        })
        .collect();
    if selecting.is_empty() {
        return true;
    }
    selecting.iter().any(|policy| {
        policy["spec"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|rule| {
                let port_ok = rule["ports"].as_array().is_none_or(|ports| {
                    ports.iter().any(|p| {
                        p["protocol"].as_str().unwrap_or("TCP") == "TCP"
                            && p["port"].as_u64().expect("numeric ports") == port
                    })
                });
                let from_ok = rule["from"].as_array().is_none_or(|peers| {
                    peers.is_empty()
                        || peers.iter().any(|peer| {
                            peer_matches(
                                peer,
                                policy["metadata"]["namespace"].as_str().unwrap(),
                                caller,
                            )
                        })
                });
                port_ok && from_ok
            })
    })
}

#[test]
fn only_flux_recv_reaches_the_webhook_receiver() {
    if !kubectl() {
        return;
    }
    // The notification-controller pod and its webhook port, as Flux's install labels them.
    let target = BTreeMap::from([("app", "notification-controller")]);
    let port = 9292;
    // The address cluster-b's load balancer admits: cluster-a's egress, where flux-recv runs.
    let service =
        yaml_file(&root().join("example/flux-v2/clusters/cluster-b/receiver/webhook-service.yaml"));
    let range = service["spec"]["loadBalancerSourceRanges"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let egress: Ipv4Addr = range.split('/').next().unwrap().parse().unwrap();
    let other_ip = Ipv4Addr::from(u32::from(egress) ^ 0x100);
    let flux_recv_labels = BTreeMap::from([("app.kubernetes.io/name", "flux-recv")]);
    let flux_recv_namespace = find(&rendered_dir("flux-v2").docs, "Namespace", "flux-recv");
    let flux_recv_pod = rendered_dir("flux-v2")
        .docs
        .iter()
        .find(|d| d["kind"] == "StatefulSet")
        .unwrap()["spec"]["template"]["metadata"]["labels"]
        .clone();
    // The callers' labels are the rendered workload's.
    assert_eq!(
        flux_recv_pod["app.kubernetes.io/name"], "flux-recv",
        "{flux_recv_pod}"
    );
    assert_eq!(flux_recv_namespace["metadata"]["name"], "flux-recv");
    let callers = [
        Caller {
            what: "flux-recv",
            pod: Some(("flux-recv", flux_recv_labels.clone())),
            ip: None,
        },
        Caller {
            what: "another pod in flux-recv's namespace",
            pod: Some(("flux-recv", BTreeMap::from([("app", "debug")]))),
            ip: None,
        },
        Caller {
            what: "a pod labelled as flux-recv in another namespace",
            pod: Some(("default", flux_recv_labels.clone())),
            ip: None,
        },
        Caller {
            what: "any pod in default",
            pod: Some(("default", BTreeMap::from([("app", "web")]))),
            ip: None,
        },
        Caller {
            what: "an ingress controller",
            pod: Some((
                "ingress-nginx",
                BTreeMap::from([("app.kubernetes.io/name", "ingress-nginx")]),
            )),
            ip: None,
        },
        Caller {
            what: "a Flux controller in flux-system (Flux's allow-egress)",
            pod: Some((
                "flux-system",
                BTreeMap::from([("app", "source-controller")]),
            )),
            ip: None,
        },
        Caller {
            what: "cluster-a's egress address",
            pod: None,
            ip: Some(egress),
        },
        Caller {
            what: "another address",
            pod: None,
            ip: Some(other_ip),
        },
    ];
    let policies = |dir: &str| -> Vec<Value> {
        rendered_dir(dir)
            .docs
            .iter()
            .filter(|d| d["kind"] == "NetworkPolicy")
            .cloned()
            .collect()
    };
    let who = |policies: &[Value]| -> BTreeSet<&'static str> {
        let refs: Vec<&Value> = policies.iter().collect();
        callers
            .iter()
            .filter(|c| admitted(&refs, "flux-system", &target, port, c))
            .map(|c| c.what)
            .collect()
    };
    // Flux's own policies, unpatched, admit every pod of the cluster: the hole the patch closes.
    let stock = yaml_docs(&read(
        &root().join("tests/fixtures/flux2/gotk-components.yaml"),
    ));
    let stock: Vec<Value> = stock
        .into_iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .collect();
    let stock_admits = who(&stock);
    assert!(
        stock_admits.contains("any pod in default"),
        "{stock_admits:?}"
    );
    let flux_system = "a Flux controller in flux-system (Flux's allow-egress)";
    let cluster_a = who(&policies("flux-v2/clusters/cluster-a/flux-system"));
    assert_eq!(
        cluster_a,
        BTreeSet::from(["flux-recv", flux_system]),
        "cluster-a"
    );
    let cluster_b = who(&policies("flux-v2/clusters/cluster-b/flux-system"));
    assert_eq!(
        cluster_b,
        BTreeSet::from(["cluster-a's egress address", flux_system]),
        "cluster-b"
    );
    // The patch replaced Flux's policy of that name; it did not add one beside it.
    for dir in [
        "flux-v2/clusters/cluster-a/flux-system",
        "flux-v2/clusters/cluster-b/flux-system",
    ] {
        let names: Vec<String> = policies(dir)
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names.iter().filter(|n| *n == "allow-webhooks").count(),
            1,
            "{dir}: {names:?}"
        );
    }
}

/// One delivery a Receiver's filter is tried on, and whether it must select the resource.
struct FilterCase {
    change: Change,
    /// The resource the filter is evaluated for (`res`: what notification-controller passes, the
    /// object's kind and metadata).
    resource: (&'static str, &'static str),
    selected: bool,
}

fn git(url: &str, git_ref: &str) -> Change {
    Change::git(url, git_ref)
}

fn image(reference: &str) -> Change {
    Change::image(reference).expect("an image reference")
}

/// What each filter's comment says it selects, as cases: (where, Receiver namespace/name) →
/// cases. cluster-a's and the README's: a push to main of github.com/acme/fleet-infra as GitHub
/// names it. cluster-b's: the ImageRepository named after the pushed image of
/// harbor.acme.example/team-b.
fn filter_cases() -> BTreeMap<String, Vec<FilterCase>> {
    let fleet = |change: Change, selected: bool| FilterCase {
        change,
        resource: ("GitRepository", "flux-system"),
        selected,
    };
    let fleet_cases = || {
        vec![
            fleet(
                git("git@github.com:acme/fleet-infra.git", "refs/heads/main"),
                true,
            ),
            fleet(
                git("git@github.com:acme/fleet-infra.git", "refs/heads/dev"),
                false,
            ),
            fleet(
                git("git@github.com:acme/fleet-infra.git", "refs/tags/v1.0.0"),
                false,
            ),
            fleet(
                git("git@github.com:acme/other.git", "refs/heads/main"),
                false,
            ),
            fleet(
                git("git@github.com:notacme/fleet-infra.git", "refs/heads/main"),
                false,
            ),
            fleet(image("ghcr.io/acme/fleet-infra:1.0"), false),
        ]
    };
    let repo = |change: Change, name: &'static str, selected: bool| FilterCase {
        change,
        resource: ("ImageRepository", name),
        selected,
    };
    let images = vec![
        repo(image("harbor.acme.example/team-b/podinfo:6.5.1"), "podinfo", true),
        repo(image("harbor.acme.example/team-b/podinfo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), "podinfo", true),
        repo(image("harbor.acme.example/team-b/podinfo:6.5.1"), "frontend", false),
        repo(image("harbor.acme.example/team-b/frontend:2"), "frontend", true),
        repo(image("harbor.acme.example/team-a/podinfo:6.5.1"), "podinfo", false),
        repo(image("ghcr.io/team-b/podinfo:6.5.1"), "podinfo", false),
        repo(git("git@github.com:acme/fleet-infra.git", "refs/heads/main"), "podinfo", false),
    ];
    BTreeMap::from([
        (
            "example/flux-v2/clusters/cluster-a/receiver flux-system/flux-recv".to_owned(),
            fleet_cases(),
        ),
        (
            "example/flux-v2/clusters/cluster-b/receiver flux-system/flux-recv".to_owned(),
            images,
        ),
        ("README.md flux-system/flux-recv".to_owned(), fleet_cases()),
    ])
}

/// Every Receiver with a resourceFilter: in the rendered examples, and in the README's YAML.
fn resource_filters() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut add = |place: &str, doc: &Value| {
        if doc["kind"] != "Receiver" {
            return;
        }
        if let Some(filter) = doc["spec"]["resourceFilter"].as_str() {
            let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("default");
            let key = format!(
                "{place} {namespace}/{}",
                doc["metadata"]["name"].as_str().unwrap()
            );
            assert!(
                found.insert(key.clone(), filter.to_owned()).is_none(),
                "{key} twice"
            );
        }
    };
    for r in rendered() {
        for doc in &r.docs {
            add(&format!("example/{}", r.dir), doc);
        }
    }
    let readme = read(&root().join("README.md"));
    for block in readme.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        if block.contains("kind: Receiver") {
            for doc in yaml_docs(block) {
                add("README.md", &doc);
            }
        }
    }
    found
}

#[test]
fn every_resource_filter_selects_what_its_comment_says() {
    if !kubectl() || python_path().is_none() {
        return;
    }
    let filters = resource_filters();
    let cases = filter_cases();
    assert_eq!(
        filters.keys().collect::<Vec<_>>(),
        cases.keys().collect::<Vec<_>>(),
        "every resourceFilter has its cases here, and every case its filter"
    );
    let mut items = Vec::new();
    for (place, filter) in &filters {
        for case in &cases[place] {
            let req: Value = serde_json::from_slice(&case.change.to_json()).unwrap();
            let (kind, name) = case.resource;
            let res = json!({"kind": kind, "metadata": {"name": name, "namespace": "flux-system"}});
            items.push(json!({
                "place": place, "expr": filter, "req": req, "res": res, "want": case.selected,
            }));
        }
    }
    // celpy evaluates the expression as notification-controller does: variables `req` (the
    // JSON body) and `res` (the resource); a result that is not a boolean (an error, such as a
    // missing field) is reported as such.
    let script = r#"
import json, sys
import celpy
env = celpy.Environment()
out = []
for item in json.load(sys.stdin):
    program = env.program(env.compile(item["expr"]))
    try:
        got = program.evaluate(celpy.json_to_cel({"req": item["req"], "res": item["res"]}))
        got = bool(got) if isinstance(got, celpy.celtypes.BoolType) else "not a boolean: %r" % (got,)
    except Exception as e:
        got = "error: %s" % e
    out.append(got)
print(json.dumps(out))
"#;
    let results = python(script, &Value::Array(items.clone()));
    let mut failures = Vec::new();
    for (item, got) in items.iter().zip(results.as_array().unwrap()) {
        if got != &item["want"] {
            failures.push(format!(
                "{}: req {} res {} → {got}, want {}",
                item["place"], item["req"], item["res"], item["want"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Each filter both selects and refuses something.
    for (place, list) in &cases {
        assert!(
            list.iter().any(|c| c.selected) && list.iter().any(|c| !c.selected),
            "{place}"
        );
    }
}

fn promtool() -> bool {
    let ok = common::runs("promtool", &["--version"]);
    if !ok {
        common::skip_without(
            "promtool",
            "apt-get install prometheus (Debian ships promtool in it)",
        );
    }
    ok
}

/// The PrometheusRule's alert rules, as a rules file for promtool.
fn rules() -> Value {
    let rule = yaml_file(&root().join("example/monitoring/prometheusrule.yaml"));
    assert_eq!(rule["kind"], "PrometheusRule");
    json!({"groups": rule["spec"]["groups"]})
}

fn alert_names(rules: &Value) -> BTreeSet<String> {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn alert_rules_pass_promtool_and_each_fires_in_its_test() {
    if !promtool() {
        return;
    }
    let dir = common::temp_dir("promtool");
    let rules = rules();
    std::fs::write(
        dir.join("rules.yaml"),
        serde_yaml_ng::to_string(&rules).unwrap(),
    )
    .unwrap();
    let test_file = root().join("tests/fixtures/monitoring/rules.test.yaml");
    std::fs::copy(&test_file, dir.join("rules.test.yaml")).unwrap();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "rules.test.yaml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert is shown firing at some time, and not firing at another.
    let tests = yaml_file(&test_file);
    let checks: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    let names = alert_names(&rules);
    assert!(names.len() >= 5, "{names:?}");
    for alert in &names {
        let of = |firing: bool| {
            checks.iter().any(|c| {
                c["alertname"] == alert.as_str()
                    && c["exp_alerts"].as_array().unwrap().is_empty() != firing
            })
        };
        assert!(of(true), "{alert} is never shown firing");
        assert!(of(false), "{alert} is never shown quiet");
    }
}

/// Metric names in a PromQL expression: the words that name flux-recv's or the process's.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("flux_recv_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// What a running flux-recv exports: each sample name, with the label names and values it uses.
fn exported() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let config = root().join("example/flux-v2/fluxrecv.yaml");
    let proc = common::Proc::start(&["--config", config.to_str().unwrap()]);
    let text = common::get(proc.addr, "/metrics").body;
    let mut names: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let family = words.next().unwrap().to_owned();
            let suffixes: &[&str] = match words.next() {
                Some("histogram") => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.entry(format!("{family}{suffix}")).or_default();
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, labels) = match line.split_once('{') {
                Some((name, rest)) => (name, rest.split('}').next().unwrap()),
                None => (line.split(' ').next().unwrap(), ""),
            };
            let entry = names.entry(name.to_owned()).or_default();
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap();
                entry
                    .entry(k.to_owned())
                    .or_default()
                    .insert(v.trim_matches('"').to_owned());
            }
        }
    }
    names
}

/// Labels a scrape adds; the binary's series have none of them.
const TARGET_LABELS: &[&str] = &["instance", "job"];
/// Labels whose values come from the config (names of sources and downstreams), or the build.
const CONFIG_LABELS: &[&str] = &["downstream", "source", "version"];

#[test]
fn the_dashboard_and_the_rules_use_only_what_the_binary_exports() {
    let exported = exported();
    for name in [
        "flux_recv_requests_total",
        "flux_recv_redelivery_pending",
        "process_start_time_seconds",
    ] {
        assert!(exported.contains_key(name), "{name}: {exported:?}");
    }
    // The dashboard: valid JSON, every panel queries something, every query names exported
    // metrics only.
    let dashboard: Value = serde_json::from_str(&read(
        &root().join("example/monitoring/flux-recv-dashboard.json"),
    ))
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    let mut used = BTreeSet::new();
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            used.extend(metric_names(target["expr"].as_str().expect("expr")));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            used.extend(metric_names(query));
        }
    }
    // The alert rules.
    let rules = rules();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            used.extend(metric_names(rule["expr"].as_str().unwrap()));
        }
    }
    for name in &used {
        assert!(exported.contains_key(name), "{name} is not exported");
    }
    // The promtool test's input series: exported names, with the binary's label names and (for
    // the labels that are not the config's) values.
    let tests = yaml_file(&root().join("tests/fixtures/monitoring/rules.test.yaml"));
    for test in tests["tests"].as_array().unwrap() {
        for input in test["input_series"].as_array().unwrap() {
            let series = input["series"].as_str().unwrap();
            let (name, labels) = series.split_once('{').unwrap();
            let known = exported
                .get(name)
                .unwrap_or_else(|| panic!("{series}: {name} is not exported"));
            if known.is_empty()
                && labels
                    .trim_end_matches('}')
                    .split(',')
                    .all(|p| TARGET_LABELS.contains(&p.split('=').next().unwrap()))
            {
                continue;
            }
            let mut names = BTreeSet::new();
            for pair in labels.trim_end_matches('}').split(',') {
                let (k, v) = pair.split_once('=').unwrap();
                let v = v.trim_matches('"');
                if TARGET_LABELS.contains(&k) {
                    continue;
                }
                names.insert(k.to_owned());
                if !CONFIG_LABELS.contains(&k) {
                    assert!(
                        known.get(k).is_some_and(|values| values.contains(v)),
                        "{series}: the binary never says {k}={v:?} ({known:?})"
                    );
                }
            }
            let binary: BTreeSet<String> = known.keys().cloned().collect();
            if !binary.is_empty() {
                assert_eq!(names, binary, "{series}: label names");
            }
        }
    }
}
