//! The run leaf with real processes in a real cgroup v2 hierarchy; each test
//! that needs one says so and passes when none is writable here.

use std::process::Stdio;

use tokio::io::AsyncBufReadExt;

use super::*;

/// The worker's own cgroup, or why these tests cannot use one.
fn own_or_skip(test: &str) -> Option<&'static Path> {
    let own = hierarchy::own_cgroup();
    if own.is_none() {
        eprintln!("skipping {test}: no writable cgroup v2 hierarchy here (see the debug log)");
    }
    own
}

/// The `0::` path of `pid`.
fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .unwrap_or_default()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
    })
}

/// `sh` in a fresh leaf, starting a `setsid sleep` and printing its pid.
async fn escapee_in_leaf() -> (Leaf, tokio::process::Child, i32) {
    let mut leaf = Leaf::create().expect("a leaf where the hierarchy is writable");
    let mut cmd = tokio::process::Command::new("sh");
    cmd.args([
        "-c",
        "setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $!; exec sleep 30",
    ])
    .stdout(Stdio::piped())
    .kill_on_drop(true);
    leaf.enter_on_spawn(&mut cmd);
    let mut child = cmd.spawn().expect("spawn sh in the leaf");
    leaf.spawned();
    let mut line = String::new();
    tokio::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .await
        .expect("read the escapee's pid");
    let escapee = line.trim().parse().expect("a pid");
    (leaf, child, escapee)
}

#[test]
fn leaf_names_carry_their_worker_and_tell_a_dead_one() {
    let name = leaf_name();
    assert!(name.starts_with(LEAF_PREFIX), "{name}");
    let me = owner();
    assert_eq!(leaf_owner(&name), Some(me));
    assert!(!owner_gone(me));
    let parent = std::os::unix::process::parent_id();
    let parent = Owner {
        pid: parent,
        start: start_time(parent).expect("the parent's start time"),
        ..me
    };
    assert!(!owner_gone(parent), "a live process");
    assert!(
        owner_gone(Owner {
            start: parent.start + 1,
            ..parent
        }),
        "a recycled pid"
    );
    assert!(
        owner_gone(Owner {
            pid: u32::MAX,
            ..me
        }),
        "no such process"
    );
    let elsewhere = Owner {
        pid_ns: me.pid_ns + 1,
        pid: u32::MAX,
        ..me
    };
    assert!(
        !owner_gone(elsewhere),
        "a pid of another namespace tells nothing"
    );
    for bad in [
        "bamboo-run-1-2-3",
        "bamboo-run-x-1-2-3",
        "bamboo-run-1-2-3-4-5",
        "other-1-2-3-4",
    ] {
        assert_eq!(leaf_owner(bad), None, "{bad}");
    }
}

#[tokio::test]
async fn everything_a_program_starts_is_in_its_leaf_and_dies_with_it() {
    let Some(own) = own_or_skip("everything_a_program_starts_is_in_its_leaf_and_dies_with_it")
    else {
        return;
    };
    let (leaf, mut child, escapee) = escapee_in_leaf().await;
    let dir = leaf.dir().to_path_buf();
    assert!(dir.starts_with(own));
    let pid = child.id().expect("running");
    let leaf_path = cgroup_of(pid);
    assert!(leaf_path.contains(LEAF_PREFIX), "{leaf_path}");
    assert_eq!(
        cgroup_of(escapee as u32),
        leaf_path,
        "the setsid escapee too"
    );
    let held = leaf.kill();
    assert!(
        held.contains(&escapee) && held.contains(&(pid as i32)),
        "{held:?}"
    );
    assert!(!child.wait().await.expect("wait").success());
    leaf.remove_when_empty().await;
    assert!(!dir.exists(), "the leaf is removed");
    // The escapee was our child: it left the leaf when it died (a zombie).
    let _ = nix::sys::wait::waitpid(Pid::from_raw(escapee), None);
    assert!(!alive(escapee));
}

#[tokio::test]
async fn without_cgroup_kill_the_members_are_killed_one_by_one() {
    if own_or_skip("without_cgroup_kill_the_members_are_killed_one_by_one").is_none() {
        return;
    }
    let (leaf, mut child, escapee) = escapee_in_leaf().await;
    let held = kill_one_by_one(leaf.dir(), HashSet::new());
    assert!(held.contains(&escapee), "{held:?}");
    assert!(!child.wait().await.expect("wait").success());
    let dir = leaf.dir().to_path_buf();
    let events = std::fs::read_to_string(dir.join("cgroup.events")).expect("events");
    assert!(events.contains("frozen 0"), "left frozen: {events}");
    leaf.remove_when_empty().await;
    assert!(!dir.exists(), "the leaf is removed");
}

#[tokio::test]
async fn a_dead_workers_leaf_is_killed_and_removed_by_the_next_leaf() {
    let Some(own) = own_or_skip("a_dead_workers_leaf_is_killed_and_removed_by_the_next_leaf")
    else {
        return;
    };
    // No pid is this large (pid_max is at most 2^22), so its worker is gone.
    let stale = own.join(format!("{LEAF_PREFIX}{}-{}-1-0", owner().pid_ns, u32::MAX));
    std::fs::create_dir(&stale).expect("create the stale leaf");
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    std::fs::write(stale.join("cgroup.procs"), sleeper.id().to_string())
        .expect("move sleep into the stale leaf");
    let fresh = Leaf::create().expect("a new leaf");
    assert!(
        !sleeper.wait().expect("wait").success(),
        "the stale leaf's process was killed"
    );
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        while stale.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the stale leaf {} remains", stale.display());
    let dir = fresh.dir().to_path_buf();
    assert!(dir.exists(), "our own leaf is kept");
    fresh.remove_when_empty().await;
    assert!(!dir.exists());
}

#[tokio::test]
async fn a_dropped_leaf_kills_its_processes_and_is_removed() {
    if own_or_skip("a_dropped_leaf_kills_its_processes_and_is_removed").is_none() {
        return;
    }
    let (leaf, mut child, escapee) = escapee_in_leaf().await;
    let dir = leaf.dir().to_path_buf();
    drop(leaf);
    assert!(!child.wait().await.expect("wait").success());
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        while dir.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the dropped leaf {} remains", dir.display());
    let _ = nix::sys::wait::waitpid(Pid::from_raw(escapee), None);
    assert!(!alive(escapee));
}

/// Spawns `true` in `leaf` and waits for it.
async fn run_true_in(leaf: &mut Leaf) {
    let mut cmd = tokio::process::Command::new("true");
    leaf.enter_on_spawn(&mut cmd);
    let mut child = cmd.spawn().expect("spawn true in the leaf");
    leaf.spawned();
    assert!(child.wait().await.expect("wait").success());
}

// F12 (issue 23): a worker keeps a run's emptied leaf for its next run only
// when the leaf is exactly as a fresh one; anything a program changed that
// would reach the next run (a cgroup below it, a freeze) gets it removed.
#[tokio::test]
async fn only_a_leaf_left_as_fresh_is_fit_for_the_next_run() {
    if own_or_skip("only_a_leaf_left_as_fresh_is_fit_for_the_next_run").is_none() {
        return;
    }
    let mut leaf = Leaf::create().expect("a leaf where the hierarchy is writable");
    let dir = leaf.dir().to_path_buf();
    run_true_in(&mut leaf).await;
    assert!(leaf.kill().is_empty(), "nothing is left to kill");
    assert!(reusable(&dir), "a leaf its program left empty");

    let below = dir.join("made-by-the-program");
    std::fs::create_dir(&below).expect("a cgroup below the leaf");
    assert!(!reusable(&dir), "a leaf with a cgroup below it");
    std::fs::remove_dir(&below).expect("remove the cgroup below");
    assert!(reusable(&dir));

    if std::fs::write(dir.join("cgroup.freeze"), "1").is_ok() {
        assert!(!reusable(&dir), "a frozen leaf");
        std::fs::write(dir.join("cgroup.freeze"), "0").expect("thaw");
    }

    let (busy, mut child, escapee) = escapee_in_leaf().await;
    assert!(!reusable(busy.dir()), "a leaf with processes in it");
    busy.kill();
    let _ = child.wait().await;
    let _ = nix::sys::wait::waitpid(Pid::from_raw(escapee), None);
    busy.remove_when_empty().await;

    // Outside a worker (no keep_emptied_leaves), a leaf is removed at the end.
    leaf.release().await;
    assert!(!dir.exists(), "the leaf {} is removed", dir.display());
}
