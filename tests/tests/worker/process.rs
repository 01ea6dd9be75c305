//! End to end: the worker process itself — bad specs (F4), bearer auth (4.4),
//! orphan defence (F12), secrets kept out of the fabric, the `run` front door.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bamboo_e2e::*;
use bamboo_subagent::fabric::Fabric;
use bamboo_subagent::frames::{ParentFrame, RunRequest};
use bamboo_subagent::transport::client::connect;
use bamboo_subagent::transport::TransportError;
use bamboo_subagent::Secret;

fn assert_refused(input: &[u8], expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let fabric = dir.path().join("agents");
    let input = match std::str::from_utf8(input) {
        Ok(text) => text
            .replace("FABRIC", &fabric.to_string_lossy())
            .into_bytes(),
        Err(_) => input.to_vec(),
    };
    let (code, stderr) = bamboo_e2e::worker_with_stdin(&input, &[]);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got {stderr:?}");
    assert!(
        lines[0].contains(expect),
        "{:?} should mention {expect:?}",
        lines[0]
    );
    assert!(!fabric.exists(), "nothing published for a refused spec");
}

#[test]
fn bad_specs_exit_2_with_one_clear_line_and_publish_nothing() {
    assert_refused(b"", "empty");
    assert_refused(b"   \n", "empty");
    assert_refused(b"{\"identity\":", "not JSON");
    assert_refused(b"\xff\xfe\xfd", "UTF-8");
    assert_refused(
        br#"{"identity":{},"executor":{"kind":"echo"},"fabric_dir":"FABRIC"}"#,
        "child_id",
    );
    assert_refused(
        br#"{"identity":{"child_id":"c"},"executor":{"kind":"teleport"},"fabric_dir":"FABRIC"}"#,
        "unknown executor kind \"teleport\"",
    );
    let mut big =
        br#"{"identity":{"child_id":"c"},"executor":{"kind":"echo"},"fabric_dir":"FABRIC","pad":""#
            .to_vec();
    big.extend(std::iter::repeat_n(b'x', 8 * 1024 * 1024 + 10));
    big.extend(br#""}"#);
    assert_refused(&big, "larger than");
}

#[test]
fn a_parent_that_never_closes_stdin_gets_a_bounded_wait() {
    let mut child = Command::new(worker_bin())
        .args(["--stdin-timeout-ms", "300"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _keep_open = child.stdin.take();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_terminal_on_stdin_prints_usage_instead_of_waiting() {
    // `script` gives the worker a pseudo-terminal as stdin.
    let cmd = format!("{} ; echo EXIT=$?", worker_bin().display());
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Usage"), "{text}");
    assert!(text.contains("EXIT=2"), "{text}");
}

#[tokio::test]
async fn fleet_workers_refuse_missing_and_wrong_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let worker = spawn(&echo_spec("auth", dir.path(), false)).await;
    for token in [None, Some(Secret::new("wrong"))] {
        match connect(worker.endpoint(), token.as_ref()).await {
            Err(TransportError::Unauthorized(_)) => {}
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }
    // Refused attempts do not use up the one-shot worker.
    let mut conn = worker.connect().await.unwrap();
    conn.sender
        .send(ParentFrame::Run(RunRequest::new("authorised")))
        .await
        .unwrap();
    let (_, t) = collect_run(&mut conn.receiver).await;
    assert_eq!(t.result.as_deref(), Some("echo: authorised"));
}

#[tokio::test]
async fn the_token_never_reaches_the_fabric_or_argv() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = echo_spec("secret", dir.path(), true);
    spec.secrets.worker_auth_token = Some(Secret::new("tok-super-secret-123"));
    let worker = spawn(&spec).await;
    let record = std::fs::read_to_string(dir.path().join("secret.json")).unwrap();
    assert!(!record.contains("tok-super-secret-123"));
    let pid = worker.pid().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    for blob in [cmdline, environ] {
        assert!(!String::from_utf8_lossy(&blob).contains("tok-super-secret-123"));
    }
    let mut conn = worker.connect().await.unwrap();
    conn.sender
        .send(ParentFrame::Run(RunRequest::new("x")))
        .await
        .unwrap();
    collect_run(&mut conn.receiver).await;
}

#[tokio::test]
async fn spec_without_token_serves_unauthenticated_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let spec = echo_spec("open", dir.path(), false);
    // Start the worker by hand, as the reference parent does: no token.
    let mut child = tokio::process::Command::new(worker_bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &serde_json::to_vec(&spec).unwrap())
        .await
        .unwrap();
    drop(stdin);
    let fabric = Fabric::new(dir.path());
    let deadline = Instant::now() + PATIENCE;
    let record = loop {
        if let Some(r) = fabric.resolve("open") {
            break r;
        }
        assert!(Instant::now() < deadline, "worker never registered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(record.endpoint.starts_with("ws://127.0.0.1:"));
    let mut conn = connect(&record.endpoint, None).await.unwrap();
    conn.sender
        .send(ParentFrame::Run(RunRequest::new("open")))
        .await
        .unwrap();
    let (_, t) = collect_run(&mut conn.receiver).await;
    assert_eq!(t.result.as_deref(), Some("echo: open"));
}

#[tokio::test]
async fn a_worker_whose_parent_died_exits_within_about_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let spec = echo_spec("orphan", dir.path(), true);
    let spec_file = dir.path().join("spec.json");
    std::fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    // An intermediate shell is the worker's parent; it prints the worker's pid.
    let script = format!(
        "{} < {} >/dev/null 2>&1 & echo $!; wait",
        worker_bin().display(),
        spec_file.display()
    );
    let mut shell = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(shell.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let worker_pid: u32 = line.trim().parse().unwrap();
    let fabric = Fabric::new(dir.path());
    let deadline = Instant::now() + PATIENCE;
    while fabric.resolve("orphan").is_none() {
        assert!(Instant::now() < deadline, "worker never registered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shell.kill().unwrap();
    shell.wait().unwrap();
    let killed = Instant::now();
    assert!(
        wait_gone(worker_pid, Duration::from_secs(10)).await,
        "orphaned worker lingers"
    );
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "orphan took {took:?} to exit"
    );
    assert!(
        fabric.resolve("orphan").is_none(),
        "the orphan withdrew its record"
    );
}

#[test]
fn the_run_front_door_streams_results_and_reports_failure() {
    let ok = Command::new(worker_bin())
        .args(["run", "hello world", "second"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(text.contains("[hello-world] hello world"), "{text}");
    assert!(text.contains("completed: echo: hello world"), "{text}");
    assert!(text.contains("completed: echo: second"), "{text}");
    assert!(text.contains("2 of 2 runs completed"), "{text}");
    let bad = Command::new(worker_bin())
        .args(["run", "fine", "__fail:kaput"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("error: kaput"), "{text}");
    assert!(text.contains("1 of 2 runs completed"), "{text}");
}

#[test]
fn help_answers_for_both_modes() {
    let out = Command::new(worker_bin()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("ProvisionSpec") && text.contains("run"),
        "{text}"
    );
    let out = Command::new(worker_bin())
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--worker-bin"));
}

#[test]
fn the_run_front_door_drives_another_worker_program_with_fixed_args() {
    let bin = worker_bin();
    let out = Command::new(&bin)
        .args(["run", "--worker-bin"])
        .arg(&bin)
        .args([
            "--worker-arg",
            "--accept-timeout-secs",
            "--worker-arg",
            "30",
            "via other worker",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("completed: echo: via other worker"), "{text}");
    // A worker program that rejects the fixed arguments fails the run clearly.
    let bad = Command::new(&bin)
        .args(["run", "--worker-bin"])
        .arg(&bin)
        .args(["--worker-arg", "--no-such-flag", "x"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("0 of 1 run completed"), "{text}");
}
