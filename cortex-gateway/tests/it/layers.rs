//! The gateway's module structure: no import cycle between its top-level
//! modules, and the layers only ever reach down (`http` → `mcp` →
//! `catalog` → `upstream` → `store`). Read from the sources, so a new
//! `crate::` path that breaks either rule fails here.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The layers, top first.
const LAYERS: [&str; 5] = ["http", "mcp", "catalog", "upstream", "store"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source text names through `crate::`, in code
/// (comment lines are skipped), including grouped `use crate::{a, b::c}`.
fn references(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The top-level names of the group: split on commas at depth 0.
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        found.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

/// Module → the other top-level modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            sources(&path, &mut files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path.clone());
        } else {
            continue;
        }
        let mut refs = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            refs.extend(references(&text));
        }
        modules.insert(name, refs);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .into_iter()
        .map(|(m, refs)| {
            let refs = refs
                .into_iter()
                .filter(|r| *r != m && names.contains(r))
                .collect();
            (m, refs)
        })
        .collect()
}

/// A cycle through `start`, if there is one (depth-first search).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if let Some(c) = walk(graph, start, next, path, seen) {
                    return Some(c);
                }
                path.pop();
            }
        }
        None
    }
    walk(
        graph,
        start,
        start,
        &mut vec![start.to_string()],
        &mut BTreeSet::new(),
    )
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    assert!(
        graph.contains_key("http") && graph.contains_key("store"),
        "{graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles between gateway modules: {cycles:#?}"
    );
}

#[test]
fn layers_only_reach_down() {
    let graph = graph();
    for (i, layer) in LAYERS.iter().enumerate() {
        let above: Vec<&str> = LAYERS[..i].to_vec();
        let reached: Vec<&String> = graph[*layer]
            .iter()
            .filter(|m| above.contains(&m.as_str()) || m.as_str() == "config")
            .collect();
        assert!(
            reached.is_empty(),
            "the {layer} layer imports {reached:?}, which sit above it"
        );
    }
}

#[test]
fn the_reference_reader_sees_grouped_and_plain_paths_and_skips_comments() {
    let text = "use crate::{a::X, b, c::{d, e}};\n// crate::f\nlet x = crate::g::h();";
    let got: Vec<String> = references(text).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "g"]);
}
