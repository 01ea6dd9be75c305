//! One run on a pool worker: read its control subject, run the executor,
//! stream its frames out, end with a terminal frame.

use std::sync::Arc;
use std::time::Duration;

use bamboo_subagent::executor::frame_host::{FrameHost, Replies};
use bamboo_subagent::executor::{
    EventSink, Executor, HostBridge, RunContext, RunOutcome, SteeringInbox,
};
use bamboo_subagent::frames::{ChildFrame, ParentFrame, Terminal};
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::outbox::publish_lines;
use crate::follow::Follower;
use crate::setup::PoolHandles;
use crate::wire::{Taken, WorkItem};

/// How long a cancelled executor may take before it is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Builds the executor of one run from its spec (secrets already replaced by
/// the worker's own).
pub type ExecutorFactory = Arc<
    dyn Fn(&bamboo_subagent::spec::ProvisionSpec) -> Result<Arc<dyn Executor>, String>
        + Send
        + Sync,
>;

/// Who serves the run.
pub(crate) struct RunEnv {
    pub pool: PoolHandles,
    pub worker_id: String,
    pub host: String,
    pub factory: ExecutorFactory,
}

/// Serves `item` to its end. `stop` cancels the run (the worker is shutting
/// down past its drain time).
pub(crate) async fn serve_run(env: Arc<RunEnv>, item: WorkItem, stop: CancellationToken) {
    let run_id = item.run_id.clone();
    let name = &env.pool.name;
    let (out_tx, out_rx) = mpsc::channel::<String>(4096);
    let outbox = tokio::spawn(publish_lines(
        env.pool.js.clone(),
        name.out_subject(&run_id),
        run_id.clone(),
        out_rx,
    ));
    let _ = out_tx.send(Taken::line(&env.worker_id, &env.host)).await;
    let control = Follower::new(
        env.pool.client.clone(),
        env.pool.runs.clone(),
        name.in_subject(&run_id),
        0,
    );
    let outcome = match (env.factory)(&item.spec) {
        Err(e) => RunOutcome::error(format!(
            "pool worker {} cannot run this executor: {e}",
            env.worker_id
        )),
        Ok(executor) => drive(executor, item, out_tx.clone(), control, stop).await,
    };
    let terminal = ChildFrame::Terminal(Terminal::from(outcome));
    let _ = out_tx.send(terminal.to_text()).await;
    drop(out_tx);
    let _ = outbox.await;
    tracing::debug!(run = %run_id, "run ended");
}

/// Runs the executor while routing control frames to it.
async fn drive(
    executor: Arc<dyn Executor>,
    item: WorkItem,
    out: mpsc::Sender<String>,
    mut control: Follower,
    stop: CancellationToken,
) -> RunOutcome {
    let cancel = CancellationToken::new();
    let (steer, steering) = SteeringInbox::channel();
    let replies = Arc::new(Replies::default());
    let host: Arc<dyn HostBridge> = Arc::new(FrameHost::new(out.clone(), replies.clone()));
    let ctx = RunContext {
        events: EventSink::frames(out, Some(host)),
        steering,
        cancel: cancel.clone(),
    };
    // A panicking executor still ends its run with a terminal frame.
    let run = std::panic::AssertUnwindSafe(executor.run(item.request, ctx))
        .catch_unwind()
        .map(|r| {
            r.unwrap_or_else(|_| {
                RunOutcome::error("the executor panicked; see the pool worker's stderr")
            })
        });
    tokio::pin!(run);
    loop {
        tokio::select! {
            outcome = &mut run => return outcome,
            _ = stop.cancelled(), if !cancel.is_cancelled() => cancel.cancel(),
            _ = cancel.cancelled() => {
                return tokio::time::timeout(CANCEL_GRACE, &mut run)
                    .await
                    .unwrap_or_else(|_| RunOutcome::cancelled());
            }
            msg = control.next() => match msg {
                Ok((_, m)) => match serde_json::from_slice::<ParentFrame>(&m.payload) {
                    Ok(frame) => route(frame, &cancel, &steer, &replies),
                    Err(e) => tracing::debug!(error = %e, "ignoring a malformed control frame"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the run's control subject; cancelling the run");
                    cancel.cancel();
                }
            },
        }
    }
}

fn route(
    frame: ParentFrame,
    cancel: &CancellationToken,
    steer: &mpsc::UnboundedSender<String>,
    replies: &Replies,
) {
    let Some(frame) = replies.answer(frame) else {
        return;
    };
    match frame {
        // A run arrives through the work queue, never here.
        ParentFrame::Run(_) => {}
        ParentFrame::Cancel => cancel.cancel(),
        ParentFrame::Message { text } => {
            let _ = steer.send(text);
        }
        // Answered above.
        ParentFrame::ApprovalReply { .. } | ParentFrame::SubagentReply { .. } => {}
    }
}
