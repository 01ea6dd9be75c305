//! The store's side of the scale curve (issue 23), through the front door
//! (`bamboo-worker run --data-dir`), each figure a ratio to its baseline in
//! the same run:
//! - runs of 100, 1,000, 10,000 and 100,000 echo children at
//!   `--max-running 64`, data on disk (the system's temp directory, or
//!   `BAMBOO_SCALE_DISK`) against tmpfs (`/dev/shm`): wall time, per-child
//!   cost of the last 10% of completions against the first 10%, the front
//!   door's peak resident memory;
//! - the directory of the largest disk run: opening it and running one
//!   child against the same in an empty directory, `sessions list --limit
//!   50` and the whole `sessions list` on it.
//!
//! `BAMBOO_SCALE_MAX` caps the sizes (e.g. 10000 for a quick run);
//! `BAMBOO_SCALE_REPS` sets the repetitions of every size (5); each figure
//! is the median over them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{median, median_f, report, worker_bin};

const SIZES: [usize; 4] = [100, 1_000, 10_000, 100_000];
const JOBS: &str = "64";

pub async fn run() -> Result<()> {
    let max: usize = env_num("BAMBOO_SCALE_MAX").unwrap_or(100_000);
    let reps: usize = env_num("BAMBOO_SCALE_REPS").unwrap_or(5).max(1);
    let disk_root = std::env::var_os("BAMBOO_SCALE_DISK")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmpfs_root = PathBuf::from("/dev/shm");
    let mut largest: Option<(usize, tempfile::TempDir)> = None;
    for n in SIZES.into_iter().filter(|n| *n <= max) {
        let runs = reps;
        let (mut disk, mut tmpfs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            // Interleaved, so machine noise hits both alike.
            let d = tempfile::tempdir_in(&disk_root).context("a directory on disk")?;
            disk.push(fan_out(d.path(), n)?);
            largest = Some((n, d));
            let t = tempfile::tempdir_in(&tmpfs_root).context("a directory on /dev/shm")?;
            tmpfs.push(fan_out(t.path(), n)?);
        }
        // Each run's last-10%-to-first-10% ratio, before the runs are
        // reduced to the one of median wall time.
        // Each run's ratio swings by about a tenth on a shared machine, so
        // every run's is shown beside their median.
        let each = |runs: &[Fanout]| -> String {
            let ratios: Vec<String> = runs.iter().map(|r| format!("{:.2}", r.flat())).collect();
            ratios.join(" ")
        };
        let flat = |runs: &[Fanout]| median_f(runs.iter().map(Fanout::flat).collect());
        let flats = [
            ("disk", flat(&disk), each(&disk)),
            ("tmpfs", flat(&tmpfs), each(&tmpfs)),
        ];
        let (d, t) = (Fanout::median(disk), Fanout::median(tmpfs));
        let ratio = secs(d.wall) / secs(t.wall);
        report(
            &format!("{n} echo children -j64: disk vs tmpfs"),
            format!("{ratio:.2}x"),
            "<= 1.5x",
            ratio <= 1.5,
        );
        println!(
            "  (disk {:.2} s, tmpfs {:.2} s; {:.3} ms per child on disk)",
            secs(d.wall),
            secs(t.wall),
            secs(d.wall) * 1000.0 / n as f64
        );
        for ((place, flat, each), f) in flats.into_iter().zip([&d, &t]) {
            report(
                &format!("{n} children, {place}: last 10% vs first 10%"),
                format!("{flat:.2}x"),
                "<= 1.0x",
                flat <= 1.0,
            );
            println!(
                "  (median of {runs}: {each}; per child in the run of median wall time: first 10% {:.3} ms, last 10% {:.3} ms; front door peak RSS {:.1} MiB)",
                ms(f.first_per_child),
                ms(f.last_per_child),
                f.peak_rss_kib as f64 / 1024.0
            );
        }
    }
    if let Some((n, dir)) = largest {
        big_directory(n, &dir.path().join("data"))?;
    }
    Ok(())
}

fn env_num(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.trim().parse().ok()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One fan-out run.
#[derive(Debug, Clone, Copy)]
struct Fanout {
    wall: Duration,
    first_per_child: Duration,
    last_per_child: Duration,
    peak_rss_kib: u64,
}

impl Fanout {
    /// Per-child cost of the last 10% of completions over the first 10%'s.
    fn flat(&self) -> f64 {
        self.last_per_child.as_secs_f64() / self.first_per_child.as_secs_f64().max(1e-9)
    }

    /// The run of median wall time.
    fn median(mut runs: Vec<Self>) -> Self {
        runs.sort_by_key(|r| r.wall);
        runs[runs.len() / 2]
    }
}

/// `run --json -j64` of `n` echo children with the data in `dir/data`.
fn fan_out(dir: &Path, n: usize) -> Result<Fanout> {
    let tasks = dir.join("tasks.txt");
    let lines: String = (0..n).map(|i| format!("c{i} hello\n")).collect();
    std::fs::write(&tasks, lines).context("cannot write the assignments")?;
    let data = dir.join("data");
    let start = Instant::now();
    let mut child = Command::new(worker_bin()?)
        .args([
            "run",
            "--json",
            "--executor",
            "echo",
            "-j",
            JOBS,
            "--data-dir",
        ])
        .arg(&data)
        .arg("--from")
        .arg(&tasks)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the worker")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("no stdout")?;
    let mut done = Vec::with_capacity(n);
    let mut peak = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the run's output")?;
        if line.contains("\"type\":\"sub_agent_completed\"") {
            done.push(start.elapsed());
        } else if line.starts_with("{\"kind\":\"summary\"") || line.contains("\"kind\":\"summary\"")
        {
            // Still running: its high-water mark is the run's peak.
            peak = peak_rss_kib(pid);
        }
    }
    let status = child.wait()?;
    let wall = start.elapsed();
    if !status.success() || done.len() != n {
        bail!(
            "the run of {n} children ended {status} after {} completions",
            done.len()
        );
    }
    let k = (n / 10).max(1);
    let first = (done[k.min(n - 1)] - done[0]) / k as u32;
    let last = (done[n - 1] - done[n - 1 - k]) / k as u32;
    Ok(Fanout {
        wall,
        first_per_child: first,
        last_per_child: last,
        peak_rss_kib: peak,
    })
}

/// `VmHWM` of process `pid`, in KiB (0 when unknown).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Wall time of the worker with `args`, its output drained.
fn timed(args: &[&str], data: &Path) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new(worker_bin()?)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("cannot start the worker")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!("`bamboo-worker {}` ended {}", args.join(" "), out.status);
    }
    Ok(took)
}

fn median_of(times: usize, mut f: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let mut xs = Vec::new();
    for _ in 0..times {
        xs.push(f()?);
    }
    Ok(median(xs))
}

/// Opening the directory of `n` children (and a root) and running one
/// child; `sessions list` on it.
fn big_directory(n: usize, big: &Path) -> Result<()> {
    let empty = tempfile::tempdir()?;
    let fresh = empty.path().join("data");
    let one = ["run", "--executor", "echo", "one more"];
    let base = median_of(3, || timed(&one, &fresh))?;
    let open = median_of(3, || timed(&one, big))?;
    let sessions = n + 1;
    report(
        &format!("{sessions} sessions: open + one run"),
        format!("{:.3} s", secs(open)),
        "<= 1 s",
        open <= Duration::from_secs(1),
    );
    println!(
        "  ({:.2}x an empty directory's {:.3} s)",
        secs(open) / secs(base),
        secs(base)
    );
    let limit = ["sessions", "--no-pager", "list", "--limit", "50"];
    let base = median_of(3, || timed(&limit, &fresh))?;
    let listed = median_of(3, || timed(&limit, big))?;
    report(
        &format!("{sessions} sessions: list --limit 50"),
        format!("{:.3} s", secs(listed)),
        "<= 0.2 s",
        listed <= Duration::from_millis(200),
    );
    println!(
        "  ({:.2}x the same on a directory of a few sessions, {:.3} s)",
        secs(listed) / secs(base),
        secs(base)
    );
    let all = ["sessions", "--no-pager", "list"];
    let base = median_of(3, || timed(&all, &fresh))?;
    let whole = median_of(3, || timed(&all, big))?;
    report(
        &format!("{sessions} sessions: the whole list"),
        format!("{:.3} s", secs(whole)),
        "<= 3 s",
        whole <= Duration::from_secs(3),
    );
    println!(
        "  ({:.1}x a directory of a few sessions, {:.3} s)",
        secs(whole) / secs(base),
        secs(base)
    );
    Ok(())
}
