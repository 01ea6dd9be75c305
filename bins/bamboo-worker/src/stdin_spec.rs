//! Reading the provision spec from stdin with a size cap and a bounded wait
//! (protocol.md 1.3), so a parent that never closes the pipe cannot hang us.

use std::io::Read;
use std::time::Duration;

use bamboo_subagent::spec::{ProvisionSpec, SpecError, MAX_SPEC_BYTES};

/// Reads stdin to EOF (at most [`MAX_SPEC_BYTES`] + 1 bytes, to detect an
/// oversized spec) within `timeout`, then parses and validates it. Async, so
/// the worker can watch its parent meanwhile (F12).
pub async fn read_spec(timeout: Duration) -> Result<ProvisionSpec, SpecError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain thread: a blocked read cannot be interrupted, and on timeout the
    // process exits anyway.
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let limit = (MAX_SPEC_BYTES + 1) as u64;
        let result = std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut buf)
            .map(|_| buf);
        let _ = tx.send(result);
    });
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(Ok(bytes))) => ProvisionSpec::from_slice(&bytes),
        Ok(Ok(Err(e))) => Err(SpecError::Io(e.to_string())),
        Ok(Err(_)) => Err(SpecError::Io(
            "the stdin reader thread stopped without an answer".into(),
        )),
        Err(_) => Err(SpecError::StdinTimeout(timeout.as_millis() as u64)),
    }
}
