//! Creating many children at once (issue 23): what [`Engine::create_child`]
//! does for each, with the parent read once per run of inputs naming it, and
//! every child's durable write in flight together, so a store that commits
//! in groups syncs once for many creates instead of once each.

use futures::future::{join_all, BoxFuture};

use bamboo_domain::Session;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::spawn::{self, enqueue};
use crate::store::SessionStore;
use crate::types::{ChildDetail, CreateChild};

/// One child of a batch between its start and its durable create.
struct Pending {
    parent_id: String,
    id: String,
    /// Created idle but `auto_run`: queued once stored, in input order.
    queue: bool,
    stored: BoxFuture<'static, Result<(), EngineError>>,
}

impl Engine {
    /// C1 for many children: creates each of `inputs`, in order, exactly as
    /// [`Engine::create_child`] would one after another, and returns one
    /// result per input, in the same order. The inputs may name different
    /// parents; each is read once per run of inputs naming it. The creates
    /// are written together: one refused (a full disk) does not stop the
    /// others of the batch, so a caller that stops creating at the first
    /// refusal checks every result.
    pub async fn create_children(
        &self,
        inputs: Vec<CreateChild>,
    ) -> Vec<Result<ChildDetail, EngineError>> {
        let mut parent: Option<Session> = None;
        let mut started: Vec<Result<Pending, EngineError>> = Vec::with_capacity(inputs.len());
        for input in inputs {
            started.push(self.start_create(&mut parent, input).await);
        }
        drop(parent);
        // Every write at once; `join_all` keeps the order.
        let mut waits = Vec::new();
        let mut rest = Vec::with_capacity(started.len());
        for s in started {
            match s {
                Ok(p) => {
                    waits.push(p.stored);
                    rest.push(Ok((p.parent_id, p.id, p.queue)));
                }
                Err(e) => rest.push(Err(e)),
            }
        }
        let mut stored = join_all(waits).await.into_iter();
        let mut out = Vec::with_capacity(rest.len());
        for r in rest {
            let (parent_id, id, queue) = match r {
                Ok(r) => r,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let ok = stored.next().unwrap_or(Err(EngineError::ShuttingDown));
            let done = match ok {
                Ok(()) if queue => enqueue(&self.inner, &parent_id, &id).map(drop),
                other => other,
            };
            out.push(match done {
                Ok(()) => self.get_child(&parent_id, &id).await,
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Checks one input and starts its create (and its run, when a slot is
    /// free now); `parent` is the parent read last, reused when it is this
    /// input's.
    async fn start_create(
        &self,
        parent: &mut Option<Session>,
        input: CreateChild,
    ) -> Result<Pending, EngineError> {
        self.check_create(&input)?;
        let same = parent.as_ref().is_some_and(|p| p.id == input.parent_id);
        if !same {
            *parent = Some(self.parent_for_create(&input.parent_id).await?);
        }
        let Some(parent) = parent.as_ref() else {
            return Err(EngineError::NotFound(input.parent_id.clone()));
        };
        let mut child = self.new_child_session(parent, &input);
        if input.isolation == Some(crate::worktree::Isolation::Worktree) {
            self.isolate(&mut child).await?;
        }
        let ready = input
            .auto_run
            .then(|| spawn::try_start_now(&self.inner, &child.id))
            .flatten();
        let id = child.id.clone();
        let parent_id = parent.id.clone();
        let (stored, queue): (BoxFuture<'static, _>, bool) = match ready {
            Some(ready) => {
                spawn::set_running(&mut child);
                let told = spawn::launch(&self.inner, &parent_id, ready, child);
                let wait = async move {
                    told.await.map_err(|_| EngineError::ShuttingDown)??;
                    Ok(())
                };
                (Box::pin(wait), false)
            }
            None => {
                let store = self.inner.store.clone();
                let write = async move {
                    store.create(&child).await?;
                    Ok(())
                };
                (Box::pin(write), input.auto_run)
            }
        };
        Ok(Pending {
            parent_id,
            id,
            queue,
            stored,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bamboo_domain::AgentEvent;
    use futures::StreamExt;

    use crate::launch::NoWorkers;
    use crate::{CreateChild, Engine, EngineError, Since};

    async fn engine(dir: &std::path::Path, max_running: usize) -> Engine {
        Engine::builder()
            .data_dir(dir)
            .launcher(Arc::new(NoWorkers))
            .max_running(max_running)
            .build()
            .await
            .unwrap()
    }

    fn named(parent: &str, assignment: &str, title: &str) -> CreateChild {
        let mut c = CreateChild::new(parent, assignment);
        c.title = Some(title.into());
        c
    }

    #[tokio::test]
    async fn each_input_gets_its_result_in_order_and_a_refused_one_stops_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), 2).await;
        let root = engine.create_root("root", None).await.unwrap().id;
        let results = engine
            .create_children(vec![
                named(&root, "first", "a"),
                named(&root, "  ", "blank"),
                named(&root, "second", "b"),
                named("no-such-parent", "third", "c"),
                named(&root, "fourth", "d"),
            ])
            .await;
        assert_eq!(results.len(), 5);
        let titles: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().map(|c| c.title.clone()).ok())
            .collect();
        assert_eq!(
            titles,
            vec![
                Some("a".into()),
                None,
                Some("b".into()),
                None,
                Some("d".into())
            ]
        );
        assert!(matches!(results[1], Err(EngineError::InvalidInput(_))));
        assert!(matches!(results[3], Err(EngineError::NotFound(_))));
        let mut stored: Vec<String> = engine
            .list_children(&root)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.title)
            .collect();
        stored.sort();
        assert_eq!(stored, vec!["a", "b", "d"], "exactly the accepted ones");
        engine.shutdown().await;
    }

    #[tokio::test]
    async fn auto_run_children_beyond_the_free_slots_run_too() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), 2).await;
        let root = engine.create_root("root", None).await.unwrap().id;
        let mut events = engine.events(&root, Since::Start);
        let inputs: Vec<CreateChild> = (0..6)
            .map(|i| {
                let mut c = named(&root, "go", &format!("c{i}"));
                c.auto_run = true;
                c
            })
            .collect();
        let created: Vec<String> = engine
            .create_children(inputs)
            .await
            .into_iter()
            .map(|r| r.unwrap().id)
            .collect();
        let mut ended = std::collections::HashSet::new();
        while ended.len() < created.len() {
            let e = tokio::time::timeout(std::time::Duration::from_secs(20), events.next())
                .await
                .expect("every child's run ends")
                .expect("the log stays open");
            if let AgentEvent::SubAgentCompleted {
                child_session_id, ..
            } = &*e.event
            {
                ended.insert(child_session_id.clone());
            }
        }
        assert!(created.iter().all(|id| ended.contains(id)));
        engine.shutdown().await;
    }
}
