//! End to end, issue 25: a worker started by a parent that is not our fleet
//! (the reference framework's) leaves that parent's stdout alone, and a
//! parent that writes the spec and exits at once does not keep the worker
//! alive for its idle timeout.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bamboo_e2e::procs::within;
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
    // Its reaper may be init, so a zombie counts as gone.
    assert!(
        within(Duration::from_secs(15), || process_gone(pid)),
        "the worker {pid} outlived its departed parent"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}
