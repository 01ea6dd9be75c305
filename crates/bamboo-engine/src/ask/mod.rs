//! Questions between sessions through their durable inboxes: a child asks
//! its parent or a sibling (`ask`), the asked session answers (`reply`) into
//! the asker's inbox. Served to workers over `subagent_request` with the
//! actions `ask`, `reply` and `inbox` (see [`serve`]).

use serde_json::{json, Value};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::inbox::{InboxKind, InboxMessage};
use crate::store::SessionStore;

impl Engine {
    /// `from` (a child) asks `to` (its parent or a sibling) `question`. The
    /// ask lands in `to`'s inbox; returns its id, which the reply names.
    pub async fn ask(&self, from: &str, to: &str, question: &str) -> Result<String, EngineError> {
        if question.trim().is_empty() {
            return Err(EngineError::InvalidInput(
                "question is empty: say what you want to know".into(),
            ));
        }
        self.check_reachable(from, to).await?;
        let msg = InboxMessage::new(InboxKind::Ask, from, question);
        self.inner.inbox(to)?.deliver(&msg)?;
        Ok(msg.id)
    }

    /// `from` answers the ask `ask_id` waiting in its inbox: the reply goes to
    /// the asker's inbox and the ask is acknowledged.
    pub async fn reply(&self, from: &str, ask_id: &str, answer: &str) -> Result<(), EngineError> {
        let inbox = self.inner.inbox(from)?;
        let ask = inbox.take(ask_id)?.filter(|m| m.kind == InboxKind::Ask);
        let Some(ask) = ask else {
            return Err(EngineError::InvalidInput(format!(
                "no open ask {ask_id} in the inbox of {from}: list it with action=inbox"
            )));
        };
        let mut reply = InboxMessage::new(InboxKind::Reply, from, answer);
        reply.reply_to = Some(ask.id.clone());
        self.inner.inbox(&ask.from)?.deliver(&reply)?;
        inbox.ack(&ask.id)?;
        Ok(())
    }

    /// The unclaimed messages of `session` (asks, replies, messages), oldest
    /// first, without claiming them.
    pub async fn inbox_messages(&self, session: &str) -> Result<Vec<InboxMessage>, EngineError> {
        Ok(self.inner.inbox(session)?.peek()?)
    }

    /// Takes a reply to `ask_id` from `session`'s inbox, if it arrived.
    pub async fn take_reply(
        &self,
        session: &str,
        ask_id: &str,
    ) -> Result<Option<InboxMessage>, EngineError> {
        let inbox = self.inner.inbox(session)?;
        let found = inbox
            .peek()?
            .into_iter()
            .find(|m| m.kind == InboxKind::Reply && m.reply_to.as_deref() == Some(ask_id));
        let Some(found) = found else { return Ok(None) };
        let taken = inbox.take(&found.id)?;
        inbox.ack(&found.id)?;
        Ok(taken)
    }

    /// A child may ask its parent or a sibling (a session with its parent).
    async fn check_reachable(&self, from: &str, to: &str) -> Result<(), EngineError> {
        let asker = self
            .inner
            .store
            .load(from)
            .await?
            .ok_or_else(|| EngineError::NotFound(from.to_owned()))?;
        let parent = asker
            .parent_id
            .ok_or_else(|| EngineError::NotAChild(from.to_owned()))?;
        if to == parent {
            return Ok(());
        }
        let target = self
            .inner
            .store
            .load(to)
            .await?
            .ok_or_else(|| EngineError::NotFound(to.to_owned()))?;
        if target.parent_id.as_deref() == Some(parent.as_str()) && to != from {
            return Ok(());
        }
        Err(EngineError::InvalidInput(format!(
            "{from} may ask only its parent or a sibling, and {to} is neither"
        )))
    }
}

/// Serves `{"action":"ask","to","question"}`, `{"action":"reply","ask_id","answer"}`
/// and `{"action":"inbox"}` for `requester`; `None` for any other action.
pub(crate) async fn serve(engine: &Engine, requester: &str, body: &Value) -> Option<Value> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    let out = match body.get("action").and_then(Value::as_str)? {
        "ask" => engine
            .ask(requester, text("to"), text("question"))
            .await
            .map(|id| json!({"ask_id": id})),
        "reply" => engine
            .reply(requester, text("ask_id"), text("answer"))
            .await
            .map(|()| json!({"replied": true})),
        "inbox" => engine
            .inbox_messages(requester)
            .await
            .map(|m| json!({"messages": m})),
        _ => return None,
    };
    Some(match out {
        Ok(result) => json!({"success": true, "result": result}),
        Err(e) => json!({"success": false, "result": e.to_string()}),
    })
}

#[cfg(test)]
mod tests;
