//! Worker pools on NATS JetStream (issue 12), against a real `nats-server -js`
//! on a free loopback port and real `bamboo-worker join` processes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bamboo_domain::{AgentEvent, CompletionStatus};
use bamboo_e2e::engine::{first_event, token_text};
use bamboo_e2e::nats::{NatsServer, PoolWorker};
use bamboo_engine::{CreateChild, Engine, RunReport, RunTicket, SendMessage, Since, Timeouts};
use bamboo_pool::{ClientSettings, NatsOptions, PoolClient, PoolName, PoolSettings};
use bamboo_subagent::spec::{ExecutorSpec, Placement};
use futures::StreamExt;

/// Generous bound for what should happen soon.
const SOON: Duration = Duration::from_secs(60);

fn settings(queue_timeout: Duration) -> ClientSettings {
    ClientSettings {
        queue_timeout,
        lease_check: Duration::from_millis(500),
        pool: PoolSettings::default(),
    }
}

async fn client(url: &str, queue_timeout: Duration) -> PoolClient {
    PoolClient::connect(&NatsOptions::new(url), settings(queue_timeout))
        .await
        .expect("the engine connects to NATS")
}

/// An engine whose children all run on pool `pool`.
async fn pool_engine(dir: &Path, url: &str, pool: &str, max_running: usize) -> Engine {
    pool_engine_with(dir, client(url, SOON).await, pool, max_running).await
}

async fn pool_engine_with(dir: &Path, c: PoolClient, pool: &str, max_running: usize) -> Engine {
    Engine::builder()
        .data_dir(dir)
        .executor(ExecutorSpec::Echo)
        .max_running(max_running)
        .default_placement(Placement::Schedulable { pool: pool.into() })
        .nats_pool(c)
        .timeouts(Timeouts {
            cancel_grace: Duration::from_secs(5),
            ..Timeouts::default()
        })
        .build()
        .await
        .expect("a pool-only engine builds")
}

/// Creates a child of `root` and runs it; returns its id and ticket.
async fn start(engine: &Engine, root: &str, assignment: &str) -> (String, RunTicket) {
    let child = engine
        .create_child(CreateChild::new(root, assignment))
        .await
        .expect("child");
    let ticket = engine.run_child(root, &child.id, true).await.expect("run");
    (child.id, ticket)
}

async fn report(ticket: RunTicket) -> RunReport {
    tokio::time::timeout(SOON, ticket)
        .await
        .expect("the run reports in time")
        .expect("the run reports")
}

/// Waits until `cond` holds, checking every 20 ms (for server-side state that
/// offers no event to wait on).
async fn eventually<F, Fut>(what: &str, cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + SOON;
    while !tokio::time::timeout(Duration::from_secs(5), cond())
        .await
        .unwrap_or(false)
    {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {SOON:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn queued_runs(c: &PoolClient, pool: &str) -> u64 {
    let handles = c.pool(&PoolName::new(pool).unwrap()).await.unwrap();
    let mut work = handles.work.clone();
    work.info().await.map(|i| i.state.messages).unwrap_or(0)
}

/// Runs in flight per worker, as its lease says now.
async fn in_flight(c: &PoolClient, pool: &str) -> HashMap<String, usize> {
    let handles = c.pool(&PoolName::new(pool).unwrap()).await.unwrap();
    handles
        .workers()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| (l.id, l.runs_in_flight))
        .collect()
}

/// The most runs in flight seen per worker and in total.
#[derive(Debug, Default)]
struct Peaks {
    per_worker: HashMap<String, usize>,
    total: usize,
}

/// Watches every lease update of `pool` (workers rewrite theirs whenever a
/// run starts or ends) and records the peaks.
async fn watch_concurrency(
    c: &PoolClient,
    pool: &str,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Peaks>>) {
    let handles = c.pool(&PoolName::new(pool).unwrap()).await.unwrap();
    let mut watch = handles.leases.watch_all().await.unwrap();
    let peaks = Arc::new(Mutex::new(Peaks::default()));
    let out = peaks.clone();
    let task = tokio::spawn(async move {
        let mut now = HashMap::<String, usize>::new();
        while let Some(Ok(entry)) = watch.next().await {
            let Ok(rec) = serde_json::from_slice::<bamboo_pool::LeaseRecord>(&entry.value) else {
                now.remove(&entry.key);
                continue;
            };
            now.insert(rec.id.clone(), rec.runs_in_flight);
            let mut p = out.lock().unwrap();
            let w = p.per_worker.entry(rec.id).or_insert(0);
            *w = (*w).max(rec.runs_in_flight);
            p.total = p.total.max(now.values().sum());
        }
    });
    (task, peaks)
}

/// Issue 12: three pool workers, 300 children, never more than 3 × max-runs
/// running, every one completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_complete_300_children_within_their_slots() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = pool_engine(dir.path(), &nats.url(), "p300", 300).await;
    let c = client(&nats.url(), SOON).await;
    let (watcher, peaks) = watch_concurrency(&c, "p300").await;
    let _workers: Vec<PoolWorker> = (0..3)
        .map(|_| PoolWorker::join(&nats.url(), "p300", 4, &[]))
        .collect();
    let root = engine.create_root("root", None).await.unwrap();
    let mut tickets = Vec::new();
    for i in 0..300 {
        tickets.push(start(&engine, &root.id, &format!("__sleep_ms:20 child {i}")).await);
    }
    for (i, (_, ticket)) in tickets.into_iter().enumerate() {
        let r = report(ticket).await;
        assert_eq!(
            r.status,
            CompletionStatus::Completed,
            "child {i}: {:?}",
            r.error
        );
        assert_eq!(
            r.result.as_deref(),
            Some(format!("echo: child {i}").as_str())
        );
    }
    // Leases are rewritten whenever runs start or end; let the last ones land.
    eventually("every worker idle", || async {
        let f = in_flight(&c, "p300").await;
        f.len() == 3 && f.values().all(|n| *n == 0)
    })
    .await;
    watcher.abort();
    let peaks = std::mem::take(&mut *peaks.lock().unwrap());
    assert_eq!(
        peaks.per_worker.len(),
        3,
        "all three workers served: {peaks:?}"
    );
    assert!(
        peaks.per_worker.values().all(|n| *n <= 4),
        "a worker ran more than --max-runs: {peaks:?}"
    );
    assert!(
        peaks.total <= 12,
        "more than 3 x max-runs at once: {peaks:?}"
    );
    assert!(peaks.total > 4, "the workers ran in parallel: {peaks:?}");
    engine.shutdown().await;
}

/// Issue 12: a run queued while no worker is in the pool waits durably and
/// completes once one joins (E2: submitting returns at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_waits_until_a_worker_joins() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = pool_engine(dir.path(), &nats.url(), "later", 4).await;
    let c = client(&nats.url(), SOON).await;
    let root = engine.create_root("root", None).await.unwrap();
    let (_, mut ticket) = start(&engine, &root.id, "hello pool").await;
    eventually("the run is in the work queue", || async {
        queued_runs(&c, "later").await == 1
    })
    .await;
    assert!(ticket.try_recv().is_err(), "the run ended with no worker");
    let _worker = PoolWorker::join(&nats.url(), "later", 1, &[]);
    let r = report(ticket).await;
    assert_eq!(r.status, CompletionStatus::Completed, "{:?}", r.error);
    assert_eq!(r.result.as_deref(), Some("echo: hello pool"));
    assert_eq!(queued_runs(&c, "later").await, 0);
    engine.shutdown().await;
}

/// Issue 12: a run no worker takes within the queue timeout ends as an error
/// that names the pool and says what to do, and leaves the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_nobody_takes_errors_after_the_queue_timeout() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let c = client(&nats.url(), Duration::from_secs(1)).await;
    let engine = pool_engine_with(dir.path(), c.clone(), "empty", 4).await;
    let root = engine.create_root("root", None).await.unwrap();
    let (_, ticket) = start(&engine, &root.id, "anyone?").await;
    let r = report(ticket).await;
    assert_eq!(r.status, CompletionStatus::Error);
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains("no worker in pool empty took the run within 1s"),
        "{err}"
    );
    assert!(err.contains("bamboo-worker join"), "{err}");
    assert_eq!(queued_runs(&c, "empty").await, 0, "the run left the queue");
    engine.shutdown().await;
}

/// Waits until worker `id` of `pool` reports `n` runs in flight.
async fn wait_in_flight(c: &PoolClient, pool: &str, id: &str, n: usize) {
    eventually(&format!("worker {id} running {n}"), || async {
        in_flight(c, pool).await.get(id) == Some(&n)
    })
    .await;
}

/// Issue 12: a pool worker SIGKILLed mid-run is noticed through its lease:
/// its child errors within 10 s and is not rerun; the other children
/// complete on the other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_workers_child_errors_within_10s_and_the_rest_complete() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = pool_engine(dir.path(), &nats.url(), "kill", 8).await;
    let c = client(&nats.url(), SOON).await;
    let root = engine.create_root("root", None).await.unwrap();
    let doomed = PoolWorker::join(&nats.url(), "kill", 1, &[]);
    let (_, long) = start(&engine, &root.id, "__sleep_ms:120000 never").await;
    wait_in_flight(&c, "kill", &doomed.id, 1).await;
    let _survivor = PoolWorker::join(&nats.url(), "kill", 2, &[]);
    let mut rest = Vec::new();
    for i in 0..4 {
        rest.push(
            start(&engine, &root.id, &format!("__sleep_ms:50 ok {i}"))
                .await
                .1,
        );
    }
    let killed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(doomed.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = report(long).await;
    let noticed = killed_at.elapsed();
    assert_eq!(r.status, CompletionStatus::Error);
    let err = r.error.unwrap_or_default();
    assert!(err.contains("stopped renewing its lease"), "{err}");
    assert!(err.contains(&doomed.id), "{err}");
    assert!(
        noticed < Duration::from_secs(10),
        "noticed after {noticed:?}"
    );
    for t in rest {
        let r = report(t).await;
        assert_eq!(r.status, CompletionStatus::Completed, "{:?}", r.error);
    }
    engine.shutdown().await;
}

/// Issue 12: runs queued when nats-server restarts are still there after it
/// and run once a worker joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_runs_survive_a_nats_server_restart() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = pool_engine(dir.path(), &nats.url(), "restart", 8).await;
    let c = client(&nats.url(), SOON).await;
    let root = engine.create_root("root", None).await.unwrap();
    let mut tickets = Vec::new();
    for i in 0..3 {
        tickets.push(start(&engine, &root.id, &format!("queued {i}")).await.1);
    }
    eventually("three runs queued", || async {
        queued_runs(&c, "restart").await == 3
    })
    .await;
    nats.restart();
    let _worker = PoolWorker::join(&nats.url(), "restart", 2, &[]);
    for (i, t) in tickets.into_iter().enumerate() {
        let r = report(t).await;
        assert_eq!(r.status, CompletionStatus::Completed, "{:?}", r.error);
        assert_eq!(
            r.result.as_deref(),
            Some(format!("echo: queued {i}").as_str())
        );
    }
    engine.shutdown().await;
}

/// Issue 12: cancelling a queued child removes its run from the queue (no
/// worker ever runs it); cancelling a running child stops it on its worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_of_a_queued_and_of_a_running_child() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = pool_engine(dir.path(), &nats.url(), "cancel", 8).await;
    let c = client(&nats.url(), SOON).await;
    let root = engine.create_root("root", None).await.unwrap();
    let (queued, ticket) = start(&engine, &root.id, "never runs").await;
    eventually("the run is queued", || async {
        queued_runs(&c, "cancel").await == 1
    })
    .await;
    let out = engine.cancel_child(&root.id, &queued).await.unwrap();
    assert!(out.was_running);
    let r = report(ticket).await;
    assert_eq!(r.status, CompletionStatus::Cancelled);
    let err = r.error.unwrap_or_default();
    assert!(err.to_lowercase().contains("cancelled"), "{err}");
    assert_eq!(queued_runs(&c, "cancel").await, 0, "the run left the queue");

    let worker = PoolWorker::join(&nats.url(), "cancel", 1, &[]);
    let (running, ticket) = start(&engine, &root.id, "__sleep_ms:120000 long").await;
    wait_in_flight(&c, "cancel", &worker.id, 1).await;
    let asked = Instant::now();
    engine.cancel_child(&root.id, &running).await.unwrap();
    let r = report(ticket).await;
    assert_eq!(r.status, CompletionStatus::Cancelled, "{:?}", r.error);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        asked.elapsed()
    );
    // The worker is free again: its slot serves the next run.
    wait_in_flight(&c, "cancel", &worker.id, 0).await;
    let (_, ticket) = start(&engine, &root.id, "after").await;
    assert_eq!(report(ticket).await.status, CompletionStatus::Completed);
    engine.shutdown().await;
}

/// Issue 12 (E16, E17 through the pool): steering reaches the run on its
/// pool worker in band, and an approval request travels to the engine and
/// its answer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steering_and_an_approval_round_trip_through_the_pool() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = pool_engine(dir.path(), &nats.url(), "talk", 4).await;
    let _worker = PoolWorker::join(&nats.url(), "talk", 2, &[]);
    let root = engine.create_root("root", None).await.unwrap();
    let mut events = engine.events(&root.id, Since::Start);
    let (child, ticket) = start(&engine, &root.id, "wait __steer then __approve:bash").await;
    first_event(&mut events, "the first token", |ev| {
        token_text(ev) == Some("wait ")
    })
    .await;
    engine
        .send_message(&root.id, &child, SendMessage::new("turn left"))
        .await
        .unwrap();
    let mut approvals = engine.approval_requests(None);
    let pending = tokio::time::timeout(SOON, approvals.next())
        .await
        .expect("an approval request in time")
        .expect("the approval stream is open");
    assert_eq!(pending.tool_name, "bash");
    engine.answer_approval(&pending.id, true).unwrap();
    let r = report(ticket).await;
    assert_eq!(r.status, CompletionStatus::Completed, "{:?}", r.error);
    assert_eq!(
        r.result.as_deref(),
        Some("echo: wait turn left then approved:bash")
    );
    engine.shutdown().await;
}

/// Issue 12: an engine that restarts mid-run reads the rest of the run's
/// frames from its last position (JetStream sequence and line), with no gap
/// and no duplicate: the first reader stops (its NATS connection closed)
/// halfway, a reader on a new connection attaches at its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_reads_the_rest_of_a_run_without_gap() {
    use bamboo_subagent::frames::{ChildFrame, ParentFrame, RunRequest};
    let nats = NatsServer::start();
    let _worker = PoolWorker::join(&nats.url(), "resume", 1, &[]);
    let pool = PoolName::new("resume").unwrap();
    let spec = bamboo_subagent::spec::ProvisionSpec::new("w", ExecutorSpec::Echo, "/unused");
    let first: Vec<String> = (0..300).map(|i| format!("a{i}")).collect();
    let second: Vec<String> = (0..300).map(|i| format!("b{i}")).collect();
    let assignment = format!("{} __steer {}", first.join(" "), second.join(" "));

    let before = client(&nats.url(), SOON).await;
    let (sender, mut reader) = before.prepare(&pool, &spec).await.unwrap();
    let run_id = sender.run_id().to_owned();
    sender
        .send(ParentFrame::Run(RunRequest::new(assignment)))
        .await
        .unwrap();
    let mut seen = Vec::new();
    // Read a part of the first half only, then "crash".
    while seen.len() < 150 {
        match tokio::time::timeout(SOON, reader.recv()).await.unwrap() {
            Some(Ok(ChildFrame::Event {
                event: AgentEvent::Token { content },
            })) => seen.push(content.trim().to_owned()),
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let position = reader.position();
    drop((sender, reader, before));

    let after = client(&nats.url(), SOON).await;
    let (sender, mut reader) = after.attach(&pool, &run_id, position).await.unwrap();
    sender
        .send(ParentFrame::Message {
            text: "steered".into(),
        })
        .await
        .unwrap();
    let terminal = loop {
        match tokio::time::timeout(SOON, reader.recv()).await.unwrap() {
            Some(Ok(ChildFrame::Event {
                event: AgentEvent::Token { content },
            })) => seen.push(content.trim().to_owned()),
            Some(Ok(ChildFrame::Terminal(t))) => break t,
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(terminal.status, bamboo_domain::TerminalStatus::Completed);
    let mut expected = first.clone();
    expected.push("steered".into());
    expected.extend(second);
    assert_eq!(seen, expected, "every frame once, in order");
}

const TOKEN_CONF: &str = "authorization { token: \"right-token\" }\n";

/// Issue 12: wrong NATS credentials fail at once with a clear error, on the
/// engine's side and on `join`'s; the right token works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_nats_credentials_give_a_clear_error() {
    let nats = NatsServer::start_with(Some(TOKEN_CONF));
    let mut wrong = NatsOptions::new(nats.url());
    wrong.token = Some(bamboo_subagent::Secret::new("wrong-token"));
    let err = PoolClient::connect(&wrong, settings(SOON))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(err.contains(&nats.url()), "{err}");
    assert!(
        !err.contains("wrong-token"),
        "the token leaked into the error: {err}"
    );

    let token_file = nats.dir().join("wrong.token");
    std::fs::write(&token_file, "wrong-token\n").unwrap();
    let out = std::process::Command::new(bamboo_e2e::worker_bin())
        .args([
            "join",
            "--nats",
            &nats.url(),
            "--pool",
            "auth",
            "--token-file",
        ])
        .arg(&token_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(!stderr.contains("wrong-token"), "{stderr}");

    // The right token, on both sides.
    let good_file = nats.dir().join("right.token");
    std::fs::write(&good_file, "right-token\n").unwrap();
    let good_path = good_file.to_string_lossy().into_owned();
    let _worker = PoolWorker::join(&nats.url(), "auth", 1, &["--token-file", &good_path]);
    let opts = NatsOptions::new(nats.url()).token_file(&good_file).unwrap();
    let c = PoolClient::connect(&opts, settings(SOON)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = pool_engine_with(dir.path(), c, "auth", 2).await;
    let root = engine.create_root("root", None).await.unwrap();
    let (_, ticket) = start(&engine, &root.id, "authorized").await;
    assert_eq!(report(ticket).await.status, CompletionStatus::Completed);
    engine.shutdown().await;
}

/// Issue 12: on SIGTERM a pool worker stops taking runs, finishes the one it
/// has, removes its lease and exits 0; the run queued meanwhile stays for
/// the next worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_runs_removes_the_lease_and_exits_0() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = pool_engine(dir.path(), &nats.url(), "term", 4).await;
    let c = client(&nats.url(), SOON).await;
    let root = engine.create_root("root", None).await.unwrap();
    let mut worker = PoolWorker::join(&nats.url(), "term", 1, &[]);
    let (_, running) = start(&engine, &root.id, "__sleep_ms:1500 finishing").await;
    wait_in_flight(&c, "term", &worker.id, 1).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (_, later) = start(&engine, &root.id, "next worker").await;
    let r = report(running).await;
    assert_eq!(r.status, CompletionStatus::Completed, "{:?}", r.error);
    let status = tokio::task::spawn_blocking(move || {
        let s = worker.child.wait();
        (worker, s)
    })
    .await
    .unwrap()
    .1
    .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        in_flight(&c, "term").await.is_empty(),
        "the lease was removed"
    );
    assert_eq!(queued_runs(&c, "term").await, 1, "the later run waits");
    let _next = PoolWorker::join(&nats.url(), "term", 1, &[]);
    assert_eq!(report(later).await.status, CompletionStatus::Completed);
    engine.shutdown().await;
}

/// A CA, and a server certificate for 127.0.0.1 it signed, written to `dir`:
/// (ca.pem, nats.conf text).
fn tls_files(dir: &Path) -> (std::path::PathBuf, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (ca, crt, k) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let conf = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
        crt.display(),
        k.display()
    );
    (ca, conf)
}

/// Issue 12: a TLS-only server: engine and worker connect with the CA given
/// (`--tls-ca`) and run a child; without it the engine fails with a clear
/// TLS error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_works_and_without_it_fails_clearly() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, conf) = tls_files(certs.path());
    let nats = NatsServer::start_with(Some(&conf));
    let err = PoolClient::connect(&NatsOptions::new(nats.url()), settings(SOON))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect to NATS"), "{err}");

    let ca_arg = ca.to_string_lossy().into_owned();
    let _worker = PoolWorker::join(&nats.url(), "tls", 1, &["--tls-ca", &ca_arg]);
    let mut opts = NatsOptions::new(nats.url());
    opts.tls_ca = Some(ca);
    let c = PoolClient::connect(&opts, settings(SOON)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = pool_engine_with(dir.path(), c, "tls", 2).await;
    let root = engine.create_root("root", None).await.unwrap();
    let (_, ticket) = start(&engine, &root.id, "over tls").await;
    let r = report(ticket).await;
    assert_eq!(r.status, CompletionStatus::Completed, "{:?}", r.error);
    engine.shutdown().await;
}

/// Issue 12: the front door runs its children on a pool with
/// `run --nats URL --pool NAME`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_runs_children_on_a_pool() {
    let nats = NatsServer::start();
    let worker = PoolWorker::join(&nats.url(), "front", 2, &[]);
    let url = nats.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bamboo_e2e::worker_bin())
            .args([
                "run",
                "--nats",
                &url,
                "--pool",
                "front",
                "first task",
                "second task",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("echo: first task"), "{stdout}");
    assert!(stdout.contains("echo: second task"), "{stdout}");
    drop(worker);
}

/// Issue 12: the engine (here the front door's) is SIGKILLed while its child
/// runs on a pool worker; a new engine on the same data directory
/// reattaches to the run at its recorded position: the child completes
/// (steered through the new engine) and the parent's event log holds every
/// token of the run once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_killed_mid_run_reattaches_after_a_restart() {
    use std::io::BufRead;
    let nats = NatsServer::start();
    let _worker = PoolWorker::join(&nats.url(), "crash", 1, &[]);
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<String> = (0..150).map(|i| format!("a{i}")).collect();
    let second: Vec<String> = (0..150).map(|i| format!("b{i}")).collect();
    let assignment = format!("{} __steer {}", first.join(" "), second.join(" "));
    let mut front = std::process::Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--json", "--nats", &nats.url(), "--pool", "crash"])
        .arg("--data-dir")
        .arg(dir.path())
        .arg(&assignment)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = front.stdout.take().unwrap();
    // The last token before the pause: then the engine dies.
    let (root, child) = tokio::task::spawn_blocking(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if !line.contains("\"a149 \"") {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let ev = &v["event"];
            return (
                ev["parent_session_id"].as_str().unwrap().to_owned(),
                ev["child_session_id"].as_str().unwrap().to_owned(),
            );
        }
        panic!("the front door ended before the run paused");
    })
    .await
    .unwrap();
    front.kill().unwrap();
    front.wait().unwrap();

    let engine = pool_engine(dir.path(), &nats.url(), "crash", 2).await;
    let mut events = engine.events(&root, Since::Start);
    engine
        .send_message(&root, &child, SendMessage::new("steered"))
        .await
        .expect("the reattached child takes a steering message");
    let mut tokens = Vec::new();
    let status = loop {
        let e = tokio::time::timeout(SOON, events.next())
            .await
            .expect("the reattached run reports in time")
            .expect("the stream goes on");
        if let Some(t) = token_text(&e.event) {
            tokens.push(t.trim().to_owned());
        }
        if let AgentEvent::SubAgentCompleted { status, error, .. } = &*e.event {
            break (*status, error.clone());
        }
    };
    assert_eq!(status, (CompletionStatus::Completed, None));
    let mut expected = first;
    expected.push("steered".into());
    expected.extend(second);
    assert_eq!(tokens, expected, "every token of the run once, in order");
    engine.shutdown().await;
    let left = std::fs::read_dir(dir.path().join("pool-runs"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "the ended run's record is removed");
}

/// Nothing hangs: a pool worker told to leave while NATS is unreachable
/// exits 0 at once (its lease expires by itself) instead of waiting for a
/// reconnect that may never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nats_down_exits_promptly() {
    let mut nats = NatsServer::start();
    let mut worker = PoolWorker::join(&nats.url(), "down", 1, &[]);
    nats.kill();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = worker.child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = worker.child.kill();
            panic!("the pool worker still runs 10 s after SIGTERM with NATS down");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

/// Issue 25: `run` looks at the pool before creating any child: with no
/// worker joined it says so at once (the children wait in the queue), with
/// workers it says how many; an unreachable server is one usage error
/// (exit 2), not one failure per child.
#[test]
fn the_front_door_says_what_the_pool_holds_before_any_child() {
    use std::io::{BufRead, BufReader};
    let nats = NatsServer::start();
    let mut waiting = std::process::Command::new(bamboo_e2e::worker_bin())
        .args(["run", "--nats", &nats.url(), "--pool", "empty", "a", "b"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = waiting.stderr.take().unwrap();
    let mut said = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("no worker has joined pool empty yet") {
            break;
        }
    }
    let _ = waiting.kill();
    let _ = waiting.wait();
    assert!(
        said.contains("bamboo-worker join --nats URL --pool empty"),
        "{said}"
    );

    let worker = PoolWorker::join(&nats.url(), "full", 3, &[]);
    let out = std::process::Command::new(bamboo_e2e::worker_bin())
        .args([
            "run",
            "--json",
            "--nats",
            &nats.url(),
            "--pool",
            "full",
            "one",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("pool full: 1 worker has joined, 3 run slots in all"),
        "{said}"
    );
    // Which pool worker took the run is told once it took it.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let placed: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["event"]["event"]["type"] == "placed")
        .collect();
    assert_eq!(placed.len(), 1, "{stdout}");
    assert_eq!(placed[0]["event"]["event"]["placement"], "pool");
    assert_eq!(placed[0]["event"]["event"]["worker"], worker.id.as_str());

    let port = nats.url().rsplit(':').next().unwrap().to_owned();
    drop(nats);
    let out = std::process::Command::new(bamboo_e2e::worker_bin())
        .args([
            "run",
            "--nats",
            &format!("nats://127.0.0.1:{port}"),
            "--pool",
            "gone",
            "x",
            "y",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert_eq!(said.matches("no child was started").count(), 1, "{said}");
}
