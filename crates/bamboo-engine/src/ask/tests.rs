//! Ask and reply between siblings and up to the parent, on real inbox files.

use std::sync::Arc;

use super::serve;
use crate::launch::NoWorkers;
use crate::{CreateChild, Engine};

async fn family(dir: &std::path::Path) -> (Engine, String, String, String) {
    let engine = Engine::builder()
        .data_dir(dir)
        .launcher(Arc::new(NoWorkers))
        .build()
        .await
        .unwrap();
    let root = engine.create_root("root", None).await.unwrap().id;
    let a = engine
        .create_child(CreateChild::new(&root, "a"))
        .await
        .unwrap()
        .id;
    let b = engine
        .create_child(CreateChild::new(&root, "b"))
        .await
        .unwrap()
        .id;
    (engine, root, a, b)
}

#[tokio::test]
async fn a_child_asks_a_sibling_and_gets_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _, a, b) = family(dir.path()).await;
    let ask_id = engine.ask(&a, &b, "which port?").await.unwrap();
    let waiting = engine.inbox_messages(&b).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (waiting[0].from.as_str(), waiting[0].body.as_str()),
        (a.as_str(), "which port?")
    );
    engine.reply(&b, &ask_id, "8080").await.unwrap();
    assert!(
        engine.inbox_messages(&b).await.unwrap().is_empty(),
        "the ask is acknowledged"
    );
    let reply = engine.take_reply(&a, &ask_id).await.unwrap().unwrap();
    assert_eq!(reply.body, "8080");
    assert!(
        engine.take_reply(&a, &ask_id).await.unwrap().is_none(),
        "taken once"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn a_child_asks_its_parent_over_the_worker_request_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, root, a, _) = family(dir.path()).await;
    let out = serve(
        &engine,
        &a,
        &serde_json::json!({"action": "ask", "to": root, "question": "go?"}),
    )
    .await
    .unwrap();
    assert_eq!(out["success"], true, "{out}");
    let ask_id = out["result"]["ask_id"].as_str().unwrap().to_owned();
    let inbox = serve(&engine, &root, &serde_json::json!({"action": "inbox"}))
        .await
        .unwrap();
    assert_eq!(inbox["result"]["messages"][0]["kind"], "ask");
    engine.reply(&root, &ask_id, "yes").await.unwrap();
    let mine = serve(&engine, &a, &serde_json::json!({"action": "inbox"}))
        .await
        .unwrap();
    assert_eq!(mine["result"]["messages"][0]["body"], "yes");
    assert!(serve(&engine, &a, &serde_json::json!({"action": "create"}))
        .await
        .is_none());
    engine.shutdown().await;
}

#[tokio::test]
async fn only_the_parent_and_siblings_can_be_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, root, a, _) = family(dir.path()).await;
    let other = engine.create_root("other", None).await.unwrap().id;
    let e = engine.ask(&a, &other, "hi?").await.unwrap_err().to_string();
    assert!(e.contains("only its parent or a sibling"), "{e}");
    assert!(
        engine.ask(&root, &a, "hi?").await.is_err(),
        "a root is not a child"
    );
    assert!(engine.ask(&a, &a, "me?").await.is_err());
    assert!(engine.ask(&a, &root, " ").await.is_err());
    engine.shutdown().await;
}
