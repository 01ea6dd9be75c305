"""Claude Code as the MCP client of `bamboo-worker mcp` (issue 21).

Run by tests/tests/agents/mcp_claude.rs as
`python claude_client.py CLAUDE_BIN WORKER_BIN WORK_DIR`. Starts a scripted
fake Anthropic Messages server on 127.0.0.1 (the only thing mocked), then runs
`claude -p` with the worker as its MCP server. The scripted model calls the
SubAgent tool to create an echo child, then `wait`s for it (with the id the
create returned), then answers with the child's result; the test checks that
result reaches Claude's final text. Prints `ok claude` and exits 0, or fails
with an assertion saying what differed.
"""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SUBAGENT = "mcp__bamboo__SubAgent"
WAIT = "mcp__bamboo__wait"
ASSIGNMENT = "greet the fleet"
PATIENCE = 120


def sse(events: list) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def message(blocks: list, stop_reason: str) -> bytes:
    """An Anthropic Messages stream of `blocks` (text or tool_use)."""
    events = [{"type": "message_start", "message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": "claude-fake",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1}}}]
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": i,
                           "content_block": {"type": "text", "text": ""}})
            events.append({"type": "content_block_delta", "index": i,
                           "delta": {"type": "text_delta", "text": block["text"]}})
        else:
            events.append({"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
            events.append({"type": "content_block_delta", "index": i, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
        events.append({"type": "content_block_stop", "index": i})
    events.append({"type": "message_delta",
                   "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                   "usage": {"output_tokens": 5}})
    events.append({"type": "message_stop"})
    return sse(events)


def tool_results(body: dict) -> dict:
    """tool_use_id -> result text, from the last user message."""
    out = {}
    for msg in reversed(body.get("messages", [])):
        if msg.get("role") != "user" or isinstance(msg.get("content"), str):
            continue
        for part in msg["content"]:
            if part.get("type") == "tool_result":
                content = part.get("content")
                if isinstance(content, list):
                    content = "".join(c.get("text", "") for c in content if c.get("type") == "text")
                out[part["tool_use_id"]] = content or ""
        break
    return out


class Model:
    """The script: create a child, wait for it, report its result."""

    def __init__(self):
        self.tool_lists = []
        self.lock = threading.Lock()

    def reply(self, body: dict) -> bytes:
        tools = {t.get("name"): t for t in body.get("tools", [])}
        if SUBAGENT not in tools:
            # A side request (titles, summaries): no tools of ours, plain text.
            return message([{"type": "text", "text": "ok"}], "end_turn")
        with self.lock:
            self.tool_lists.append(tools)
        results = tool_results(body)
        if "toolu_wait" in results:
            waited = json.loads(results["toolu_wait"])
            child = waited["result"]["children"][0]
            return message([{"type": "text",
                             "text": f"The child finished with: {child['result']}"}], "end_turn")
        if "toolu_create" in results:
            created = json.loads(results["toolu_create"])
            assert created["success"] is True, created
            child = created["result"]["child_session_id"]
            return message([{"type": "tool_use", "id": "toolu_wait", "name": WAIT, "input": {
                "child_session_ids": [child], "timeout_secs": 60}}], "tool_use")
        return message([{"type": "tool_use", "id": "toolu_create", "name": SUBAGENT, "input": {
            "action": "create", "title": "Greeter", "responsibility": "greetings",
            "subagent_type": "writer", "prompt": ASSIGNMENT, "auto_run": True}}], "tool_use")


def serve(model: Model) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            path = self.path.split("?")[0]
            if path == "/v1/messages/count_tokens":
                self.answer(200, "application/json", b'{"input_tokens": 10}')
            elif path == "/v1/messages":
                self.answer(200, "text/event-stream", model.reply(body))
            else:
                self.answer(404, "application/json", b'{"type":"error","error":{"type":"not_found_error","message":"no such path"}}')

        def do_GET(self):
            self.answer(404, "application/json", b'{"type":"error","error":{"type":"not_found_error","message":"no such path"}}')

        def answer(self, status, ctype, data):
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(claude: str, worker: str, work: str, children: str = "echo") -> None:
    model = Model()
    server = serve(model)
    home = os.path.join(work, "home")
    os.makedirs(home, exist_ok=True)
    config = os.path.join(work, "mcp.json")
    with open(config, "w") as f:
        args = ["mcp", "--data-dir", os.path.join(work, "data"), "--executor", children]
        if children == "claude":
            # The children are Claude Code too, on the same scripted server:
            # their requests carry no bamboo tools, so it answers them "ok".
            args += ["--agent-bin", claude, "--model", "anthropic/claude-fake",
                     "--base-url", f"http://127.0.0.1:{server.server_address[1]}",
                     "--api-key-env", "CHILD_CLAUDE_KEY", "--approve", "all"]
        json.dump({"mcpServers": {"bamboo": {"command": worker, "args": args}}}, f)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    env.update({
        "HOME": home,
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "ANTHROPIC_API_KEY": "fake-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "ENABLE_TOOL_SEARCH": "false",
        "CHILD_CLAUDE_KEY": "fake-child-key",
    })
    run = subprocess.run(
        [claude, "-p", "Use the fleet to greet.", "--mcp-config", config, "--strict-mcp-config",
         "--allowedTools", f"{SUBAGENT},{WAIT}", "--output-format", "stream-json", "--verbose"],
        env=env, cwd=work, capture_output=True, text=True, timeout=PATIENCE,
    )
    server.shutdown()
    lines = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    init = next((l for l in lines if l.get("type") == "system" and l.get("subtype") == "init"), None)
    assert init is not None, f"no init line:\n{run.stdout}\n{run.stderr}"
    servers = {s["name"]: s["status"] for s in init.get("mcp_servers", [])}
    assert servers.get("bamboo") == "connected", servers
    result = next((l for l in lines if l.get("type") == "result"), None)
    assert result is not None, f"no result line:\n{run.stdout}\n{run.stderr}"
    assert run.returncode == 0, f"claude exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    final = result.get("result", "")
    expected = f"Assignment: {ASSIGNMENT}" if children == "echo" else "ok"
    assert "The child finished with:" in final and final.rstrip().endswith(expected), final
    assert model.tool_lists, "the model never saw the bamboo tools"
    schema = model.tool_lists[0][SUBAGENT]["input_schema"]
    assert "create" in schema["properties"]["action"]["enum"], schema
    print("ok claude")


if __name__ == "__main__":
    main(*sys.argv[1:5])
