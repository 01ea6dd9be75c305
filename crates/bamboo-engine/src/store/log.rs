//! The session files of earlier versions (see `legacy`): `<id>.jsonl`, a
//! short log of whole session documents, one compact JSON document per
//! line; the last complete line is the session.
//!
//! Every append was synced before that store answered, and appends to one
//! session were serialised, so only the last line can be torn (cut short,
//! or holding blocks that never reached the disk). A torn last line is
//! ignored, which yields the previous, durable version. A bad line anywhere
//! else is damage and is reported, never skipped silently.

use serde::de::DeserializeOwned;

/// The newest intact document of a log, and where the intact part ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Newest<T> {
    /// The document.
    pub(super) doc: T,
    /// Length of the log up to and including the document's newline; anything
    /// after it is a torn tail to cut before appending.
    pub(super) intact_len: u64,
    /// Length of the document's line (a measure of its size in memory).
    pub(super) doc_len: u64,
}

/// Why a log has no usable document.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LogError {
    /// Not even one complete line.
    Empty,
    /// A line other than the last does not parse: damage, not a torn append.
    BadLine(String),
}

/// Finds the newest document. Only the last append can be torn: an
/// unterminated tail is cut off, and a complete last line that does not parse
/// (its blocks never reached the disk) yields the line before it. A log with
/// no complete line at all is a create that never finished.
pub(super) fn newest<T: DeserializeOwned>(log: &[u8]) -> Result<Newest<T>, LogError> {
    let complete = line_start(log, log.len());
    if complete == 0 {
        return Err(LogError::Empty);
    }
    let torn_tail = complete < log.len();
    let start = line_start(log, complete - 1);
    match parse(log, start, complete) {
        Ok(found) => Ok(found),
        Err(e) if torn_tail || start == 0 => Err(e),
        Err(_) => parse(log, line_start(log, start - 1), start),
    }
}

/// Where the line holding byte `end - 1` starts (0 for the first line).
fn line_start(log: &[u8], end: usize) -> usize {
    log[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

/// The line `log[start..end]` (newline included) as the newest document.
fn parse<T: DeserializeOwned>(log: &[u8], start: usize, end: usize) -> Result<Newest<T>, LogError> {
    let doc = serde_json::from_slice(&log[start..end - 1])
        .map_err(|e| LogError::BadLine(e.to_string()))?;
    Ok(Newest {
        doc,
        intact_len: end as u64,
        doc_len: (end - start) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(log: &[u8]) -> (String, u64) {
        let n = newest::<serde_json::Value>(log).unwrap();
        (n.doc.to_string(), n.intact_len)
    }

    #[test]
    fn the_last_complete_line_wins() {
        assert_eq!(doc(b"{\"v\":1}\n"), ("{\"v\":1}".into(), 8));
        assert_eq!(doc(b"{\"v\":1}\n{\"v\":2}\n"), ("{\"v\":2}".into(), 16));
    }

    #[test]
    fn a_torn_last_append_falls_back_to_the_previous_version() {
        // Cut short: no newline.
        assert_eq!(doc(b"{\"v\":1}\n{\"v\":"), ("{\"v\":1}".into(), 8));
        // Terminated but its blocks never reached the disk (zeros).
        assert_eq!(doc(b"{\"v\":1}\n\0\0\0\0\n"), ("{\"v\":1}".into(), 8));
    }

    #[test]
    fn damage_before_the_last_line_is_reported() {
        assert!(matches!(
            newest::<serde_json::Value>(b"{\"v\":1}\n{bad\n{\"v\"\n"),
            Err(LogError::BadLine(_))
        ));
        assert!(matches!(
            newest::<serde_json::Value>(b"{bad\n{\"v\":"),
            Err(LogError::BadLine(_))
        ));
    }

    #[test]
    fn an_empty_or_unterminated_only_log_has_no_document() {
        assert_eq!(newest::<serde_json::Value>(b""), Err(LogError::Empty));
        assert_eq!(
            newest::<serde_json::Value>(b"{\"v\":1}"),
            Err(LogError::Empty)
        );
    }
}
