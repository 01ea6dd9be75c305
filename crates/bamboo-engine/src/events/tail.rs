//! Reading a session's event log with no engine: `sessions show` (and its
//! `--follow`) while a run holds the data directory. Nothing is locked or
//! written; a line still being written is left for the next read.

use std::path::{Path, PathBuf};

use super::line::{self, Line};
use super::LoggedEvent;

/// A reader of one log file, `<data>/events/<session>.ndjson`, that
/// remembers how far it read: each [`LogTail::read_new`] returns the events
/// logged since the previous one.
///
/// It reads only what the engine has written to the file; a running engine
/// writes its buffer within a tenth of a second of an event, so a live
/// run's events arrive about that late.
#[derive(Debug, Clone)]
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    next: u64,
}

impl LogTail {
    /// A reader of session `session`'s log in data directory `data_dir`,
    /// at its first event.
    pub fn new(data_dir: impl AsRef<Path>, session: &str) -> Self {
        Self {
            path: data_dir
                .as_ref()
                .join("events")
                .join(format!("{session}.ndjson")),
            offset: 0,
            next: 1,
        }
    }

    /// The events written since the last call, in order. Events the log
    /// lost (its size cap, a failed write) show as one `events_truncated`
    /// event standing for them, as an engine's readers see them. A log that
    /// does not exist yet has no events. Blocking: reads the file.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn read_new(&mut self) -> std::io::Result<Vec<LoggedEvent>> {
        let mut out = Vec::new();
        self.read_each(|e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    /// As [`LogTail::read_new`], but hands each event to `each` as it is
    /// read instead of collecting them: a log of millions of events is
    /// shown in constant memory. An error from `each` ends the read and is
    /// returned (for a reader whose output went away, say).
    ///
    /// # Errors
    /// The file exists but cannot be read, or `each` failed.
    pub fn read_each(
        &mut self,
        mut each: impl FnMut(LoggedEvent) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        use std::io::{BufRead, BufReader, Seek, SeekFrom};
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        let mut text = Vec::new();
        loop {
            text.clear();
            let n = reader.read_until(b'\n', &mut text)?;
            // A line still being written (no newline yet) waits for the next read.
            if n == 0 || text.last() != Some(&b'\n') {
                return Ok(());
            }
            self.offset += n as u64;
            match line::parse(&text[..n - 1]) {
                Some(Line::Event(e)) if e.seq >= self.next => {
                    if e.seq > self.next {
                        let gap = self.gap(self.next, e.seq - 1);
                        self.next = e.seq;
                        each(gap)?;
                    }
                    self.next = e.seq + 1;
                    each(e)?;
                }
                // The numbering reached `m`: the events up to it are lost.
                Some(Line::GapTo(m)) if m >= self.next => {
                    let gap = self.gap(self.next, m);
                    self.next = m + 1;
                    each(gap)?;
                }
                // Older events (a rewritten tail), gap starts, damaged lines.
                _ => {}
            }
        }
    }

    fn gap(&self, first: u64, last: u64) -> LoggedEvent {
        let session = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        LoggedEvent {
            seq: last,
            time: chrono::Utc::now(),
            event: std::sync::Arc::new(bamboo_domain::AgentEvent::EventsTruncated {
                session_id: session,
                first_seq: first,
                last_seq: last,
                reason: "these events are not in the session's event log: it reached its size cap or could not be written, e.g. on a full disk".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bamboo_domain::AgentEvent;

    #[test]
    fn new_events_whole_lines_only_and_losses_as_one_event() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("events")).unwrap();
        let path = dir.path().join("events").join("s1.ndjson");
        let mut tail = LogTail::new(dir.path(), "s1");
        assert!(tail.read_new().unwrap().is_empty(), "no log yet");
        let json = serde_json::to_vec(&AgentEvent::token("a")).unwrap();
        let mut buf = Vec::new();
        line::write_event(&mut buf, 1, 5, &json);
        line::write_event(&mut buf, 2, 6, &json);
        let torn = br#"{"seq":3,"t":7,"ev"#;
        std::fs::write(&path, [&buf[..], torn].concat()).unwrap();
        let seqs = |events: Vec<LoggedEvent>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(tail.read_new().unwrap()),
            [1, 2],
            "the torn line waits"
        );
        // The rest of line 3, then a jump to 6, then a trailing loss to 9.
        let mut more = Vec::new();
        line::write_event(&mut more, 3, 7, &json);
        line::write_event(&mut more, 6, 8, &json);
        line::write_gap_from(&mut more, 7);
        line::write_gap_to(&mut more, 9);
        let mut whole = buf.clone();
        whole.extend_from_slice(&more);
        std::fs::write(&path, &whole).unwrap();
        let events = tail.read_new().unwrap();
        assert_eq!(seqs(events.clone()), [3, 5, 6, 9]);
        assert!(matches!(
            &*events[1].event,
            AgentEvent::EventsTruncated {
                first_seq: 4,
                last_seq: 5,
                ..
            }
        ));
        assert!(matches!(
            &*events[3].event,
            AgentEvent::EventsTruncated {
                first_seq: 7,
                last_seq: 9,
                ..
            }
        ));
        assert!(tail.read_new().unwrap().is_empty(), "nothing new");
    }
}
