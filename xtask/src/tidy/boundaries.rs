//! An invariant of docs/ARCHITECTURE.md that a look at the source can
//! check: the run path of `bamboo-engine` never names the API layer.
//! Comments, string literals and unit tests do not count; names are matched
//! as whole words. (The worker side's boundary and the crates' layering are
//! `crate::layers`.)

use std::path::Path;

use anyhow::{Context, Result};

use super::Problem;

/// One rule: the files it covers and the names they must not use.
struct Rule {
    /// Whether a path (from the workspace root, `/`-separated) is covered.
    covers: fn(&str) -> bool,
    /// Names (whole words, `::` paths allowed) the covered files must not use.
    forbidden: &'static [&'static str],
    /// The invariant, as ARCHITECTURE.md words it, and what to do instead.
    why: &'static str,
}

const RULES: [Rule; 1] = [
    Rule {
        covers: is_run_path,
        forbidden: &[
            "Engine",
            "crate::engine",
            "crate::actions",
            "crate::tool",
            "crate::api_nested",
        ],
        why: "the run path never names the API layer (docs/ARCHITECTURE.md): reach the API through a seam the facade injects, as `NestedSpawner` does, or move this code out of the run path",
    },
];

/// The engine's run path: the runtime, spawning and pumping runs, slots and
/// reservations, the warm pool and the launchers.
fn is_run_path(path: &str) -> bool {
    let Some(module) = path.strip_prefix("crates/bamboo-engine/src/") else {
        return false;
    };
    const FILES: [&str; 15] = [
        "runtime.rs",
        "spawn.rs",
        "pump.rs",
        "runner.rs",
        "creation.rs",
        "recovery.rs",
        "runs.rs",
        "slots.rs",
        "steering.rs",
        "watchdog.rs",
        "nested.rs",
        "pool.rs",
        "warm.rs",
        "placement.rs",
        "worker.rs",
    ];
    FILES.contains(&module) || module.starts_with("launch/") || module.ends_with("_launcher.rs")
}

/// `line` without its string literals and its `//` comment.
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(' ');
        } else if c == '/' && chars.peek() == Some(&'/') {
            break;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `code` uses `name` as a whole word (a `::` path counts as one).
fn names(code: &str, name: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(name).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + name.len()..].chars().next();
        before.is_none_or(|c| !is_word(c)) && after.is_none_or(|c| !is_word(c))
    })
}

/// The problems of one file, `path` from the workspace root.
pub fn check_source(path: &str, text: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    for rule in RULES.iter().filter(|r| (r.covers)(path)) {
        let mut in_tests = false;
        for (i, line) in text.lines().enumerate() {
            // Unit tests may name anything (they drive the module from outside).
            if line.trim_start().starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            if in_tests {
                break;
            }
            let code = code_of(line);
            for name in rule.forbidden.iter().filter(|n| names(&code, n)) {
                out.push(Problem {
                    path: path.to_owned(),
                    line: i + 1,
                    message: format!("names `{name}`, but {}", rule.why),
                });
            }
        }
    }
    out
}

/// Checks the covered `.rs` files among `files` (absolute, under `root`).
pub fn run(root: &Path, files: &[std::path::PathBuf]) -> Result<Vec<Problem>> {
    let mut out = Vec::new();
    for file in files {
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .to_string_lossy()
            .replace('\\', "/");
        if !RULES.iter().any(|r| (r.covers)(&shown)) {
            continue;
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        out.extend(check_source(&shown, &text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_path_naming_the_engine_is_a_problem_naming_line_and_invariant() {
        let text = "//! Pump.\nuse crate::engine::Engine;\nfn f(e: &EngineError) {}\n";
        let problems = check_source("crates/bamboo-engine/src/pump.rs", text);
        let shown: Vec<_> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("crates/bamboo-engine/src/pump.rs:2: names `Engine`"));
        assert!(shown[1].starts_with("crates/bamboo-engine/src/pump.rs:2: names `crate::engine`"));
        assert!(shown[0].contains("the run path never names the API layer"));
    }

    #[test]
    fn comments_strings_and_unit_tests_do_not_count() {
        let text = "//! The Engine's run path.\n// see Engine\nlet s = \"an Engine \\\" here\";\n#[cfg(test)]\nmod tests { use crate::Engine; }\n";
        assert_eq!(
            check_source("crates/bamboo-engine/src/launch/local.rs", text),
            []
        );
    }

    #[test]
    fn the_api_layer_and_other_files_are_not_covered() {
        let text = "use crate::engine::Engine;\nuse bamboo_engine::Engine;\n";
        assert_eq!(
            check_source("crates/bamboo-engine/src/actions.rs", text),
            []
        );
        assert_eq!(check_source("bins/bamboo-worker/src/join.rs", text), []);
        assert_eq!(check_source("crates/bamboo-cli/src/setup.rs", text), []);
    }

    #[test]
    fn launchers_are_on_the_run_path() {
        for path in [
            "crates/bamboo-engine/src/fleet_launcher.rs",
            "crates/bamboo-engine/src/launch/mod.rs",
            "crates/bamboo-engine/src/warm.rs",
        ] {
            assert!(is_run_path(path), "{path}");
        }
        assert!(!is_run_path("crates/bamboo-engine/src/engine.rs"));
    }
}
