//! Write-back: what a finished run leaves on its child. The terminal's
//! transcript is adopted when there is one (so tool calls and their results
//! reach the next run), bounded so its size never fails a completed run; and
//! the steering messages the run took in-band are told apart from those it
//! never saw, so none is answered twice and none is lost.
// Behaviours: E15, C6.

use bamboo_domain::{Message, Role, Session};

/// Largest transcript written back as is. A larger one is not adopted
/// (the result alone is appended), so its size never fails a completed run.
// Behaviours: E15.
pub(crate) const MAX_WRITE_BACK_BYTES: usize = 8 << 20;

/// Whether `t`'s JSON stays within [`MAX_WRITE_BACK_BYTES`]: counted as it
/// is written, not built (a long answer would be copied once more).
fn fits(t: &Vec<Message>) -> bool {
    /// Counts bytes; fails once past the bound, which ends the count early.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            if self.0 > MAX_WRITE_BACK_BYTES {
                return Err(std::io::Error::other("over the bound"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Count(0), t).is_ok()
}

/// Adopts the run's transcript (keeping our system prompt when the
/// worker's has none), or appends the result when there is no usable
/// transcript. Returns the user texts the run added, i.e. the steering
/// messages it took in-band.
// Behaviours: E15, C6.
pub(crate) fn write_back(
    s: &mut Session,
    transcript: Option<Vec<Message>>,
    result: Option<&str>,
) -> Vec<String> {
    let Some(mut t) = transcript.filter(|t| !t.is_empty() && fits(t)) else {
        if let Some(text) = result {
            s.messages.push(Message::assistant(text.to_owned()));
        }
        return Vec::new();
    };
    let mut before: Vec<&str> = user_texts(&s.messages);
    let mut added = Vec::new();
    for text in user_texts(&t) {
        match before.iter().position(|b| *b == text) {
            Some(i) => drop(before.swap_remove(i)),
            None => added.push(text.to_owned()),
        }
    }
    let ours = s
        .messages
        .first()
        .filter(|m| m.role == Role::System)
        .cloned();
    if let (Some(system), false) = (ours, t.iter().any(|m| m.role == Role::System)) {
        t.insert(0, system);
    }
    s.messages = t;
    added
}

fn user_texts(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .filter(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .collect()
}

/// The pending steering messages the run did not take, in order.
// Behaviours: C6.
pub(crate) fn untaken(pending: Vec<String>, mut taken: Vec<String>) -> Vec<String> {
    pending
        .into_iter()
        .filter(|p| match taken.iter().position(|t| t == p) {
            Some(i) => {
                taken.swap_remove(i);
                false
            }
            None => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_domain::ChildInfo;

    fn child(messages: Vec<Message>) -> Session {
        let root = Session::new_root("r");
        let mut s = Session::new_child(&root, ChildInfo::new("", "go"));
        s.messages = messages;
        s
    }

    #[test]
    fn e15_the_transcript_replaces_the_messages_and_keeps_our_system_prompt() {
        let mut s = child(vec![Message::system("ours"), Message::user("go")]);
        let mut call = Message::assistant("");
        call.tool_calls = Some(serde_json::json!([{"id": "c1"}]));
        let mut result = Message::new(Role::Tool, "file text");
        result.tool_call_id = Some("c1".into());
        let t = vec![
            Message::user("go"),
            call,
            result,
            Message::assistant("done"),
        ];
        let added = write_back(&mut s, Some(t), Some("done"));
        assert!(added.is_empty());
        let roles: Vec<Role> = s.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Assistant
            ]
        );
    }

    #[test]
    fn e15_without_a_transcript_the_result_is_appended() {
        let mut s = child(vec![Message::user("go")]);
        write_back(&mut s, None, Some("echo: go"));
        assert_eq!(s.messages.last().unwrap().content, "echo: go");
    }

    #[test]
    fn e15_an_oversized_transcript_falls_back_to_the_result() {
        let mut s = child(vec![Message::user("go")]);
        let big = vec![
            Message::user("go"),
            Message::assistant("x".repeat(MAX_WRITE_BACK_BYTES + 1)),
        ];
        write_back(&mut s, Some(big), Some("short"));
        assert_eq!(s.messages.len(), 2);
        assert_eq!(s.messages[1].content, "short");
    }

    #[test]
    fn c6_messages_the_run_took_are_not_queued_again() {
        let mut s = child(vec![Message::user("go")]);
        let t = vec![
            Message::user("go"),
            Message::user("left"),
            Message::assistant("ok"),
        ];
        let taken = write_back(&mut s, Some(t), Some("ok"));
        assert_eq!(taken, ["left"]);
        let pending = vec!["left".to_owned(), "right".to_owned()];
        assert_eq!(untaken(pending, taken), ["right"]);
    }
}
