//! The tool's schema and parser agree, with the reference's names.

use serde_json::{json, Value};

use super::args::ToolCall;
use super::schema;

fn variants(schema: &Value) -> Vec<Value> {
    schema["oneOf"].as_array().cloned().unwrap_or_default()
}

fn variant<'a>(all: &'a [Value], action: &str) -> &'a Value {
    all.iter()
        .find(|v| v["properties"]["action"]["const"] == action)
        .unwrap_or_else(|| panic!("no schema variant for {action}: {all:#?}"))
}

fn required(v: &Value) -> Vec<&str> {
    let mut r: Vec<&str> = v["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    r.sort_unstable();
    r
}

#[test]
fn schema_has_one_variant_per_verb_with_the_reference_argument_names() {
    let s = schema();
    let all = variants(&s);
    assert_eq!(all.len(), 8, "{s:#}");
    let create = variant(&all, "create");
    assert_eq!(
        required(create),
        [
            "action",
            "prompt",
            "responsibility",
            "subagent_type",
            "title"
        ]
    );
    for opt in [
        "model",
        "reasoning_effort",
        "system_prompt",
        "workspace",
        "auto_run",
        "disabled_tools",
    ] {
        assert!(
            create["properties"].get(opt).is_some(),
            "create lacks {opt}"
        );
    }
    assert_eq!(required(variant(&all, "list")), ["action"]);
    for verb in ["get", "cancel", "delete"] {
        assert_eq!(
            required(variant(&all, verb)),
            ["action", "child_session_id"]
        );
    }
    let update = variant(&all, "update");
    for field in [
        "title",
        "responsibility",
        "prompt",
        "subagent_type",
        "reasoning_effort",
        "reset_after_update",
    ] {
        assert!(
            update["properties"].get(field).is_some(),
            "update lacks {field}"
        );
    }
    let run = variant(&all, "run");
    assert!(run["properties"].get("reset_to_last_user").is_some());
    let send = variant(&all, "send_message");
    assert_eq!(required(send), ["action", "child_session_id", "message"]);
    assert!(send["properties"].get("auto_run").is_some());
    assert!(send["properties"].get("interrupt_running").is_some());
}

#[test]
fn parser_takes_the_reference_names_and_defaults() {
    let call: ToolCall = serde_json::from_value(json!({
        "action": "send_message", "child_session_id": "c", "message": "hi"
    }))
    .unwrap();
    let ToolCall::SendMessage(a) = call else {
        panic!("parsed as {call:?}");
    };
    assert!(a.auto_run, "auto_run defaults to true");
    assert!(!a.interrupt_running);
    let call: ToolCall =
        serde_json::from_value(json!({"action": "run", "child_session_id": "c"})).unwrap();
    assert!(matches!(call, ToolCall::Run(r) if r.reset_to_last_user));
    let call: ToolCall =
        serde_json::from_value(json!({"action": "update", "child_session_id": "c", "title": "t"}))
            .unwrap();
    assert!(matches!(call, ToolCall::Update(u) if u.reset_after_update));
    assert!(serde_json::from_value::<ToolCall>(json!({"action": "get", "child_id": "c"})).is_err());
    assert!(serde_json::from_value::<ToolCall>(json!({"action": "explode"})).is_err());
}

#[test]
fn every_schema_variant_parses_when_filled_with_its_required_fields() {
    for v in variants(&schema()) {
        let mut args = serde_json::Map::new();
        for field in required(&v) {
            let value = if field == "action" {
                v["properties"]["action"]["const"].clone()
            } else {
                json!("x")
            };
            args.insert(field.to_owned(), value);
        }
        let parsed = serde_json::from_value::<ToolCall>(Value::Object(args.clone()));
        assert!(parsed.is_ok(), "{args:?} does not parse: {parsed:?}");
    }
}
