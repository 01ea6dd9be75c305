//! No process a cli run starts outlives it, even one that left the run's
//! process group (F12, issue 9), and the run ends when its program does.

use std::time::{Duration, Instant};

use bamboo_domain::TerminalStatus;
use bamboo_subagent::executor::{Executor, RunRequest};
use bamboo_subagent::spec::ProvisionSpec;

use super::{CliExecutor, OUTPUT_DRAIN};
use crate::testkit::{cancel_and_wait, events_until, test_run};

const LIMIT: Duration = Duration::from_secs(20);

/// A `sh -c script` executor.
fn sh(script: &str) -> CliExecutor {
    let v = serde_json::json!({
        "identity": {"child_id": "c1"},
        "executor": {"kind": "cli_adapter", "command": "sh", "args": ["-c", script]},
        "fabric_dir": "/tmp/unused-fabric",
    });
    let spec = ProvisionSpec::from_slice(v.to_string().as_bytes()).expect("test spec");
    CliExecutor::from_spec(&spec).expect("cli executor")
}

/// A `sleep` duration no other process uses, so a test finds its own sleeps
/// in `/proc` and no one else's.
fn unique_sleep() -> String {
    format!("100.{:06}", uuid::Uuid::new_v4().as_u128() % 1_000_000)
}

/// Live (not zombie) processes whose command line holds `arg`.
fn live_with_arg(arg: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let holds = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()));
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if holds && !zombie {
            found.push(pid);
        }
    }
    found
}

/// Waits until no live process holds `arg`; false if one still does after `limit`.
async fn none_left(arg: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if live_with_arg(arg).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn appears(arg: &str) -> bool {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if !live_with_arg(arg).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Runs `script` (which must take about half a second) and checks that the run
/// ends with it and leaves no `sleep <tag>` behind.
async fn run_ends_with_its_program_and_kills(script: &str, tag: &str) {
    let exec = sh(script);
    let started = Instant::now();
    let out = tokio::time::timeout(LIMIT, exec.run(RunRequest::new(""), test_run(None).ctx))
        .await
        .expect("the run ends");
    let took = started.elapsed();
    assert_eq!(out.status, TerminalStatus::Completed, "{out:?}");
    assert_eq!(out.result.as_deref(), Some("done\n"));
    assert!(took < Duration::from_secs(5), "the run took {took:?}");
    assert!(
        none_left(tag, Duration::from_secs(5)).await,
        "a setsid descendant outlived the run: {:?}",
        live_with_arg(tag)
    );
}

#[tokio::test]
async fn a_setsid_descendant_with_its_own_stdout_does_not_outlive_the_run() {
    let tag = unique_sleep();
    let script = format!("setsid sleep {tag} >/dev/null 2>&1 </dev/null & sleep 0.5; echo done");
    run_ends_with_its_program_and_kills(&script, &tag).await;
}

#[tokio::test]
async fn a_setsid_descendant_holding_stdout_neither_holds_the_run_nor_outlives_it() {
    let tag = unique_sleep();
    let script = format!("setsid sleep {tag} & sleep 0.5; echo done");
    run_ends_with_its_program_and_kills(&script, &tag).await;
}

#[tokio::test]
async fn a_descendant_that_also_drops_the_mark_cannot_hold_the_run_open() {
    // `env -i` clears the run's mark too: it is not recognised as the run's
    // once its parent is gone, but the run still ends with the program.
    let tag = unique_sleep();
    let exec = sh(&format!("env -i setsid sleep {tag} & sleep 0.5; echo done"));
    let started = Instant::now();
    let out = tokio::time::timeout(LIMIT, exec.run(RunRequest::new(""), test_run(None).ctx))
        .await
        .expect("the run ends");
    let took = started.elapsed();
    for pid in live_with_arg(&tag) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert_eq!(out.status, TerminalStatus::Completed, "{out:?}");
    assert_eq!(out.result.as_deref(), Some("done\n"));
    assert!(
        took < Duration::from_millis(500) + OUTPUT_DRAIN + Duration::from_secs(3),
        "the run took {took:?}"
    );
}

#[tokio::test]
async fn cancel_kills_descendants_that_left_the_process_group() {
    let tag = unique_sleep();
    let exec = sh(&format!(
        "setsid sh -c 'trap \"\" TERM; exec sleep {tag}' & echo started; wait"
    ));
    let mut t = test_run(None);
    let cancel = t.cancel.clone();
    let run = tokio::spawn(async move { exec.run(RunRequest::new(""), t.ctx).await });
    events_until(&mut t.events, LIMIT, |_| true).await;
    assert!(appears(&tag).await, "the setsid sleep never started");
    let (out, took) = cancel_and_wait(&cancel, run, LIMIT).await;
    assert_eq!(out.status, TerminalStatus::Cancelled);
    assert!(took < Duration::from_secs(5), "cancel took {took:?}");
    assert!(
        none_left(&tag, Duration::from_secs(5)).await,
        "a setsid descendant outlived the cancelled run"
    );
}

#[test]
fn the_approval_names_the_exact_command_of_the_run() {
    let v = serde_json::json!({
        "identity": {"child_id": "c1"},
        "executor": {"kind": "cli_adapter", "command": "claude", "args": ["-p", "{assignment}", "--task={assignment}"]},
        "fabric_dir": "/f",
    });
    let spec = ProvisionSpec::from_slice(v.to_string().as_bytes()).expect("spec");
    let exec = CliExecutor::from_spec(&spec).expect("exec");
    let body = exec.approval_body("rm -rf build");
    assert_eq!(
        body.resource,
        r#"claude -p "rm -rf build" "--task=rm -rf build""#
    );
    assert!(body.question.contains(&body.resource), "{}", body.question);

    let v = serde_json::json!({
        "identity": {"child_id": "c1"},
        "executor": {"kind": "cli_adapter", "command": "codex", "args": ["exec"]},
        "fabric_dir": "/f",
    });
    let spec = ProvisionSpec::from_slice(v.to_string().as_bytes()).expect("spec");
    let exec = CliExecutor::from_spec(&spec).expect("exec");
    let body = exec.approval_body("anything");
    assert_eq!(body.resource, "codex exec (assignment on stdin)");
    assert_eq!(
        body.question,
        "May this agent run `codex exec (assignment on stdin)`?"
    );
}

/// An orphan adopted by the worker that exits by itself during the run is
/// reaped at its end, not left a zombie (a pooled worker serves many runs).
#[tokio::test]
async fn adopted_descendants_that_exit_during_the_run_are_reaped() {
    let exec = sh("(setsid sleep 0.2 & echo $!); (sleep 0.2 & echo $!); sleep 0.8; echo done");
    let out = tokio::time::timeout(LIMIT, exec.run(RunRequest::new(""), test_run(None).ctx))
        .await
        .expect("the run ends");
    assert_eq!(out.status, TerminalStatus::Completed, "{out:?}");
    let result = out.result.unwrap_or_default();
    let pids: Vec<u32> = result
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{result}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let exists = |pid: &u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    while pids.iter().any(exists) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left: Vec<&u32> = pids.iter().filter(|p| exists(p)).collect();
    assert!(left.is_empty(), "not reaped: {left:?}");
}
