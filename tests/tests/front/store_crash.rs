//! The session store under crashes and across versions (S3, S6, S9, S10):
//! a front door killed with SIGKILL while its children complete leaves every
//! completion it reported stored, and every record whole; a data directory
//! written by the earlier one-file-per-session layout opens and lists as
//! before.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use bamboo_domain::ChildStatus;
use bamboo_engine::store::{FileStore, Parent, Query, SessionStore};
use serde_json::Value;

fn worker() -> Command {
    let mut c = Command::new(bamboo_e2e::worker_bin());
    c.env("NO_COLOR", "1");
    c
}

/// Starts `run --json` of `n` echo children in `data`, kills it with
/// SIGKILL after `after` completions, and returns the children it reported
/// `completed` (every line it printed, also those still in the pipe).
fn run_and_kill(data: &Path, tasks: &Path, after: usize) -> Vec<String> {
    let mut child = worker()
        .args([
            "run",
            "--json",
            "--executor",
            "echo",
            "-j",
            "16",
            "--data-dir",
        ])
        .arg(data)
        .arg("--from")
        .arg(tasks)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reported = Vec::new();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let e = &v["event"];
        if e["type"] == "sub_agent_completed" && e["status"] == "completed" {
            reported.push(e["child_session_id"].as_str().unwrap().to_owned());
        }
        if !killed && reported.len() >= after {
            child.kill().unwrap();
            killed = true;
        }
    }
    child.wait().unwrap();
    assert!(killed, "the run ended before {after} completions");
    reported
}

#[tokio::test]
async fn s9_a_kill_while_children_complete_loses_no_reported_completion_and_tears_no_record() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let tasks = tmp.path().join("tasks.txt");
    let lines: String = (0..400).map(|i| format!("k{i} some words\n")).collect();
    std::fs::write(&tasks, lines).unwrap();
    let mut reported = Vec::new();
    // Killed at different points of the fan-out, on one directory: each
    // next run also opens what the kill left.
    for after in [1, 25, 90, 160, 240] {
        reported.extend(run_and_kill(&data, &tasks, after));
    }
    assert!(reported.len() >= 500, "{} completions", reported.len());

    // Offline, every record: readable, and every reported completion stored.
    let store = FileStore::open(&data).await.unwrap();
    let all = store.query(&Query::all()).await.unwrap();
    for s in &all {
        let whole = store.load(&s.id).await.unwrap().unwrap();
        assert_eq!(whole.id, s.id);
    }
    for id in &reported {
        let s = store.load(id).await.unwrap().unwrap();
        assert_eq!(s.status(), Some(ChildStatus::Completed), "{id}");
        let last = s.messages.last().unwrap();
        assert!(last.content.starts_with("echo: "), "{id}: {last:?}");
    }
    let roots = Query {
        parent: Parent::None,
        ..Query::default()
    };
    assert_eq!(store.query(&roots).await.unwrap().len(), 5);
}

/// A directory as the one-file-per-session store wrote it (the layout
/// before the database): `sessions/<id>.jsonl` logs of whole versions, one
/// per line, and a spare file.
fn legacy_data(into: &Path) -> (String, Vec<String>) {
    use bamboo_domain::{ChildInfo, Message, Session};
    let sessions = into.join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let line = |s: &Session| format!("{}\n", serde_json::to_string(s).unwrap());
    let mut root = Session::new_root("old run");
    root.project_key = Some("/src/old".into());
    std::fs::write(sessions.join(format!("{}.jsonl", root.id)), line(&root)).unwrap();
    let mut kids = Vec::new();
    for i in 0..3 {
        let mut kid = Session::new_child(
            &root,
            ChildInfo::new(format!("old{i}"), format!("old{i} task")),
        );
        kid.created_at = root.created_at + chrono::Duration::seconds(i + 1);
        kid.child.as_mut().unwrap().status = ChildStatus::Running;
        // Two versions: the log's last whole line is the session.
        let mut log = line(&kid);
        kid.child.as_mut().unwrap().status = ChildStatus::Completed;
        kid.messages
            .push(Message::assistant(format!("echo: old{i} task")));
        log.push_str(&line(&kid));
        std::fs::write(sessions.join(format!("{}.jsonl", kid.id)), log).unwrap();
        kids.push(kid.id);
    }
    std::fs::write(sessions.join(".spare-0123456789abcdef"), b"").unwrap();
    (root.id, kids)
}

#[test]
fn s10_a_data_directory_of_the_one_file_per_session_layout_lists_and_resumes_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (root, kids) = legacy_data(&data);
    let d = data.to_str().unwrap();
    let out = worker()
        .args(["sessions", "--data-dir", d, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["id"], root.as_str());
    let children = listed[0]["children"].as_array().unwrap();
    let ids: Vec<&str> = children.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, kids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(children.iter().all(|c| c["status"] == "completed"));
    // Moved into the store: no session file is left.
    let left: Vec<_> = std::fs::read_dir(data.join("sessions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("store.db"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // And a resume adds to it like to any other directory.
    let out = worker()
        .args([
            "run",
            "--executor",
            "echo",
            "--data-dir",
            d,
            "--resume",
            &root,
            "one more",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = worker()
        .args([
            "sessions",
            "--data-dir",
            d,
            "--json",
            "--project",
            "/src/old",
        ])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["children"].as_array().unwrap().len(), 4);
}
