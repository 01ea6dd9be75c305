//! What a listing asks the store for ([`Query`]) and what it gets back
//! ([`Summary`]): sessions by parent, project key, status and creation
//! time, a page at a time, without their transcripts.

use bamboo_domain::{ChildStatus, Session};
use chrono::{DateTime, Utc};

/// Which parent the selected sessions have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Parent {
    /// Any parent, or none.
    #[default]
    Any,
    /// No parent: root sessions only.
    None,
    /// Children of this session.
    Of(String),
}

/// A selection of sessions, oldest first unless [`Query::newest_first`].
/// Every condition given must hold; an empty query selects every session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Whose children.
    pub parent: Parent,
    /// Only sessions of this project key.
    pub project: Option<String>,
    /// Only children with this run status (roots have none).
    pub status: Option<ChildStatus>,
    /// Only sessions created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only sessions created before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only sessions that come after this one in the listing's order (the
    /// last of the previous page): `(created_at, id)`.
    pub after: Option<(DateTime<Utc>, String)>,
    /// At most this many.
    pub limit: Option<usize>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

impl Query {
    /// Every session.
    pub fn all() -> Self {
        Self::default()
    }

    /// The children of `parent`.
    pub fn children_of(parent: impl Into<String>) -> Self {
        Self {
            parent: Parent::Of(parent.into()),
            ..Self::default()
        }
    }

    /// The children with run status `status`.
    pub fn with_status(status: ChildStatus) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// Whether `s` is selected (ignoring `limit`).
    pub fn selects(&self, s: &Session) -> bool {
        let parent = match &self.parent {
            Parent::Any => true,
            Parent::None => s.parent_id.is_none(),
            Parent::Of(p) => s.parent_id.as_deref() == Some(p.as_str()),
        };
        let key = (s.created_at, s.id.as_str());
        parent
            && self
                .project
                .as_deref()
                .is_none_or(|p| s.project_key.as_deref() == Some(p))
            && self.status.is_none_or(|st| s.status() == Some(st))
            && self.since.is_none_or(|t| s.created_at >= t)
            && self.until.is_none_or(|t| s.created_at < t)
            && self.after.as_ref().is_none_or(|(t, id)| {
                if self.newest_first {
                    key < (*t, id.as_str())
                } else {
                    key > (*t, id.as_str())
                }
            })
    }

    /// Puts `found` in the query's order and cuts it to its limit.
    pub fn arrange(&self, found: &mut Vec<Summary>) {
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        if self.newest_first {
            found.reverse();
        }
        if let Some(n) = self.limit {
            found.truncate(n);
        }
    }
}

/// One session as a listing shows it: everything but its transcript,
/// metadata and run settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Session id.
    pub id: String,
    /// Parent id; `None` for a root.
    pub parent_id: Option<String>,
    /// Project key.
    pub project_key: Option<String>,
    /// Title (a child's name).
    pub title: String,
    /// Run status; `None` for a root.
    pub status: Option<ChildStatus>,
    /// Why the last run did not complete.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

impl Summary {
    /// The summary of `s`.
    pub fn of(s: &Session) -> Self {
        Self {
            id: s.id.clone(),
            parent_id: s.parent_id.clone(),
            project_key: s.project_key.clone(),
            title: s.title.clone(),
            status: s.status(),
            last_error: s.child.as_ref().and_then(|c| c.last_error.clone()),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}
