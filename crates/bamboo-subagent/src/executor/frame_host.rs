//! Host calls over frames, on the worker's side: an executor's approval and
//! nested-spawn requests leave as child frames on the run's outgoing line
//! channel, and the parent's replies, handed to [`Replies::answer`] by
//! whatever reads the parent's frames, complete them. Shared by the
//! WebSocket server and the NATS pool worker, so both keep one id scheme.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::{ApprovalBody, HostBridge, HostError};
use crate::frames::{ChildFrame, ParentFrame};

/// Host calls waiting for the parent's reply, by request id.
#[derive(Debug, Default)]
pub struct Replies {
    approvals: Mutex<HashMap<String, oneshot::Sender<bool>>>,
    spawns: Mutex<HashMap<String, oneshot::Sender<serde_json::Value>>>,
}

impl Replies {
    /// Completes the call `frame` answers. Returns the frame back when it
    /// is not a reply (the caller handles it); a reply nobody waits for
    /// (late, or unknown) is dropped.
    pub fn answer(&self, frame: ParentFrame) -> Option<ParentFrame> {
        match frame {
            ParentFrame::ApprovalReply { id, approved } => {
                if let Some(tx) = take(&self.approvals, &id) {
                    let _ = tx.send(approved);
                }
                None
            }
            ParentFrame::SubagentReply { id, body } => {
                if let Some(tx) = take(&self.spawns, &id) {
                    let _ = tx.send(body);
                }
                None
            }
            other => Some(other),
        }
    }
}

fn take<T>(map: &Mutex<HashMap<String, T>>, id: &str) -> Option<T> {
    map.lock().ok()?.remove(id)
}

/// A [`HostBridge`] whose calls become child frames on `out`.
#[derive(Debug, Clone)]
pub struct FrameHost {
    out: mpsc::Sender<String>,
    replies: Arc<Replies>,
}

impl FrameHost {
    /// Calls go out on `out` (serialized child frames); their answers come
    /// through `replies`.
    pub fn new(out: mpsc::Sender<String>, replies: Arc<Replies>) -> Self {
        Self { out, replies }
    }

    async fn call<T>(
        &self,
        map: &Mutex<HashMap<String, oneshot::Sender<T>>>,
        frame: impl FnOnce(String) -> ChildFrame,
    ) -> Result<T, HostError> {
        let id = format!("sa-{}", uuid::Uuid::new_v4());
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = map.lock() {
            m.insert(id.clone(), tx);
        }
        if self.out.send(frame(id.clone()).to_text()).await.is_err() {
            take(map, &id);
            return Err(HostError::Disconnected);
        }
        rx.await.map_err(|_| HostError::Disconnected)
    }
}

#[async_trait]
impl HostBridge for FrameHost {
    async fn request_approval(&self, body: ApprovalBody) -> Result<bool, HostError> {
        self.call(&self.replies.approvals, |id| ChildFrame::ApprovalRequest {
            id,
            body,
        })
        .await
    }

    async fn spawn_subagent(
        &self,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, HostError> {
        self.call(&self.replies.spawns, |id| ChildFrame::SubagentRequest {
            id,
            body,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_goes_out_as_a_frame_and_its_reply_completes_it() {
        let (tx, mut rx) = mpsc::channel(4);
        let replies = Arc::new(Replies::default());
        let host = FrameHost::new(tx, replies.clone());
        let call = tokio::spawn(async move {
            host.request_approval(ApprovalBody {
                tool_name: "bash".into(),
                ..Default::default()
            })
            .await
        });
        let line = rx.recv().await.unwrap();
        let Ok(ChildFrame::ApprovalRequest { id, .. }) = ChildFrame::from_text(&line) else {
            panic!("not an approval request: {line}");
        };
        let steer = ParentFrame::Message { text: "x".into() };
        assert_eq!(replies.answer(steer.clone()), Some(steer), "not a reply");
        let unknown = ParentFrame::ApprovalReply {
            id: "sa-nobody".into(),
            approved: false,
        };
        assert_eq!(replies.answer(unknown), None, "dropped");
        let reply = ParentFrame::ApprovalReply { id, approved: true };
        assert_eq!(replies.answer(reply), None);
        assert_eq!(call.await.unwrap(), Ok(true));
    }
}
