//! A session's token budget: how large its context window is, and when and
//! how far its conversation is compressed. Field names are the reference's
//! (`token_budget`, `max_context_tokens`, `compression_trigger_percent`,
//! `compression_target_percent`).

use serde::{Deserialize, Serialize};

/// Compression starts when the prompt passes this share of the window (the
/// reference's default).
pub const DEFAULT_TRIGGER_PERCENT: u8 = 85;
/// Compression brings the prompt down to this share of the window.
pub const DEFAULT_TARGET_PERCENT: u8 = 40;
/// A child compresses earlier than its parent, so a long child task does not
/// fill its window before the parent can step in (the reference's values).
pub const CHILD_TRIGGER_PERCENT: u8 = 70;
/// A child compresses further than its parent (the reference's value).
pub const CHILD_TARGET_PERCENT: u8 = 35;

/// A context budget. Sizes are in tokens; where tokens are counted without
/// the model's tokenizer they are estimated (see the executor that uses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBudget {
    /// The model's context window.
    pub max_context_tokens: u64,
    /// Compress once the prompt is larger than this percentage of the window.
    #[serde(default = "default_trigger")]
    pub compression_trigger_percent: u8,
    /// Compress down to at most this percentage of the window.
    #[serde(default = "default_target")]
    pub compression_target_percent: u8,
}

fn default_trigger() -> u8 {
    DEFAULT_TRIGGER_PERCENT
}

fn default_target() -> u8 {
    DEFAULT_TARGET_PERCENT
}

impl TokenBudget {
    /// A budget of `max_context_tokens` with the default percentages.
    pub fn new(max_context_tokens: u64) -> Self {
        Self {
            max_context_tokens,
            compression_trigger_percent: DEFAULT_TRIGGER_PERCENT,
            compression_target_percent: DEFAULT_TARGET_PERCENT,
        }
    }

    /// The budget a child of a session with this budget gets: the same
    /// window, compressed earlier and further.
    pub fn for_child(&self) -> Self {
        Self {
            max_context_tokens: self.max_context_tokens,
            compression_trigger_percent: CHILD_TRIGGER_PERCENT,
            compression_target_percent: CHILD_TARGET_PERCENT,
        }
    }

    /// The prompt size past which the conversation is compressed.
    pub fn trigger_tokens(&self) -> u64 {
        self.max_context_tokens * u64::from(self.compression_trigger_percent.min(100)) / 100
    }

    /// The prompt size compression aims for.
    pub fn target_tokens(&self) -> u64 {
        self.max_context_tokens * u64::from(self.compression_target_percent.min(100)) / 100
    }

    /// Why this budget cannot be used, in words naming the field to fix.
    pub fn problem(&self) -> Option<String> {
        if self.max_context_tokens == 0 {
            return Some(
                "token_budget.max_context_tokens is 0: give the model's context window in tokens"
                    .into(),
            );
        }
        let (trigger, target) = (
            self.compression_trigger_percent,
            self.compression_target_percent,
        );
        if trigger == 0 || trigger > 100 || target == 0 || target >= trigger {
            return Some(format!(
                "token_budget percentages {trigger}/{target} are unusable: compression_target_percent must be above 0 and below compression_trigger_percent, which must be at most 100"
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_keeps_the_window_and_compresses_at_70_down_to_35() {
        let parent = TokenBudget::new(100_000);
        assert_eq!(parent.trigger_tokens(), 85_000);
        assert_eq!(parent.target_tokens(), 40_000);
        let child = parent.for_child();
        assert_eq!(child.max_context_tokens, 100_000);
        assert_eq!(
            (
                child.compression_trigger_percent,
                child.compression_target_percent
            ),
            (70, 35)
        );
        assert_eq!(child.problem(), None);
    }

    #[test]
    fn missing_percentages_take_the_defaults_and_bad_ones_are_named() {
        let b: TokenBudget = serde_json::from_str(r#"{"max_context_tokens":8000}"#).unwrap();
        assert_eq!(b, TokenBudget::new(8000));
        let mut bad = b;
        bad.compression_target_percent = 90;
        assert!(bad
            .problem()
            .unwrap()
            .contains("compression_target_percent"));
        assert!(TokenBudget::new(0).problem().is_some());
    }
}
