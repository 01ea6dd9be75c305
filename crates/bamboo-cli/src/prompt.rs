//! Approval prompts on the terminal: one question at a time on stderr, the
//! answer from stdin. `y`/`n` answer this request; `a` (always) and `N`
//! (never) answer every request of that tool for the rest of the run. The
//! status area is hidden while a question is shown, and the children's
//! output and notes are held back until it is answered; children keep
//! running.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::approve::Remembered;
use super::out::Hold;
use super::status::StatusArea;

/// One request waiting for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Id to answer with.
    pub id: String,
    /// The asking child's display name.
    pub label: String,
    /// The tool that wants to act.
    pub tool_name: String,
    /// The kind of permission.
    pub permission: String,
    /// The exact command or path.
    pub resource: String,
}

/// Sends an answer to the engine; `Err` carries why it was not applied.
pub type Answer = Arc<dyn Fn(&str, bool) -> Result<(), String> + Send + Sync>;

/// What a typed answer means: (approved, remember for this tool).
pub fn parse_answer(line: &str) -> Option<(bool, bool)> {
    match line.trim() {
        "y" | "Y" | "yes" => Some((true, false)),
        "n" | "no" | "" => Some((false, false)),
        "a" | "A" | "always" => Some((true, true)),
        "N" | "never" => Some((false, true)),
        _ => None,
    }
}

/// Starts the prompt task; feed it requests through the returned sender.
pub fn spawn(
    answer: Answer,
    remembered: Remembered,
    status: Option<Arc<Mutex<StatusArea>>>,
    hold: Hold,
    notes: mpsc::UnboundedSender<String>,
) -> mpsc::UnboundedSender<Ask> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Ask>();
    tokio::spawn(async move {
        let mut stdin_gone = false;
        while let Some(ask) = rx.recv().await {
            let known = lock(&remembered).get(&ask.tool_name).copied();
            let (approved, remember) = match known {
                Some(v) => (v, false),
                None if stdin_gone => (false, false),
                None => {
                    // Nothing else prints while the question waits.
                    hold.hold();
                    if let Some(s) = &status {
                        lock(s).pause();
                    }
                    let got = question(&ask).await;
                    if let Some(s) = &status {
                        lock(s).resume();
                    }
                    hold.release();
                    got.unwrap_or_else(|| {
                        stdin_gone = true;
                        let _ =
                            notes.send("stdin closed: further approval requests are denied".into());
                        (false, false)
                    })
                }
            };
            if remember {
                lock(&remembered).insert(ask.tool_name.clone(), approved);
            }
            if let Err(why) = answer(&ask.id, approved) {
                let _ = notes.send(format!(
                    "your answer for [{}] {} was not applied: {why}",
                    ask.label, ask.tool_name
                ));
            }
        }
    });
    tx
}

/// Asks until the answer is understood; `None` when stdin is closed.
async fn question(ask: &Ask) -> Option<(bool, bool)> {
    let text = format!(
        "[{}] asks to use {} ({}) on:\n    {}\n  allow? y = yes, n = no, a = always for {}, N = never for {} [y/n/a/N] ",
        ask.label, ask.tool_name, ask.permission, ask.resource, ask.tool_name, ask.tool_name
    );
    loop {
        let text = text.clone();
        let line = tokio::task::spawn_blocking(move || {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(text.as_bytes()).and_then(|_| err.flush());
            drop(err);
            let mut line = String::new();
            match std::io::stdin().lock().read_line(&mut line) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(line),
            }
        })
        .await
        .ok()
        .flatten()?;
        if let Some(answer) = parse_answer(&line) {
            return Some(answer);
        }
        super::out::to_stderr("  please answer y, n, a or N");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_mean_what_the_prompt_says() {
        assert_eq!(parse_answer("y\n"), Some((true, false)));
        assert_eq!(parse_answer("\n"), Some((false, false)));
        assert_eq!(parse_answer("a\n"), Some((true, true)));
        assert_eq!(parse_answer("N\n"), Some((false, true)));
        assert_eq!(parse_answer("n"), Some((false, false)));
        assert_eq!(parse_answer("maybe"), None);
    }

    #[tokio::test]
    async fn remembered_answers_are_given_without_asking_and_failures_become_notes() {
        let remembered = Remembered::default();
        remembered.lock().unwrap().insert("write_file".into(), true);
        let (notes_tx, mut notes) = mpsc::unbounded_channel();
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let answer: Answer = Arc::new(move |id: &str, ok: bool| {
            let _ = seen_tx.send((id.to_owned(), ok));
            Err("it expired".to_owned())
        });
        let asks = spawn(answer, remembered, None, Hold::default(), notes_tx);
        asks.send(Ask {
            id: "ap-1".into(),
            label: "c1".into(),
            tool_name: "write_file".into(),
            permission: "write".into(),
            resource: "a.txt".into(),
        })
        .unwrap();
        assert_eq!(seen.recv().await.unwrap(), ("ap-1".to_owned(), true));
        let note = notes.recv().await.unwrap();
        assert!(
            note.contains("[c1] write_file") && note.contains("it expired"),
            "{note}"
        );
    }
}
