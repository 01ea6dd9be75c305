//! The event pump of one run: forwards the child's events to the parent's
//! stream, runs the watchdog, routes approvals
//! and nested spawns to side tasks so they never stall forwarding,
//! and turns the run's end into a status.
//!
//! Hot path per event: one serialization and one append per ancestor log
//! (memory, plus a file write per 256 KiB batch). Frames that arrived
//! together (one socket read holds many) are handled as one burst: one
//! wake-up, one look at the other branches, one activity stamp. No engine
//! lock, and never a wait on a reader.
// Behaviours: E7, E9, E17, E18.

use std::sync::Arc;
use std::time::Duration;

use bamboo_domain::{AgentEvent, CompletionStatus, TerminalStatus};
use bamboo_subagent::frames::{ApprovalBody, ChildFrame, ParentFrame, RunRequest, Terminal};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::approval::{ApprovalRequest, Decision};
use crate::creation::Creation;
use crate::events::{now_micros, ChildEvents, Fanout, RunLogs};
use crate::launch::{Checkpoint, FrameTx, Link, LinkError};
use crate::reservations::RunControl;
use crate::run_path::RunPath;
use crate::slots::LendableSlot;
use crate::store::SessionStore;
use crate::watchdog::{ActivityClock, Watchdog};

/// Most frames handled per wake-up before the pump looks at cancel, the
/// watchdog and side tasks again (a few hundred microseconds of work).
const BURST: usize = 256;

/// Everything the pump needs besides the connection.
pub(crate) struct PumpEnv<'a> {
    pub inner: &'a Arc<RunPath>,
    pub parent_id: &'a str,
    pub child_id: &'a str,
    /// The run's ancestry and the logs it publishes to.
    pub out: &'a RunLogs,
    pub control: &'a RunControl,
    /// The run's slot, lent to nested spawns while the run waits on them.
    pub slot: Arc<LendableSlot>,
    pub clock: Arc<ActivityClock>,
    pub run_limit: Duration,
    pub idle_limit: Duration,
}

/// What [`drive`] does before it pumps: send the run (none when reading on
/// one that already runs), then wait until the child is stored (see
/// [`crate::creation`]: the worker starts while the disk syncs).
#[derive(Default)]
pub(crate) struct Opening<'a> {
    pub request: Option<RunRequest>,
    pub stored: Option<&'a mut Creation>,
    /// Where the run runs, announced once the child is stored (a pool run's
    /// link announces it itself when a worker takes the run).
    pub placed: Option<AgentEvent>,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PumpResult {
    pub status: CompletionStatus,
    pub result: Option<String>,
    pub error: Option<String>,
    /// The worker ended the run cleanly and may be parked.
    // Behaviours: E13.
    pub clean: bool,
    /// The worker's terminal was `suspended`: the child is kept resumable.
    pub suspended: bool,
    /// The run's transcript from the terminal frame, for write-back.
    // Behaviours: E15.
    pub transcript: Option<Vec<bamboo_domain::Message>>,
    /// What the run used, from the terminal frame.
    pub usage: Option<bamboo_domain::TokenUsage>,
    /// The coding agent's session id, for the child's next run.
    pub agent_session_id: Option<String>,
}

/// Why the parent stopped the run.
#[derive(Debug, Clone)]
enum StopCause {
    Cancelled(String),
    Timeout(String),
}

impl StopCause {
    fn result(self) -> PumpResult {
        let (status, error) = match self {
            Self::Cancelled(r) => (CompletionStatus::Cancelled, r),
            Self::Timeout(r) => (CompletionStatus::Timeout, r),
        };
        PumpResult {
            status,
            result: None,
            error: Some(error),
            clean: false,
            suspended: false,
            transcript: None,
            usage: None,
            agent_session_id: None,
        }
    }
}

/// Steering messages waiting in the child's inbox (id and text). Their
/// durable copies stay until the run's end, as for any steering.
// Behaviours: C6.
fn steering_in_inbox(inner: &RunPath, child_id: &str) -> Vec<(String, String)> {
    let Ok(inbox) = inner.inbox(child_id) else {
        return Vec::new();
    };
    inbox
        .peek()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.kind == crate::inbox::InboxKind::Message)
        .map(|m| (m.id, m.body))
        .collect()
}

/// Records a run's position through `checkpoint` when one is due (`quiet`:
/// the run has been waiting), writing the events up to it to the log files
/// first.
fn record(checkpoint: Option<&dyn Checkpoint>, fanout: &Fanout, quiet: bool) {
    if let Some(c) = checkpoint.filter(|c| c.due(quiet)) {
        fanout.write_pending();
        c.record();
    }
}

fn failed(error: String) -> PumpResult {
    PumpResult {
        status: CompletionStatus::Error,
        result: None,
        error: Some(error),
        clean: false,
        suspended: false,
        transcript: None,
        usage: None,
        agent_session_id: None,
    }
}

/// Drives one run on `link` to its end. `request: None` continues a run
/// that is already going (a pool run an engine reattached to after a restart).
pub(crate) async fn drive(env: PumpEnv<'_>, link: &mut Link, opening: Opening<'_>) -> PumpResult {
    let tx = link.tx.clone();
    // A run that outlives the engine records how far it was read.
    let checkpoint = link.rx.checkpoint();
    if let Some(c) = &checkpoint {
        c.bind(env.child_id);
    }
    if let Some(request) = opening.request {
        if let Err(e) = tx.send(ParentFrame::Run(request)).await {
            return failed(format!("could not send the run to the worker: {e}"));
        }
    }
    // Steering goes in-band only once the worker has the run: a worker drops
    // a message that reaches it before the run does. Until the run's end the
    // guard keeps the registration; messages that arrived before it (while
    // the worker was leased, or while no engine carried a reattached run)
    // wait in the inbox and go first.
    // Behaviours: E16.
    let steering = &env.inner.steering;
    let _steer = steering.register(env.child_id, tx.clone());
    steering
        .catch_up(env.child_id, steering_in_inbox(env.inner, env.child_id))
        .await;
    if let Some(creation) = opening.stored {
        if let Err(why) = creation.wait(&env.out.fanout).await {
            // Not one frame of a child that was never stored is read.
            let _ = tx.send(ParentFrame::Cancel).await;
            return failed(why.to_string());
        }
    }
    let fanout = &env.out.fanout;
    let child_events = ChildEvents::new(fanout.clone(), env.parent_id, env.child_id);
    if let Some(placed) = opening.placed {
        child_events.publish_at(now_micros(), placed);
    }
    let timeouts = env.inner.cfg.timeouts;
    let mut watchdog = Watchdog::new(env.clock.clone(), env.run_limit, env.idle_limit);
    let mut side: JoinSet<()> = JoinSet::new();
    let mut stop: Option<StopCause> = None;
    let grace = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(grace);
    // Pinned once: re-creating it per event would take the token's lock each time.
    let cancelled = env.control.cancel.cancelled();
    tokio::pin!(cancelled);
    // A quiet run (waiting for steering, thinking) still gets its last
    // position recorded: one timer for the run, not one per frame.
    let every = checkpoint
        .as_ref()
        .map_or(Duration::from_secs(3600), |c| c.every());
    let mut quiet = tokio::time::interval_at(Instant::now() + every, every);
    quiet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = &mut cancelled, if stop.is_none() => {
                let reason = env.control.reason().unwrap_or_else(|| "cancelled by the parent".into());
                stop = Some(StopCause::Cancelled(reason));
                let _ = tx.send(ParentFrame::Cancel).await;
                grace.as_mut().reset(Instant::now() + timeouts.cancel_grace);
            }
            trip = watchdog.tripped(), if stop.is_none() => {
                tracing::warn!(child = env.child_id, reason = %trip.reason(), "watchdog tripped");
                stop = Some(StopCause::Timeout(trip.reason()));
                let _ = tx.send(ParentFrame::Cancel).await;
                grace.as_mut().reset(Instant::now() + timeouts.cancel_grace);
            }
            _ = &mut grace, if stop.is_some() => {
                tracing::warn!(child = env.child_id, "worker ignored cancel; it will be killed");
                return stop.map(StopCause::result).unwrap_or_else(|| failed("stopped".into()));
            }
            Some(_) = side.join_next(), if !side.is_empty() => {}
            _ = quiet.tick(), if checkpoint.is_some() => {
                record(checkpoint.as_deref(), fanout, true);
            }
            frame = link.rx.recv() => {
                let mut frame = frame;
                let mut handled = 0;
                let arrived = now_micros();
                loop {
                    let run = Frames { env: &env, side: &mut side, tx: &tx, fanout, events: &child_events };
                    if let Some(done) = run.handle(frame, arrived, &mut stop) {
                        return done;
                    }
                    handled += 1;
                    if handled == BURST {
                        break;
                    }
                    match link.rx.try_recv() {
                        Some(next) => frame = Some(Ok(next)),
                        None => break,
                    }
                }
                env.clock.touch();
                // Every frame handed out is handled now: its position may
                // be recorded once its events are in the log files.
                record(checkpoint.as_deref(), fanout, false);
                // The readers this burst woke wait on this very thread
                // (tokio runs a task woken here next, and no other thread
                // may take it) until the pump yields. Without this, a fast
                // child starves its live readers off the in-memory ring.
                if handled > 1 {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// What the pump does with each frame of a run.
struct Frames<'a, 'e> {
    env: &'a PumpEnv<'e>,
    side: &'a mut JoinSet<()>,
    tx: &'a Arc<dyn FrameTx>,
    fanout: &'a Fanout,
    events: &'a ChildEvents,
}

impl Frames<'_, '_> {
    /// Handles one frame (`None`: the connection closed) that arrived at
    /// `arrived` (see [`now_micros`]); `Some` when the
    /// run is over, with how it ended.
    fn handle(
        self,
        frame: Option<Result<ChildFrame, LinkError>>,
        arrived: i64,
        stop: &mut Option<StopCause>,
    ) -> Option<PumpResult> {
        let env = self.env;
        match frame {
            Some(Ok(ChildFrame::Event { event })) => {
                env.control.note(&event);
                self.events.publish_at(arrived, event)
            }
            Some(Ok(ChildFrame::ApprovalRequest { id, body })) => {
                spawn_approval(env, self.side, self.tx, self.fanout, id, body);
            }
            Some(Ok(ChildFrame::SubagentRequest { id, body })) => {
                let (inner, slot) = (env.inner.clone(), env.slot.clone());
                let (child, tx) = (env.child_id.to_owned(), self.tx.clone());
                let waiting = env.clock.wait();
                self.side.spawn(async move {
                    let _waiting = waiting;
                    // The child only waits now: its slot goes to the grandchild.
                    slot.lend();
                    let reply = inner.nested.serve(child, body).await;
                    slot.restore(&inner.slots).await;
                    let _ = tx.send(ParentFrame::SubagentReply { id, body: reply }).await;
                });
            }
            Some(Ok(ChildFrame::Terminal(t))) => return Some(from_terminal(t, stop.take())),
            Some(Err(e)) => {
                return Some(stop.take().map(StopCause::result).unwrap_or_else(|| failed(e.to_string())))
            }
            None => {
                return Some(stop.take().map(StopCause::result).unwrap_or_else(|| {
                    failed(
                        "worker connection closed before the run ended (the worker process exited or was killed)".into(),
                    )
                }))
            }
        }
        None
    }
}

fn spawn_approval(
    env: &PumpEnv<'_>,
    side: &mut JoinSet<()>,
    tx: &Arc<dyn FrameTx>,
    fanout: &Fanout,
    id: String,
    body: ApprovalBody,
) {
    let request = ApprovalRequest {
        parent_session_id: env.parent_id.to_owned(),
        child_session_id: env.child_id.to_owned(),
        ancestry: env.out.ancestry.clone(),
        tool_name: body.tool_name,
        permission: body.permission_type,
        resource: body.resource,
        question: body.question,
    };
    let (broker, inner) = (env.inner.approvals.clone(), env.inner.clone());
    let (tx, fanout) = (tx.clone(), fanout.clone());
    let waiting = env.clock.wait();
    side.spawn(async move {
        let _waiting = waiting;
        // Up the chain first: a bypassed level below the root may answer.
        let decision = match climb_engine(&inner, &request).await {
            Some(d) => d,
            None => broker.decide(&request, |ev| fanout.publish(ev)).await,
        };
        tracing::info!(
            child = %request.child_session_id,
            tool = %request.tool_name,
            approved = decision.approved,
            by = ?decision.by,
            "approval decided"
        );
        let _ = tx
            .send(ParentFrame::ApprovalReply {
                id,
                approved: decision.approved,
            })
            .await;
    });
}

/// Maps a terminal frame to a result. A completed run stays completed even if
/// a cancel crossed it on the wire: the work is done. A suspended run is
/// reported as completed on the stream but kept `suspended` on the child.
fn from_terminal(t: Terminal, stop: Option<StopCause>) -> PumpResult {
    let completed = matches!(
        t.status,
        TerminalStatus::Completed | TerminalStatus::Suspended
    );
    if let (Some(stop), false) = (stop, completed) {
        return stop.result();
    }
    PumpResult {
        status: t.status.into(),
        result: t.result,
        error: t.error,
        clean: completed,
        suspended: t.status == TerminalStatus::Suspended,
        transcript: t.transcript,
        usage: t.usage,
        agent_session_id: t.agent_session_id,
    }
}

/// [`crate::escalation::climb`] over the engine's sessions and configured reviewer.
async fn climb_engine(inner: &RunPath, request: &ApprovalRequest) -> Option<Decision> {
    let cfg = &inner.cfg.approvals;
    let store = &inner.store;
    let bypassed = |id: String| async move {
        match store.load(&id).await {
            Ok(Some(s)) => {
                s.metadata.get(crate::escalation::BYPASS_KEY)
                    == Some(&serde_json::Value::Bool(true))
            }
            _ => false,
        }
    };
    let (level, decision) =
        crate::escalation::climb(request, cfg.reviewer.as_ref(), cfg.timeout, bypassed).await?;
    tracing::info!(child = %request.child_session_id, level = %level, approved = decision.approved, "approval decided up the chain");
    Some(decision)
}
