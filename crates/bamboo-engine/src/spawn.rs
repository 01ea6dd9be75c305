//! The one canonical spawn path. Every entry point (child actions, the
//! tool layer, nested spawns) calls [`enqueue`], so event order, statuses and
//! fields cannot drift between them.
//!
//! Life of a run: reserve → load and check → wait for a slot
//! → persist `running` → `sub_agent_started` → lease a worker
//! → register for steering → pump → park or
//! retire → write back and persist the final status →
//! `sub_agent_completed` → release the reservation.
// Behaviours: E1, E5, E3, E4, E12, E6, E10, E11, E16, E7-E9, E17, E18, E13, E15, E2.

use std::sync::Arc;

use bamboo_domain::{AgentEvent, ChildStatus, CompletionStatus, Message, Session};
use futures::FutureExt;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::creation::{Creation, Stored};
use crate::error::EngineError;
use crate::events::{Fanout, RunLogs};
use crate::launch::{LaunchError, PlacementLauncher, Resumable};
use crate::provision::{run_request, spec_for};
use crate::pump::{drive, Opening, PumpEnv, PumpResult};
use crate::reservations::{Reservation, RunControl};
use crate::run_path::RunPath;
use crate::slots::{LendableSlot, Place, Slot};
use crate::store::SessionStore;
use crate::watchdog::ActivityClock;
use crate::writeback::{untaken, write_back};

/// How one run ended, for callers that await it (nested spawns, tests).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The child.
    pub child_id: String,
    /// How the run ended.
    pub status: CompletionStatus,
    /// The final answer, when it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why it did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Pid of the worker that served the run, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_pid: Option<u32>,
    /// What the run used, when its executor counted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<bamboo_domain::TokenUsage>,
    /// The child's worktree after the run (branch, commit, changed files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worktree: Option<crate::worktree::Worktree>,
}

/// Resolves with the run's report once `sub_agent_completed` is published.
pub type RunTicket = oneshot::Receiver<RunReport>;

/// Queues a run of `child_id` for `parent_id` and returns at once.
// Behaviours: E2.
pub(crate) fn enqueue(
    inner: &Arc<RunPath>,
    parent_id: &str,
    child_id: &str,
) -> Result<RunTicket, EngineError> {
    if inner.shutdown.is_cancelled() {
        return Err(EngineError::ShuttingDown);
    }
    let reservation = inner
        .reservations
        .reserve(child_id, &inner.shutdown)
        .ok_or_else(|| EngineError::AlreadyRunning(child_id.to_owned()))?;
    let place = inner.slots.queue();
    Ok(spawn_run(
        inner,
        parent_id,
        reservation,
        Start::Queued(place),
    ))
}

/// How a reserved run begins.
enum Start {
    /// Queued: wait for a slot (its place in the queue taken when queued),
    /// then run.
    Queued(Place),
    /// Started by [`launch`]: holding its slot, the child being stored
    /// `running` by `creation`.
    Now(Slot, Box<Session>, Creation),
    /// A run a previous engine started, read on where it left off.
    Reattach(Resumable),
}

/// Spawns the task of one reserved run.
fn spawn_run(
    inner: &Arc<RunPath>,
    parent_id: &str,
    reservation: Reservation,
    started: Start,
) -> RunTicket {
    let (tx, rx) = oneshot::channel();
    // Boxed: a run can spawn nested runs, so its future type is recursive.
    let run = run_child(
        inner.clone(),
        parent_id.to_owned(),
        reservation,
        started,
        tx,
    )
    .boxed();
    inner.tasks.spawn(run);
    rx
}

/// A run of a new child that can start at once: reserved, holding a slot.
#[derive(Debug)]
pub(crate) struct Ready {
    reservation: Reservation,
    slot: Slot,
}

/// The fast path for a child about to be created with `auto_run`: reserves
/// it and takes a slot, if one is free now. The child is then created already
/// `running` ([`set_running`]) and handed to [`launch`], which saves the
/// separate durable write of `running`. `None`: queue it with [`enqueue`].
/// Dropping the result gives both back.
pub(crate) fn try_start_now(inner: &RunPath, child_id: &str) -> Option<Ready> {
    if inner.shutdown.is_cancelled() {
        return None;
    }
    let slot = inner.slots.try_acquire()?;
    let reservation = inner.reservations.reserve(child_id, &inner.shutdown)?;
    Some(Ready { reservation, slot })
}

/// Stores the new child `session` (already marked running) and runs it with
/// `ready` (see [`try_start_now`]), both at once (see [`crate::creation`]).
/// The receiver gets the store's answer to the create.
pub(crate) fn launch(
    inner: &Arc<RunPath>,
    parent_id: &str,
    ready: Ready,
    session: Session,
) -> Stored {
    let announce = started_event(parent_id, &session);
    let (creation, stored) = Creation::start(inner.store.clone(), session.clone(), announce);
    drop(spawn_run(
        inner,
        parent_id,
        ready.reservation,
        Start::Now(ready.slot, Box::new(session), creation),
    ));
    stored
}

/// Continues `run`, which a previous engine started and did not see end
/// (issue 12): the child, still `running` on disk, is reserved and its run
/// read on where it was left. `None` when the child is already reserved.
pub(crate) fn reattach(inner: &Arc<RunPath>, parent_id: &str, run: Resumable) -> Option<RunTicket> {
    let reservation = inner.reservations.reserve(&run.child_id, &inner.shutdown)?;
    Some(spawn_run(
        inner,
        parent_id,
        reservation,
        Start::Reattach(run),
    ))
}

/// A run from its reservation to its completion event.
async fn run_child(
    inner: Arc<RunPath>,
    parent_id: String,
    reservation: Reservation,
    started: Start,
    done: oneshot::Sender<RunReport>,
) {
    let child_id = reservation.child.clone();
    // The run's events go to its parent's log and every further ancestor's.
    let ancestry = inner.ancestry(&parent_id).await;
    let out = RunLogs::new(Fanout::new(&inner.events, &ancestry), ancestry);
    let work = async {
        match started {
            Start::Now(slot, session, creation) => {
                let session = *session;
                run_started(
                    &inner,
                    &parent_id,
                    &reservation,
                    &out,
                    slot,
                    session,
                    creation,
                )
                .await
            }
            Start::Queued(place) => run_queued(&inner, &parent_id, &reservation, place, &out).await,
            Start::Reattach(run) => {
                run_reattached(&inner, &parent_id, &reservation, &out, run).await
            }
        }
    };
    let beat = inner.cfg.timeouts.heartbeat;
    let report = with_heartbeat(&out.fanout, &parent_id, &child_id, beat, work).await;
    let pid = reservation
        .control
        .pid
        .load(std::sync::atomic::Ordering::Relaxed);
    let report = RunReport {
        worker_pid: (pid != 0).then_some(pid),
        ..report
    };
    let completed = AgentEvent::SubAgentCompleted {
        parent_session_id: parent_id.clone(),
        child_session_id: child_id,
        status: report.status,
        error: report.error.clone(),
        result: report.result.clone(),
        usage: report.usage.map(Box::new),
        worktree: report.worktree.as_ref().map(|w| {
            Box::new(bamboo_domain::WorktreeOutcome {
                branch: w.branch.clone(),
                commit: w.commit.clone(),
                files: w.files.clone(),
                kept: !w.removed,
            })
        }),
    };
    reservation.complete(|| out.fanout.publish(completed));
    // The end of a run is when its events become durable (coalesced, off
    // this path: the completion does not wait for the disk).
    out.fanout.sync_in_background();
    let _ = done.send(report);
}

/// `sub_agent_heartbeat` every `every` from the moment the run is
/// reserved (waiting for a slot or a worker included) until it ends.
// Behaviours: E8.
async fn with_heartbeat(
    fanout: &Fanout,
    parent_id: &str,
    child_id: &str,
    every: std::time::Duration,
    work: impl std::future::Future<Output = RunReport>,
) -> RunReport {
    let start = tokio::time::Instant::now() + every;
    let mut ticks = tokio::time::interval_at(start, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            report = &mut work => return report,
            _ = ticks.tick() => fanout.publish(AgentEvent::SubAgentHeartbeat {
                parent_session_id: parent_id.to_owned(),
                child_session_id: child_id.to_owned(),
                timestamp: chrono::Utc::now(),
            }),
        }
    }
}

/// `Err` when the child cannot run at all, `Ok(false)` when it
/// has nothing pending. A suspended child always has: it resumes.
// Behaviours: E3, E4.
async fn check(inner: &RunPath, parent_id: &str, child_id: &str) -> Result<bool, EngineError> {
    let session = inner.load_child(parent_id, child_id).await?;
    Ok(session.has_pending_user_message() || session.status() == Some(ChildStatus::Suspended))
}

/// A queued run: checks, waits for a slot, persists
/// `running`, then runs.
// Behaviours: E3, E4, E12, E6.
async fn run_queued(
    inner: &Arc<RunPath>,
    parent_id: &str,
    res: &Reservation,
    place: Place,
    out: &RunLogs,
) -> RunReport {
    let (child_id, control) = (res.child.as_str(), &res.control);
    match check(inner, parent_id, child_id).await {
        Err(e) => return report(child_id, CompletionStatus::Error, None, Some(e.to_string())),
        Ok(false) => {
            let r = PumpResult {
                status: CompletionStatus::Skipped,
                result: None,
                error: Some("nothing to run: the last message is not from the user".into()),
                clean: true,
                suspended: false,
                transcript: None,
                usage: None,
                agent_session_id: None,
            };
            return finish(inner, child_id, r, None).await;
        }
        Ok(true) => {}
    }
    let slot = tokio::select! {
        s = place.wait() => s,
        _ = control.cancel.cancelled() => None,
    };
    let Some(slot) = slot else {
        return finish(inner, child_id, stopped(cancel_reason(control)), None).await;
    };
    if let Err(e) = reopen_worktree(inner, child_id).await {
        return finish(inner, child_id, error_result(e.to_string()), None).await;
    }
    let session = match mark_running(inner, child_id).await {
        Ok(s) => s,
        Err(e) => return finish(inner, child_id, error_result(e.to_string()), None).await,
    };
    let creation = Creation::stored(started_event(parent_id, &session));
    run_started(inner, parent_id, res, out, slot, session, creation).await
}

/// `sub_agent_started` of the child `session` of `parent_id`.
fn started_event(parent_id: &str, session: &Session) -> AgentEvent {
    AgentEvent::SubAgentStarted {
        parent_session_id: parent_id.to_owned(),
        child_session_id: session.id.clone(),
        title: (!session.title.is_empty()).then(|| session.title.clone()),
    }
}

fn cancel_reason(control: &RunControl) -> String {
    control
        .reason()
        .unwrap_or_else(|| "cancelled: the engine is shutting down".into())
}

/// A run holding its slot, its child being stored `running` as `session` by
/// `creation`: `sub_agent_started`, lease, pump, park or retire, write-back.
async fn run_started(
    inner: &Arc<RunPath>,
    parent_id: &str,
    res: &Reservation,
    out: &RunLogs,
    slot: Slot,
    session: Session,
    mut creation: Creation,
) -> RunReport {
    let child_id = res.child.as_str();
    let slot = Arc::new(LendableSlot::new(slot));
    if creation.is_stored() {
        // Announced before the lease: nothing to wait for.
        let _ = creation.wait(&out.fanout).await;
    }
    let clock = Arc::new(ActivityClock::new());
    let _ = res.control.clock.set(clock.clone());
    let run = Started {
        inner,
        parent_id,
        res,
        out,
        slot: &slot,
        clock: &clock,
        session: &session,
    };
    let result = run.lease_and_drive(&mut creation).await;
    slot.close();
    // The final status goes after the create, never instead of it.
    match creation.wait(&out.fanout).await {
        Ok(()) => finish(inner, child_id, result, Some((&clock, &res.control))).await,
        Err(why) => report(
            child_id,
            CompletionStatus::Error,
            None,
            Some(why.to_string()),
        ),
    }
}

/// What [`run_started`] hands to its lease-and-pump step.
struct Started<'a> {
    inner: &'a Arc<RunPath>,
    parent_id: &'a str,
    res: &'a Reservation,
    out: &'a RunLogs,
    slot: &'a Arc<LendableSlot>,
    clock: &'a Arc<ActivityClock>,
    session: &'a Session,
}

impl Started<'_> {
    /// Leases a worker, sends the run and pumps it once `creation` has
    /// stored (and announced) the child; parks or retires the worker.
    async fn lease_and_drive(self, creation: &mut Creation) -> PumpResult {
        let (inner, control) = (self.inner, &self.res.control);
        let worker_id = format!("w-{}", uuid::Uuid::new_v4().simple());
        let spec = spec_for(&inner.cfg, self.session, &worker_id);
        let lease = tokio::select! {
            l = inner.leases.acquire(&spec) => l,
            _ = control.cancel.cancelled() => return stopped(cancel_reason(control)),
        };
        let mut lease = match lease {
            Ok(l) => l,
            Err(e) => return error_result(e.to_string()),
        };
        if let Some(pid) = lease.worker.pid() {
            control.pid.store(pid, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::debug!(child = %self.res.child, pid = ?lease.worker.pid(), reused = lease.reused, "worker leased");
        let env = pump_env(
            inner,
            self.parent_id,
            self.res,
            self.out,
            self.slot,
            self.clock,
            self.session,
        );
        let mut request = run_request(self.session);
        request.approved = approved_ahead(inner, &self.out.ancestry, self.session, &request);
        let opening = Opening {
            request: Some(request),
            stored: Some(creation),
            placed: PlacementLauncher::placed(&spec.placement, lease.worker.pid()),
        };
        let result = drive(env, &mut lease.link, opening).await;
        inner.leases.release(lease, result.clean);
        result
    }
}

/// What the policy approves for `request` of `session` before it runs:
/// nothing when permissions are not enforced (nothing asks), with no
/// policy, or when a bypassed level below the root could answer a request
/// first (its reviewer must keep that say).
// Behaviours: E17.
fn approved_ahead(
    inner: &RunPath,
    ancestry: &[String],
    session: &Session,
    request: &bamboo_subagent::frames::RunRequest,
) -> Vec<crate::approval::Approved> {
    let approvals = &inner.cfg.approvals;
    let Some(policy) = approvals.policy.as_ref() else {
        return Vec::new();
    };
    let reviewed = approvals.reviewer.is_some() && ancestry.len() > 1;
    if !inner.cfg.enforce_permissions || reviewed {
        return Vec::new();
    }
    policy.approved_ahead(&session.id, &request.assignment)
}

/// A reattached run: waits for a slot (it counts against the running limit
/// like any run), attaches to the run and pumps it on without sending it
/// again.
async fn run_reattached(
    inner: &Arc<RunPath>,
    parent_id: &str,
    res: &Reservation,
    out: &RunLogs,
    run: Resumable,
) -> RunReport {
    let (child_id, control) = (res.child.as_str(), &res.control);
    let what = run.to_string();
    let session = match inner.load_child(parent_id, child_id).await {
        Ok(s) => s,
        Err(e) => return finish(inner, child_id, error_result(e.to_string()), None).await,
    };
    let attached = async {
        let worker = inner.leases.launcher.resume(run).await?;
        let link = worker.connect().await?;
        Ok::<_, LaunchError>((worker, link))
    };
    let (mut worker, mut link) = match attached.await {
        Ok(w) => w,
        Err(e) => {
            let why = format!("the engine restarted and could not reattach to {what}: {e}");
            return finish(inner, child_id, error_result(why), None).await;
        }
    };
    tracing::info!(child = child_id, run = %what, "reattached to a run after a restart");
    let slot = tokio::select! {
        s = inner.slots.acquire() => s,
        _ = control.cancel.cancelled() => None,
    };
    let Some(slot) = slot else {
        worker.kill().await;
        return finish(inner, child_id, stopped(cancel_reason(control)), None).await;
    };
    let slot = Arc::new(LendableSlot::new(slot));
    let clock = Arc::new(ActivityClock::new());
    let _ = control.clock.set(clock.clone());
    let env = pump_env(inner, parent_id, res, out, &slot, &clock, &session);
    let result = drive(env, &mut link, Opening::default()).await;
    drop(link);
    worker.kill().await;
    slot.close();
    finish(inner, child_id, result, Some((&clock, &res.control))).await
}

/// What the pump of a run on `res` needs.
fn pump_env<'a>(
    inner: &'a Arc<RunPath>,
    parent_id: &'a str,
    res: &'a Reservation,
    out: &'a RunLogs,
    slot: &Arc<LendableSlot>,
    clock: &Arc<ActivityClock>,
    session: &Session,
) -> PumpEnv<'a> {
    let (run_limit, idle_limit) = limits(inner, session);
    PumpEnv {
        inner,
        parent_id,
        child_id: &res.child,
        out,
        control: &res.control,
        slot: slot.clone(),
        clock: clock.clone(),
        run_limit,
        idle_limit,
    }
}

/// Watchdog caps: the child's overrides, else the engine's.
// Behaviours: E9.
fn limits(inner: &RunPath, session: &Session) -> (std::time::Duration, std::time::Duration) {
    let t = inner.cfg.timeouts;
    let info = session.child.as_ref();
    let secs = std::time::Duration::from_secs;
    (
        info.and_then(|c| c.run_timeout_secs).map_or(t.run, secs),
        info.and_then(|c| c.idle_timeout_secs).map_or(t.idle, secs),
    )
}

/// Commits what the run changed in the child's worktree, if it has one
/// (or removes a worktree with no change), and records the result on the
/// child. A git failure is logged and leaves the worktree as it is, for a
/// human to look at. A child without a worktree costs nothing here.
async fn conclude_worktree(
    inner: &RunPath,
    child_id: &str,
    session: &Session,
) -> Option<crate::worktree::Worktree> {
    let wt = crate::worktree::of(session).filter(|w| !w.removed)?;
    let (name, summary) = (
        session.title.clone(),
        session
            .child
            .as_ref()
            .map(|c| c.assignment.clone())
            .unwrap_or_default(),
    );
    let kept = wt.clone();
    let done = match tokio::task::spawn_blocking(move || {
        crate::worktree::conclude(&wt, &name, &summary)
    })
    .await
    {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::error!(child = child_id, error = %e, "could not commit the child's worktree");
            return Some(kept);
        }
        Err(_) => return Some(kept),
    };
    let record = done.clone();
    let stored = inner
        .store
        .update(
            child_id,
            Box::new(move |s: &mut Session| {
                crate::worktree::store(s, &record);
                true
            }),
        )
        .await;
    if let Err(e) = stored {
        tracing::error!(child = child_id, error = %e, "could not record the child's worktree");
    }
    Some(done)
}

/// A removed worktree of a resumed child is made again (same branch name,
/// from HEAD), so its run is isolated like the first.
async fn reopen_worktree(inner: &RunPath, child_id: &str) -> Result<(), EngineError> {
    let Some(session) = inner.store.load(child_id).await? else {
        return Ok(());
    };
    let Some(old) = crate::worktree::of(&session).filter(|w| w.removed) else {
        return Ok(());
    };
    let dir = inner.cfg.data_dir.join("worktrees");
    let (name, id) = (session.title.clone(), session.id.clone());
    let repo = old.repo.clone();
    let wt = tokio::task::spawn_blocking(move || {
        crate::worktree::create(std::path::Path::new(&repo), &name, &id, &dir)
    })
    .await
    .map_err(|e| EngineError::InvalidInput(format!("reopening the worktree failed: {e}")))?
    .map_err(EngineError::InvalidInput)?;
    inner
        .store
        .update(
            child_id,
            Box::new(move |s: &mut Session| {
                let inside = crate::worktree::of(s)
                    .and_then(|w| {
                        std::path::Path::new(&w.workspace)
                            .strip_prefix(&w.path)
                            .ok()
                            .map(std::path::Path::to_path_buf)
                    })
                    .unwrap_or_default();
                let mut wt = wt.clone();
                wt.workspace = std::path::Path::new(&wt.path)
                    .join(inside)
                    .display()
                    .to_string();
                s.workspace = Some(wt.workspace.clone());
                crate::worktree::store(s, &wt);
                true
            }),
        )
        .await?;
    Ok(())
}

/// Records `running` and returns the session as stored, including any
/// message appended while the run was queued. The run does not wait for
/// the disk: its ending is written (and waited for) after this mark, and
/// the sync of that write covers it. A crash of the machine before that may
/// lose the mark; the child then reads as it was before the run, its
/// message still waiting (a new child: `pending`, which `run --resume`
/// reruns like an orphaned one).
async fn mark_running(inner: &RunPath, child_id: &str) -> Result<Session, EngineError> {
    let session = inner
        .store
        .update_soon(
            child_id,
            Box::new(|s: &mut Session| {
                set_running(s);
                true
            }),
        )
        .await?;
    Ok(session)
}

/// The `running` mark on a child session, in memory; the last tool is
/// the new run's from now on.
// Behaviours: E6, C10.
pub(crate) fn set_running(s: &mut Session) {
    if let Some(c) = s.child.as_mut() {
        c.status = ChildStatus::Running;
        c.started_at = Some(chrono::Utc::now());
        c.completed_at = None;
        c.last_error = None;
        c.last_tool = None;
        c.round_count += 1;
    }
}

/// Writes the run back (the terminal's transcript when it has one,
/// else the result as an assistant message), persists the final status and
/// error, folds steering messages the run did not take into the transcript,
/// and builds the report.
// Behaviours: E6, E15, C6.
async fn finish(
    inner: &RunPath,
    child_id: &str,
    r: PumpResult,
    ran: Option<(&ActivityClock, &RunControl)>,
) -> RunReport {
    let last_event = ran.map(|(clock, _)| clock.last_wall());
    let last_tool = ran.and_then(|(_, control)| control.last_tool());
    let task_list = ran.and_then(|(_, control)| control.task_list());
    // The transcript moves into the session and the result is borrowed:
    // either may be the run's longest text, not worth a copy.
    let mut r = r;
    let transcript = r.transcript.take();
    let (status, result, error) = (r.status, r.result.as_deref(), r.error.clone());
    let suspended = r.suspended;
    let (usage, agent_session) = (r.usage, r.agent_session_id.clone());
    // Set by the store update when the child's totals passed a budget.
    let over_budget = Arc::new(std::sync::Mutex::new(None::<String>));
    let over = over_budget.clone();
    // C6: messages sent while the run ran wait in the child's inbox.
    let inbox = inner.inbox(child_id);
    if let Err(e) = &inbox {
        tracing::error!(child = child_id, error = %e, "could not open the child's inbox");
    }
    let inbox = inbox.ok();
    let claimed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (taker, ids) = (inbox.clone(), claimed.clone());
    let persisted = inner
        .store
        .update(
            child_id,
            Box::new(move |s: &mut Session| {
                let taken = if status == CompletionStatus::Completed {
                    write_back(s, transcript, result)
                } else {
                    Vec::new()
                };
                if task_list.is_some() {
                    s.task_list = task_list;
                }
                crate::usage::record_run(s, usage.as_ref(), agent_session);
                let budget = crate::usage::over_budget(s);
                let Some(c) = s.child.as_mut() else {
                    return false;
                };
                if let Some(why) = budget {
                    *over.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                    c.status = ChildStatus::Cancelled;
                    c.last_error = Some(why);
                    c.completed_at = Some(chrono::Utc::now());
                    return true;
                }
                if last_tool.is_some() {
                    c.last_tool = last_tool;
                }
                c.status = if suspended {
                    ChildStatus::Suspended
                } else {
                    status.into()
                };
                c.last_error = if status == CompletionStatus::Completed {
                    None
                } else {
                    error
                };
                c.completed_at = Some(chrono::Utc::now());
                c.last_event_at = last_event.or(c.last_event_at);
                let mut pending: Vec<String> = c.pending_messages.drain(..).collect();
                let waiting = taker.map(|i| i.claim_all().unwrap_or_default());
                for m in waiting.unwrap_or_default() {
                    ids.lock().unwrap_or_else(|p| p.into_inner()).push(m.id);
                    pending.push(m.body);
                }
                for text in untaken(pending, taken) {
                    s.messages.push(Message::user(text));
                }
                true
            }),
        )
        .await;
    match persisted {
        // Acknowledged only once the transcript holding them is durable.
        Ok(session) => {
            ack_all(inbox.as_ref(), &claimed);
            let worktree = conclude_worktree(inner, child_id, &session).await;
            let budget = over_budget.lock().unwrap_or_else(|p| p.into_inner()).take();
            let mut done = match budget {
                Some(why) => report(child_id, CompletionStatus::Cancelled, None, Some(why)),
                None => report(child_id, r.status, r.result, r.error),
            };
            done.usage = usage;
            done.worktree = worktree;
            done
        }
        Err(e) => unstored(inner, child_id, r.status, r.result, r.error, &e),
    }
}

/// The report of a run whose final status the store refused (a full disk):
/// never `completed`, since nothing says so on disk. It ends as an error
/// that says what was lost and why; a completed run's result is still
/// handed to the caller, marked unsaved. The ending waits in the store's
/// deferred endings, so readers agree with this report meanwhile.
fn unstored(
    inner: &RunPath,
    child_id: &str,
    status: CompletionStatus,
    result: Option<String>,
    error: Option<String>,
    e: &crate::store::StoreError,
) -> RunReport {
    tracing::error!(child = child_id, error = %e, "could not store the run's final status");
    let why = match (status, &result, &error) {
        (CompletionStatus::Completed, Some(result), _) => {
            format!("the run completed, but its result could not be stored ({e}); unsaved result: {result}")
        }
        (_, _, Some(error)) => {
            format!("the run ended {status} ({error}), but that could not be stored ({e})")
        }
        _ => format!("the run ended {status}, but that could not be stored ({e})"),
    };
    let ending = crate::store::Ending::refused(ChildStatus::Error, why.clone(), e);
    inner.store.defer(child_id, ending);
    report(child_id, CompletionStatus::Error, result, Some(why))
}

fn ack_all(inbox: Option<&crate::inbox::Inbox>, ids: &std::sync::Mutex<Vec<String>>) {
    let Some(inbox) = inbox else { return };
    for id in ids.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        if let Err(e) = inbox.ack(&id) {
            tracing::warn!(error = %e, "could not acknowledge an inbox message");
        }
    }
}

fn stopped(reason: String) -> PumpResult {
    PumpResult {
        status: CompletionStatus::Cancelled,
        result: None,
        error: Some(reason),
        clean: false,
        suspended: false,
        transcript: None,
        usage: None,
        agent_session_id: None,
    }
}

fn error_result(error: String) -> PumpResult {
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

fn report(
    child_id: &str,
    status: CompletionStatus,
    result: Option<String>,
    error: Option<String>,
) -> RunReport {
    RunReport {
        child_id: child_id.to_owned(),
        status,
        result,
        error,
        worker_pid: None,
        usage: None,
        worktree: None,
    }
}
