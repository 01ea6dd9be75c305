//! Short unique names for children: `--name` when given, else the first words
//! of the assignment.

use std::collections::HashSet;

/// Longest automatic name, in characters.
const MAX_AUTO_CHARS: usize = 20;
/// Words of the assignment an automatic name is made of.
const AUTO_WORDS: usize = 3;

/// One name per assignment. `given[i]` names assignment `i`; the rest are
/// derived from their first words and made unique with `-2`, `-3`, ...
pub fn assign(assignments: &[String], given: &[String]) -> Result<Vec<String>, String> {
    if given.len() > assignments.len() {
        return Err(format!(
            "{} --name values for {} assignments: give at most one name per assignment",
            given.len(),
            assignments.len()
        ));
    }
    let mut taken = HashSet::new();
    for name in given {
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            return Err(format!(
                "--name {name:?} is empty or has control characters: use a short word"
            ));
        }
        if !taken.insert(name.clone()) {
            return Err(format!(
                "--name {name:?} is given twice: names must be unique"
            ));
        }
    }
    let mut names = given.to_vec();
    for assignment in &assignments[given.len()..] {
        let base = auto_name(assignment);
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(name.clone());
        names.push(name);
    }
    Ok(names)
}

/// The first words of `assignment`, lowercase-free but shell-friendly: letters,
/// digits, `-`, `_` and `.`; test directives (`__...`) are skipped.
pub fn auto_name(assignment: &str) -> String {
    let words: Vec<String> = assignment
        .split_whitespace()
        .filter(|w| !w.starts_with("__"))
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .take(AUTO_WORDS)
        .collect();
    // Whole words while they fit; a first word longer than that is cut.
    let mut joined = String::new();
    for w in &words {
        let sep = usize::from(!joined.is_empty());
        if joined.chars().count() + sep + w.chars().count() > MAX_AUTO_CHARS {
            if joined.is_empty() {
                joined = w.chars().take(MAX_AUTO_CHARS).collect();
            }
            break;
        }
        if sep == 1 {
            joined.push('-');
        }
        joined.push_str(w);
    }
    let trimmed = joined.trim_matches(['-', '.']);
    if trimmed.is_empty() {
        "child".into()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_come_from_the_first_words_and_are_unique() {
        let names = assign(
            &strings(&[
                "fix the login bug now",
                "fix the login bug later",
                "c1",
                "!!!",
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(names, ["fix-the-login", "fix-the-login-2", "c1", "child"]);
    }

    #[test]
    fn given_names_win_and_auto_names_avoid_them() {
        let names = assign(&strings(&["a b", "hello"]), &strings(&["hello"])).unwrap();
        assert_eq!(names, ["hello", "hello-2"]);
    }

    #[test]
    fn bad_given_names_are_refused_with_a_reason() {
        assert!(assign(&strings(&["a"]), &strings(&["x", "y"]))
            .unwrap_err()
            .contains("at most one name"));
        assert!(assign(&strings(&["a", "b"]), &strings(&["x", "x"]))
            .unwrap_err()
            .contains("twice"));
        assert!(assign(&strings(&["a"]), &strings(&[" "])).is_err());
    }

    #[test]
    fn long_and_directive_words_are_cut() {
        assert_eq!(
            auto_name("__sleep_ms:10 supercalifragilistic expialidocious"),
            "supercalifragilistic"
        );
        assert_eq!(auto_name("__fail:x"), "child");
        assert_eq!(auto_name("-dash"), "dash");
    }

    #[test]
    fn automatic_names_end_at_a_word_boundary() {
        assert_eq!(
            auto_name("refactor the authentication module"),
            "refactor-the"
        );
        assert_eq!(
            auto_name("internationalization everywhere"),
            "internationalization"
        );
        assert_eq!(
            auto_name("supercalifragilisticexpialidocious"),
            "supercalifragilistic"
        );
    }
}
