//! The `run` front door as people and scripts use it (issue 8): real
//! `bamboo-worker run` processes, real pipes, real signals, a real
//! pseudo-terminal. Output forms and exit codes are documented in
//! docs/operations.md ("The run front door").

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bamboo_e2e::terminal::Terminal;
use bamboo_e2e::{process_gone, worker_bin};

/// A `run` command whose temporary data directory lands in `tmp` (so the
/// test can check it is gone), in its own process group.
fn run_in(tmp: &Path) -> Command {
    let mut cmd = Command::new(worker_bin());
    cmd.arg("run")
        .env("TMPDIR", tmp)
        .env("NO_COLOR", "1")
        .process_group(0);
    cmd
}

/// `bamboo-run-*` entries left in `tmp`.
fn leftovers(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bamboo-run-"))
        .collect()
}

/// Waits until `check` holds (polling; the processes under test are real).
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Worker processes of the front door `pid` (its children but the reaper).
fn workers_of(pid: u32) -> Vec<u32> {
    children_of(pid, false)
}

/// Children of `pid`: the temp-dir reaper (`reaper`), or all the others.
fn children_of(pid: u32, reaper: bool) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        let cmdline = std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
        if ppid == Some(pid) && cmdline.contains("__reap-tempdir") == reaper && !process_gone(p) {
            found.push(p);
        }
    }
    found
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the front door did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal_group(pgid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {signal} -{pgid}");
}

fn read_all(r: Option<impl Read>) -> String {
    let mut text = String::new();
    if let Some(mut r) = r {
        r.read_to_string(&mut text).unwrap();
    }
    text
}

/// Issue 8, lossless (E7, E12): 3000 echo children with stdout to a file all
/// complete, and every result line is there.
#[test]
fn three_thousand_children_all_complete_with_every_result_line() {
    let tmp = tempfile::tempdir().unwrap();
    let tasks = tmp.path().join("tasks.txt");
    let text: String = (1..=3000).map(|i| format!("c{i}\n")).collect();
    std::fs::write(&tasks, text).unwrap();
    let out_path = tmp.path().join("out.txt");
    let status = run_in(tmp.path())
        .args(["--max-running", "16", "--from"])
        .arg(&tasks)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .unwrap();
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        status.status.success(),
        "exit {:?}\n{}",
        status.status.code(),
        String::from_utf8_lossy(&status.stderr)
    );
    for i in 1..=3000 {
        let line = format!("[c{i}] completed: echo: c{i}\n");
        assert!(out.contains(&line), "missing {line:?}");
    }
    assert!(
        out.contains("3000 of 3000 runs completed"),
        "{}",
        &out[out.len().saturating_sub(500)..]
    );
    assert!(leftovers(tmp.path()).is_empty());
}

/// Issue 8, lossless under back-pressure (E7): a cli child printing 200,000 lines,
/// read slowly through a pipe, arrives whole and in order.
#[test]
fn two_hundred_thousand_lines_arrive_in_order_through_a_slow_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = run_in(tmp.path())
        .args(["--executor", "cli", "count", "--", "seq", "1", "200000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut since_pause = 0;
    loop {
        let n = stdout.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
        since_pause += n;
        // A slow reader: the pipe fills and the front door must wait, not drop.
        if since_pause >= 32 * 1024 {
            since_pause = 0;
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let status = wait_exit(&mut child, Duration::from_secs(120));
    let stderr = read_all(child.stderr.take());
    assert!(status.success(), "exit {:?}: {stderr}", status.code());
    let text = String::from_utf8(bytes).unwrap();
    let numbers: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("[count] "))
        .filter_map(|rest| rest.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 200_000, "lines lost; stderr: {stderr}");
    assert!(
        numbers.iter().zip(1..).all(|(n, want)| *n == want),
        "lines out of order"
    );
    assert!(
        text.contains("[count] completed\n"),
        "the result is not printed again"
    );
}

/// Issue 8, `--json`: every line parses; event lines carry kind, seq (1, 2,
/// ... without gaps), time, child_id, name and the event; the last line is
/// the summary.
#[test]
fn json_output_is_one_documented_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(tmp.path())
        .args([
            "--json",
            "--name",
            "good",
            "hello world",
            "--assignment",
            "-dash __fail:boom",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (summary, events) = lines.split_last().unwrap();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["kind"], "event", "{e}");
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1), "{e}");
        assert!(e["time"].as_str().is_some_and(|t| t.contains('T')), "{e}");
        assert!(e["child_id"].is_string() && e["name"].is_string(), "{e}");
        assert!(e["event"]["type"].is_string(), "{e}");
    }
    let tokens: String = events
        .iter()
        .filter(|e| e["name"] == "good" && e["event"]["event"]["type"] == "token")
        .map(|e| e["event"]["event"]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens, "hello world ");
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(summary["interrupted"], false);
    assert_eq!(
        (summary["total"].as_u64(), summary["completed"].as_u64()),
        (Some(2), Some(1))
    );
    let kids = summary["children"].as_array().unwrap();
    assert_eq!(kids[0]["name"], "good");
    assert_eq!(kids[0]["status"], "completed");
    assert_eq!(kids[0]["result"], "echo: hello world");
    assert!(kids[0]["duration_ms"].is_u64() && kids[0]["child_id"].is_string());
    assert_eq!(kids[1]["name"], "dash", "an assignment may start with -");
    assert_eq!(kids[1]["status"], "error");
    assert_eq!(kids[1]["error"], "boom");
}

/// Issue 8 (5), E19: the first SIGINT or SIGTERM to the front door's process
/// group cancels every child, prints the summary and exits 130; the workers
/// are gone within a second of its exit, and so is the temporary directory.
#[test]
fn sigint_and_sigterm_cancel_the_children_print_the_summary_and_exit_130() {
    for (signal, json) in [("-INT", false), ("-TERM", true)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut cmd = run_in(tmp.path());
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .args([
                "__sleep_ms:60000 a",
                "__sleep_ms:60000 b",
                "__sleep_ms:60000 c",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(
            eventually(Duration::from_secs(30), || workers_of(pid).len() >= 3),
            "three workers never started"
        );
        let workers = workers_of(pid);
        let sent = Instant::now();
        signal_group(pid, signal);
        let status = wait_exit(&mut child, Duration::from_secs(15));
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "{signal}: slow to stop"
        );
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        assert_eq!(status.code(), Some(130), "{signal}: {stdout}\n{stderr}");
        assert!(
            eventually(Duration::from_secs(1), || workers
                .iter()
                .all(|p| process_gone(*p))),
            "{signal}: workers {workers:?} outlived the front door by more than 1 s"
        );
        if json {
            let last: serde_json::Value =
                serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
            assert_eq!(last["kind"], "summary", "{stdout}");
            assert_eq!(last["interrupted"], true);
            assert_eq!(last["exit_code"], 130);
        } else {
            assert!(stdout.contains("0 of 3 runs completed"), "{stdout}");
            assert!(stdout.contains("(interrupted)"), "{stdout}");
            assert!(
                stdout.contains("NAME") && stdout.contains("cancelled"),
                "{stdout}"
            );
        }
        assert!(
            stderr.contains("SIG"),
            "the interrupt is acknowledged: {stderr}"
        );
        assert!(
            eventually(Duration::from_secs(3), || leftovers(tmp.path()).is_empty()),
            "{signal}: left {:?}",
            leftovers(tmp.path())
        );
    }
}

/// Issue 8 (5): `run ... | head -1` — the reader goes away after one line; the
/// front door cancels its children and exits quietly, without a panic.
#[test]
fn a_closed_stdout_cancels_the_children_and_exits_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = run_in(tmp.path())
        .args(["quick", "__sleep_ms:60000 slow", "__sleep_ms:60000 slower"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut first = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("[quick]"), "{first}");
    // The slow children's workers, seen while the reader is still there (the
    // front door may cancel them as soon as it is gone).
    assert!(eventually(Duration::from_secs(30), || workers_of(pid)
        .len()
        >= 2));
    let workers = workers_of(pid);
    // The reader (and the pipe) goes, like `head -1` exiting.
    drop(reader);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let stderr = read_all(child.stderr.take());
    assert_ne!(status.code(), Some(101), "panicked: {stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert!(eventually(Duration::from_secs(1), || workers
        .iter()
        .all(|p| process_gone(*p))));
    assert!(eventually(Duration::from_secs(3), || leftovers(tmp.path()).is_empty()));
}

/// Issue 9: after SIGKILL of the front door no `bamboo-run-*` is left: the
/// reaper removes it, and then exits itself.
#[test]
fn sigkill_of_the_front_door_leaves_no_temporary_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = run_in(tmp.path())
        .args(["--json", "__sleep_ms:60000 a", "__sleep_ms:60000 b"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Both runs started: both workers are serving (and watching their parent).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut started = 0;
    while started < 2 {
        let line = lines.next().expect("stdout ended early").unwrap();
        started += usize::from(line.contains(r#""type":"sub_agent_started""#));
    }
    let found = leftovers(tmp.path());
    assert_eq!(found.len(), 1, "the data directory exists while it runs");
    let dir = tmp.path().join(&found[0]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "session data is private");
    let workers = workers_of(pid);
    let reaper = children_of(pid, true);
    assert_eq!(reaper.len(), 1, "one reaper runs beside the front door");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || leftovers(tmp.path()).is_empty()),
        "left {:?}",
        leftovers(tmp.path())
    );
    let all_gone = || workers.iter().all(|p| process_gone(*p));
    assert!(
        eventually(Duration::from_secs(5), all_gone),
        "workers {workers:?} linger"
    );
    assert!(
        eventually(Duration::from_secs(5), || process_gone(reaper[0])),
        "the reaper exits once its job is done"
    );
}

/// Issue 8 (3, 6), E17, on a pseudo-terminal (`script`): the status area appears, a
/// gated action prompts with the child's name, and `a` approves that tool for
/// the rest of the run (the second request is not asked again).
#[test]
fn on_a_terminal_the_status_area_shows_and_a_prompt_answered_a_covers_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let line = format!(
        "{} run --name first --name second '__approve:write_file one' '__sleep_ms:1500 __approve:write_file two'",
        worker_bin().display()
    );
    let mut term = Terminal::start(
        &line,
        &[
            ("TMPDIR", tmp.path().as_os_str()),
            ("NO_COLOR", "1".as_ref()),
        ],
    );
    let text = term.read_until("[y/n/a/N]", Duration::from_secs(30));
    assert!(text.contains("[first] asks to use write_file"), "{text}");
    term.type_keys(b"a\n");
    term.read_until("runs completed", Duration::from_secs(30));
    let (status, text) = term.wait(Duration::from_secs(30));
    assert!(status.success(), "{text}");
    assert!(text.contains("[first] approved:write_file one"), "{text}");
    assert!(text.contains("[second] approved:write_file two"), "{text}");
    assert_eq!(text.matches("[y/n/a/N]").count(), 1, "asked once: {text}");
    assert!(
        text.contains("running") && text.contains("queued ·"),
        "status area: {text}"
    );
    assert!(text.contains("2 of 2 runs completed"), "{text}");
}

/// Issue 8 (6), E17: without a terminal a gated action is denied, and the note
/// says how to allow it; `--approve-tool` allows exactly that tool.
#[test]
fn without_a_terminal_denials_say_how_to_allow_and_approve_tool_allows() {
    let tmp = tempfile::tempdir().unwrap();
    let denied = run_in(tmp.path())
        .arg("__approve:write_file x")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&denied.stdout),
        String::from_utf8_lossy(&denied.stderr),
    );
    assert!(stdout.contains("denied:write_file"), "{stdout}");
    assert!(
        stderr.contains("--approve-tool write_file") && stderr.contains("--approve all"),
        "{stderr}"
    );
    let allowed = run_in(tmp.path())
        .args(["--approve-tool", "write_file", "__approve:write_file x"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&allowed.stdout);
    assert!(stdout.contains("approved:write_file"), "{stdout}");
}

/// Issue 23, E17: the program named after `--` is approved ahead with each
/// run, so its worker asks nothing (the engine logs every approval it
/// decides); with `--approve none` it asks, and is denied.
#[test]
fn the_named_program_runs_without_asking_for_approval() {
    let tmp = tempfile::tempdir().unwrap();
    let cli_run = |extra: &[&str]| {
        run_in(tmp.path())
            .env("RUST_LOG", "bamboo_engine=info")
            .args(["--executor", "cli", "-q"])
            .args(extra)
            .args(["one", "two", "--", "sh", "-c", "cat"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ran = cli_run(&[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr),
    );
    assert_eq!(ran.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("one") && stdout.contains("two"), "{stdout}");
    assert!(!stderr.contains("approval decided"), "{stderr}");

    let refused = cli_run(&["--approve", "none"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("approval decided").count(), 2, "{stderr}");
}

/// Issue 9, E9: `--run-timeout` caps each child's run (humane units accepted);
/// a bad value is a usage error (exit 2) naming the accepted forms.
#[test]
fn run_timeout_caps_a_child_and_bad_durations_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(tmp.path())
        .args([
            "--run-timeout",
            "1s",
            "--name",
            "sleepy",
            "__sleep_ms:30000 x",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("[sleepy] timeout"), "{stdout}");
    let bad = run_in(tmp.path())
        .args(["--idle-timeout", "soon", "x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("15m"));
}

/// E18: a child's own spawn is shown under its parent's name (`name/1`).
#[test]
fn nested_spawns_are_shown_under_their_parents_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(tmp.path())
        .args(["--name", "boss", "__spawn:helper-task"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("[boss/1] helper-task\n"), "{stdout}");
    assert!(
        stdout.contains("[boss] completed: echo: spawned:echo: helper-task"),
        "{stdout}"
    );
}

/// A terminal emulator (tmux) running one command line, read as a person
/// sees it (screen and scrollback); killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `line` on a terminal `columns` wide.
    fn start(columns: u16, line: &str) -> Self {
        let t = Self {
            socket: format!("bamboo-test-{}-{columns}", std::process::id()),
        };
        let script = format!("{line}; echo __ENDED__; sleep 60");
        let cols = columns.to_string();
        let started = t.tmux(&[
            "new-session",
            "-d",
            "-x",
            &cols,
            "-y",
            "30",
            "-s",
            "t",
            &script,
        ]);
        assert!(started.status.success(), "{started:?}");
        t
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("tmux runs (it ships with the machine image; apt-get install tmux)")
    }

    /// The screen and its scrollback, as text.
    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-S", "-5000", "-t", "t"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `needle`; the screen then.
    fn wait_for(&self, needle: &str) -> String {
        let seen = eventually(Duration::from_secs(60), || self.screen().contains(needle));
        let text = self.screen();
        assert!(seen, "never saw {needle:?} in:\n{text}");
        text
    }

    /// Types `keys` and Enter.
    fn type_line(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", "t", keys, "Enter"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// `line` on a terminal `columns` wide, read once it has ended.
fn in_tmux(columns: u16, line: &str) -> String {
    Tmux::start(columns, line).wait_for("__ENDED__")
}

/// Issue 25: on a terminal narrower than the status area's line, each redraw
/// used to leave a wrapped copy of it behind. Every line is now cut to the
/// width: after 20 children at 50 columns, neither the final screen nor the
/// scrollback holds a status line.
#[test]
fn a_50_column_terminal_keeps_no_copy_of_the_status_area() {
    let tmp = tempfile::tempdir().unwrap();
    let mut line = format!(
        "TMPDIR={} {} run --max-running 6",
        tmp.path().display(),
        worker_bin().display()
    );
    // Names long enough that a child's status line is wider than 50.
    for i in 1..=20 {
        line.push_str(&format!(" --name quite-a-long-child-name-{i}"));
    }
    for i in 1..=20 {
        line.push_str(&format!(" '__sleep_ms:{} child number {i} writes'", i * 60));
    }
    let text = in_tmux(50, &line);
    assert!(text.contains("20 of 20 runs completed"), "{text}");
    for row in text.lines() {
        assert!(
            !row.contains("── ") && !row.contains("queued ·") && !row.contains(" running ·"),
            "a status line was left behind: {row:?} in\n{text}"
        );
    }
}

/// The statuses of the child sessions stored under `data`, read past the
/// engine (the run holds the directory's lock).
fn stored_child_statuses(data: &Path) -> Vec<String> {
    let all = bamboo_engine::store::Query::all();
    bamboo_engine::store::FileStore::peek_query(data, &all)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| s.status.map(|st| st.as_str().to_owned()))
        .collect()
}

/// Issue 25: other children's output used to print onto a waiting approval
/// question and push it off screen. While it waits, output and notes are
/// held; once answered they follow, in order.
#[test]
fn a_waiting_question_stays_intact_while_other_children_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut line = format!(
        "TMPDIR={} {} run --data-dir {} --name asker '__approve:write_file notes.txt'",
        tmp.path().display(),
        worker_bin().display(),
        data.display()
    );
    for i in 1..=5 {
        line.push_str(&format!(
            " '__sleep_ms:{} chatter {i} says hello'",
            300 + i * 100
        ));
    }
    let term = Tmux::start(120, &line);
    term.wait_for("[y/n/a/N]");
    // Every chatty child ends while the question waits.
    let all_done = eventually(Duration::from_secs(30), || {
        stored_child_statuses(&data)
            .iter()
            .filter(|s| *s == "completed")
            .count()
            == 5
    });
    assert!(all_done, "{:?}", stored_child_statuses(&data));
    let screen = term.screen();
    let last = screen
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.trim_end().ends_with("[y/n/a/N]"),
        "the question is the last thing on screen: {last:?} in\n{screen}"
    );
    assert!(!screen.contains("[chatter-1-says] completed"), "{screen}");
    term.type_line("y");
    let screen = term.wait_for("6 of 6 runs completed");
    let asked = screen.find("[y/n/a/N]").unwrap();
    let released = screen
        .find("[chatter-1-says] completed")
        .expect("held output follows");
    assert!(released > asked, "{screen}");
    assert!(
        screen.contains("[asker] approved:write_file notes.txt"),
        "{screen}"
    );
}

/// Issue 25: an assignment that starts with `-` is pointed at
/// `--assignment` (clap's own tip, `-- -x`, would start a cli program named
/// `-x`); a misspelled flag still gets its similar one; both exit 2.
#[test]
fn a_dash_assignment_is_pointed_at_assignment_not_at_double_dash() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(tmp.path()).arg("-x").output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("bamboo-worker run --assignment '-x'"),
        "{said}"
    );
    assert!(!said.contains("use '-- -x'"), "{said}");
    let out = run_in(tmp.path()).args(["--jsn", "a"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("a similar argument exists: '--json'"),
        "{said}"
    );
    let out = run_in(tmp.path())
        .args(["--assignment", "-x"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
