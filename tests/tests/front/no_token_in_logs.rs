//! No secret in logs at any level (issue 9): the front door at
//! `RUST_LOG=trace` prints its transport's debug output but never a worker's
//! bearer token (protocol.md 4.4).

use std::process::Command;

/// The longest run of ASCII hex digits in `text`: worker tokens are 64 hex
/// characters, and nothing else the front door logs is that long.
fn longest_hex_run(text: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in text.chars() {
        run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

#[test]
fn the_front_door_at_trace_level_logs_no_worker_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--data-dir"])
        .arg(dir.path())
        .args(["hello", "second"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed: {stdout}\n{stderr}");
    // The logging really was on, transport included: the WebSocket
    // handshakes (which carry the token) happened inside it.
    assert!(
        stderr.contains("Client handshake done"),
        "no transport output:\n{stderr}"
    );
    assert!(
        !stderr.to_ascii_lowercase().contains("bearer"),
        "an Authorization header reached the log:\n{stderr}"
    );
    let longest = longest_hex_run(&stderr);
    assert!(
        longest < 64,
        "a {longest}-hex-digit run (a token?) in the log:\n{stderr}"
    );
}

#[test]
fn hex_runs_are_measured() {
    assert_eq!(longest_hex_run("x deadbeef y 12"), 8);
    assert_eq!(longest_hex_run(&"a".repeat(64)), 64);
}
