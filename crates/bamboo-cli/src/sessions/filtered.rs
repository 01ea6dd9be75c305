//! `sessions list` with `--status`, `--parent`, `--since` or `--until`: the
//! sessions selected, one line each (a filtered tree would hide what links
//! them), read a page at a time from the store's indices, so a directory of
//! 100,000 sessions is never read whole.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{bail, Context};
use bamboo_engine::store::{FileStore, Parent, Query, Summary};
use serde::Serialize;

use super::{check_data_dir, open_engine, project_key, SessionsOptions, Source, TIME};
use crate::ids;

/// Sessions read per query when listing all matches.
const PAGE: usize = 500;

/// One session of a flat listing (`--json`).
#[derive(Debug, Serialize)]
struct Row<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<bamboo_domain::ChildStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<&'a str>,
    created_at: String,
    updated_at: String,
}

impl<'a> Row<'a> {
    fn of(s: &'a Summary) -> Self {
        Self {
            id: &s.id,
            parent_id: s.parent_id.as_deref(),
            title: &s.title,
            status: s.status,
            last_error: s.last_error.as_deref(),
            created_at: s.created_at.format(TIME).to_string(),
            updated_at: s.updated_at.format(TIME).to_string(),
        }
    }
}

/// Lists what `options.filter` selects: all of it oldest first, or with
/// `--limit N` the N most recent (shown oldest first) and how many older
/// ones match.
pub(super) async fn list(options: &SessionsOptions) -> anyhow::Result<()> {
    let dir = &options.data_dir;
    check_data_dir(dir)?;
    let filter = &options.filter;
    let since = filter.since.map(|w| w.start());
    let until = filter.until.map(|w| w.end());
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            bail!(
                "--since {} is not before --until {}: no session can match; give an earlier --since or a later --until",
                s.format(TIME),
                u.format(TIME)
            );
        }
    }
    let parent = match &filter.parent {
        Some(given) => Parent::Of(resolve_parent(given, dir)?),
        None => Parent::Any,
    };
    let query = Query {
        parent,
        project: options.project.as_deref().map(project_key),
        status: filter.status,
        since,
        until,
        ..Query::default()
    };
    // A person reading through the pager holds no lock meanwhile: the text
    // is made first. Otherwise each page is printed as it is read.
    let paged = options.pager && !options.json && std::io::stdout().is_terminal();
    let mut out = Out::new(options.json, paged);
    let opened = open_engine(dir).await?;
    let source = match &opened {
        Some((engine, _)) => Source::Engine(engine),
        None => Source::ReadOnly(dir),
    };
    let listed = async {
        match options.limit {
            Some(n) => {
                let newest = Query {
                    limit: Some(n),
                    newest_first: true,
                    ..query.clone()
                };
                let mut rows = source.query(&newest).await?;
                rows.reverse();
                let older = if rows.len() < n {
                    0
                } else {
                    source
                        .count(&query)
                        .await?
                        .saturating_sub(rows.len() as u64)
                };
                out.rows(&rows);
                out.older(older);
            }
            None => {
                let mut page = Query {
                    limit: Some(PAGE),
                    ..query.clone()
                };
                loop {
                    let rows = source.query(&page).await?;
                    if !out.rows(&rows) || rows.len() < PAGE {
                        break;
                    }
                    page.after = rows.last().map(|s| (s.created_at, s.id.clone()));
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Some((engine, _)) = opened {
        engine.shutdown().await;
    }
    listed.context("cannot list the sessions")?;
    out.finish();
    Ok(())
}

/// The session `--parent` names: its id, or the one id it is the start of.
fn resolve_parent(given: &str, dir: &Path) -> anyhow::Result<String> {
    // A whole id is one indexed read; only a prefix needs the ids.
    if let Ok(Some(_)) = FileStore::peek(dir, given) {
        return Ok(given.to_owned());
    }
    let known = ids::stored(dir)?;
    ids::resolve(given, known.iter().map(String::as_str), dir)
        .map_err(|e| anyhow::anyhow!("--parent {given}: {e:#}"))
}

/// The listing as it is made: printed page by page, or kept for the pager.
struct Out {
    json: bool,
    paged: bool,
    text: String,
    /// Rows written so far.
    rows: u64,
    /// The title column's width, from the first page.
    width: Option<usize>,
    /// The reader went away (`| head`): nothing more is read.
    closed: bool,
}

impl Out {
    fn new(json: bool, paged: bool) -> Self {
        Self {
            json,
            paged,
            text: String::new(),
            rows: 0,
            width: None,
            closed: false,
        }
    }

    /// Adds `page`; `false` once nobody reads any more.
    fn rows(&mut self, page: &[Summary]) -> bool {
        for s in page {
            if self.json {
                let sep = if self.rows == 0 { "[\n  " } else { ",\n  " };
                self.text.push_str(sep);
                // A row of strings and an enum always encodes.
                let row = serde_json::to_string(&Row::of(s)).unwrap_or_default();
                self.text.push_str(&row);
            } else {
                let width = *self.width.get_or_insert_with(|| {
                    page.iter()
                        .map(|s| title(s).chars().count())
                        .chain(["TITLE".len()])
                        .max()
                        .unwrap_or(0)
                });
                if self.rows == 0 {
                    let _ = writeln!(
                        self.text,
                        "{:width$}  {:<9}  {:<36}  {:<8}  {:<20}  ERROR",
                        "TITLE", "STATUS", "ID", "PARENT", "CREATED"
                    );
                }
                line(&mut self.text, s, width);
            }
            self.rows += 1;
        }
        self.flush()
    }

    /// The closing note of a `--limit` listing.
    fn older(&mut self, older: u64) {
        if older > 0 && !self.json {
            let _ = writeln!(
                self.text,
                "… {older} older sessions match (a larger --limit lists them)"
            );
        }
    }

    /// Prints what is made unless it waits for the pager.
    fn flush(&mut self) -> bool {
        if self.paged || self.closed || self.text.is_empty() {
            return !self.closed;
        }
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(self.text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            self.closed = true;
        }
        self.text.clear();
        !self.closed
    }

    fn finish(mut self) {
        if self.json {
            self.text
                .push_str(if self.rows == 0 { "[]\n" } else { "\n]\n" });
        } else if self.rows == 0 {
            self.text
                .push_str("no sessions match (a listing without filters shows them all)\n");
        }
        if self.paged {
            crate::pager::page(&self.text);
        } else {
            self.flush();
        }
    }
}

/// `title  status  id  parent  created  first line of the error`; a root
/// has status and parent `-`.
fn line(out: &mut String, s: &Summary, width: usize) {
    let status = s.status.map_or("-", |st| st.as_str());
    let parent = s.parent_id.as_deref().map_or("-", ids::short);
    let error = s
        .last_error
        .as_deref()
        .and_then(|e| e.lines().next())
        .unwrap_or_default();
    let row = format!(
        "{:width$}  {status:<9}  {:<36}  {parent:<8}  {:<20}  {error}",
        title(s),
        s.id,
        s.created_at.format(TIME).to_string()
    );
    let _ = writeln!(out, "{}", row.trim_end());
}

/// The title as one column: its first line, at most 40 characters.
fn title(s: &Summary) -> String {
    super::column_title(&s.title)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn summary(id: &str, parent: Option<&str>, title: &str, error: Option<&str>) -> Summary {
        let t = chrono::Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap();
        Summary {
            id: id.into(),
            parent_id: parent.map(Into::into),
            project_key: None,
            title: title.into(),
            status: parent.map(|_| bamboo_domain::ChildStatus::Error),
            last_error: error.map(Into::into),
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn a_flat_row_names_status_parent_time_and_the_errors_first_line() {
        let mut text = String::new();
        let kid = summary(
            "11111111-aaaa",
            Some("22222222-bbbb"),
            "fix tests",
            Some("boom\nmore"),
        );
        line(&mut text, &kid, 10);
        let root = summary("22222222-bbbb", None, "the run", None);
        line(&mut text, &root, 10);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "fix tests   error      11111111-aaaa                         22222222  2026-12-06T10:00:00Z  boom",
                "the run     -          22222222-bbbb                         -         2026-12-06T10:00:00Z",
            ]
        );
    }

    #[test]
    fn json_rows_form_one_array_across_pages() {
        let mut out = Out::new(true, true);
        let a = summary("a", Some("r"), "one", Some("bad"));
        let b = summary("b", None, "two", None);
        out.rows(std::slice::from_ref(&a));
        out.rows(std::slice::from_ref(&b));
        out.text.push_str("\n]\n");
        let doc: serde_json::Value = serde_json::from_str(&out.text).unwrap();
        assert_eq!(doc[0]["parent_id"], "r");
        assert_eq!(doc[0]["status"], "error");
        assert_eq!(doc[0]["last_error"], "bad");
        assert_eq!(doc[1]["id"], "b");
        assert!(doc[1].get("parent_id").is_none() && doc[1].get("status").is_none());
    }
}
