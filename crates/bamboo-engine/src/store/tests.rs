//! Tests of the default session store on real files in temporary directories (S3).

use super::*;
use bamboo_domain::{ChildInfo, Message};
use std::sync::Arc;

async fn child_ids(s: &FileStore, parent: &str) -> Vec<String> {
    let kids = s.list_children(parent).await.unwrap();
    kids.into_iter().map(|k| k.id).collect()
}

/// A data directory holding a root and `n` children, its store closed again.
async fn stored_family(n: usize) -> (tempfile::TempDir, Session, Vec<Session>) {
    let dir = tempfile::tempdir().unwrap();
    let parent = Session::new_root("p");
    let kids: Vec<Session> = (0..n)
        .map(|i| Session::new_child(&parent, ChildInfo::new("r", format!("a{i}"))))
        .collect();
    let s = FileStore::open(dir.path()).await.unwrap();
    s.create(&parent).await.unwrap();
    for k in &kids {
        s.create(k).await.unwrap();
    }
    (dir, parent, kids)
}

async fn store() -> (tempfile::TempDir, Arc<FileStore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStore::open(dir.path()).await.unwrap();
    (dir, Arc::new(s))
}

#[tokio::test]
async fn save_load_list_delete_round_trip() {
    let (_d, s) = store().await;
    let parent = Session::new_root("p");
    s.create(&parent).await.unwrap();
    let a = Session::new_child(&parent, ChildInfo::new("r", "a"));
    let b = Session::new_child(&parent, ChildInfo::new("r", "b"));
    s.create(&a).await.unwrap();
    s.create(&b).await.unwrap();
    assert!(matches!(
        s.create(&a).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(s.load(&a.id).await.unwrap(), Some(a.clone()));
    let kids: Vec<_> = s.list_children(&parent.id).await.unwrap();
    assert_eq!(
        kids.iter().map(|k| &k.id).collect::<Vec<_>>(),
        vec![&a.id, &b.id]
    );
    assert!(s.delete(&a.id).await.unwrap());
    assert!(!s.delete(&a.id).await.unwrap());
    assert_eq!(s.load(&a.id).await.unwrap(), None);
    assert_eq!(s.list_children(&parent.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_change_not_waited_for_is_seen_at_once_and_stored_before_the_next_write() {
    let (dir, parent, kids) = stored_family(1).await;
    let id = kids[0].id.clone();
    let s = FileStore::open(dir.path()).await.unwrap();
    let stalled = s.stall_writes();
    // Nothing can commit, yet the change is answered and read back.
    let marked = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        s.update_soon(
            &id,
            Box::new(|c: &mut Session| {
                c.title = "marked".into();
                true
            }),
        ),
    )
    .await
    .expect("update_soon waited for the disk")
    .unwrap();
    assert_eq!(marked.title, "marked");
    assert_eq!(s.load(&id).await.unwrap().unwrap().title, "marked");
    // A waited-for write of the session goes after it, on top of it.
    let stored = {
        let later = s.update(
            &id,
            Box::new(|c: &mut Session| {
                c.metadata.insert("after".into(), true.into());
                true
            }),
        );
        tokio::pin!(later);
        assert!(
            futures::poll!(&mut later).is_pending(),
            "stored while nothing could commit"
        );
        drop(stalled);
        later.await.unwrap()
    };
    assert_eq!(stored.title, "marked");
    drop(s);
    let reopened = FileStore::open(dir.path()).await.unwrap();
    let read = reopened.load(&id).await.unwrap().unwrap();
    assert_eq!(read.title, "marked");
    assert_eq!(read.metadata.get("after"), Some(&true.into()));
    assert_eq!(child_ids(&reopened, &parent.id).await, vec![id]);
}

#[tokio::test]
async fn concurrent_updates_of_one_session_lose_nothing() {
    let (_d, s) = store().await;
    let root = Session::new_root("p");
    s.create(&root).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        let id = root.id.clone();
        tasks.push(tokio::spawn(async move {
            s.update(
                &id,
                Box::new(move |sess: &mut Session| {
                    sess.messages.push(Message::user(format!("m{i}")));
                    true
                }),
            )
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let back = s.load(&root.id).await.unwrap().unwrap();
    assert_eq!(
        back.messages.len(),
        40,
        "every concurrent update must survive"
    );
}

#[tokio::test]
async fn writes_are_atomic_and_leave_no_temp_files() {
    let (dir, s) = store().await;
    let mut root = Session::new_root("p");
    s.create(&root).await.unwrap();
    // Many concurrent whole-document saves: every read sees a complete document.
    let mut tasks = Vec::new();
    for i in 0..20 {
        root.title = format!("t{i}");
        root.messages.push(Message::user("x".repeat(10_000)));
        let (s1, snap) = (s.clone(), root.clone());
        tasks.push(tokio::spawn(async move { s1.save(&snap).await.unwrap() }));
        let s2 = s.clone();
        let id = root.id.clone();
        tasks.push(tokio::spawn(async move {
            // Never torn: a load either parses or the test fails with Corrupt.
            s2.load(&id).await.unwrap().unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sessions"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
}

/// Earlier versions kept the child index on the disk (`children/`, one
/// marker file per child, or a `<parent>.json` list before that). It is
/// removed at open, and the listing comes from the sessions alone.
#[tokio::test]
async fn an_on_disk_index_of_an_earlier_version_is_removed_and_ignored() {
    let (dir, parent, kids) = stored_family(3).await;
    let index = dir.path().join("children");
    let markers = index.join(&parent.id);
    std::fs::create_dir_all(&markers).unwrap();
    // An entry lost, one for a session never written, a list file.
    std::fs::write(markers.join(&kids[0].id), b"").unwrap();
    std::fs::write(markers.join("ghost"), b"").unwrap();
    std::fs::write(index.join(format!("{}.json", parent.id)), b"[]").unwrap();
    let s = FileStore::open(dir.path()).await.unwrap();
    assert!(!index.exists(), "the old index is removed");
    assert_eq!(
        child_ids(&s, &parent.id).await,
        kids.iter().map(|k| k.id.clone()).collect::<Vec<_>>()
    );
}

/// Writes `doc` as session `id`'s stored JSON behind the store's back.
fn overwrite(dir: &std::path::Path, id: &str, doc: &str) {
    let c = rusqlite::Connection::open(dir.join("sessions").join(super::db::FILE)).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let n = c
        .execute("UPDATE sessions SET doc = ?1 WHERE id = ?2", [doc, id])
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn s7_a_damaged_session_and_bad_ids_give_clear_errors() {
    let (dir, parent, _) = stored_family(0).await;
    overwrite(dir.path(), &parent.id, "{torn");
    let s = FileStore::open(dir.path()).await.unwrap();
    let err = s.load(&parent.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert!(err.to_string().contains(&parent.id), "{err}");
    assert!(matches!(
        s.load("../etc").await,
        Err(StoreError::InvalidId(_))
    ));
    let missing = s.update("nope", Box::new(|_| true)).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)));
}

#[tokio::test]
async fn concurrent_creates_under_one_parent_are_all_listed_oldest_first() {
    let (_dir, s) = store().await;
    let parent = Session::new_root("p");
    s.create(&parent).await.unwrap();
    let kids: Vec<Session> = (0..20)
        .map(|i| Session::new_child(&parent, ChildInfo::new("r", format!("a{i}"))))
        .collect();
    let creates = kids.iter().map(|k| s.create(k));
    for r in futures::future::join_all(creates).await {
        r.unwrap();
    }
    let listed = child_ids(&s, &parent.id).await;
    let mut expected: Vec<_> = kids.iter().map(|k| (k.created_at, k.id.clone())).collect();
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    assert_eq!(listed, expected);
}

pub(super) fn push(text: &str) -> Mutator<'static> {
    let text = text.to_owned();
    Box::new(move |s: &mut Session| {
        s.messages.push(Message::user(text));
        true
    })
}

#[tokio::test]
async fn many_updates_keep_the_database_to_a_few_copies_of_the_session() {
    let (dir, s) = store().await;
    let root = Session::new_root("p");
    s.create(&root).await.unwrap();
    for i in 0..300 {
        s.update(&root.id, push(&format!("message {i}")))
            .await
            .unwrap();
    }
    let back = s.load(&root.id).await.unwrap().unwrap();
    assert_eq!(back.messages.len(), 300);
    let one = serde_json::to_vec(&back).unwrap().len() as u64;
    drop(s);
    let path = dir.path().join("sessions").join(super::db::FILE);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size <= (128 * 1024).max(5 * one),
        "the database is {size} bytes for a {one}-byte session"
    );
}

#[tokio::test]
async fn sessions_of_the_one_document_layout_are_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let parent = Session::new_root("p");
    let kid = Session::new_child(&parent, ChildInfo::new("r", "a"));
    for s in [&parent, &kid] {
        let doc = serde_json::to_vec_pretty(s).unwrap();
        std::fs::write(sessions.join(format!("{}.json", s.id)), doc).unwrap();
    }
    std::fs::write(sessions.join("broken.json"), b"{torn").unwrap();
    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(s.load(&kid.id).await.unwrap(), Some(kid.clone()));
    let kids = s.list_children(&parent.id).await.unwrap();
    assert_eq!(kids, vec![kid.clone()]);
    assert!(!sessions.join(format!("{}.json", kid.id)).exists());
    assert!(
        sessions.join("broken.json").exists(),
        "an unreadable document is left for the operator"
    );
}

#[tokio::test]
async fn a_data_directory_serves_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = FileStore::open(dir.path()).await.unwrap();
    let err = FileStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    assert!(
        err.to_string().contains("in use by another engine"),
        "{err}"
    );
    drop(first);
    FileStore::open(dir.path()).await.unwrap();
}

#[tokio::test]
async fn a_session_stored_by_an_earlier_engine_cannot_be_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = Session::new_root("p");
    {
        let s = FileStore::open(dir.path()).await.unwrap();
        s.create(&root).await.unwrap();
    }
    // A fresh store knows nothing of it until it looks at the file.
    let s = FileStore::open(dir.path()).await.unwrap();
    let mut other = Session::new_root("other");
    other.id = root.id.clone();
    assert!(matches!(
        s.create(&other).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(s.load(&root.id).await.unwrap(), Some(root));
}

/// A load that misses the cache must not fill it: it holds no lock, so it can
/// read the database just before an update writes and cache the older
/// version after the update cached its own; the next update would then start
/// from the old version and drop the one before. Shown here by changing the
/// stored session after a load: the next load must see the change, not a
/// pinned copy.
#[tokio::test]
async fn a_load_never_pins_an_older_version_in_the_cache() {
    let (dir, parent, _) = stored_family(0).await;
    let s = FileStore::open(dir.path()).await.unwrap();
    assert!(s
        .load(&parent.id)
        .await
        .unwrap()
        .unwrap()
        .messages
        .is_empty());
    let mut newer = parent.clone();
    newer.messages.push(Message::user("written in between"));
    overwrite(
        dir.path(),
        &parent.id,
        &serde_json::to_string(&newer).unwrap(),
    );
    let back = s.load(&parent.id).await.unwrap().unwrap();
    assert_eq!(
        back.messages.len(),
        1,
        "a stale copy was cached by the load"
    );
    s.update(&parent.id, push("next")).await.unwrap();
    assert_eq!(s.load(&parent.id).await.unwrap().unwrap().messages.len(), 2);
}

/// Every directory and file a path holds, itself included.
fn walk(path: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(path.to_path_buf());
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            walk(&entry.unwrap().path(), out);
        }
    }
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Sessions are private: under the usual umask 022 (which leaves created
/// files 0644 and directories 0755 unless the code says otherwise) every
/// directory the store creates is 0700 and every file 0600.
#[tokio::test]
async fn everything_the_store_creates_is_owner_only_under_umask_022() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let top = tempfile::tempdir().unwrap();
    let data = top.path().join("nested/data");
    let s = FileStore::open(&data).await.unwrap();
    let root = Session::new_root("p");
    s.create(&root).await.unwrap();
    let kid = Session::new_child(&root, ChildInfo::new("r", "a"));
    s.create(&kid).await.unwrap();
    s.save(&kid).await.unwrap();
    let big = "x".repeat(40 * 1024);
    for _ in 0..4 {
        s.update(&root.id, push(&big)).await.unwrap();
    }
    drop(s);
    let s = FileStore::open(&data).await.unwrap();
    assert_eq!(child_ids(&s, &root.id).await, vec![kid.id.clone()]);

    // While open: the database, its WAL and shared-memory files, the lock.
    let mut all = Vec::new();
    walk(&top.path().join("nested"), &mut all);
    assert!(all.len() >= 7, "{all:?}");
    for path in &all {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(path), want, "{} is {:o}", path.display(), mode(path));
    }
}

/// A data directory left by an earlier version, with group- and
/// world-readable subdirectories and files, is narrowed at open.
#[tokio::test]
async fn wider_modes_left_by_an_earlier_version_are_narrowed() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, parent, _) = stored_family(1).await;
    let sessions = dir.path().join("sessions");
    let file = sessions.join(super::db::FILE);
    let wide = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    wide(&sessions, 0o755);
    wide(&file, 0o644);
    wide(dir.path(), 0o755);
    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(mode(dir.path()), 0o700, "an engine's data directory");
    assert_eq!(mode(&sessions), 0o700);
    s.update(&parent.id, push("again")).await.unwrap();
    assert_eq!(mode(&file), 0o600);
    let wal = sessions.join(format!("{}-wal", super::db::FILE));
    assert_eq!(mode(&wal), 0o600);
}

/// A data directory made for the engine (empty, like the front door's
/// temporary one) is narrowed; a populated one that is not an engine's may
/// be shared and keeps its mode.
#[tokio::test]
async fn an_empty_data_directory_is_narrowed_and_a_shared_one_is_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let fresh = tempfile::tempdir().unwrap();
    std::fs::set_permissions(fresh.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(FileStore::open(fresh.path()).await.unwrap());
    assert_eq!(mode(fresh.path()), 0o700);

    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("notes.txt"), b"someone else's").unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(FileStore::open(shared.path()).await.unwrap());
    assert_eq!(mode(shared.path()), 0o755);
    assert_eq!(mode(&shared.path().join("sessions")), 0o700);
}

#[test]
fn s7_os_errors_are_sorted_by_what_the_operator_must_do() {
    let path = std::path::Path::new("/data/sessions/a.jsonl");
    let of = |errno| StoreError::from_io(path, std::io::Error::from_raw_os_error(errno));
    // ENOSPC, EDQUOT
    for errno in [28, 122] {
        let e = of(errno);
        assert!(e.is_out_of_space(), "{errno}: {e:?}");
        assert!(e.to_string().contains("free space in the data directory"));
    }
    // EACCES, EPERM, EROFS
    for errno in [13, 1, 30] {
        assert!(
            matches!(of(errno), StoreError::PermissionDenied { .. }),
            "{errno}"
        );
    }
    // EIO
    assert!(matches!(of(5), StoreError::Io { .. }));
    assert!(!of(5).is_out_of_space());
}

#[tokio::test]
async fn s5_sessions_are_listed_by_project_also_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Session::new_root("p");
    p.project_key = Some("/src/p".into());
    let mut q = Session::new_root("q");
    q.project_key = Some("/src/q".into());
    let pc = Session::new_child(&p, ChildInfo::new("r", "a"));
    let qc = Session::new_child(&q, ChildInfo::new("r", "b"));
    let ids = |v: Vec<Session>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    {
        let s = FileStore::open(dir.path()).await.unwrap();
        for x in [&p, &q, &pc, &qc] {
            s.create(x).await.unwrap();
        }
        assert_eq!(
            ids(s.list_project("/src/p").await.unwrap()),
            [p.id.clone(), pc.id.clone()]
        );
        s.delete(&pc.id).await.unwrap();
        assert_eq!(ids(s.list_project("/src/p").await.unwrap()), [p.id.clone()]);
    }
    let s = FileStore::open(dir.path()).await.unwrap();
    assert_eq!(
        ids(s.list_project("/src/q").await.unwrap()),
        [q.id.clone(), qc.id.clone()]
    );
    assert!(s.list_project("/src/none").await.unwrap().is_empty());
}

/// Listings by parent, project key, status and time come from the
/// store's indices, a page at a time, in either order.
#[tokio::test]
async fn s11_queries_select_by_parent_project_status_and_time_a_page_at_a_time() {
    use bamboo_domain::ChildStatus;
    let (_d, s) = store().await;
    let mut root = Session::new_root("p");
    root.project_key = Some("/src/p".into());
    s.create(&root).await.unwrap();
    let other = Session::new_root("q");
    s.create(&other).await.unwrap();
    let mut kids = Vec::new();
    for i in 0..10 {
        let mut k = Session::new_child(&root, ChildInfo::new("r", format!("a{i}")));
        k.created_at = root.created_at + chrono::Duration::seconds(i + 1);
        if i % 3 == 0 {
            k.child.as_mut().unwrap().status = ChildStatus::Running;
        }
        s.create(&k).await.unwrap();
        kids.push(k);
    }
    let ids = |v: Vec<Summary>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let kid_ids = |f: &dyn Fn(usize) -> bool| {
        (0..10)
            .filter(|i| f(*i))
            .map(|i| kids[i].id.clone())
            .collect::<Vec<_>>()
    };
    let roots = Query {
        parent: Parent::None,
        ..Query::default()
    };
    assert_eq!(
        ids(s.query(&roots).await.unwrap()),
        [root.id.clone(), other.id.clone()]
    );
    assert_eq!(
        ids(s.query(&Query::children_of(&root.id)).await.unwrap()),
        kid_ids(&|_| true)
    );
    assert_eq!(
        ids(s
            .query(&Query::with_status(ChildStatus::Running))
            .await
            .unwrap()),
        kid_ids(&|i| i % 3 == 0)
    );
    let project = Query {
        project: Some("/src/p".into()),
        ..Query::default()
    };
    // A child is of its parent's project.
    let mut of_project = vec![root.id.clone()];
    of_project.extend(kid_ids(&|_| true));
    assert_eq!(ids(s.query(&project).await.unwrap()), of_project);
    let window = Query {
        since: Some(kids[2].created_at),
        until: Some(kids[5].created_at),
        ..Query::children_of(&root.id)
    };
    assert_eq!(
        ids(s.query(&window).await.unwrap()),
        kid_ids(&|i| (2..5).contains(&i))
    );
    // Newest first, four at a time, each page after the last one's end.
    let mut page = Query {
        newest_first: true,
        limit: Some(4),
        ..Query::children_of(&root.id)
    };
    let mut seen = Vec::new();
    loop {
        let got = s.query(&page).await.unwrap();
        let Some(last) = got.last() else { break };
        page.after = Some((last.created_at, last.id.clone()));
        seen.extend(ids(got));
    }
    let mut newest_first = kid_ids(&|_| true);
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    // The summary carries what a listing shows.
    let one = &s.query(&Query::children_of(&root.id)).await.unwrap()[0];
    assert_eq!(one, &Summary::of(&kids[0]));
}

#[tokio::test]
async fn peek_reads_a_session_while_the_store_is_open_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    let mut root = Session::new_root("r");
    store.create(&root).await.unwrap();
    root.title = "renamed".into();
    store.save(&root).await.unwrap();
    // The store holds the directory's lock; peeking takes none.
    let seen = FileStore::peek(dir.path(), &root.id).unwrap().unwrap();
    assert_eq!(seen.title, "renamed");
    assert!(FileStore::peek(dir.path(), "nobody").unwrap().is_none());
    assert!(matches!(
        FileStore::peek(dir.path(), "../x"),
        Err(StoreError::InvalidId(_))
    ));
}
