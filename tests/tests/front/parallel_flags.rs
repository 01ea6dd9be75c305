//! The front door's GNU-parallel-like flags (issue 25, part 3) with the real
//! `bamboo-worker run`: `--retries` with a cli program that fails once,
//! `--halt`, `--joblog`, `--results`, `-j`, `--group`, `--no-tag`,
//! `--timestamps`, `--progress`. Documented in docs/operations.md ("Like GNU parallel").

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bamboo_e2e::worker_bin;

/// `bamboo-worker run ARGS` to its end, its temporary data in `tmp`.
fn run(tmp: &Path, args: &[&str]) -> Output {
    Command::new(worker_bin())
        .arg("run")
        .args(args)
        .env("TMPDIR", tmp)
        .env("NO_COLOR", "1")
        .current_dir(tmp)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `--json` summary's children, in order: (name, status).
fn summary_children(out: &Output) -> Vec<(String, String)> {
    let stdout = text(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "summary", "{stdout}");
    last["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `--retries 2`: a cli program that fails on its first try and succeeds on
/// its second exits 0; the job log has a header and one line per try, with
/// the program's exit code, and each retry is a note on stderr.
#[test]
fn a_child_failing_once_is_retried_and_the_joblog_has_a_line_per_try() {
    let tmp = tempfile::tempdir().unwrap();
    let counter = tmp.path().join("tries");
    std::fs::write(&counter, "0").unwrap();
    let joblog = tmp.path().join("jobs.tsv");
    let script = format!(
        "n=$(cat {c}); echo $((n+1)) > {c}; echo try $n; [ $n -ge 1 ] || exit 7",
        c = counter.display()
    );
    let out = run(
        tmp.path(),
        &[
            "--executor",
            "cli",
            "--retries",
            "2",
            "--progress",
            "--joblog",
            joblog.to_str().unwrap(),
            "flaky",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{stderr}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains("[flaky] try 1 of 3 ended error; try 2 in"),
        "{stderr}"
    );
    // The retried try is not an end: progress is said once, at the end.
    assert_eq!(stderr.matches("progress: ").count(), 1, "{stderr}");
    assert!(stderr.contains("progress: 1/1 ended"), "{stderr}");
    let log = std::fs::read_to_string(&joblog).unwrap();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        lines[0],
        [
            "Name",
            "Seq",
            "Starttime",
            "JobRuntime",
            "Status",
            "Exitval",
            "Worker",
            "Try",
            "Command"
        ]
    );
    assert_eq!(lines.len(), 3, "a header and 2 tries: {log}");
    let (first, second) = (&lines[1], &lines[2]);
    assert_eq!(
        (first[0], first[1], first[4], first[5], first[7]),
        ("flaky", "1", "error", "7", "1"),
        "{log}"
    );
    assert_eq!(
        (second[0], second[4], second[5], second[7]),
        ("flaky", "completed", "0", "2"),
        "{log}"
    );
    for l in &lines[1..] {
        assert!(l[2].parse::<f64>().unwrap() > 1.0e9, "a Unix time: {log}");
        assert!(l[3].parse::<f64>().is_ok(), "a runtime: {log}");
        assert!(l[6].starts_with("local"), "{log}");
        assert!(l[8].starts_with("sh -c "), "{log}");
    }
}

/// `--halt now,fail=1`: the first failure cancels the children still running
/// and queued at once (exit 1); `--halt soon,fail=1` lets the running one
/// finish and cancels the queued ones; `--halt now,success=1` ends the run
/// as a success once one child completed (exit 0).
#[test]
fn halt_stops_the_rest_after_the_first_failure_or_success() {
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(
        tmp.path(),
        &[
            "--json",
            "-j",
            "3",
            "--halt",
            "now,fail=1",
            "--name",
            "bad",
            "__sleep_ms:200 __fail:broken",
            "__sleep_ms:60000 a",
            "__sleep_ms:60000 b",
            "__sleep_ms:60000 c",
            "__sleep_ms:60000 d",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the rest were not stopped"
    );
    assert!(stderr.contains("--halt now,fail=1: 1 failed"), "{stderr}");
    let kids = summary_children(&out);
    assert_eq!(kids[0], ("bad".into(), "error".into()));
    for (name, status) in &kids[1..] {
        assert_eq!(status, "cancelled", "{name}: {kids:?}");
    }

    let out = run(
        tmp.path(),
        &[
            "--json",
            "-j",
            "2",
            "--halt",
            "soon,fail=1",
            "--name",
            "bad",
            "--name",
            "long",
            "--name",
            "q1",
            "--name",
            "q2",
            "__sleep_ms:300 __fail:broken",
            "__sleep_ms:1500 long",
            "__sleep_ms:60000 q1",
            "__sleep_ms:60000 q2",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let kids = summary_children(&out);
    assert_eq!(
        kids,
        [
            ("bad".into(), "error".into()),
            ("long".into(), "completed".into()),
            ("q1".into(), "cancelled".into()),
            ("q2".into(), "cancelled".into()),
        ],
        "{stderr}"
    );

    let out = run(
        tmp.path(),
        &[
            "--json",
            "--halt",
            "now,success=1",
            "quick",
            "__sleep_ms:60000 slow",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let kids = summary_children(&out);
    assert_eq!(kids[1].1, "cancelled", "{kids:?}");

    let out = run(tmp.path(), &["--halt", "later,fail=1", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("now,fail=1"), "says the form");
}

/// `--results DIR`: per child DIR/NAME/ with stdout, stderr, result,
/// events.ndjson and status.json.
#[test]
fn results_dir_has_each_childs_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("res");
    let out = run(
        tmp.path(),
        &[
            "--executor",
            "cli",
            "--results",
            dir.to_str().unwrap(),
            "--name",
            "talk",
            "hello",
            "--",
            "sh",
            "-c",
            "echo out one; echo out two; echo warn >&2",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let d = dir.join("talk");
    let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    assert_eq!(read("stdout"), "out one\nout two\n");
    assert_eq!(read("stderr"), "warn\n");
    assert_eq!(read("result").trim_end(), "out one\nout two");
    let events: Vec<serde_json::Value> = read("events.ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().all(|e| e["name"] == "talk"));
    assert_eq!(events[0]["event"]["type"], "sub_agent_started");
    assert_eq!(
        events.last().unwrap()["event"]["type"],
        "sub_agent_completed"
    );
    let status: serde_json::Value = serde_json::from_str(&read("status.json")).unwrap();
    assert_eq!(status["status"], "completed");
    assert_eq!(status["exit_code"], 0);
    assert_eq!(status["tries"], 1);
}

/// `-j 2`: never more than 2 children run at once, and 2 do. Each cli
/// child marks itself running in a directory while it runs and records how
/// many marks it saw.
#[test]
fn jobs_two_caps_the_running_children_at_two() {
    let tmp = tempfile::tempdir().unwrap();
    let marks = tmp.path().join("running");
    std::fs::create_dir(&marks).unwrap();
    let seen = tmp.path().join("seen");
    let script = format!(
        "touch {m}/$$; sleep 0.4; ls {m} | wc -l >> {s}; rm {m}/$$",
        m = marks.display(),
        s = seen.display()
    );
    let mut args = vec!["-j", "2", "--executor", "cli"];
    let names: Vec<String> = (1..=6).map(|i| format!("job{i}")).collect();
    args.extend(names.iter().map(String::as_str));
    args.extend(["--", "sh", "-c", &script]);
    let out = run(tmp.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let counts: Vec<usize> = std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 6);
    assert!(
        counts.iter().all(|n| *n <= 2),
        "more than 2 at once: {counts:?}"
    );
    assert!(counts.contains(&2), "never 2 at once: {counts:?}");
}

/// `--group` keeps each child's lines together; `--no-tag` drops the
/// `[name]` prefix; `--timestamps` starts each line with its time.
#[test]
fn group_no_tag_and_timestamps_shape_the_lines() {
    let tmp = tempfile::tempdir().unwrap();
    // Two children printing in turns: without --group their lines interleave.
    let script = "read a; for i in 1 2 3; do echo \"$a $i\"; sleep 0.2; done";
    let out = run(
        tmp.path(),
        &[
            "--group",
            "--executor",
            "cli",
            "x",
            "y",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let child_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("[x]") || l.starts_with("[y]"))
        .collect();
    let runs = child_lines
        .windows(2)
        .filter(|w| w[0][..3] != w[1][..3])
        .count();
    assert_eq!(runs, 1, "each child's lines together: {stdout}");
    assert!(stdout.contains("[x] x 1\n[x] x 2\n[x] x 3\n"), "{stdout}");

    let out = run(tmp.path(), &["--no-tag", "hello there"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("\nhello there\n") || stdout.starts_with("hello there\n"));
    assert!(!stdout.lines().any(|l| l.starts_with('[')), "{stdout}");

    let out = run(tmp.path(), &["--timestamps", "hello there"]);
    let stdout = text(&out.stdout);
    let child_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("[hello-there]"))
        .collect();
    assert!(!child_lines.is_empty(), "{stdout}");
    for l in child_lines {
        let (stamp, rest) = l.split_once(' ').unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{l:?} starts with a time"
        );
        assert!(rest.starts_with("[hello-there] "), "{l:?}");
    }
}

/// A run of more children than the front door creates ahead of the running
/// ones (a window of 512 at `-j 8`): they are created a batch at a time as
/// earlier ones end, every one runs, and progress counts the whole run from
/// the first end on, planned children included.
#[test]
fn a_run_larger_than_the_creation_window_runs_every_child_and_progress_counts_them_all() {
    const N: usize = 700;
    let tmp = tempfile::tempdir().unwrap();
    let tasks = tmp.path().join("tasks.txt");
    let lines: String = (0..N).map(|i| format!("task {i}\n")).collect();
    std::fs::write(&tasks, lines).unwrap();
    let out = run(
        tmp.path(),
        &[
            "--executor",
            "echo",
            "--json",
            "-j",
            "8",
            "--progress",
            "--from",
            tasks.to_str().unwrap(),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let children = summary_children(&out);
    assert_eq!(children.len(), N);
    assert!(
        children.iter().all(|(_, status)| status == "completed"),
        "{children:?}"
    );
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("progress: "))
        .collect();
    assert_eq!(progress.len(), N, "one progress line per end: {stderr}");
    assert!(
        progress.iter().all(|l| l.contains(&format!("/{N} ended"))),
        "every progress line counts all {N}: {:?}",
        &progress[..3]
    );
    assert!(progress[N - 1].contains(&format!("{N}/{N} ended")));
}
