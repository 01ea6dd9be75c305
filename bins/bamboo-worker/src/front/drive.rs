//! The front door's loop: creates the children, prints the root's event log
//! in order until every child it created has ended, relays approval requests
//! to the prompt, and handles interrupts and a closed stdout.

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
use super::children::{Children, Who};
use super::feed::{self, LoggedEvent, PendingAsk};
use super::out::{Closed, Out};
use super::render::Human;
use super::signals::Interrupts;
use super::status::StatusArea;
use super::style::Style;
use super::{exit, json, prompt, summary, Fallback, Outcome, OutputMode, RunOptions};

/// How long cancelled children get to end before the summary is printed.
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// Status area refresh period.
const TICK: Duration = Duration::from_millis(150);
/// Most events printed between two flushes of stdout.
const BATCH: usize = 256;

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
    started: Instant,
}

/// Runs the children and prints them; see the module docs.
pub async fn drive(
    engine: &Engine,
    options: &RunOptions,
    data_dir: &Path,
    policy: Arc<FrontPolicy>,
    notes_tx: mpsc::UnboundedSender<String>,
    mut notes: mpsc::UnboundedReceiver<String>,
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
            new_root.metadata = super::resume::plan(&options.assignments, &options.names);
            options.executor_record.to_metadata(&mut new_root.metadata);
            match engine.create_root_with(new_root).await {
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
    let prompts = asks.is_some().then(|| {
        let e = engine.clone();
        let answer: prompt::Answer = Arc::new(move |id: &str, ok: bool| {
            e.answer_approval(id, ok).map_err(|e| e.to_string())
        });
        prompt::spawn(answer, policy.remembered(), front.status.clone(), notes_tx)
    });
    if options.resume.is_some() {
        front.rerun_children(&policy).await?;
        let uncreated = super::resume::never_created(engine, &root).await?;
        if !uncreated.is_empty() {
            front.note(&format!(
                "creating the {} children an earlier run never created",
                uncreated.len()
            ));
            for (assignment, _) in &uncreated {
                policy.name_assignment(assignment);
            }
            front.create_children(&uncreated, &mut interrupts).await;
        }
    }
    front
        .create_children(&planned(options), &mut interrupts)
        .await;
    let mut tick = tokio::time::interval(TICK);
    let mut deadline: Option<tokio::time::Instant> = None;
    while front.children.open() > 0 {
        if front.out.flush().is_err() {
            front.stop_early(Stop::StdoutClosed);
        }
        if front.stop.is_some() && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + CANCEL_WAIT);
            front.cancel_all();
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
        Self {
            engine,
            options,
            data_dir,
            root,
            refused: None,
            children: Children::default(),
            out: Out::default(),
            human: Human::new(
                Style::detect(stdout_tty),
                options.output == OutputMode::Quiet,
                options.assignments.len(),
            ),
            status,
            stdout_tty,
            stop: None,
            started: Instant::now(),
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

    /// Creates one child per `(assignment, name)`; an interrupt stops
    /// creating, and so does the first create the engine refuses (a full
    /// disk): the rest are listed as never created, and the children
    /// already created run on to their end.
    async fn create_children(&mut self, planned: &[(String, String)], interrupts: &mut Interrupts) {
        let workspace = self
            .options
            .workspace
            .as_ref()
            .map(|w| w.to_string_lossy().into_owned());
        let total = planned.len();
        for (i, (assignment, name)) in planned.iter().enumerate() {
            if self.refused.is_some() {
                self.children.add_uncreated(
                    name.clone(),
                    assignment.clone(),
                    "not created: an earlier create was refused".into(),
                );
                continue;
            }
            let mut input = CreateChild::new(&self.root, assignment);
            input.title = Some(name.clone());
            input.role = "cli".into();
            input.workspace = workspace.clone();
            input.auto_run = true;
            input.run_timeout_secs = self.options.run_timeout.map(|d| d.as_secs());
            input.idle_timeout_secs = self.options.idle_timeout.map(|d| d.as_secs());
            input.max_rounds = self.options.max_rounds;
            input.read_only = self.options.read_only;
            input.max_tokens = self.options.max_tokens;
            input.max_cost_usd = self.options.max_cost_usd;
            if self.options.worktree {
                input.isolation = Some(bamboo_engine::worktree::Isolation::Worktree);
            }
            let child = tokio::select! {
                biased;
                sig = interrupts.next() => {
                    self.note(&format!("{sig}: stopped after creating {i} of {total} children"));
                    self.stop_early(Stop::Interrupted);
                    return;
                }
                c = self.engine.create_child(input) => c,
            };
            match child {
                Ok(child) => self
                    .children
                    .add(child.id, name.clone(), Some(assignment.clone())),
                Err(e) => {
                    self.note(&format!(
                        "cannot create child {} ({name}): {e}; no further children are created, those running go on",
                        i + 1
                    ));
                    self.children.add_uncreated(
                        name.clone(),
                        assignment.clone(),
                        format!("not created: {e}"),
                    );
                    self.refused = Some(e);
                }
            }
        }
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
            "{sig}: cancelling {} children (again to stop at once)",
            self.children.open()
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
        let engine = self.engine.clone();
        let root = self.root.clone();
        let ids = self.children.open_ids();
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
        let printed = self.print(&logged, who.as_ref());
        let Some(who) = who else { return };
        let ended = self.children.apply(&who, &logged.event, logged.time);
        if ended {
            self.fetch_result(&who).await;
            let printed =
                printed.and_then(
                    |_| match (self.options.output, self.children.get(who.top)) {
                        (OutputMode::Json, _) | (_, None) => Ok(()),
                        (_, Some(child)) => {
                            let child = child.clone();
                            self.human.finished(&mut self.out, &who, &child)
                        }
                    },
                );
            self.closed_if(printed);
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
                Some(who) => self.human.event(&mut self.out, who, &logged.event),
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

    /// A completed child's answer, for its result line and the JSON summary.
    async fn fetch_result(&mut self, who: &Who) {
        let completed = self
            .children
            .get(who.top)
            .is_some_and(|c| c.phase == super::children::Phase::Done(CompletionStatus::Completed));
        if !completed {
            return;
        }
        match self.engine.get_child(&self.root, &who.session_id).await {
            Ok(detail) => {
                if let Some(c) = self.children.get_mut(who.top) {
                    c.result = detail.last_result;
                }
            }
            Err(e) => self.note(&format!("cannot read the result of [{}]: {e}", who.label)),
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
        self.hide();
        super::out::to_stderr(&format!("bamboo-worker run: {text}"));
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
        self.hide();
        let all_done = self.children.completed() == self.children.all().len();
        let exit_code = match self.stop {
            Some(Stop::Interrupted) => exit::INTERRUPTED,
            _ if all_done => exit::ALL_COMPLETED,
            _ => exit::SOME_FAILED,
        };
        let interrupted = self.stop == Some(Stop::Interrupted);
        if self.stop != Some(Stop::StdoutClosed) {
            let printed = match self.options.output {
                OutputMode::Json => json::summary(
                    &mut self.out,
                    &self.root,
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
        let what = format!(
            "{n} of {} children were never created",
            self.children.all().len()
        );
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
