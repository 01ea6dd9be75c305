//! End to end through the `run` front door: a cli program dies with its
//! worker when the worker is SIGKILLed (F12, issue 9). Its descendants,
//! `setsid` ones included, in both containment modes: `cgroup.rs`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bamboo_e2e::procs::{kill_leftovers, live_with_arg, unique_sleep, within, worker_above};
use bamboo_e2e::*;

/// `bamboo-worker run --executor cli` of `sh -c script`, sessions in `data`.
fn front_door(data: &std::path::Path, script: &str) -> Child {
    Command::new(worker_bin())
        .args(["run", "--executor", "cli", "--approve", "all", "--data-dir"])
        .arg(data)
        .args(["the assignment", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_worker_killed_outright_takes_its_program_along() {
    let tag = unique_sleep();
    let data = tempfile::tempdir().unwrap();
    let mut run = front_door(data.path(), &format!("exec sleep {tag}"));
    let mut program = None;
    within(PATIENCE, || {
        program = live_with_arg(&tag).first().copied();
        program.is_some()
    });
    let Some(program) = program else {
        let _ = run.kill();
        panic!("the program never started");
    };
    let worker = worker_above(program).expect("the worker above the program");
    let killed = Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // PR_SET_PDEATHSIG(SIGKILL) on the program.
    let went = within(Duration::from_secs(10), || process_gone(program));
    let _ = run.kill();
    let _ = run.wait();
    kill_leftovers(&tag);
    assert!(went, "the program {program} outlived its SIGKILLed worker");
}
