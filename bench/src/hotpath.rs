//! Measurements of the executors' hot paths in-process, for `cargo xtask bench`
//! and the ignored `bench_*` tests (`cargo test --release -p bamboo-bench --
//! --ignored --nocapture bench_`). Events go through a real frame sink (serialized to
//! `event` frame text) and are counted by a consumer task, as a transport would.

use std::time::{Duration, Instant};

use bamboo_subagent::executor::echo::EchoExecutor;
use bamboo_subagent::executor::{
    EventSink, Executor, RunContext, RunOutcome, RunRequest, SteeringInbox,
};
use bamboo_subagent::spec::ProvisionSpec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use bamboo_executors::cli::CliExecutor;
use bamboo_executors::llm::client::RetryPolicy;
use bamboo_executors::llm::LlmExecutor;
use bamboo_testkit::{Reply, ScriptedServer};

/// One measured run.
#[derive(Debug, Clone)]
pub struct Measured {
    /// How the run ended.
    pub outcome: RunOutcome,
    /// Events the sink received.
    pub events: u64,
    /// Wall time of the run, events drained.
    pub elapsed: Duration,
}

impl Measured {
    /// Events per second.
    pub fn per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `exec` once with a frame sink whose frames are counted.
pub async fn measure(exec: &dyn Executor, request: RunRequest) -> Measured {
    let (tx, mut rx) = mpsc::channel::<String>(1024);
    let counter = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(frame) = rx.recv().await {
            std::hint::black_box(frame.len());
            n += 1;
        }
        n
    });
    let (_steer, steering) = SteeringInbox::channel();
    let ctx = RunContext {
        events: EventSink::frames(tx, None),
        steering,
        cancel: CancellationToken::new(),
    };
    let start = Instant::now();
    let outcome = exec.run(request, ctx).await;
    let events = counter.await.unwrap_or(0);
    Measured {
        outcome,
        events,
        elapsed: start.elapsed(),
    }
}

fn spec(json: serde_json::Value) -> Result<ProvisionSpec, String> {
    ProvisionSpec::from_slice(json.to_string().as_bytes()).map_err(|e| e.to_string())
}

fn cli(command: &str, args: &[&str]) -> Result<CliExecutor, String> {
    let s = spec(serde_json::json!({
        "identity": {"child_id": "bench"},
        "executor": {"kind": "cli_adapter", "command": command, "args": args},
        "fabric_dir": "/tmp/unused",
    }))?;
    CliExecutor::from_spec(&s).map_err(|e| e.to_string())
}

/// Median run time of a cli child running `true`, and of the echo executor.
pub async fn cli_true_vs_echo(runs: usize) -> Result<(Duration, Duration), String> {
    let exec = cli("true", &[])?;
    let mut cli_times = Vec::with_capacity(runs);
    let mut echo_times = Vec::with_capacity(runs);
    for _ in 0..runs {
        cli_times.push(measure(&exec, RunRequest::new("x")).await.elapsed);
        echo_times.push(measure(&EchoExecutor, RunRequest::new("x")).await.elapsed);
    }
    Ok((median(cli_times), median(echo_times)))
}

/// A cli child printing `lines` lines, each becoming one event.
pub async fn cli_lines(lines: u64) -> Result<Measured, String> {
    let exec = cli("seq", &["1", &lines.to_string()])?;
    Ok(measure(&exec, RunRequest::new("")).await)
}

/// A `200` SSE reply streaming `tokens` content deltas (`"t<i> "`), then
/// `stop` and `[DONE]`, written in 64 KiB pieces as a real server's socket
/// would deliver it.
pub fn token_stream_reply(tokens: usize) -> Reply {
    let mut body = String::with_capacity(tokens * 64);
    for i in 0..tokens {
        body.push_str(&format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}}}}]}}\n\n"
        ));
    }
    body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    let chunks = body
        .as_bytes()
        .chunks(64 * 1024)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    Reply {
        status: 200,
        chunks,
        hang: false,
        delay: std::time::Duration::ZERO,
    }
}

/// The llm executor reading a scripted stream of `tokens` tokens.
pub async fn llm_tokens(tokens: usize) -> Result<Measured, String> {
    let server = ScriptedServer::start(vec![token_stream_reply(tokens)])
        .await
        .map_err(|e| e.to_string())?;
    let s = spec(serde_json::json!({
        "identity": {"child_id": "bench"},
        "executor": {"kind": "bamboo_runtime"},
        "fabric_dir": "/tmp/unused",
        "model": {"provider": "openai", "model": "bench"},
        "secrets": {"provider_credentials": [{"provider": "openai", "api_key": "k", "base_url": server.base_url}]},
    }))?;
    let exec = LlmExecutor::from_spec(&s).with_retry(RetryPolicy {
        retries: 0,
        ..RetryPolicy::default()
    });
    Ok(measure(&exec, RunRequest::new("go")).await)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_domain::TerminalStatus;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark: run with --release -- --ignored --nocapture bench_"]
    async fn bench_cli_true_vs_echo() {
        let (cli, echo) = cli_true_vs_echo(51).await.expect("bench");
        println!(
            "cli `true` median {cli:?}, echo median {echo:?}, difference {:?}",
            cli.saturating_sub(echo)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark: run with --release -- --ignored --nocapture bench_"]
    async fn bench_cli_200k_lines() {
        let m = cli_lines(200_000).await.expect("bench");
        assert_eq!(m.outcome.status, TerminalStatus::Completed);
        assert_eq!(m.events, 200_001, "200000 tokens and complete");
        println!(
            "cli 200k lines: {} events in {:?} = {:.0} events/s",
            m.events,
            m.elapsed,
            m.per_sec()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark: run with --release -- --ignored --nocapture bench_"]
    async fn bench_llm_100k_tokens() {
        let m = llm_tokens(100_000).await.expect("bench");
        assert_eq!(
            m.outcome.status,
            TerminalStatus::Completed,
            "{:?}",
            m.outcome.error
        );
        println!(
            "llm 100k tokens: {} events in {:?} = {:.0} tokens/s",
            m.events,
            m.elapsed,
            m.per_sec()
        );
    }
}
