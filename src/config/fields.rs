//! The config's known fields, checked before the typed parse so that every unknown field (a
//! typo must not silently disable a check) is reported at once, each with its place.

use serde_yaml_ng::Value;

/// The fields of the config, of an endpoint, of its `gcr:`, and of a downstream.
const TOP: &[&str] = &["fluxRecvVersion", "api", "notify", "endpoints"];
const ENDPOINT: &[&str] = &[
    "source",
    "keyPath",
    "registryHost",
    "gcr",
    "notify",
    "notifyTimeout",
    "requireSignature",
    "allowFrom",
];
const GCR: &[&str] = &[
    "audience",
    "email",
    "tokenInfoURL",
    "insecureAcceptAnyServiceAccount",
];
const DOWNSTREAM: &[&str] = &[
    "name",
    "fluxd",
    "fluxReceiver",
    "keyPath",
    "images",
    "git",
    "branches",
];

/// Every known field, as messages list them.
pub(super) fn known() -> String {
    let mut all: Vec<String> = TOP.iter().map(|f| (*f).to_owned()).collect();
    all.extend(DOWNSTREAM.iter().map(|f| format!("notify[].{f}")));
    all.extend(ENDPOINT.iter().map(|f| format!("endpoints[].{f}")));
    all.extend(GCR.iter().map(|f| format!("endpoints[].gcr.{f}")));
    all.join(", ")
}

/// One message per unknown field, naming where it is and what is known there.
pub(super) fn unknown(file: &str, config: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check(file, "the top level", config, TOP, &mut problems);
    for (i, endpoint) in list(config, "endpoints") {
        let label = format!("endpoints[{i}]");
        check(file, &label, endpoint, ENDPOINT, &mut problems);
        if let Some(gcr) = endpoint.get("gcr") {
            check(file, &format!("{label}.gcr"), gcr, GCR, &mut problems);
        }
    }
    for (i, downstream) in list(config, "notify") {
        check(
            file,
            &format!("notify[{i}]"),
            downstream,
            DOWNSTREAM,
            &mut problems,
        );
    }
    problems
}

fn list<'a>(config: &'a Value, field: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    config
        .get(field)
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .enumerate()
}

fn check(file: &str, place: &str, value: &Value, known: &[&str], problems: &mut Vec<String>) {
    let Some(map) = value.as_mapping() else {
        return;
    };
    for key in map.keys() {
        let name = match key.as_str() {
            Some(name) if known.contains(&name) => continue,
            Some(name) => format!("{name:?}"),
            None => "a field that is not a string".to_owned(),
        };
        problems.push(format!(
            "config file {file}: unknown field {name} in {place}; known there: {}",
            known.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unknown_field_is_named_with_its_place() {
        let yaml = "fluxRecvVersion: 1\napi_url: x\nnotify:\n- nme: a\n  fluxd: http://a\nendpoints:\n- source: GitHub\n  keypath: k\n  gcr:\n    audiences: a\n- source: GitLab\n  keyPath: k\n";
        let value: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let problems = unknown("c.yaml", &value);
        assert_eq!(problems.len(), 4, "{problems:#?}");
        for (field, place) in [
            ("\"api_url\"", "the top level"),
            ("\"nme\"", "notify[0]"),
            ("\"keypath\"", "endpoints[0]"),
            ("\"audiences\"", "endpoints[0].gcr"),
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains(field) && p.contains(&format!("in {place};"))),
                "{field} in {place}: {problems:#?}"
            );
        }
    }

    /// The lists here and the typed structs agree: a config with every known field loads, one
    /// with any other field does not.
    #[test]
    fn the_lists_are_the_structs_fields() {
        let yaml = "fluxRecvVersion: 1\nnotify:\n- name: a\n  fluxReceiver: http://a/hook/81bae876b70513c9decc608eed549977a81afa1c2b6b4080aec256339e792e0f\n  keyPath: t\n  images: [x]\n  git: [y]\n  branches: [z]\n- name: b\n  fluxd: http://b/api/flux\nendpoints:\n- source: GoogleContainerRegistry\n  keyPath: k\n  registryHost: r.example.com\n  notify: [a]\n  notifyTimeout: 0.8\n  allowFrom: [10.0.0.0/8]\n  gcr:\n    audience: a\n    email: e@x\n    tokenInfoURL: http://127.0.0.1:9/\n    insecureAcceptAnyServiceAccount: false\n- source: BitbucketCloud\n  keyPath: k2\n  requireSignature: true\n";
        let value: Value = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(unknown("c.yaml", &value).is_empty());
        let dir = std::env::temp_dir().join(format!("flux-recv-fields-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k"), b"a-key-for-the-fields-test-0123").unwrap();
        std::fs::write(dir.join("k2"), b"another-key-for-the-fields-test").unwrap();
        std::fs::write(dir.join("t"), b"a-token-for-the-fields-test-0123").unwrap();
        let parsed = super::super::parse(yaml.as_bytes(), &dir, "c.yaml");
        assert!(parsed.is_ok(), "{:?}", parsed.err());
        // `api` is known too, though it cannot stand beside `notify`.
        assert!(TOP.contains(&"api"));
    }
}
