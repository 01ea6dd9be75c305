//! The front door's loop: creates the children, prints the root's event log
//! in order until every child it created has ended, relays approval requests
//! to the prompt, and handles interrupts and a closed stdout.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bamboo_domain::{AgentEvent, CompletionStatus};
use bamboo_engine::{CreateChild, Engine, EngineError, NewRoot, Since};
use futures::stream::{BoxStream, StreamExt};
use futures::FutureExt;
use tokio::sync::mpsc;

use super::approve::FrontPolicy;
use super::children::{Children, Phase, Who};
use super::feed::{self, LoggedEvent, PendingAsk};
use super::group::Group;
use super::halt::{Halt, When};
use super::joblog::{self, Joblog};
use super::out::{Closed, Hold, Out};
use super::parallel::Logs;
use super::render::Human;
use super::results::{self, Results};
use super::retry::{self, Tries};
use super::signals::{Interrupts, Resizes};
use super::status::StatusArea;
use super::style::Style;
use super::{
    exit, json, progress, prompt, summary, ExecutorChoice, Fallback, Outcome, OutputMode,
    RunOptions,
};

/// How long cancelled children get to end before the summary is printed.
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// Status area refresh period.
const TICK: Duration = Duration::from_millis(150);
/// Most events printed between two flushes of stdout.
const BATCH: usize = 256;
/// Children created per call to the engine: their creates share one read
/// of the root and their durable writes go out together.
const CREATE_BATCH: usize = 128;

/// Why the loop stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Interrupted,
    StdoutClosed,
}

struct Front<'a> {
    engine: &'a Engine,
    options: &'a RunOptions,
    data_dir: &'a Path,
    root: String,
    /// Why the engine refused a create, when it did: creating stopped there.
    refused: Option<EngineError>,
    children: Children,
    out: Out,
    human: Human,
    status: Option<Arc<Mutex<StatusArea>>>,
    stdout_tty: bool,
    stop: Option<Stop>,
    /// Set while an approval question waits: output and notes wait too.
    hold: Hold,
    /// Notes that came while output was held.
    held_notes: Vec<String>,
    started: Instant,
    /// `--retries`: tries per child and the retries waiting.
    tries: Tries,
    /// `--joblog`.
    joblog: Option<Joblog>,
    /// `--results`.
    results: Option<Results>,
    /// `--group`: each child's lines kept until its try ends.
    group: Option<Group>,
    /// `--halt` tripped.
    halted: Option<Halt>,
    /// Children that failed for good (their retries spent), cancels aside.
    failures: usize,
    /// Where each child's current try runs (`--joblog`, `--results`).
    workers: HashMap<usize, String>,
    /// With `--halt`, children are created idle and started here, at most
    /// `-j` at once, so a halt starts none after it (the engine's own queue
    /// would start the next one before the failure is seen here).
    unstarted: VecDeque<usize>,
    /// Children planned and not created yet: created a batch at a time
    /// while fewer than [`Front::window`] are open, so a run of 100,000
    /// holds a window of them in the engine, not all.
    plan: VecDeque<(String, String)>,
}

/// Runs the children and prints them; see the module docs.
pub async fn drive(
    engine: &Engine,
    options: &RunOptions,
    data_dir: &Path,
    policy: Arc<FrontPolicy>,
    notes_tx: mpsc::UnboundedSender<String>,
    mut notes: mpsc::UnboundedReceiver<String>,
    logs: Logs,
) -> anyhow::Result<Outcome> {
    let mut interrupts =
        Interrupts::install().context("cannot install the SIGINT/SIGTERM handlers")?;
    let (root, since) = match &options.resume {
        Some(id) => (resumed_root(engine, id).await?, Since::Now),
        None => {
            let model = options.executor.provider().map(|p| p.model.clone());
            let mut new_root = NewRoot::new(root_title(&options.assignments));
            new_root.model = model;
            new_root.workspace = options
                .workspace
                .as_ref()
                .map(|w| w.to_string_lossy().into_owned());
            new_root.project_key = options.project.clone();
            let created = match super::resume::plan(data_dir, &options.assignments, &options.names)
            {
                Ok(metadata) => {
                    new_root.metadata = metadata;
                    options.executor_record.to_metadata(&mut new_root.metadata);
                    engine.create_root_with(new_root).await
                }
                Err(e) => Err(e),
            };
            match created {
                Ok(root) => {
                    super::out::to_stderr(&root_line(&root.id, options.data_dir.as_deref()));
                    (root.id, Since::Start)
                }
                // Nothing was created; the summary still says so, and how
                // to go on.
                Err(e @ EngineError::Store(_)) => {
                    let mut front = Front::new(engine, options, data_dir, String::new());
                    front.note(&format!("cannot create the root session: {e}"));
                    front.refused = Some(e);
                    let planned = planned(options);
                    front.create_children(&planned, &mut interrupts).await;
                    return Ok(front.finish());
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let mut events = feed::events(engine, &root, since);
    let mut asks: Option<BoxStream<'static, PendingAsk>> =
        (options.approvals.fallback == Fallback::Ask).then(|| feed::approvals(engine, &root));
    let mut front = Front::new(engine, options, data_dir, root.clone());
    front.joblog = logs.joblog;
    front.results = logs.results;
    let prompts = asks.is_some().then(|| {
        let e = engine.clone();
        let answer: prompt::Answer = Arc::new(move |id: &str, ok: bool| {
            e.answer_approval(id, ok).map_err(|e| e.to_string())
        });
        prompt::spawn(
            answer,
            policy.remembered(),
            front.status.clone(),
            front.hold.clone(),
            notes_tx,
        )
    });
    if options.resume.is_some() {
        front.rerun_children(&policy).await?;
        let uncreated = super::resume::never_created(engine, &root).await?;
        if !uncreated.is_empty() {
            front.note(&format!(
                "creating {} an earlier run never created",
                super::units::count(uncreated.len(), "child", "children")
            ));
            for (assignment, _) in &uncreated {
                policy.name_assignment(assignment);
            }
            front.create_children(&uncreated, &mut interrupts).await;
        }
    }
    if options.parallel.halt.is_some() {
        // Created idle, all at once: the halt policy starts them.
        front
            .create_children(&planned(options), &mut interrupts)
            .await;
    } else {
        front.plan_children(planned(options));
    }
    let mut tick = tokio::time::interval(TICK);
    let mut resizes = Resizes::install();
    let mut deadline: Option<tokio::time::Instant> = None;
    // A child waiting to be retried is not open, but the run is not over.
    while front.children.open() > 0 || front.tries.waiting() > 0 || !front.plan.is_empty() {
        front.create_more(&mut interrupts).await;
        front.start_more().await;
        front.release_notes();
        if front.out.flush().is_err() {
            front.stop_early(Stop::StdoutClosed);
        }
        if front.stop.is_some() && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + CANCEL_WAIT);
            front.cancel_all();
            front.failures += front.tries.drop_waiting().len();
            front.close_unstarted("not started: the run was stopped");
            front.drop_plan("not created: the run was stopped");
        }
        tokio::select! {
            biased;
            sig = interrupts.next() => {
                if let Some(hard) = front.interrupted(sig) {
                    return Ok(hard);
                }
            }
            _ = sleep_until(deadline) => {
                front.note("children did not end in time; stopping the engine");
                break;
            }
            Some(note) = notes.recv() => front.note(&note),
            _ = sleep_until(front.tries.next_due()) => front.retry_due().await,
            Some(ask) = next_ask(&mut asks) => {
                if let Some(p) = &prompts {
                    let _ = p.send(front.ask(ask));
                }
            }
            logged = events.next() => match logged {
                Some(logged) => {
                    front.event(logged).await;
                    // Print what is already there before flushing: one write
                    // per batch, not per event.
                    for _ in 0..BATCH {
                        match events.next().now_or_never() {
                            Some(Some(more)) => front.event(more).await,
                            _ => break,
                        }
                    }
                }
                None => {
                    front.note("the engine's event stream ended before every child finished");
                    break;
                }
            },
            _ = resizes.next() => front.draw(),
            _ = tick.tick() => {
                if super::out::stdout_reader_gone() {
                    front.stop_early(Stop::StdoutClosed);
                }
                front.draw();
            }
        }
    }
    Ok(front.finish())
}

/// A root's title: its first assignment's first line, cut at a word
/// boundary, so `sessions` tells runs apart.
fn root_title(assignments: &[String]) -> String {
    const MAX: usize = 60;
    let Some(first) = assignments.first() else {
        return "bamboo-worker run".into();
    };
    let line = first.lines().next().unwrap_or_default().trim();
    if line.chars().count() <= MAX {
        return line.to_owned();
    }
    let cut: String = line.chars().take(MAX).collect();
    let at_word = cut.rfind(' ').filter(|&i| i > MAX / 2).unwrap_or(cut.len());
    format!("{}…", cut[..at_word].trim_end())
}

/// The line saying which root this run is, and how to resume it.
fn root_line(root: &str, data_dir: Option<&Path>) -> String {
    let short = super::ids::short(root);
    match data_dir {
        Some(dir) => format!(
            "bamboo-worker run: root {root} (resume with: bamboo-worker run --data-dir {} --resume {short})",
            dir.display()
        ),
        None => format!(
            "bamboo-worker run: root {root} (in a temporary data directory, removed at exit: give --data-dir DIR to keep it and resume)"
        ),
    }
}

/// `(assignment, name)` of each child the command line asks for.
fn planned(options: &RunOptions) -> Vec<(String, String)> {
    options
        .assignments
        .iter()
        .cloned()
        .zip(options.names.iter().cloned())
        .collect()
}

/// The root session `--resume` names, checked to be a root.
async fn resumed_root(engine: &Engine, id: &str) -> anyhow::Result<String> {
    match engine.session(id).await? {
        Some(s) if s.parent_id.is_none() => Ok(s.id),
        Some(_) => anyhow::bail!("--resume {id}: that session is a child, not a root; `bamboo-worker sessions --data-dir DIR` lists the roots"),
        None => anyhow::bail!("--resume {id}: no such session in this data directory; `bamboo-worker sessions --data-dir DIR` lists the roots"),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn next_ask(asks: &mut Option<BoxStream<'static, PendingAsk>>) -> Option<PendingAsk> {
    match asks {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

impl<'a> Front<'a> {
    fn new(engine: &'a Engine, options: &'a RunOptions, data_dir: &'a Path, root: String) -> Self {
        let stdout_tty = std::io::stdout().is_terminal();
        let human_mode = options.output == OutputMode::Human;
        let status = (human_mode && std::io::stderr().is_terminal())
            .then(|| Arc::new(Mutex::new(StatusArea::new(Style::detect(true)))));
        let hold = Hold::default();
        let mut out = Out::default();
        out.held_by(hold.clone());
        let mut human = Human::new(
            Style::detect(stdout_tty),
            options.output == OutputMode::Quiet,
            options.assignments.len(),
        );
        let par = &options.parallel;
        human.layout(par.tag, par.timestamps);
        let group = (par.group && options.output != OutputMode::Json).then(Group::default);
        Self {
            engine,
            options,
            data_dir,
            root,
            refused: None,
            children: if options.pool.is_some() {
                Children::pooled()
            } else {
                Children::default()
            },
            out,
            human,
            status,
            stdout_tty,
            stop: None,
            hold,
            held_notes: Vec::new(),
            started: Instant::now(),
            tries: Tries::default(),
            joblog: None,
            results: None,
            group,
            halted: None,
            failures: 0,
            workers: HashMap::new(),
            unstarted: VecDeque::new(),
            plan: VecDeque::new(),
        }
    }

    /// `--resume`: queues the root's unfinished children again and follows
    /// them like new ones.
    async fn rerun_children(&mut self, policy: &FrontPolicy) -> anyhow::Result<()> {
        // The named program is approved for the resumed children's own
        // assignments too (their last user messages).
        for id in super::resume::children_to_resume(self.engine, &self.root).await? {
            if let Some(s) = self.engine.session(&id).await? {
                if let Some(m) = s
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == bamboo_domain::Role::User)
                {
                    policy.name_assignment(&m.content);
                }
            }
        }
        let resumed = super::resume::rerun(self.engine, &self.root).await?;
        if resumed.is_empty() {
            self.note("nothing to rerun: every child of this root completed or was skipped");
        }
        for r in resumed {
            self.note(&r.describe());
            self.children.add(r.id, r.title, None);
        }
        Ok(())
    }

    /// Creates one child per `(assignment, name)`, [`CREATE_BATCH`] at a
    /// time (one read of the root and shared syncs per batch); an interrupt
    /// stops creating after the batch in flight, and so does the first
    /// create the engine refuses (a full disk): the rest are listed as never
    /// created, and the children already created run on to their end.
    async fn create_children(&mut self, planned: &[(String, String)], interrupts: &mut Interrupts) {
        let total = planned.len();
        let mut done = 0;
        for batch in planned.chunks(CREATE_BATCH) {
            if self.refused.is_some() {
                for (assignment, name) in batch {
                    self.children.add_uncreated(
                        name.clone(),
                        assignment.clone(),
                        "not created: an earlier create was refused".into(),
                    );
                }
                continue;
            }
            let inputs: Vec<CreateChild> = batch
                .iter()
                .map(|(assignment, name)| self.create_input(assignment, name))
                .collect();
            let auto_run = self.options.parallel.halt.is_none();
            let creating = self.engine.create_children(inputs);
            tokio::pin!(creating);
            // A batch in flight is seen through: its children may be
            // running already, and must be followed.
            let (created, interrupted) = tokio::select! {
                biased;
                sig = interrupts.next() => (creating.await, Some(sig)),
                c = &mut creating => (c, None),
            };
            for ((assignment, name), child) in batch.iter().zip(created) {
                match child {
                    Ok(child) => {
                        self.children
                            .add(child.id, name.clone(), Some(assignment.clone()));
                        if !auto_run {
                            self.unstarted.push_back(self.children.all().len() - 1);
                        }
                    }
                    Err(e) => {
                        if self.refused.is_none() {
                            // Its number in the whole run, not in this batch.
                            self.note(&format!(
                                "cannot create child {} ({name}): {e}; no further children are created, those running go on",
                                self.children.all().len() + 1
                            ));
                        }
                        self.children.add_uncreated(
                            name.clone(),
                            assignment.clone(),
                            format!("not created: {e}"),
                        );
                        self.refused.get_or_insert(e);
                    }
                }
                done += 1;
            }
            if let Some(sig) = interrupted {
                let (made, left) = (self.children.all().len(), total - done + self.plan.len());
                self.note(&format!(
                    "{sig}: stopped after creating {made} of {} children",
                    made + left
                ));
                self.stop_early(Stop::Interrupted);
                return;
            }
        }
    }

    /// How many children may be open (created and not ended) before the
    /// next batch is created: enough that no slot waits for a create.
    fn window(&self) -> usize {
        (4 * CREATE_BATCH).max(4 * self.options.max_running)
    }

    /// Plans `planned` to be created as room opens (see [`Self::create_more`]).
    fn plan_children(&mut self, planned: Vec<(String, String)>) {
        self.plan.extend(planned);
        self.children.set_planned(self.plan.len());
    }

    /// Creates planned children, a batch at a time, while fewer than
    /// [`Self::window`] are open; once a create was refused, the rest are
    /// recorded as never created.
    async fn create_more(&mut self, interrupts: &mut Interrupts) {
        while !self.plan.is_empty()
            && self.stop.is_none()
            && (self.refused.is_some() || self.children.open() < self.window())
        {
            let n = CREATE_BATCH.min(self.plan.len());
            let batch: Vec<_> = self.plan.drain(..n).collect();
            self.children.set_planned(self.plan.len());
            self.create_children(&batch, interrupts).await;
        }
    }

    /// Records every planned child as never created, for `why`.
    fn drop_plan(&mut self, why: &str) {
        for (assignment, name) in std::mem::take(&mut self.plan) {
            self.children
                .add_uncreated(name, assignment, why.to_owned());
        }
        self.children.set_planned(0);
    }

    /// What the engine is asked to create for one planned child.
    fn create_input(&self, assignment: &str, name: &str) -> CreateChild {
        let mut input = CreateChild::new(&self.root, assignment);
        input.title = Some(name.to_owned());
        input.role = "cli".into();
        input.workspace = self
            .options
            .workspace
            .as_ref()
            .map(|w| w.to_string_lossy().into_owned());
        input.auto_run = self.options.parallel.halt.is_none();
        input.run_timeout_secs = self.options.run_timeout.map(|d| d.as_secs());
        input.idle_timeout_secs = self.options.idle_timeout.map(|d| d.as_secs());
        input.max_rounds = self.options.max_rounds;
        input.read_only = self.options.read_only;
        input.max_tokens = self.options.max_tokens;
        input.max_cost_usd = self.options.max_cost_usd;
        if self.options.worktree {
            input.isolation = Some(bamboo_engine::worktree::Isolation::Worktree);
        }
        input
    }

    /// The first interrupt starts the graceful stop; a second one returns
    /// the outcome to leave with at once.
    fn interrupted(&mut self, sig: &str) -> Option<Outcome> {
        if self.stop == Some(Stop::Interrupted) {
            self.note(&format!("second {sig}: stopping now"));
            return Some(Outcome {
                exit_code: exit::INTERRUPTED,
                hard: true,
            });
        }
        self.note(&format!(
            "{sig}: cancelling {} (again to stop at once)",
            super::units::count(self.children.open(), "child", "children")
        ));
        self.stop_early(Stop::Interrupted);
        None
    }

    fn stop_early(&mut self, why: Stop) {
        if self.stop.is_none() {
            self.stop = Some(why);
        }
    }

    /// Cancels every open child, concurrently, in the background.
    fn cancel_all(&self) {
        self.cancel(self.children.open_ids());
    }

    /// Cancels the children `ids`, concurrently, in the background.
    fn cancel(&self, ids: Vec<String>) {
        let engine = self.engine.clone();
        let root = self.root.clone();
        tokio::spawn(async move {
            let cancels = ids.iter().map(|id| engine.cancel_child(&root, id));
            for r in futures::future::join_all(cancels).await {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cancelling a child failed");
                }
            }
        });
    }

    /// Who the event is about (`None`: about no child, e.g. a truncation note).
    fn who(&mut self, event: &AgentEvent) -> Option<Who> {
        let child = event.child_session_id()?;
        // An approval request names no parent.
        let parent = event.parent_session_id().unwrap_or("");
        Some(self.children.who(parent, child).unwrap_or_else(|| Who {
            top: usize::MAX,
            label: child.chars().take(8).collect(),
            session_id: child.to_owned(),
            is_top: false,
        }))
    }

    async fn event(&mut self, logged: LoggedEvent) {
        let who = self.who(&logged.event);
        if self.stdout_tty {
            self.hide();
        }
        self.human.at(logged.time);
        if let (Some(r), Some(w)) = (&mut self.results, &who) {
            if let Some(child) = self.children.get(w.top) {
                let line = |f: &mut std::io::BufWriter<std::fs::File>| {
                    json::write_event_line(f, logged.seq, logged.time, Some(w), &logged.event)
                };
                r.event(w.top, &child.name, w.is_top, &logged.event, line);
            }
        }
        let printed = self.print(&logged, who.as_ref());
        let Some(who) = who else { return };
        self.note_worker(&who, &logged.event).await;
        let ended = self.children.apply(&who, &logged.event, logged.time);
        if ended {
            self.keep_result(&who, &logged.event);
            let printed = printed.and_then(|_| {
                // Borrowed, not cloned: its result may be large.
                let child = match (self.options.output, self.children.get(who.top)) {
                    (OutputMode::Json, _) | (_, None) => return Ok(()),
                    (_, Some(child)) => child,
                };
                let out = match &mut self.group {
                    Some(g) => g.out(who.top),
                    None => &mut self.out,
                };
                self.human.finished(out, &who, child)
            });
            self.closed_if(printed);
            self.try_ended(&who);
        } else {
            self.closed_if(printed);
        }
    }

    fn print(&mut self, logged: &LoggedEvent, who: Option<&Who>) -> Result<(), Closed> {
        if self.stop == Some(Stop::StdoutClosed) {
            return Err(Closed);
        }
        match self.options.output {
            OutputMode::Json => {
                json::event(&mut self.out, logged.seq, logged.time, who, &logged.event)
            }
            _ => match who {
                Some(who) => {
                    let out = match &mut self.group {
                        Some(g) if who.top != usize::MAX => g.out(who.top),
                        _ => &mut self.out,
                    };
                    self.human.event(out, who, &logged.event)
                }
                None => self.unattributed(&logged.event),
            },
        }
    }

    /// Events about no child, e.g. a note that some of the log was lost.
    fn unattributed(&mut self, event: &AgentEvent) -> Result<(), Closed> {
        let text = match event {
            AgentEvent::EventsTruncated {
                first_seq,
                last_seq,
                reason,
                ..
            } => {
                let text =
                    format!("events {first_seq}..={last_seq} of this run were lost: {reason}");
                self.note(&text);
                text
            }
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        self.out.write(&format!("[bamboo] note: {text}\n"))
    }

    fn closed_if(&mut self, r: Result<(), Closed>) {
        if r.is_err() {
            self.stop_early(Stop::StdoutClosed);
        }
    }

    /// A completed child's answer, for its result line and the JSON summary:
    /// the one its completion carries (reading the child's session for it
    /// would copy its whole transcript, a large answer twice over).
    fn keep_result(&mut self, who: &Who, event: &AgentEvent) {
        let AgentEvent::SubAgentCompleted {
            status: CompletionStatus::Completed,
            result,
            ..
        } = event
        else {
            return;
        };
        if let Some(c) = self.children.get_mut(who.top) {
            c.result.clone_from(result);
        }
    }

    fn ask(&mut self, ask: PendingAsk) -> prompt::Ask {
        let parent = ask.parent_session_id.clone().unwrap_or_default();
        let label = self
            .children
            .who(&parent, &ask.child_session_id)
            .map(|w| w.label)
            .unwrap_or_else(|| ask.child_session_id.chars().take(8).collect());
        prompt::Ask {
            id: ask.id,
            label,
            tool_name: ask.tool_name,
            permission: ask.permission,
            resource: ask.resource,
        }
    }

    /// A line for the person at the terminal, on stderr.
    fn note(&mut self, text: &str) {
        let line = format!("bamboo-worker run: {text}");
        if self.hold.is_held() {
            self.held_notes.push(line);
            return;
        }
        self.hide();
        for held in self.held_notes.drain(..) {
            super::out::to_stderr(&held);
        }
        super::out::to_stderr(&line);
    }

    /// Prints the notes held back while a question waited, once answered.
    fn release_notes(&mut self) {
        if !self.hold.is_held() && !self.held_notes.is_empty() {
            self.hide();
            for held in self.held_notes.drain(..) {
                super::out::to_stderr(&held);
            }
        }
    }

    fn hide(&mut self) {
        if let Some(s) = &self.status {
            s.lock().unwrap_or_else(|p| p.into_inner()).hide();
        }
    }

    fn draw(&mut self) {
        if let Some(s) = &self.status {
            s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .draw(&self.children);
        }
    }

    /// Prints the summary and decides the exit code.
    fn finish(mut self) -> Outcome {
        // A question still open (its child ended) holds nothing back now.
        self.hold.release();
        self.release_notes();
        self.hide();
        // Children cut short still show what they printed.
        if let Some(g) = &mut self.group {
            let r = g.release_all(&mut self.out);
            self.closed_if(r);
        }
        let all_done = self.children.completed() == self.children.all().len();
        let halted_on_success = self.halted.is_some_and(|h| h.on_success());
        let exit_code = match self.stop {
            Some(Stop::Interrupted) => exit::INTERRUPTED,
            _ if all_done => exit::ALL_COMPLETED,
            None if halted_on_success => exit::ALL_COMPLETED,
            _ => exit::SOME_FAILED,
        };
        let interrupted = self.stop == Some(Stop::Interrupted);
        if self.stop != Some(Stop::StdoutClosed) {
            let printed = match self.options.output {
                OutputMode::Json => json::summary(
                    &mut self.out,
                    &self.root,
                    matches!(self.options.executor, super::ExecutorChoice::Cli { .. }),
                    self.children.all(),
                    exit_code,
                    interrupted,
                    self.started,
                ),
                OutputMode::Quiet => Ok(()),
                OutputMode::Human => {
                    let mut r = Ok(());
                    for line in summary::table(self.children.all(), interrupted, self.started) {
                        r = r.and_then(|_| self.out.write(&format!("{line}\n")));
                    }
                    r
                }
            };
            let _ = printed.and_then(|_| self.out.flush());
        }
        if let Some(e) = self.refused.take() {
            let line = self.refused_line(&e);
            self.note(&line);
        }
        Outcome {
            exit_code,
            hard: false,
        }
    }

    /// What to do about children a refused create kept from being created:
    /// where the data is, how much room it has, and the command that runs
    /// them once there is room.
    fn refused_line(&self, e: &EngineError) -> String {
        let dir = self.data_dir.display();
        let free = super::units::free_space(self.data_dir)
            .map_or_else(|| "unknown space".to_owned(), super::units::human_bytes);
        let n = self.children.uncreated();
        let what = match self.children.all().len() {
            1 => "the child was never created".to_owned(),
            total => format!("{n} of {total} children were never created"),
        };
        let room = match e {
            EngineError::Store(s) if s.is_out_of_space() => format!("is full ({free} free)"),
            _ => format!("has {free} free"),
        };
        match &self.options.data_dir {
            Some(_) if self.root.is_empty() => format!(
                "{what}. The data directory {dir} {room}: free space there, then run the same \
                 command again"
            ),
            Some(_) => format!(
                "{what}. The data directory {dir} {room}: free space there, then \
                 `bamboo-worker run --data-dir {dir} --resume {}` creates them and reruns the \
                 children that did not complete",
                self.root
            ),
            None => format!(
                "{what}. The temporary data directory {dir} {room} and is removed at exit: run \
                 again with --data-dir on a disk with room (or set TMPDIR)"
            ),
        }
    }
}

/// The GNU-parallel-like part of the loop: retries, halting, the job log,
/// the results directory, grouped output and progress.
impl Front<'_> {
    /// Where child `top`'s current try runs, learnt from its first event
    /// (its worker exists by then): `local:PID`, the remote URL, `pool:NAME`.
    async fn note_worker(&mut self, who: &Who, event: &AgentEvent) {
        let wanted = self.joblog.is_some() || self.results.is_some();
        if !wanted || !who.is_top || self.workers.contains_key(&who.top) {
            return;
        }
        if !matches!(event, AgentEvent::SubAgentEvent { .. }) {
            return;
        }
        let label = if let Some(r) = &self.options.remote {
            r.endpoint.clone()
        } else if let Some(p) = &self.options.pool {
            format!("pool:{}", p.pool)
        } else {
            match self.engine.get_child(&self.root, &who.session_id).await {
                Ok(d) => d
                    .worker_pid
                    .map_or_else(|| "local".to_owned(), |pid| format!("local:{pid}")),
                Err(_) => "local".to_owned(),
            }
        };
        self.workers.insert(who.top, label);
    }

    /// A top-level child's try ended: log it, keep its results, retry it or
    /// count it, print its grouped lines, show progress, maybe halt.
    fn try_ended(&mut self, who: &Who) {
        let top = who.top;
        // A copy without its result, which may be long: the result is
        // borrowed where it is needed.
        let Some(child) = self.children.get_mut(top).map(|c| {
            let result = c.result.take();
            let copy = c.clone();
            c.result = result;
            copy
        }) else {
            return;
        };
        let Phase::Done(status) = child.phase else {
            return;
        };
        let attempt = self.tries.current(top);
        let exit_code = self.exit_code(status, child.error.as_deref());
        let worker = self
            .workers
            .remove(&top)
            .unwrap_or_else(|| "local".to_owned());
        let mut problems = Vec::new();
        let command = self.command_of(child.assignment.as_deref().unwrap_or(""));
        if let Some(log) = &mut self.joblog {
            let entry = joblog::Entry {
                name: &child.name,
                seq: top + 1,
                start: child.started.unwrap_or_else(chrono::Utc::now),
                runtime: child.elapsed(chrono::Utc::now()),
                status: status.as_str(),
                exit: exit_code,
                worker: &worker,
                attempt,
                command: &command,
            };
            problems.extend(log.write(&entry).err());
        }
        if let Some(r) = &mut self.results {
            let s = results::Status {
                name: &child.name,
                child_id: &child.id,
                status: status.to_string(),
                tries: attempt,
                exit_code,
                started_at: child.started,
                ended_at: child.ended,
                duration_ms: u64::try_from(child.elapsed(chrono::Utc::now()).as_millis())
                    .unwrap_or(u64::MAX),
                error: child.error.as_deref(),
                assignment: child.assignment.as_deref(),
                worker: &worker,
            };
            let result = self.children.get(top).and_then(|c| c.result.as_deref());
            problems.extend(r.try_ended(top, &child, result, &s).err());
        }
        if let Some(g) = &mut self.group {
            let r = g.release(top, &mut self.out);
            self.closed_if(r);
        }
        for p in problems {
            self.note(&p);
        }
        let retries = self.options.parallel.retries;
        let may_retry = retry::retryable(status)
            && attempt <= retries
            && self.stop.is_none()
            && self.halted.is_none();
        if may_retry {
            let (next, pause) = self.tries.schedule(top);
            self.note(&format!(
                "[{}] try {attempt} of {} ended {status}; try {next} in {}",
                child.name,
                retries + 1,
                summary::human_duration(pause)
            ));
            return;
        }
        if retry::retryable(status) {
            self.failures += 1;
        }
        if self.options.parallel.progress && self.status.is_none() {
            let [_, _, _, done, failed] = self.children.counts();
            let ended = (done + failed).saturating_sub(self.tries.waiting());
            let text = progress::text(ended, self.children.total(), self.started.elapsed());
            self.note(&format!("progress: {text}"));
        }
        self.check_halt();
    }

    /// Runs again the children whose retry pause is over (the same session,
    /// its transcript back to the assignment).
    async fn retry_due(&mut self) {
        for top in self.tries.take_due() {
            let Some(child) = self.children.get(top) else {
                continue;
            };
            let (id, name) = (child.id.clone(), child.name.clone());
            match self.engine.retry_child(&self.root, &id, true).await {
                Ok(_) => {
                    self.tries.started_again(top);
                    self.children.reopen(top);
                }
                Err(e) => {
                    self.note(&format!("cannot run [{name}] again ({e}); it stays failed"));
                    self.failures += 1;
                    self.check_halt();
                }
            }
        }
    }

    /// `--halt`: once its count is reached, `now` cancels every open child
    /// and `soon` the queued ones; no retry starts after it.
    fn check_halt(&mut self) {
        let Some(h) = self.options.parallel.halt else {
            return;
        };
        if self.halted.is_some() || self.stop.is_some() {
            return;
        }
        let completed = self.children.completed();
        if !h.tripped(self.failures, completed) {
            return;
        }
        self.halted = Some(h);
        self.failures += self.tries.drop_waiting().len();
        let why = if h.on_success() {
            format!("{completed} completed")
        } else {
            format!("{} failed", self.failures)
        };
        let waiting = self.unstarted.len();
        self.close_unstarted(&format!("not started: --halt {h}"));
        let text = match h.when {
            When::Now => {
                let ids = self.children.open_ids();
                let text = format!(
                    "--halt {h}: {why}; cancelling the {} running children, starting none of the {waiting} waiting",
                    ids.len()
                );
                self.cancel(ids);
                text
            }
            When::Soon => format!(
                "--halt {h}: {why}; starting none of the {waiting} waiting, the {} running finish",
                self.children.open()
            ),
        };
        self.note(&text);
    }

    /// With `--halt`: starts waiting children while fewer than `-j` run.
    async fn start_more(&mut self) {
        if self.halted.is_some() || self.stop.is_some() {
            return;
        }
        while self.children.open().saturating_sub(self.unstarted.len()) < self.options.max_running {
            let Some(top) = self.unstarted.pop_front() else {
                return;
            };
            let Some(id) = self.children.get(top).map(|c| c.id.clone()) else {
                continue;
            };
            if let Err(e) = self.engine.run_child(&self.root, &id, false).await {
                let error = format!("could not be started: {e}");
                self.children
                    .close(top, CompletionStatus::Error, error.clone());
                let name = self.children.get(top).map(|c| c.name.clone());
                self.note(&format!("[{}] {error}", name.unwrap_or_default()));
            }
        }
    }

    /// Ends every child not started yet as cancelled, with `why`.
    fn close_unstarted(&mut self, why: &str) {
        let mut ids = Vec::new();
        for top in std::mem::take(&mut self.unstarted) {
            self.children
                .close(top, CompletionStatus::Cancelled, why.to_owned());
            ids.extend(self.children.get(top).map(|c| c.id.clone()));
        }
        // Their stored status says so too (an idle cancel logs no event).
        self.cancel(ids);
    }

    /// A cli program's exit code, when the try's end tells it.
    fn exit_code(&self, status: CompletionStatus, error: Option<&str>) -> Option<i32> {
        if !matches!(self.options.executor, ExecutorChoice::Cli { .. }) {
            return None;
        }
        match status {
            CompletionStatus::Completed => Some(0),
            _ => error.and_then(joblog::exit_code_in),
        }
    }

    /// The command a child ran: the cli command line, else its assignment.
    fn command_of(&self, assignment: &str) -> String {
        match &self.options.executor {
            ExecutorChoice::Cli { command, args, .. } => {
                joblog::command_line(command, args, assignment)
            }
            _ => assignment.to_owned(),
        }
    }
}
