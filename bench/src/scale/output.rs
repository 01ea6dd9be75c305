//! Scale benchmarks of the output side (issue 23): one child streaming a
//! million tokens on one line in every output mode, against `--json`; fan-out
//! of cli `true` children against `xargs -P8`; worker memory after a long
//! stream against the reference worker's; the front door's peak memory while
//! one child streams a million events. Every ratio is to a baseline measured
//! in the same run.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{median, report, worker_bin};

/// Tokens on the one long line.
const LINE_TOKENS: usize = 1_000_000;
/// Runs per long-line mode (each takes seconds).
const LINE_RUNS: usize = 3;
/// Events in the worker memory run.
const STREAM_EVENTS: usize = 200_000;
/// `-j` of the fan-out runs (and `-P` of xargs).
const JOBS: usize = 8;
/// The front door's peak resident memory while one child streams 1M
/// events, at most (issue 23): 40 MiB.
const PEAK_TARGET_KIB: u64 = 40 * 1024;

pub async fn run() -> Result<()> {
    println!("== scale: output, fan-out and memory (release build, medians) ==");
    let dir = tempfile::tempdir()?;
    long_line(dir.path()).await?;
    fan_out(dir.path(), 1_000, 3).await?;
    fan_out(dir.path(), 10_000, 1).await?;
    worker_memory().await
}

/// One run of the front door: wall time and peak resident memory (KiB).
struct Measured {
    wall: Duration,
    peak_kib: u64,
}

/// Runs `bamboo-worker run ARGS` with stdout to `stdout` (a file), polling
/// its peak resident memory; fails when it exits non-zero.
async fn front_door(args: &[&str], stdout: Stdio) -> Result<Measured> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(worker_bin()?)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start bamboo-worker run")?;
    let pid = child.id().context("the front door has no pid")?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    let tail = tokio::spawn(stderr_tail(stderr));
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        // VmHWM: the most the process ever had resident; read while it
        // lives (a zombie has no memory figures).
        if let Some(hwm) = status_kib(pid, "VmHWM:") {
            peak_kib = peak_kib.max(hwm);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let wall = started.elapsed();
    if !status.success() {
        let tail = tail.await.unwrap_or_default();
        bail!(
            "bamboo-worker run {} failed ({status}): {tail}",
            args.join(" ")
        );
    }
    Ok(Measured { wall, peak_kib })
}

/// The last few KiB the front door wrote to stderr, for an error message.
async fn stderr_tail(mut stderr: tokio::process::ChildStderr) -> String {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&chunk[..n]);
        if all.len() > 16 * 1024 {
            all.drain(..all.len() - 8 * 1024);
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// A field of `/proc/PID/status` in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// 1M tokens on one line, each output mode against `--json`, runs
/// interleaved so machine noise hits every mode alike; and the front door's
/// peak memory while that one child streams.
async fn long_line(dir: &Path) -> Result<()> {
    // A short assignment whose echo child streams LINE_TOKENS tokens of
    // "w " with no newline: one line, as a model writing a minified file.
    let assignment = format!("__repeat:{LINE_TOKENS}:w");
    let results = dir.join("results");
    let results = results.to_str().context("temp path is not UTF-8")?;
    let modes: [(&str, Vec<&str>); 6] = [
        ("--json", vec!["--json"]),
        ("text", vec![]),
        ("-q", vec!["-q"]),
        ("--group", vec!["--group"]),
        ("--timestamps", vec!["--timestamps"]),
        ("--results DIR", vec!["--results", results]),
    ];
    let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
    let mut peaks: Vec<Vec<u64>> = vec![Vec::new(); modes.len()];
    for _ in 0..LINE_RUNS {
        for (i, (_, flags)) in modes.iter().enumerate() {
            let out = dir.join("out");
            let mut args: Vec<&str> = flags.clone();
            args.push(&assignment);
            let m = front_door(&args, Stdio::from(std::fs::File::create(&out)?)).await?;
            std::fs::remove_file(&out)?;
            let _ = std::fs::remove_dir_all(dir.join("results"));
            walls[i].push(m.wall);
            peaks[i].push(m.peak_kib);
        }
    }
    let walls: Vec<Duration> = walls.into_iter().map(median).collect();
    let json = walls[0].as_secs_f64();
    println!(
        "  (1M tokens on one line, `run > file`: --json {:.2} s)",
        json
    );
    for (i, (name, _)) in modes.iter().enumerate().skip(1) {
        let ratio = walls[i].as_secs_f64() / json;
        report(
            &format!("1M tokens one line: {name} / --json"),
            format!("{ratio:.2}x ({:.2} s)", walls[i].as_secs_f64()),
            "<= 1.5x",
            ratio <= 1.5,
        );
    }
    for (i, (name, _)) in modes.iter().enumerate() {
        let mut p = peaks[i].clone();
        p.sort_unstable();
        let peak = p[p.len() / 2];
        let ratio = peak as f64 / PEAK_TARGET_KIB as f64;
        report(
            &format!("front door peak RSS, 1M events, {name}"),
            format!("{ratio:.2}x ({:.1} MiB)", mib(peak)),
            "<= 1x of 40 MiB",
            peak <= PEAK_TARGET_KIB,
        );
    }
    Ok(())
}

/// `n` cli children running `true`, `-j 8`, against `xargs -P8 -n1 true`
/// over the same lines, `runs` times each, interleaved.
async fn fan_out(dir: &Path, n: usize, runs: usize) -> Result<()> {
    let lines = dir.join(format!("lines-{n}.txt"));
    let text: String = (1..=n).map(|i| format!("{i}\n")).collect();
    std::fs::write(&lines, text)?;
    let from = lines.to_str().context("temp path is not UTF-8")?;
    let jobs = JOBS.to_string();
    let (mut ours, mut xargs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let args = [
            "--executor",
            "cli",
            "-j",
            &jobs,
            "-q",
            "--from",
            from,
            "--",
            "true",
        ];
        ours.push(front_door(&args, Stdio::null()).await?.wall);
        let t = Instant::now();
        let status = tokio::process::Command::new("xargs")
            .args(["-P", &jobs, "-n", "1", "true"])
            .stdin(Stdio::from(std::fs::File::open(&lines)?))
            .stdout(Stdio::null())
            .status()
            .await
            .context("cannot run xargs")?;
        if !status.success() {
            bail!("xargs -P{jobs} true failed: {status}");
        }
        xargs.push(t.elapsed());
    }
    let (ours, xargs) = (median(ours), median(xargs));
    let ratio = ours.as_secs_f64() / xargs.as_secs_f64();
    report(
        &format!("{n} cli `true` children -j8 / xargs -P8"),
        format!("{ratio:.2}x ({:.2} s)", ours.as_secs_f64()),
        "<= 1.6x",
        ratio <= 1.6,
    );
    println!(
        "  ({n} children: run {:.2} s, xargs {:.2} s)",
        ours.as_secs_f64(),
        xargs.as_secs_f64()
    );
    Ok(())
}

/// Resident memory of our worker and of the reference worker after a
/// [`STREAM_EVENTS`]-event run, each reusable and idle afterwards.
async fn worker_memory() -> Result<()> {
    let (mut ours, mut reference) = (Vec::new(), Vec::new());
    let assignment = "w ".repeat(STREAM_EVENTS);
    for _ in 0..3 {
        ours.push(our_worker_after(&assignment).await?);
        reference.push(reference_worker_after(&assignment).await?);
    }
    ours.sort_unstable();
    reference.sort_unstable();
    let (o, r) = (ours[ours.len() / 2], reference[reference.len() / 2]);
    report(
        "worker RSS after a 200k-event run / reference",
        format!("{:.2}x ({:.2} MiB)", o as f64 / r as f64, mib(o)),
        "<= 1.0x",
        o <= r,
    );
    println!(
        "  (ours {:.2} MiB, reference worker {:.2} MiB)",
        mib(o),
        mib(r)
    );
    Ok(())
}

/// How long a worker is left idle after its run before its memory is read.
const SETTLE: Duration = Duration::from_millis(300);

async fn our_worker_after(assignment: &str) -> Result<u64> {
    use bamboo_subagent::fleet::{spawn_worker, WorkerCommand};
    use bamboo_subagent::frames::{ChildFrame, ParentFrame, RunRequest};
    use bamboo_subagent::spec::{ExecutorSpec, ProvisionSpec};
    let fabric = tempfile::tempdir()?;
    let mut spec = ProvisionSpec::new(
        "scale-ours",
        ExecutorSpec::Echo,
        fabric.path().to_string_lossy(),
    );
    spec.identity.role = "bench".into();
    spec.identity.depth = 1;
    spec.reusable = true;
    let cmd = WorkerCommand::new(worker_bin()?);
    let mut w = spawn_worker(&cmd, &spec, Duration::from_secs(10)).await?;
    let mut conn = w.connect().await?;
    conn.sender
        .send(ParentFrame::Run(RunRequest::new(assignment)))
        .await?;
    loop {
        match conn.receiver.recv().await {
            Some(Ok(ChildFrame::Terminal(_))) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("our worker's link failed: {e}"),
            None => bail!("our worker closed the link before the terminal frame"),
        }
    }
    drop(conn);
    tokio::time::sleep(SETTLE).await;
    let pid = w.pid().context("local worker has a pid")?;
    let rss = status_kib(pid, "VmRSS:").context("no VmRSS for our worker")?;
    w.kill().await;
    Ok(rss)
}

async fn reference_worker_after(assignment: &str) -> Result<u64> {
    use ref_subagent::proto::{ChildFrame, ParentFrame, RunSpec};
    use ref_subagent::provision::{ChildIdentity, ExecutorSpec, ProvisionSpec};
    use ref_subagent::transport::ChildClient;
    let fabric = tempfile::tempdir()?;
    let identity = ChildIdentity {
        child_id: "scale-reference".into(),
        parent_id: None,
        project_key: None,
        role: "bench".into(),
        depth: 1,
    };
    let mut spec = ProvisionSpec::new(
        identity,
        ExecutorSpec::Echo,
        fabric.path().to_string_lossy().into_owned(),
    );
    spec.reusable = true;
    let bin = reference_worker_bin()?;
    let w = ref_subagent::fleet::spawn_worker(&bin, &[], &spec, Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the reference worker: {e}"))?;
    let mut client = ChildClient::connect(&w.record.endpoint)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the reference worker: {e}"))?;
    let run = RunSpec {
        assignment: assignment.to_owned(),
        reasoning_effort: None,
        messages: Vec::new(),
    };
    client
        .send(ParentFrame::Run(run))
        .await
        .map_err(|e| anyhow::anyhow!("cannot send the run: {e}"))?;
    loop {
        match client.next_frame().await {
            Ok(Some(ChildFrame::Terminal { .. })) => break,
            Ok(Some(_)) => {}
            Ok(None) => bail!("the reference worker closed the link before the terminal"),
            Err(e) => bail!("the reference worker's link failed: {e}"),
        }
    }
    let _ = client.close().await;
    tokio::time::sleep(SETTLE).await;
    let pid = w.pid().context("local reference worker has a pid")?;
    let rss = status_kib(pid, "VmRSS:").context("no VmRSS for the reference worker")?;
    w.kill().await;
    Ok(rss)
}

/// The reference worker binary, built beside this one (`src/bin`).
fn reference_worker_bin() -> Result<std::path::PathBuf> {
    let me = std::env::current_exe().context("cannot locate the bench binary")?;
    let bin = me.with_file_name("reference-worker");
    if !bin.exists() {
        bail!(
            "{} is missing: build the bench crate (`cargo xtask bench scale` does)",
            bin.display()
        );
    }
    Ok(bin)
}
