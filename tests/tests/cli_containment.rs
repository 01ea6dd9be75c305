//! End to end through the `run` front door: a cli program's descendants,
//! `setsid` ones included, neither hold its run open nor outlive it, nor
//! survive a kill -9 of the front door (F12, issue 9).

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used)]

mod procs_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bamboo_e2e::*;
use procs_support::{kill_leftovers, live_with_arg, parent_of, unique_sleep, wait_within, within};

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

/// The program takes about half a second and leaves `sleep <tag>` behind.
fn run_ends_with_the_program(script: &str, tag: &str) {
    let data = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut run = front_door(data.path(), script);
    let status = wait_within(&mut run, PATIENCE);
    let took = started.elapsed();
    let survivors = live_with_arg(tag);
    kill_leftovers(tag);
    assert!(
        status.is_some_and(|s| s.success()),
        "the run failed: {status:?}"
    );
    assert!(took < Duration::from_secs(5), "the run took {took:?}");
    assert!(
        survivors.is_empty(),
        "setsid descendants survived: {survivors:?}"
    );
}

#[test]
fn a_setsid_descendant_with_its_own_stdout_does_not_outlive_the_run() {
    let tag = unique_sleep();
    let script = format!("setsid sleep {tag} >/dev/null 2>&1 </dev/null & sleep 0.5; echo done");
    run_ends_with_the_program(&script, &tag);
}

#[test]
fn a_setsid_descendant_holding_stdout_does_not_hold_the_run_open() {
    let tag = unique_sleep();
    let script = format!("setsid sleep {tag} & sleep 0.5; echo done");
    run_ends_with_the_program(&script, &tag);
}

/// The worker running the program holding `tag`: the nearest ancestor that
/// runs the worker binary.
fn worker_above(pid: u32) -> Option<u32> {
    let bin = std::fs::canonicalize(worker_bin()).ok()?;
    let mut cur = parent_of(pid)?;
    while cur > 1 {
        if std::fs::read_link(format!("/proc/{cur}/exe")).is_ok_and(|exe| exe == bin) {
            return Some(cur);
        }
        cur = parent_of(cur)?;
    }
    None
}

#[test]
fn nothing_survives_a_kill_of_the_front_door() {
    let escaped = unique_sleep();
    let stayed = unique_sleep();
    let data = tempfile::tempdir().unwrap();
    let script = format!("setsid sleep {escaped} & sleep {stayed}; echo done");
    let mut run = front_door(data.path(), &script);
    let started = within(PATIENCE, || {
        live_with_arg(&escaped).len() == 1 && live_with_arg(&stayed).len() == 1
    });
    if !started {
        let _ = run.kill();
        kill_leftovers(&escaped);
        kill_leftovers(&stayed);
        panic!("the program's sleeps never started");
    }
    let worker = worker_above(live_with_arg(&stayed)[0]).expect("the worker above the program");
    run.kill().unwrap();
    run.wait().unwrap();
    let all_gone = within(Duration::from_secs(10), || {
        live_with_arg(&escaped).is_empty() && live_with_arg(&stayed).is_empty()
    });
    let (left_escaped, left_stayed) = (live_with_arg(&escaped), live_with_arg(&stayed));
    kill_leftovers(&escaped);
    kill_leftovers(&stayed);
    assert!(
        all_gone,
        "survived the front door: setsid {left_escaped:?}, in-group {left_stayed:?}"
    );
    assert!(
        within(Duration::from_secs(10), || procs_support::gone(worker)),
        "the worker {worker} outlived the front door"
    );
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
    let went = within(Duration::from_secs(10), || procs_support::gone(program));
    let _ = run.kill();
    let _ = run.wait();
    kill_leftovers(&tag);
    assert!(went, "the program {program} outlived its SIGKILLed worker");
}
