//! Asking the host (the parent) for approval, racing cancellation.

use std::sync::Arc;

use bamboo_subagent::executor::{ApprovalBody, HostBridge, HostError, RunContext};
use tokio_util::sync::CancellationToken;

/// The answer to an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval {
    /// Go ahead.
    Granted,
    /// Do not; the text says who or what refused.
    Denied(String),
    /// The run was cancelled while waiting.
    Cancelled,
}

/// Asks the host whether `body` may proceed. No host, a closed connection or
/// an unsupported call all deny (fail closed).
pub async fn ask_approval(ctx: &RunContext, body: ApprovalBody) -> Approval {
    ask_host(ctx.events.host().cloned(), &ctx.cancel, body).await
}

/// [`ask_approval`] for a task that outlives the borrow of its run context
/// (an agent's permission question answered while its output is read).
pub async fn ask_host(
    host: Option<Arc<dyn HostBridge>>,
    cancel: &CancellationToken,
    body: ApprovalBody,
) -> Approval {
    let Some(host) = host else {
        return Approval::Denied("no approver is connected".into());
    };
    let answer = tokio::select! {
        biased;
        _ = cancel.cancelled() => return Approval::Cancelled,
        r = host.request_approval(body) => r,
    };
    match answer {
        Ok(true) => Approval::Granted,
        Ok(false) => Approval::Denied("denied by approver".into()),
        Err(HostError::Cancelled) => Approval::Cancelled,
        Err(e) => Approval::Denied(format!("denied: {e}")),
    }
}
