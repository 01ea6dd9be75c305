//! Typed statuses (S2). The wire keeps its exact lowercase strings.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A status string that names no known status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseStatusError(pub String);

impl fmt::Display for ParseStatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown status {:?}", self.0)
    }
}

impl std::error::Error for ParseStatusError {}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The exact wire string.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseStatusError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($wire => Ok(Self::$variant),)+ other => Err(ParseStatusError(other.to_owned())) }
            }
        }
    };
}

wire_enum!(
    /// How one run on a worker ended: the `status` of a `terminal` frame.
    TerminalStatus {
        /// The run finished normally.
        Completed => "completed",
        /// The run failed; `error` says why.
        Error => "error",
        /// The run was cancelled by the parent or by a disconnect.
        Cancelled => "cancelled",
        /// The run paused itself and can be resumed later.
        Suspended => "suspended",
    }
);

wire_enum!(
    /// The persisted run status of a child session (S2).
    ChildStatus {
        /// Created, never run.
        Pending => "pending",
        /// A run is in flight.
        Running => "running",
        /// The last run completed.
        Completed => "completed",
        /// The last run was cancelled.
        Cancelled => "cancelled",
        /// The last run failed.
        Error => "error",
        /// Nothing was pending, so no run happened.
        Skipped => "skipped",
        /// The watchdog stopped the last run.
        Timeout => "timeout",
        /// The last run paused itself (terminal `suspended`): the transcript is
        /// kept and the child resumes on its next run or message.
        Suspended => "suspended",
    }
);

wire_enum!(
    /// The `status` of a parent-side `sub_agent_completed` event.
    CompletionStatus {
        /// The child run completed.
        Completed => "completed",
        /// The child run was cancelled.
        Cancelled => "cancelled",
        /// The child run failed.
        Error => "error",
        /// There was nothing to run.
        Skipped => "skipped",
        /// The watchdog stopped the run.
        Timeout => "timeout",
    }
);

impl ChildStatus {
    /// True once a run has ended (anything but pending or running).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

impl From<CompletionStatus> for ChildStatus {
    fn from(s: CompletionStatus) -> Self {
        match s {
            CompletionStatus::Completed => Self::Completed,
            CompletionStatus::Cancelled => Self::Cancelled,
            CompletionStatus::Error => Self::Error,
            CompletionStatus::Skipped => Self::Skipped,
            CompletionStatus::Timeout => Self::Timeout,
        }
    }
}

impl From<TerminalStatus> for CompletionStatus {
    /// A suspended run is reported as completed: it ended cleanly on the worker.
    fn from(s: TerminalStatus) -> Self {
        match s {
            TerminalStatus::Completed | TerminalStatus::Suspended => Self::Completed,
            TerminalStatus::Error => Self::Error,
            TerminalStatus::Cancelled => Self::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_use_exact_wire_strings() {
        assert_eq!(
            serde_json::to_string(&TerminalStatus::Suspended).unwrap(),
            r#""suspended""#
        );
        assert_eq!(
            serde_json::to_string(&ChildStatus::Timeout).unwrap(),
            r#""timeout""#
        );
        let s: CompletionStatus = serde_json::from_str(r#""skipped""#).unwrap();
        assert_eq!(s, CompletionStatus::Skipped);
        assert!(serde_json::from_str::<TerminalStatus>(r#""done""#).is_err());
    }

    #[test]
    fn status_parses_from_str_and_displays() {
        assert_eq!(
            "running".parse::<ChildStatus>().unwrap(),
            ChildStatus::Running
        );
        assert_eq!(ChildStatus::Error.to_string(), "error");
        assert!("RUNNING".parse::<ChildStatus>().is_err());
        assert!(ChildStatus::Skipped.is_terminal());
        assert!(!ChildStatus::Running.is_terminal());
    }

    #[test]
    fn all_lists_every_status_once_and_each_parses_back() {
        let wire: Vec<&str> = ChildStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            wire,
            [
                "pending",
                "running",
                "completed",
                "cancelled",
                "error",
                "skipped",
                "timeout",
                "suspended"
            ]
        );
        for s in ChildStatus::ALL {
            assert_eq!(s.as_str().parse::<ChildStatus>(), Ok(*s));
        }
    }
}
