//! Helpers shared by the end-to-end suite: locating the worker binary, building
//! specs, spawning real workers and collecting a run's frames with generous
//! timeouts (tests wait on events, never on sleeps).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bamboo_domain::AgentEvent;
use bamboo_subagent::fleet::{spawn_worker, WorkerCommand, WorkerHandle};
use bamboo_subagent::frames::{ChildFrame, Terminal};
use bamboo_subagent::spec::{ExecutorSpec, ProvisionSpec};
use bamboo_subagent::transport::client::FrameReceiver;

pub mod engine;
pub mod nats;
pub mod procs;
pub mod remote;
pub mod terminal;
pub mod tools;

/// A generous bound for anything a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Path of the `bamboo-worker` binary under test: `BAMBOO_WORKER_BIN` when set
/// (`cargo xtask e2e` sets it), else the workspace's debug build.
pub fn worker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BAMBOO_WORKER_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("bamboo-worker");
    assert!(
        bin.exists(),
        "worker binary not found at {}: run `cargo xtask e2e` or `cargo build -p bamboo-worker` first",
        bin.display()
    );
    bin
}

/// The worker command with optional fixed arguments.
pub fn worker_command(args: &[&str]) -> WorkerCommand {
    WorkerCommand {
        program: worker_bin(),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

/// An echo spec for `child_id` registering into `fabric`.
pub fn echo_spec(child_id: &str, fabric: &Path, reusable: bool) -> ProvisionSpec {
    let mut spec = ProvisionSpec::new(child_id, ExecutorSpec::Echo, fabric.to_string_lossy());
    spec.identity.parent_id = Some("parent".into());
    spec.identity.role = "tester".into();
    spec.identity.depth = 1;
    spec.reusable = reusable;
    spec
}

/// Spawns a worker for `spec` with the default command.
pub async fn spawn(spec: &ProvisionSpec) -> WorkerHandle {
    spawn_worker(&worker_command(&[]), spec, PATIENCE)
        .await
        .expect("worker spawns and registers")
}

/// The next frame, failing the test on close, error or timeout.
pub async fn next_frame(rx: &mut FrameReceiver) -> ChildFrame {
    match tokio::time::timeout(PATIENCE, rx.recv()).await {
        Ok(Some(Ok(f))) => f,
        Ok(Some(Err(e))) => panic!("connection failed: {e}"),
        Ok(None) => panic!("connection closed before the expected frame"),
        Err(_) => panic!("no frame within {PATIENCE:?}"),
    }
}

/// Reads frames until the terminal frame; returns the events before it.
pub async fn collect_run(rx: &mut FrameReceiver) -> (Vec<AgentEvent>, Terminal) {
    let mut events = Vec::new();
    loop {
        match next_frame(rx).await {
            ChildFrame::Event { event } => events.push(event),
            ChildFrame::Terminal(t) => return (events, t),
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Runs the worker with `args` and `input` on stdin to its end; returns its
/// exit code and stderr.
pub fn worker_with_stdin(input: &[u8], args: &[&str]) -> (Option<i32>, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(worker_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the worker starts");
    if let Some(mut stdin) = child.stdin.take() {
        // The worker may stop reading early (oversized input): a broken pipe is fine.
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().expect("the worker's output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// True once `pid` is gone (or a zombie nobody has reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Waits up to `limit` for `pid` to be gone; returns whether it went.
pub async fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process_gone(pid)
}
