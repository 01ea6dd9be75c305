//! The tools the server offers (`SubAgent`, `wait`, `approvals`): their
//! descriptions with input schemas derived from the argument types, and how
//! a result becomes an MCP tool result.

use rmcp::model::{CallToolResult, ListToolsResult, Tool};
use rmcp::ErrorData;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// The SubAgent tool's name (the reference's).
pub const SUBAGENT: &str = bamboo_engine::tool::NAME;
/// The name of the tool that waits for children to end.
pub const WAIT: &str = "wait";
/// The name of the tool that lists and answers approval requests.
pub const APPROVALS: &str = "approvals";

/// Longest text rendering of a result; the structured content carries all.
const TEXT_LIMIT: usize = 8_000;

/// Every tool, as `tools/list` returns them.
pub fn list() -> Result<ListToolsResult, ErrorData> {
    let tools = vec![
        tool(
            SUBAGENT,
            "Create and manage child sessions (sub-agents), each running in its own worker process: create, list, get, update, run, send_message, cancel, delete. Children run asynchronously; use the wait tool to block until one ends, then get it for its result.",
            flat_object(bamboo_engine::tool::schema()),
        )?,
        tool(
            WAIT,
            "Block until one of the given child sessions (default: every running child of this session) is no longer running, or until timeout_secs pass. Returns each child's status and result. Reports progress (each child's phase and token count) while it waits.",
            schema_of::<super::wait::WaitArgs>(),
        )?,
        tool(
            APPROVALS,
            "List the open approval requests of this session's children (action=list), or answer one (action=answer, request_id, approved). Requests not answered in time are denied.",
            flat_object(schema_of::<super::approvals::ApprovalsArgs>()),
        )?,
    ];
    Ok(ListToolsResult::with_all_items(tools))
}

fn tool(name: &str, description: &str, input_schema: Value) -> Result<Tool, ErrorData> {
    serde_json::from_value(json!({
        "name": name,
        "description": description,
        "inputSchema": input_schema,
    }))
    .map_err(|e| {
        ErrorData::internal_error(format!("tool {name} has no valid description: {e}"), None)
    })
}

/// The inlined JSON schema of `T`.
pub fn schema_of<T: JsonSchema>() -> Value {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let schema = settings.into_generator().into_root_schema_for::<T>();
    serde_json::to_value(schema).unwrap_or(Value::Null)
}

/// A schema of one object: the variants of a tagged enum (`oneOf`, each an
/// object with a constant tag) merged into one object whose tag lists every
/// value. MCP wants an object at the top of every input schema, and some
/// model APIs refuse `oneOf` there; the accepted JSON stays the same.
pub fn flat_object(schema: Value) -> Value {
    let Some(variants) = schema.get("oneOf").and_then(Value::as_array) else {
        let mut schema = schema;
        if let Some(obj) = schema.as_object_mut() {
            obj.insert("type".into(), json!("object"));
        }
        return schema;
    };
    let mut properties = Map::new();
    let mut tag_name = None;
    let mut tag_values = Vec::new();
    let mut tag_lines = Vec::new();
    for variant in variants {
        let Some(props) = variant.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (name, prop) in props {
            if let Some(value) = prop.get("const") {
                tag_name.get_or_insert_with(|| name.clone());
                tag_values.push(value.clone());
                let what = variant
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                tag_lines.push(format!("{}: {what}", value.as_str().unwrap_or_default()));
            } else if !properties.contains_key(name) {
                properties.insert(name.clone(), prop.clone());
            }
        }
    }
    let tag = tag_name.unwrap_or_else(|| "action".into());
    properties.insert(
        tag.clone(),
        json!({"type": "string", "enum": tag_values, "description": tag_lines.join("; ")}),
    );
    json!({
        "type": "object",
        "properties": properties,
        "required": [tag],
    })
}

/// A tool result: `value` as structured content and a short text rendering;
/// `failed` marks it as an error the caller should read.
pub fn result(value: Value, failed: bool) -> CallToolResult {
    let mut text = serde_json::to_string(&value).unwrap_or_default();
    if text.len() > TEXT_LIMIT {
        let mut cut = TEXT_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("… (cut; the structured content has all of it)");
    }
    let mut out = if failed {
        CallToolResult::error(vec![rmcp::model::ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![rmcp::model::ContentBlock::text(text)])
    };
    out.structured_content = Some(value);
    out
}

/// A failed call, said in one line of text and as `{"success": false, "result": why}`.
pub fn failure(why: impl Into<String>) -> CallToolResult {
    result(json!({"success": false, "result": why.into()}), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subagent_schema_is_one_object_listing_every_action() {
        let schema = flat_object(bamboo_engine::tool::schema());
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], json!(["action"]));
        let actions = schema["properties"]["action"]["enum"].clone();
        for a in [
            "create",
            "list",
            "get",
            "update",
            "run",
            "send_message",
            "cancel",
            "delete",
        ] {
            assert!(
                actions.as_array().is_some_and(|v| v.contains(&json!(a))),
                "{a} in {actions}"
            );
        }
        for p in [
            "child_session_id",
            "prompt",
            "auto_run",
            "interrupt_running",
        ] {
            assert!(schema["properties"].get(p).is_some(), "{p}");
        }
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let out = result(json!({"text": "é".repeat(TEXT_LIMIT)}), false);
        assert!(out.structured_content.is_some());
        assert_eq!(out.is_error, Some(false));
    }
}
