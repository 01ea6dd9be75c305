//! Approvals up the chain (seed 003's escalation bridge, without process
//! globals). A grandchild's request climbs its ancestry level by level:
//! a level whose session runs in bypass mode may answer through the
//! [`ChildApprovalReviewer`] seam (off the event pump, timeout ⇒ deny);
//! a level that is not bypassed, or whose reviewer has no opinion, passes it
//! up. At the root the policy/human path of the broker applies.
// Behaviours: E21, E17.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use crate::approval::ChildApprovalReviewer;
use crate::approval::{ApprovalRequest, DecidedBy, Decision};

/// Session metadata key: the session runs in "bypass permissions" mode
/// (children inherit it at creation). Its descendants' requests may then be
/// answered by the [`ChildApprovalReviewer`] at its level.
pub const BYPASS_KEY: &str = "bypass_permissions";

/// Walks the levels below the root (`request.ancestry`, parent first, root
/// excluded). `Some` when a bypassed level decided; `None` when the request
/// reaches the root undecided.
pub(crate) async fn climb<F, Fut>(
    request: &ApprovalRequest,
    reviewer: Option<&Arc<dyn ChildApprovalReviewer>>,
    timeout: Duration,
    bypassed: F,
) -> Option<(String, Decision)>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = bool>,
{
    let reviewer = reviewer?;
    let below_root = request.ancestry.len().saturating_sub(1);
    for level in &request.ancestry[..below_root] {
        if !bypassed(level.clone()).await {
            continue;
        }
        let verdict = tokio::time::timeout(timeout, reviewer.review(level, request)).await;
        let decision = match verdict {
            Ok(Some(approved)) => Decision {
                approved,
                by: DecidedBy::Reviewer,
            },
            Ok(None) => continue,
            Err(_) => Decision {
                approved: false,
                by: DecidedBy::Timeout,
            },
        };
        return Some((level.clone(), decision));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    #[derive(Debug)]
    struct Silent;

    #[async_trait]
    impl ChildApprovalReviewer for Silent {
        async fn review(&self, _: &str, _: &ApprovalRequest) -> Option<bool> {
            std::future::pending().await
        }
    }

    #[derive(Debug)]
    struct Says(Option<bool>);

    #[async_trait]
    impl ChildApprovalReviewer for Says {
        async fn review(&self, _: &str, _: &ApprovalRequest) -> Option<bool> {
            self.0
        }
    }

    fn request() -> ApprovalRequest {
        ApprovalRequest {
            parent_session_id: "child".into(),
            child_session_id: "grandchild".into(),
            ancestry: vec!["child".into(), "root".into()],
            tool_name: "bash".into(),
            permission: "execute".into(),
            resource: "rm -rf build".into(),
            question: "ok?".into(),
        }
    }

    fn reviewer(r: impl ChildApprovalReviewer + 'static) -> Option<Arc<dyn ChildApprovalReviewer>> {
        Some(Arc::new(r))
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_reviewer_is_a_deny_at_the_timeout() {
        let start = tokio::time::Instant::now();
        let out = climb(
            &request(),
            reviewer(Silent).as_ref(),
            Duration::from_secs(300),
            |_| async { true },
        )
        .await;
        let (level, d) = out.expect("decided at the bypassed level");
        assert_eq!(level, "child");
        assert_eq!((d.approved, d.by), (false, DecidedBy::Timeout));
        assert_eq!(start.elapsed(), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn a_bypassed_level_answers_and_others_pass_it_up() {
        let t = Duration::from_secs(1);
        let yes = reviewer(Says(Some(true)));
        let (_, d) = climb(&request(), yes.as_ref(), t, |_| async { true })
            .await
            .unwrap();
        assert_eq!((d.approved, d.by), (true, DecidedBy::Reviewer));
        // Not bypassed, no opinion, no reviewer, or only the root above: the root decides.
        assert!(climb(&request(), yes.as_ref(), t, |_| async { false })
            .await
            .is_none());
        let unsure = reviewer(Says(None));
        assert!(climb(&request(), unsure.as_ref(), t, |_| async { true })
            .await
            .is_none());
        assert!(climb(&request(), None, t, |_| async { true })
            .await
            .is_none());
        let mut direct = request();
        direct.ancestry = vec!["root".into()];
        assert!(climb(&direct, yes.as_ref(), t, |_| async { true })
            .await
            .is_none());
    }
}
