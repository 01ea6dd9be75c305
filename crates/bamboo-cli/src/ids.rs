//! Session ids as people type them: a unique prefix is enough.

use std::path::Path;

use anyhow::{bail, Context};

/// How many characters of an id the front door shows and suggests.
pub const SHORT: usize = 8;

/// The first [`SHORT`] characters of `id`.
pub fn short(id: &str) -> &str {
    id.get(..SHORT).unwrap_or(id)
}

/// The one id among `ids` that is `given` or starts with it.
pub fn resolve<'a>(
    given: &str,
    ids: impl IntoIterator<Item = &'a str>,
    dir: &Path,
) -> anyhow::Result<String> {
    if given.is_empty() {
        bail!("an empty session id: give an id or a prefix of one (`bamboo-worker sessions --data-dir {}` lists them)", dir.display());
    }
    let mut found: Vec<&str> = Vec::new();
    for id in ids {
        if id == given {
            return Ok(id.to_owned());
        }
        if id.starts_with(given) {
            found.push(id);
        }
    }
    found.sort_unstable();
    match found.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => bail!(
            "no session {given} in {}: `bamboo-worker sessions --data-dir {}` lists the ids",
            dir.display(),
            dir.display()
        ),
        many => bail!(
            "{given} is the start of {} session ids ({}{}): give more of the id",
            many.len(),
            many.iter().take(3).copied().collect::<Vec<_>>().join(", "),
            if many.len() > 3 { ", ..." } else { "" }
        ),
    }
}

/// The session ids stored in the data directory `dir` (read from its
/// `sessions/` folder: no lock, no write).
pub fn stored(dir: &Path) -> anyhow::Result<Vec<String>> {
    let sessions = dir.join("sessions");
    let entries = std::fs::read_dir(&sessions)
        .with_context(|| format!("cannot read {}", sessions.display()))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".jsonl")?;
            (!id.starts_with('.')).then(|| id.to_owned())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_prefix_names_its_session_and_anything_else_says_what_to_do() {
        let ids = ["5f4888d6-aaaa", "5f49aaaa-bbbb", "77aa0000-cccc"];
        let dir = Path::new("/d");
        assert_eq!(resolve("77", ids, dir).unwrap(), "77aa0000-cccc");
        assert_eq!(resolve("5f4888d6-aaaa", ids, dir).unwrap(), "5f4888d6-aaaa");
        let many = resolve("5f4", ids, dir).unwrap_err().to_string();
        assert!(
            many.contains("start of 2 session ids") && many.contains("give more"),
            "{many}"
        );
        let none = resolve("99", ids, dir).unwrap_err().to_string();
        assert!(none.contains("no session 99 in /d"), "{none}");
        assert!(resolve("", ids, dir).is_err());
        assert_eq!(short("5f4888d6-aaaa"), "5f4888d6");
        assert_eq!(short("abc"), "abc");
    }
}
