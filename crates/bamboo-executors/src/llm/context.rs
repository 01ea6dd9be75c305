//! Keeping a run's conversation within its token budget (F13).
//!
//! Tokens are estimated, not counted with the model's tokenizer: a message
//! costs a quarter of its characters (text and tool calls), rounded up, plus
//! four for its framing. English text runs at about four characters per
//! token, so the estimate is close for prose and errs high for code.
//!
//! When the prompt passes the budget's trigger, the older turns are folded
//! into one message: the model's summary of them, or, when the model cannot
//! give one, a marker saying what was cut. System messages and the
//! assignment are always kept, and so are the newest turns that fit.

use bamboo_domain::{Message, Role, TokenBudget};

/// Estimated framing cost of one message, in tokens.
const PER_MESSAGE: u64 = 4;

/// The label a folded summary starts with.
pub const SUMMARY_LABEL: &str = "[Summary of earlier turns, compressed to fit the context budget]";

/// The estimated size of `text`, in tokens.
pub fn text_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The estimated size of one message, in tokens.
pub fn message_tokens(m: &Message) -> u64 {
    let calls = m
        .tool_calls
        .as_ref()
        .map_or(0, |c| text_tokens(&c.to_string()));
    text_tokens(&m.content) + calls + PER_MESSAGE
}

/// The estimated size of a prompt made of `extra` texts (system prompt,
/// task list) and `messages`.
pub fn prompt_tokens<'a>(extra: impl IntoIterator<Item = &'a str>, messages: &[Message]) -> u64 {
    let extra: u64 = extra
        .into_iter()
        .map(|t| text_tokens(t) + PER_MESSAGE)
        .sum();
    extra + messages.iter().map(message_tokens).sum::<u64>()
}

/// Which messages a compression folds away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indices of the messages to fold, ascending.
    pub fold: Vec<usize>,
    /// Tokens the folded text may take so the prompt ends below the target.
    pub room: u64,
}

/// What to fold so that a prompt of `fixed` tokens outside the messages plus
/// `messages` gets below `budget`'s target; `None` when nothing can be folded.
/// `keep` is the assignment's index, never folded. The newest messages are
/// kept while they fit in half of what the target leaves after the kept
/// ones; the rest (older turns) is folded. A kept tail never starts with a
/// tool result, whose call would be gone.
pub fn plan(
    messages: &[Message],
    keep: Option<usize>,
    fixed: u64,
    budget: &TokenBudget,
) -> Option<Plan> {
    let pinned = |i: usize| Some(i) == keep || messages[i].role == Role::System;
    let pinned_tokens: u64 = (0..messages.len())
        .filter(|&i| pinned(i))
        .map(|i| message_tokens(&messages[i]))
        .sum();
    let free = budget
        .target_tokens()
        .saturating_sub(fixed + pinned_tokens + PER_MESSAGE);
    let mut tail_tokens = 0;
    let mut tail_start = messages.len();
    for i in (0..messages.len()).rev() {
        if pinned(i) {
            continue;
        }
        let t = message_tokens(&messages[i]);
        if tail_tokens + t > free / 2 {
            break;
        }
        tail_tokens += t;
        tail_start = i;
    }
    while tail_start < messages.len()
        && (messages[tail_start].role == Role::Tool || pinned(tail_start))
    {
        if messages[tail_start].role == Role::Tool {
            tail_tokens -= message_tokens(&messages[tail_start]);
        }
        tail_start += 1;
    }
    let fold: Vec<usize> = (0..tail_start).filter(|&i| !pinned(i)).collect();
    if fold.is_empty() {
        return None;
    }
    Some(Plan {
        fold,
        room: free.saturating_sub(tail_tokens),
    })
}

/// The folded messages as plain text for the summariser.
pub fn transcript_text(messages: &[Message], fold: &[usize]) -> String {
    let mut out = String::new();
    for &i in fold {
        let m = &messages[i];
        let role = match m.role {
            Role::System => "system",
            Role::User | Role::Other => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool result",
        };
        out.push_str(role);
        out.push_str(": ");
        out.push_str(&m.content);
        if let Some(calls) = &m.tool_calls {
            out.push_str(&format!(" (tool calls: {calls})"));
        }
        out.push('\n');
    }
    out
}

/// The message that stands for folded turns: `summary`, cut to `room`
/// tokens, or the marker when there is none.
pub fn folded_message(summary: Option<&str>, folded: usize, room: u64) -> Message {
    let text = match summary {
        Some(s) => format!("{SUMMARY_LABEL}\n{s}"),
        None => format!(
            "[{folded} earlier messages were cut to keep the conversation within its context budget]"
        ),
    };
    // Four characters per token, less the framing.
    let max_chars = (room.saturating_sub(PER_MESSAGE) * 4).max(80) as usize;
    let text = if text.chars().count() > max_chars {
        let mut cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        text
    };
    Message::user(text)
}

/// Replaces the messages at `fold` with `folded`, placed where the first of
/// them was; returns the assignment's new index.
pub fn apply(
    messages: &mut Vec<Message>,
    fold: &[usize],
    folded: Message,
    keep: Option<usize>,
) -> Option<usize> {
    let Some(&first) = fold.first() else {
        return keep;
    };
    let mut out = Vec::with_capacity(messages.len() - fold.len() + 1);
    let mut new_keep = None;
    for (i, m) in std::mem::take(messages).into_iter().enumerate() {
        if i == first {
            out.push(folded.clone());
        }
        if fold.binary_search(&i).is_ok() {
            continue;
        }
        if Some(i) == keep {
            new_keep = Some(out.len());
        }
        out.push(m);
    }
    *messages = out;
    new_keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo() -> Vec<Message> {
        let mut v = vec![Message::system("sys"), Message::user("the assignment")];
        for i in 0..20 {
            v.push(Message::assistant(format!("turn {i} {}", "x".repeat(400))));
            let mut t = Message::new(Role::Tool, "y".repeat(400));
            t.tool_call_id = Some(format!("c{i}"));
            v.push(t);
        }
        v
    }

    #[test]
    fn f13_a_plan_keeps_system_and_assignment_and_lands_below_the_target() {
        let mut m = convo();
        let budget = TokenBudget {
            max_context_tokens: 4000,
            compression_trigger_percent: 70,
            compression_target_percent: 35,
        };
        assert!(prompt_tokens([], &m) > budget.trigger_tokens());
        let p = plan(&m, Some(1), 0, &budget).expect("something to fold");
        assert!(!p.fold.contains(&0) && !p.fold.contains(&1));
        let folded = folded_message(Some(&"summary ".repeat(1000)), p.fold.len(), p.room);
        let keep = apply(&mut m, &p.fold, folded, Some(1));
        assert!(
            prompt_tokens([], &m) <= budget.target_tokens(),
            "{}",
            prompt_tokens([], &m)
        );
        assert_eq!(keep.map(|k| m[k].content.as_str()), Some("the assignment"));
        assert_eq!(m[0].content, "sys");
        assert!(m[2].content.starts_with(SUMMARY_LABEL));
        assert_ne!(
            m[3].role,
            Role::Tool,
            "a kept tail never starts with a tool result"
        );
    }

    #[test]
    fn nothing_to_fold_is_none_and_the_marker_names_the_count() {
        let m = vec![Message::system("s"), Message::user("a")];
        let budget = TokenBudget::new(10);
        assert_eq!(plan(&m, Some(1), 0, &budget), None);
        assert!(folded_message(None, 7, 100)
            .content
            .contains("7 earlier messages were cut"));
        assert_eq!(text_tokens("abcde"), 2);
    }
}
