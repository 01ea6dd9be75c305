//! Endings the disk refused (S6). When a child's final status (or the start-up
//! repair of an orphaned child) cannot be written, typically because the
//! disk is full, the ending is kept here: every read through this store
//! shows it, marked as not yet stored, and it is written with the next
//! write of that session or by [`Deferred::retry`] once space allows. So
//! what the engine reported and what a reader sees never disagree, and no
//! reader needs free space.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bamboo_domain::{ChildStatus, Message, Session};
use chrono::{DateTime, Utc};

use super::{Mutator, Query, SessionStore, StoreError, Summary};

/// A child's ending that its stored session still lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ending {
    /// The status the child ends with.
    pub status: ChildStatus,
    /// Why, as it will be stored.
    pub error: String,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// Why it is not stored yet (shown to readers meanwhile).
    pub refused: String,
}

impl Ending {
    /// The ending of a child whose write was refused by `e` now.
    pub fn refused(status: ChildStatus, error: String, e: &StoreError) -> Self {
        let refused = if e.is_out_of_space() {
            "the disk is full".to_owned()
        } else {
            e.to_string()
        };
        Self {
            status,
            error,
            at: Utc::now(),
            refused,
        }
    }

    /// Writes the ending into `s`; `false` when `s` is no child.
    fn apply(&self, s: &mut Session, error: String) -> bool {
        let Some(c) = s.child.as_mut() else {
            return false;
        };
        c.status = self.status;
        c.last_error = Some(error);
        c.completed_at = Some(self.at);
        // Steering the run never took stays in the transcript (C6).
        for text in c.pending_messages.drain(..) {
            s.messages.push(Message::user(text));
        }
        true
    }

    /// `s` as a reader should see it until the ending is stored.
    fn show(&self, s: &mut Session) {
        self.apply(s, self.shown());
    }

    /// The error a reader sees until the ending is stored.
    fn shown(&self) -> String {
        format!(
            "{} [not stored yet: {}; it is written when the disk has room]",
            self.error, self.refused
        )
    }
}

/// A [`SessionStore`] that keeps refused endings (see the module docs).
#[derive(Debug)]
pub(crate) struct Deferred {
    inner: Arc<dyn SessionStore>,
    pending: Mutex<HashMap<String, Ending>>,
}

impl Deferred {
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `ending` for `id` until it is written.
    pub fn defer(&self, id: &str, ending: Ending) {
        self.pending().insert(id.to_owned(), ending);
    }

    /// How many endings wait for the disk.
    pub fn waiting(&self) -> usize {
        self.pending().len()
    }

    /// Tries to write every waiting ending; those the store still refuses
    /// keep waiting. Returns how many were written.
    pub async fn retry(&self) -> usize {
        let ids: Vec<String> = self.pending().keys().cloned().collect();
        let mut written = 0;
        for id in ids {
            // The ending is applied by `update` itself.
            match self.update(&id, Box::new(|_| false)).await {
                Ok(_) => written += 1,
                Err(StoreError::NotFound(_)) => {
                    self.pending().remove(&id);
                }
                Err(e) => {
                    tracing::debug!(session = %id, error = %e, "an ending still waits for the disk");
                }
            }
        }
        written
    }

    fn overlay(&self, mut s: Session) -> Session {
        if let Some(ending) = self.pending().get(&s.id) {
            ending.show(&mut s);
        }
        s
    }
}

#[async_trait]
impl SessionStore for Deferred {
    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        self.inner.create(session).await
    }

    async fn save(&self, session: &Session) -> Result<(), StoreError> {
        self.inner.save(session).await?;
        // The caller's whole document replaces whatever waited.
        self.pending().remove(&session.id);
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.inner.load(id).await?.map(|s| self.overlay(s)))
    }

    async fn update(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError> {
        let ending = self.pending().get(id).cloned();
        let Some(ending) = ending else {
            return self.inner.update(id, mutate).await;
        };
        // The waiting ending goes first, so the mutation sees the session
        // as readers saw it, and the write stores both.
        let written = ending.clone();
        let stored = self
            .inner
            .update(
                id,
                Box::new(move |s: &mut Session| {
                    let ended = written.apply(s, written.error.clone());
                    mutate(s) || ended
                }),
            )
            .await?;
        let mut pending = self.pending();
        if pending.get(id) == Some(&ending) {
            pending.remove(id);
        }
        Ok(stored)
    }

    async fn update_soon(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError> {
        if self.pending().contains_key(id) {
            // A waiting ending is written with this change, and waited for.
            return self.update(id, mutate).await;
        }
        self.inner.update_soon(id, mutate).await
    }

    async fn list_children(&self, parent_id: &str) -> Result<Vec<Session>, StoreError> {
        let children = self.inner.list_children(parent_id).await?;
        Ok(children.into_iter().map(|s| self.overlay(s)).collect())
    }

    async fn list_ids(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list_ids().await
    }

    async fn list_project(&self, key: &str) -> Result<Vec<Session>, StoreError> {
        let sessions = self.inner.list_project(key).await?;
        Ok(sessions.into_iter().map(|s| self.overlay(s)).collect())
    }

    async fn query(&self, query: &Query) -> Result<Vec<Summary>, StoreError> {
        let mut found = self.inner.query(query).await?;
        let pending = self.pending().clone();
        if pending.is_empty() {
            return Ok(found);
        }
        for s in &mut found {
            if let (Some(ending), Some(_)) = (pending.get(&s.id), s.status) {
                s.status = Some(ending.status);
                s.last_error = Some(ending.shown());
            }
        }
        // Selected by the stored status, shown by the reported one: keep
        // only what the reported one selects.
        if let Some(status) = query.status {
            found.retain(|s| s.status == Some(status));
        }
        Ok(found)
    }

    async fn count(&self, query: &Query) -> Result<u64, StoreError> {
        self.inner.count(query).await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self.inner.delete(id).await?;
        self.pending().remove(id);
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_domain::ChildInfo;

    /// A store whose writes fail with ENOSPC while `full` is set.
    #[derive(Debug, Default)]
    struct Disk {
        sessions: Mutex<HashMap<String, Session>>,
        full: std::sync::atomic::AtomicBool,
    }

    impl Disk {
        fn refuse(&self) -> Result<(), StoreError> {
            if self.full.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::from_io(
                    std::path::Path::new("/data/sessions/x.jsonl"),
                    std::io::Error::from_raw_os_error(28),
                ));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl SessionStore for Disk {
        async fn create(&self, s: &Session) -> Result<(), StoreError> {
            self.save(s).await
        }
        async fn save(&self, s: &Session) -> Result<(), StoreError> {
            self.refuse()?;
            self.sessions
                .lock()
                .unwrap()
                .insert(s.id.clone(), s.clone());
            Ok(())
        }
        async fn load(&self, id: &str) -> Result<Option<Session>, StoreError> {
            Ok(self.sessions.lock().unwrap().get(id).cloned())
        }
        async fn update(&self, id: &str, mutate: Mutator<'_>) -> Result<Session, StoreError> {
            let mut s = self
                .load(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(id.into()))?;
            if mutate(&mut s) {
                self.save(&s).await?;
            }
            Ok(s)
        }
        async fn list_children(&self, parent: &str) -> Result<Vec<Session>, StoreError> {
            let all = self.sessions.lock().unwrap();
            Ok(all
                .values()
                .filter(|s| s.parent_id.as_deref() == Some(parent))
                .cloned()
                .collect())
        }
        async fn list_ids(&self) -> Result<Vec<String>, StoreError> {
            Ok(self.sessions.lock().unwrap().keys().cloned().collect())
        }
        async fn delete(&self, id: &str) -> Result<bool, StoreError> {
            Ok(self.sessions.lock().unwrap().remove(id).is_some())
        }
    }

    fn running_child() -> Session {
        let root = Session::new_root("root");
        let mut s = Session::new_child(&root, ChildInfo::new("helper", "do it"));
        s.id = "c1".into();
        s.parent_id = Some("root".into());
        s.child.as_mut().unwrap().status = ChildStatus::Running;
        s.child.as_mut().unwrap().pending_messages = vec!["steer".into()];
        s
    }

    #[tokio::test]
    async fn a_refused_ending_is_shown_as_pending_then_written_when_space_allows() {
        let disk = Arc::new(Disk::default());
        disk.save(&running_child()).await.unwrap();
        let store = Deferred::new(disk.clone());
        disk.full.store(true, std::sync::atomic::Ordering::SeqCst);
        let refused = store
            .update("c1", Box::new(|s| s.child.is_some()))
            .await
            .unwrap_err();
        assert!(refused.is_out_of_space(), "{refused:?}");
        store.defer(
            "c1",
            Ending::refused(ChildStatus::Error, "result not stored".into(), &refused),
        );

        // Readers see the ending, marked as not stored, with no write.
        let seen = store.load("c1").await.unwrap().unwrap();
        let info = seen.child.as_ref().unwrap();
        assert_eq!(info.status, ChildStatus::Error);
        let shown = info.last_error.as_deref().unwrap();
        assert!(shown.starts_with("result not stored [not stored yet: the disk is full"));
        let listed = store.list_children("root").await.unwrap();
        assert_eq!(listed[0].status(), Some(ChildStatus::Error));
        let summed = store.query(&Query::children_of("root")).await.unwrap();
        assert_eq!(summed[0].status, Some(ChildStatus::Error));
        assert!(summed[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("not stored yet"));
        // Selected by what readers are shown, not by what is stored.
        let running = Query::with_status(ChildStatus::Running);
        assert!(store.query(&running).await.unwrap().is_empty());
        // The disk itself still says running.
        let raw = disk.load("c1").await.unwrap().unwrap();
        assert_eq!(raw.status(), Some(ChildStatus::Running));

        assert_eq!(store.retry().await, 0, "still full");
        assert_eq!(store.waiting(), 1);
        disk.full.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(store.retry().await, 1);
        assert_eq!(store.waiting(), 0);
        let stored = disk.load("c1").await.unwrap().unwrap();
        let info = stored.child.as_ref().unwrap();
        assert_eq!(info.status, ChildStatus::Error);
        assert_eq!(info.last_error.as_deref(), Some("result not stored"));
        assert!(info.pending_messages.is_empty());
        assert_eq!(stored.messages.last().unwrap().content, "steer");
    }

    #[tokio::test]
    async fn the_next_write_of_the_session_stores_the_ending_first() {
        let disk = Arc::new(Disk::default());
        disk.save(&running_child()).await.unwrap();
        let store = Deferred::new(disk.clone());
        let e = StoreError::from_io(
            std::path::Path::new("x"),
            std::io::Error::from_raw_os_error(28),
        );
        store.defer("c1", Ending::refused(ChildStatus::Error, "lost".into(), &e));
        let seen_by_mutation = Arc::new(Mutex::new(None));
        let seen = seen_by_mutation.clone();
        store
            .update(
                "c1",
                Box::new(move |s| {
                    *seen.lock().unwrap() = s.status();
                    false
                }),
            )
            .await
            .unwrap();
        assert_eq!(*seen_by_mutation.lock().unwrap(), Some(ChildStatus::Error));
        assert_eq!(store.waiting(), 0);
        assert_eq!(
            disk.load("c1").await.unwrap().unwrap().status(),
            Some(ChildStatus::Error)
        );
    }
}
