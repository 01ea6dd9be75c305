//! Each session under this connection's root as MCP resources: the
//! transcript at `bamboo://sessions/<id>` (the session as JSON) and the event
//! log at `bamboo://sessions/<id>/events` (NDJSON, one logged event a line),
//! with `resources/updated` notifications for subscribed ones while their
//! child runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bamboo_domain::AgentEvent;
use bamboo_engine::{Engine, Since};
use futures::StreamExt;
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult,
    ResourceUpdatedNotificationParam,
};
use rmcp::{ErrorData, Peer, RoleServer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "bamboo://sessions/";
const EVENTS: &str = "/events";
/// A running child's resources are announced at most this often (its end
/// always at once): a token stream must not flood the client.
const UPDATE_EVERY: Duration = Duration::from_millis(200);
/// How far up a session's ancestry is followed to find the root.
const MAX_DEPTH: usize = 64;

/// The subscribed URIs of one connection.
pub type Subscriptions = Arc<Mutex<HashSet<String>>>;

/// Which resource a URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Transcript(String),
    Events(String),
}

fn parse(uri: &str) -> Option<Target> {
    let rest = uri.strip_prefix(PREFIX)?;
    let (id, target) = match rest.strip_suffix(EVENTS) {
        Some(id) => (id, Target::Events(id.to_owned())),
        None => (rest, Target::Transcript(rest.to_owned())),
    };
    (!id.is_empty() && !id.contains('/')).then_some(target)
}

fn transcript_uri(id: &str) -> String {
    format!("{PREFIX}{id}")
}

fn events_uri(id: &str) -> String {
    format!("{PREFIX}{id}{EVENTS}")
}

fn not_found(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        format!(
            "no resource {uri} under this session: resources/list names this session's children"
        ),
        None,
    )
}

fn built<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ErrorData> {
    serde_json::from_value(value)
        .map_err(|e| ErrorData::internal_error(format!("cannot build a resource reply: {e}"), None))
}

/// The transcript and event log of every child of `root`.
pub async fn list(engine: &Engine, root: &str) -> Result<ListResourcesResult, ErrorData> {
    let children = engine
        .list_children(root)
        .await
        .map_err(|e| ErrorData::internal_error(format!("cannot list children: {e}"), None))?;
    let mut resources = Vec::with_capacity(children.len() * 2);
    for c in children {
        resources.push(json!({
            "uri": transcript_uri(&c.id),
            "name": format!("{} (transcript)", c.title),
            "mimeType": "application/json",
            "description": format!("Child session {}: messages, status ({}).", c.id, serde_json::to_value(c.status).unwrap_or_default().as_str().unwrap_or_default()),
        }));
        resources.push(json!({
            "uri": events_uri(&c.id),
            "name": format!("{} (events)", c.title),
            "mimeType": "application/x-ndjson",
            "description": format!("Event log of child session {}, one JSON event a line.", c.id),
        }));
    }
    built(json!({ "resources": resources }))
}

/// The URI templates of the two resource kinds.
pub fn templates() -> Result<ListResourceTemplatesResult, ErrorData> {
    built(json!({"resourceTemplates": [
        {"uriTemplate": "bamboo://sessions/{id}", "name": "session transcript", "mimeType": "application/json"},
        {"uriTemplate": "bamboo://sessions/{id}/events", "name": "session event log", "mimeType": "application/x-ndjson"},
    ]}))
}

/// Reads one resource of a session under `root` (C9: nothing else).
pub async fn read(engine: &Engine, root: &str, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let target = parse(uri).ok_or_else(|| not_found(uri))?;
    let id = match &target {
        Target::Transcript(id) | Target::Events(id) => id.clone(),
    };
    if !under(engine, root, &id).await {
        return Err(not_found(uri));
    }
    let (mime, text) = match target {
        Target::Transcript(id) => {
            let session = engine
                .session(&id)
                .await
                .map_err(|e| ErrorData::internal_error(format!("cannot load {id}: {e}"), None))?
                .ok_or_else(|| not_found(uri))?;
            let text = serde_json::to_string_pretty(&session)
                .map_err(|e| ErrorData::internal_error(format!("cannot render {id}: {e}"), None))?;
            ("application/json", text)
        }
        Target::Events(id) => ("application/x-ndjson", events_of(engine, root, &id).await),
    };
    built(json!({"contents": [{"uri": uri, "mimeType": mime, "text": text}]}))
}

/// The logged events about `id`: its own run's events live in its
/// ancestors' logs, so the root's log is read and filtered.
async fn events_of(engine: &Engine, root: &str, id: &str) -> String {
    let mut stream = engine.logged_events(root, Since::Start);
    let mut out = String::new();
    while let Some(logged) = stream.next().await {
        if id != root && about(&logged.event) != Some(id) {
            continue;
        }
        let line = json!({"seq": logged.seq, "event": &*logged.event});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// The child an event is about.
fn about(event: &AgentEvent) -> Option<&str> {
    match event {
        AgentEvent::SubAgentStarted {
            child_session_id, ..
        }
        | AgentEvent::SubAgentHeartbeat {
            child_session_id, ..
        }
        | AgentEvent::SubAgentCompleted {
            child_session_id, ..
        }
        | AgentEvent::ChildApprovalRequested {
            child_session_id, ..
        } => Some(child_session_id),
        AgentEvent::SubAgentEvent {
            child_session_id, ..
        } => Some(child_session_id),
        _ => None,
    }
}

/// Whether `id` is `root` or one of its descendants.
pub async fn under(engine: &Engine, root: &str, id: &str) -> bool {
    let mut current = id.to_owned();
    for _ in 0..MAX_DEPTH {
        if current == root {
            return true;
        }
        match engine.session(&current).await {
            Ok(Some(s)) => match s.parent_id {
                Some(p) => current = p,
                None => return false,
            },
            _ => return false,
        }
    }
    false
}

/// Checks that `uri` names a resource under `root`, for `resources/subscribe`.
pub async fn check(engine: &Engine, root: &str, uri: &str) -> Result<(), ErrorData> {
    let id = match parse(uri).ok_or_else(|| not_found(uri))? {
        Target::Transcript(id) | Target::Events(id) => id,
    };
    if under(engine, root, &id).await {
        Ok(())
    } else {
        Err(not_found(uri))
    }
}

/// Sends `resources/updated` for the subscribed resources of every session
/// an event under `root` is about, until `stop`.
pub async fn announce(
    engine: Engine,
    root: String,
    peer: Peer<RoleServer>,
    subscriptions: Subscriptions,
    stop: CancellationToken,
) {
    let mut events = engine.events(&root, Since::Now);
    let mut last: HashMap<String, Instant> = HashMap::new();
    loop {
        let logged = tokio::select! {
            _ = stop.cancelled() => return,
            next = events.next() => match next {
                Some(l) => l,
                None => return,
            },
        };
        let Some(id) = about(&logged.event) else {
            continue;
        };
        let ended = matches!(&*logged.event, AgentEvent::SubAgentCompleted { .. });
        let uris: Vec<String> = {
            let subscribed = subscriptions.lock().unwrap_or_else(|p| p.into_inner());
            [transcript_uri(id), events_uri(id)]
                .into_iter()
                .filter(|u| subscribed.contains(u))
                .collect()
        };
        for uri in uris {
            let due = last.get(&uri).is_none_or(|at| at.elapsed() >= UPDATE_EVERY);
            if !(due || ended) {
                continue;
            }
            last.insert(uri.clone(), Instant::now());
            if let Err(e) = peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
            {
                tracing::debug!(error = %e, "cannot send resources/updated; the client is gone");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_a_transcript_or_an_event_log() {
        assert_eq!(
            parse("bamboo://sessions/abc"),
            Some(Target::Transcript("abc".into()))
        );
        assert_eq!(
            parse("bamboo://sessions/abc/events"),
            Some(Target::Events("abc".into()))
        );
        assert_eq!(parse("bamboo://sessions/"), None);
        assert_eq!(parse("bamboo://sessions/a/b"), None);
        assert_eq!(parse("file:///etc/passwd"), None);
    }
}
