//! What a run's children run with, recorded with its root so that
//! `--resume` reruns them the same way: the executor, its program, model,
//! base URL, the *name* of the key's variable, the workspace, the variables
//! passed on purpose (names only) and the per-child limits. Never a secret.
//!
//! A resume takes each of these from the record unless the flag is given
//! again; a flag given again must say the same, or the resume is refused
//! naming the difference, so a failed child is never rerun by something
//! else (an echo standing in for a failed program, say).

use serde::{Deserialize, Serialize};

/// The root's metadata key holding the record.
pub const RECORD_KEY: &str = "bamboo.run.executor";

/// The executor flags of a run, as given (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// `--executor`: `echo`, `cli` or `llm`.
    pub executor: String,
    /// The cli program and its arguments (`--command` + `--arg`, or after `--`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub program: Vec<String>,
    /// `--model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `--base-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// `--api-key-env`: the variable's name, never its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// `--workspace`, as an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// `--pass-env` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
    /// `--max-turns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// `--read-only`.
    #[serde(default)]
    pub read_only: bool,
    /// `--agent-bin` (claude, codex), as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_bin: Option<String>,
    /// `--permission-mode` (claude, codex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
}

/// One flag of [`Recorded`]: its name on the command line, and how it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `--executor`
    Executor,
    /// the program (`--command`/`--arg`, or after `--`)
    Program,
    /// `--model`
    Model,
    /// `--base-url`
    BaseUrl,
    /// `--api-key-env`
    ApiKeyEnv,
    /// `--workspace`
    Workspace,
    /// `--pass-env`
    PassEnv,
    /// `--max-turns`
    MaxTurns,
    /// `--read-only`
    ReadOnly,
    /// `--agent-bin`
    AgentBin,
    /// `--permission-mode`
    PermissionMode,
}

impl Field {
    /// Every field, in the order differences are named.
    pub const ALL: [Field; 11] = [
        Field::Executor,
        Field::Program,
        Field::Model,
        Field::BaseUrl,
        Field::ApiKeyEnv,
        Field::Workspace,
        Field::PassEnv,
        Field::MaxTurns,
        Field::ReadOnly,
        Field::AgentBin,
        Field::PermissionMode,
    ];

    /// The flag, as a person types it.
    pub fn flag(self) -> &'static str {
        match self {
            Field::Executor => "--executor",
            Field::Program => "the program (after `--`, or --command/--arg)",
            Field::Model => "--model",
            Field::BaseUrl => "--base-url",
            Field::ApiKeyEnv => "--api-key-env",
            Field::Workspace => "--workspace",
            Field::PassEnv => "--pass-env",
            Field::MaxTurns => "--max-turns",
            Field::ReadOnly => "--read-only",
            Field::AgentBin => "--agent-bin",
            Field::PermissionMode => "--permission-mode",
        }
    }
}

impl Recorded {
    /// `field`'s value, as shown in a message.
    pub fn show(&self, field: Field) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        match field {
            Field::Executor => self.executor.clone(),
            Field::Program if self.program.is_empty() => "(none)".into(),
            Field::Program => self.program.join(" "),
            Field::Model => opt(&self.model),
            Field::BaseUrl => opt(&self.base_url),
            Field::ApiKeyEnv => opt(&self.api_key_env),
            Field::Workspace => opt(&self.workspace),
            Field::PassEnv if self.pass_env.is_empty() => "(none)".into(),
            Field::PassEnv => self.pass_env.join(","),
            Field::MaxTurns => self
                .max_turns
                .map_or_else(|| "(none)".into(), |n| n.to_string()),
            Field::ReadOnly => self.read_only.to_string(),
            Field::AgentBin => opt(&self.agent_bin),
            Field::PermissionMode => opt(&self.permission_mode),
        }
    }

    /// Takes `field` from `other`.
    pub fn take(&mut self, field: Field, other: &Recorded) {
        match field {
            Field::Executor => self.executor = other.executor.clone(),
            Field::Program => self.program = other.program.clone(),
            Field::Model => self.model = other.model.clone(),
            Field::BaseUrl => self.base_url = other.base_url.clone(),
            Field::ApiKeyEnv => self.api_key_env = other.api_key_env.clone(),
            Field::Workspace => self.workspace = other.workspace.clone(),
            Field::PassEnv => self.pass_env = other.pass_env.clone(),
            Field::MaxTurns => self.max_turns = other.max_turns,
            Field::ReadOnly => self.read_only = other.read_only,
            Field::AgentBin => self.agent_bin = other.agent_bin.clone(),
            Field::PermissionMode => self.permission_mode = other.permission_mode.clone(),
        }
    }

    /// The flags of a resume: `given` (what the command line says, with
    /// `is_given` telling which flags it really carries) completed from the
    /// first run's `recorded` ones. A flag given with another value than
    /// recorded is an error naming both.
    pub fn resume(
        recorded: &Recorded,
        given: &Recorded,
        is_given: impl Fn(Field) -> bool,
    ) -> Result<Recorded, String> {
        let mut out = given.clone();
        let mut differ = Vec::new();
        for field in Field::ALL {
            if !is_given(field) {
                out.take(field, recorded);
            } else if given.show(field) != recorded.show(field) {
                differ.push(format!(
                    "{} is {} here but {} in the first run",
                    field.flag(),
                    given.show(field),
                    recorded.show(field)
                ));
            }
        }
        if differ.is_empty() {
            Ok(out)
        } else {
            Err(format!(
                "{}: a resume reruns the children as the first run ran them; leave those flags out (they are reused) or give the same values",
                differ.join("; ")
            ))
        }
    }

    /// The record as the root's metadata.
    pub fn to_metadata(&self, metadata: &mut serde_json::Map<String, serde_json::Value>) {
        if let Ok(value) = serde_json::to_value(self) {
            metadata.insert(RECORD_KEY.to_owned(), value);
        }
    }

    /// The record in a root's metadata: `Ok(None)` when it has none (an
    /// older version made it), `Err` when it does not read.
    pub fn from_metadata(
        metadata: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Recorded>, String> {
        match metadata.get(RECORD_KEY) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| format!("the executor recorded with the root is damaged ({e})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(program: &[&str]) -> Recorded {
        Recorded {
            executor: "cli".into(),
            program: program.iter().map(|s| s.to_string()).collect(),
            workspace: Some("/src/app".into()),
            ..Recorded::default()
        }
    }

    #[test]
    fn flags_left_out_are_taken_from_the_record() {
        let first = cli(&["sh", "-c", "exit 3"]);
        let nothing = Recorded {
            executor: "echo".into(),
            workspace: Some("/elsewhere".into()),
            ..Recorded::default()
        };
        assert_eq!(Recorded::resume(&first, &nothing, |_| false), Ok(first));
    }

    #[test]
    fn a_flag_given_again_must_say_the_same() {
        let first = cli(&["sh", "-c", "exit 3"]);
        let same = cli(&["sh", "-c", "exit 3"]);
        let given = |f: Field| matches!(f, Field::Executor | Field::Program);
        assert_eq!(Recorded::resume(&first, &same, given), Ok(first.clone()));
        let echo = Recorded {
            executor: "echo".into(),
            ..Recorded::default()
        };
        let e = Recorded::resume(&first, &echo, |f| f == Field::Executor).unwrap_err();
        assert!(
            e.starts_with("--executor is echo here but cli in the first run"),
            "{e}"
        );
        let other = cli(&["true"]);
        let e = Recorded::resume(&first, &other, given).unwrap_err();
        assert!(
            e.contains("is true here but sh -c exit 3 in the first run"),
            "{e}"
        );
    }

    #[test]
    fn the_record_round_trips_through_metadata_and_holds_no_secret() {
        let mut r = cli(&["claude", "-p", "{assignment}"]);
        r.api_key_env = Some("MY_KEY".into());
        r.pass_env = vec!["GH_TOKEN".into()];
        let mut m = serde_json::Map::new();
        r.to_metadata(&mut m);
        assert_eq!(Recorded::from_metadata(&m), Ok(Some(r)));
        assert_eq!(Recorded::from_metadata(&serde_json::Map::new()), Ok(None));
    }
}
