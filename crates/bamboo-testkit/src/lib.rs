//! Helpers for tests and benchmarks of the executors: a run context wired to a
//! channel, a scripted host bridge, and a scripted OpenAI-compatible HTTP server
//! (see [`ScriptedServer`]). Nothing here is used by the worker in production.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bamboo_domain::AgentEvent;
use bamboo_subagent::executor::{
    ApprovalBody, EventSink, HostBridge, HostError, RunContext, RunOutcome, SteeringInbox,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A run context whose events land in a channel, plus the handles a test drives.
#[derive(Debug)]
pub struct TestRun {
    /// Pass this to `Executor::run`.
    pub ctx: RunContext,
    /// Events the run emitted.
    pub events: mpsc::Receiver<AgentEvent>,
    /// Sends steering messages to the run.
    pub steer: mpsc::UnboundedSender<String>,
    /// Cancels the run.
    pub cancel: CancellationToken,
}

/// A context with a large event buffer and an optional host.
pub fn test_run(host: Option<Arc<dyn HostBridge>>) -> TestRun {
    let (tx, events) = mpsc::channel(4096);
    let (steer, steering) = SteeringInbox::channel();
    let cancel = CancellationToken::new();
    TestRun {
        ctx: RunContext {
            events: EventSink::events(tx, host),
            steering,
            cancel: cancel.clone(),
        },
        events,
        steer,
        cancel,
    }
}

/// A host that answers every approval with a fixed decision, answers spawns with
/// `{"success":true,"result":"spawned: <assignment>"}`, and records what it was asked.
#[derive(Debug, Default)]
pub struct ScriptedHost {
    approve: bool,
    /// Approval requests received, in order.
    pub approvals: Mutex<Vec<ApprovalBody>>,
    /// Spawn bodies received, in order.
    pub spawns: Mutex<Vec<serde_json::Value>>,
}

impl ScriptedHost {
    /// A host that approves (`true`) or denies (`false`) everything.
    pub fn new(approve: bool) -> Arc<Self> {
        Arc::new(Self {
            approve,
            ..Self::default()
        })
    }
}

#[async_trait]
impl HostBridge for ScriptedHost {
    async fn request_approval(&self, body: ApprovalBody) -> Result<bool, HostError> {
        if let Ok(mut v) = self.approvals.lock() {
            v.push(body);
        }
        Ok(self.approve)
    }

    async fn spawn_subagent(
        &self,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, HostError> {
        let assignment = body
            .get("assignment")
            .and_then(|a| a.as_str())
            .unwrap_or_default()
            .to_owned();
        if let Ok(mut v) = self.spawns.lock() {
            v.push(body);
        }
        Ok(serde_json::json!({"success": true, "result": format!("spawned: {assignment}")}))
    }
}

/// One scripted HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body pieces, each written and flushed separately.
    pub chunks: Vec<String>,
    /// Keep the connection open without finishing the body (a stalled stream).
    pub hang: bool,
    /// Wait this long after the request arrived before answering (a slow
    /// model: the client is known to be waiting meanwhile).
    pub delay: Duration,
}

impl Reply {
    /// A `200` SSE stream of `chunks` (JSON objects) followed by `[DONE]`.
    pub fn sse(chunks: impl IntoIterator<Item = serde_json::Value>) -> Self {
        let mut body: Vec<String> = chunks
            .into_iter()
            .map(|c| format!("data: {c}\n\n"))
            .collect();
        body.push("data: [DONE]\n\n".into());
        Self {
            status: 200,
            chunks: body,
            hang: false,
            delay: Duration::ZERO,
        }
    }

    /// A `200` SSE stream answering with `text`, split into words, then `usage`.
    pub fn text(text: &str) -> Self {
        let mut chunks: Vec<serde_json::Value> = text
            .split_inclusive(' ')
            .map(|w| serde_json::json!({"choices":[{"index":0,"delta":{"content": w}}]}))
            .collect();
        chunks.push(serde_json::json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}));
        Self::sse(chunks)
    }

    /// A `200` SSE stream asking for tool calls `(id, name, arguments JSON)`;
    /// each call's arguments arrive split in two deltas.
    pub fn tool_calls(calls: &[(&str, &str, serde_json::Value)]) -> Self {
        let mut chunks = Vec::new();
        for (i, (id, name, args)) in calls.iter().enumerate() {
            let args = args.to_string();
            let (a, b) = args.split_at(args.len() / 2);
            chunks.push(
                serde_json::json!({"choices":[{"index":0,"delta":{"tool_calls":[
                {"index":i,"id":id,"type":"function","function":{"name":name,"arguments":a}}]}}]}),
            );
            chunks.push(
                serde_json::json!({"choices":[{"index":0,"delta":{"tool_calls":[
                {"index":i,"function":{"arguments":b}}]}}]}),
            );
        }
        chunks.push(
            serde_json::json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        );
        Self::sse(chunks)
    }

    /// A plain response with `status` and a JSON error body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            chunks: vec![format!(r#"{{"error":{{"message":"scripted {status}"}}}}"#)],
            hang: false,
            delay: Duration::ZERO,
        }
    }

    /// A `200` SSE stream of named events (`event: NAME` + `data: JSON`),
    /// with no `[DONE]` (the Anthropic and Responses dialects).
    pub fn named_sse(events: impl IntoIterator<Item = (&'static str, serde_json::Value)>) -> Self {
        Self {
            status: 200,
            chunks: events
                .into_iter()
                .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
                .collect(),
            hang: false,
            delay: Duration::ZERO,
        }
    }

    /// An Anthropic Messages stream answering with `text` (two deltas),
    /// reporting `input`/`output` tokens.
    pub fn anthropic_text(text: &str, input: u64, output: u64) -> Self {
        let (a, b) = text.split_at(text.len() / 2);
        let mut events = vec![anthropic_start(input)];
        events.push((
            "content_block_start",
            serde_json::json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
        ));
        for part in [a, b] {
            events.push((
                "content_block_delta",
                serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":part}}),
            ));
        }
        events.extend(anthropic_end(0, "end_turn", output));
        Self::named_sse(events)
    }

    /// An Anthropic Messages stream asking for one `tool_use` of `name`
    /// with `input` (arriving as `input_json_delta` pieces).
    pub fn anthropic_tool_use(id: &str, name: &str, input: serde_json::Value) -> Self {
        let json = input.to_string();
        let (a, b) = json.split_at(json.len() / 2);
        let mut events = vec![anthropic_start(10)];
        events.push((
            "content_block_start",
            serde_json::json!({"type":"content_block_start","index":0,
                "content_block":{"type":"tool_use","id":id,"name":name,"input":{}}}),
        ));
        for part in [a, b] {
            events.push((
                "content_block_delta",
                serde_json::json!({"type":"content_block_delta","index":0,
                    "delta":{"type":"input_json_delta","partial_json":part}}),
            ));
        }
        events.extend(anthropic_end(0, "tool_use", 5));
        Self::named_sse(events)
    }

    /// An OpenAI Responses stream answering with `text`, reporting
    /// `input`/`output` tokens in `response.completed`.
    pub fn responses_text(text: &str, input: u64, output: u64) -> Self {
        let item = serde_json::json!({"type":"message","id":"msg_1","role":"assistant","status":"completed",
            "content":[{"type":"output_text","text":text,"annotations":[]}]});
        Self::named_sse([
            responses_created(),
            (
                "response.output_item.added",
                serde_json::json!({"type":"response.output_item.added","output_index":0,
                "item":{"type":"message","id":"msg_1","role":"assistant","status":"in_progress","content":[]}}),
            ),
            (
                "response.content_part.added",
                serde_json::json!({"type":"response.content_part.added","item_id":"msg_1",
                "output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}),
            ),
            (
                "response.output_text.delta",
                serde_json::json!({"type":"response.output_text.delta","item_id":"msg_1",
                "output_index":0,"content_index":0,"delta":text}),
            ),
            (
                "response.output_text.done",
                serde_json::json!({"type":"response.output_text.done","item_id":"msg_1",
                "output_index":0,"content_index":0,"text":text}),
            ),
            (
                "response.output_item.done",
                serde_json::json!({"type":"response.output_item.done","output_index":0,"item":item}),
            ),
            responses_completed(input, output),
        ])
    }

    /// An OpenAI Responses stream asking for one shell command: a
    /// `function_call` of Codex's `exec_command` tool with `{"cmd": cmd}`.
    pub fn responses_exec(call_id: &str, cmd: &str) -> Self {
        let args = serde_json::json!({ "cmd": cmd }).to_string();
        let item = serde_json::json!({"type":"function_call","id":"fc_1","call_id":call_id,
            "name":"exec_command","arguments":args,"status":"completed"});
        Self::named_sse([
            responses_created(),
            (
                "response.output_item.added",
                serde_json::json!({"type":"response.output_item.added","output_index":0,"item":item}),
            ),
            (
                "response.output_item.done",
                serde_json::json!({"type":"response.output_item.done","output_index":0,"item":item}),
            ),
            responses_completed(10, 5),
        ])
    }

    /// This reply, answered `delay` after its request arrived.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// A raw body with status 200.
    pub fn raw(body: &str) -> Self {
        Self {
            status: 200,
            chunks: vec![body.to_owned()],
            hang: false,
            delay: Duration::ZERO,
        }
    }
}

fn anthropic_start(input: u64) -> (&'static str, serde_json::Value) {
    (
        "message_start",
        serde_json::json!({"type":"message_start","message":{"id":format!("msg_{}", uuid_like()),
            "type":"message","role":"assistant","model":"scripted","content":[],"stop_reason":null,
            "usage":{"input_tokens":input,"output_tokens":1}}}),
    )
}

fn anthropic_end(index: usize, stop: &str, output: u64) -> [(&'static str, serde_json::Value); 3] {
    [
        (
            "content_block_stop",
            serde_json::json!({"type":"content_block_stop","index":index}),
        ),
        (
            "message_delta",
            serde_json::json!({"type":"message_delta","delta":{"stop_reason":stop},"usage":{"output_tokens":output}}),
        ),
        ("message_stop", serde_json::json!({"type":"message_stop"})),
    ]
}

fn responses_created() -> (&'static str, serde_json::Value) {
    (
        "response.created",
        serde_json::json!({"type":"response.created","response":{"id":"resp_1","status":"in_progress","output":[]}}),
    )
}

fn responses_completed(input: u64, output: u64) -> (&'static str, serde_json::Value) {
    (
        "response.completed",
        serde_json::json!({"type":"response.completed","response":{"id":"resp_1","status":"completed","output":[],
            "usage":{"input_tokens":input,"input_tokens_details":{"cached_tokens":0},"output_tokens":output,
            "output_tokens_details":{"reasoning_tokens":0},"total_tokens":input + output}}}),
    )
}

/// A distinct id per call, so each scripted message has its own.
fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A request the scripted server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request line, e.g. `POST /v1/chat/completions HTTP/1.1`.
    pub request_line: String,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: serde_json::Value,
}

type OnRequest = Box<dyn Fn(usize) + Send + Sync>;

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers each request with the next
/// scripted [`Reply`] (one request per connection, `Connection: close`).
/// With the script exhausted it answers 500.
pub struct ScriptedServer {
    /// `http://127.0.0.1:<port>/v1`.
    pub base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
    arrivals: tokio::sync::Mutex<mpsc::UnboundedReceiver<usize>>,
}

impl std::fmt::Debug for ScriptedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedServer")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ScriptedServer {
    /// Starts a server replaying `replies` in order.
    pub async fn start(replies: Vec<Reply>) -> std::io::Result<Self> {
        Self::start_with(replies, Box::new(|_| {})).await
    }

    /// Like [`ScriptedServer::start`], calling `on_request(n)` (n from 0) when
    /// request n has been read, before it is answered.
    pub async fn start_with(replies: Vec<Reply>, on_request: OnRequest) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}/v1", listener.local_addr()?);
        let received = Arc::new(Mutex::new(Vec::new()));
        let (arrived_tx, arrivals) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(VecDeque::from(replies)));
        let on_request = Arc::new(on_request);
        let rec = received.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (rec, arrived_tx, on_request, script) = (
                    rec.clone(),
                    arrived_tx.clone(),
                    on_request.clone(),
                    script.clone(),
                );
                tokio::spawn(async move {
                    let _ = serve_one(sock, script, rec, arrived_tx, on_request).await;
                });
            }
        });
        Ok(Self {
            base_url,
            received,
            arrivals: tokio::sync::Mutex::new(arrivals),
        })
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Waits (up to `limit`) until `count` requests have arrived.
    pub async fn wait_for_requests(&self, count: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut rx = self.arrivals.lock().await;
        while self.received().len() < count {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(_)) => {}
                _ => return false,
            }
        }
        true
    }
}

async fn serve_one(
    mut sock: TcpStream,
    script: Arc<Mutex<VecDeque<Reply>>>,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: mpsc::UnboundedSender<usize>,
    on_request: Arc<OnRequest>,
) -> std::io::Result<()> {
    let req = read_request(&mut sock).await?;
    if !req.request_line.starts_with("POST ") {
        // A connectivity probe (Claude Code sends `HEAD /`): answered, not
        // scripted, not counted.
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await?;
        return sock.shutdown().await;
    }
    // The script is taken in arrival order of the requests, not of the
    // connections (a client may open one before it sends).
    let (index, reply) = {
        let mut v = received.lock().unwrap_or_else(|p| p.into_inner());
        v.push(req);
        let reply = script.lock().ok().and_then(|mut s| s.pop_front());
        (v.len() - 1, reply)
    };
    let _ = arrived.send(index);
    on_request(index);
    let reply = reply.unwrap_or_else(|| Reply::status(500));
    tokio::time::sleep(reply.delay).await;
    let ctype = if reply.status == 200 {
        "text/event-stream"
    } else {
        "application/json"
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {ctype}\r\nconnection: close\r\n\r\n",
        reply.status,
        reason(reply.status)
    );
    sock.write_all(head.as_bytes()).await?;
    for chunk in &reply.chunks {
        sock.write_all(chunk.as_bytes()).await?;
        sock.flush().await?;
    }
    if reply.hang {
        // Hold the connection until the client goes away.
        let mut buf = [0u8; 64];
        while sock.read(&mut buf).await? > 0 {}
    }
    sock.shutdown().await
}

async fn read_request(sock: &mut TcpStream) -> std::io::Result<Received> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let header_end = loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while data.len() < header_end + len {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let body = serde_json::from_slice(&data[header_end..]).unwrap_or(serde_json::Value::Null);
    Ok(Received {
        request_line,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Collects events until one matches `pred` (or `limit` passes); returns all
/// collected, the matching one last.
pub async fn events_until(
    rx: &mut mpsc::Receiver<AgentEvent>,
    limit: Duration,
    pred: impl Fn(&AgentEvent) -> bool,
) -> Vec<AgentEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let hit = pred(&ev);
        out.push(ev);
        if hit {
            break;
        }
    }
    out
}

/// The text of every token event, in order.
pub fn tokens(events: &[AgentEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Token { content } => Some(content.as_str()),
            _ => None,
        })
        .collect()
}

/// Takes every event waiting now.
pub fn drain(rx: &mut mpsc::Receiver<AgentEvent>) -> Vec<AgentEvent> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        out.push(ev);
    }
    out
}

/// Cancels a run and waits (up to `limit`) for it to end; returns its outcome
/// and how long the cancel took to take effect.
pub async fn cancel_and_wait(
    cancel: &CancellationToken,
    run: tokio::task::JoinHandle<RunOutcome>,
    limit: Duration,
) -> (RunOutcome, Duration) {
    let started = std::time::Instant::now();
    cancel.cancel();
    let outcome = tokio::time::timeout(limit, run)
        .await
        .expect("the run ends after cancel")
        .expect("the run task does not panic");
    (outcome, started.elapsed())
}
