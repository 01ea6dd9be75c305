//! The two containment modes of a cli run, end to end through the `run`
//! front door (F12, issue 9): a cgroup v2 leaf per run where the worker may
//! create one, and the subreaper + `/proc` sweep (forced with
//! `BAMBOO_CGROUP=off`). In both, a `setsid` descendant neither holds the run
//! open nor outlives it, nor survives a kill -9 of the front door. The cgroup
//! tests pass with a printed reason where no writable cgroup v2 exists.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bamboo_e2e::procs::{
    kill_leftovers, live_with_arg, unique_sleep, wait_within, within, worker_above,
};
use bamboo_e2e::*;

/// How a run's processes are contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A cgroup v2 leaf per run.
    Cgroup,
    /// `BAMBOO_CGROUP=off`: the subreaper and the mark sweep.
    Fallback,
}

/// The directory of the cgroup2 mount holding this process's cgroup, when
/// a child cgroup can be created there (as the worker will try); else why not.
fn cgroup2_mount() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 membership")?
        .to_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mount = mountinfo
        .lines()
        .filter_map(|l| l.split_once(" - "))
        .filter(|(_, fs)| fs.starts_with("cgroup2 "))
        .find_map(|(m, _)| {
            let mut f = m.split_whitespace().skip(3);
            let (root, point) = (f.next()?, f.next()?);
            (root == "/").then(|| PathBuf::from(point))
        })
        .ok_or("no cgroup2 mount of the whole hierarchy")?;
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = mount
        .join(own.trim_start_matches('/'))
        .join(format!("bamboo-test-probe-{}-{n}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| format!("cannot create {}: {e}", probe.display()))?;
    let _ = std::fs::remove_dir(&probe);
    Ok(mount)
}

/// Whether tests of `mode` can run here; prints why not.
fn can_run(mode: Mode, test: &str) -> Option<Option<PathBuf>> {
    match (mode, cgroup2_mount()) {
        (Mode::Fallback, _) => Some(None),
        (Mode::Cgroup, Ok(mount)) => Some(Some(mount)),
        (Mode::Cgroup, Err(why)) => {
            eprintln!("skipping {test}: no writable cgroup v2 hierarchy ({why})");
            None
        }
    }
}

/// `bamboo-worker run --executor cli` of `sh -c script` in `mode`.
fn front_door(data: &Path, script: &str, mode: Mode) -> Child {
    let mut cmd = Command::new(worker_bin());
    cmd.args(["run", "--executor", "cli", "--approve", "all", "--data-dir"])
        .arg(data)
        .args(["the assignment", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match mode {
        Mode::Cgroup => cmd.env_remove("BAMBOO_CGROUP"),
        Mode::Fallback => cmd.env("BAMBOO_CGROUP", "off"),
    };
    cmd.spawn().unwrap()
}

/// The script prefix that writes the program's cgroup v2 path to `file`.
fn note_cgroup(file: &Path) -> String {
    format!("grep '^0::' /proc/self/cgroup > '{}'; ", file.display())
}

/// The cgroup path the program noted in `file`.
fn noted_cgroup(file: &Path) -> String {
    let line = std::fs::read_to_string(file).unwrap_or_default();
    line.trim().trim_start_matches("0::").to_owned()
}

/// Runs a program that takes about half a second and leaves `setsid sleep
/// <tag>` behind (`redirect` = with its own stdout), and checks the run ends
/// with the program, nothing survives, and the cgroup is what `mode` says.
fn run_ends_with_the_program(mode: Mode, redirect: bool, test: &str) {
    let Some(mount) = can_run(mode, test) else {
        return;
    };
    let tag = unique_sleep();
    let data = tempfile::tempdir().unwrap();
    let noted = data.path().join("cgroup");
    let escape = if redirect {
        format!("setsid sleep {tag} >/dev/null 2>&1 </dev/null &")
    } else {
        format!("setsid sleep {tag} &")
    };
    let script = format!("{}{escape} sleep 0.5; echo done", note_cgroup(&noted));
    let started = Instant::now();
    let mut run = front_door(data.path(), &script, mode);
    let status = wait_within(&mut run, PATIENCE);
    let took = started.elapsed();
    let survivors = live_with_arg(&tag);
    kill_leftovers(&tag);
    assert!(
        status.is_some_and(|s| s.success()),
        "the run failed: {status:?}"
    );
    assert!(took < Duration::from_secs(5), "the run took {took:?}");
    assert!(
        survivors.is_empty(),
        "setsid descendants survived: {survivors:?}"
    );
    let cgroup = noted_cgroup(&noted);
    match mount {
        Some(mount) => {
            assert!(
                cgroup.contains("/bamboo-run-"),
                "not in a run leaf: {cgroup:?}"
            );
            let leaf = mount.join(cgroup.trim_start_matches('/'));
            assert!(
                within(Duration::from_secs(10), || !leaf.exists()),
                "the run's cgroup {} outlived the run",
                leaf.display()
            );
        }
        None => assert!(!cgroup.contains("bamboo-run-"), "in a run leaf: {cgroup:?}"),
    }
}

#[test]
fn in_a_cgroup_a_setsid_descendant_with_its_own_stdout_ends_with_the_run() {
    run_ends_with_the_program(Mode::Cgroup, true, "in_a_cgroup_..._its_own_stdout");
}

#[test]
fn in_a_cgroup_a_setsid_descendant_holding_stdout_ends_with_the_run() {
    run_ends_with_the_program(Mode::Cgroup, false, "in_a_cgroup_..._holding_stdout");
}

#[test]
fn without_cgroups_a_setsid_descendant_with_its_own_stdout_ends_with_the_run() {
    run_ends_with_the_program(Mode::Fallback, true, "without_cgroups_..._its_own_stdout");
}

#[test]
fn without_cgroups_a_setsid_descendant_holding_stdout_ends_with_the_run() {
    run_ends_with_the_program(Mode::Fallback, false, "without_cgroups_..._holding_stdout");
}

/// Starts a program leaving `setsid sleep <escaped>` and running `sleep
/// <stayed>`, and waits until both run.
fn start_two_sleeps(data: &Path, mode: Mode, escaped: &str, stayed: &str) -> Child {
    let script = format!(
        "{}setsid sleep {escaped} & sleep {stayed}; echo done",
        note_cgroup(&data.join("cgroup"))
    );
    let mut run = front_door(data, &script, mode);
    let started = within(PATIENCE, || {
        live_with_arg(escaped).len() == 1 && live_with_arg(stayed).len() == 1
    });
    if !started {
        let _ = run.kill();
        kill_leftovers(escaped);
        kill_leftovers(stayed);
        panic!("the program's sleeps never started");
    }
    run
}

fn nothing_survives_a_kill_of_the_front_door(mode: Mode, test: &str) {
    let Some(mount) = can_run(mode, test) else {
        return;
    };
    let (escaped, stayed) = (unique_sleep(), unique_sleep());
    let data = tempfile::tempdir().unwrap();
    let mut run = start_two_sleeps(data.path(), mode, &escaped, &stayed);
    let worker = worker_above(live_with_arg(&stayed)[0]).expect("the worker above the program");
    run.kill().unwrap();
    run.wait().unwrap();
    let all_gone = within(Duration::from_secs(10), || {
        live_with_arg(&escaped).is_empty() && live_with_arg(&stayed).is_empty()
    });
    let (left_escaped, left_stayed) = (live_with_arg(&escaped), live_with_arg(&stayed));
    kill_leftovers(&escaped);
    kill_leftovers(&stayed);
    assert!(
        all_gone,
        "survived the front door ({mode:?}): setsid {left_escaped:?}, in-group {left_stayed:?}"
    );
    assert!(
        within(Duration::from_secs(10), || process_gone(worker)),
        "the worker {worker} outlived the front door"
    );
    if let Some(mount) = mount {
        let cgroup = noted_cgroup(&data.path().join("cgroup"));
        assert!(
            cgroup.contains("/bamboo-run-"),
            "not in a run leaf: {cgroup:?}"
        );
        let leaf = mount.join(cgroup.trim_start_matches('/'));
        assert!(
            !leaf.exists(),
            "the worker left its cgroup {}",
            leaf.display()
        );
    }
}

#[test]
fn in_a_cgroup_nothing_survives_a_kill_of_the_front_door() {
    nothing_survives_a_kill_of_the_front_door(Mode::Cgroup, "in_a_cgroup_nothing_survives_...");
}

#[test]
fn without_cgroups_nothing_survives_a_kill_of_the_front_door() {
    nothing_survives_a_kill_of_the_front_door(Mode::Fallback, "without_cgroups_nothing_...");
}

/// A worker killed outright cannot clean up: its program dies with it
/// (PR_SET_PDEATHSIG) but the program's children (here a `setsid` one and
/// one in its group) stay in the run's leaf until the next run in the same
/// cgroup kills the leaves of dead workers.
#[test]
fn in_a_cgroup_the_next_run_ends_what_a_killed_worker_left() {
    let Some(Some(mount)) = can_run(Mode::Cgroup, "in_a_cgroup_the_next_run_ends_...") else {
        return;
    };
    let (escaped, stayed) = (unique_sleep(), unique_sleep());
    let data = tempfile::tempdir().unwrap();
    let mut run = start_two_sleeps(data.path(), Mode::Cgroup, &escaped, &stayed);
    let worker = worker_above(live_with_arg(&stayed)[0]).expect("the worker above the program");
    let leaf = mount.join(noted_cgroup(&data.path().join("cgroup")).trim_start_matches('/'));
    let killed = Command::new("kill")
        .args(["-9", &worker.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let _ = run.kill();
    let _ = run.wait();
    // Any run in this cgroup sweeps; this one does at least.
    let next = tempfile::tempdir().unwrap();
    let mut next_run = front_door(next.path(), "echo next", Mode::Cgroup);
    let next_status = wait_within(&mut next_run, PATIENCE);
    let swept = within(Duration::from_secs(10), || {
        live_with_arg(&escaped).is_empty() && live_with_arg(&stayed).is_empty() && !leaf.exists()
    });
    let left = [live_with_arg(&escaped), live_with_arg(&stayed)].concat();
    kill_leftovers(&escaped);
    kill_leftovers(&stayed);
    assert!(
        next_status.is_some_and(|s| s.success()),
        "the next run failed: {next_status:?}"
    );
    assert!(
        swept,
        "the killed worker's leaf {} (exists: {}) or its process {left:?} outlived the next run",
        leaf.display(),
        leaf.exists()
    );
}

/// A worker's cli runs one after another, each noting its cgroup: a leaf
/// its program left as fresh serves the worker's next run (issue 23: no
/// cgroup created and removed per run), each run is still in a leaf, and
/// the kept leaf ends with the worker (F12).
#[test]
fn in_a_cgroup_a_workers_runs_reuse_its_emptied_leaf_which_ends_with_it() {
    let Some(Some(mount)) = can_run(Mode::Cgroup, "in_a_cgroup_a_workers_runs_reuse_...") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let noted = data.path().join("cgroups");
    let script = format!("grep '^0::' /proc/self/cgroup >> '{}'", noted.display());
    let mut run = Command::new(worker_bin())
        .args(["run", "--executor", "cli", "--approve", "all", "-j", "1"])
        .arg("--data-dir")
        .arg(data.path())
        .args(["one", "two", "three", "--", "sh", "-c", &script])
        .env_remove("BAMBOO_CGROUP")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_within(&mut run, PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "the run failed: {status:?}"
    );
    let text = std::fs::read_to_string(&noted).unwrap_or_default();
    let leaves: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_start_matches("0::"))
        .collect();
    assert_eq!(leaves.len(), 3, "one line per run: {text:?}");
    assert!(
        leaves.iter().all(|l| l.contains("/bamboo-run-")),
        "a run outside a leaf: {leaves:?}"
    );
    let distinct: std::collections::BTreeSet<&str> = leaves.iter().copied().collect();
    assert!(
        distinct.len() < leaves.len(),
        "every run had a leaf of its own, none was reused: {leaves:?}"
    );
    for leaf in distinct {
        let dir = mount.join(leaf.trim_start_matches('/'));
        assert!(
            within(Duration::from_secs(10), || !dir.exists()),
            "the kept leaf {} outlived its worker",
            dir.display()
        );
    }
}
