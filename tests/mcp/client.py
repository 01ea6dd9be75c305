"""Drives `bamboo-worker mcp` with the official MCP Python SDK client.

Run by tests/tests/agents/mcp_server.rs (issue 21) as
`python client.py WORKER_BIN DATA_DIR SCENARIO`; prints `ok SCENARIO` and
exits 0, or fails with an assertion saying what differed.

Scenarios:
- children: initialize, list tools, three echo children with auto_run,
  wait (with progress), get each, steer one, cancel one, resources.
- approvals: a child's approval answered through the `approvals` tool (the
  client declares no elicitation).
- elicitation: the same request answered by the person through an
  elicitation (one accepted, one declined).
- http: the streamable HTTP transport with a bearer token (401 without it;
  the token never in the server's trace log).
- https: the same over TLS on a non-loopback address (certificate from the
  Rust test, in MCP_TLS_CERT, MCP_TLS_KEY, MCP_TLS_CA).
"""

import asyncio
import json
import sys
import time
import warnings

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPDeprecationWarning

# The server speaks protocol 2025-11-25, where resources/subscribe is current.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

# The echo executor echoes the rendered assignment (title, responsibility,
# role, then "Assignment: <prompt>"); its directive words act where they stand.
# Arguments and result fields of the reference's SubAgent tool
# (shared/subagent-tool.md).
ACTIONS = {"create", "list", "get", "update", "run", "send_message", "cancel", "delete"}
GET_FIELDS = {
    "child_session_id", "title", "model", "pinned", "message_count", "is_running",
    "last_run_status", "last_run_error", "responsibility", "subagent_type", "prompt",
    "latest_user_message", "runtime_kind", "external_protocol", "external_agent_id",
    "a2a_context_id", "a2a_latest_task_id", "a2a_last_state", "runner_started_at",
    "runner_completed_at", "last_tool_name", "last_tool_phase", "last_event_at",
    "round_count", "has_pending_injected_messages", "guidance",
}
NOTE_MESSAGE_QUEUED = (
    "Message queued for the child session. It will be picked up at the next turn "
    "boundary without canceling current progress."
)
PATIENCE = 30.0


def structured(result: types.CallToolResult) -> dict:
    """The tool's JSON: structured content, and the text rendering agrees."""
    assert result.structured_content is not None, f"no structuredContent: {result}"
    assert result.content and result.content[0].type == "text", f"no text content: {result}"
    assert json.loads(result.content[0].text) == result.structured_content, result
    return result.structured_content


async def subagent(session: ClientSession, **args) -> dict:
    out = structured(await session.call_tool("SubAgent", args))
    assert out["success"] is True, f"SubAgent {args} failed: {out}"
    return out["result"]


async def create(session: ClientSession, title: str, prompt: str) -> str:
    result = await subagent(
        session, action="create", title=title, responsibility="testing",
        subagent_type="tester", prompt=prompt, auto_run=True,
    )
    assert set(result) == {"child_session_id", "model"}, result
    return result["child_session_id"]


async def wait(session: ClientSession, ids: list, progress=None) -> dict:
    out = structured(await session.call_tool(
        "wait", {"child_session_ids": ids, "timeout_secs": 30}, progress_callback=progress,
    ))
    assert out["success"] is True, out
    return out["result"]


async def wait_until_ended(session: ClientSession, child: str, progress=None) -> dict:
    """Waits (the tool returns once the child is no longer running)."""
    result = await wait(session, [child], progress)
    assert result["timed_out"] is False and result["ended"] == [child], result
    return result["children"][0]


def server(worker: str, data_dir: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=worker, args=["mcp", "--data-dir", data_dir, "--executor", "echo"],
    )


async def children(worker: str, data_dir: str) -> None:
    updated = []

    async def on_message(message) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.append(message.params.uri)

    async with stdio_client(server(worker, data_dir)) as (read, write):
        async with ClientSession(
            read, write, message_handler=on_message,
            client_info=types.Implementation(name="py-sdk-test", version="1.0"),
        ) as session:
            init = await session.initialize()
            assert init.server_info.name == "bamboo-fleet", init
            assert init.capabilities.tools is not None
            assert init.capabilities.resources.subscribe is True, init.capabilities

            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert set(tools) == {"SubAgent", "wait", "approvals"}, set(tools)
            schema = tools["SubAgent"].input_schema
            assert schema["type"] == "object", schema
            assert set(schema["properties"]["action"]["enum"]) == ACTIONS, schema
            for arg in ("title", "responsibility", "subagent_type", "prompt", "auto_run",
                        "child_session_id", "message", "interrupt_running"):
                assert arg in schema["properties"], arg

            quick = await create(session, "Quick", "alpha one")
            steered = await create(session, "Steered", "__steer beta")
            slow = await create(session, "Slow", "__steer gamma")

            listed = await subagent(session, action="list")
            assert listed["count"] == 3, listed
            assert {c["child_session_id"] for c in listed["children"]} == {quick, steered, slow}

            done = await wait_until_ended(session, quick)
            assert done["status"] == "completed" and done["result"].endswith("Assignment: alpha one"), done

            detail = await subagent(session, action="get", child_session_id=quick)
            assert GET_FIELDS <= set(detail), GET_FIELDS - set(detail)
            assert detail["last_run_status"] == "completed", detail
            assert detail["is_running"] is False and detail["subagent_type"] == "tester"

            # Steer the child that waits for a message, while it runs.
            running = await subagent(session, action="get", child_session_id=steered)
            assert running["is_running"] is True, running
            progress = []
            waiting_on = asyncio.Event()

            async def on_progress(value, total, message):
                progress.append((value, message))
                waiting_on.set()

            # The wait reports at once, then as the steered child moves on.
            waiting = asyncio.create_task(wait_until_ended(session, steered, on_progress))
            await asyncio.wait_for(waiting_on.wait(), PATIENCE)
            steer = await subagent(
                session, action="send_message", child_session_id=steered,
                message="steered-word", auto_run=True,
            )
            assert steer["status"] == "message_queued", steer
            assert steer["note"] == NOTE_MESSAGE_QUEUED, steer
            ended = await asyncio.wait_for(waiting, PATIENCE)
            assert ended["status"] == "completed", ended
            assert ended["result"].endswith("Assignment: steered-word beta"), ended
            assert any("generating" in (m or "") for _, m in progress), progress
            assert [v for v, _ in progress] == sorted(v for v, _ in progress), progress
            detail = await subagent(session, action="get", child_session_id=steered)
            assert detail["last_run_status"] == "completed", detail

            cancelled = await subagent(session, action="cancel", child_session_id=slow)
            assert cancelled == {"child_session_id": slow, "status": "cancelled"}, cancelled
            detail = await subagent(session, action="get", child_session_id=slow)
            assert detail["last_run_status"] == "cancelled", detail
            assert detail["last_run_error"] == "Cancelled by parent", detail

            # C9: a made-up id is nobody's child here.
            out = structured(await session.call_tool(
                "SubAgent", {"action": "get", "child_session_id": "not-a-child"},
            ))
            assert out["success"] is False, out

            # Resources: transcript and events of a child, and live updates.
            uris = {r.uri for r in (await session.list_resources()).resources}
            assert f"bamboo://sessions/{quick}" in uris, uris
            assert f"bamboo://sessions/{quick}/events" in uris, uris
            text = (await session.read_resource(f"bamboo://sessions/{quick}")).contents[0].text
            assert "Assignment: alpha one" in text, text
            events = (await session.read_resource(f"bamboo://sessions/{quick}/events")).contents[0].text
            kinds = [json.loads(line)["event"]["type"] for line in events.splitlines()]
            assert "sub_agent_started" in kinds and "sub_agent_completed" in kinds, kinds

            watched = await create(session, "Watched", "__steer delta")
            await session.subscribe_resource(f"bamboo://sessions/{watched}/events")
            await subagent(session, action="send_message", child_session_id=watched,
                           message="epsilon")
            await wait_until_ended(session, watched)
            deadline = time.monotonic() + PATIENCE
            while f"bamboo://sessions/{watched}/events" not in updated:
                assert time.monotonic() < deadline, f"no resources/updated: {updated}"
                await session.send_ping()
    print("ok children")


async def first_approval(session: ClientSession, child: str) -> dict:
    """The child's open request, as the approvals tool lists it. The wait
    tool's progress says when the child asks."""
    asked = asyncio.Event()

    async def on_progress(value, total, message):
        if "waiting for approval" in (message or ""):
            asked.set()

    waiting = asyncio.create_task(session.call_tool(
        "wait", {"child_session_ids": [child], "timeout_secs": 30}, progress_callback=on_progress,
    ))
    deadline = time.monotonic() + PATIENCE
    while True:
        listed = structured(await session.call_tool("approvals", {"action": "list"}))
        assert listed["success"] is True, listed
        mine = [a for a in listed["result"]["approvals"] if a["child_session_id"] == child]
        if mine:
            break
        assert time.monotonic() < deadline, "the child's approval request never showed up"
        await asyncio.wait_for(asked.wait(), PATIENCE)
    waiting.cancel()
    return mine[0]


async def approvals(worker: str, data_dir: str) -> None:
    async with stdio_client(server(worker, data_dir)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            child = await create(session, "Asker", "__approve:write_file save")
            request = await first_approval(session, child)
            assert request["tool_name"] == "write_file", request
            assert request["resource"] == "write_file", request
            answered = structured(await session.call_tool(
                "approvals", {"action": "answer", "request_id": request["request_id"], "approved": True},
            ))
            assert answered["success"] is True, answered
            ended = await wait_until_ended(session, child)
            assert ended["result"].endswith("Assignment: approved:write_file save"), ended
            again = structured(await session.call_tool(
                "approvals", {"action": "answer", "request_id": request["request_id"], "approved": True},
            ))
            assert again["success"] is False, again
    print("ok approvals")


async def elicitation(worker: str, data_dir: str) -> None:
    asked = []

    async def on_elicit(context, params: types.ElicitRequestParams):
        asked.append(params.message)
        action = "decline" if "cat_file" in params.message else "accept"
        return types.ElicitResult(action=action, content={} if action == "accept" else None)

    async with stdio_client(server(worker, data_dir)) as (read, write):
        async with ClientSession(read, write, elicitation_callback=on_elicit) as session:
            await session.initialize()
            yes = await create(session, "Writer", "__approve:write_file save")
            no = await create(session, "Reader", "__approve:cat_file read")
            ended = await wait_until_ended(session, yes)
            assert ended["result"].endswith("Assignment: approved:write_file save"), ended
            ended = await wait_until_ended(session, no)
            assert ended["result"].endswith("Assignment: denied:cat_file read"), ended
            assert any("write_file" in m for m in asked), asked
            assert any("cat_file" in m for m in asked), asked
    print("ok elicitation")


async def https(worker: str, data_dir: str) -> None:
    """As http, over TLS on a non-loopback listen address: the certificate
    and CA come from the Rust test (MCP_TLS_CERT, MCP_TLS_KEY, MCP_TLS_CA)."""
    import os
    import ssl

    tls = (os.environ["MCP_TLS_CERT"], os.environ["MCP_TLS_KEY"], os.environ["MCP_TLS_CA"])
    await http(worker, data_dir, tls=tls, name="https")


async def http(worker: str, data_dir: str, tls=None, name="http") -> None:
    import os
    import signal
    import ssl
    import subprocess

    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    token = "t0k-" + os.urandom(16).hex()
    token_file = os.path.join(data_dir, "token")
    os.makedirs(data_dir, exist_ok=True)
    with open(os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(token + "\n")
    server_dir = os.path.join(data_dir, "sessions")
    # Logged at the most verbose level: the token must still never show.
    log_path = os.path.join(data_dir, "server.log")
    log = open(log_path, "w")
    listen = ["--listen", "127.0.0.1:0"]
    verify = True
    if tls:
        cert, key, ca = tls
        listen = ["--listen", "0.0.0.0:0", "--tls-cert", cert, "--tls-key", key]
        verify = ssl.create_default_context(cafile=ca)
    proc = subprocess.Popen(
        [worker, "mcp", *listen, "--token-file", token_file,
         "--data-dir", server_dir, "--executor", "echo"],
        stdout=subprocess.PIPE, stderr=log, text=True, env=os.environ | {"RUST_LOG": "trace"},
    )
    try:
        ready = proc.stdout.readline().split()
        assert ready and ready[0] == "listening", ready
        url = ready[1]
        if tls:
            assert url.startswith("https://0.0.0.0:") and url.endswith("/mcp"), url
            url = url.replace("0.0.0.0", "127.0.0.1")
        else:
            assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp"), url
        hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream"}
        async with httpx2.AsyncClient(verify=verify) as raw:
            for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
                answer = await raw.post(url, json=hello, headers=headers | auth)
                assert answer.status_code == 401, (auth, answer.status_code, answer.text)
                assert "bearer token" in answer.text, answer.text
        asked = []

        async def on_elicit(context, params: types.ElicitRequestParams):
            asked.append(params.message)
            return types.ElicitResult(action="accept", content={})

        bearer = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, verify=verify)
        async with bearer, streamable_http_client(url, http_client=bearer) as (read, write):
            async with ClientSession(
                read, write, client_info=types.Implementation(name="http-client", version="1"),
                elicitation_callback=on_elicit,
            ) as session:
                await session.initialize()
                tools = {t.name for t in (await session.list_tools()).tools}
                assert tools == {"SubAgent", "wait", "approvals"}, tools
                child = await create(session, "Over HTTP", "zeta")
                ended = await wait_until_ended(session, child)
                assert ended["result"].endswith("Assignment: zeta"), ended
                # Server-to-client requests work over HTTP too.
                asker = await create(session, "Asker", "__approve:write_file eta")
                ended = await wait_until_ended(session, asker)
                assert ended["result"].endswith("Assignment: approved:write_file eta"), ended
                assert any("write_file" in m for m in asked), asked
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(PATIENCE)
        log.close()
    assert code == 0, f"server exited {code} on SIGTERM"
    with open(log_path) as f:
        logged = f.read()
    assert logged, "RUST_LOG=trace logged nothing"
    assert token not in logged, "the bearer token reached the server's log"
    print(f"ok {name}")


SCENARIOS = {
    "children": children, "approvals": approvals, "elicitation": elicitation, "http": http,
    "https": https,
}

if __name__ == "__main__":
    worker, data_dir, scenario = sys.argv[1:4]
    asyncio.run(SCENARIOS[scenario](worker, data_dir))
