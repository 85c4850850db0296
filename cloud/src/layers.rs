//! The crate's layering, checked: every module imports only from modules in layers below
//! its own, so there is no import circle and a rule has one home (`docs/architecture.md`).
//! A new top-level module gets a layer here, or this test fails.
//!
//! It reads the sources (non-test code, outside comments) for `crate::<module>` paths;
//! `cargo modules dependencies --lib -p latchkey-cloud --acyclic` gives the same verdict
//! where that tool is installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules by layer, lowest first. A module may use any module of a lower
/// layer, and none of its own layer or above.
const LAYERS: &[(&str, &[&str])] = &[
    ("primitives", &["crypto", "store", "metrics", "single_flight", "gate", "drain", "listener"]),
    ("errors and sealed columns", &["error", "sealed"]),
    ("providers, audit log, rate limits", &["providers", "audit", "ratelimit"]),
    ("OAuth client, sandbox, configuration", &["oauth", "sandbox", "config"]),
    ("application state, key ring commands", &["state", "keys"]),
    ("org events: the webhook outbox", &["webhooks"]),
    ("access: who is calling, what may they touch; ending grants at providers", &["access", "revocation"]),
    ("grants", &["connections", "refresh"]),
    ("cascades", &["cascade"]),
    ("invitations: joining an org by link, before an account exists", &["invitations"]),
    ("resources", &["orgs", "apps", "pats", "accounts", "connection_health", "webhook_endpoints"]),
    ("flows", &["devices", "consent", "connection_token"]),
    ("HTTP", &["http"]),
    ("serving", &["server"]),
    ("demo", &["demo"]),
    ("command line", &["cli"]),
];

/// Test-only modules, which may use anything.
const TEST_ONLY: &[&str] = &["layers", "test_db"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

/// The top-level module each non-test source file belongs to, with its code.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
            let module = first.trim_end_matches(".rs").to_owned();
            if ["lib", "main"].contains(&module.as_str()) || TEST_ONLY.contains(&module.as_str()) {
                continue;
            }
            // A `tests` file or folder inside a module is test code.
            if relative.components().any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs") {
                continue;
            }
            out.push((module, code_of(&std::fs::read_to_string(&path).unwrap())));
        }
    }
    out
}

/// The file's code without comments and without its `#[cfg(test)]` module, which by this
/// crate's convention closes the file.
fn code_of(source: &str) -> String {
    source
        .lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules named by `crate::x` and `crate::{x, y::z}` paths in `code`.
fn used_modules(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        used.insert(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 || item.is_empty() {
                    item.push(c);
                }
            }
            used.insert(ident(&item));
        } else {
            used.insert(ident(rest));
        }
    }
    used.remove("");
    used
}

/// Module → the other top-level modules it uses.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in sources() {
        let uses: Vec<String> = used_modules(&code).into_iter().filter(|m| *m != module).collect();
        graph.entry(module).or_default().extend(uses);
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<_> = graph().into_keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(unplaced.is_empty(), "give these modules a layer in layers.rs: {unplaced:?}");
}

#[test]
fn modules_import_only_from_lower_layers() {
    let mut upward = Vec::new();
    for (module, uses) in graph() {
        let Some(own) = layer_of(&module) else { continue };
        for used in uses {
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(layer) => upward.push(format!("{module} ({}) uses {used} ({})", LAYERS[own].0, LAYERS[layer].0)),
                None => upward.push(format!("{module} uses {used}, which has no layer")),
            }
        }
    }
    assert!(upward.is_empty(), "imports that do not point down:\n{}", upward.join("\n"));
}

#[test]
fn the_scanner_reads_plain_and_grouped_paths() {
    let code = "use crate::a::B;\nuse crate::{c::D, e, f::{G, h}};\nlet x = crate::i::j();";
    let expected: BTreeSet<String> = ["a", "c", "e", "f", "i"].into_iter().map(String::from).collect();
    assert_eq!(used_modules(code), expected);
}
