//! Project keys: which project a session belongs to. A key is the
//! canonical path of the project's workspace (symlinks and `..` resolved), so
//! every way of naming the same directory gives the same key; a session may
//! also be given any key outright.
// Behaviours: S5.

use std::path::Path;

use bamboo_domain::{ModelRef, Session, TaskList, TokenBudget};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::store::{Query, SessionStore, Summary};

/// The project key of the workspace at `path`: its canonical path, or the
/// path as given (made absolute) when it cannot be resolved, e.g. because it
/// does not exist yet.
pub fn key_of(path: &str) -> String {
    let p = Path::new(path);
    if let Ok(c) = std::fs::canonicalize(p) {
        return c.display().to_string();
    }
    std::path::absolute(p)
        .map(|a| a.display().to_string())
        .unwrap_or_else(|_| path.to_owned())
}

/// What a new root session starts with besides its title.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRoot {
    /// Its title.
    pub title: String,
    /// The model its children inherit.
    pub model: Option<ModelRef>,
    /// Its workspace; children inherit it, and it gives the project key
    /// when none is given.
    pub workspace: Option<String>,
    /// Its project key; default: derived from the workspace.
    pub project_key: Option<String>,
    /// Its context budget; children get it compressed earlier.
    // Behaviours: S4.
    pub token_budget: Option<TokenBudget>,
    /// Its task list; children get a copy.
    // Behaviours: S4.
    pub task_list: Option<TaskList>,
    /// The application's own notes about it, kept as given.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl NewRoot {
    /// A root titled `title` with nothing else set.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }
}

impl Engine {
    /// Creates a root session with a workspace, project, budget or task list.
    /// A blank project key or an unusable budget is refused.
    // Behaviours: S4, S5.
    pub async fn create_root_with(&self, root: NewRoot) -> Result<Session, EngineError> {
        if root
            .project_key
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err(EngineError::InvalidInput(
                "project_key is blank: give a key or leave it out to derive it from the workspace"
                    .into(),
            ));
        }
        if let Some(why) = root.token_budget.as_ref().and_then(TokenBudget::problem) {
            return Err(EngineError::InvalidInput(why));
        }
        let mut s = Session::new_root(root.title);
        s.model = root.model;
        s.project_key = root
            .project_key
            .or_else(|| root.workspace.as_deref().map(key_of));
        s.workspace = root.workspace;
        s.token_budget = root.token_budget;
        s.task_list = root.task_list;
        s.metadata = root.metadata;
        self.inner.store.create(&s).await?;
        Ok(s)
    }

    /// Every session of the project `key` (its roots and their
    /// descendants), oldest first.
    // Behaviours: S5.
    pub async fn list_project(&self, key: &str) -> Result<Vec<Session>, EngineError> {
        Ok(self.inner.store.list_project(key).await?)
    }

    /// The sessions `query` selects, as listings show them, in its order; a
    /// child's ending the disk refused shows as reported, marked as not
    /// stored yet.
    pub async fn query_sessions(&self, query: &Query) -> Result<Vec<Summary>, EngineError> {
        Ok(self.inner.store.query(query).await?)
    }

    /// How many sessions `query` selects (its limit aside).
    pub async fn count_sessions(&self, query: &Query) -> Result<u64, EngineError> {
        Ok(self.inner.store.count(query).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::key_of;

    #[test]
    fn s5_every_name_of_a_directory_gives_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("app");
        std::fs::create_dir(&sub).unwrap();
        let dotted = sub.join("..").join("app");
        let a = key_of(&sub.display().to_string());
        assert_eq!(a, key_of(&dotted.display().to_string()));
        assert!(std::path::Path::new(&a).is_absolute());
        assert_eq!(key_of("/no/such/dir"), "/no/such/dir");
    }
}
