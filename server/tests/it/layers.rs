//! The server's modules import one way only (docs/architecture.md): leaves, then
//! infrastructure, then domains, then the edges that compose them. This test reads every file
//! of `server/src`, finds what each module imports (`use crate::…`, `super::…` and inline
//! `crate::…` paths; unit tests aside), and fails on an import that runs back up a layer, on one domain
//! importing another, on any circle between the parts, and on a circle between the modules
//! inside a part (a module and its own parent aside: the parent is its children's facade). A module that is given no layer fails too.
//!
//! Run it alone with `cargo test -p marquee-server --test it layers`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Leaf,
    Infrastructure,
    Domain,
    Edge,
}

/// Every part of the server and its layer. A part is a top-level module, or a submodule that
/// sits in another layer than its parent (`http::error` is a leaf inside the `http` edge).
const PARTS: &[(&str, Layer)] = &[
    ("clock", Layer::Leaf),
    ("secret", Layer::Leaf),
    ("rate", Layer::Leaf),
    ("db", Layer::Leaf),
    ("redis", Layer::Leaf),
    ("metrics", Layer::Leaf),
    ("engine", Layer::Leaf),
    ("outgoing", Layer::Leaf),
    ("signature", Layer::Leaf),
    ("ticket_code", Layer::Leaf),
    ("embedded_pg", Layer::Leaf),
    ("http::error", Layer::Leaf),
    ("security", Layer::Leaf),
    ("auth", Layer::Infrastructure),
    ("http::extract", Layer::Infrastructure),
    ("hub", Layer::Infrastructure),
    ("outbox", Layer::Infrastructure),
    ("admission", Layer::Infrastructure),
    ("settlement", Layer::Infrastructure),
    ("audit", Layer::Infrastructure),
    ("walls", Layer::Infrastructure),
    ("booking", Layer::Domain),
    ("waiting_room", Layer::Domain),
    ("payments", Layer::Domain),
    ("tickets", Layer::Domain),
    ("catalog", Layer::Domain),
    ("notify", Layer::Domain),
    ("analytics", Layer::Domain),
    ("sessions", Layer::Domain),
    ("config", Layer::Edge),
    ("node", Layer::Edge),
    ("http", Layer::Edge),
    ("main", Layer::Edge),
    ("", Layer::Edge),
];

/// The part a module belongs to: the longest part that is the module or one of its parents.
fn part_of(module: &str) -> Option<&'static str> {
    PARTS
        .iter()
        .map(|(part, _)| *part)
        .filter(|part| {
            part.is_empty() || module == *part || module.starts_with(&format!("{part}::"))
        })
        .max_by_key(|part| part.len())
        .filter(|part| !part.is_empty() || module.is_empty())
}

fn layer(part: &str) -> Layer {
    PARTS
        .iter()
        .find(|(p, _)| *p == part)
        .map(|(_, l)| *l)
        .expect("a known part")
}

/// The module a source file defines: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// Whether a file is its module's `mod.rs` (or the crate root), whose `super` is one further up.
fn is_facade(file: &Path) -> bool {
    matches!(
        file.file_name().and_then(|n| n.to_str()),
        Some("mod.rs" | "lib.rs")
    )
}

/// The source without comments, string and char literals (their text is not code).
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if let Some(raw) = raw_string_len(rest) {
            i += raw;
            out.push_str("\"\"");
        } else if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if bytes[i] == b'\'' && char_literal_len(rest).is_some() {
            i += char_literal_len(rest).expect("checked");
        } else {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of a raw string literal (`r"…"`, `r#"…"#`) at the start of `s`, if there is one.
fn raw_string_len(s: &str) -> Option<usize> {
    let after_r = s.strip_prefix('r')?;
    let hashes = after_r.len() - after_r.trim_start_matches('#').len();
    let body = after_r[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    Some(1 + hashes + 1 + body.find(&close)? + close.len())
}

/// The length of a char literal at the start of `s` (`'a'`, `'\n'`), not a lifetime.
fn char_literal_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().skip(1);
    let (_, c) = chars.next()?;
    if c == '\\' {
        let end = s[2..].find('\'')?;
        return Some(end + 3);
    }
    let (i, close) = chars.next()?;
    (close == '\'').then_some(i + 1)
}

/// Expands a use tree (`a::{b, c::d}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').expect("balanced braces")];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .flat_map(expand)
        .map(|path| match path.as_str() {
            "self" => prefix.to_owned(),
            _ if prefix.is_empty() => path,
            _ => format!("{prefix}::{path}"),
        })
        .collect()
}

/// Resolves a path written in `module` (`crate::…`, `super::…`, `self::…`) to the module it
/// names, or `None` for anything else (other crates, the standard library).
fn resolve(path: &str, module: &str, facade: bool) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").map(str::trim).collect();
    let mut base: Vec<&str> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    match segments.first().copied() {
        Some("crate" | "marquee_server") => {
            base.clear();
            segments.remove(0);
        }
        Some("super") => {
            // `super` in `a/b.rs` is `a`; in `a/b/mod.rs` (module `a::b`) it is `a` too.
            let _ = facade;
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
        }
        Some("self") => {
            segments.remove(0);
        }
        _ => return None,
    }
    base.extend(segments);
    Some(base.join("::"))
}

/// The modules `file` imports.
fn imports(src: &Path, file: &Path) -> BTreeSet<String> {
    let module = module_of(src, file);
    let facade = is_facade(file);
    let mut code = code_only(&std::fs::read_to_string(file).expect("readable"));
    // Unit tests (`#[cfg(test)] mod tests`, always last in its file) are not part of the
    // module's layering.
    if let Some(at) = code.find("#[cfg(test)]") {
        code.truncate(at);
    }
    let mut paths = Vec::new();
    // `use` statements, with their trees expanded.
    let mut rest = code.as_str();
    while let Some(at) = find_word(rest, "use") {
        let statement = &rest[at + 3..];
        let end = statement.find(';').unwrap_or(statement.len());
        paths.extend(expand(&statement[..end]));
        rest = &statement[end..];
    }
    // Inline paths anywhere in the code.
    for start in ["crate::", "super::", "marquee_server::"] {
        let mut rest = code.as_str();
        while let Some(at) = find_word(rest, start.trim_end_matches("::")) {
            let tail = &rest[at..];
            if tail.starts_with(start) {
                let len = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(tail.len());
                let path = tail[..len].trim_end_matches(':');
                // `crate::{…}` of a use tree is read above; a bare prefix names nothing.
                if path != start.trim_end_matches("::") {
                    paths.push(path.to_owned());
                }
            }
            rest = &tail[start.len().min(tail.len())..];
        }
    }
    paths
        .iter()
        .filter_map(|p| resolve(p, &module, facade))
        .collect()
}

/// The byte offset of `word` in `s` where it stands alone (not inside an identifier).
fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = s[from..].find(word) {
        let at = from + found;
        let before = s[..at].chars().next_back();
        let after = s[at + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !ident(before) && !ident(after) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Every `.rs` file under `dir` (other test modules read the server's source too).
pub(crate) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules that exist, longest match first: `crate::booking::store::commit` names the
/// module `booking::store`.
fn known_module<'a>(modules: &'a BTreeSet<String>, path: &str) -> Option<&'a str> {
    let mut candidate = path;
    loop {
        if let Some(m) = modules.get(candidate) {
            return Some(m);
        }
        match candidate.rfind("::") {
            Some(at) => candidate = &candidate[..at],
            // An item of the crate root (`crate::Node`).
            None => return modules.get("").map(String::as_str),
        }
    }
}

/// A circle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).expect("on the stack");
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(node, graph, &mut state, &mut stack) {
                return Some(cycle);
            }
        }
    }
    None
}

#[test]
fn imports_run_one_way_from_leaves_to_edges() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    modules.insert("main".into());
    let mut problems = Vec::new();
    let mut parts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut inside: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(from) = part_of(&module) else {
            problems.push(format!("{module} is in no layer: add it to PARTS"));
            continue;
        };
        parts.entry(from.to_owned()).or_default();
        for import in imports(&src, file) {
            let Some(target) = known_module(&modules, &import) else {
                continue;
            };
            let Some(to) = part_of(target) else {
                problems.push(format!("{target} is in no layer: add it to PARTS"));
                continue;
            };
            if to == from {
                // Within a part, sibling modules form no circle either. A module and its own
                // ancestors are left out: a parent declares what its children share and
                // assembles them (the `mod.rs` facade), which Rust's layout wants.
                let ancestor = |a: &str, b: &str| a.is_empty() || b.starts_with(&format!("{a}::"));
                if target != module && !ancestor(&module, target) && !ancestor(target, &module) {
                    inside
                        .entry(module.clone())
                        .or_default()
                        .insert(target.to_owned());
                }
                continue;
            }
            if to == "config" && !matches!(from, "node" | "main" | "") {
                problems.push(format!(
                    "{module} imports {target}: only the composition root (node) and main read the settings; take your own Args"
                ));
            }
            let (l_from, l_to) = (layer(from), layer(to));
            if l_to > l_from {
                problems.push(format!(
                    "{module} ({l_from:?}) imports {target} ({l_to:?}): imports run downwards only"
                ));
            }
            if l_from == Layer::Domain && l_to == Layer::Domain {
                problems.push(format!(
                    "{module} imports {target}: domains never import each other (share through infrastructure)"
                ));
            }
            parts
                .entry(from.to_owned())
                .or_default()
                .insert(to.to_owned());
        }
    }
    if let Some(cycle) = find_cycle(&parts) {
        problems.push(format!(
            "the parts import in a circle: {}",
            cycle.join(" -> ")
        ));
    }
    if let Some(cycle) = find_cycle(&inside) {
        problems.push(format!(
            "modules inside a part import in a circle: {}",
            cycle.join(" -> ")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_import_reader_sees_use_trees_super_and_inline_paths_but_not_comments() {
    let source = r#"
        use crate::{auth::Identity, hub::{self, Hub}};
        use super::store;
        // use crate::commented::Out;
        const TEXT: &str = "crate::in_a_string";
        fn f() { crate::clock::now_ms(); }
    "#;
    let dir = std::env::temp_dir().join(format!("layers-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("booking")).unwrap();
    let file = src.join("booking").join("worker.rs");
    std::fs::write(&file, source).unwrap();
    let found = imports(&src, &file);
    std::fs::remove_dir_all(&dir).unwrap();
    let expected: BTreeSet<String> = [
        "auth::Identity",
        "hub",
        "hub::Hub",
        "booking::store",
        "clock::now_ms",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn every_setting_is_listed_in_env_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("../.env.example")).unwrap();
    let mut missing = Vec::new();
    let mut seen = 0;
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("env = \"") {
            let name = &text[i + 7..];
            let name = &name[..name.find('"').unwrap()];
            seen += 1;
            if !example.contains(&format!("{name}=")) {
                missing.push(name.to_owned());
            }
        }
    }
    assert!(seen > 50, "the settings were read ({seen})");
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
}
