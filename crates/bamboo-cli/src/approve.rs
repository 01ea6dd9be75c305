//! How `run` answers approvals for gated actions. The program named after
//! `--` (or with `--command`) is approved by naming it; `--approve-tool T`
//! approves every request of tool T; `--approve all|none` answers everything;
//! otherwise requests go to the prompt on a terminal, or are denied with a
//! note saying how to allow them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bamboo_engine::{async_trait, ApprovalPolicy, ApprovalRequest, Approved};

/// The `--approve` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApproveMode {
    /// Ask on the terminal for each gated action (the named cli program is
    /// approved by naming it).
    Ask,
    /// Approve every gated action.
    All,
    /// Deny every gated action, the named cli program included.
    None,
}

/// What to do with a request nothing else answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Leave it to the human path (the prompt).
    Ask,
    /// Deny it, with a note saying how to allow it.
    Deny,
}

/// Answers remembered for the rest of the run (`a` / `N` at a prompt).
pub type Remembered = Arc<Mutex<HashMap<String, bool>>>;

/// The front door's approval policy.
#[derive(Debug)]
pub struct FrontPolicy {
    /// The program the user named.
    named_program: NamedProgram,
    all: Option<bool>,
    tools: HashSet<String>,
    fallback: Fallback,
    remembered: Remembered,
    notes: tokio::sync::mpsc::UnboundedSender<String>,
    hinted: Mutex<HashSet<String>>,
}

impl FrontPolicy {
    /// A policy: `named_program` approves its own `cli_adapter` requests,
    /// `all` answers everything, `tools` approves those tools, `fallback`
    /// handles the rest; denials send a note through `notes`.
    pub fn new(
        named_program: NamedProgram,
        all: Option<bool>,
        tools: HashSet<String>,
        fallback: Fallback,
        notes: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Self {
        Self {
            named_program,
            all,
            tools,
            fallback,
            remembered: Remembered::default(),
            notes,
            hinted: Mutex::default(),
        }
    }

    /// The named program also runs on `assignment` (a resumed child).
    pub fn name_assignment(&self, assignment: &str) {
        self.named_program.add_assignment(assignment);
    }

    /// The answers a prompt remembers (`a`, `N`), shared with the prompt.
    pub fn remembered(&self) -> Remembered {
        self.remembered.clone()
    }

    fn answer(&self, request: &ApprovalRequest) -> Option<bool> {
        if let Some(all) = self.all {
            return Some(all);
        }
        if request.tool_name == "cli_adapter" && self.named_program.matches(&request.resource) {
            return Some(true);
        }
        if self.tools.contains(&request.tool_name) {
            return Some(true);
        }
        let remembered = self
            .remembered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&request.tool_name)
            .copied();
        if remembered.is_some() {
            return remembered;
        }
        match self.fallback {
            Fallback::Ask => None,
            Fallback::Deny => {
                self.hint(request);
                Some(false)
            }
        }
    }

    /// Once per tool: says what was denied and how to allow it.
    fn hint(&self, request: &ApprovalRequest) {
        let first = self
            .hinted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request.tool_name.clone());
        if first {
            let _ = self.notes.send(format!(
                "denied {} on {:?}: no terminal to ask; allow it with --approve-tool {} (or every gated action with --approve all)",
                request.tool_name, request.resource, request.tool_name
            ));
        }
    }
}

#[async_trait]
impl ApprovalPolicy for FrontPolicy {
    async fn decide(&self, request: &ApprovalRequest) -> Option<bool> {
        self.answer(request)
    }

    /// The named program on `assignment`, when `answer` would approve its
    /// request at once (`--approve all`, or one of this run's assignments):
    /// its run then starts without a round trip to ask.
    fn approved_ahead(&self, _child_session_id: &str, assignment: &str) -> Vec<Approved> {
        if self.all == Some(false) {
            return Vec::new();
        }
        let Some(line) = self.named_program.line_for(assignment) else {
            return Vec::new();
        };
        if self.all == Some(true) || self.named_program.matches(&line) {
            vec![Approved {
                tool_name: "cli_adapter".into(),
                resource: line,
            }]
        } else {
            Vec::new()
        }
    }
}

/// The program the user named after `--`: naming it approves it. A
/// `cli_adapter` request is that program when its resource is the exact
/// command line of a run of one of this run's assignments, rendered by the
/// cli executor's own function (so the two cannot drift).
#[derive(Debug, Default)]
pub struct NamedProgram {
    program: Option<(String, Vec<String>)>,
    lines: Mutex<HashSet<String>>,
}

impl NamedProgram {
    /// `command args` run on each of `assignments`.
    pub fn new(command: &str, args: &[String], assignments: &[String]) -> Self {
        let named = Self {
            program: Some((command.to_owned(), args.to_vec())),
            lines: Mutex::default(),
        };
        for a in assignments {
            named.add_assignment(a);
        }
        named
    }

    /// No named program (another executor, or `--approve` decides).
    pub fn none() -> Self {
        Self::default()
    }

    /// One more assignment the program runs on (a resumed child's).
    pub fn add_assignment(&self, assignment: &str) {
        if let Some(line) = self.line_for(assignment) {
            self.lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(line);
        }
    }

    /// The exact command line the program runs for `assignment`, as its
    /// approval request names it.
    fn line_for(&self, assignment: &str) -> Option<String> {
        let (command, args) = self.program.as_ref()?;
        Some(bamboo_executors::cli::command_line_for(
            command, args, assignment,
        ))
    }

    fn matches(&self, resource: &str) -> bool {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tool: &str, resource: &str) -> ApprovalRequest {
        ApprovalRequest {
            parent_session_id: "root".into(),
            child_session_id: "c".into(),
            ancestry: vec!["root".into()],
            tool_name: tool.into(),
            permission: "execute".into(),
            resource: resource.into(),
            question: "?".into(),
        }
    }

    fn policy(
        all: Option<bool>,
        tools: &[&str],
        fallback: Fallback,
    ) -> (FrontPolicy, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let args = vec!["-c".to_owned(), "echo hi {assignment}".to_owned()];
        let named = NamedProgram::new("sh", &args, &["x y".to_owned()]);
        let tools = tools.iter().map(|t| t.to_string()).collect();
        (FrontPolicy::new(named, all, tools, fallback, tx), rx)
    }

    #[test]
    fn the_named_program_is_approved_and_nothing_else_by_default() {
        let (p, _rx) = policy(None, &[], Fallback::Ask);
        assert_eq!(
            p.answer(&request("cli_adapter", r#"sh -c "echo hi x y""#)),
            Some(true)
        );
        assert_eq!(
            p.answer(&request("cli_adapter", r#"sh -c "echo hi z""#)),
            None,
            "not one of this run's assignments"
        );
        p.name_assignment("z");
        assert_eq!(
            p.answer(&request("cli_adapter", r#"sh -c "echo hi z""#)),
            Some(true),
            "a resumed child's assignment"
        );
        assert_eq!(p.answer(&request("cli_adapter", "rm -rf /")), None);
        assert_eq!(p.answer(&request("write_file", "a.txt")), None);
    }

    #[test]
    fn a_program_reading_its_assignment_on_stdin_is_recognised() {
        let named = NamedProgram::new("seq", &["1".into(), "3".into()], &["count".into()]);
        assert!(named.matches("seq 1 3 (assignment on stdin)"));
        assert!(!named.matches("seq 1 3"));
    }

    #[test]
    fn without_a_terminal_a_denial_says_how_to_allow_it_once_per_tool() {
        let (p, mut rx) = policy(None, &["run_command"], Fallback::Deny);
        assert_eq!(p.answer(&request("run_command", "ls")), Some(true));
        assert_eq!(p.answer(&request("write_file", "a")), Some(false));
        assert_eq!(p.answer(&request("write_file", "b")), Some(false));
        let note = rx.try_recv().unwrap();
        assert!(
            note.contains("--approve-tool write_file") && note.contains("--approve all"),
            "{note}"
        );
        assert!(rx.try_recv().is_err(), "one note per tool");
    }

    #[test]
    fn approve_all_or_none_overrides_everything_and_remembered_answers_apply() {
        let (p, _rx) = policy(Some(false), &[], Fallback::Ask);
        assert_eq!(
            p.answer(&request("cli_adapter", r#"sh -c "echo hi x y""#)),
            Some(false)
        );
        let (p, _rx) = policy(None, &[], Fallback::Ask);
        p.remembered()
            .lock()
            .unwrap()
            .insert("write_file".into(), true);
        assert_eq!(p.answer(&request("write_file", "a")), Some(true));
    }

    #[test]
    fn the_named_program_on_a_planned_assignment_is_approved_ahead_exactly_as_answered() {
        let resources = |p: &FrontPolicy, assignment: &str| -> Vec<String> {
            p.approved_ahead("c", assignment)
                .into_iter()
                .map(|a| {
                    assert_eq!(a.tool_name, "cli_adapter");
                    a.resource
                })
                .collect()
        };
        let (p, _rx) = policy(None, &[], Fallback::Ask);
        assert_eq!(resources(&p, "x y"), vec![r#"sh -c "echo hi x y""#]);
        assert!(resources(&p, "z").is_empty(), "not one of this run's");
        let (p, _rx) = policy(Some(false), &[], Fallback::Ask);
        assert!(resources(&p, "x y").is_empty(), "--approve none");
        let (p, _rx) = policy(Some(true), &[], Fallback::Ask);
        assert_eq!(resources(&p, "z"), vec![r#"sh -c "echo hi z""#]);
        let unnamed = FrontPolicy::new(
            NamedProgram::none(),
            Some(true),
            HashSet::new(),
            Fallback::Ask,
            tokio::sync::mpsc::unbounded_channel().0,
        );
        assert!(resources(&unnamed, "x y").is_empty(), "no cli program");
    }
}
