//! The shipped deployment files parse and agree with each other and with the binary: Secret
//! name, mount path vs --config, ports, probe paths, Service selector vs pod labels, the
//! hardening fields, Receiver webhook paths vs tokens, and the systemd unit's credentials vs its
//! --config. (tests/examples.rs renders them with kubectl and checks them with real tools.)

mod common;

use std::path::Path;

use common::webhook_path;
use serde_yaml_ng::Value;

fn example(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("example")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&example(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> serde_json::Value {
    serde_json::from_str(&example(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*k],
    })
}

/// An example folder's `fluxrecv.yaml`, loaded, and the files it names with itself, sorted.
fn config_and_files(root: &Path) -> (flux_recv::config::Loaded, Vec<String>) {
    let loaded = flux_recv::config::load(&root.join("fluxrecv.yaml")).expect("the config loads");
    let mut named: Vec<String> = vec!["fluxrecv.yaml".into()];
    named.extend(
        loaded
            .config
            .files()
            .iter()
            .map(|p| p.display().to_string()),
    );
    named.sort();
    (loaded, named)
}

fn string(v: &Value, path: &[&str]) -> String {
    s(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string in {v:?}"))
        .to_owned()
}

#[test]
fn every_manifest_parses() {
    for path in [
        "fluxrecv.yaml",
        "flux-v1-sidecar/kustomization.yaml",
        "flux-v1-sidecar/flux-deployment-patch.yaml",
        "flux-v1-sidecar/service.yaml",
        "flux-v1-sidecar/ingress.yaml",
        "flux-v1-sidecar/fluxrecv.yaml",
        "ngrok/kustomization.yaml",
        "ngrok/deployment.yaml",
    ] {
        let v = yaml(path);
        assert!(v.is_mapping(), "{path}");
    }
}

#[test]
fn kustomization_secret_holds_the_config_and_every_key() {
    let k = yaml("flux-v1-sidecar/kustomization.yaml");
    let generator = &s(&k, &["secretGenerator"])[0];
    assert_eq!(string(generator, &["name"]), "fluxrecv-config");
    assert_eq!(
        s(&k, &["generatorOptions", "disableNameSuffixHash"]),
        &Value::Bool(true)
    );
    let files: Vec<String> = s(generator, &["files"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    assert!(files.contains(&"fluxrecv.yaml".to_owned()));
    // Every key the config names is in the Secret, and the config loads as shipped.
    let loaded = flux_recv::config::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("example/flux-v1-sidecar/fluxrecv.yaml"),
    )
    .expect("example config loads");
    for endpoint in &loaded.config.endpoints {
        let key = endpoint.key_path.display().to_string();
        assert!(files.contains(&key), "{key} not in the secretGenerator");
        assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("example/flux-v1-sidecar")
            .join(&key)
            .exists());
    }
    for file in &files {
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("example/flux-v1-sidecar")
                .join(file)
                .exists(),
            "{file}"
        );
    }
    let resources: Vec<&str> = s(&k, &["resources"])
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(resources.contains(&"service.yaml"));
    assert_eq!(
        string(&s(&k, &["patches"])[0], &["path"]),
        "flux-deployment-patch.yaml"
    );
}

#[test]
fn the_sidecar_patch_agrees_with_the_secret_the_binary_and_the_service() {
    let patch = yaml("flux-v1-sidecar/flux-deployment-patch.yaml");
    assert_eq!(string(&patch, &["kind"]), "Deployment");
    assert_eq!(string(&patch, &["metadata", "name"]), "flux");
    let pod = s(&patch, &["spec", "template", "spec"]);
    let volume = &s(pod, &["volumes"])[0];
    assert_eq!(string(volume, &["secret", "secretName"]), "fluxrecv-config");
    // Written `0440` as Kubernetes' YAML 1.1 reads it (octal); a YAML 1.2 parser sees a string.
    let mode = match s(volume, &["secret", "defaultMode"]) {
        Value::String(text) => u64::from_str_radix(text.trim_start_matches("0o"), 8).unwrap(),
        other => other.as_u64().unwrap(),
    };
    assert_eq!(mode, 0o440, "defaultMode");
    assert_eq!(
        mode & 0o007,
        0,
        "the Secret must not be world-readable: {mode:o}"
    );
    let recv = s(pod, &["containers"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "recv")
        .expect("a recv container");
    let mount = s(recv, &["volumeMounts"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the Secret volume is mounted");
    let mount_path = string(mount, &["mountPath"]);
    let args: Vec<String> = s(recv, &["args"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert!(
        args.contains(&format!("--config={mount_path}/fluxrecv.yaml")),
        "{args:?} vs {mount_path}"
    );
    // Every arg is one the binary accepts: `flux-recv check` would reject unknown ones with 2.
    for arg in &args {
        let flag = arg.split('=').next().unwrap();
        assert!(common::flags().contains(&flag), "unknown flag {flag}");
    }
    let port = &s(recv, &["ports"])[0];
    assert_eq!(s(port, &["containerPort"]).as_u64(), Some(8080));
    let port_name = string(port, &["name"]);
    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
        assert_eq!(string(recv, &[probe, "httpGet", "path"]), path);
        assert_eq!(string(recv, &[probe, "httpGet", "port"]), port_name);
    }
    let sc = s(recv, &["securityContext"]);
    assert_eq!(sc["runAsNonRoot"], Value::Bool(true));
    assert_ne!(sc["runAsUser"].as_u64(), Some(0));
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(s(sc, &["capabilities", "drop"])[0], "ALL");
    assert!(s(recv, &["resources", "limits", "memory"]).is_string());
    assert!(s(recv, &["resources", "requests", "memory"]).is_string());

    let service = yaml("flux-v1-sidecar/service.yaml");
    assert_eq!(string(&service, &["metadata", "name"]), "flux-recv");
    let svc_port = &s(&service, &["spec", "ports"])[0];
    assert_eq!(s(svc_port, &["port"]).as_u64(), Some(8080));
    assert_eq!(string(svc_port, &["targetPort"]), port_name);
    let labels = s(&patch, &["spec", "template", "metadata", "labels"])
        .as_mapping()
        .unwrap();
    for (k, v) in s(&service, &["spec", "selector"]).as_mapping().unwrap() {
        assert_eq!(
            labels.get(k),
            Some(v),
            "Service selector {k:?} not on the pod"
        );
    }

    let ingress = yaml("flux-v1-sidecar/ingress.yaml");
    let backend = s(
        &ingress,
        &[
            "spec", "rules", "0", "http", "paths", "0", "backend", "service",
        ],
    );
    assert_eq!(string(backend, &["name"]), "flux-recv");
    assert_eq!(
        string(backend, &["port", "name"]),
        string(svc_port, &["name"])
    );
    assert_eq!(
        string(
            &ingress,
            &["spec", "rules", "0", "http", "paths", "0", "path"]
        ),
        "/hook/"
    );
}

#[test]
fn ngrok_points_at_the_service() {
    let deployment = yaml("ngrok/deployment.yaml");
    let args = s(
        &deployment,
        &["spec", "template", "spec", "containers", "0", "args"],
    );
    // flux-recv's Service of example/flux-v2, in its namespace.
    let service = yaml("flux-v2/service.yaml");
    let namespace = string(&yaml("flux-v2/kustomization.yaml"), &["namespace"]);
    let url = format!(
        "http://{}.{namespace}.svc:{}",
        string(&service, &["metadata", "name"]),
        s(&service, &["spec", "ports", "0", "port"])
            .as_u64()
            .unwrap()
    );
    assert!(
        args.as_sequence()
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some(url.as_str())),
        "{args:?}"
    );
    let k = yaml("ngrok/kustomization.yaml");
    let token = &s(&k, &["secretGenerator"])[0];
    let env = s(
        &deployment,
        &[
            "spec",
            "template",
            "spec",
            "containers",
            "0",
            "env",
            "0",
            "valueFrom",
            "secretKeyRef",
        ],
    );
    assert_eq!(string(env, &["name"]), string(token, &["name"]));
}

#[test]
fn the_systemd_unit_loads_what_its_config_names() {
    let unit = example("systemd/flux-recv.service");
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    let credentials: Vec<String> = value("LoadCredential")
        .iter()
        .map(|c| c.split(':').next().unwrap().to_owned())
        .collect();
    let exec = value("ExecStart").join(" ");
    assert!(
        exec.contains("--config=${CREDENTIALS_DIRECTORY}/fluxrecv.yaml"),
        "{exec}"
    );
    assert!(credentials.contains(&"fluxrecv.yaml".to_owned()));
    for (key, want) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6"),
    ] {
        assert_eq!(value(key), vec![want.to_owned()], "{key}");
    }
    // Every LoadCredential reads from /etc/flux-recv/.
    for line in value("LoadCredential") {
        assert!(
            line.split(':')
                .nth(1)
                .unwrap()
                .starts_with("/etc/flux-recv/"),
            "{line}"
        );
    }
}

/// Kubernetes' strategic merge, as far as the sidecar patch uses it: maps merge key by key, a
/// null removes the key, and `containers` merge by `name`; anything else is replaced.
fn strategic_merge(base: &Value, patch: &Value) -> Value {
    match (base, patch) {
        (Value::Mapping(base), Value::Mapping(patch)) => {
            let mut merged = base.clone();
            for (key, value) in patch {
                if value.is_null() {
                    merged.remove(key);
                } else if key == "containers" {
                    merged.insert(key.clone(), merge_by_name(&base[key.clone()], value));
                } else {
                    let old = base.get(key).cloned().unwrap_or(Value::Null);
                    merged.insert(key.clone(), strategic_merge(&old, value));
                }
            }
            Value::Mapping(merged)
        }
        (_, patch) => patch.clone(),
    }
}

fn merge_by_name(base: &Value, patch: &Value) -> Value {
    let mut merged: Vec<Value> = base.as_sequence().cloned().unwrap_or_default();
    for item in patch.as_sequence().into_iter().flatten() {
        match merged.iter_mut().find(|c| c["name"] == item["name"]) {
            Some(existing) => *existing = strategic_merge(existing, item),
            None => merged.push(item.clone()),
        }
    }
    Value::Sequence(merged)
}

#[test]
fn once_fluxd_listens_on_localhost_no_probe_reaches_for_its_api_on_the_pod_ip() {
    let base: Value =
        serde_yaml_ng::from_str(include_str!("fixtures/flux/flux-deployment.yaml")).unwrap();
    let rendered = strategic_merge(&base, &yaml("flux-v1-sidecar/flux-deployment-patch.yaml"));
    let template = s(&rendered, &["spec", "template"]);
    let containers = s(template, &["spec", "containers"]).as_sequence().unwrap();
    assert_eq!(containers.len(), 2, "fluxd and recv");
    let fluxd = containers.iter().find(|c| c["name"] == "flux").unwrap();
    for probe in ["livenessProbe", "readinessProbe"] {
        let probe_text = serde_yaml_ng::to_string(&fluxd[probe]).unwrap();
        assert!(
            fluxd[probe]["httpGet"].is_null(),
            "{probe} still has httpGet: {probe_text}"
        );
        let command: Vec<&str> = s(fluxd, &[probe, "exec", "command"])
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(command[0], "wget", "{probe}");
        assert!(
            command
                .last()
                .unwrap()
                .starts_with("http://127.0.0.1:3030/"),
            "{probe}: {command:?}"
        );
        // What the stock probe waited for stays.
        assert_eq!(s(fluxd, &[probe, "timeoutSeconds"]).as_u64(), Some(5));
    }
    // The recv container is added, fluxd's image and args are left alone.
    assert_eq!(string(fluxd, &["image"]), "docker.io/fluxcd/flux:1.25.4");
    assert!(containers.iter().any(|c| c["name"] == "recv"));
    // kubectl logs/exec without -c pick fluxd; the upstream annotations stay.
    let annotations = s(template, &["metadata", "annotations"]);
    assert_eq!(
        string(annotations, &["kubectl.kubernetes.io/default-container"]),
        "flux"
    );
    assert_eq!(string(annotations, &["prometheus.io/port"]), "3031");
}

#[test]
fn the_recv_image_is_this_projects_set_by_the_kustomization() {
    let mut images_used = Vec::new();
    for (workload, kustomization) in [
        (
            "flux-v1-sidecar/flux-deployment-patch.yaml",
            "flux-v1-sidecar/kustomization.yaml",
        ),
        ("flux-v2/statefulset.yaml", "flux-v2/kustomization.yaml"),
    ] {
        let workload = yaml(workload);
        let containers = s(&workload, &["spec", "template", "spec", "containers"])
            .as_sequence()
            .unwrap();
        let recv = containers.iter().find(|c| c["name"] == "recv").unwrap();
        let image = string(recv, &["image"]);
        let name = image.split(':').next().unwrap().to_owned();
        let k = yaml(kustomization);
        let images = s(&k, &["images"]).as_sequence().unwrap();
        assert!(
            images.iter().any(|i| i["name"] == name.as_str()),
            "{name} not in {kustomization}'s images"
        );
        images_used.push(image);
    }
    images_used.dedup();
    assert_eq!(images_used.len(), 1, "{images_used:?}");
    let image = images_used.remove(0);
    let name = image.split(':').next().unwrap();
    assert!(
        !image.contains("fluxcd/"),
        "not the Go project's image: {image}"
    );
    // The same name the Dockerfile and the README build.
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("-t {image}")),
        "the Dockerfile builds {image}"
    );
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("-t {image}")),
        "the README builds {image}"
    );
    assert!(
        readme.contains(&format!("kustomize edit set image {name}=")),
        "the README sets the image"
    );
}

#[test]
fn the_systemd_example_is_whole_for_its_one_endpoint_config() {
    let unit = example("systemd/flux-recv.service");
    let credentials: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("LoadCredential="))
        .map(|c| c.split(':').next().unwrap())
        .collect();
    let config = yaml("systemd/fluxrecv.yaml");
    let mut needed = vec!["fluxrecv.yaml".to_owned()];
    for section in ["endpoints", "notify"] {
        for entry in s(&config, &[section]).as_sequence().into_iter().flatten() {
            needed.push(string(entry, &["keyPath"]));
        }
    }
    let mut credentials: Vec<String> = credentials.into_iter().map(str::to_owned).collect();
    credentials.sort();
    needed.sort();
    assert_eq!(
        credentials, needed,
        "LoadCredential lines vs the files the config names"
    );
    // The README installs exactly those files.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let install = format!("sudo install -m 0600 {} /etc/flux-recv/", needed.join(" "));
    assert!(readme.contains(&install), "the README lacks `{install}`");
    // /metrics stays on loopback.
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.contains("--listen-metrics=127.0.0.1:"), "{exec}");
    // The config loads once its key exists (the Receiver's token is the sample beside it).
    let dir = common::temp_dir("systemd-example");
    for file in ["fluxrecv.yaml", "cluster-a.token"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("example/systemd")
                .join(file),
            dir.join(file),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("github.key"),
        b"a-random-key-for-this-test-0123456789",
    )
    .unwrap();
    assert!(flux_recv::config::load(&dir.join("fluxrecv.yaml")).is_ok());
}

#[test]
fn the_registry_mirror_example_is_whole() {
    for path in [
        "registry-mirror/kustomization.yaml",
        "registry-mirror/statefulset.yaml",
        "registry-mirror/service.yaml",
        "registry-mirror/fluxrecv.yaml",
        "registry-mirror/senders/distribution-config.yml",
    ] {
        assert!(yaml(path).is_mapping(), "{path}");
    }
    let zot = json("registry-mirror/senders/zot-config.json");
    assert!(zot["extensions"]["events"]["enable"] == true, "{zot}");
    let harbor = json("registry-mirror/senders/harbor-policy.json");
    assert_eq!(harbor["event_types"][0], "PUSH_ARTIFACT", "{harbor}");
    assert_eq!(
        harbor["targets"][0]["payload_format"], "CloudEvents",
        "{harbor}"
    );
    let jfrog = json("registry-mirror/senders/artifactory-webhook.json");
    assert_eq!(jfrog["event_filter"]["domain"], "docker", "{jfrog}");
    assert_eq!(jfrog["handlers"][0]["handler_type"], "webhook", "{jfrog}");
    // The Secret holds the config and every file it names, and the config loads as shipped.
    let k = yaml("registry-mirror/kustomization.yaml");
    let files: Vec<String> = s(&s(&k, &["secretGenerator"])[0], &["files"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("example/registry-mirror");
    let (loaded, named) = config_and_files(&root);
    let mut secret = files.clone();
    secret.sort();
    assert_eq!(secret, named, "the Secret vs the files the config names");
    for file in &files {
        assert!(root.join(file).exists(), "{file}");
    }
    // Two clusters, one Flux v1 and one Flux v2, fed by a Distribution and a Zot endpoint.
    let sources: Vec<&str> = loaded
        .config
        .endpoints
        .iter()
        .map(|e| e.source.name())
        .collect();
    assert_eq!(sources, ["Distribution", "Zot"]);
    assert_eq!(loaded.config.downstreams.len(), 2);
    // The StatefulSet mounts the Secret where --config points and its volume where --spool
    // does, and the Service selects its pods.
    let deployment = yaml("registry-mirror/statefulset.yaml");
    let claim = &s(&deployment, &["spec", "volumeClaimTemplates"])[0];
    let pod = s(&deployment, &["spec", "template"]);
    let recv = &s(pod, &["spec", "containers"])[0];
    assert_eq!(
        string(recv, &["volumeMounts", "0", "mountPath"]),
        "/etc/fluxrecv"
    );
    assert_eq!(
        string(recv, &["args", "0"]),
        "--config=/etc/fluxrecv/fluxrecv.yaml"
    );
    let service = yaml("registry-mirror/service.yaml");
    for (key, value) in s(&service, &["spec", "selector"]).as_mapping().unwrap() {
        assert_eq!(s(pod, &["metadata", "labels"]).get(key), Some(value));
    }
    // /metrics is not on the port the Service exposes.
    let args: Vec<&str> = s(recv, &["args"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let spool_mount = s(recv, &["volumeMounts"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == s(claim, &["metadata", "name"]).clone())
        .map(|m| string(m, &["mountPath"]))
        .expect("the spool's volume is mounted");
    assert!(
        args.contains(&format!("--spool={spool_mount}").as_str()),
        "{args:?}"
    );
    assert!(
        args.iter().any(|a| a.starts_with("--listen-metrics=")),
        "{args:?}"
    );
}

#[test]
fn the_flux_v2_workload_is_restricted_and_agrees_with_its_secret_service_and_ingress() {
    let k = yaml("flux-v2/kustomization.yaml");
    let namespace = string(&k, &["namespace"]);
    // The namespace is created here, with Pod Security "restricted" enforced.
    let ns = yaml("flux-v2/namespace.yaml");
    assert_eq!(string(&ns, &["metadata", "name"]), namespace);
    assert_eq!(
        string(
            &ns,
            &["metadata", "labels", "pod-security.kubernetes.io/enforce"]
        ),
        "restricted"
    );
    let resources: Vec<&str> = s(&k, &["resources"])
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for file in [
        "namespace.yaml",
        "statefulset.yaml",
        "service.yaml",
        "ingress.yaml",
    ] {
        assert!(resources.contains(&file), "{file} not in {resources:?}");
    }

    let set = yaml("flux-v2/statefulset.yaml");
    assert_eq!(string(&set, &["kind"]), "StatefulSet");
    let pod = s(&set, &["spec", "template", "spec"]);
    let recv = &s(pod, &["containers"])[0];
    // Pod Security "restricted", pod and container level.
    let psc = s(pod, &["securityContext"]);
    assert_eq!(psc["runAsNonRoot"], Value::Bool(true));
    assert_ne!(psc["runAsUser"].as_u64(), Some(0));
    assert_eq!(string(psc, &["seccompProfile", "type"]), "RuntimeDefault");
    let sc = s(recv, &["securityContext"]);
    assert_eq!(sc["runAsNonRoot"], Value::Bool(true));
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(s(sc, &["capabilities", "drop"])[0], "ALL");
    assert_eq!(string(sc, &["seccompProfile", "type"]), "RuntimeDefault");
    assert_eq!(pod["automountServiceAccountToken"], Value::Bool(false));
    assert!(s(recv, &["resources", "limits", "memory"]).is_string());
    assert!(s(recv, &["resources", "requests", "cpu"]).is_string());

    // Args: known flags; --config where the Secret is mounted, --spool where the claim is.
    let args: Vec<String> = s(recv, &["args"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let flags = common::flags();
    for arg in &args {
        let flag = arg.split('=').next().unwrap();
        assert!(flags.contains(&flag), "unknown flag {flag}");
    }
    let value = |flag: &str| -> String {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
            .to_owned()
    };
    let mounts = s(recv, &["volumeMounts"]).as_sequence().unwrap();
    let mount_of = |volume: &str| -> String {
        let mount = mounts
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap_or_else(|| panic!("{volume} is not mounted"));
        string(mount, &["mountPath"])
    };
    let secret_volume = s(pod, &["volumes"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| !v["secret"].is_null())
        .expect("a Secret volume");
    assert_eq!(
        value("--config"),
        format!(
            "{}/fluxrecv.yaml",
            mount_of(secret_volume["name"].as_str().unwrap())
        )
    );
    let claim = &s(&set, &["spec", "volumeClaimTemplates"])[0];
    let spool = value("--spool");
    assert_eq!(spool, "/var/spool/flux-recv");
    assert_eq!(mount_of(&string(claim, &["metadata", "name"])), spool);
    assert_eq!(
        string(claim, &["spec", "accessModes", "0"]),
        "ReadWriteOnce"
    );
    // /metrics is not on the port the Service and the Ingress expose.
    assert!(value("--listen-metrics").ends_with(":9102"));
    // The README's memory worst case for these flags fits under the memory limit.
    let number = |flag: &str| value(flag).parse::<u64>().unwrap();
    let (threads, body) = (number("--threads"), number("--max-body-bytes"));
    let queue = args
        .iter()
        .find_map(|a| a.strip_prefix("--redeliver-max-bytes="))
        .map_or(8 << 20, |n| n.parse::<u64>().unwrap());
    let worst = (3 << 20)
        + number("--max-connections") * (208 << 10)
        + (threads + 1) * body
        + threads * body
        + queue;
    let limit = string(recv, &["resources", "limits", "memory"]);
    let limit: u64 = limit.strip_suffix("Mi").unwrap().parse::<u64>().unwrap() << 20;
    assert!(worst <= limit, "worst case {worst} over the limit {limit}");

    // Probes on the serving port; the Service and the Ingress reach that port, and select the pod.
    let ports = s(recv, &["ports"]).as_sequence().unwrap();
    let recv_port = ports
        .iter()
        .find(|p| p["containerPort"].as_u64() == Some(8080))
        .expect("port 8080");
    let port_name = string(recv_port, &["name"]);
    for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
        assert_eq!(string(recv, &[probe, "httpGet", "path"]), path);
        assert_eq!(string(recv, &[probe, "httpGet", "port"]), port_name);
    }
    // The PodDisruptionBudget selects the same pods.
    let budget = yaml("flux-v2/poddisruptionbudget.yaml");
    for (key, value) in s(&budget, &["spec", "selector", "matchLabels"])
        .as_mapping()
        .unwrap()
    {
        assert_eq!(
            s(&set, &["spec", "template", "metadata", "labels"]).get(key),
            Some(value),
            "PodDisruptionBudget selector {key:?}"
        );
    }
    let service = yaml("flux-v2/service.yaml");
    let svc_port = &s(&service, &["spec", "ports"])[0];
    assert_eq!(string(svc_port, &["targetPort"]), port_name);
    let labels = s(&set, &["spec", "template", "metadata", "labels"]);
    for (key, value) in s(&service, &["spec", "selector"]).as_mapping().unwrap() {
        assert_eq!(labels.get(key), Some(value), "selector {key:?}");
    }
    assert_eq!(
        s(&set, &["spec", "serviceName"]),
        s(&service, &["metadata", "name"])
    );
    let ingress = yaml("flux-v2/ingress.yaml");
    let path = s(&ingress, &["spec", "rules", "0", "http", "paths", "0"]);
    assert_eq!(string(path, &["path"]), "/hook/");
    assert_eq!(
        string(path, &["backend", "service", "name"]),
        string(&service, &["metadata", "name"])
    );

    // The Secret holds the config and exactly the files it names, and the config loads.
    let generator = &s(&k, &["secretGenerator"])[0];
    assert_eq!(
        string(generator, &["name"]),
        string(secret_volume, &["secret", "secretName"])
    );
    let mut files: Vec<String> = s(generator, &["files"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    files.sort();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("example/flux-v2");
    let (loaded, named) = config_and_files(&root);
    assert_eq!(files, named, "the Secret vs the files the config names");
    // Two Flux v2 clusters.
    let kinds: Vec<&str> = loaded
        .config
        .downstreams
        .iter()
        .map(|d| d.kind.word())
        .collect();
    assert_eq!(kinds, ["receiver", "receiver"]);
}

/// Every `fluxReceiver` of every example config ends in the path of the Receiver its comment
/// names, computed from the sample token: a changed token, name or namespace fails here. The
/// comment's `flux-recv receiver-path` line is run as written and prints the same path.
#[test]
fn example_receiver_paths_are_computed_from_their_tokens() {
    let mut checked = 0;
    for config in [
        "flux-v2/fluxrecv.yaml",
        "registry-mirror/fluxrecv.yaml",
        "fluxrecv.yaml",
        "flux-v1-sidecar/fluxrecv.yaml",
        "systemd/fluxrecv.yaml",
    ] {
        let text = example(config);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("example")
            .join(config)
            .parent()
            .unwrap()
            .to_owned();
        let value = yaml(config);
        let comment_lines: Vec<&str> = text.lines().collect();
        for downstream in s(&value, &["notify"]).as_sequence().into_iter().flatten() {
            let Some(url) = downstream["fluxReceiver"].as_str() else {
                continue;
            };
            let name = string(downstream, &["name"]);
            // The comment block right above `- name: <name>`.
            let at = comment_lines
                .iter()
                .position(|l| l.trim() == format!("- name: {name}"))
                .unwrap();
            let command = comment_lines[..at]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with('#'))
                .find_map(|l| l.split_once("flux-recv receiver-path "))
                .map(|(_, args)| args.to_owned())
                .unwrap_or_else(|| panic!("{config}: no receiver-path line above {name}"));
            let words: Vec<&str> = command.split_whitespace().collect();
            let arg = |flag: &str| -> String {
                let i = words.iter().position(|w| *w == flag).unwrap();
                words[i + 1].to_owned()
            };
            assert_eq!(arg("--token-file"), string(downstream, &["keyPath"]));
            let token = std::fs::read(dir.join(arg("--token-file"))).unwrap();
            let expected = webhook_path(&token, &arg("--name"), &arg("--namespace"));
            let path = url.parse::<ureq::http::Uri>().unwrap().path().to_owned();
            assert_eq!(path, expected, "{config}: {name}");
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_flux-recv"))
                .arg("receiver-path")
                .args(&words)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "{config}: {name}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "receiver downstreams in the example configs");
}

/// The Receivers of example/flux-v2/clusters: the name and namespace flux-recv's comments name,
/// and a token Secret generated from the same bytes flux-recv signs with.
#[test]
fn each_clusters_receiver_matches_flux_recvs_downstream() {
    let config = yaml("flux-v2/fluxrecv.yaml");
    for downstream in s(&config, &["notify"]).as_sequence().unwrap() {
        let cluster = string(downstream, &["name"]);
        let folder = format!("flux-v2/clusters/{cluster}/receiver");
        let k = yaml(&format!("{folder}/kustomization.yaml"));
        let namespace = string(&k, &["namespace"]);
        let receiver = yaml(&format!("{folder}/receiver.yaml"));
        assert_eq!(string(&receiver, &["kind"]), "Receiver");
        assert_eq!(
            string(&receiver, &["apiVersion"]),
            "notification.toolkit.fluxcd.io/v1"
        );
        assert_eq!(string(&receiver, &["spec", "type"]), "generic-hmac");
        let secret = string(&receiver, &["spec", "secretRef", "name"]);
        let generator = s(&k, &["secretGenerator"])
            .as_sequence()
            .unwrap()
            .iter()
            .find(|g| g["name"] == secret.as_str())
            .unwrap_or_else(|| panic!("{folder}: no Secret {secret}"));
        // The Secret's key is `token`, from the file `token`.
        assert_eq!(string(generator, &["files", "0"]), "token");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("example");
        let token = std::fs::read(root.join(&folder).join("token")).unwrap();
        let signed_with =
            std::fs::read(root.join("flux-v2").join(string(downstream, &["keyPath"]))).unwrap();
        assert_eq!(token, signed_with, "{cluster}: the two token files differ");
        let path = string(downstream, &["fluxReceiver"])
            .parse::<ureq::http::Uri>()
            .unwrap()
            .path()
            .to_owned();
        assert_eq!(
            path,
            webhook_path(
                &token,
                &string(&receiver, &["metadata", "name"]),
                &namespace
            ),
            "{cluster}"
        );
    }
}
