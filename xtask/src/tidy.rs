//! `cargo xtask tidy`: source checks cheaper than a build. Every behaviour ID a
//! `.rs` file cites must be in the glossary (docs/behaviors.md), and every `.rs`
//! file must open with a `//!` line saying what the module is for, and the
//! code map of docs/ARCHITECTURE.md must match the tree (`code_map`).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

mod code_map;

/// The glossary, relative to the workspace root.
pub const GLOSSARY: &str = "docs/behaviors.md";

/// Directories (relative to the root) whose `.rs` files are checked.
const SOURCE_DIRS: [&str; 5] = ["crates", "bins", "tests", "xtask", "bench"];

/// One finding, printed as `path:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File, relative to the root.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

/// The IDs a glossary defines: list items of the form `- ID: meaning`.
pub fn glossary_ids(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("- "))
        .filter_map(|item| item.split(':').next())
        .filter(|id| is_id(id))
        .map(str::to_owned)
        .collect()
}

/// Whether `s` is a behaviour ID: one of `F`, `S`, `C`, `E`, then a number
/// without a leading zero (so rustc's `E0599` is not one).
pub fn is_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('F' | 'S' | 'C' | 'E'))
        && matches!(chars.next(), Some('1'..='9'))
        && chars.all(|c| c.is_ascii_digit())
}

/// The behaviour IDs `line` cites: IDs standing as whole words (`0xE1` and
/// `FE12a` are not citations).
pub fn cited_ids(line: &str) -> Vec<&str> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for (start, c) in line.char_indices() {
        if prev.is_none_or(|p| !is_word(p)) && is_word(c) {
            let len = line[start..]
                .find(|ch: char| !is_word(ch))
                .unwrap_or(line.len() - start);
            let word = &line[start..start + len];
            if is_id(word) {
                out.push(word);
            }
        }
        prev = Some(c);
    }
    out
}

/// Whether the first non-empty line of a source file is a `//!` doc line.
pub fn has_module_doc(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

/// The problems of one file, `path` as it should be printed.
pub fn check_source(path: &str, text: &str, glossary: &BTreeSet<String>) -> Vec<Problem> {
    let mut out = Vec::new();
    if !has_module_doc(text) {
        let line = text.lines().position(|l| !l.trim().is_empty()).unwrap_or(0) + 1;
        out.push(Problem {
            path: path.to_owned(),
            line,
            message: "the file does not start with a `//!` line: add a one-line module summary at the top".into(),
        });
    }
    for (i, line) in text.lines().enumerate() {
        for id in cited_ids(line) {
            if !glossary.contains(id) {
                out.push(Problem {
                    path: path.to_owned(),
                    line: i + 1,
                    message: format!(
                        "cites behaviour {id}, which {GLOSSARY} does not define: add `- {id}: <meaning>` there or fix the ID"
                    ),
                });
            }
        }
    }
    out
}

/// Checks every `.rs` file under the source directories of `root`; prints one
/// line per problem and fails when there is any.
pub fn run(root: &Path) -> Result<()> {
    let glossary_path = root.join(GLOSSARY);
    let glossary = std::fs::read_to_string(&glossary_path).with_context(|| {
        format!(
            "cannot read the behaviour glossary {}: restore it from git",
            glossary_path.display()
        )
    })?;
    let glossary = glossary_ids(&glossary);
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        rust_files(&root.join(dir), &mut files)?;
    }
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let shown = file.strip_prefix(root).unwrap_or(file).to_string_lossy();
        problems.extend(check_source(&shown, &text, &glossary));
    }
    problems.extend(crate::import_cycles::check(root)?);
    let mut problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    problems.extend(crate::layers::check(root)?);
    problems.extend(code_map::run(root)?.iter().map(ToString::to_string));
    for p in &problems {
        eprintln!("{p}");
    }
    if !problems.is_empty() {
        bail!("tidy found {} problem(s), listed above", problems.len());
    }
    eprintln!(
        "xtask: tidy checked {} files against {} behaviour IDs",
        files.len(),
        glossary.len()
    );
    Ok(())
}

/// Collects `.rs` files under `dir` (sorted), skipping `target` and hidden
/// directories. A missing `dir` has none.
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glossary() -> BTreeSet<String> {
        glossary_ids("# Glossary\n\nMentions `F3` in prose.\n\n- F1: spawn\n- E12: backpressure\n  - S2: nested item\n- not an id: x\n")
    }

    #[test]
    fn the_glossary_defines_only_its_list_items() {
        let ids: Vec<_> = glossary().into_iter().collect();
        assert_eq!(ids, ["E12", "F1", "S2"]);
    }

    #[test]
    fn ids_are_whole_words_without_leading_zero() {
        assert_eq!(
            cited_ids("// F1, E12 and (S2); see C9."),
            ["F1", "E12", "S2", "C9"]
        );
        assert!(cited_ids("let x = 0xE1; FE12 E12a e12_test E0599 F E").is_empty());
        assert_eq!(cited_ids("E9"), ["E9"]);
    }

    #[test]
    fn a_module_doc_must_come_first() {
        assert!(has_module_doc("\n//! Does a thing.\nuse x;"));
        assert!(!has_module_doc("use x;\n//! Late."));
        assert!(!has_module_doc(
            "#![allow(dead_code)]\n//! After an attribute."
        ));
        assert!(!has_module_doc("/// Item doc, not module doc.\nfn f() {}"));
        assert!(!has_module_doc(""));
    }

    #[test]
    fn each_problem_names_file_line_id_and_fix() {
        let text = "//! Module.\n// F1 is known\n// E12 too, E9 is not\n";
        let problems = check_source("crates/x/src/a.rs", text, &glossary());
        assert_eq!(problems.len(), 1, "{problems:?}");
        let line = problems[0].to_string();
        assert!(
            line.starts_with("crates/x/src/a.rs:3: cites behaviour E9"),
            "{line}"
        );
        assert!(line.contains("docs/behaviors.md"), "{line}");

        let problems = check_source("b.rs", "\n\nuse x;\n", &glossary());
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].to_string().starts_with("b.rs:3: "),
            "{}",
            problems[0]
        );
        assert!(problems[0].message.contains("`//!`"));
    }

    #[test]
    fn the_repository_itself_is_tidy() {
        // The real tree: every cited ID is in the glossary, every file has a `//!` line.
        run(&crate::process::root()).unwrap();
    }
}
