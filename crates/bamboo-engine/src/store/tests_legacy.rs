//! Tests of the move of an earlier version's session files into the
//! database (S3): whatever those files hold after a crash, the move keeps
//! every session's last durable version, never brings back one that was
//! never created, and leaves damage for an operator.

use std::path::{Path, PathBuf};

use super::*;
use bamboo_domain::{ChildInfo, Message};

/// A data directory with a `sessions/` folder and no database.
fn legacy_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    (dir, sessions)
}

/// `versions` as an earlier version's log: one compact document a line.
fn log_of(versions: &[&Session]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in versions {
        out.extend(serde_json::to_vec(v).unwrap());
        out.push(b'\n');
    }
    out
}

fn log_file(sessions: &Path, id: &str) -> PathBuf {
    sessions.join(format!("{id}.jsonl"))
}

/// Every file left in `sessions/` but the database's own.
fn left(sessions: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(sessions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(super::db::FILE))
        .collect();
    out.sort();
    out
}

fn with_message(s: &Session, text: &str) -> Session {
    let mut s = s.clone();
    s.messages.push(Message::user(text));
    s
}

#[tokio::test]
async fn s10_a_directory_of_session_logs_is_moved_into_the_store_with_its_last_whole_versions() {
    let (dir, sessions) = legacy_dir();
    let root = Session::new_root("p");
    let kid = Session::new_child(&root, ChildInfo::new("r", "a"));
    let kid2 = with_message(&kid, "second version");
    std::fs::write(log_file(&sessions, &root.id), log_of(&[&root])).unwrap();
    // A crash mid-append: half a line after the last whole version.
    let mut torn = log_of(&[&kid, &kid2]);
    torn.extend_from_slice(b"{\"id\":\"half");
    std::fs::write(log_file(&sessions, &kid.id), torn).unwrap();
    // A create a crash cut short: no complete line, never created.
    std::fs::write(log_file(&sessions, "never"), b"{\"id\":\"nev").unwrap();

    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.load(&root.id).await.unwrap(), Some(root.clone()));
    assert_eq!(s.load(&kid.id).await.unwrap(), Some(kid2.clone()));
    assert_eq!(s.load("never").await.unwrap(), None);
    assert_eq!(s.list_children(&root.id).await.unwrap(), vec![kid2]);
    assert!(left(&sessions).is_empty(), "{:?}", left(&sessions));
    // And it stays: a second open finds nothing more to move.
    drop(s);
    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.list_ids().await.unwrap().len(), 2);
}

#[tokio::test]
async fn damage_before_the_last_line_is_left_for_an_operator() {
    let (dir, sessions) = legacy_dir();
    let root = Session::new_root("p");
    // The last two lines do not parse: more than a torn append.
    let mut damaged = log_of(&[&root]);
    damaged.extend_from_slice(b"{bad\n{\"id\"\n");
    let file = log_file(&sessions, &root.id);
    std::fs::write(&file, &damaged).unwrap();
    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.load(&root.id).await.unwrap(), None);
    assert_eq!(std::fs::read(&file).unwrap(), damaged, "left as it was");
}

#[tokio::test]
async fn a_session_name_lost_in_a_crash_is_restored_from_its_spare() {
    let (dir, sessions) = legacy_dir();
    let root = Session::new_root("p");
    // The spare's name was durable; the session's own was lost.
    std::fs::write(sessions.join(".spare-a1"), log_of(&[&root])).unwrap();
    std::fs::write(sessions.join(".spare-free"), b"").unwrap();
    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.load(&root.id).await.unwrap(), Some(root));
    assert!(left(&sessions).is_empty(), "{:?}", left(&sessions));
}

#[tokio::test]
async fn a_spare_still_linked_to_its_session_moves_it_once() {
    let (dir, sessions) = legacy_dir();
    let root = Session::new_root("p");
    let newer = with_message(&root, "after the create");
    let file = log_file(&sessions, &root.id);
    std::fs::write(&file, log_of(&[&root, &newer])).unwrap();
    std::fs::hard_link(&file, sessions.join(".spare-linked")).unwrap();
    // A spare linked to a name whose create never wrote: no session.
    std::fs::write(sessions.join(".spare-ghost"), b"").unwrap();
    std::fs::hard_link(sessions.join(".spare-ghost"), log_file(&sessions, "ghost")).unwrap();
    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.load(&root.id).await.unwrap(), Some(newer));
    assert_eq!(s.load("ghost").await.unwrap(), None);
    assert_eq!(s.list_ids().await.unwrap(), vec![root.id.clone()]);
    assert!(left(&sessions).is_empty(), "{:?}", left(&sessions));
}

#[tokio::test]
async fn a_session_rewritten_since_its_spare_keeps_the_rewrite() {
    let (dir, sessions) = legacy_dir();
    let root = Session::new_root("p");
    let rewritten = with_message(&root, "compacted");
    // The spare kept the first version; the log was rewritten whole.
    std::fs::write(sessions.join(".spare-old"), log_of(&[&root])).unwrap();
    std::fs::write(log_file(&sessions, &root.id), log_of(&[&rewritten])).unwrap();
    // A temp file of a rewrite cut short is never the session.
    std::fs::write(sessions.join(format!(".{}.jsonl.x.tmp", root.id)), b"{").unwrap();
    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.load(&root.id).await.unwrap(), Some(rewritten));
    assert!(left(&sessions).is_empty(), "{:?}", left(&sessions));
}

#[tokio::test]
async fn what_the_store_holds_wins_over_a_file_a_crash_left_after_the_move() {
    let (dir, sessions) = legacy_dir();
    let root = Session::new_root("p");
    std::fs::write(log_file(&sessions, &root.id), log_of(&[&root])).unwrap();
    let s = FileStore::open(dir.path()).await.unwrap();
    s.update(&root.id, tests::push("in the store"))
        .await
        .unwrap();
    drop(s);
    // As if the move's removal of the file had not reached the disk.
    std::fs::write(log_file(&sessions, &root.id), log_of(&[&root])).unwrap();
    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.load(&root.id).await.unwrap().unwrap().messages.len(), 1);
    assert!(left(&sessions).is_empty());
}

#[tokio::test]
async fn peeking_reads_a_directory_not_moved_yet_and_moves_nothing() {
    let (dir, sessions) = legacy_dir();
    let root = Session::new_root("p");
    std::fs::write(log_file(&sessions, &root.id), log_of(&[&root])).unwrap();
    assert_eq!(
        FileStore::peek_ids(dir.path()).unwrap(),
        vec![root.id.clone()]
    );
    assert_eq!(
        FileStore::peek(dir.path(), &root.id).unwrap(),
        Some(root.clone())
    );
    let listed = FileStore::peek_query(dir.path(), &Query::all()).unwrap();
    assert_eq!(listed, vec![Summary::of(&root)]);
    assert_eq!(left(&sessions), vec![format!("{}.jsonl", root.id)]);
    assert!(!sessions.join(super::db::FILE).exists());
}
