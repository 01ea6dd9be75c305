//! End to end, F12: a worker whose parent dies at any point of its life,
//! even before or while its spec is read, exits within a second.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bamboo_e2e::procs::within;
use bamboo_e2e::*;
use bamboo_subagent::fabric::Fabric;

/// The intermediate shell; killed when dropped, so a failed test leaves
/// no `sleep 1000` behind.
struct Shell(Child);

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An intermediate shell whose child is the worker; the worker's stdin is
/// the shell's, i.e. a pipe this test holds. Returns the shell, the worker's
/// pid and the worker's stderr lines.
fn worker_under_a_shell() -> (Shell, u32, mpsc::Receiver<String>) {
    // fd 3 carries the pipe past the shell's /dev/null stdin for `&` jobs;
    // the shell then becomes a `sleep` that holds no end of it.
    let script = r#"exec 3<&0; "$0" <&3 3<&- & echo $!; exec sleep 1000 <&- 3<&-"#;
    let mut shell = Command::new("sh")
        .args(["-c", script])
        .arg(worker_bin())
        .env("RUST_LOG", "bamboo_worker=debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(shell.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = line.trim().parse().unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = shell.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Shell(shell), pid, rx)
}

/// Blocks until the worker says it watches its parent (it is then running
/// its own code, reading stdin).
fn wait_until_watching(lines: &mpsc::Receiver<String>) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains("watching the parent process") => return,
            Ok(_) => {}
            Err(e) => panic!("the worker never said it watches its parent: {e}"),
        }
    }
}

fn kill_and_time_the_orphan(shell: &mut Shell, worker: u32) -> Duration {
    shell.0.kill().unwrap();
    shell.0.wait().unwrap();
    let killed = Instant::now();
    assert!(
        within(Duration::from_secs(10), || process_gone(worker)),
        "the orphaned worker {worker} lingers"
    );
    killed.elapsed()
}

#[test]
fn a_parent_killed_right_after_writing_the_spec_takes_the_worker_along() {
    let dir = tempfile::tempdir().unwrap();
    let spec = echo_spec("orphan", dir.path(), false);
    let (mut shell, worker, lines) = worker_under_a_shell();
    wait_until_watching(&lines);
    let mut stdin = shell.0.stdin.take().unwrap();
    stdin
        .write_all(&serde_json::to_vec(&spec).unwrap())
        .unwrap();
    drop(stdin);
    let took = kill_and_time_the_orphan(&mut shell, worker);
    assert!(
        took < Duration::from_secs(1),
        "the orphan took {took:?} to exit"
    );
    assert!(Fabric::new(dir.path()).resolve("orphan").is_none());
}

#[test]
fn a_parent_killed_before_the_spec_arrives_takes_the_worker_along() {
    let dir = tempfile::tempdir().unwrap();
    let spec = echo_spec("orphan", dir.path(), false);
    let (mut shell, worker, lines) = worker_under_a_shell();
    wait_until_watching(&lines);
    let mut stdin = shell.0.stdin.take().unwrap();
    let took = kill_and_time_the_orphan(&mut shell, worker);
    // The spec arrives after the parent died: too late, the worker is gone
    // (or, if it got this far, it must not start serving anyway).
    let _ = stdin.write_all(&serde_json::to_vec(&spec).unwrap());
    drop(stdin);
    assert!(
        took < Duration::from_secs(1),
        "the orphan took {took:?} to exit"
    );
    assert!(Fabric::new(dir.path()).resolve("orphan").is_none());
}
