//! The layering rules (README, Design notes), checked on the source text: every `crate::` (and
//! `super::` that leaves a folder) path in non-test code is an arrow from one layer to another,
//! and no arrow may break a rule. Also: no import circle between the crate's top-level modules,
//! and no file whose non-test code is over 400 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, by top-level module of the crate.
const LAYERS: [(&str, &[&str]); 8] = [
    ("face", &["main", "lib", "app", "cli", "reload", "commands"]),
    ("server", &["server"]),
    ("delivery", &["delivery", "verdict", "tokeninfo"]),
    ("config", &["config"]),
    ("downstream", &["downstream"]),
    ("sources", &["sources"]),
    ("ground", &["change", "signature", "cidr", "text", "sync"]),
    ("watch", &["log", "metrics"]),
];

/// (from, what it must never use, why). A module name or a layer name.
const NEVER: [(&str, &[&str], &str); 10] = [
    (
        "config",
        &["face", "server", "delivery", "watch"],
        "the config is read and validated; it serves, logs and counts nothing",
    ),
    (
        "server",
        &[
            "sources",
            "config",
            "delivery",
            "verdict",
            "downstream",
            "tokeninfo",
        ],
        "the transport calls the handler it is given and knows no provider, config or fluxd",
    ),
    (
        "sources",
        &[
            "config",
            "delivery",
            "verdict",
            "downstream",
            "server",
            "metrics",
            "log",
            "tokeninfo",
        ],
        "providers are pure: no config, no status policy, no calls, no logs",
    ),
    (
        "downstream",
        &[
            "server", "metrics", "log", "sources", "delivery", "config", "verdict",
        ],
        "a downstream sends changes and returns what happened; the caller records it",
    ),
    (
        "watch",
        &[
            "face",
            "server",
            "delivery",
            "downstream",
            "sources",
            "ground",
        ],
        "logs and metrics are leaves: strings in, text out",
    ),
    (
        "ground",
        &[
            "face",
            "server",
            "delivery",
            "downstream",
            "sources",
            "watch",
        ],
        "wire types and MACs stand on nothing",
    ),
    (
        "verdict",
        &[
            "server",
            "sources",
            "downstream",
            "config",
            "delivery",
            "metrics",
            "tokeninfo",
        ],
        "the verdict maps an ending; it asks nobody",
    ),
    (
        "cli",
        &["server", "delivery", "downstream", "config"],
        "the command line holds no request logic",
    ),
    (
        "reload",
        &["server", "delivery", "downstream", "sources"],
        "reload triggers hold no request logic",
    ),
    (
        "main",
        &["server", "delivery", "downstream", "sources", "config"],
        "main.rs only wires",
    ),
];

const MAX_FILE_LINES: usize = 400;

fn layer_of(module: &str) -> &'static str {
    LAYERS
        .iter()
        .find(|(_, modules)| modules.contains(&module))
        .map(|(layer, _)| *layer)
        .unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS"))
}

/// The crate's source files: (top-level module, path relative to src/, non-test text).
fn sources() -> Vec<(String, String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(&src)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if relative.ends_with("/tests.rs") {
                    continue;
                }
                let module = relative.split(['/', '.']).next().unwrap().to_owned();
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((module, relative, code_of(&text)));
            }
        }
    }
    files.sort();
    files
}

/// The text without comments and without its `#[cfg(test)] mod …` blocks.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed == "#[cfg(test)]"
            && lines.peek().is_some_and(|next| {
                next.trim_start().starts_with("mod ")
                    || next.trim_start().starts_with("pub(crate) mod ")
            })
        {
            // A test module runs to the end of the file, or to the next item at its indent.
            let indent = line.len() - trimmed.len();
            let _ = lines.next();
            for rest in lines.by_ref() {
                if rest.len() - rest.trim_start().len() == indent && rest.trim_start() == "}" {
                    break;
                }
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// The top-level modules a file's code names through `crate::`, and through `super::` from a
/// top-level file (which means the crate root).
fn uses(module: &str, relative: &str, code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let top_level = !relative.contains('/');
    let prefixes = [
        ("crate::", true),
        // main.rs is the binary: it names the library by its crate name.
        ("flux_recv::", module == "main"),
        ("super::", top_level && module != "lib"),
    ];
    for (prefix, applies) in prefixes {
        if !applies {
            continue;
        }
        for (i, _) in code.match_indices(prefix) {
            let rest = &code[i + prefix.len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or("").trim())
                    .collect(),
                None => vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")],
            };
            for name in names {
                if !name.is_empty() && name != module && name != "self" {
                    found.insert(name.to_owned());
                }
            }
        }
    }
    found
}

#[test]
fn no_import_breaks_a_layering_rule() {
    let mut broken = Vec::new();
    for (module, relative, code) in sources() {
        for used in uses(&module, &relative, &code) {
            for (from, never, why) in NEVER {
                let applies = from == module || from == layer_of(&module);
                if applies && (never.contains(&used.as_str()) || never.contains(&layer_of(&used))) {
                    broken.push(format!("src/{relative} uses crate::{used}: {why}"));
                }
            }
        }
        if layer_of(&module) == "delivery"
            && (code.contains("std::net") || code.contains("TcpStream"))
        {
            broken.push(format!(
                "src/{relative} touches sockets: the delivery layer never does"
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "layering rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_top_level_modules_import_no_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, relative, code) in sources() {
        if module == "lib" {
            continue;
        }
        graph
            .entry(module.clone())
            .or_default()
            .extend(uses(&module, &relative, &code));
    }
    // Depth-first search for a back edge; the circle is printed when one is found.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn no_file_is_over_400_lines_of_code() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, _, code)| code.lines().count() > MAX_FILE_LINES)
        .map(|(_, relative, code)| format!("src/{relative}: {} lines", code.lines().count()))
        .collect();
    assert!(long.is_empty(), "split these files:\n{}", long.join("\n"));
}

/// The checker itself: an arrow it must see, and test code it must not.
#[test]
fn the_checker_sees_grouped_imports_and_skips_tests() {
    let code = code_of(
        "use crate::{log, metrics::Gauge};\nuse super::Shared;\n// use crate::config;\n#[cfg(test)]\nmod tests {\n    use crate::app;\n}\nfn f() { crate::verdict::verdict(); }\n",
    );
    let found = uses("server", "server/pool.rs", &code);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        vec!["log", "metrics", "verdict"]
    );
}
