//! Executor benchmarks through the engine with real worker processes:
//! `cli_adapter` overhead against echo, `cli_adapter` line streaming, and
//! `bamboo_runtime` parsing a scripted token stream from a local HTTP server.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bamboo_domain::ModelRef;
use bamboo_engine::CredentialResolver;
use bamboo_subagent::spec::{ExecutorSpec, ProviderCredential};
use bamboo_subagent::Secret;
use bamboo_testkit::ScriptedServer;

use super::engine::{ms, stream_rate, Bench};
use super::hotpath::token_stream_reply;
use super::{median, median_f, report};

pub async fn run() -> Result<()> {
    println!("== executors (release build, through the engine, medians) ==");
    cli_overhead().await?;
    cli_streaming().await?;
    llm_streaming().await
}

fn cli(command: &str, args: &[&str]) -> ExecutorSpec {
    ExecutorSpec::CliAdapter {
        command: command.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    }
}

/// 4: a child running `true` against the same child running echo, warm pools;
/// runs interleaved so machine noise hits both alike.
async fn cli_overhead() -> Result<()> {
    let echo = Bench::new(ExecutorSpec::Echo, 8).await?;
    let truth = Bench::new(cli("true", &[]), 8).await?;
    let (mut e, mut t) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        echo.run_one("hi").await?;
        truth.run_one("hi").await?;
    }
    for _ in 0..150 {
        e.push(echo.run_one("hi").await?);
        t.push(truth.run_one("hi").await?);
    }
    echo.close().await;
    truth.close().await;
    let (e, t) = (median(e), median(t));
    let diff = t.saturating_sub(e);
    report(
        "cli `true` minus echo, warm pool",
        format!("{:.3} ms", ms(diff)),
        "<= 3 ms",
        diff <= Duration::from_millis(3),
    );
    println!(
        "  (cli `true` {:.3} ms, echo {:.3} ms per child run)",
        ms(t),
        ms(e)
    );
    Ok(())
}

/// 5: `seq 1 200000` through cli_adapter, every line an event at the parent.
async fn cli_streaming() -> Result<()> {
    const LINES: u64 = 200_000;
    let b = Bench::new(cli("seq", &["1", &LINES.to_string()]), 8).await?;
    b.run_one("warm up").await?;
    let (mut rates, mut lagged) = (Vec::new(), 0);
    for _ in 0..5 {
        let (rate, lost) = stream_rate(&b, "go", LINES).await?;
        rates.push(rate);
        lagged += lost;
    }
    b.close().await;
    let r = median_f(rates);
    report(
        "cli `seq 1 200000`: events/s at the parent",
        format!("{r:.0}/s"),
        ">= 300,000/s",
        r >= 300_000.0,
    );
    lag_note(lagged);
    Ok(())
}

/// Hands every child the scripted server as the `openai` provider.
#[derive(Debug)]
struct LocalProvider {
    base_url: String,
}

impl CredentialResolver for LocalProvider {
    fn credential(&self, provider: &str) -> Option<ProviderCredential> {
        (provider == "openai").then(|| ProviderCredential {
            provider: provider.into(),
            api_key: Secret::new("bench-key"),
            base_url: Some(self.base_url.clone()),
            provider_type: None,
        })
    }
}

/// 6: bamboo_runtime through the engine (model + credentials resolver),
/// streaming 100,000 tokens from a 127.0.0.1 server to the parent subscriber.
async fn llm_streaming() -> Result<()> {
    const TOKENS: usize = 100_000;
    const RUNS: usize = 5;
    // One scripted reply per run (plus the warm-up).
    let replies = (0..=RUNS).map(|_| token_stream_reply(TOKENS)).collect();
    let server = ScriptedServer::start(replies).await?;
    let resolver = Arc::new(LocalProvider {
        base_url: server.base_url.clone(),
    });
    let model = ModelRef::parse("openai/bench").context("model ref")?;
    let b = Bench::with(ExecutorSpec::BambooRuntime, 8, Some(model), |builder| {
        builder.credentials(resolver)
    })
    .await?;
    stream_rate(&b, "go", TOKENS as u64).await?;
    let (mut rates, mut lagged) = (Vec::new(), 0);
    for _ in 0..RUNS {
        let (rate, lost) = stream_rate(&b, "go", TOKENS as u64).await?;
        rates.push(rate);
        lagged += lost;
    }
    b.close().await;
    let r = median_f(rates);
    report(
        "bamboo_runtime 100k tokens via engine: /s",
        format!("{r:.0}/s"),
        ">= 200,000/s",
        r >= 200_000.0,
    );
    lag_note(lagged);
    Ok(())
}

fn lag_note(lagged: u64) {
    if lagged > 0 {
        println!("  note: the subscriber lagged and lost {lagged} events");
    }
}
