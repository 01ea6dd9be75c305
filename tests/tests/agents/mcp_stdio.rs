//! `bamboo-worker mcp` over raw stdio (F16, issue 21): every line on its stdout
//! is a JSON-RPC message, even while workers start and log at debug level
//! (a worker prints `ready ws://...` on its own stdout; nothing of it may
//! reach the client), and `--root` continues a root session in a later
//! process, whose children are then reachable again (C9 keeps them to it).
//! Flags that cannot work are refused with exit 2 and one line; an llm
//! executor's model and key reach the children (a scripted model server).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bamboo_e2e::{worker_bin, PATIENCE};
use bamboo_testkit::{Reply, ScriptedServer};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// One `bamboo-worker mcp` process and the lines it wrote so far.
struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    seen: Vec<Value>,
    next_id: u64,
}

impl Server {
    async fn start(data: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data, extra, &[]).await
    }

    async fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(worker_bin())
            .args(["mcp", "--data-dir"])
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut server = Self {
            child,
            stdin,
            stdout,
            seen: Vec::new(),
            next_id: 1,
        };
        let init = server
            .request(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "raw-stdio-test", "version": "1"}}),
            )
            .await;
        assert_eq!(init["result"]["serverInfo"]["name"], "bamboo-fleet");
        server
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        server
    }

    async fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Sends a request and reads lines until its response; every line must
    /// be a JSON-RPC message.
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        loop {
            let line = tokio::time::timeout(PATIENCE, self.stdout.next_line())
                .await
                .expect("an answer in time")
                .unwrap()
                .expect("stdout open");
            let message = protocol_line(&line);
            self.seen.push(message.clone());
            if message.get("id") == Some(&json!(id)) {
                return message;
            }
        }
    }

    async fn tool(&mut self, name: &str, arguments: Value) -> Value {
        let reply = self
            .request(
                "tools/call",
                json!({"name": name, "arguments": arguments, "_meta": {"progressToken": "p"}}),
            )
            .await;
        reply["result"]["structuredContent"].clone()
    }

    /// Closes stdin; the server ends cleanly and writes nothing but protocol.
    async fn close(mut self) -> Vec<Value> {
        drop(self.stdin);
        while let Some(line) = tokio::time::timeout(PATIENCE, self.stdout.next_line())
            .await
            .expect("stdout closes after stdin")
            .unwrap()
        {
            self.seen.push(protocol_line(&line));
        }
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the server exits after its client leaves")
            .unwrap();
        assert!(status.success(), "{status}");
        self.seen
    }
}

fn protocol_line(line: &str) -> Value {
    let message: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("stdout carried a line that is not JSON ({e}): {line:?}"));
    assert_eq!(message["jsonrpc"], "2.0", "not JSON-RPC: {line}");
    message
}

#[tokio::test]
async fn stdout_carries_only_protocol_and_root_continues_a_session() {
    let data = tempfile::tempdir().unwrap();
    let workspace = data.path().to_str().unwrap().to_owned();
    let mut server = Server::start(data.path(), &["--workspace", &workspace]).await;
    let created = server
        .tool(
            "SubAgent",
            json!({"action": "create", "title": "Raw", "responsibility": "r",
                   "subagent_type": "tester", "prompt": "over raw stdio", "auto_run": true}),
        )
        .await;
    assert_eq!(created["success"], true, "{created}");
    let child = created["result"]["child_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let waited = server
        .tool(
            "wait",
            json!({"child_session_ids": [child], "timeout_secs": 30}),
        )
        .await;
    assert_eq!(waited["result"]["ended"], json!([child]), "{waited}");
    let read = server
        .request(
            "resources/read",
            json!({"uri": format!("bamboo://sessions/{child}")}),
        )
        .await;
    let transcript: Value =
        serde_json::from_str(read["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    let root = transcript["parent_id"].as_str().unwrap().to_owned();
    assert_eq!(
        transcript["workspace"], workspace,
        "the child works in --workspace"
    );
    let read = server
        .request(
            "resources/read",
            json!({"uri": format!("bamboo://sessions/{root}")}),
        )
        .await;
    let root_session: Value =
        serde_json::from_str(read["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        root_session["title"], "raw-stdio-test",
        "titled with the client's name"
    );
    assert_eq!(root_session["workspace"], workspace);
    let seen = server.close().await;
    assert!(seen.len() >= 4, "{seen:?}");

    // A later process continues the same root: its child is there.
    let mut again = Server::start(data.path(), &["--root", &root]).await;
    let listed = again.tool("SubAgent", json!({"action": "list"})).await;
    assert_eq!(listed["result"]["parent_session_id"], root, "{listed}");
    assert_eq!(listed["result"]["children"][0]["child_session_id"], child);
    let detail = again
        .tool(
            "SubAgent",
            json!({"action": "get", "child_session_id": child}),
        )
        .await;
    assert_eq!(detail["result"]["last_run_status"], "completed", "{detail}");
    again.close().await;

    // Without --root, a new connection is a new root: the child is not its.
    let mut other = Server::start(data.path(), &[]).await;
    let denied = other
        .tool(
            "SubAgent",
            json!({"action": "get", "child_session_id": child}),
        )
        .await;
    assert_eq!(denied["success"], false, "{denied}");
    other.close().await;
}

/// Runs `bamboo-worker mcp ARGS`, asserts it is refused with exit 2 and
/// one line on stderr, and returns that line.
async fn refused(args: &[&std::ffi::OsStr]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(worker_bin())
            .arg("mcp")
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[tokio::test]
async fn an_unknown_root_is_refused_with_exit_2() {
    let data = tempfile::tempdir().unwrap();
    let stderr = refused(&[
        "--root".as_ref(),
        "no-such-root".as_ref(),
        "--data-dir".as_ref(),
        data.path().as_os_str(),
    ])
    .await;
    assert!(stderr.contains("--root no-such-root"), "{stderr}");
}

#[tokio::test]
async fn a_non_loopback_listen_without_tls_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let token = bamboo_e2e::remote::token_file(dir.path(), "a-long-random-token");
    let data = dir.path().join("data");
    let stderr = refused(&[
        "--listen".as_ref(),
        "0.0.0.0:0".as_ref(),
        "--token-file".as_ref(),
        token.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
    .await;
    assert!(stderr.contains("--tls-cert"), "{stderr}");
}

#[tokio::test]
async fn llm_children_get_the_model_and_key_of_the_flags() {
    let model = ScriptedServer::start(vec![Reply::text("hello from the model")])
        .await
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_with_env(
        data.path(),
        &[
            "--executor",
            "llm",
            "--model",
            "openai/scripted-model",
            "--base-url",
            &model.base_url,
            "--api-key-env",
            "MCP_TEST_KEY",
        ],
        &[("MCP_TEST_KEY", "sk-mcp-test")],
    )
    .await;
    let created = server
        .tool(
            "SubAgent",
            json!({"action": "create", "title": "Thinker", "responsibility": "r",
                   "subagent_type": "tester", "prompt": "say hello", "auto_run": true}),
        )
        .await;
    assert_eq!(
        created["result"]["model"], "openai/scripted-model",
        "{created}"
    );
    let child = created["result"]["child_session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let waited = server
        .tool(
            "wait",
            json!({"child_session_ids": [child], "timeout_secs": 30}),
        )
        .await;
    let ended = &waited["result"]["children"][0];
    assert_eq!(ended["status"], "completed", "{waited}");
    assert_eq!(ended["result"], "hello from the model", "{waited}");
    server.close().await;
    let asked = model.received();
    assert_eq!(asked[0].body["model"], "scripted-model");
    assert!(
        asked[0]
            .headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer sk-mcp-test"),
        "{:?}",
        asked[0].headers
    );
}
