//! A stand-in worker that registers in the fabric like a real one but never
//! answers the WebSocket upgrade: it accepts connections and holds them
//! silently. The link-bounds tests point the engine at it to check that a
//! stalled handshake fails the child within the handshake bound.
//!
//! It reads the ProvisionSpec from stdin, binds 127.0.0.1, publishes its
//! record, prints the ready line, and lives until its parent dies or two
//! minutes pass.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bamboo_subagent::fabric::Fabric;
use bamboo_subagent::record::AgentRecord;
use bamboo_subagent::spec::ProvisionSpec;

/// Longest life, so a leaked stand-in never lingers.
const MAX_LIFE: Duration = Duration::from_secs(120);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut raw = Vec::new();
    std::io::stdin().read_to_end(&mut raw)?;
    let spec: ProvisionSpec = serde_json::from_slice(&raw)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let endpoint = format!("ws://{}", listener.local_addr()?);
    let record: AgentRecord = serde_json::from_value(serde_json::json!({
        "agent_id": spec.identity.child_id,
        "endpoint": endpoint,
        "pid": std::process::id(),
        "started_at": "2020-01-01T00:00:00Z",
        "lease_expires_at": "2999-01-01T00:00:00Z",
    }))?;
    Fabric::new(&spec.fabric_dir).publish(&record)?;
    println!("ready {endpoint}");
    std::io::stdout().flush()?;
    // Held, never read: the peer's upgrade request goes unanswered.
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let parent = std::os::unix::process::parent_id();
    let born = Instant::now();
    while std::os::unix::process::parent_id() == parent && born.elapsed() < MAX_LIFE {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
