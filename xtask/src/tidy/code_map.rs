//! The code map of docs/ARCHITECTURE.md against the tree: every path it
//! names exists, and every module of `bamboo-engine` (a file or folder
//! directly under `crates/bamboo-engine/src`) has its line.
//!
//! The map's format: under `## Code map`, a `### `DIR`` heading names a
//! folder (from the workspace root), and each list item under it starts with
//! one or more backticked paths relative to that folder (`- `src/a.rs`,
//! `src/b/`: what it is`). A folder path ends with `/`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use super::Problem;

/// The architecture document, relative to the workspace root.
pub const DOC: &str = "docs/ARCHITECTURE.md";

/// The crate whose every module the map must name.
const ENGINE_SRC: &str = "crates/bamboo-engine/src";

/// One path the code map names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line in the document.
    pub line: usize,
    /// The path from the workspace root (a folder ends with `/`).
    pub path: String,
}

/// The paths of the code map in `doc`, in order.
pub fn entries(doc: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut in_map = false;
    let mut base: Option<String> = None;
    for (i, line) in doc.lines().enumerate() {
        if let Some(title) = line.strip_prefix("## ") {
            in_map = title.trim() == "Code map";
            base = None;
            continue;
        }
        if !in_map {
            continue;
        }
        if let Some(title) = line.strip_prefix("### ") {
            base = leading_paths(title.trim()).into_iter().next();
            continue;
        }
        let (Some(base), Some(item)) = (&base, line.strip_prefix("- ")) else {
            continue;
        };
        for path in leading_paths(item) {
            out.push(Entry {
                line: i + 1,
                path: format!("{}/{path}", base.trim_end_matches('/')),
            });
        }
    }
    out
}

/// The backticked paths at the start of `text`, separated by `, `.
fn leading_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(after) = rest.strip_prefix('`') {
        let Some(end) = after.find('`') else { break };
        out.push(after[..end].to_owned());
        rest = &after[end + 1..];
        match rest.strip_prefix(", ") {
            Some(more) => rest = more,
            None => break,
        }
    }
    out
}

/// The problems of the code map in `doc` against the tree at `root`.
pub fn check(root: &Path, doc: &str) -> Result<Vec<Problem>> {
    let entries = entries(doc);
    let mut problems = Vec::new();
    if entries.is_empty() {
        problems.push(problem(
            1,
            "no code map found: add a `## Code map` section with `### `DIR`` headings and `- `PATH`: what it is` lines (see xtask/src/tidy/code_map.rs)".to_owned(),
        ));
        return Ok(problems);
    }
    for e in &entries {
        let on_disk = root.join(e.path.trim_end_matches('/'));
        let exists = if e.path.ends_with('/') {
            on_disk.is_dir()
        } else {
            on_disk.exists()
        };
        if !exists {
            problems.push(problem(
                e.line,
                format!(
                    "the code map names `{}`, which does not exist: fix the path (a folder ends with `/`) or remove the line",
                    e.path
                ),
            ));
        }
    }
    let named: BTreeSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let last_engine_line = entries
        .iter()
        .filter(|e| e.path.starts_with(ENGINE_SRC))
        .map(|e| e.line)
        .max()
        .unwrap_or(1);
    for module in engine_modules(&root.join(ENGINE_SRC))? {
        if !named.contains(module.as_str()) {
            let short = module.trim_start_matches("crates/bamboo-engine/");
            problems.push(problem(
                last_engine_line,
                format!(
                    "the code map has no line for `{module}`, a module of bamboo-engine: add `- `{short}`: <what it is, in one line>` under the `### `crates/bamboo-engine`` heading"
                ),
            ));
        }
    }
    Ok(problems)
}

/// The modules directly under the engine's `src`: `PATH.rs` files and
/// `PATH/` folders, as paths from the workspace root.
fn engine_modules(src: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let listing =
        std::fs::read_dir(src).with_context(|| format!("cannot list {}", src.display()))?;
    for entry in listing {
        let entry = entry.with_context(|| format!("cannot list {}", src.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            out.push(format!("{ENGINE_SRC}/{name}/"));
        } else if name.ends_with(".rs") {
            out.push(format!("{ENGINE_SRC}/{name}"));
        }
    }
    out.sort();
    Ok(out)
}

fn problem(line: usize, message: String) -> Problem {
    Problem {
        path: DOC.to_owned(),
        line,
        message,
    }
}

/// Reads the document under `root` and checks its code map.
pub fn run(root: &Path) -> Result<Vec<Problem>> {
    let path = root.join(DOC);
    let doc = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}: restore it from git", path.display()))?;
    check(root, &doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "# A\n\n## Code map\n\n### `crates/bamboo-engine`\n\n- `src/lib.rs`: the front page\n- `src/a.rs`, `src/b/`: two modules\n\nprose with `src/c.rs` is no entry\n\n## Invariants\n\n- `src/d.rs`: not in the map\n";

    /// A temporary folder, removed on drop (xtask keeps to clap and anyhow).
    struct Tree(std::path::PathBuf);

    impl Tree {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A tree with the engine's `src` holding `files` (a name ending in `/`
    /// is a folder).
    fn tree(files: &[&str]) -> Tree {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = Tree(std::env::temp_dir().join(format!(
            "xtask-code-map-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )));
        let src = dir.path().join(ENGINE_SRC);
        std::fs::create_dir_all(&src).unwrap();
        for f in files {
            match f.strip_suffix('/') {
                Some(folder) => std::fs::create_dir_all(src.join(folder)).unwrap(),
                None => std::fs::write(src.join(f), "//! x\n").unwrap(),
            }
        }
        dir
    }

    #[test]
    fn entries_are_the_leading_paths_of_the_maps_list_items() {
        let paths: Vec<_> = entries(MAP).into_iter().map(|e| (e.line, e.path)).collect();
        assert_eq!(
            paths,
            [
                (7, "crates/bamboo-engine/src/lib.rs".to_owned()),
                (8, "crates/bamboo-engine/src/a.rs".to_owned()),
                (8, "crates/bamboo-engine/src/b/".to_owned()),
            ]
        );
    }

    #[test]
    fn a_map_that_matches_the_tree_has_no_problem() {
        let dir = tree(&["lib.rs", "a.rs", "b/"]);
        assert_eq!(check(dir.path(), MAP).unwrap(), []);
    }

    #[test]
    fn a_named_path_that_is_gone_is_a_problem_naming_it() {
        let dir = tree(&["lib.rs", "b/"]);
        let problems = check(dir.path(), MAP).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let line = problems[0].to_string();
        assert!(
            line.starts_with("docs/ARCHITECTURE.md:8: the code map names `crates/bamboo-engine/src/a.rs`, which does not exist"),
            "{line}"
        );
        assert!(line.contains("fix the path"), "{line}");
    }

    #[test]
    fn a_folder_entry_must_be_a_folder() {
        let dir = tree(&["lib.rs", "a.rs", "b.rs"]);
        let problems = check(dir.path(), MAP).unwrap();
        let messages: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("`crates/bamboo-engine/src/b/`, which does not exist")),
            "{messages:?}"
        );
    }

    #[test]
    fn an_engine_module_missing_from_the_map_is_a_problem_saying_where_to_add_it() {
        let dir = tree(&["lib.rs", "a.rs", "b/", "launch/", "warm.rs"]);
        let problems = check(dir.path(), MAP).unwrap();
        let messages: Vec<_> = problems.iter().map(|p| p.message.clone()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].contains("no line for `crates/bamboo-engine/src/launch/`"));
        assert!(messages[0].contains("add `- `src/launch/`: <what it is, in one line>`"));
        assert!(messages[0].contains("under the `### `crates/bamboo-engine`` heading"));
        assert!(messages[1].contains("no line for `crates/bamboo-engine/src/warm.rs`"));
        assert_eq!(problems[0].line, 8, "points at the map's engine lines");
    }

    #[test]
    fn a_document_without_a_code_map_is_a_problem() {
        let dir = tree(&["lib.rs"]);
        let problems = check(dir.path(), "# A\n\n## Other\n\n- `x`: y\n").unwrap();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("no code map found"));
    }
}
