//! Shared helpers of the engine end-to-end tests: an engine over real worker
//! processes, and waits on events (never sleeps).

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use bamboo_domain::{AgentEvent, CompletionStatus};
use bamboo_engine::EventStream;
use bamboo_engine::{CreateChild, Engine, EngineBuilder, Timeouts};
use bamboo_subagent::spec::ExecutorSpec;
use futures::StreamExt;

/// Generous bound for anything that should happen "soon".
pub const SOON: Duration = Duration::from_secs(30);

/// A builder over the real worker binary with the echo executor.
pub fn builder(dir: &Path, max_running: usize) -> EngineBuilder {
    Engine::builder()
        .data_dir(dir)
        .worker_program(bamboo_e2e::worker_bin())
        .executor(ExecutorSpec::Echo)
        .max_running(max_running)
        .timeouts(Timeouts {
            cancel_grace: Duration::from_secs(3),
            ..Timeouts::default()
        })
}

pub async fn engine(dir: &Path, max_running: usize) -> Engine {
    builder(dir, max_running)
        .build()
        .await
        .expect("engine builds")
}

/// Creates a root and one child with `assignment` (not yet run).
pub async fn root_and_child(engine: &Engine, assignment: &str) -> (String, String) {
    let root = engine.create_root("root", None).await.expect("root");
    let child = engine
        .create_child(CreateChild::new(&root.id, assignment))
        .await
        .expect("child");
    (root.id, child.id)
}

/// Runs `child` of `root` and waits for its report.
pub async fn run_report(engine: &Engine, root: &str, child: &str) -> bamboo_engine::RunReport {
    let ticket = engine
        .run_child(root, child, true)
        .await
        .expect("run_child");
    ticket.await.expect("the run reports")
}

/// Reads the next event of a session's stream (the stream is lossless).
#[allow(async_fn_in_trait)]
pub trait NextEvent {
    /// The next event; `None` when the stream ended.
    async fn recv(&mut self) -> Option<AgentEvent>;
}

impl NextEvent for EventStream {
    async fn recv(&mut self) -> Option<AgentEvent> {
        self.next()
            .await
            .map(|logged| std::sync::Arc::unwrap_or_clone(logged.event))
    }
}

/// Waits for the `sub_agent_completed` of `child` on a parent stream.
pub async fn completion(rx: &mut EventStream, child: &str) -> (CompletionStatus, Option<String>) {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(AgentEvent::SubAgentCompleted {
                    child_session_id,
                    status,
                    error,
                    ..
                }) if child_session_id == child => return (status, error),
                Some(_) => {}
                None => panic!("stream ended before {child} completed"),
            }
        }
    };
    tokio::time::timeout(SOON, wait)
        .await
        .unwrap_or_else(|_| panic!("{child} did not complete within {SOON:?}"))
}

/// Waits for the first event matching `pred` on a stream.
pub async fn first_event(
    rx: &mut EventStream,
    what: &str,
    pred: impl Fn(&AgentEvent) -> bool,
) -> AgentEvent {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(ev) if pred(&ev) => return ev,
                Some(_) => {}
                None => panic!("stream ended while waiting for {what}"),
            }
        }
    };
    tokio::time::timeout(SOON, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {SOON:?}"))
}

/// The text of the tokens a child streamed, from its wrapped events.
pub fn token_text(ev: &AgentEvent) -> Option<&str> {
    match ev {
        AgentEvent::SubAgentEvent { event, .. } => match event.as_ref() {
            AgentEvent::Token { content } => Some(content),
            _ => None,
        },
        _ => None,
    }
}

/// True while a process with `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Pids of live worker processes whose command line mentions `dir` nowhere
/// is not knowable, so tests track pids they saw instead.
pub async fn wait_dead(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + SOON;
    while tokio::time::Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
