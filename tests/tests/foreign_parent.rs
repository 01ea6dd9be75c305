//! End to end, issue 25: a worker started by a parent that is not our fleet
//! (the reference framework's) leaves that parent's stdout alone, and a
//! parent that writes the spec and exits at once does not keep the worker
//! alive for its idle timeout.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bamboo_e2e::*;
use bamboo_subagent::fabric::Fabric;
use bamboo_subagent::fleet::{PARENT_PID_VAR, READY_LINE_VAR};

/// A reusable echo spec that would idle for two minutes, as JSON.
fn idle_spec(child_id: &str, fabric: &std::path::Path) -> String {
    let mut spec = echo_spec(child_id, fabric, true);
    spec.limits.idle_timeout_secs = Some(120);
    serde_json::to_string(&spec).unwrap()
}

/// Waits for `child_id`'s record in `fabric`, as the reference parent does.
fn wait_for_record(fabric: &Fabric, child_id: &str) -> u32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(r) = fabric.resolve(child_id) {
            return r.pid;
        }
        assert!(Instant::now() < deadline, "the worker never registered");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The worker's stdout is the parent's own (here a file, as an MCP stdio
/// server's NDJSON would be): without our fleet's request nothing lands on
/// it; with it, the one `ready` line.
#[test]
fn a_worker_prints_nothing_on_an_inherited_stdout_unless_our_fleet_asks() {
    for (asked, expected) in [(false, ""), (true, "ready ws://127.0.0.1:")] {
        let dir = tempfile::tempdir().unwrap();
        let fabric_dir = dir.path().join("fabric");
        let out_path = dir.path().join("parent-stdout");
        let out = std::fs::File::create(&out_path).unwrap();
        let mut cmd = Command::new(worker_bin());
        cmd.env_remove(PARENT_PID_VAR)
            .env_remove(READY_LINE_VAR)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(Stdio::null());
        if asked {
            cmd.env(READY_LINE_VAR, "1");
        }
        let mut worker = cmd.spawn().unwrap();
        let mut stdin = worker.stdin.take().unwrap();
        stdin
            .write_all(idle_spec("c1", &fabric_dir).as_bytes())
            .unwrap();
        drop(stdin);
        let fabric = Fabric::new(&fabric_dir);
        wait_for_record(&fabric, "c1");
        worker.kill().unwrap();
        worker.wait().unwrap();
        let written = std::fs::read_to_string(&out_path).unwrap();
        if asked {
            assert!(written.starts_with(expected), "{written:?}");
            assert_eq!(written.lines().count(), 1, "{written:?}");
        } else {
            assert_eq!(written, expected, "the parent's stdout is untouched");
        }
    }
}

/// A foreign parent (it names no parent pid) that exits right after writing
/// the spec: the worker, re-parented before it could look, exits promptly
/// instead of idling for 120 s.
#[test]
fn a_worker_whose_foreign_parent_left_before_it_started_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let fabric_dir = dir.path().join("fabric");
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, idle_spec("c1", &fabric_dir)).unwrap();
    // The parent shell starts the worker (a subshell that waits a little,
    // then becomes the worker) and exits at once: by the worker's first
    // instruction its parent is gone.
    let script = r#"( sleep 0.3; exec "$0" ) <"$1" >/dev/null 2>&1 & echo $!"#;
    let out = Command::new("sh")
        .args(["-c", script])
        .arg(worker_bin())
        .arg(&spec_path)
        .env_remove(PARENT_PID_VAR)
        .env_remove(READY_LINE_VAR)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let started = Instant::now();
    assert!(
        wait_gone(pid, Duration::from_secs(15)),
        "the worker {pid} outlived its departed parent"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// Waits up to `limit` for `pid` to be gone (its reaper may be init, so a
/// zombie counts as gone).
fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    process_gone(pid)
}

/// Starts, in the background of `sh`, a subshell that waits a little and
/// becomes a worker reading `spec` (as a foreign parent does, naming no
/// parent pid), writes its pid to `pid_file`, and lets `sh` exit: the
/// worker's parent is gone before its first instruction.
const LEAVING_PARENT: &str =
    r#"sh -c '( sleep 0.3; exec "$0" ) <"$1" >/dev/null 2>&1 & echo $! >"$2"' "$0" "$1" "$2""#;

/// Waits for the pid a script wrote into `path`.
fn read_pid(path: &std::path::Path) -> u32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The foreign parent runs as a cli child of our own `run`: when it leaves,
/// the worker of that run (a child subreaper) adopts the new worker, which
/// must not take it for its parent and idle 120 s; it exits while the run
/// still goes on.
#[test]
fn a_worker_adopted_by_a_bamboo_worker_after_its_foreign_parent_left_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("spec.json");
    let pid_file = dir.path().join("pid");
    std::fs::write(&spec_path, idle_spec("c1", &dir.path().join("fabric"))).unwrap();
    // The run's program starts the leaving parent, then stays (the run goes on).
    let program = format!("{LEAVING_PARENT}; sleep 60");
    let mut run = Command::new(worker_bin())
        .args(["run", "--executor", "cli", "host a foreign parent", "--"])
        .args(["sh", "-c", &program])
        .arg(worker_bin())
        .arg(&spec_path)
        .arg(&pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = read_pid(&pid_file);
    let gone = wait_gone(pid, Duration::from_secs(15));
    let run_still_going = run.try_wait().unwrap().is_none();
    let _ = run.kill();
    let _ = run.wait();
    assert!(gone, "the worker {pid} outlived its departed parent");
    assert!(
        run_still_going,
        "the run ended first: its sweep, not the worker, ended {pid}"
    );
}

/// A subreaper that adopts orphans for a living (here a process that calls
/// itself `tini`, as a container's init does) is never the real parent.
#[test]
fn a_worker_adopted_by_a_known_subreaper_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("spec.json");
    let pid_file = dir.path().join("pid");
    std::fs::write(&spec_path, idle_spec("c1", &dir.path().join("fabric"))).unwrap();
    // PR_SET_CHILD_SUBREAPER (36), PR_SET_NAME (15); then the leaving parent.
    let python = r#"
import ctypes, subprocess, sys, time
libc = ctypes.CDLL(None)
assert libc.prctl(36, 1, 0, 0, 0) == 0
libc.prctl(15, b"tini", 0, 0, 0)
subprocess.run(["sh", "-c", sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]], check=True)
time.sleep(60)
"#;
    let mut reaper = Command::new("python3")
        .args(["-c", python, LEAVING_PARENT])
        .arg(worker_bin())
        .arg(&spec_path)
        .arg(&pid_file)
        .env_remove(PARENT_PID_VAR)
        .env_remove(READY_LINE_VAR)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = read_pid(&pid_file);
    let gone = wait_gone(pid, Duration::from_secs(15));
    let _ = reaper.kill();
    let _ = reaper.wait();
    assert!(gone, "the worker {pid} took the subreaper for its parent");
}
