//! Sessions after the run, through the real front door: `sessions` lists and
//! shows what `run --data-dir` kept, `run --resume ROOT` reruns what a killed
//! run left unfinished, and `run --pass-env NAME` hands a variable to cli
//! programs on purpose (S3, E4, E20; issue 8 parts 7 and 8).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bamboo_cli::resume::children_to_resume;
use bamboo_domain::ChildStatus;
use bamboo_engine::{CreateChild, Engine};
use bamboo_subagent::spec::ExecutorSpec;
use serde_json::Value;

/// Generous bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(30);

fn worker(args: &[&str]) -> Output {
    Command::new(bamboo_e2e::worker_bin())
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sessions --data-dir D --json`, parsed.
fn listing(dir: &Path) -> Value {
    let out = worker(&["sessions", "--data-dir", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The (title, status) of each child of the only root in `listing`.
fn children(listing: &Value) -> Vec<(String, String)> {
    let roots = listing.as_array().unwrap();
    assert_eq!(roots.len(), 1, "{listing:#}");
    roots[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["title"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn echo_engine(dir: &Path) -> bamboo_engine::EngineBuilder {
    Engine::builder()
        .data_dir(dir)
        .worker_program(bamboo_e2e::worker_bin())
        .executor(ExecutorSpec::Echo)
}

#[test]
fn sessions_lists_a_runs_children_and_shows_transcript_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = worker(&["run", "--data-dir", d, "alpha one", "beta two"]);
    assert!(out.status.success(), "{}", text(&out));

    let human = worker(&["sessions", "--data-dir", d]);
    let list = stdout(&human);
    assert!(human.status.success(), "{}", text(&human));
    // The root is titled with its first assignment.
    assert!(list.starts_with("alpha one  "), "{list}");
    // Children are titled with their short names (`run` derives them from
    // the first words of each assignment).
    for title in ["alpha-one", "beta-two"] {
        let row = list.lines().find(|l| l.contains(title)).unwrap_or_default();
        assert!(row.starts_with("  ") && row.contains("completed"), "{list}");
    }

    let json = listing(dir.path());
    assert_eq!(
        children(&json),
        vec![
            ("alpha-one".to_owned(), "completed".to_owned()),
            ("beta-two".to_owned(), "completed".to_owned())
        ]
    );
    let root = json[0]["id"].as_str().unwrap().to_owned();
    let alpha = json[0]["children"][0]["id"].as_str().unwrap().to_owned();

    let shown = worker(&["sessions", "--data-dir", d, "show", &alpha]);
    let child = stdout(&shown);
    assert!(shown.status.success(), "{}", text(&shown));
    assert!(child.contains("status   completed"), "{child}");
    assert!(child.contains("  user: alpha one"), "{child}");
    assert!(child.contains("  assistant: echo: alpha one"), "{child}");
    // The tokens are assembled into the child's text, on one line.
    assert!(child.contains("[alpha-one] alpha one \n"), "{child}");
    assert!(child.contains("[alpha-one] completed"), "{child}");
    assert!(!child.contains("beta"), "only this child's events: {child}");

    let shown = worker(&["sessions", "show", &root, "--data-dir", d, "--json"]);
    assert!(shown.status.success(), "{}", text(&shown));
    let doc: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(doc["session"]["id"], root.as_str());
    let events = doc["descendant_events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap");
    let completions = events
        .iter()
        .filter(|e| e["event"]["type"] == "sub_agent_completed")
        .count();
    assert_eq!(completions, 2, "{doc:#}");
}

#[test]
fn sessions_names_what_is_wrong_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = worker(&["sessions", "--data-dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no data directory at"),
        "{}",
        text(&out)
    );

    let out = worker(&["sessions"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--data-dir DIR is required"));

    let d = dir.path().to_str().unwrap();
    let out = worker(&["sessions", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("has no sessions/ folder"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("engine.lock").exists(), "nothing created");

    std::fs::create_dir(dir.path().join("sessions")).unwrap();
    let out = worker(&["sessions", "--data-dir", d]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("no sessions"), "{}", text(&out));
    let out = worker(&["sessions", "--data-dir", d, "show", "no-such-id"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no session no-such-id"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn sessions_reads_a_directory_an_engine_has_open_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = echo_engine(dir.path()).build().await.unwrap();
    let root = engine.create_root("held", None).await.unwrap().id;
    let before = tree_bytes(dir.path());
    let out = tokio::process::Command::new(bamboo_e2e::worker_bin())
        .args(["sessions", "--data-dir", dir.path().to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains(&root), "{}", text(&out));
    assert_eq!(tree_bytes(dir.path()), before, "nothing written");
    engine.shutdown().await;
}

/// Every file under `dir` and its bytes, to see that a reader wrote nothing.
/// The store's shared-memory file (`store.db-shm`) is left out: it holds no
/// session, only the index of its WAL and the marks readers take while they
/// read.
fn tree_bytes(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with("-shm") {
            continue;
        }
        if path.is_dir() {
            out.extend(tree_bytes(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

/// The id and title of the only child of the only root in `dir`.
fn only_child(dir: &Path) -> (String, String) {
    let json = listing(dir);
    let child = &json[0]["children"][0];
    (
        child["id"].as_str().unwrap().to_owned(),
        child["title"].as_str().unwrap().to_owned(),
    )
}

/// Issue 25 part 6: a child that streamed 2,000 tokens shows as its text,
/// in a few lines, not one line per token.
#[test]
fn show_assembles_a_childs_tokens_into_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let words: Vec<String> = (0..2000).map(|i| format!("w{i}")).collect();
    let assignment = words.join(" ");
    let out = worker(&["run", "--data-dir", d, &assignment]);
    assert!(out.status.success(), "{}", text(&out));
    let (id, title) = only_child(dir.path());
    let shown = worker(&["sessions", "--data-dir", d, "--no-pager", "show", &id]);
    assert!(shown.status.success(), "{}", text(&shown));
    let all = stdout(&shown);
    let events: Vec<&str> = all
        .lines()
        .skip_while(|l| !l.starts_with("events of this child"))
        .skip(1)
        // Up to the count line that ends the log's events.
        .take_while(|l| !l.starts_with('('))
        .collect();
    assert!(events.len() <= 5, "a few lines, not 2,000: {events:#?}");
    let text_line = events
        .iter()
        .find(|l| l.contains(&format!("[{title}] w0 w1 w2 ")))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(text_line.trim_end().ends_with("w1998 w1999"), "{text_line}");
}

/// Issue 25 part 6: on a terminal `show` goes through `$PAGER`; with
/// `--no-pager`, or piped, it is printed straight.
#[test]
fn show_pages_through_the_pager_on_a_terminal_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = worker(&["run", "--data-dir", d, "paged child"]);
    assert!(out.status.success(), "{}", text(&out));
    let (id, _) = only_child(dir.path());
    // `script` gives `sessions` a pseudo-terminal as stdout; the "pager"
    // marks every line it shows.
    let on_terminal = |extra: &str| {
        let cmd = format!(
            "{} sessions --data-dir {d} show {id} {extra}",
            bamboo_e2e::worker_bin().display()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("PAGER", "sed 's/^/paged: /'")
            .stdin(Stdio::null())
            .output()
            .expect("`script` (util-linux) is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let paged = on_terminal("");
    assert!(paged.contains("paged: session  "), "{paged}");
    let straight = on_terminal("--no-pager");
    assert!(
        straight.contains("session  ") && !straight.contains("paged: "),
        "{straight}"
    );
    // Piped: never paged.
    let piped = Command::new(bamboo_e2e::worker_bin())
        .args(["sessions", "--data-dir", d, "show", &id])
        .env("PAGER", "sed 's/^/paged: /'")
        .output()
        .unwrap();
    assert!(!stdout(&piped).contains("paged: "), "{}", text(&piped));
}

/// Issue 25 part 6: while `run --data-dir D` holds D, `sessions` lists and
/// shows its running child (read-only), and `show --follow` prints the
/// child's events as they are logged and ends when the child ends.
#[test]
fn sessions_list_show_and_follow_a_running_child() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut run = Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--data-dir", d, "__sleep_ms:4000 slow child text"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the child to be stored as running.
    let deadline = Instant::now() + SOON;
    let (id, title) = loop {
        assert!(
            Instant::now() < deadline,
            "the child never showed as running"
        );
        if dir.path().join("sessions").is_dir() {
            let out = worker(&["sessions", "--data-dir", d, "--json"]);
            assert!(out.status.success(), "read-only while held: {}", text(&out));
            let json: Value = serde_json::from_slice(&out.stdout).unwrap();
            let child = &json[0]["children"][0];
            if child["status"] == "running" {
                break (
                    child["id"].as_str().unwrap().to_owned(),
                    child["title"].as_str().unwrap().to_owned(),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run still holds the directory"
    );
    let human = worker(&["sessions", "--data-dir", d]);
    assert!(stdout(&human).contains("running"), "{}", text(&human));
    let shown = worker(&["sessions", "--data-dir", d, "show", &id]);
    assert!(shown.status.success(), "{}", text(&shown));
    assert!(
        stdout(&shown).contains("status   running"),
        "{}",
        text(&shown)
    );

    let followed = worker(&["sessions", "--data-dir", d, "show", &id, "--follow"]);
    let all = text(&followed);
    assert!(followed.status.success(), "{all}");
    // It ended because the child did: the run is over or ending.
    let status = run.wait().unwrap();
    assert!(status.success(), "{all}");
    assert!(all.contains(&format!("[{title}] slow child text")), "{all}");
    assert!(all.contains(&format!("[{title}] completed")), "{all}");
}

/// `children_to_resume` picks the unfinished children, oldest first, and
/// `run --resume` reruns exactly those (a failing one fails again: exit 1).
#[tokio::test]
async fn resume_selects_pending_and_errored_children_but_not_completed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let engine = echo_engine(dir.path()).build().await.unwrap();
    let root = engine.create_root("crafted", None).await.unwrap().id;
    let mut ids = Vec::new();
    for assignment in ["done", "__fail:boom", "queued"] {
        let c = engine
            .create_child(CreateChild::new(&root, assignment))
            .await
            .unwrap();
        ids.push(c.id);
    }
    for id in &ids[..2] {
        let ticket = engine.run_child(&root, id, true).await.unwrap();
        tokio::time::timeout(SOON, ticket).await.unwrap().unwrap();
    }
    assert_eq!(
        engine.get_child(&root, &ids[1]).await.unwrap().status,
        ChildStatus::Error
    );
    let chosen = children_to_resume(&engine, &root).await.unwrap();
    assert_eq!(chosen, vec![ids[1].clone(), ids[2].clone()]);
    let err = children_to_resume(&engine, &ids[0]).await.unwrap_err();
    assert!(err.to_string().contains("is a child, not a root"), "{err}");
    let err = children_to_resume(&engine, "nope").await.unwrap_err();
    assert!(err.to_string().contains("no session nope"), "{err}");
    engine.shutdown().await;
    drop(engine);

    // A root made outside `run` records no executor: name it.
    let out = tokio::process::Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--data-dir", dir.path().to_str().unwrap()])
        .args(["--resume", &root, "--executor", "echo"])
        .output()
        .await
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(r#"rerunning "__fail:boom" (was error: boom)"#),
        "{all}"
    );
    assert!(all.contains(r#"rerunning "queued" (was pending)"#), "{all}");
    assert!(!all.contains(r#"rerunning "done""#), "{all}");
    assert!(all.contains("1 of 2 runs completed"), "{all}");
}

/// The crash story: `run --max-running 1` is SIGKILLed while its first child
/// runs and its second is queued. The next engine finds one orphan (`error`)
/// and one `pending` child; `run --resume ROOT` completes both, exit 0.
#[test]
fn resume_after_sigkill_completes_the_orphaned_and_the_queued_child() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut front = Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--data-dir", d, "--max-running", "1"])
        .args(["__sleep_ms:4000 slow first", "queued second"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_sessions(dir.path(), 3);
    front.kill().unwrap();
    front.wait().unwrap();

    let json = listing(dir.path());
    assert_eq!(
        children(&json),
        vec![
            ("slow-first".to_owned(), "error".to_owned()),
            ("queued-second".to_owned(), "pending".to_owned())
        ],
        "{json:#}"
    );
    let orphan_error = json[0]["children"][0]["last_error"].as_str().unwrap();
    assert!(orphan_error.contains("engine stopped"), "{orphan_error}");
    let root = json[0]["id"].as_str().unwrap().to_owned();

    let out = worker(&["run", "--data-dir", d, "--resume", &root]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(r#"rerunning "slow-first" (was error"#),
        "{all}"
    );
    assert!(
        all.contains(r#"rerunning "queued-second" (was pending)"#),
        "{all}"
    );
    assert!(all.contains("2 of 2 runs completed"), "{all}");
    assert_eq!(
        children(&listing(dir.path())),
        vec![
            ("slow-first".to_owned(), "completed".to_owned()),
            ("queued-second".to_owned(), "completed".to_owned())
        ]
    );

    let again = worker(&["run", "--data-dir", d, "--resume", &root]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("nothing to rerun"),
        "{}",
        text(&again)
    );
}

/// Waits until `dir` holds `n` sessions, one of them a running child.
fn wait_for_sessions(dir: &Path, n: usize) {
    let deadline = Instant::now() + SOON;
    let all = bamboo_engine::store::Query::all();
    loop {
        let stored = bamboo_engine::store::FileStore::peek_query(dir, &all).unwrap_or_default();
        let running = stored
            .iter()
            .any(|s| s.status == Some(bamboo_domain::ChildStatus::Running));
        if stored.len() == n && running {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {n} sessions with one running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cli child printing three variables, run with `extra` flags.
fn cli_env_run(extra: &[&str]) -> Output {
    Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--executor", "cli", "--approve", "all"])
        .args(extra)
        .args(["go", "--", "sh", "-c"])
        .arg(r#"echo "my=${MY_VAR:-none} foo=${FOO_TOKEN:-none} base=${OPENAI_BASE_URL:-none}""#)
        .env("MY_VAR", "plain-value")
        .env("FOO_TOKEN", "tok-passed-on-purpose")
        .env("OPENAI_BASE_URL", "http://passed.invalid")
        .env("RUST_LOG", "debug")
        .output()
        .unwrap()
}

#[test]
fn pass_env_hands_scrubbed_variables_to_cli_programs_only_when_named() {
    let without = cli_env_run(&[]);
    assert!(without.status.success(), "{}", text(&without));
    assert!(
        stdout(&without).contains("my=plain-value foo=none base=none"),
        "a plain name is inherited; secret-looking and provider names are scrubbed: {}",
        text(&without)
    );

    let with = cli_env_run(&[
        "--pass-env",
        "MY_VAR",
        "--pass-env",
        "FOO_TOKEN",
        "--pass-env",
        "OPENAI_BASE_URL",
    ]);
    let all = text(&with);
    assert!(with.status.success(), "{all}");
    assert!(
        stdout(&with)
            .contains("my=plain-value foo=tok-passed-on-purpose base=http://passed.invalid"),
        "{all}"
    );
    // Debug logs of the front door and its workers never show the value.
    let stderr = String::from_utf8_lossy(&with.stderr);
    assert!(!stderr.contains("tok-passed-on-purpose"), "{stderr}");
}

#[test]
fn pass_env_of_an_unset_variable_or_without_cli_is_a_usage_error() {
    let out = Command::new(bamboo_e2e::worker_bin())
        .args([
            "run",
            "--executor",
            "cli",
            "--pass-env",
            "SURELY_UNSET_VAR_42",
        ])
        .args(["go", "--", "true"])
        .env_remove("SURELY_UNSET_VAR_42")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--pass-env SURELY_UNSET_VAR_42: the variable is not set"),
        "{}",
        text(&out)
    );
    let out = worker(&["run", "--pass-env", "PATH", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--pass-env applies only to --executor cli"));
    let out = worker(&["run", "--resume", "r"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--data-dir"), "{}", text(&out));
}

/// S5: runs in two workspaces share a data directory; `sessions list
/// --project` shows only the roots and children of the project asked for,
/// named by its directory (any path to it) or by a key given to `run`.
#[test]
fn s5_sessions_list_project_shows_only_that_projects_roots_and_children() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (p, q) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pw, qw) = (p.path().to_str().unwrap(), q.path().to_str().unwrap());
    for (ws, words) in [(pw, "in p"), (qw, "in q")] {
        let out = worker(&["run", "--data-dir", d, "--workspace", ws, words]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = worker(&["run", "--data-dir", d, "--project", "named", "in named"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(listing(dir.path()).as_array().unwrap().len(), 3);

    let project = |key: &str| {
        let out = worker(&[
            "sessions",
            "list",
            "--data-dir",
            d,
            "--project",
            key,
            "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    // Another name of the same directory finds the same project.
    let via_dots = format!(
        "{pw}/../{}",
        p.path().file_name().unwrap().to_str().unwrap()
    );
    for key in [pw, via_dots.as_str()] {
        let only_p = project(key);
        assert_eq!(
            children(&only_p),
            [("in-p".to_owned(), "completed".to_owned())],
            "{only_p:#}"
        );
    }
    assert_eq!(children(&project(qw))[0].0, "in-q");
    assert_eq!(children(&project("named"))[0].0, "in-named");
    assert_eq!(project("/no/such/project"), Value::Array(vec![]));
}

/// Issue 25: a resume without the executor flags reruns a failed cli child
/// with its own program, never with echo (so a failure never turns into
/// `completed`); flags given again must match the first run's, and a root
/// that records no executor needs them.
#[test]
fn a_resume_reruns_a_failed_cli_child_with_its_own_program_never_echo() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let program = ["sh", "-c", "echo tried >&2; exit 3"];
    let first = Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--data-dir", d, "--executor", "cli", "fails", "--"])
        .args(program)
        .output()
        .unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let json = listing(dir.path());
    let root = json[0]["id"].as_str().unwrap().to_owned();
    let first_error = json[0]["children"][0]["last_error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(first_error.contains('3'), "{first_error}");

    let resumed = worker(&["run", "--data-dir", d, "--resume", &root]);
    let all = text(&resumed);
    assert_eq!(resumed.status.code(), Some(1), "{all}");
    assert!(!all.contains("echo: "), "never rerun by echo: {all}");
    assert!(all.contains("0 of 1 run completed"), "{all}");
    let json = listing(dir.path());
    assert_eq!(
        children(&json),
        vec![("fails".to_owned(), "error".to_owned())]
    );
    assert_eq!(
        json[0]["children"][0]["last_error"].as_str(),
        Some(first_error.as_str())
    );

    let echo = worker(&[
        "run",
        "--data-dir",
        d,
        "--resume",
        &root,
        "--executor",
        "echo",
    ]);
    assert_eq!(echo.status.code(), Some(2), "{}", text(&echo));
    let said = String::from_utf8_lossy(&echo.stderr);
    assert!(
        said.contains("--executor is echo here but cli in the first run"),
        "{said}"
    );
    let other = Command::new(bamboo_e2e::worker_bin())
        .args([
            "run",
            "--data-dir",
            d,
            "--resume",
            &root,
            "--executor",
            "cli",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2), "{}", text(&other));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("is true here but sh -c"),
        "{}",
        text(&other)
    );
    // The same flags again are fine.
    let same = Command::new(bamboo_e2e::worker_bin())
        .args([
            "run",
            "--data-dir",
            d,
            "--resume",
            &root,
            "--executor",
            "cli",
            "--",
        ])
        .args(program)
        .output()
        .unwrap();
    assert_eq!(same.status.code(), Some(1), "{}", text(&same));
}

/// Issue 25: the run says which root it is and how to resume it; the JSON
/// summary carries the root, each child's assignment and times; a root is
/// titled with its first assignment; ids can be given by a unique prefix;
/// `--from` skips `#` comments and an empty assignment is a usage error.
#[test]
fn the_root_is_named_at_the_start_and_found_again_by_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let tasks = dir.path().join("tasks.txt");
    std::fs::write(
        &tasks,
        "# the plan\nfirst task\n  # indented note\n__fail:second fails\n",
    )
    .unwrap();
    let out = worker(&[
        "run",
        "--json",
        "--data-dir",
        d,
        "--from",
        tasks.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    let line = said
        .lines()
        .find(|l| l.starts_with("bamboo-worker run: root "))
        .unwrap_or_else(|| panic!("no root line: {said}"));
    let root = line.split_whitespace().nth(3).unwrap().to_owned();
    let short = &root[..8];
    assert!(
        line.ends_with(&format!(
            "(resume with: bamboo-worker run --data-dir {d} --resume {short})"
        )),
        "{line}"
    );
    let summary: Value = serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert_eq!(summary["root_id"], root.as_str());
    let kids = summary["children"].as_array().unwrap();
    assert_eq!(kids.len(), 2, "comments are no assignments: {summary}");
    assert_eq!(kids[0]["assignment"], "first task");
    assert_eq!(kids[1]["assignment"], "__fail:second fails");
    assert!(kids[0]["started_at"].is_string() && kids[0]["ended_at"].is_string());

    let json = listing(dir.path());
    assert_eq!(json[0]["title"], "first task");
    let shown = worker(&["sessions", "--data-dir", d, "show", short]);
    assert!(shown.status.success(), "{}", text(&shown));
    assert!(stdout(&shown).contains(&root));
    let resumed = worker(&["run", "--data-dir", d, "--resume", short]);
    let all = text(&resumed);
    assert_eq!(resumed.status.code(), Some(1), "{all}");
    assert!(
        all.contains(r#"rerunning "fails" (was error: second)"#),
        "{all}"
    );
    let unknown = worker(&["run", "--data-dir", d, "--resume", "zzzz"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no session zzzz"));

    let empty = worker(&["run", "--data-dir", d, "fine", " "]);
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("assignment 2 is empty"));
}

/// Issue 25: a cli child's stderr (warnings, progress) is shown, marked `!`,
/// and kept as `stderr` events, also when the child succeeds: on the
/// terminal's text, in `--json` and in `sessions show`.
#[test]
fn a_successful_cli_childs_stderr_is_shown_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let program = ["sh", "-c", "echo 'warning: cache is cold' >&2; echo done"];
    let text_run = Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--executor", "cli", "--name", "w", "go", "--"])
        .args(program)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(text_run.status.code(), Some(0), "{}", text(&text_run));
    assert!(
        stdout(&text_run).contains("[w] ! warning: cache is cold"),
        "{}",
        text(&text_run)
    );
    let json_run = Command::new(bamboo_e2e::worker_bin())
        .args([
            "run",
            "--json",
            "--data-dir",
            d,
            "--executor",
            "cli",
            "go",
            "--",
        ])
        .args(program)
        .output()
        .unwrap();
    assert_eq!(json_run.status.code(), Some(0), "{}", text(&json_run));
    let stderr_events: Vec<Value> = stdout(&json_run)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"]["event"]["type"] == "stderr")
        .collect();
    assert_eq!(stderr_events.len(), 1, "{}", text(&json_run));
    assert_eq!(
        stderr_events[0]["event"]["event"]["line"],
        "warning: cache is cold"
    );
    // The JSON summary carries a cli program's exit code.
    let summary: Value = serde_json::from_str(stdout(&json_run).lines().last().unwrap()).unwrap();
    assert_eq!(summary["children"][0]["exit_code"], 0, "{summary}");
    let failed = Command::new(bamboo_e2e::worker_bin())
        .args([
            "run",
            "--json",
            "--executor",
            "cli",
            "go",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let summary: Value = serde_json::from_str(stdout(&failed).lines().last().unwrap()).unwrap();
    assert_eq!(summary["children"][0]["exit_code"], 3, "{summary}");
    let json = listing(dir.path());
    let child = json[0]["children"][0]["id"].as_str().unwrap().to_owned();
    let shown = worker(&[
        "sessions",
        "--data-dir",
        d,
        "show",
        &json[0]["id"].as_str().unwrap()[..8],
    ]);
    assert!(
        stdout(&shown).contains("! warning: cache is cold"),
        "{} (child {child})",
        text(&shown)
    );
}

/// `sessions list --data-dir D ARGS...`.
fn list_with(dir: &str, args: &[&str]) -> Output {
    let mut all = vec!["sessions", "list", "--data-dir", dir];
    all.extend_from_slice(args);
    worker(&all)
}

/// `list_with(.., ARGS --json)`, as (title, status or `-`) pairs, in order.
fn flat(dir: &str, args: &[&str]) -> Vec<(String, String)> {
    let mut all = args.to_vec();
    all.push("--json");
    let out = list_with(dir, &all);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap_or_else(|| panic!("an array: {rows}"))
        .iter()
        .map(|r| {
            assert!(r.get("children").is_none(), "flat: {r}");
            (
                r["title"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

fn pairs(of: &[(&str, &str)]) -> Vec<(String, String)> {
    of.iter()
        .map(|(t, s)| ((*t).to_owned(), (*s).to_owned()))
        .collect()
}

/// S11: `sessions list` answers by status, parent and creation time (with
/// --project and --limit too) as a flat list, from two real runs.
#[test]
fn s11_sessions_list_selects_by_status_parent_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let first = worker(&["run", "--data-dir", d, "alpha one", "__fail:boom broke"]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    // Between the two runs' sessions, to the nanosecond.
    let mid = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let second = worker(&["run", "--data-dir", d, "gamma three"]);
    assert!(second.status.success(), "{}", text(&second));
    let json = listing(dir.path());
    let root1 = json[0]["id"].as_str().unwrap().to_owned();
    let root2 = json[1]["id"].as_str().unwrap().to_owned();

    // The tree is unchanged without a filter.
    let tree = list_with(d, &[]);
    assert!(stdout(&tree).starts_with("alpha one  "), "{}", text(&tree));

    // By status: the failed child alone, with its parent and error.
    assert_eq!(
        flat(d, &["--status", "error"]),
        pairs(&[("broke", "error")])
    );
    let out = list_with(d, &["--status", "error"]);
    let said = stdout(&out);
    let row = said
        .lines()
        .find(|l| l.starts_with("broke"))
        .unwrap_or_default();
    for part in ["error", &root1[..8], "boom"] {
        assert!(row.contains(part), "{part} in: {said}");
    }
    assert!(!said.contains("alpha"), "{said}");
    let out = list_with(d, &["--status", "error", "--json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["parent_id"], root1.as_str());
    assert_eq!(rows[0]["last_error"], "boom");

    // By parent, by id or a start of it, with a status too.
    let kids = pairs(&[("alpha-one", "completed"), ("broke", "error")]);
    assert_eq!(flat(d, &["--parent", &root1]), kids);
    assert_eq!(flat(d, &["--parent", &root1[..8]]), kids);
    assert_eq!(
        flat(d, &["--parent", &root1, "--status", "completed"]),
        pairs(&[("alpha-one", "completed")])
    );
    assert_eq!(
        flat(d, &["--parent", &root2]),
        pairs(&[("gamma-three", "completed")])
    );

    // By creation time: RFC 3339, ages and dates.
    assert_eq!(
        flat(d, &["--until", &mid]),
        pairs(&[
            ("alpha one", "-"),
            ("alpha-one", "completed"),
            ("broke", "error")
        ])
    );
    assert_eq!(
        flat(d, &["--since", &mid]),
        pairs(&[("gamma three", "-"), ("gamma-three", "completed")])
    );
    assert_eq!(
        flat(d, &["--since", &mid, "--status", "completed"]),
        pairs(&[("gamma-three", "completed")])
    );
    assert_eq!(flat(d, &["--since", "1h"]).len(), 5);
    assert_eq!(flat(d, &["--until", "2000-01-01"]), vec![]);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let day = flat(
        d,
        &[
            "--since",
            &today,
            "--until",
            &today,
            "--status",
            "completed",
        ],
    );
    // Unless the runs straddled midnight UTC, both completed children.
    assert!(!day.is_empty() && day.len() <= 2, "{day:?}");

    // --limit: the most recent matches, and a count of the older ones.
    let out = list_with(d, &["--status", "completed", "--limit", "1"]);
    let said = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        said.contains("gamma-three") && !said.contains("alpha-one"),
        "{said}"
    );
    assert!(said.contains("… 1 older sessions match"), "{said}");
    // --project narrows the same query.
    assert_eq!(
        flat(d, &["--status", "error", "--project", "/no/such/project"]),
        vec![]
    );
    let none = list_with(d, &["--status", "cancelled"]);
    assert!(
        stdout(&none).starts_with("no sessions match"),
        "{}",
        text(&none)
    );

    // Bad values exit 2 naming the flag and what it takes.
    for (args, says) in [
        (
            vec!["--status", "failed"],
            vec!["--status", "error", "completed"],
        ),
        (
            vec!["--since", "yesterday"],
            vec!["--since", "2026-12-06", "2h"],
        ),
        (vec!["--until", "5x"], vec!["--until", "RFC 3339"]),
        (
            vec!["--parent", "zzzz"],
            vec!["--parent zzzz", "no session zzzz"],
        ),
        (
            vec!["--since", "2026-12-07", "--until", "2026-12-06"],
            vec!["--since", "not before --until"],
        ),
    ] {
        let out = list_with(d, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        for s in says {
            assert!(err.contains(s), "{args:?}: {s:?} in {err}");
        }
    }
}

/// S11: while a `run` holds the directory, the filters read it read-only:
/// its running child is found by status and by parent.
#[test]
fn s11_sessions_list_filters_a_directory_a_run_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut run = Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--data-dir", d, "__sleep_ms:3000 slow child"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_sessions(dir.path(), 2);
    let out = list_with(d, &["--status", "running", "--json"]);
    assert!(out.status.success(), "read-only while held: {}", text(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    let root = rows[0]["parent_id"].as_str().unwrap().to_owned();
    assert_eq!(flat(d, &["--parent", &root]).len(), 1);
    assert_eq!(flat(d, &["--status", "completed"]), vec![]);
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run held the directory throughout"
    );
    assert!(run.wait().unwrap().success());
    assert_eq!(flat(d, &["--status", "completed"]).len(), 1);
}
