//! Child actions C1-C8 as typed calls on [`Engine`]. Every action checks the
//! caller owns the child (C9); every run goes through the canonical spawn path.

use bamboo_domain::{ChildInfo, ChildStatus, Message, Role, Session};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::placement::PLACEMENT_KEY;
use crate::provision::DISABLED_TOOLS_KEY;
use crate::spawn::{self, enqueue, RunTicket};
use crate::types::{
    CancelOutcome, ChildDetail, ChildSummary, CreateChild, DeleteOutcome, SendMessage, SendOutcome,
    UpdateChild,
};

/// A title from the first words of an assignment.
fn title_of(assignment: &str) -> String {
    let t: String = assignment.chars().take(60).collect();
    t.lines().next().unwrap_or_default().trim().to_owned()
}

impl Engine {
    /// C1: creates a child of `input.parent_id` (one level deeper, depth-capped),
    /// and queues a run when `auto_run`.
    pub async fn create_child(&self, input: CreateChild) -> Result<ChildDetail, EngineError> {
        if input.assignment.trim().is_empty() {
            return Err(EngineError::InvalidInput(
                "assignment is empty: say what the child should do".into(),
            ));
        }
        if input.auto_run && self.inner.shutdown.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        if let Some(p) = &input.placement {
            self.inner
                .cfg
                .routing
                .check(p)
                .map_err(EngineError::InvalidInput)?;
        }
        let parent = self
            .inner
            .store
            .load(&input.parent_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(input.parent_id.clone()))?;
        let cap = self.inner.cfg.max_spawn_depth;
        if parent.spawn_depth >= cap {
            return Err(EngineError::DepthCap {
                parent: parent.id,
                depth: parent.spawn_depth,
                cap,
            });
        }
        let mut child = self.new_child_session(&parent, &input);
        // With a slot free now, the child is created already running: one
        // durable write instead of two (create, then mark running).
        let ready = input
            .auto_run
            .then(|| spawn::try_start_now(&self.inner, &child.id))
            .flatten();
        if ready.is_some() {
            spawn::set_running(&mut child);
        }
        self.inner.store.create(&child).await?;
        let id = child.id.clone();
        match ready {
            Some(ready) => drop(spawn::launch(&self.inner, &parent.id, ready, child)),
            None if input.auto_run => drop(enqueue(&self.inner, &parent.id, &id)?),
            None => {}
        }
        self.get_child(&parent.id, &id).await
    }

    fn new_child_session(&self, parent: &Session, input: &CreateChild) -> Session {
        let mut info = ChildInfo::new(input.role.clone(), input.assignment.clone());
        info.responsibility = input.responsibility.clone();
        info.run_timeout_secs = input.run_timeout_secs;
        info.idle_timeout_secs = input.idle_timeout_secs;
        let mut s = Session::new_child(parent, info);
        s.title = input
            .title
            .clone()
            .unwrap_or_else(|| title_of(&input.assignment));
        if input.model.is_some() {
            s.model = input.model.clone();
        }
        if input.workspace.is_some() {
            s.workspace = input.workspace.clone();
        }
        s.reasoning_effort = input.reasoning_effort.clone();
        if !input.disabled_tools.is_empty() {
            s.metadata.insert(
                DISABLED_TOOLS_KEY.into(),
                serde_json::json!(input.disabled_tools),
            );
        }
        if let Some(p) = &input.placement {
            s.metadata
                .insert(PLACEMENT_KEY.into(), serde_json::json!(p));
        }
        let prompt = input.system_prompt.clone().unwrap_or_else(|| {
            self.inner
                .cfg
                .system_prompt(&input.role, &input.responsibility)
        });
        s.messages.push(Message::system(prompt));
        s.messages.push(Message::user(input.assignment.clone()));
        s
    }

    /// C2: the children of `parent_id` with their status.
    pub async fn list_children(&self, parent_id: &str) -> Result<Vec<ChildSummary>, EngineError> {
        let kids = self.inner.store.list_children(parent_id).await?;
        Ok(kids.iter().map(|s| self.detail(s).summary()).collect())
    }

    /// C3: one child in detail, with a guidance line.
    pub async fn get_child(
        &self,
        parent_id: &str,
        child_id: &str,
    ) -> Result<ChildDetail, EngineError> {
        let s = self.inner.load_child(parent_id, child_id).await?;
        Ok(self.detail(&s))
    }

    fn detail(&self, s: &Session) -> ChildDetail {
        let run = self.inner.runs.get(&s.id);
        let live_last = run
            .as_ref()
            .and_then(|r| r.clock.get().map(|c| c.last_wall()));
        let pid = run
            .as_ref()
            .map(|r| r.pid.load(std::sync::atomic::Ordering::Relaxed))
            .filter(|p| *p != 0);
        ChildDetail::of(s, run.is_some(), live_last, pid)
    }

    /// C4: updates fields; rewriting the assignment replaces the last user
    /// message and (by default) drops what came after it.
    pub async fn update_child(
        &self,
        parent_id: &str,
        child_id: &str,
        update: UpdateChild,
    ) -> Result<ChildDetail, EngineError> {
        if update.is_empty() {
            return Err(EngineError::InvalidInput(
                "nothing to update: set at least one of title, responsibility, system_prompt, role, reasoning_effort, assignment".into(),
            ));
        }
        self.inner.load_child(parent_id, child_id).await?;
        if update.assignment.is_some() && self.inner.runs.get(child_id).is_some() {
            return Err(EngineError::AlreadyRunning(child_id.to_owned()));
        }
        let s = self
            .inner
            .store
            .update(child_id, Box::new(move |s| apply_update(s, update)))
            .await?;
        Ok(self.detail(&s))
    }

    /// C5: runs the child again. Refuses while running; by default resets the
    /// transcript to its last user message. Returns at once (E2).
    pub async fn run_child(
        &self,
        parent_id: &str,
        child_id: &str,
        reset_transcript: bool,
    ) -> Result<RunTicket, EngineError> {
        self.inner.load_child(parent_id, child_id).await?;
        if self.inner.runs.get(child_id).is_some() {
            return Err(EngineError::AlreadyRunning(child_id.to_owned()));
        }
        if reset_transcript {
            self.inner
                .store
                .update(child_id, Box::new(truncate_after_last_user))
                .await?;
        }
        enqueue(&self.inner, parent_id, child_id)
    }

    /// C6: sends a message (see [`SendOutcome`] for the paths).
    pub async fn send_message(
        &self,
        parent_id: &str,
        child_id: &str,
        msg: SendMessage,
    ) -> Result<SendOutcome, EngineError> {
        self.inner.load_child(parent_id, child_id).await?;
        if let Some(run) = self.inner.runs.get(child_id) {
            if msg.interrupt {
                run.cancel("interrupted by a new message from the parent");
                run.finished().await;
                self.append_user(child_id, &msg.text).await?;
                enqueue(&self.inner, parent_id, child_id)?;
                return Ok(SendOutcome::Interrupted);
            }
            return self.steer(child_id, &msg.text).await;
        }
        self.append_user(child_id, &msg.text).await?;
        let run_queued = msg.run && enqueue(&self.inner, parent_id, child_id).is_ok();
        Ok(SendOutcome::Appended { run_queued })
    }

    /// The running path of C6: durable first (under the store's lock, decided
    /// by the persisted status so a run ending right now cannot strand it),
    /// then in-band (E16).
    async fn steer(&self, child_id: &str, text: &str) -> Result<SendOutcome, EngineError> {
        let owned = text.to_owned();
        let s = self
            .inner
            .store
            .update(
                child_id,
                Box::new(move |s| {
                    match s.child.as_mut() {
                        Some(c) if c.status == ChildStatus::Running => {
                            c.pending_messages.push(owned)
                        }
                        // Queued, or the run just ended: a plain user message.
                        _ => s.messages.push(Message::user(owned)),
                    }
                    true
                }),
            )
            .await?;
        if s.status() != Some(ChildStatus::Running) {
            return Ok(SendOutcome::JoinedQueuedRun);
        }
        let in_band = self.inner.steering.steer(child_id, text).await;
        Ok(SendOutcome::Steered { in_band })
    }

    async fn append_user(&self, child_id: &str, text: &str) -> Result<(), EngineError> {
        let owned = text.to_owned();
        self.inner
            .store
            .update(
                child_id,
                Box::new(move |s| {
                    s.messages.push(Message::user(owned));
                    true
                }),
            )
            .await?;
        Ok(())
    }

    /// C7: cancels the child's run and waits for it to report (E19).
    pub async fn cancel_child(
        &self,
        parent_id: &str,
        child_id: &str,
    ) -> Result<CancelOutcome, EngineError> {
        self.inner.load_child(parent_id, child_id).await?;
        let Some(run) = self.inner.runs.get(child_id) else {
            return Ok(CancelOutcome { was_running: false });
        };
        run.cancel("cancelled by the parent");
        run.finished().await;
        Ok(CancelOutcome { was_running: true })
    }

    /// C8: deletes the child and its descendants, cancelling running ones first.
    pub async fn delete_child(
        &self,
        parent_id: &str,
        child_id: &str,
    ) -> Result<DeleteOutcome, EngineError> {
        self.inner.load_child(parent_id, child_id).await?;
        let mut out = DeleteOutcome {
            cancelled_running: false,
            deleted: 0,
        };
        // Depth-first, leaves before their parents.
        let mut stack = vec![(parent_id.to_owned(), child_id.to_owned(), false)];
        while let Some((parent, id, expanded)) = stack.pop() {
            if !expanded {
                stack.push((parent, id.clone(), true));
                for kid in self.inner.store.list_children(&id).await? {
                    stack.push((id.clone(), kid.id, false));
                }
                continue;
            }
            if self.cancel_child(&parent, &id).await?.was_running {
                out.cancelled_running = true;
            }
            if self.inner.store.delete(&id).await? {
                out.deleted += 1;
            }
            self.inner.events.remove(&id);
        }
        Ok(out)
    }
}

fn apply_update(s: &mut Session, u: UpdateChild) -> bool {
    if let Some(t) = u.title {
        s.title = t;
    }
    if let Some(e) = u.reasoning_effort {
        s.reasoning_effort = Some(e);
    }
    if let Some(p) = u.system_prompt {
        match s.messages.iter_mut().find(|m| m.role == Role::System) {
            Some(m) => m.content = p,
            None => s.messages.insert(0, Message::system(p)),
        }
    }
    if let Some(a) = u.assignment {
        match s.messages.iter().rposition(|m| m.role == Role::User) {
            Some(i) => {
                s.messages[i].content = a.clone();
                if !u.keep_later_messages {
                    s.messages.truncate(i + 1);
                }
            }
            None => s.messages.push(Message::user(a.clone())),
        }
        if let Some(c) = s.child.as_mut() {
            c.assignment = a;
        }
    }
    if let Some(c) = s.child.as_mut() {
        if let Some(r) = u.role {
            c.role = r;
        }
        if let Some(r) = u.responsibility {
            c.responsibility = r;
        }
    }
    true
}

fn truncate_after_last_user(s: &mut Session) -> bool {
    match s.messages.iter().rposition(|m| m.role == Role::User) {
        Some(i) if i + 1 < s.messages.len() => {
            s.messages.truncate(i + 1);
            true
        }
        _ => false,
    }
}
