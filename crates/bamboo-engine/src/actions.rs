//! The child actions as typed calls on [`Engine`]. Every action checks the
//! caller owns the child; every run goes through the canonical spawn path.
// Behaviours: C1-C8, C9.

use bamboo_domain::{ChildInfo, ChildStatus, Message, Role, Session};

use crate::assignment::render;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::inbox::{InboxKind, InboxMessage};
use crate::launch::PLACEMENT_KEY;
use crate::provision::DISABLED_TOOLS_KEY;
use crate::spawn::{self, enqueue, RunTicket};
use crate::store::SessionStore;
use crate::types::{
    CancelOutcome, ChildDetail, ChildSummary, CreateChild, DeleteOutcome, Live, Retry, SendMessage,
    SendOutcome, UpdateChild, UpdateOutcome,
};

/// Metadata flag: the title was given, not derived from the prompt, so the
/// rendered assignment shows it.
// Behaviours: C1.
const TITLE_GIVEN_KEY: &str = "title_given";

/// The error a cancelled child keeps, idle or running.
// Behaviours: C7.
pub(crate) const CANCELLED_BY_PARENT: &str = "Cancelled by parent";

/// A title from the first words of an assignment.
fn title_of(assignment: &str) -> String {
    let t: String = assignment.chars().take(60).collect();
    t.lines().next().unwrap_or_default().trim().to_owned()
}

impl Engine {
    /// Creates a child of `input.parent_id` (one level deeper, depth-capped),
    /// and queues a run when `auto_run`.
    // Behaviours: C1.
    pub async fn create_child(&self, input: CreateChild) -> Result<ChildDetail, EngineError> {
        self.check_create(&input)?;
        let parent = self.parent_for_create(&input.parent_id).await?;
        let mut child = self.new_child_session(&parent, &input);
        if input.isolation == Some(crate::worktree::Isolation::Worktree) {
            self.isolate(&mut child).await?;
        }
        // With a slot free now, the child is created already running: one
        // durable write instead of two (create, then mark running).
        let ready = input
            .auto_run
            .then(|| spawn::try_start_now(&self.inner, &child.id))
            .flatten();
        if ready.is_some() {
            spawn::set_running(&mut child);
        }
        let id = child.id.clone();
        match ready {
            // Stored while its run starts (see `creation`); answered once durable.
            Some(ready) => spawn::launch(&self.inner, &parent.id, ready, child)
                .await
                .map_err(|_| EngineError::ShuttingDown)??,
            None => {
                self.inner.store.create(&child).await?;
                if input.auto_run {
                    drop(enqueue(&self.inner, &parent.id, &id)?);
                }
            }
        }
        self.get_child(&parent.id, &id).await
    }

    /// C1's checks of the input alone (before any session is read).
    pub(crate) fn check_create(&self, input: &CreateChild) -> Result<(), EngineError> {
        if input.assignment.trim().is_empty() {
            return Err(EngineError::InvalidInput(
                "assignment is empty: say what the child should do".into(),
            ));
        }
        if input.title.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(EngineError::InvalidInput(
                "title is blank: give the child a title or leave it out".into(),
            ));
        }
        if input.max_tokens == Some(0) {
            return Err(EngineError::InvalidInput(
                "max_tokens is 0: give a token budget of at least 1, or leave it out for none"
                    .into(),
            ));
        }
        if input
            .max_cost_usd
            .is_some_and(|c| !c.is_finite() || c <= 0.0)
        {
            return Err(EngineError::InvalidInput(
                "max_cost_usd must be a positive number of US dollars (e.g. 0.50), or left out for none"
                    .into(),
            ));
        }
        if input.max_rounds == Some(0) {
            return Err(EngineError::InvalidInput(
                "max_rounds is 0: give at least 1 model round, or leave it out for the default"
                    .into(),
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
                .map_err(|e| EngineError::InvalidInput(e.to_string()))?;
        }
        Ok(())
    }

    /// The parent a new child goes under, checked to have room below it
    /// (the depth cap).
    pub(crate) async fn parent_for_create(&self, parent_id: &str) -> Result<Session, EngineError> {
        let parent = self
            .inner
            .store
            .load(parent_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(parent_id.to_owned()))?;
        let cap = self.inner.cfg.max_spawn_depth;
        if parent.spawn_depth >= cap {
            return Err(EngineError::DepthCap {
                parent: parent.id,
                depth: parent.spawn_depth,
                cap,
            });
        }
        Ok(parent)
    }

    /// Gives a new child a git worktree of its own (see [`crate::worktree`]);
    /// its workspace becomes the same place inside the worktree.
    pub(crate) async fn isolate(&self, child: &mut Session) -> Result<(), EngineError> {
        let Some(ws) = child.workspace.clone() else {
            return Err(EngineError::InvalidInput(
                "isolation worktree needs a workspace in a git repository: give the child (or its parent) a workspace".into(),
            ));
        };
        let dir = self.inner.cfg.data_dir.join("worktrees");
        let (name, id) = (child.title.clone(), child.id.clone());
        let wt = tokio::task::spawn_blocking(move || {
            crate::worktree::create(std::path::Path::new(&ws), &name, &id, &dir)
        })
        .await
        .map_err(|e| EngineError::InvalidInput(format!("creating the worktree failed: {e}")))?
        .map_err(EngineError::InvalidInput)?;
        child.workspace = Some(wt.workspace.clone());
        crate::worktree::store(child, &wt);
        Ok(())
    }

    pub(crate) fn new_child_session(&self, parent: &Session, input: &CreateChild) -> Session {
        let mut info = ChildInfo::new(input.role.clone(), input.assignment.clone());
        info.responsibility = input.responsibility.clone();
        info.run_timeout_secs = input.run_timeout_secs;
        info.idle_timeout_secs = input.idle_timeout_secs;
        info.max_rounds = input.max_rounds;
        info.read_only = input.read_only;
        info.max_tokens = input.max_tokens;
        info.max_cost_usd = input.max_cost_usd;
        // Budget (at 70/35), task list and project come from the parent (S4, S5).
        let mut s = Session::new_child(parent, info);
        // Bypass mode is inherited (protocol.md 11).
        if let Some(b) = parent.metadata.get(crate::escalation::BYPASS_KEY) {
            s.metadata
                .insert(crate::escalation::BYPASS_KEY.into(), b.clone());
        }
        s.title = input
            .title
            .clone()
            .unwrap_or_else(|| title_of(&input.assignment));
        if input.title.is_some() {
            s.metadata.insert(TITLE_GIVEN_KEY.into(), true.into());
        }
        if input.model.is_some() {
            s.model = input.model.clone();
        }
        if input.workspace.is_some() {
            s.workspace = input.workspace.clone();
        }
        if s.project_key.is_none() {
            s.project_key = s.workspace.as_deref().map(crate::project::key_of);
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
        // C1: the assignment as a labelled block (an explicit title only: a
        // title derived from the prompt would just repeat it).
        s.messages.push(Message::user(render(
            input.title.as_deref().unwrap_or_default(),
            &input.responsibility,
            &input.role,
            &input.assignment,
        )));
        s
    }

    /// The children of `parent_id` with their status.
    // Behaviours: C2.
    pub async fn list_children(&self, parent_id: &str) -> Result<Vec<ChildSummary>, EngineError> {
        let kids = self.inner.store.list_children(parent_id).await?;
        Ok(kids.iter().map(|s| self.detail(s).summary()).collect())
    }

    /// One child in detail, with a guidance line.
    // Behaviours: C3.
    pub async fn get_child(
        &self,
        parent_id: &str,
        child_id: &str,
    ) -> Result<ChildDetail, EngineError> {
        let s = self.inner.load_child(parent_id, child_id).await?;
        Ok(self.detail(&s))
    }

    fn detail(&self, s: &Session) -> ChildDetail {
        let run = self.inner.reservations.get(&s.id);
        let live = match &run {
            None => Live::default(),
            Some(r) => Live {
                running: true,
                last_event: r.clock.get().map(|c| c.last_wall()),
                worker_pid: Some(r.pid.load(std::sync::atomic::Ordering::Relaxed))
                    .filter(|p| *p != 0),
                last_tool: r.last_tool(),
                task_list: r.task_list(),
            },
        };
        // The inbox is a directory listing: a failure only hides the count.
        let inbox = self.inner.inbox(&s.id).and_then(|i| Ok(i.count()?));
        ChildDetail::of(s, live, inbox.unwrap_or(0))
    }

    /// Updates fields. Changing the responsibility, role or assignment
    /// re-renders the assignment into the last user message, sets the child
    /// `pending`, clears its error and (unless `keep_later_messages`) drops
    /// what came after it. Blank fields are refused.
    // Behaviours: C4.
    pub async fn update_child(
        &self,
        parent_id: &str,
        child_id: &str,
        update: UpdateChild,
    ) -> Result<UpdateOutcome, EngineError> {
        if update.is_empty() {
            return Err(EngineError::InvalidInput(
                "update requires at least one field: title/responsibility/prompt/subagent_type/reasoning_effort".into(),
            ));
        }
        if let Some(field) = update.blank_field() {
            return Err(EngineError::InvalidInput(format!(
                "{field} is blank: give it a value or leave it out"
            )));
        }
        self.inner.load_child(parent_id, child_id).await?;
        if update.rewrites_assignment() && self.inner.reservations.get(child_id).is_some() {
            return Err(EngineError::AlreadyRunning(child_id.to_owned()));
        }
        let removed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = removed.clone();
        let s = self
            .inner
            .store
            .update(
                child_id,
                Box::new(move |s| {
                    let n = apply_update(s, update);
                    counter.store(n, std::sync::atomic::Ordering::Relaxed);
                    true
                }),
            )
            .await?;
        Ok(UpdateOutcome {
            child: self.detail(&s),
            messages_removed: removed.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Runs the child again and returns at once. Refuses while
    /// running; by default resets the transcript to its last user message.
    // Behaviours: C5, E2.
    pub async fn run_child(
        &self,
        parent_id: &str,
        child_id: &str,
        reset_transcript: bool,
    ) -> Result<RunTicket, EngineError> {
        Ok(self
            .retry_child(parent_id, child_id, reset_transcript)
            .await?
            .ticket)
    }

    /// Runs the child again, with the count of dropped messages: marks the child `pending`,
    /// optionally drops what came after its last user message (never for a
    /// suspended child, whose transcript is the state it resumes from), and
    /// queues the run. [`EngineError::AlreadyRunning`] while a run is live.
    // Behaviours: C5.
    pub async fn retry_child(
        &self,
        parent_id: &str,
        child_id: &str,
        reset_transcript: bool,
    ) -> Result<Retry, EngineError> {
        self.inner.load_child(parent_id, child_id).await?;
        if self.inner.reservations.get(child_id).is_some() {
            return Err(EngineError::AlreadyRunning(child_id.to_owned()));
        }
        let removed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = removed.clone();
        self.inner
            .store
            .update(
                child_id,
                Box::new(move |s| {
                    let suspended = s.status() == Some(ChildStatus::Suspended);
                    if reset_transcript && !suspended {
                        let n = truncate_after_last_user(s);
                        counter.store(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    if let Some(c) = s.child.as_mut() {
                        if c.status != ChildStatus::Running && !suspended {
                            c.status = ChildStatus::Pending;
                            c.last_error = None;
                        }
                    }
                    true
                }),
            )
            .await?;
        let ticket = enqueue(&self.inner, parent_id, child_id)?;
        Ok(Retry {
            messages_removed: removed.load(std::sync::atomic::Ordering::Relaxed),
            ticket,
        })
    }

    /// Sends a message (see [`SendOutcome`] for the paths). Empty text
    /// is refused.
    // Behaviours: C6.
    pub async fn send_message(
        &self,
        parent_id: &str,
        child_id: &str,
        msg: SendMessage,
    ) -> Result<SendOutcome, EngineError> {
        if msg.text.trim().is_empty() {
            return Err(EngineError::InvalidInput(
                "message is empty: say what the child should hear".into(),
            ));
        }
        self.inner.load_child(parent_id, child_id).await?;
        let mut interrupted = false;
        if let Some(run) = self.inner.reservations.get(child_id) {
            if !msg.interrupt {
                return self.steer(parent_id, child_id, &msg.text).await;
            }
            run.cancel("interrupted by a new message from the parent");
            run.finished().await;
            interrupted = true;
        }
        self.append_user(child_id, &msg.text).await?;
        let run_queued = msg.run && enqueue(&self.inner, parent_id, child_id).is_ok();
        if interrupted {
            return Ok(SendOutcome::Interrupted { run_queued });
        }
        Ok(SendOutcome::Appended { run_queued })
    }

    /// The running path of `send_message`: durable first, in the child's inbox; then,
    /// under the store's lock, decided by the persisted status so a run ending
    /// right now cannot strand it (the run's end takes what is in the inbox,
    /// or this call turns it into a user message, never both); then in-band.
    // Behaviours: C6, E16.
    async fn steer(
        &self,
        parent_id: &str,
        child_id: &str,
        text: &str,
    ) -> Result<SendOutcome, EngineError> {
        let inbox = self.inner.inbox(child_id)?;
        let msg = InboxMessage::new(InboxKind::Message, parent_id, text);
        inbox.deliver(&msg)?;
        let (taker, id) = (inbox.clone(), msg.id.clone());
        let msg_id = msg.id.clone();
        let s = self
            .inner
            .store
            .update(
                child_id,
                Box::new(move |s| {
                    if s.status() == Some(ChildStatus::Running) {
                        // Stays in the inbox until the run's end takes it.
                        return false;
                    }
                    // Queued, or the run just ended: a plain user message.
                    match taker.take(&id) {
                        Ok(Some(m)) => {
                            s.messages.push(Message::user(m.body));
                            true
                        }
                        _ => false,
                    }
                }),
            )
            .await?;
        if s.status() != Some(ChildStatus::Running) {
            inbox.ack(&msg.id)?;
            return Ok(SendOutcome::JoinedQueuedRun);
        }
        let in_band = self.inner.steering.steer(child_id, &msg_id, text).await;
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
                    // An idle child with new input is pending again (C6);
                    // a suspended one resumes from here.
                    if let Some(c) = s.child.as_mut() {
                        if c.status != ChildStatus::Running {
                            c.status = ChildStatus::Pending;
                            c.last_error = None;
                        }
                    }
                    true
                }),
            )
            .await?;
        Ok(())
    }

    /// Cancels the child's run and waits for it to report. An idle
    /// child is marked `cancelled` too, with "Cancelled by parent".
    // Behaviours: C7, E19.
    pub async fn cancel_child(
        &self,
        parent_id: &str,
        child_id: &str,
    ) -> Result<CancelOutcome, EngineError> {
        self.inner.load_child(parent_id, child_id).await?;
        if self.cancel_run(child_id).await {
            return Ok(CancelOutcome { was_running: true });
        }
        self.inner
            .store
            .update(
                child_id,
                Box::new(|s| {
                    let Some(c) = s.child.as_mut() else {
                        return false;
                    };
                    c.status = ChildStatus::Cancelled;
                    c.last_error = Some(CANCELLED_BY_PARENT.into());
                    true
                }),
            )
            .await?;
        Ok(CancelOutcome { was_running: false })
    }

    /// Cancels a live run of `child_id` and waits for it; false when none.
    async fn cancel_run(&self, child_id: &str) -> bool {
        let Some(run) = self.inner.reservations.get(child_id) else {
            return false;
        };
        run.cancel(CANCELLED_BY_PARENT);
        run.finished().await;
        true
    }

    /// Deletes the child and its descendants, cancelling running ones first.
    // Behaviours: C8.
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
        let mut stack = vec![(child_id.to_owned(), false)];
        while let Some((id, expanded)) = stack.pop() {
            if !expanded {
                stack.push((id.clone(), true));
                for kid in self.inner.store.list_children(&id).await? {
                    stack.push((kid.id, false));
                }
                continue;
            }
            if self.cancel_run(&id).await {
                out.cancelled_running = true;
            }
            if self.inner.store.delete(&id).await? {
                out.deleted += 1;
            }
            // Its inbox goes with it (absent is fine).
            let _ = std::fs::remove_dir_all(self.inner.cfg.data_dir.join("inbox").join(&id));
            self.inner.events.remove(&id);
        }
        Ok(out)
    }
}

/// Applies an update; returns how many messages were dropped.
// Behaviours: C4.
fn apply_update(s: &mut Session, u: UpdateChild) -> usize {
    let rewrites = u.rewrites_assignment();
    if let Some(t) = u.title {
        s.title = t;
        s.metadata.insert(TITLE_GIVEN_KEY.into(), true.into());
    }
    let title_given = s.metadata.get(TITLE_GIVEN_KEY) == Some(&true.into());
    if let Some(e) = u.reasoning_effort {
        s.reasoning_effort = Some(e);
    }
    if let Some(p) = u.system_prompt {
        match s.messages.iter_mut().find(|m| m.role == Role::System) {
            Some(m) => m.content = p,
            None => s.messages.insert(0, Message::system(p)),
        }
    }
    let Some(c) = s.child.as_mut() else {
        return 0;
    };
    if let Some(r) = u.role {
        c.role = r;
    }
    if let Some(r) = u.responsibility {
        c.responsibility = r;
    }
    if let Some(a) = u.assignment {
        c.assignment = a;
    }
    if !rewrites {
        return 0;
    }
    c.status = ChildStatus::Pending;
    c.last_error = None;
    let title = if title_given { s.title.as_str() } else { "" };
    let text = render(title, &c.responsibility, &c.role, &c.assignment);
    match s.messages.iter().rposition(|m| m.role == Role::User) {
        Some(i) => {
            s.messages[i].content = text;
            if u.keep_later_messages {
                return 0;
            }
            let removed = s.messages.len() - (i + 1);
            s.messages.truncate(i + 1);
            removed
        }
        None => {
            s.messages.push(Message::user(text));
            0
        }
    }
}

/// Drops the messages after the last user message; returns how many.
fn truncate_after_last_user(s: &mut Session) -> usize {
    match s.messages.iter().rposition(|m| m.role == Role::User) {
        Some(i) if i + 1 < s.messages.len() => {
            let removed = s.messages.len() - (i + 1);
            s.messages.truncate(i + 1);
            removed
        }
        _ => 0,
    }
}

impl Engine {
    /// Puts `session_id` in (or out of) bypass mode ([`crate::BYPASS_KEY`]). Its
    /// children created afterwards inherit it; its workers get
    /// `capabilities.bypass`.
    pub async fn set_bypass(&self, session_id: &str, on: bool) -> Result<(), EngineError> {
        self.inner
            .store
            .update(
                session_id,
                Box::new(move |s| {
                    s.metadata
                        .insert(crate::escalation::BYPASS_KEY.into(), on.into());
                    true
                }),
            )
            .await?;
        Ok(())
    }
}
