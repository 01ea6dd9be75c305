//! The layering invariants `cargo xtask tidy` enforces: each workspace crate
//! depends only on the crates below it, and the worker side of the
//! `bamboo-worker` binary (worker mode, `serve`, `join`) never names the
//! engine or the front doors.

use std::path::Path;

use anyhow::{Context, Result};

/// Each crate's manifest and the Bamboo crates its `[dependencies]` may name.
pub const LAYERS: [(&str, &[&str]); 7] = [
    ("crates/bamboo-domain", &[]),
    ("crates/bamboo-subagent", &["bamboo-domain"]),
    ("crates/bamboo-pool", &["bamboo-domain", "bamboo-subagent"]),
    (
        "crates/bamboo-engine",
        &["bamboo-domain", "bamboo-subagent", "bamboo-pool"],
    ),
    (
        "crates/bamboo-executors",
        &["bamboo-domain", "bamboo-subagent"],
    ),
    (
        "crates/bamboo-cli",
        &[
            "bamboo-domain",
            "bamboo-subagent",
            "bamboo-pool",
            "bamboo-engine",
            "bamboo-executors",
        ],
    ),
    (
        "bins/bamboo-worker",
        &[
            "bamboo-domain",
            "bamboo-subagent",
            "bamboo-pool",
            "bamboo-engine",
            "bamboo-executors",
            "bamboo-cli",
        ],
    ),
];

/// The worker side: every file of the binary but its entry point, which
/// dispatches to the front doors.
const WORKER_SIDE: &str = "bins/bamboo-worker/src";
const ENTRY_POINT: &str = "main.rs";
const ABOVE_THE_WORKER: [&str; 2] = ["bamboo_engine", "bamboo_cli"];

/// The Bamboo crates named in a manifest's `[dependencies]` table.
pub fn bamboo_dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps {
            if let Some(name) = line.split(['=', ' ', '.']).next() {
                if name.starts_with("bamboo-") {
                    out.push(name.to_owned());
                }
            }
        }
    }
    out
}

/// Whether a line of Rust code (comments and string literals aside) names
/// one of `crates`.
pub fn names_crate(line: &str, crates: &[&str]) -> Option<String> {
    let code = line.split("//").next().unwrap_or("");
    // Drop string literals: the text between quote pairs.
    let code: String = code
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect();
    crates
        .iter()
        .find(|c| {
            code.match_indices(**c).any(|(at, _)| {
                let before = code[..at].chars().next_back();
                let after = code[at + c.len()..].chars().next();
                let ident =
                    |ch: Option<char>| ch.is_some_and(|ch| ch.is_alphanumeric() || ch == '_');
                !ident(before) && !ident(after)
            })
        })
        .map(|c| (*c).to_owned())
}

/// The layering problems under `root`, one line each.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for (dir, allowed) in LAYERS {
        let path = root.join(dir).join("Cargo.toml");
        let manifest = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for dep in bamboo_dependencies(&manifest) {
            if !allowed.contains(&dep.as_str()) {
                problems.push(format!(
                    "{dir}/Cargo.toml: depends on {dep}, which is not below it (dependencies point down: {}); move the shared code down a layer",
                    if allowed.is_empty() { "none allowed".to_owned() } else { allowed.join(", ") }
                ));
            }
        }
    }
    let mut files = Vec::new();
    super::tidy::rust_files(&root.join(WORKER_SIDE), &mut files)?;
    for file in files {
        if file.file_name().is_some_and(|n| n == ENTRY_POINT) {
            continue;
        }
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            if let Some(c) = names_crate(line, &ABOVE_THE_WORKER) {
                problems.push(format!(
                    "{shown}:{}: the worker side names {c}; it may use only the executors and the protocol (move this to {ENTRY_POINT} or the front door)",
                    n + 1
                ));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dependencies_table_counts() {
        let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nbamboo-domain = { workspace = true }\nserde = \"1\"\nbamboo-engine.workspace = true\n\n[dev-dependencies]\nbamboo-testkit = { workspace = true }\n";
        assert_eq!(
            bamboo_dependencies(manifest),
            ["bamboo-domain", "bamboo-engine"]
        );
    }

    #[test]
    fn crate_names_in_code_count_but_not_in_comments_or_strings() {
        let above = ABOVE_THE_WORKER;
        assert_eq!(
            names_crate("use bamboo_engine::Engine;", &above).as_deref(),
            Some("bamboo_engine")
        );
        assert_eq!(
            names_crate("let x = bamboo_cli::run();", &above).as_deref(),
            Some("bamboo_cli")
        );
        assert_eq!(names_crate("// bamboo_engine does this", &above), None);
        assert_eq!(
            names_crate("assert!(t(\"bamboo_engine::pump\"));", &above),
            None
        );
        assert_eq!(names_crate("use bamboo_engines_x;", &above), None);
    }

    #[test]
    fn the_workspace_keeps_its_layers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let problems = check(&root).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
