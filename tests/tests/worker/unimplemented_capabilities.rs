//! No silent capabilities (F17, issue 21): a spec asking for a capability this
//! worker does not implement (`capabilities.mcp`, `capabilities.skills_dir`)
//! is refused with exit 2 and one line naming it, before anything is
//! published (F4).

/// Feeds `capabilities` in an otherwise valid echo spec to a worker; returns
/// its exit code and stderr, and checks it published nothing.
fn provision_with(capabilities: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let fabric = dir.path().join("agents");
    let spec = format!(
        r#"{{"version":1,"identity":{{"child_id":"c1"}},"executor":{{"kind":"echo"}},"fabric_dir":{:?},"capabilities":{capabilities}}}"#,
        fabric.to_string_lossy()
    );
    let refused = bamboo_e2e::worker_with_stdin(spec.as_bytes(), &[]);
    assert!(!fabric.exists(), "nothing published for a refused spec");
    refused
}

fn assert_refused_naming(capabilities: &str, name: &str) {
    let (code, stderr) = provision_with(capabilities);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got {stderr:?}");
    assert!(
        lines[0].contains(name) && lines[0].contains("not supported"),
        "{:?} should name {name}",
        lines[0]
    );
}

#[test]
fn a_spec_asking_for_mcp_servers_is_refused_naming_it() {
    assert_refused_naming(r#"{"mcp":{"version":1,"servers":[]}}"#, "capabilities.mcp");
}

#[test]
fn a_spec_asking_for_skills_is_refused_naming_it() {
    assert_refused_naming(
        r#"{"skills_dir":"/home/u/skills"}"#,
        "capabilities.skills_dir",
    );
}
