//! The echo executor (F10, protocol.md 5) with scripted directives so tests can
//! exercise every path without a model.
//!
//! Each word of the assignment becomes a `token` event `"<word> "`, then a
//! `complete` event; the result is `"echo: <words joined by one space>"`.
//! Directive words (not echoed themselves):
//! - `__sleep_ms:<n>` (first word only): wait n ms first, cancellably.
//! - `__approve:<tool>`: ask the host for approval of `<tool>`; echoes
//!   `approved:<tool>` or `denied:<tool>`.
//! - `__steer`: wait for one steering message and echo it.
//! - `__spawn:<assignment>`: ask the host to run a grandchild with that
//!   assignment; echoes `spawned:<result>` or `spawn-failed:<reason>`.
//! - `__fail:<text>`: end with status error and `<text>`.
//! - `__suspend`: end with status suspended (the run pauses itself).
//! - `__repeat:<n>:<word>`: as if `<word>` stood there `n` times (n tokens,
//!   n words of the result), so a short assignment streams a long line.
//!
//! Given a transcript (`messages`), the outcome carries the transcript after
//! the run: the messages, the assignment's user message (unless they end with
//! it), each steering message it took as a user message, and the result as an
//! assistant message.

use async_trait::async_trait;
use bamboo_domain::{AgentEvent, Message, Role, TerminalStatus};
use std::borrow::Cow;
use std::time::Duration;

use super::{ApprovalBody, Executor, HostError, RunContext, RunOutcome, RunRequest};

/// The echo executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoExecutor;

/// What a word does: echo a text (a plain word echoes itself, borrowed),
/// nothing, or end the run.
enum Step<'w> {
    Continue(Option<Cow<'w, str>>),
    End(RunOutcome),
}

#[async_trait]
impl Executor for EchoExecutor {
    async fn run(&self, request: RunRequest, mut ctx: RunContext) -> RunOutcome {
        let mut words = request.assignment.split_whitespace().peekable();
        if let Some(ms) = words.peek().and_then(|w| w.strip_prefix("__sleep_ms:")) {
            let ms: u64 = ms.parse().unwrap_or(0);
            words.next();
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return RunOutcome::cancelled(),
                _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            }
        }
        // The result, built as the words go: "echo: " and the words joined
        // by one space.
        let mut result = String::from("echo:");
        let mut steered: Vec<String> = Vec::new();
        let mut suspend = false;
        for word in words {
            if ctx.cancel.is_cancelled() {
                return RunOutcome::cancelled();
            }
            if word == "__suspend" {
                suspend = true;
                break;
            }
            if let Some((n, text)) = repeat(word) {
                let token = format!("{text} ");
                for _ in 0..n {
                    if ctx.cancel.is_cancelled()
                        || ctx
                            .events
                            .emit(AgentEvent::Token {
                                content: token.clone(),
                            })
                            .await
                            .is_err()
                    {
                        return RunOutcome::cancelled();
                    }
                    result.push(' ');
                    result.push_str(text);
                }
                continue;
            }
            let text = match directive(word, &mut ctx).await {
                Step::Continue(Some(text)) => text,
                Step::Continue(None) => continue,
                Step::End(outcome) => return outcome,
            };
            if word == "__steer" {
                steered.push(text.clone().into_owned());
            }
            let mut token = String::with_capacity(text.len() + 1);
            token.push_str(&text);
            token.push(' ');
            if ctx
                .events
                .emit(AgentEvent::Token { content: token })
                .await
                .is_err()
            {
                return RunOutcome::cancelled();
            }
            result.push(' ');
            result.push_str(&text);
        }
        if ctx.cancel.is_cancelled()
            || ctx
                .events
                .emit(AgentEvent::Complete { usage: None })
                .await
                .is_err()
        {
            return RunOutcome::cancelled();
        }
        if result.len() == "echo:".len() {
            result.push(' ');
        }
        let mut out = RunOutcome::completed(result);
        if suspend {
            out.status = TerminalStatus::Suspended;
        }
        out.transcript = transcript(&request, &steered, out.result.as_deref());
        out
    }
}

/// The transcript after a run, when the request carried one.
fn transcript(
    request: &RunRequest,
    steered: &[String],
    result: Option<&str>,
) -> Option<Vec<Message>> {
    if request.messages.is_empty() {
        return None;
    }
    let mut t = request.messages.clone();
    let ends_with_assignment = t
        .last()
        .is_some_and(|m| m.role == Role::User && m.content == request.assignment);
    if !ends_with_assignment {
        t.push(Message::user(request.assignment.clone()));
    }
    t.extend(steered.iter().map(|s| Message::user(s.clone())));
    t.extend(result.map(Message::assistant));
    Some(t)
}

/// `__repeat:<n>:<word>` as `(n, word)`; a count that does not parse, or
/// an empty word, makes it a plain word.
fn repeat(word: &str) -> Option<(u64, &str)> {
    let (n, text) = word.strip_prefix("__repeat:")?.split_once(':')?;
    let n = n.parse().ok()?;
    (!text.is_empty()).then_some((n, text))
}

/// Interprets one word: plain words echo as themselves.
async fn directive<'w>(word: &'w str, ctx: &mut RunContext) -> Step<'w> {
    if let Some(text) = word.strip_prefix("__fail:") {
        return Step::End(RunOutcome::error(text));
    }
    if let Some(tool) = word.strip_prefix("__approve:") {
        let body = ApprovalBody {
            tool_name: tool.to_owned(),
            permission_type: "execute".into(),
            resource: tool.to_owned(),
            question: format!("May the echo agent use {tool}?"),
        };
        return match ask(ctx, |h| async move { h.request_approval(body).await }).await {
            Ok(true) => Step::Continue(Some(Cow::Owned(format!("approved:{tool}")))),
            Ok(false) => Step::Continue(Some(Cow::Owned(format!("denied:{tool}")))),
            Err(HostError::Cancelled) => Step::End(RunOutcome::cancelled()),
            Err(e) => Step::Continue(Some(Cow::Owned(format!("denied:{tool} ({e})")))),
        };
    }
    if word == "__steer" {
        return tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => Step::End(RunOutcome::cancelled()),
            msg = ctx.steering.recv() => match msg {
                Some(text) => Step::Continue(Some(Cow::Owned(text))),
                None => Step::End(RunOutcome::cancelled()),
            },
        };
    }
    if let Some(assignment) = word.strip_prefix("__spawn:") {
        let body = serde_json::json!({ "assignment": assignment });
        return match ask(ctx, |h| async move { h.spawn_subagent(body).await }).await {
            Ok(reply) => {
                let ok = reply
                    .get("success")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let result = match reply.get("result") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let label = if ok { "spawned" } else { "spawn-failed" };
                Step::Continue(Some(Cow::Owned(format!("{label}:{result}"))))
            }
            Err(HostError::Cancelled) => Step::End(RunOutcome::cancelled()),
            Err(e) => Step::Continue(Some(Cow::Owned(format!("spawn-failed:{e}")))),
        };
    }
    Step::Continue(Some(Cow::Borrowed(word)))
}

/// Calls the host, racing cancellation; no host means the call is unsupported.
async fn ask<T, F, Fut>(ctx: &RunContext, call: F) -> Result<T, HostError>
where
    F: FnOnce(std::sync::Arc<dyn super::HostBridge>) -> Fut,
    Fut: std::future::Future<Output = Result<T, HostError>>,
{
    let Some(host) = ctx.events.host().cloned() else {
        return Err(HostError::Unsupported("host bridge"));
    };
    tokio::select! {
        biased;
        _ = ctx.cancel.cancelled() => Err(HostError::Cancelled),
        r = call(host) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{EventSink, HostBridge, SteeringInbox};
    use bamboo_domain::TerminalStatus;
    use std::sync::Arc;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    struct FixedHost(bool);

    #[async_trait]
    impl HostBridge for FixedHost {
        async fn request_approval(&self, _: ApprovalBody) -> Result<bool, HostError> {
            Ok(self.0)
        }
        async fn spawn_subagent(
            &self,
            body: serde_json::Value,
        ) -> Result<serde_json::Value, HostError> {
            Ok(serde_json::json!({"success": true, "result": body["assignment"]}))
        }
    }

    fn ctx(
        host: Option<Arc<dyn HostBridge>>,
    ) -> (
        RunContext,
        mpsc::Receiver<AgentEvent>,
        mpsc::UnboundedSender<String>,
    ) {
        let (tx, rx) = mpsc::channel(1024);
        let (steer_tx, steering) = SteeringInbox::channel();
        let ctx = RunContext {
            events: EventSink::events(tx, host),
            steering,
            cancel: CancellationToken::new(),
        };
        (ctx, rx, steer_tx)
    }

    fn drain(rx: &mut mpsc::Receiver<AgentEvent>) -> Vec<AgentEvent> {
        let mut v = Vec::new();
        while let Ok(e) = rx.try_recv() {
            v.push(e);
        }
        v
    }

    #[tokio::test]
    async fn echoes_each_word_then_completes() {
        let (c, mut rx, _s) = ctx(None);
        let out = EchoExecutor
            .run(RunRequest::new("hello  big world"), c)
            .await;
        assert_eq!(out, RunOutcome::completed("echo: hello big world"));
        let evs = drain(&mut rx);
        assert_eq!(evs.len(), 4);
        assert_eq!(evs[0], AgentEvent::token("hello "));
        assert_eq!(evs[3], AgentEvent::Complete { usage: None });
    }

    #[tokio::test]
    async fn repeat_directive_streams_the_word_n_times() {
        let (c, mut rx, _s) = ctx(None);
        let out = EchoExecutor
            .run(RunRequest::new("a __repeat:3:w b __repeat:x:w"), c)
            .await;
        assert_eq!(out, RunOutcome::completed("echo: a w w w b __repeat:x:w"));
        let evs = drain(&mut rx);
        assert_eq!(evs.len(), 7);
        assert_eq!(evs[1], AgentEvent::token("w "));
        assert_eq!(evs[3], AgentEvent::token("w "));
        assert_eq!(evs[4], AgentEvent::token("b "));
    }

    #[tokio::test]
    async fn sleep_directive_is_cancellable_and_not_echoed() {
        let (c, mut rx, _s) = ctx(None);
        let cancel = c.cancel.clone();
        let t = tokio::spawn(EchoExecutor.run(RunRequest::new("__sleep_ms:60000 hi"), c));
        cancel.cancel();
        let out = tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.status, TerminalStatus::Cancelled);
        assert!(drain(&mut rx).is_empty());
        let (c, _rx, _s) = ctx(None);
        let out = EchoExecutor
            .run(RunRequest::new("__sleep_ms:1 hi"), c)
            .await;
        assert_eq!(out.result.as_deref(), Some("echo: hi"));
    }

    #[tokio::test]
    async fn fail_directive_ends_with_error_text() {
        let (c, _rx, _s) = ctx(None);
        let out = EchoExecutor
            .run(RunRequest::new("a __fail:kaput b"), c)
            .await;
        assert_eq!(out, RunOutcome::error("kaput"));
    }

    #[tokio::test]
    async fn approve_directive_reports_the_hosts_decision() {
        let (c, _rx, _s) = ctx(Some(Arc::new(FixedHost(true))));
        let out = EchoExecutor.run(RunRequest::new("__approve:bash"), c).await;
        assert_eq!(out.result.as_deref(), Some("echo: approved:bash"));
        let (c, _rx, _s) = ctx(Some(Arc::new(FixedHost(false))));
        let out = EchoExecutor.run(RunRequest::new("__approve:bash"), c).await;
        assert_eq!(out.result.as_deref(), Some("echo: denied:bash"));
        let (c, _rx, _s) = ctx(None);
        let out = EchoExecutor.run(RunRequest::new("__approve:bash"), c).await;
        assert!(
            out.result.unwrap().starts_with("echo: denied:bash"),
            "no host fails closed"
        );
    }

    #[tokio::test]
    async fn steer_directive_waits_for_a_message() {
        let (c, _rx, steer) = ctx(None);
        steer.send("turn left".into()).unwrap();
        let out = EchoExecutor.run(RunRequest::new("go __steer"), c).await;
        assert_eq!(out.result.as_deref(), Some("echo: go turn left"));
    }

    #[tokio::test]
    async fn spawn_directive_relays_the_reply() {
        let (c, _rx, _s) = ctx(Some(Arc::new(FixedHost(true))));
        let out = EchoExecutor.run(RunRequest::new("__spawn:sub"), c).await;
        assert_eq!(out.result.as_deref(), Some("echo: spawned:sub"));
    }
}
