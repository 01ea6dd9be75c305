//! The event log's guarantees, on real files: order, no gap, no duplicate,
//! a reader far behind the ring, the cap, reopening, delete and close.

use std::time::Duration;

use futures::StreamExt;

use super::*;

fn logs(dir: &std::path::Path, ring: usize, cap: u64) -> EventLogs {
    EventLogs::new(
        dir.join("events"),
        LogLimits {
            ring_events: ring,
            cap_bytes: cap,
        },
    )
}

fn tok(i: u64) -> AgentEvent {
    AgentEvent::token(format!("t{i}"))
}

fn publish(l: &EventLogs, session: &str, range: std::ops::Range<u64>) {
    let out = Fanout::new(l, &[session.to_owned()]);
    for i in range {
        out.publish(tok(i));
    }
}

async fn take(s: &mut EventStream, n: usize) -> Vec<LoggedEvent> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on");
        got.push(e);
    }
    got
}

fn assert_tokens(got: &[LoggedEvent], first_seq: u64) {
    for (i, e) in got.iter().enumerate() {
        let seq = first_seq + i as u64;
        assert_eq!(e.seq, seq, "sequence numbers have no gap and no duplicate");
        assert_eq!(*e.event, tok(seq - 1), "event {seq} is the one published");
    }
}

#[tokio::test]
async fn a_live_reader_gets_every_event_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 64, u64::MAX);
    let mut live = l.subscribe("p", Since::Start, false);
    let publisher = {
        let l = std::sync::Arc::new(l);
        let l2 = l.clone();
        (tokio::spawn(async move { publish(&l2, "p", 0..5000) }), l)
    };
    let got = take(&mut live, 5000).await;
    assert_tokens(&got, 1);
    publisher.0.await.unwrap();
}

#[tokio::test]
async fn a_reader_far_behind_the_ring_continues_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 16, u64::MAX);
    let mut slow = l.subscribe("p", Since::Start, false);
    publish(&l, "p", 0..20_000);
    // Everything but the last 16 is now only in the file.
    let got = take(&mut slow, 20_000).await;
    assert_tokens(&got, 1);
    // And it goes on live after catching up.
    publish(&l, "p", 20_000..20_010);
    assert_tokens(&take(&mut slow, 10).await, 20_001);
}

#[tokio::test]
async fn a_reader_just_behind_a_finished_run_reads_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 4096, u64::MAX);
    let out = Fanout::new(&l, &["p".to_owned()]);
    out.start_run();
    for i in 0..1000 {
        out.publish(tok(i));
    }
    let mut late = l.subscribe("p", Since::After(990), false);
    let mut far = l.subscribe("p", Since::After(100), false);
    out.finish_run();
    // The run is over: its events are in the file, and the newest few are
    // still in memory. Without the file, only the far reader notices.
    std::fs::remove_file(dir.path().join("events/p.ndjson")).unwrap();
    assert_tokens(&take(&mut late, 10).await, 991);
    let first = take(&mut far, 1).await.remove(0);
    assert!(
        matches!(
            *first.event,
            AgentEvent::EventsTruncated { first_seq: 101, .. }
        ),
        "the far reader needed the file: {first:?}"
    );
}

/// Child `c` of `p` completed with `answer`.
fn completed_with(answer: &str) -> AgentEvent {
    AgentEvent::SubAgentCompleted {
        parent_session_id: "p".into(),
        child_session_id: "c".into(),
        status: bamboo_domain::CompletionStatus::Completed,
        error: None,
        result: Some(answer.to_owned()),
        usage: None,
        worktree: None,
    }
}

#[tokio::test]
async fn a_long_answer_is_logged_whole_and_its_room_is_not_kept() {
    // The front door's memory must not keep the size of a child's largest
    // answer for the rest of the run.
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 4096, u64::MAX);
    let out = Fanout::new(&l, &["p".to_owned()]);
    let answer = "y".repeat(3 * 1024 * 1024);
    out.publish(completed_with(&answer));
    let log = l.log("p").unwrap();
    log.sync().await;
    assert!(
        log.buffer_capacity() <= 1024 * 1024,
        "the buffer kept {} bytes",
        log.buffer_capacity()
    );
    let text = std::fs::read_to_string(dir.path().join("events").join("p.ndjson")).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains(&answer), "the answer is in the file whole");
}

#[tokio::test]
async fn a_long_answer_goes_to_the_file_in_its_place_among_buffered_events() {
    // It is written straight to the file, behind the events still buffered
    // and before the next: a reader far behind (a ring of 16) reads the
    // file back in order, the answer whole.
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 16, u64::MAX);
    let out = Fanout::new(&l, &["p".to_owned()]);
    let answer = "z".repeat(3 * 1024 * 1024);
    for i in 0..40 {
        out.publish(tok(i));
    }
    let completed = completed_with(&answer);
    out.publish(completed.clone());
    for i in 40..80 {
        out.publish(tok(i));
    }
    let mut all = l.subscribe("p", Since::Start, false);
    let got = take(&mut all, 81).await;
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=81).collect::<Vec<_>>());
    for e in &got {
        match e.seq {
            41 => assert_eq!(*e.event, completed),
            s if s < 41 => assert_eq!(*e.event, tok(s - 1)),
            s => assert_eq!(*e.event, tok(s - 2)),
        }
    }
    l.close().await;
    let text = std::fs::read_to_string(dir.path().join("events").join("p.ndjson")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 81);
    assert!(lines[40].starts_with(r#"{"seq":41,"#) && lines[40].contains(&answer));
}

#[tokio::test(start_paused = true)]
async fn runs_ending_within_the_sync_window_share_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 4096, u64::MAX);
    let out = Fanout::new(&l, &["p".to_owned()]);
    for run in 0..3 {
        out.start_run();
        for i in run * 10..run * 10 + 10 {
            out.publish(tok(i));
        }
        out.finish_run();
        out.sync_in_background();
    }
    let log = l.log("p").unwrap();
    let syncs = || log.syncs.load(std::sync::atomic::Ordering::Acquire);
    // Waits (on the paused clock) until more than `n` syncs were done.
    let more_than = |n: u64| async move {
        for _ in 0..10_000 {
            if syncs() > n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::sleep(log::SYNC_WINDOW / 2).await;
    assert_eq!(syncs(), 0, "no sync before the window is over");
    tokio::time::sleep(log::SYNC_WINDOW).await;
    more_than(0).await;
    tokio::time::sleep(log::SYNC_WINDOW * 3).await;
    assert_eq!(syncs(), 1, "three runs, one sync");
    // A run ending after the window gets a sync of its own.
    out.start_run();
    out.publish(tok(30));
    out.finish_run();
    out.sync_in_background();
    more_than(1).await;
    assert_eq!(syncs(), 2);
}

#[tokio::test]
async fn each_event_keeps_its_own_time_in_memory_and_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 4096, u64::MAX);
    let out = ChildEvents::new(Fanout::new(&l, &["p".to_owned()]), "p", "c");
    // A burst shares one clock reading; the next burst has its own.
    let (a, b) = (1_763_780_000_123_456, 1_763_780_000_999_999);
    for micros in [a, a, b] {
        out.publish_at(micros, tok(0));
    }
    let want = [a, a, b].map(|m| chrono::DateTime::from_timestamp_micros(m).unwrap());
    let live: Vec<_> = take(&mut l.subscribe("p", Since::Start, false), 3)
        .await
        .iter()
        .map(|e| e.time)
        .collect();
    assert_eq!(live, want, "from memory");
    l.log("p").unwrap().write_pending();
    let file = std::fs::read_to_string(dir.path().join("events/p.ndjson")).unwrap();
    for (line, m) in file.lines().zip([a, a, b]) {
        assert!(line.contains(&format!("\"t\":{m},")), "{line}");
    }
}

#[tokio::test]
async fn subscriptions_start_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 16, u64::MAX);
    publish(&l, "p", 0..100);
    let mut now = l.subscribe("p", Since::Now, false);
    let mut after = l.subscribe("p", Since::After(40), false);
    let history = l.subscribe("p", Since::Start, true);
    publish(&l, "p", 100..110);
    assert_tokens(&take(&mut now, 10).await, 101);
    assert_tokens(&take(&mut after, 70).await, 41);
    let all: Vec<_> = history.collect().await;
    assert_eq!(
        all.len(),
        100,
        "a history read ends at what was logged at the call"
    );
    assert_tokens(&all, 1);
}

#[tokio::test]
async fn the_cap_is_reported_as_an_explicit_gap_never_silently() {
    let dir = tempfile::tempdir().unwrap();
    // Room for a few dozen lines only.
    let l = logs(dir.path(), 16, 2_000);
    let mut live = l.subscribe("p", Since::Start, false);
    publish(&l, "p", 0..200);
    // A live reader that kept up... here it did not, so it sees the gap.
    let mut seqs = Vec::new();
    let mut gap = None;
    while seqs.len() < 200 {
        let e = take(&mut live, 1).await.remove(0);
        match *e.event {
            AgentEvent::EventsTruncated {
                first_seq,
                last_seq,
                ..
            } => {
                assert_eq!(e.seq, last_seq);
                gap = Some((first_seq, last_seq));
                seqs.extend(first_seq..=last_seq);
            }
            _ => {
                assert_eq!(*e.event, tok(e.seq - 1));
                seqs.push(e.seq);
            }
        }
    }
    let (first, last) = gap.expect("a truncation event");
    assert!(first > 1 && last == 184, "lost {first}..={last}");
    assert_eq!(
        seqs,
        (1..=200).collect::<Vec<_>>(),
        "every seq accounted for once"
    );
}

#[tokio::test]
async fn a_reopened_log_continues_its_numbering_and_cuts_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_log(dir.path(), 50).await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, br#"{"seq":51,"t":1,"event":{"ty"#).unwrap();
    drop(f);
    let l = logs(dir.path(), 16, u64::MAX);
    let mut all = l.subscribe("p", Since::Start, false);
    publish(&l, "p", 50..60);
    assert_tokens(&take(&mut all, 60).await, 1);
}

/// A closed log of session `p` under `dir` holding tokens `0..n` (events
/// `1..=n`); its file's path.
async fn closed_log(dir: &std::path::Path, n: u64) -> std::path::PathBuf {
    let l = logs(dir, 16, u64::MAX);
    publish(&l, "p", 0..n);
    l.close().await;
    dir.join("events/p.ndjson")
}

/// What a reader of the whole log gets: `(seq, Some(token index))` for an
/// event, `(last_seq, None)` for each gap, with the gap's range checked.
async fn read_all(l: &EventLogs, n: usize) -> (Vec<u64>, Vec<(u64, u64)>) {
    let mut all = l.subscribe("p", Since::Start, false);
    let (mut seqs, mut gaps) = (Vec::new(), Vec::new());
    while seqs.len() < n {
        let e = take(&mut all, 1).await.remove(0);
        match *e.event {
            AgentEvent::EventsTruncated {
                first_seq,
                last_seq,
                ..
            } => {
                gaps.push((first_seq, last_seq));
                seqs.extend(first_seq..=last_seq);
            }
            _ => {
                assert_eq!(*e.event, tok(e.seq - 1));
                seqs.push(e.seq);
            }
        }
    }
    (seqs, gaps)
}

#[tokio::test]
async fn a_write_cut_short_and_glued_to_a_gap_marker_is_read_around_never_silently() {
    // What an older version left on a full disk: a cut-off event followed by
    // a gap marker on the same line, as the file's last line.
    let dir = tempfile::tempdir().unwrap();
    let path = closed_log(dir.path(), 50).await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(
        &mut f,
        b"{\"seq\":51,\"t\":1,\"event\":{\"type\":\"token\",\"content\":\"t5{\"gap_to\":70}\n",
    )
    .unwrap();
    drop(f);
    // A new engine: every whole line is read, the loss is explicit, and new
    // events are logged and read after it.
    let l = logs(dir.path(), 16, u64::MAX);
    publish(&l, "p", 50..60);
    let (seqs, gaps) = read_all(&l, 60).await;
    assert_eq!(gaps, Vec::<(u64, u64)>::new(), "numbering goes on from 51");
    assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
    // And a fresh reader of the file alone (no ring) sees the same.
    l.close().await;
    drop(l);
    let again = logs(dir.path(), 16, u64::MAX);
    let (seqs, _) = read_all(&again, 60).await;
    assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_damaged_line_in_the_middle_is_reported_as_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = closed_log(dir.path(), 40).await;
    let text = std::fs::read_to_string(&path).unwrap();
    // Event 21's line is damaged in place (its bytes zeroed, newline kept).
    let damaged: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("{\"seq\":21,") {
                "\0".repeat(line.len())
            } else {
                line.to_owned()
            }
        })
        .collect();
    std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
    let l = logs(dir.path(), 16, u64::MAX);
    let (seqs, gaps) = read_all(&l, 40).await;
    assert_eq!(gaps, vec![(21, 21)], "the lost event is named");
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
}

#[tokio::test]
async fn after_a_gap_a_reopened_log_logs_again_and_readers_see_both() {
    // A log whose writes failed: events 31..=45 never reached the file, the
    // gap marker did. The next engine logs again after it.
    let dir = tempfile::tempdir().unwrap();
    let path = closed_log(dir.path(), 30).await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"gap_to\":45}\n").unwrap();
    drop(f);
    let l = logs(dir.path(), 16, u64::MAX);
    publish(&l, "p", 45..50);
    let (seqs, gaps) = read_all(&l, 50).await;
    assert_eq!(gaps, vec![(31, 45)]);
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    l.close().await;
    drop(l);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with("\n") && text.lines().all(|l| line::parse(l.as_bytes()).is_some()));
    // The new events are in the file, not only in the old engine's memory.
    let again = logs(dir.path(), 16, u64::MAX);
    let (seqs, gaps) = read_all(&again, 50).await;
    assert_eq!(gaps, vec![(31, 45)]);
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_log_in_another_layout_reads_through_serde_and_continues() {
    // Lines as another writer might lay them out (key order, spaces,
    // escapes): the hand-written parser leaves them to serde.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events/p.ndjson");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        concat!(
            "{\"t\":5,\"seq\":1,\"event\":{\"type\":\"token\",\"content\":\"t0\"}}\n",
            "{ \"seq\": 2, \"t\": 5, \"event\": {\"content\": \"t1\", \"type\": \"token\"} }\n",
            "{\"seq\":3,\"t\":5,\"event\":{\"type\":\"token\",\"content\":\"\\u0074\\u0032\"}}\n",
        ),
    )
    .unwrap();
    let l = logs(dir.path(), 16, u64::MAX);
    let mut all = l.subscribe("p", Since::Start, false);
    publish(&l, "p", 3..5);
    assert_tokens(&take(&mut all, 5).await, 1);
}

#[tokio::test]
async fn delete_ends_readers_and_removes_the_file_close_ends_them_after_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 16, u64::MAX);
    publish(&l, "a", 0..100);
    publish(&l, "b", 0..100);
    let mut a = l.subscribe("a", Since::Start, false);
    let b = l.subscribe("b", Since::Start, false);
    l.close().await;
    let path_a = dir.path().join("events/a.ndjson");
    assert!(path_a.exists());
    l.remove("a");
    assert!(!path_a.exists(), "a deleted session's log is removed");
    assert!(a.next().await.is_none(), "its readers end at once");
    let rest: Vec<_> = b.collect().await;
    assert_eq!(
        rest.len(),
        100,
        "at close, readers get everything, then end"
    );
}

#[tokio::test]
async fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 16, u64::MAX);
    publish(&l, "p", 0..10);
    l.close().await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("events")), 0o700);
    assert_eq!(mode(&dir.path().join("events/p.ndjson")), 0o600);
}

#[tokio::test]
async fn an_id_that_cannot_be_a_session_has_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let l = logs(dir.path(), 16, u64::MAX);
    assert!(l.log("../escape").is_none());
    let s = l.subscribe("../escape", Since::Start, false);
    assert_eq!(s.collect::<Vec<_>>().await.len(), 0);
}

fn started(child: u64) -> AgentEvent {
    AgentEvent::SubAgentStarted {
        parent_session_id: "p".into(),
        child_session_id: format!("c{child}"),
        title: None,
    }
}

fn completed(child: u64) -> AgentEvent {
    AgentEvent::SubAgentCompleted {
        parent_session_id: "p".into(),
        child_session_id: format!("c{child}"),
        status: bamboo_domain::CompletionStatus::Completed,
        error: None,
        result: Some(format!("done {child}")),
        usage: None,
        worktree: None,
    }
}

/// Publishes `children` runs to `p`'s log, one after another: each starts,
/// streams `tokens` tokens and ends. Returns how many events that was.
fn publish_runs(l: &EventLogs, children: u64, tokens: u64) -> u64 {
    let out = Fanout::new(l, &["p".to_owned()]);
    out.start_run();
    for c in 0..children {
        out.publish(started(c));
        for i in 0..tokens {
            out.publish(tok(i));
        }
        out.publish(completed(c));
    }
    out.finish_run();
    children * (tokens + 2)
}

/// Reads `p`'s log from its start until event `n` is accounted for: the
/// runs started and ended, in order, and the lost stretches. Every number
/// is accounted for once. Fails (rather than hangs) when the reader stops
/// getting events.
async fn runs_seen(l: &EventLogs, n: u64) -> (Vec<String>, Vec<(u64, u64)>) {
    let mut reader = l.subscribe("p", Since::Start, false);
    let (mut runs, mut gaps, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
    while seqs.last() != Some(&n) {
        let e = take(&mut reader, 1).await.remove(0);
        match &*e.event {
            AgentEvent::EventsTruncated {
                first_seq,
                last_seq,
                ..
            } => {
                assert_eq!(e.seq, *last_seq);
                gaps.push((*first_seq, *last_seq));
                seqs.extend(*first_seq..=*last_seq);
            }
            AgentEvent::SubAgentStarted {
                child_session_id, ..
            } => {
                runs.push(format!("started {child_session_id}"));
                seqs.push(e.seq);
            }
            AgentEvent::SubAgentCompleted {
                child_session_id,
                result,
                ..
            } => {
                let result = result.as_deref().unwrap_or_default();
                runs.push(format!("completed {child_session_id}: {result}"));
                seqs.push(e.seq);
            }
            _ => seqs.push(e.seq),
        }
    }
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "every seq once, in order"
    );
    (runs, gaps)
}

fn every_run(children: u64) -> Vec<String> {
    (0..children)
        .flat_map(|c| [format!("started c{c}"), format!("completed c{c}: done {c}")])
        .collect()
}

// Behaviours: S6, E2
#[tokio::test]
async fn a_reader_behind_a_small_ring_sees_every_run_start_and_end_through_the_caps_loss() {
    let dir = tempfile::tempdir().unwrap();
    // A ring of 16 events and room in the file for a few dozen lines: the
    // reader, which reads only once every run is over, is far behind both.
    let l = logs(dir.path(), 16, 2_000);
    let n = publish_runs(&l, 5, 100);
    let (runs, gaps) = runs_seen(&l, n).await;
    assert_eq!(runs, every_run(5), "no run's start or end is lost");
    assert!(gaps.len() > 1, "the tokens between them are: {gaps:?}");
    // A reader that stops at what was logged when it subscribed ends.
    let until: Vec<_> = l.subscribe("p", Since::Start, true).collect().await;
    assert_eq!(until.last().map(|e| e.seq), Some(n));
}

// Behaviours: S6, E2
#[tokio::test]
async fn a_reader_of_a_log_that_cannot_be_written_sees_every_run_start_and_end() {
    let dir = tempfile::tempdir().unwrap();
    // The file cannot be created (as on a disk full before the first
    // write): the log lives in its 16-event ring alone.
    std::fs::write(dir.path().join("events"), b"not a directory").unwrap();
    let l = logs(dir.path(), 16, u64::MAX);
    let n = publish_runs(&l, 4, 50);
    let (runs, gaps) = runs_seen(&l, n).await;
    assert_eq!(runs, every_run(4));
    assert_eq!(
        gaps.first().map(|g| g.0),
        Some(2),
        "all but the first start is lost: {gaps:?}"
    );
}
