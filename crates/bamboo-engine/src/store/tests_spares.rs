//! Tests of the spare session files (S3): a create on a spare is durable,
//! and whatever a crash leaves of a spare, the next open settles it without
//! losing a session or bringing back a deleted one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::spares::TARGET;
use super::tests::push;
use super::*;
use bamboo_domain::ChildInfo;

/// A store whose spares are all free, so that no refill starts in the
/// background while a test looks at the files.
async fn store_with_spares(dir: &Path) -> FileStore {
    let s = FileStore::open(dir).await.unwrap();
    s.refill_spares().await;
    assert_eq!(s.free_spares(), TARGET);
    s
}

/// A root and `kids` children created on spares, in a fresh directory.
async fn family_on_spares(kids: usize) -> (tempfile::TempDir, FileStore, Session, Vec<Session>) {
    let dir = tempfile::tempdir().unwrap();
    let s = store_with_spares(dir.path()).await;
    let root = Session::new_root("p");
    s.create(&root).await.unwrap();
    let mut made = Vec::new();
    for i in 0..kids {
        let kid = Session::new_child(&root, ChildInfo::new("r", format!("a{i}")));
        s.create(&kid).await.unwrap();
        made.push(kid);
    }
    (dir, s, root, made)
}

fn session_file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("sessions/{id}.jsonl"))
}

fn links(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().nlink()
}

/// The spare files in `dir`'s `sessions/`, with their sizes.
fn spares(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("sessions"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".spare-"))
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn a_create_takes_a_spare_and_a_refill_retires_its_name() {
    let (dir, s, root, _) = family_on_spares(0).await;
    assert_eq!(s.free_spares(), TARGET - 1);
    let file = session_file(dir.path(), &root.id);
    assert_eq!(links(&file), 2, "the session shares the spare's file");
    assert_eq!(s.load(&root.id).await.unwrap(), Some(root.clone()));

    s.refill_spares().await;
    assert_eq!(links(&file), 1, "the spare's name is removed once synced");
    assert_eq!(s.free_spares(), TARGET);
    assert!(spares(dir.path()).iter().all(|(_, len)| *len == 0));
}

#[tokio::test]
async fn a_session_created_on_a_spare_survives_a_restart_with_one_name() {
    let (dir, s, root, kids) = family_on_spares(1).await;
    let kid = &kids[0];
    drop(s);

    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.load(&kid.id).await.unwrap(), Some(kid.clone()));
    assert_eq!(s.list_children(&root.id).await.unwrap(), kids);
    assert_eq!(links(&session_file(dir.path(), &kid.id)), 1);
    assert_eq!(
        s.free_spares(),
        TARGET - 2,
        "the other spares are free again"
    );
    assert!(spares(dir.path()).iter().all(|(_, len)| *len == 0));
}

#[tokio::test]
async fn a_session_name_lost_in_a_crash_is_restored_from_its_spare() {
    let (dir, s, root, _) = family_on_spares(0).await;
    s.update(&root.id, push("after the create")).await.unwrap();
    drop(s);
    // A crash before the directory sync can lose the session's new name;
    // the spare's name was durable all along.
    std::fs::remove_file(session_file(dir.path(), &root.id)).unwrap();

    let s = FileStore::open(dir.path()).await.unwrap();
    let back = s.load(&root.id).await.unwrap().unwrap();
    assert_eq!(back.messages.len(), 1, "the update is there too");
    assert_eq!(s.list_ids().await.unwrap(), vec![root.id.clone()]);
    assert_eq!(links(&session_file(dir.path(), &root.id)), 1);
    assert!(spares(dir.path()).iter().all(|(_, len)| *len == 0));
}

#[tokio::test]
async fn a_deleted_session_does_not_come_back_from_its_spare() {
    let (dir, s, root, kids) = family_on_spares(1).await;
    let kid = &kids[0];
    assert!(s.delete(&kid.id).await.unwrap());
    drop(s);

    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.load(&kid.id).await.unwrap(), None);
    assert!(s.list_children(&root.id).await.unwrap().is_empty());
    assert_eq!(s.list_ids().await.unwrap(), vec![root.id.clone()]);
}

#[tokio::test]
async fn a_compacted_session_is_not_rolled_back_to_its_spare() {
    let (dir, s, root, _) = family_on_spares(0).await;
    // Enough growth to rewrite the log through a temp file and a rename:
    // the spare's name keeps the first version.
    let big = "x".repeat(40 * 1024);
    for _ in 0..4 {
        s.update(&root.id, push(&big)).await.unwrap();
    }
    assert!(
        spares(dir.path()).iter().any(|(_, len)| *len > 0),
        "the spare still holds the old log"
    );
    drop(s);

    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.load(&root.id).await.unwrap().unwrap().messages.len(), 4);
    assert!(spares(dir.path()).iter().all(|(_, len)| *len == 0));
}

#[tokio::test]
async fn a_spare_a_crash_left_half_written_is_emptied_and_used_again() {
    let dir = tempfile::tempdir().unwrap();
    drop(FileStore::open(dir.path()).await.unwrap());
    let half = dir.path().join("sessions/.spare-half");
    std::fs::write(&half, b"{\"id\":\"half").unwrap();

    let s = FileStore::open(dir.path()).await.unwrap();
    assert!(s.list_ids().await.unwrap().is_empty());
    assert_eq!(s.free_spares(), 1);
    assert_eq!(std::fs::metadata(&half).unwrap().len(), 0);
    let root = Session::new_root("p");
    s.create(&root).await.unwrap();
    assert_eq!(
        std::fs::metadata(&half).unwrap().ino(),
        std::fs::metadata(session_file(dir.path(), &root.id))
            .unwrap()
            .ino(),
        "the create used the emptied spare"
    );
}

#[tokio::test]
async fn a_create_of_a_name_on_disk_fails_and_leaves_its_spare_free() {
    let dir = tempfile::tempdir().unwrap();
    let root = Session::new_root("p");
    {
        let s = FileStore::open(dir.path()).await.unwrap();
        s.create(&root).await.unwrap();
    }
    // A new store has nothing cached: only the file says the id is taken.
    let s = store_with_spares(dir.path()).await;
    assert!(matches!(
        s.create(&root).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(s.free_spares(), TARGET);
    assert!(spares(dir.path()).iter().all(|(_, len)| *len == 0));
    assert_eq!(s.load(&root.id).await.unwrap(), Some(root));
}

#[tokio::test]
async fn creates_beyond_the_free_spares_still_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(store_with_spares(dir.path()).await);
    let root = Session::new_root("p");
    s.create(&root).await.unwrap();
    let kids: Vec<Session> = (0..3 * TARGET)
        .map(|i| Session::new_child(&root, ChildInfo::new("r", format!("a{i}"))))
        .collect();
    let mut tasks = Vec::new();
    for k in kids.clone() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.create(&k).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    drop(s);
    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.list_children(&root.id).await.unwrap().len(), kids.len());
    for k in &kids {
        assert_eq!(links(&session_file(dir.path(), &k.id)), 1);
    }
}

#[tokio::test]
async fn a_spare_linked_to_a_session_name_is_never_used_again() {
    let dir = tempfile::tempdir().unwrap();
    drop(FileStore::open(dir.path()).await.unwrap());
    // A crash between a create's link and its write: both names, no data.
    let spare = dir.path().join("sessions/.spare-linked");
    std::fs::write(&spare, b"").unwrap();
    let ghost = session_file(dir.path(), "ghost");
    std::fs::hard_link(&spare, &ghost).unwrap();

    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(
        s.free_spares(),
        0,
        "a spare shared with a session is not free"
    );
    assert!(!spare.exists());
    assert_eq!(s.load("ghost").await.unwrap(), None, "a create never done");
    let root = Session::new_root("p");
    s.create(&root).await.unwrap();
    assert_eq!(s.load("ghost").await.unwrap(), None);
    assert_eq!(std::fs::metadata(&ghost).unwrap().len(), 0);
}
