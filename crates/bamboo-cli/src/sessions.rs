//! `bamboo-worker sessions`: what a data directory holds after the run. Lists
//! root sessions with their children as a tree, or shows one session's
//! transcript, status and logged events.
//!
//! Listings come from the store's indices: a summary row per session (no
//! transcript is read), `--limit` a few indexed queries. A directory no
//! engine holds is opened through an engine (with the store handed to it,
//! for the one write `remove-worktree` makes), which
//! takes the directory's lock and marks children orphaned by a dead engine
//! as `error`, so the listing shows what a resume would find; on a full disk
//! that mark is shown, flagged as not stored yet, and written by a later
//! opening with room (reading needs no free space).
//!
//! While a `run` holds the directory, it is read read-only instead: the
//! session database and event logs directly, with no lock and no write (a
//! log line still being written is left for later), so a running child
//! shows as running.
//! `show --follow` then tails the logs until the session's runs end.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use bamboo_domain::{ChildStatus, Session};
use bamboo_engine::store::{FileStore, Parent, Query, SessionStore, StoreError, Summary};
use bamboo_engine::Engine;

use super::when::When;

mod filtered;
mod show;
use serde::Serialize;
pub use show::concerns;

/// How times are printed: UTC, to the second.
const TIME: &str = "%Y-%m-%dT%H:%M:%SZ";

/// What `sessions` was asked to do.
#[derive(Debug, Clone)]
pub struct SessionsOptions {
    /// The data directory of an earlier `run --data-dir`.
    pub data_dir: PathBuf,
    /// One JSON document instead of text.
    pub json: bool,
    /// Show this session instead of listing all.
    pub show: Option<String>,
    /// List only this project's sessions: a directory, or a key as given.
    pub project: Option<String>,
    /// With `show`: keep printing new events until the session's runs end.
    pub follow: bool,
    /// Page the text through `$PAGER` when stdout is a terminal.
    pub pager: bool,
    /// Remove the kept git worktree of this child instead.
    pub remove_worktree: Option<String>,
    /// List only the most recent roots, each with this many children; with
    /// a filter, only the most recent sessions it selects.
    pub limit: Option<usize>,
    /// List only the sessions these conditions select, flat.
    pub filter: Filter,
}

/// What `sessions list` selects by status, parent and creation time; any
/// condition given makes the listing a flat one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only children with this run status.
    pub status: Option<ChildStatus>,
    /// Only the children of this session: an id or a unique start of one.
    pub parent: Option<String>,
    /// Only sessions created at or after this time.
    pub since: Option<When>,
    /// Only sessions created before this time (a date: up to its end).
    pub until: Option<When>,
}

impl Filter {
    /// Whether no condition is given.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Runs `sessions`: prints the listing or one session to stdout.
pub async fn run(options: SessionsOptions) -> anyhow::Result<()> {
    if options.follow && options.json {
        bail!("--follow prints text as it is logged: leave out --json (the event log itself, <data>/events/<id>.ndjson, is NDJSON)");
    }
    if options.show.is_none() && options.remove_worktree.is_none() && !options.filter.is_empty() {
        return filtered::list(&options).await;
    }
    if let (Some(limit), None, None) = (options.limit, &options.show, &options.remove_worktree) {
        return list_limited(&options, limit).await;
    }
    let mut opened = Opened::open(&options.data_dir).await?;
    if let Some(id) = &options.remove_worktree {
        let removed = match super::ids::resolve(
            id,
            opened.sessions.keys().map(String::as_str),
            &options.data_dir,
        ) {
            Ok(id) => remove_worktree(&opened, &id).await,
            Err(e) => Err(e),
        };
        opened.close().await;
        emit(&removed?);
        return Ok(());
    }
    if let Some(project) = &options.project {
        opened.keep_project(project);
    }
    if let Some(id) = &options.show {
        return show(opened, id, &options).await;
    }
    let listed = list(&opened, options.json).await;
    opened.close().await;
    let listed = listed?;
    if options.pager && !options.json {
        super::pager::page(&listed);
    } else {
        emit(&listed);
    }
    Ok(())
}

/// `sessions show ID`: the session's record, read while the directory is
/// open; its logs, read from their files once it is closed again (a pager
/// left open must not keep a `run` out of the directory); then, with
/// `--follow`, what is logged next.
async fn show(opened: Opened, id: &str, options: &SessionsOptions) -> anyhow::Result<()> {
    let id = super::ids::resolve(
        id,
        opened.sessions.keys().map(String::as_str),
        &options.data_dir,
    );
    let record = match &id {
        Ok(id) => show::Record::load(&opened, id).await,
        Err(_) => Ok(None),
    };
    let titles = opened.titles();
    // Held by a run: a child still pending may yet start, so --follow waits.
    let held = opened.engine.is_none();
    opened.close().await;
    let id = id?;
    let Some(record) = record? else {
        bail!("no session {id} in this data directory: `bamboo-worker sessions --data-dir DIR` lists the ids");
    };
    let mut out = super::pager::Paged::start(options.pager && !options.json && !options.follow);
    let written = show::write(
        &record,
        &options.data_dir,
        options.json,
        titles.clone(),
        out.out(),
    );
    let read_to = match written {
        Ok(read_to) => read_to,
        Err(e) if e.downcast_ref().is_some_and(super::pager::quits_early) => {
            // The reader went away (`q`, `| head`): nothing more to show.
            let _ = out.finish();
            return Ok(());
        }
        Err(e) => {
            let _ = out.finish();
            return Err(e);
        }
    };
    out.finish().context("cannot write the session to stdout")?;
    if options.follow {
        super::follow::follow(&options.data_dir, &id, titles, read_to, held).await?;
    }
    Ok(())
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The data directory, read through an engine or read-only, and the
/// summaries of the sessions it holds.
struct Opened {
    /// `None` when a run holds the directory: it is read read-only.
    engine: Option<Engine>,
    /// The store under the engine, for the one write `sessions` makes
    /// (recording a removed worktree); `None` with the engine.
    store: Option<Arc<FileStore>>,
    dir: PathBuf,
    /// Every readable session's summary, by id.
    sessions: HashMap<String, Summary>,
}

/// Refuses a directory that is not a data directory: opening would create
/// the store's folders there (a typo, a home directory).
fn check_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!(
            "no data directory at {}: give the --data-dir a `run --data-dir DIR` used",
            dir.display()
        );
    }
    if !dir.join("sessions").is_dir() {
        bail!(
            "{} holds no sessions (it has no sessions/ folder): give the --data-dir a `run --data-dir DIR` used",
            dir.display()
        );
    }
    Ok(())
}

/// Opens the store of `dir` and an engine on it; `None` when a run holds
/// the directory.
async fn open_engine(dir: &Path) -> anyhow::Result<Option<(Engine, Arc<FileStore>)>> {
    let store = match FileStore::open(dir).await {
        Ok(s) => Arc::new(s),
        Err(StoreError::InUse(_)) => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open the sessions in {}", dir.display()))
        }
    };
    // No worker is ever started: the program only satisfies the builder.
    let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("bamboo-worker"));
    let engine = Engine::builder()
        .data_dir(dir)
        .worker_program(program)
        .store(store.clone())
        .build()
        .await
        .with_context(|| format!("cannot open the engine on {}", dir.display()))?;
    Ok(Some((engine, store)))
}

impl Opened {
    async fn open(dir: &Path) -> anyhow::Result<Self> {
        check_data_dir(dir)?;
        let Some((engine, store)) = open_engine(dir).await? else {
            return Self::read_only(dir);
        };
        // Through the engine: a child's ending that a full disk refused
        // shows as the engine reported it, marked as not stored yet.
        let sessions = engine
            .query_sessions(&Query::all())
            .await
            .context("cannot list the sessions")?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        Ok(Self {
            engine: Some(engine),
            store: Some(store),
            dir: dir.to_path_buf(),
            sessions,
        })
    }

    /// The directory as it is stored now, with no lock and no write: a run
    /// holds it, so its running children show as running.
    fn read_only(dir: &Path) -> anyhow::Result<Self> {
        let sessions = FileStore::peek_query(dir, &Query::all())
            .with_context(|| format!("cannot list the sessions in {}", dir.display()))?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        Ok(Self {
            engine: None,
            store: None,
            dir: dir.to_path_buf(),
            sessions,
        })
    }

    async fn close(self) {
        if let Some(engine) = self.engine {
            engine.shutdown().await;
        }
    }

    /// Session `id` whole, as the engine shows it (or as stored, read-only).
    async fn load(&self, id: &str) -> anyhow::Result<Option<Session>> {
        let loaded = match &self.engine {
            Some(engine) => engine.session(id).await.map_err(anyhow::Error::from),
            None => FileStore::peek(&self.dir, id).map_err(anyhow::Error::from),
        };
        loaded.with_context(|| format!("cannot read session {id}"))
    }

    /// Session id → title, to name children in events.
    fn titles(&self) -> HashMap<String, String> {
        self.sessions
            .values()
            .map(|s| (s.id.clone(), s.title.clone()))
            .collect()
    }

    /// Keeps only the sessions of `project`: an existing directory
    /// names the project its canonical path keys, anything else is the key.
    // Behaviours: S5.
    fn keep_project(&mut self, project: &str) {
        let key = project_key(project);
        self.sessions
            .retain(|_, s| s.project_key.as_deref() == Some(key.as_str()));
    }

    /// The children of `id` among the loaded sessions, oldest first.
    fn children_of(&self, id: &str) -> Vec<&Summary> {
        let mut kids: Vec<&Summary> = self
            .sessions
            .values()
            .filter(|s| s.parent_id.as_deref() == Some(id))
            .collect();
        kids.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        kids
    }

    /// Every root (sessions with no parent, and those whose parent is
    /// gone) as a tree, oldest first.
    fn tree(&self) -> Vec<Node> {
        let mut children: HashMap<&str, Vec<&Summary>> = HashMap::new();
        let mut roots = Vec::new();
        for s in self.sessions.values() {
            match s.parent_id.as_deref() {
                Some(p) if self.sessions.contains_key(p) => children.entry(p).or_default().push(s),
                _ => roots.push(s),
            }
        }
        let order = |v: &mut Vec<&Summary>| {
            v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        };
        order(&mut roots);
        for kids in children.values_mut() {
            order(kids);
        }
        fn build(s: &Summary, children: &HashMap<&str, Vec<&Summary>>) -> Node {
            let kids = children
                .get(s.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            Node::of(s, kids.iter().map(|k| build(k, children)).collect())
        }
        roots.into_iter().map(|r| build(r, &children)).collect()
    }
}

/// The project key `project` names: an existing directory's canonical
/// path, else the text itself.
fn project_key(project: &str) -> String {
    if Path::new(project).is_dir() {
        bamboo_engine::project::key_of(project)
    } else {
        project.to_owned()
    }
}

/// Where `--limit` reads from: the engine, or the stored files read-only.
enum Source<'a> {
    Engine(&'a Engine),
    ReadOnly(&'a Path),
}

impl Source<'_> {
    async fn query(&self, q: &Query) -> anyhow::Result<Vec<Summary>> {
        match self {
            Self::Engine(e) => Ok(e.query_sessions(q).await?),
            Self::ReadOnly(dir) => Ok(FileStore::peek_query(dir, q)?),
        }
    }

    async fn count(&self, q: &Query) -> anyhow::Result<u64> {
        match self {
            Self::Engine(e) => Ok(e.count_sessions(q).await?),
            Self::ReadOnly(dir) => Ok(FileStore::peek_count(dir, q)?),
        }
    }

    /// `s` with at most `limit` of its children, and theirs, oldest first.
    async fn node(&self, s: &Summary, limit: usize, depth: usize) -> anyhow::Result<Limited> {
        let q = Query {
            limit: Some(limit),
            ..Query::children_of(&s.id)
        };
        let kids = self.query(&q).await?;
        let total = if kids.len() < limit {
            kids.len() as u64
        } else {
            self.count(&q).await?
        };
        let mut children = Vec::new();
        let mut more = Vec::new();
        // Nesting is shallow (spawn depth is capped); each level a query.
        if depth < 8 {
            for k in &kids {
                let Limited { node, unlisted } = Box::pin(self.node(k, limit, depth + 1)).await?;
                children.push(node);
                more.extend(unlisted);
            }
        } else {
            children = kids.iter().map(|k| Node::of(k, Vec::new())).collect();
        }
        let shown = children.len() as u64;
        if total > shown {
            more.push((s.id.clone(), total - shown));
        }
        Ok(Limited {
            node: Node::of(s, children),
            unlisted: more,
        })
    }
}

/// A node of a `--limit` listing, and the children it leaves out:
/// (parent id, how many).
struct Limited {
    node: Node,
    unlisted: Vec<(String, u64)>,
}

/// `sessions list --limit N`: the N most recent roots (shown oldest
/// first), each with its N oldest children, from indexed queries only.
async fn list_limited(options: &SessionsOptions, limit: usize) -> anyhow::Result<()> {
    let dir = &options.data_dir;
    check_data_dir(dir)?;
    let opened = open_engine(dir).await?;
    let source = match &opened {
        Some((engine, _)) => Source::Engine(engine),
        None => Source::ReadOnly(dir),
    };
    let listed = async {
        let roots_q = Query {
            parent: Parent::None,
            project: options.project.as_deref().map(project_key),
            limit: Some(limit),
            newest_first: true,
            ..Query::default()
        };
        let mut roots = source.query(&roots_q).await?;
        roots.reverse();
        let mut nodes = Vec::new();
        let mut unlisted = Vec::new();
        for r in &roots {
            let l = source.node(r, limit, 1).await?;
            nodes.push(l.node);
            unlisted.extend(l.unlisted);
        }
        let older = source
            .count(&roots_q)
            .await?
            .saturating_sub(roots.len() as u64);
        anyhow::Ok((nodes, unlisted, older))
    }
    .await;
    if let Some((engine, _)) = opened {
        engine.shutdown().await;
    }
    let (nodes, unlisted, older) = listed?;
    if options.json {
        let mut text = serde_json::to_string_pretty(&nodes).context("cannot encode the listing")?;
        text.push('\n');
        emit(&text);
        return Ok(());
    }
    let mut text = if nodes.is_empty() {
        "no sessions in this data directory\n".to_owned()
    } else {
        render_tree(&nodes)
    };
    for (parent, n) in unlisted {
        let _ = writeln!(
            text,
            "… {n} more children of {parent} (`sessions show {parent}` or a larger --limit)"
        );
    }
    if older > 0 {
        let _ = writeln!(text, "… {older} older roots (a larger --limit lists them)");
    }
    emit(&text);
    Ok(())
}

/// One session of the listing, with its children.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// Session id.
    pub id: String,
    /// Parent id; `None` for a root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Title (a child's name).
    pub title: String,
    /// Run status; `None` for a root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ChildStatus>,
    /// Why the last run did not complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Creation time, UTC, `2026-01-02T03:04:05Z`.
    pub created_at: String,
    /// Last update time, UTC.
    pub updated_at: String,
    /// Children, oldest first.
    pub children: Vec<Node>,
}

impl Node {
    fn of(s: &Summary, children: Vec<Node>) -> Self {
        Self {
            id: s.id.clone(),
            parent_id: s.parent_id.clone(),
            title: s.title.clone(),
            status: s.status,
            last_error: s.last_error.clone(),
            created_at: s.created_at.format(TIME).to_string(),
            updated_at: s.updated_at.format(TIME).to_string(),
            children,
        }
    }
}

async fn list(opened: &Opened, json: bool) -> anyhow::Result<String> {
    let roots = opened.tree();
    if json {
        let mut text = serde_json::to_string_pretty(&roots).context("cannot encode the listing")?;
        text.push('\n');
        return Ok(text);
    }
    if roots.is_empty() {
        return Ok("no sessions in this data directory\n".into());
    }
    Ok(render_tree(&roots))
}

/// The human listing: each root as `title  id  created ...`, then its
/// children as aligned `title  status  id  first line of the error` rows,
/// nested children indented two more spaces.
pub fn render_tree(roots: &[Node]) -> String {
    let mut out = String::new();
    for root in roots {
        let kind = if root.parent_id.is_some() {
            " (its parent is gone)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{}  {}  created {}  {} children{kind}",
            root.title,
            root.id,
            root.created_at,
            root.children.len()
        );
        render_children(&mut out, &root.children, 1);
    }
    out
}

fn render_children(out: &mut String, kids: &[Node], depth: usize) {
    let width = kids
        .iter()
        .map(|k| shown_title(k).chars().count())
        .max()
        .unwrap_or(0);
    let indent = "  ".repeat(depth);
    for k in kids {
        let status = k.status.map(|s| s.as_str()).unwrap_or("-");
        let error = k
            .last_error
            .as_deref()
            .and_then(|e| e.lines().next())
            .map(|e| format!("  {e}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{indent}{:width$}  {status:<9}  {}{error}",
            shown_title(k),
            k.id
        );
        render_children(out, &k.children, depth + 1);
    }
}

/// A title fit for one column: its first line, at most 40 characters.
fn shown_title(n: &Node) -> String {
    column_title(&n.title)
}

/// `title` fit for one column: its first line, at most 40 characters.
fn column_title(title: &str) -> String {
    let first = title.lines().next().unwrap_or_default();
    let title = if first.is_empty() {
        "(untitled)"
    } else {
        first
    };
    if title.chars().count() > 40 {
        let cut: String = title.chars().take(39).collect();
        format!("{cut}…")
    } else {
        title.to_owned()
    }
}

/// `sessions remove-worktree ID`: removes the child's kept worktree and
/// records that it is gone.
async fn remove_worktree(opened: &Opened, id: &str) -> anyhow::Result<String> {
    let Some(session) = opened.load(id).await? else {
        bail!("no session {id} in this data directory: `bamboo-worker sessions --data-dir DIR` lists the ids");
    };
    let Some(wt) = bamboo_engine::worktree::of(&session) else {
        bail!("session {id} has no worktree: only children of `run --worktree` have one");
    };
    let Some(store) = &opened.store else {
        bail!("a run holds this data directory: remove the worktree once it has ended");
    };
    if wt.removed {
        return Ok(format!(
            "the worktree of {id} was already removed (branch {})\n",
            wt.branch
        ));
    }
    let path = wt.path.clone();
    let wt = tokio::task::spawn_blocking(move || {
        let mut wt = wt;
        bamboo_engine::worktree::remove(&mut wt).map(|()| wt)
    })
    .await
    .context("removing the worktree failed")?
    .map_err(anyhow::Error::msg)?;
    let record = wt.clone();
    store
        .update(
            id,
            Box::new(move |s: &mut Session| {
                bamboo_engine::worktree::store(s, &record);
                true
            }),
        )
        .await
        .context("cannot record the removed worktree")?;
    let branch = if wt.commit.is_some() {
        "kept with its commits"
    } else {
        "deleted (it had no commit)"
    };
    Ok(format!(
        "removed the worktree {path}; branch {} {branch}\n",
        wt.branch
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, title: &str, status: Option<ChildStatus>, kids: Vec<Node>) -> Node {
        Node {
            id: id.into(),
            parent_id: status.map(|_| "p".into()),
            title: title.into(),
            status,
            last_error: None,
            created_at: "2026-01-02T03:04:05Z".into(),
            updated_at: "2026-01-02T03:04:05Z".into(),
            children: kids,
        }
    }

    #[test]
    fn the_tree_aligns_siblings_and_indents_grandchildren() {
        let mut failed = node("c2", "second task", Some(ChildStatus::Error), vec![]);
        failed.last_error = Some("boom\ndetails".into());
        let grandchild = node("g1", "sub", Some(ChildStatus::Completed), vec![]);
        let first = node("c1", "one", Some(ChildStatus::Completed), vec![grandchild]);
        let root = node("r1", "bamboo-worker run", None, vec![first, failed]);
        let text = render_tree(&[root]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "bamboo-worker run  r1  created 2026-01-02T03:04:05Z  2 children",
                "  one          completed  c1",
                "    sub  completed  g1",
                "  second task  error      c2  boom",
            ]
        );
    }

    #[test]
    fn long_or_empty_titles_fit_one_column() {
        let long = node("x", &"a".repeat(60), None, vec![]);
        assert_eq!(shown_title(&long).chars().count(), 40);
        assert_eq!(shown_title(&node("x", "", None, vec![])), "(untitled)");
        assert_eq!(shown_title(&node("x", "one\ntwo", None, vec![])), "one");
    }
}
