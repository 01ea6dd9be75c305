//! The engine's import circles, for `cargo xtask tidy`: every `crate::X`
//! path in a file of `crates/bamboo-engine/src` is an edge from the file's
//! top-level module to `X` (a root re-export such as `crate::Engine` is an
//! edge to `lib`). A circle among modules outside the facade (the API layer,
//! which may use everything) fails tidy, named module by module; so does a
//! run-path module that names the API layer. Unit tests (`tests.rs`, and
//! what follows `#[cfg(test)]`) are left out: they may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

use crate::tidy::Problem;

/// The engine's sources, relative to the workspace root.
pub const ENGINE_SRC: &str = "crates/bamboo-engine/src";

/// The API layer: these modules may depend on every other one, and no
/// module of the run path may depend on them (they are left out of the
/// search, so a circle through them is not reported here).
pub const FACADE: [&str; 9] = [
    "lib",
    "engine",
    "handle",
    "batch",
    "tool",
    "ask",
    "api_nested",
    "actions",
    "project",
];

/// Edges `from → to` between top-level modules, each with a file that makes it.
pub type Edges = BTreeMap<(String, String), String>;

/// The `crate::X` paths of `text` (comments and unit tests skipped): the X's.
pub fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" //").next().unwrap_or(code);
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            // `bamboo_engine::crate::` cannot occur; `$crate::` is a macro's.
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::X, b}`: the first segment of each item.
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name = ident(item.trim());
                    if !name.is_empty() {
                        out.insert(name.to_owned());
                    }
                }
                continue;
            }
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level module of a file at `rel` (relative to the crate's `src`).
pub fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.strip_suffix(".rs").unwrap_or(first).to_owned())
}

/// Every edge between the engine's top-level modules under `src`.
pub fn edges(src: &Path) -> Result<Edges> {
    let mut files = Vec::new();
    collect(src, &mut files)?;
    let mut out = Edges::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap_or(&file);
        if rel
            .file_name()
            .is_some_and(|n| n == "tests.rs" || n.to_string_lossy().starts_with("tests_"))
        {
            continue;
        }
        let Some(from) = module_of(rel) else { continue };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for to in crate_refs(&text) {
            // A name at the root is one of lib.rs's re-exports.
            let to = if to.starts_with(char::is_uppercase) {
                "lib".to_owned()
            } else {
                to
            };
            if to != from {
                out.entry((from.clone(), to))
                    .or_insert_with(|| rel.display().to_string());
            }
        }
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The circles among modules outside the facade, each as a closed path
/// (`a → b → a`), shortest first within its group of entangled modules.
pub fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let facade = |m: &str| FACADE.contains(&m);
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        if !facade(from) && !facade(to) {
            next.entry(from).or_default().insert(to);
        }
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for &start in next.keys() {
        if seen.contains(start) {
            continue;
        }
        // The shortest way back to `start`, if any (breadth first).
        let Some(path) = shortest_back(&next, start) else {
            continue;
        };
        // Every module on a circle with `start` is reported with it once.
        for m in next.keys() {
            if reaches(&next, start, m) && reaches(&next, m, start) {
                seen.insert(m);
            }
        }
        out.push(path.into_iter().map(str::to_owned).collect());
    }
    out
}

fn shortest_back<'a>(
    next: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    start: &'a str,
) -> Option<Vec<&'a str>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(m) = queue.pop_front() {
        for &n in next.get(m).into_iter().flatten() {
            if n == start {
                let mut path = vec![m];
                let mut at = m;
                while let Some(&p) = parent.get(at) {
                    path.push(p);
                    at = p;
                }
                path.reverse();
                path.push(start);
                return Some(path);
            }
            if n != start && !parent.contains_key(n) {
                parent.insert(n, m);
                queue.push_back(n);
            }
        }
    }
    None
}

fn reaches(next: &BTreeMap<&str, BTreeSet<&str>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::from([from]);
    let mut stack = vec![from];
    while let Some(m) = stack.pop() {
        if m == to {
            return true;
        }
        for &n in next.get(m).into_iter().flatten() {
            if seen.insert(n) {
                stack.push(n);
            }
        }
    }
    false
}

/// The problems tidy reports for the engine under `root`: one per circle,
/// naming its modules and the file behind each step.
pub fn check(root: &Path) -> Result<Vec<Problem>> {
    let src = root.join(ENGINE_SRC);
    let edges = edges(&src)?;
    let file = |a: &str, b: &str| {
        edges
            .get(&(a.to_owned(), b.to_owned()))
            .cloned()
            .unwrap_or_default()
    };
    let facade = |m: &str| FACADE.contains(&m);
    let upward = edges
        .iter()
        .filter(|((from, to), _)| !facade(from) && facade(to))
        .map(|((from, to), file)| Problem {
            path: format!("{ENGINE_SRC}/{file}"),
            line: 1,
            message: format!(
                "the run path names the API layer: {from} uses {}; pass what it needs in (as the nested spawner is), or move the item below the API layer",
                if to == "lib" { "a re-export of lib.rs (crate::Name)".to_owned() } else { format!("crate::{to}") }
            ),
        });
    Ok(upward
        .collect::<Vec<_>>()
        .into_iter()
        .chain(cycles(&edges).into_iter()
        .map(|path| {
            let steps: Vec<String> = path
                .windows(2)
                .map(|w| format!("{} → {} ({})", w[0], w[1], file(&w[0], &w[1])))
                .collect();
            Problem {
                path: format!("{ENGINE_SRC}/{}", file(&path[0], &path[1])),
                line: 1,
                message: format!(
                    "import circle in bamboo-engine: {}; each step: {}. Break it: move what both sides need into a module of its own, or pass it in",
                    path.join(" → "),
                    steps.join(", ")
                ),
            }
        }))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(pairs: &[(&str, &str)]) -> Edges {
        pairs
            .iter()
            .map(|(a, b)| ((a.to_string(), b.to_string()), format!("{a}.rs")))
            .collect()
    }

    #[test]
    fn paths_uses_and_groups_are_edges_comments_and_tests_are_not() {
        let text = "use crate::a::X;\nuse crate::{b::Y, c};\n// crate::d\nfn f() { crate::e::g(); $crate::h }\n#[cfg(test)]\nmod tests { use crate::z; }";
        let refs: Vec<_> = crate_refs(text).into_iter().collect();
        assert_eq!(refs, ["a", "b", "c", "e"]);
    }

    #[test]
    fn a_circle_is_named_and_the_facade_is_left_out() {
        let edges = graph(&[
            ("a", "b"),
            ("b", "c"),
            ("c", "a"),
            ("d", "a"),
            ("engine", "a"),
            ("a", "engine"),
        ]);
        assert_eq!(cycles(&edges), vec![vec!["a", "b", "c", "a"]]);
        assert!(cycles(&graph(&[("a", "b"), ("b", "c")])).is_empty());
        assert_eq!(
            cycles(&graph(&[("p", "q"), ("q", "p")])),
            vec![vec!["p", "q", "p"]]
        );
    }
}
