//! How `run` answers approvals for gated actions (`--approve ask|all|none`).

use std::io::{BufRead, Write};
use std::sync::Arc;

use bamboo_engine::{async_trait, ApprovalPolicy, ApprovalRequest};
use tokio::sync::Mutex;

/// The `--approve` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApproveMode {
    /// Ask on the terminal for each gated action.
    Ask,
    /// Approve every gated action.
    All,
    /// Deny every gated action.
    None,
}

/// The approval policy for a mode.
pub fn policy(mode: ApproveMode) -> Arc<dyn ApprovalPolicy> {
    match mode {
        ApproveMode::All => Arc::new(Fixed(true)),
        ApproveMode::None => Arc::new(Fixed(false)),
        ApproveMode::Ask => Arc::new(TerminalPrompt::default()),
    }
}

#[derive(Debug)]
struct Fixed(bool);

#[async_trait]
impl ApprovalPolicy for Fixed {
    async fn decide(&self, _: &ApprovalRequest) -> Option<bool> {
        Some(self.0)
    }
}

/// Asks on stderr and reads y/N from stdin, one question at a time.
#[derive(Debug, Default)]
struct TerminalPrompt {
    one_at_a_time: Mutex<()>,
}

#[async_trait]
impl ApprovalPolicy for TerminalPrompt {
    async fn decide(&self, request: &ApprovalRequest) -> Option<bool> {
        let _turn = self.one_at_a_time.lock().await;
        let question = format!(
            "approve {} ({}) on {:?}? [y/N] ",
            request.tool_name, request.permission, request.resource
        );
        let answer = tokio::task::spawn_blocking(move || {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(question.as_bytes()).and_then(|_| err.flush());
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map(|_| line)
        })
        .await;
        // No answer (closed stdin, a failed read) is a denial: fail closed.
        Some(matches!(answer, Ok(Ok(line)) if matches!(line.trim(), "y" | "Y" | "yes")))
    }
}
