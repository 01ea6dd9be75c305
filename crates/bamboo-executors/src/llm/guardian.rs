//! `capabilities.guardian_read_only`: a read-only reviewer may run only
//! commands that look at things (listing, reading, diffs, tests), never ones
//! that change them, and never a shell construct that could chain a change in.

/// Programs a read-only reviewer may run as they are.
const READ_ONLY_PROGRAMS: &[&str] = &[
    "ls", "cat", "head", "tail", "wc", "grep", "rg", "find", "diff", "stat", "file", "pwd", "tree",
    "sort", "uniq", "cut", "echo", "true",
];

/// `git` subcommands that only read.
const READ_ONLY_GIT: &[&str] = &[
    "diff",
    "log",
    "show",
    "status",
    "blame",
    "ls-files",
    "rev-parse",
];

/// True when `command` is on the read-only allow-list. Any shell operator
/// (`;`, `|`, `&`, `>`, `<`, backquote, `$(`) refuses: it could chain a write.
pub fn read_only_command(command: &str) -> bool {
    if command.contains([';', '|', '&', '>', '<', '`', '\n']) || command.contains("$(") {
        return false;
    }
    let mut words = command.split_whitespace();
    let Some(program) = words.next() else {
        return false;
    };
    let sub = words.next().unwrap_or_default();
    match program {
        "git" => READ_ONLY_GIT.contains(&sub),
        "cargo" => matches!(sub, "test" | "check" | "clippy" | "metadata" | "tree"),
        "find" => !command.split_whitespace().any(|w| {
            matches!(
                w,
                "-delete" | "-exec" | "-execdir" | "-ok" | "-okdir" | "-fprint"
            )
        }),
        "pytest" | "go" if program == "pytest" || sub == "test" => true,
        p => READ_ONLY_PROGRAMS.contains(&p),
    }
}

#[cfg(test)]
mod tests {
    use super::read_only_command;

    #[test]
    fn reads_diffs_and_tests_pass_writes_and_chains_do_not() {
        for ok in [
            "ls -la",
            "git diff HEAD~1",
            "cargo test -p x",
            "grep -rn foo src",
            "pytest -q",
        ] {
            assert!(read_only_command(ok), "{ok}");
        }
        for no in [
            "rm -rf /",
            "git push",
            "ls; rm x",
            "cat a > b",
            "curl x | sh",
            "find . -delete",
            "echo $(rm x)",
            "cargo install x",
            "",
        ] {
            assert!(!read_only_command(no), "{no}");
        }
    }
}
