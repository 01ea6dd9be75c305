//! Coding agents and MCP: the real Claude Code and Codex binaries as
//! children, and `bamboo-worker mcp` driven by the MCP Python SDK, raw stdio
//! and Claude Code. One test binary, so the suite links the world once for
//! all of them.

// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod coding_agents;
mod mcp_claude;
mod mcp_server;
mod mcp_stdio;
