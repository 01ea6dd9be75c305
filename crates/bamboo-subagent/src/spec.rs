//! The ProvisionSpec (protocol.md section 2): the one JSON document a parent
//! writes to a worker's stdin.

use std::collections::BTreeMap;

use bamboo_domain::ModelRef;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The largest spec a worker reads from stdin.
pub const MAX_SPEC_BYTES: usize = 8 * 1024 * 1024;
/// Default nested-spawn depth cap (protocol.md 4.3).
pub const DEFAULT_MAX_SPAWN_DEPTH: u32 = 4;
/// Default idle timeout of a reusable worker, seconds.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn protocol_version() -> u32 {
    PROTOCOL_VERSION
}

/// Everything a worker needs to become one actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionSpec {
    /// Protocol version, `1`.
    #[serde(default = "protocol_version")]
    pub version: u32,
    /// Who this actor is.
    pub identity: Identity,
    /// Which engine runs the assignments.
    pub executor: ExecutorSpec,
    /// Directory of the discovery fabric to register into.
    pub fabric_dir: String,
    /// The actor's own storage root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_dir: Option<String>,
    /// Working directory for file operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Model, already resolved by the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// Tools hidden from the child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_tools: Option<Vec<String>>,
    /// Time and round limits.
    #[serde(default, skip_serializing_if = "is_default")]
    pub limits: Limits,
    /// Credentials and the worker's bearer token. Never logged.
    #[serde(default, skip_serializing_if = "is_default")]
    pub secrets: Secrets,
    /// Warm, multi-run worker.
    #[serde(default, skip_serializing_if = "is_default")]
    pub reusable: bool,
    /// Where the actor runs.
    #[serde(default, skip_serializing_if = "is_default")]
    pub placement: Placement,
    /// What the actor may do.
    #[serde(default, skip_serializing_if = "is_default")]
    pub capabilities: Capabilities,
    /// The reference's mailbox bus (the worker dials home instead of
    /// listening). Not implemented here: a spec that sets it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<serde_json::Value>,
}

/// Who an actor is (protocol.md 2, `identity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Unique id of the child; also the fabric record's name.
    pub child_id: String,
    /// The parent session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Project the child belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_key: Option<String>,
    /// Sub-agent role.
    #[serde(default)]
    pub role: String,
    /// Spawn depth: root orchestrator 0, its children 1, ...
    #[serde(default)]
    pub depth: u32,
}

/// Declares the executor kinds once: each kind's Rust name and wire tag.
/// [`ExecutorSpec::kind`] matches every variant exhaustively, so a new
/// executor cannot compile without its line here, and the spec parser's
/// list of known kinds is this list.
macro_rules! executor_kinds {
    ($($(#[$doc:meta])* $variant:ident => $wire:literal),* $(,)?) => {
        /// The kind of an executor, without its configuration.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ExecutorKind {
            $($(#[$doc])* $variant),*
        }

        impl ExecutorKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ExecutorKind] = &[$(ExecutorKind::$variant),*];

            /// The wire `kind` tag.
            pub fn wire(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire),*
                }
            }

            /// The kind of a wire tag, if this build knows it.
            pub fn from_wire(tag: &str) -> Option<Self> {
                match tag {
                    $($wire => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

executor_kinds! {
    /// `echo`: words back (protocol.md 5).
    Echo => "echo",
    /// `bamboo_runtime`: the built-in agent loop.
    BambooRuntime => "bamboo_runtime",
    /// `cli_adapter`: an external command-line agent.
    CliAdapter => "cli_adapter",
    /// `claude_code`: Claude Code over its stream-json protocol.
    ClaudeCode => "claude_code",
    /// `codex`: the Codex CLI (`exec --json` or `app-server`).
    Codex => "codex",
}

impl std::fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wire())
    }
}

/// The engine that runs assignments, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExecutorSpec {
    /// Echo words back (protocol.md 5).
    Echo,
    /// The built-in agent loop over an OpenAI-compatible endpoint.
    BambooRuntime,
    /// Wrap an external command-line agent.
    CliAdapter {
        /// Program to run.
        command: String,
        /// Its arguments; `{assignment}` is replaced by the assignment.
        #[serde(default)]
        args: Vec<String>,
    },
    /// Claude Code, driven over its stream-json protocol.
    ClaudeCode(ClaudeCodeSpec),
    /// The Codex CLI.
    Codex(CodexSpec),
}

/// How a `claude_code` child runs (the reference's field names; every field
/// optional, unknown ones ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClaudeCodeSpec {
    /// Path of the `claude` program; absent: `claude` on the worker's PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// Model name passed as `--model`; absent: the spec's `model.model`, else
    /// Claude Code's own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Claude Code's `--permission-mode` (`default`, `acceptEdits`, `plan`,
    /// `bypassPermissions`, ...); absent: `default`, always passed explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    /// `true`: the agent sees the user's own Claude setup (`~/.claude`,
    /// settings, MCP servers). Absent/false: a private config directory and
    /// `--strict-mcp-config --setting-sources project`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit_user_config: Option<bool>,
    /// Names of worker environment variables passed to the agent as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_env: Option<Vec<String>>,
}

/// How a `codex` child runs (the reference's field names; every field
/// optional, unknown ones ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodexSpec {
    /// Path of the `codex` program; absent: `codex` on the worker's PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// Model name passed as `-m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `exec` (default) or `app_server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CodexMode>,
    /// Codex's `--sandbox` (`read-only`, `workspace-write`, `danger-full-access`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// `true`: the agent uses the user's own `~/.codex`; otherwise a private
    /// `CODEX_HOME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit_user_config: Option<bool>,
    /// Reference field; accepted and ignored (the key always comes from the
    /// spec's provider credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    /// Base URL of the provider; absent: the credential's `base_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Provider wire API (`responses` default, or `chat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_api: Option<String>,
    /// Reference field naming the key's provider; absent: the spec's
    /// `model.provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_key_ref: Option<String>,
    /// Names of worker environment variables passed to the agent as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_env: Option<Vec<String>>,
    /// Codex's approval policy (`untrusted`, `on-request`, `never`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<String>,
    /// Network access inside a `workspace-write` sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_access: Option<bool>,
    /// Reference field; accepted, and the dangerous bypass is never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_danger_bypass: Option<bool>,
    /// Reference field; accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_profile: Option<String>,
    /// Reference field; accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_owned: Option<bool>,
}

/// How a `codex` child talks to Codex.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodexMode {
    /// `codex exec --json`: one run, events on stdout.
    #[default]
    Exec,
    /// `codex app-server`: JSON-RPC over stdio, approvals relayed.
    AppServer,
}

impl ExecutorSpec {
    /// Its kind (`kind().wire()` is the wire tag).
    pub fn kind(&self) -> ExecutorKind {
        match self {
            Self::Echo => ExecutorKind::Echo,
            Self::BambooRuntime => ExecutorKind::BambooRuntime,
            Self::CliAdapter { .. } => ExecutorKind::CliAdapter,
            Self::ClaudeCode(_) => ExecutorKind::ClaudeCode,
            Self::Codex(_) => ExecutorKind::Codex,
        }
    }
}

/// Time, round and budget limits (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest a run may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_timeout_secs: Option<u64>,
    /// How long a worker waits for a connection before exiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Most model rounds per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rounds: Option<u32>,
    /// What the child may still spend in US dollars (its `max_cost_usd`
    /// minus what its runs cost so far), for an executor that can stop
    /// itself (extension; `claude_code`: `--max-budget-usd`). The engine
    /// enforces the budget either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
}

/// The secrets envelope. Its `Debug` shows no secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// Only the credential of the provider this child uses (least privilege).
    #[serde(default)]
    pub provider_credentials: Vec<ProviderCredential>,
    /// Bearer token the worker requires on every WebSocket upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_auth_token: Option<Secret>,
    /// Environment variables the parent passes on purpose to `cli_adapter`
    /// programs (name → value), set after the secret scrub. Optional; a worker
    /// that does not know it ignores it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pass_env: BTreeMap<String, Secret>,
}

impl Secrets {
    /// The credential for `provider`, if the envelope carries one.
    pub fn credential_for(&self, provider: &str) -> Option<&ProviderCredential> {
        self.provider_credentials
            .iter()
            .find(|c| c.provider == provider)
    }
}

/// One provider's credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderCredential {
    /// Provider name, as in `model.provider`.
    pub provider: String,
    /// The API key.
    pub api_key: Secret,
    /// Base URL of the provider's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Wire dialect of the provider (e.g. `openai`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_type: Option<String>,
}

/// Where the actor runs, tagged by `kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Placement {
    /// A process on this machine.
    #[default]
    Local,
    /// A resident worker reached at `endpoint`.
    Remote {
        /// `wss://host:port` or `ws://...`.
        endpoint: String,
    },
    /// Any worker of a named pool.
    Schedulable {
        /// Pool name.
        pool: String,
    },
}

/// What the actor may do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// MCP server configuration, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<serde_json::Value>,
    /// Directory of skills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skills_dir: Option<String>,
    /// Ask the host before gated actions.
    #[serde(default, skip_serializing_if = "is_default")]
    pub enforce_permissions: bool,
    /// May ask the parent to spawn grandchildren.
    #[serde(default, skip_serializing_if = "is_default")]
    pub nested_spawn: bool,
    /// Skip approvals entirely.
    #[serde(default, skip_serializing_if = "is_default")]
    pub bypass: bool,
    /// No human is available to answer approvals.
    #[serde(default, skip_serializing_if = "is_default")]
    pub no_human_approver: bool,
    /// Nested-spawn depth cap (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_spawn_depth: Option<u32>,
    /// The reference's MCP proxy over its bus. Not implemented here: a spec
    /// that sets it is refused (and with `mcp` too it is invalid anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_proxy: Option<serde_json::Value>,
    /// A read-only reviewer: commands only from a read-only allow-list, no
    /// file writes. Executors that cannot enforce it refuse the spec.
    #[serde(default, skip_serializing_if = "is_default")]
    pub guardian_read_only: bool,
}

impl Capabilities {
    /// The effective depth cap.
    pub fn spawn_depth_cap(&self) -> u32 {
        self.max_spawn_depth.unwrap_or(DEFAULT_MAX_SPAWN_DEPTH)
    }
}

/// Why a spec was refused. Each message is one line naming the problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// Nothing arrived on stdin.
    #[error(
        "provision spec is empty: write one JSON ProvisionSpec to the worker's stdin and close it"
    )]
    Empty,
    /// More than [`MAX_SPEC_BYTES`].
    #[error("provision spec is larger than {limit} bytes: send a smaller spec")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Bytes that are not UTF-8.
    #[error("provision spec is not valid UTF-8 (at byte {0}): send UTF-8 JSON")]
    NotUtf8(usize),
    /// Text that is not JSON.
    #[error("provision spec is not JSON: {0}")]
    NotJson(String),
    /// An unknown `executor.kind`.
    #[error("unknown executor kind {0:?}: expected one of echo, bamboo_runtime, cli_adapter, claude_code, codex")]
    UnknownExecutor(String),
    /// JSON that does not fit the schema.
    #[error("invalid provision spec: {0}")]
    Invalid(String),
    /// Stdin was not closed in time.
    #[error("timed out after {0} ms waiting for the provision spec on stdin: the parent must write the spec and close the pipe")]
    StdinTimeout(u64),
    /// Reading stdin failed.
    #[error("could not read the provision spec from stdin: {0}")]
    Io(String),
}

impl ProvisionSpec {
    /// A spec for `child_id` running `executor`, registering into `fabric_dir`,
    /// with every optional field at its protocol default (one-shot, local).
    pub fn new(
        child_id: impl Into<String>,
        executor: ExecutorSpec,
        fabric_dir: impl Into<String>,
    ) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            identity: Identity {
                child_id: child_id.into(),
                parent_id: None,
                project_key: None,
                role: String::new(),
                depth: 0,
            },
            executor,
            fabric_dir: fabric_dir.into(),
            storage_dir: None,
            workspace: None,
            model: None,
            disabled_tools: None,
            limits: Limits::default(),
            secrets: Secrets::default(),
            reusable: false,
            placement: Placement::default(),
            capabilities: Capabilities::default(),
            bus: None,
        }
    }

    /// Parses and validates a spec from raw stdin bytes.
    ///
    /// ```
    /// use bamboo_subagent::spec::{ProvisionSpec, SpecError};
    /// let spec = ProvisionSpec::from_slice(br#"{"version":1,"identity":{"child_id":"c1"},
    ///     "executor":{"kind":"echo"},"fabric_dir":"/tmp/f"}"#).unwrap();
    /// assert_eq!(spec.identity.child_id, "c1");
    /// assert_eq!(ProvisionSpec::from_slice(b"  "), Err(SpecError::Empty));
    /// ```
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SpecError> {
        if bytes.len() > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge {
                limit: MAX_SPEC_BYTES,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| SpecError::NotUtf8(e.valid_up_to()))?;
        if text.trim().is_empty() {
            return Err(SpecError::Empty);
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SpecError::NotJson(e.to_string()))?;
        if let Some(kind) = value
            .get("executor")
            .and_then(|e| e.get("kind"))
            .and_then(|k| k.as_str())
        {
            if ExecutorKind::from_wire(kind).is_none() {
                return Err(SpecError::UnknownExecutor(kind.to_owned()));
            }
        }
        let spec: Self =
            serde_json::from_value(value).map_err(|e| SpecError::Invalid(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what serde cannot: version, a child id usable as a file name, a
    /// fabric directory.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.version != PROTOCOL_VERSION {
            return Err(SpecError::Invalid(format!(
                "unsupported protocol version {} (this worker speaks {PROTOCOL_VERSION})",
                self.version
            )));
        }
        let id = &self.identity.child_id;
        if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\', '\0']) || id.len() > 200
        {
            return Err(SpecError::Invalid(format!(
                "identity.child_id {id:?} must be 1-200 characters, not start with '.', and contain no path separators"
            )));
        }
        if self.fabric_dir.trim().is_empty() {
            return Err(SpecError::Invalid("fabric_dir is empty".into()));
        }
        self.refuse_unimplemented()
    }

    /// Spec fields this worker does not implement are refused, not ignored
    /// (F17): a parent relying on them must learn at once that they do
    /// nothing here.
    fn refuse_unimplemented(&self) -> Result<(), SpecError> {
        let caps = &self.capabilities;
        if caps.mcp.is_some() && caps.mcp_proxy.is_some() {
            return Err(SpecError::Invalid(
                "capabilities.mcp and capabilities.mcp_proxy are mutually exclusive: set one"
                    .into(),
            ));
        }
        if caps.mcp_proxy.is_some() {
            return Err(SpecError::Invalid(
                "capabilities.mcp_proxy is not supported by this worker (no MCP proxy over a bus): leave it unset".into(),
            ));
        }
        // Accepting these and doing nothing would leave a child without the
        // tools its parent thinks it gave it.
        if caps.mcp.is_some() {
            return Err(SpecError::Invalid(
                "capabilities.mcp is not supported by this worker (no executor here connects to MCP servers pushed by the parent): leave it unset, or configure MCP servers in the child program itself".into(),
            ));
        }
        if caps.skills_dir.is_some() {
            return Err(SpecError::Invalid(
                "capabilities.skills_dir is not supported by this worker (no executor here loads skills): leave it unset".into(),
            ));
        }
        if self.bus.is_some() {
            return Err(SpecError::Invalid(
                "bus is not supported by this worker: it listens on its own endpoint and publishes it in fabric_dir; leave bus unset".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"version":1,
 "identity":{"child_id":"c1","parent_id":"p1","role":"researcher","depth":1},
 "executor":{"kind":"echo"},
 "fabric_dir":"/run/user/1000/bamboo/agents",
 "reusable":true,
 "limits":{"idle_timeout_secs":300}}"#;

    #[test]
    fn spec_fields_we_do_not_implement_are_refused_by_name() {
        let with = |extra: &str| {
            ProvisionSpec::from_slice(
                format!(r#"{{"identity":{{"child_id":"c"}},"executor":{{"kind":"echo"}},"fabric_dir":"/f",{extra}}}"#)
                    .as_bytes(),
            )
        };
        let refused = |extra: &str, name: &str| match with(extra) {
            Err(SpecError::Invalid(m)) => assert!(m.contains(name), "{m}"),
            other => panic!("{extra} was not refused: {other:?}"),
        };
        refused(r#""bus":{"url":"ws://x"}"#, "bus");
        refused(r#""capabilities":{"mcp_proxy":{}}"#, "mcp_proxy");
        refused(
            r#""capabilities":{"mcp":{},"mcp_proxy":{}}"#,
            "mutually exclusive",
        );
        let guardian = with(r#""capabilities":{"guardian_read_only":true}"#).unwrap();
        assert!(guardian.capabilities.guardian_read_only);
    }

    #[test]
    fn every_kind_is_its_specs_serde_tag() {
        let samples = [
            ExecutorSpec::Echo,
            ExecutorSpec::BambooRuntime,
            ExecutorSpec::CliAdapter {
                command: "c".into(),
                args: vec![],
            },
            ExecutorSpec::ClaudeCode(ClaudeCodeSpec::default()),
            ExecutorSpec::Codex(CodexSpec::default()),
        ];
        assert_eq!(samples.len(), ExecutorKind::ALL.len());
        for spec in samples {
            let json = serde_json::to_value(&spec).unwrap();
            assert_eq!(json["kind"], spec.kind().wire());
            assert_eq!(
                ExecutorKind::from_wire(spec.kind().wire()),
                Some(spec.kind())
            );
        }
        assert_eq!(ExecutorKind::from_wire("mcp"), None);
    }

    #[test]
    fn agent_kinds_take_the_references_fields_and_ignore_unknown_ones() {
        let claude: ExecutorSpec = serde_json::from_str(
            r#"{"kind":"claude_code","binary":"/b/claude","model":"m","permission_mode":"default",
               "inherit_user_config":false,"forward_env":["X"],"future":1}"#,
        )
        .unwrap();
        let ExecutorSpec::ClaudeCode(c) = &claude else {
            panic!("{claude:?}")
        };
        assert_eq!(c.binary.as_deref(), Some("/b/claude"));
        assert_eq!(c.forward_env.as_deref(), Some(&["X".to_owned()][..]));
        assert_eq!(
            serde_json::to_string(&ExecutorSpec::ClaudeCode(ClaudeCodeSpec::default())).unwrap(),
            r#"{"kind":"claude_code"}"#
        );
        let codex: ExecutorSpec = serde_json::from_str(
            r#"{"kind":"codex","mode":"app_server","sandbox":"workspace-write","approval_policy":"on-request",
               "wire_api":"responses","network_access":true,"allow_danger_bypass":false,"auth_mode":"api_key",
               "provider_key_ref":"openai","permission_profile":"p","workspace_owned":true,"base_url":"http://x"}"#,
        )
        .unwrap();
        let ExecutorSpec::Codex(x) = &codex else {
            panic!("{codex:?}")
        };
        assert_eq!(x.mode, Some(CodexMode::AppServer));
        assert_eq!(x.sandbox.as_deref(), Some("workspace-write"));
    }

    #[test]
    fn protocol_example_parses_and_round_trips() {
        let spec = ProvisionSpec::from_slice(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(spec.identity.child_id, "c1");
        assert_eq!(spec.identity.parent_id.as_deref(), Some("p1"));
        assert_eq!(spec.identity.depth, 1);
        assert_eq!(spec.executor, ExecutorSpec::Echo);
        assert!(spec.reusable);
        assert_eq!(spec.limits.idle_timeout_secs, Some(300));
        assert_eq!(spec.placement, Placement::Local);
        let back: serde_json::Value = serde_json::to_value(&spec).unwrap();
        let orig: serde_json::Value = serde_json::from_str(EXAMPLE).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn defaults_apply_and_unknown_fields_are_ignored() {
        let spec = ProvisionSpec::from_slice(
            br#"{"identity":{"child_id":"c","future":1},"executor":{"kind":"echo"},"fabric_dir":"/f","new_field":{}}"#,
        )
        .unwrap();
        assert_eq!(spec.version, 1);
        assert_eq!(spec.identity.role, "");
        assert_eq!(spec.identity.depth, 0);
        assert!(!spec.reusable);
        assert_eq!(spec.capabilities.spawn_depth_cap(), 4);
        assert!(spec.secrets.provider_credentials.is_empty());
    }

    #[test]
    fn every_tagged_shape_matches_protocol_literals() {
        let cli: ExecutorSpec =
            serde_json::from_str(r#"{"kind":"cli_adapter","command":"claude","args":["-p"]}"#)
                .unwrap();
        assert_eq!(
            cli,
            ExecutorSpec::CliAdapter {
                command: "claude".into(),
                args: vec!["-p".into()]
            }
        );
        assert_eq!(
            serde_json::to_string(&ExecutorSpec::BambooRuntime).unwrap(),
            r#"{"kind":"bamboo_runtime"}"#
        );
        let remote: Placement =
            serde_json::from_str(r#"{"kind":"remote","endpoint":"wss://host:9"}"#).unwrap();
        assert_eq!(
            remote,
            Placement::Remote {
                endpoint: "wss://host:9".into()
            }
        );
        let pool: Placement =
            serde_json::from_str(r#"{"kind":"schedulable","pool":"gpu"}"#).unwrap();
        assert_eq!(pool, Placement::Schedulable { pool: "gpu".into() });
        assert_eq!(
            serde_json::to_string(&Placement::Local).unwrap(),
            r#"{"kind":"local"}"#
        );
    }

    #[test]
    fn secrets_and_capabilities_parse_and_hide_in_debug() {
        let spec = ProvisionSpec::from_slice(
            br#"{"version":1,"identity":{"child_id":"c"},"executor":{"kind":"bamboo_runtime"},"fabric_dir":"/f",
            "model":{"provider":"openai","model":"gpt-4o"},
            "secrets":{"provider_credentials":[{"provider":"openai","api_key":"sk-XYZ","base_url":"http://127.0.0.1:1/v1","provider_type":"openai"}],"worker_auth_token":"tok-ABC","pass_env":{"FOO_TOKEN":"tok-PASS"}},
            "capabilities":{"enforce_permissions":true,"nested_spawn":true,"max_spawn_depth":2},
            "disabled_tools":["bash"],"limits":{"run_timeout_secs":5,"max_rounds":3}}"#,
        )
        .unwrap();
        let dbg = format!("{spec:?}");
        assert!(
            !dbg.contains("sk-XYZ") && !dbg.contains("tok-ABC") && !dbg.contains("tok-PASS"),
            "{dbg}"
        );
        assert_eq!(spec.secrets.pass_env["FOO_TOKEN"].expose(), "tok-PASS");
        assert_eq!(
            spec.secrets
                .credential_for("openai")
                .unwrap()
                .api_key
                .expose(),
            "sk-XYZ"
        );
        assert_eq!(spec.capabilities.spawn_depth_cap(), 2);
        assert!(spec.capabilities.enforce_permissions && spec.capabilities.nested_spawn);
        assert_eq!(spec.limits.max_rounds, Some(3));
    }

    #[test]
    fn bad_specs_give_one_clear_error_each() {
        assert_eq!(ProvisionSpec::from_slice(b""), Err(SpecError::Empty));
        assert!(matches!(
            ProvisionSpec::from_slice(b"{nope"),
            Err(SpecError::NotJson(_))
        ));
        assert!(matches!(
            ProvisionSpec::from_slice(b"\xff\xfe"),
            Err(SpecError::NotUtf8(0))
        ));
        let missing = ProvisionSpec::from_slice(
            br#"{"identity":{},"executor":{"kind":"echo"},"fabric_dir":"/f"}"#,
        );
        assert!(
            matches!(&missing, Err(SpecError::Invalid(m)) if m.contains("child_id")),
            "{missing:?}"
        );
        let unknown = ProvisionSpec::from_slice(
            br#"{"identity":{"child_id":"c"},"executor":{"kind":"magic"},"fabric_dir":"/f"}"#,
        );
        assert_eq!(unknown, Err(SpecError::UnknownExecutor("magic".into())));
        let big = vec![b' '; MAX_SPEC_BYTES + 1];
        assert!(matches!(
            ProvisionSpec::from_slice(&big),
            Err(SpecError::TooLarge { .. })
        ));
        let traversal = ProvisionSpec::from_slice(
            br#"{"identity":{"child_id":"../x"},"executor":{"kind":"echo"},"fabric_dir":"/f"}"#,
        );
        assert!(matches!(traversal, Err(SpecError::Invalid(_))));
        let version = ProvisionSpec::from_slice(br#"{"version":2,"identity":{"child_id":"c"},"executor":{"kind":"echo"},"fabric_dir":"/f"}"#);
        assert!(matches!(version, Err(SpecError::Invalid(m)) if m.contains("version")));
    }

    #[test]
    fn capabilities_no_executor_implements_are_refused_by_name() {
        for (caps, name) in [
            (r#"{"mcp":{"servers":[]}}"#, "capabilities.mcp "),
            (r#"{"skills_dir":"/s"}"#, "capabilities.skills_dir"),
        ] {
            let spec = format!(
                r#"{{"version":1,"identity":{{"child_id":"c"}},"executor":{{"kind":"echo"}},"fabric_dir":"/f","capabilities":{caps}}}"#
            );
            let refused = ProvisionSpec::from_slice(spec.as_bytes());
            assert!(
                matches!(&refused, Err(SpecError::Invalid(m)) if m.contains(name) && !m.contains('\n')),
                "{refused:?}"
            );
        }
    }
}
