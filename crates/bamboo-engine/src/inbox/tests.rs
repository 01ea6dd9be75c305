//! The inbox on real files: order, dedupe, crash recovery, corrupt files,
//! owner-only modes.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn msg(body: &str) -> InboxMessage {
    InboxMessage::new(InboxKind::Message, "parent", body)
}

#[test]
fn messages_are_claimed_in_delivery_order_and_gone_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path().join("s1")).unwrap();
    let (a, b) = (msg("first"), msg("second"));
    assert_eq!(inbox.deliver(&a).unwrap(), Delivered::New);
    assert_eq!(inbox.deliver(&b).unwrap(), Delivered::New);
    assert_eq!(inbox.peek().unwrap().len(), 2);
    let got = inbox.claim().unwrap().unwrap();
    assert_eq!(got, a);
    inbox.ack(&got.id).unwrap();
    assert_eq!(inbox.claim().unwrap().unwrap().body, "second");
    inbox.ack(&b.id).unwrap();
    assert!(inbox.claim().unwrap().is_none());
    inbox.ack(&b.id).unwrap();
}

#[test]
fn a_second_delivery_of_the_same_id_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let m = msg("once");
    inbox.deliver(&m).unwrap();
    assert_eq!(inbox.deliver(&m).unwrap(), Delivered::Duplicate);
    // Also while it is claimed.
    inbox.claim().unwrap().unwrap();
    assert_eq!(inbox.deliver(&m).unwrap(), Delivered::Duplicate);
    assert!(inbox.claim().unwrap().is_none());
}

#[test]
fn a_message_claimed_but_not_acked_before_a_crash_comes_back_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s1");
    let m = msg("survive");
    {
        let inbox = Inbox::open(&root).unwrap();
        inbox.deliver(&m).unwrap();
        assert_eq!(inbox.claim().unwrap().unwrap(), m);
        // The process dies here: no ack.
    }
    // A half-written temp file from the crash is never seen as a message.
    std::fs::write(root.join("tmp").join("0-partial.json"), b"{\"id\":").unwrap();
    let reopened = Inbox::open(&root).unwrap();
    assert_eq!(reopened.claim().unwrap().unwrap(), m);
    reopened.ack(&m.id).unwrap();
    assert!(reopened.claim().unwrap().is_none());
}

#[test]
fn an_unreadable_file_is_set_aside_and_the_next_message_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let good = msg("good");
    inbox.deliver(&good).unwrap();
    // Sorts before the good one.
    std::fs::write(dir.path().join("new").join("0-bad.json"), b"not json").unwrap();
    assert_eq!(inbox.claim().unwrap().unwrap(), good);
    assert!(dir.path().join("corrupt").join("0-bad.json").exists());
}

#[test]
fn files_are_0600_and_directories_0700() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s1");
    let inbox = Inbox::open(&root).unwrap();
    inbox.deliver(&msg("private")).unwrap();
    std::fs::write(root.join("new").join("0-bad.json"), b"not json").unwrap();
    inbox.deliver(&msg("kept")).unwrap();
    inbox.claim().unwrap().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in ["", "tmp", "new", "cur", "corrupt"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d}");
    }
    let file = std::fs::read_dir(root.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(mode(&file.path()), 0o600);
}

#[test]
fn an_inbox_nobody_writes_to_makes_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s1");
    let inbox = Inbox::open(&root).unwrap();
    assert_eq!(inbox.count().unwrap(), 0);
    assert!(inbox.peek().unwrap().is_empty());
    assert!(inbox.claim_all().unwrap().is_empty());
    assert!(inbox.take("m-1").unwrap().is_none());
    inbox.ack("m-1").unwrap();
    assert!(
        !root.exists(),
        "reading an empty inbox made {}",
        root.display()
    );
}

#[test]
fn ids_that_could_escape_the_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path()).unwrap();
    let mut m = msg("x");
    m.id = "../evil".into();
    assert!(matches!(inbox.deliver(&m), Err(InboxError::InvalidId(_))));
}
