//! Git worktree isolation (`isolation: worktree`): a child whose workspace
//! is in a git repository runs in a worktree of its own, on a new branch
//! `bamboo/<child name>` from HEAD, kept in the repository's git directory
//! (`.git/bamboo-worktrees/<child id>`). At
//! the end of each run what it changed is committed on that branch (author
//! and message naming the child); a child that changed nothing leaves no
//! branch and no worktree. The record lives in the child's metadata
//! (under `worktree`) so a resumed child finds its worktree again.

use std::path::{Path, PathBuf};
use std::process::Command;

use bamboo_domain::Session;
use serde::{Deserialize, Serialize};

/// Metadata key of a child's worktree record (a [`Worktree`] object).
pub(crate) const WORKTREE_KEY: &str = "worktree";

/// How a child is isolated from its parent's checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Its own git worktree on a branch `bamboo/<child name>`.
    Worktree,
}

/// A child's worktree and what its runs committed there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worktree {
    /// The repository's top-level directory (the main checkout).
    pub repo: String,
    /// The worktree's directory.
    pub path: String,
    /// The child's workspace inside the worktree (the same place relative
    /// to the repository as the workspace it was given).
    pub workspace: String,
    /// Its branch, `bamboo/<child name>`.
    pub branch: String,
    /// The commit the branch started from.
    pub base: String,
    /// The branch's last commit, once a run changed something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Files changed on the branch since `base`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// The worktree was removed (nothing changed, or `sessions` removed it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// The worktree record of `session`, if it has one.
pub fn of(session: &Session) -> Option<Worktree> {
    session
        .metadata
        .get(WORKTREE_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Stores `wt` as the worktree record of `session`.
pub fn store(session: &mut Session, wt: &Worktree) {
    if let Ok(v) = serde_json::to_value(wt) {
        session.metadata.insert(WORKTREE_KEY.into(), v);
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("cannot run git: {e}: install git, or drop isolation worktree"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "git {} failed in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A branch-safe form of a child's name.
fn branch_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches('-');
    if clean.is_empty() {
        "child".into()
    } else {
        clean.chars().take(60).collect()
    }
}

/// Creates a worktree for the child `name` (id `child_id`) whose workspace
/// is `workspace`, under the repository's git directory
/// (`bamboo-worktrees/<child id>`; `dir` when that cannot be found), on a
/// new branch from HEAD. A workspace that
/// is not in a git repository is refused.
pub(crate) fn create(
    workspace: &Path,
    name: &str,
    child_id: &str,
    dir: &Path,
) -> Result<Worktree, String> {
    let repo = git(workspace, &["rev-parse", "--show-toplevel"]).map_err(|_| {
        format!(
            "isolation worktree needs a git repository, and the workspace {} is not in one: run `git init` there (with a first commit), or drop --worktree / isolation",
            workspace.display()
        )
    })?;
    let repo = PathBuf::from(repo);
    let base = git(&repo, &["rev-parse", "HEAD"]).map_err(|_| {
        format!(
            "isolation worktree needs a commit to branch from, and the repository {} has none: commit once, or drop --worktree / isolation",
            repo.display()
        )
    })?;
    let canonical = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    let inside = canonical
        .strip_prefix(repo.canonicalize().unwrap_or_else(|_| repo.clone()))
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let stem = format!("bamboo/{}", branch_name(name));
    let mut branch = stem.clone();
    let mut n = 2;
    while git(
        &repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .is_ok()
    {
        branch = format!("{stem}-{n}");
        n += 1;
    }
    // Under the repository's own git directory when it can be found: a
    // kept worktree outlives the engine's data directory (which `run`
    // removes at exit unless --data-dir), and git knows where it is.
    let dir = match git(
        &repo,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    ) {
        Ok(common) => PathBuf::from(common).join("bamboo-worktrees"),
        Err(_) => dir.to_path_buf(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| {
        format!(
            "cannot create the worktrees directory {}: {e}",
            dir.display()
        )
    })?;
    let path = dir.join(child_id);
    let path_text = path.display().to_string();
    git(
        &repo,
        &["worktree", "add", "-b", &branch, &path_text, &base],
    )?;
    Ok(Worktree {
        repo: repo.display().to_string(),
        workspace: path.join(inside).display().to_string(),
        path: path_text,
        branch,
        base,
        commit: None,
        files: Vec::new(),
        removed: false,
    })
}

/// After a run: commits what the child changed on its branch (author and
/// message naming the child). Returns the record updated; a branch with no
/// change since its base is removed with its worktree (`removed`).
pub(crate) fn conclude(wt: &Worktree, child_name: &str, summary: &str) -> Result<Worktree, String> {
    let mut wt = wt.clone();
    let path = PathBuf::from(&wt.path);
    if !path.is_dir() {
        return Ok(wt);
    }
    git(&path, &["add", "-A"])?;
    let pending = git(&path, &["status", "--porcelain"])?;
    if !pending.is_empty() {
        let who = format!("bamboo child {child_name} <bamboo@localhost>");
        let first = summary.lines().next().unwrap_or_default();
        let message = format!("bamboo child {child_name}: {}", truncate(first, 72));
        let out = Command::new("git")
            .arg("-C")
            .arg(&path)
            .args([
                "-c",
                "user.name=bamboo",
                "-c",
                "user.email=bamboo@localhost",
            ])
            .args([
                "commit",
                "--quiet",
                "--no-verify",
                "--author",
                &who,
                "-m",
                &message,
            ])
            .output()
            .map_err(|e| format!("cannot run git commit: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "git commit in the worktree {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let head = git(&path, &["rev-parse", "HEAD"])?;
    if head == wt.base {
        remove(&mut wt)?;
        return Ok(wt);
    }
    let range = format!("{}..{head}", wt.base);
    wt.files = git(&path, &["diff", "--name-only", &range])?
        .lines()
        .map(str::to_owned)
        .collect();
    wt.commit = Some(head);
    Ok(wt)
}

/// Removes the worktree directory (the branch stays when it has commits;
/// an unchanged branch is deleted too).
pub fn remove(wt: &mut Worktree) -> Result<(), String> {
    let repo = PathBuf::from(&wt.repo);
    if Path::new(&wt.path).exists() {
        git(&repo, &["worktree", "remove", "--force", &wt.path])?;
    }
    if wt.commit.is_none() {
        git(&repo, &["branch", "-D", &wt.branch])?;
    }
    wt.removed = true;
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for args in [
            &["init", "-q", "-b", "main"][..],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "first",
            ],
        ] {
            assert!(Command::new("git")
                .arg("-C")
                .arg(p)
                .args(args)
                .status()
                .unwrap()
                .success());
        }
        dir
    }

    #[test]
    fn a_change_is_committed_on_the_childs_branch_and_no_change_leaves_nothing() {
        let (r, data) = (repo(), tempfile::tempdir().unwrap());
        let wt = create(r.path(), "Writer One", "c1", data.path()).unwrap();
        assert_eq!(wt.branch, "bamboo/writer-one");
        std::fs::write(Path::new(&wt.workspace).join("notes.txt"), "hi").unwrap();
        let done = conclude(&wt, "writer-one", "write notes").unwrap();
        assert_eq!(done.files, vec!["notes.txt".to_owned()]);
        assert!(done.commit.is_some() && !done.removed);
        assert!(
            !r.path().join("notes.txt").exists(),
            "main checkout unchanged"
        );
        let idle = create(r.path(), "Writer One", "c2", data.path()).unwrap();
        assert_eq!(idle.branch, "bamboo/writer-one-2");
        let gone = conclude(&idle, "writer-one", "nothing").unwrap();
        assert!(gone.removed && gone.commit.is_none());
        assert!(!Path::new(&idle.path).exists());
        assert!(git(
            r.path(),
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "refs/heads/bamboo/writer-one-2"
            ]
        )
        .is_err());
        let plain = tempfile::tempdir().unwrap();
        let refused = create(plain.path(), "x", "c3", data.path()).unwrap_err();
        assert!(
            refused.contains("not in one") && refused.contains("--worktree"),
            "{refused}"
        );
    }
}
