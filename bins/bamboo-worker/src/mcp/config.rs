//! `--print-config`: the snippet that adds this server to a client.

use anyhow::Context;

use super::args::{ClientKind, McpArgs};

/// The snippet for `client`, running this program with `args`' flags.
pub fn snippet(client: ClientKind, _args: &McpArgs) -> anyhow::Result<String> {
    let program =
        std::env::current_exe().context("cannot find this program's own path to print it")?;
    let program = program.to_string_lossy();
    Ok(match client {
        ClientKind::Claude => format!("claude mcp add bamboo -- {program} mcp\n"),
        ClientKind::Codex => {
            format!("[mcp_servers.bamboo]\ncommand = {program:?}\nargs = [\"mcp\"]\n")
        }
        ClientKind::Json => format!(
            "{}\n",
            serde_json::json!({"mcpServers": {"bamboo": {"command": program, "args": ["mcp"]}}})
        ),
    })
}
