//! The `task_list` tool (F14): the model reads its task list in the prompt
//! and changes it through this tool, either whole (`items`) or one task at a
//! time (`id` with a `status` and/or `description`; an unknown id adds it).

use bamboo_domain::{TaskItem, TaskItemStatus, TaskList};
use serde_json::{json, Value};

/// The tool's name.
pub const NAME: &str = "task_list";

/// The OpenAI `tools` entry.
pub fn definition() -> Value {
    let statuses: Vec<&str> = TaskItemStatus::ALL.iter().map(|s| s.as_str()).collect();
    let item = json!({"type":"object","properties":{
        "id":{"type":"string"},
        "description":{"type":"string"},
        "status":{"type":"string","enum":statuses}},
        "required":["id","description","status"],"additionalProperties":false});
    json!({"type":"function","function":{"name":NAME,
        "description":"Update your task list: send \"items\" to replace the whole list, or an \"id\" with a new \"status\" and/or \"description\" to change (or add) one task. Returns the list.",
        "parameters":{"type":"object","properties":{
            "items":{"type":"array","items":item},
            "id":{"type":"string"},
            "description":{"type":"string"},
            "status":{"type":"string","enum":statuses}},
        "additionalProperties":false}}})
}

/// The system text that shows the list to the model.
pub fn prompt(list: &TaskList) -> String {
    format!(
        "Your task list (keep it current with the task_list tool):\n{}",
        list.render()
    )
}

/// Applies one call to `list`; the list's new text, or why the call is wrong.
pub fn apply(list: &mut TaskList, args: &Value) -> Result<String, String> {
    if let Some(items) = args.get("items") {
        let items: Vec<TaskItem> = serde_json::from_value(items.clone()).map_err(|e| {
            format!("task_list \"items\" must be objects with id, description and status ({e})")
        })?;
        list.items = items;
        return Ok(list.render());
    }
    let Some(id) = args.get("id").and_then(Value::as_str) else {
        return Err("task_list needs \"items\" (the whole list) or an \"id\" to change".into());
    };
    let status = match args.get("status").and_then(Value::as_str) {
        None => None,
        Some(s) => Some(TaskItemStatus::parse(s).ok_or_else(|| {
            format!("unknown task status {s:?}: use pending, in_progress, completed or blocked")
        })?),
    };
    let description = args.get("description").and_then(Value::as_str);
    match list.items.iter_mut().find(|t| t.id == id) {
        Some(t) => {
            if status.is_none() && description.is_none() {
                return Err(format!(
                    "task {id:?}: give a new \"status\" or \"description\""
                ));
            }
            if let Some(s) = status {
                t.status = s;
            }
            if let Some(d) = description {
                t.description = d.to_owned();
            }
        }
        None => {
            let Some(d) = description else {
                return Err(format!("no task {id:?}: give a \"description\" to add it"));
            };
            list.items.push(TaskItem {
                id: id.to_owned(),
                description: d.to_owned(),
                status: status.unwrap_or(TaskItemStatus::Pending),
            });
        }
    }
    Ok(list.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f14_one_task_changes_an_unknown_one_is_added_bad_status_is_named() {
        let mut list = TaskList::default();
        apply(
            &mut list,
            &json!({"items":[{"id":"1","description":"read","status":"pending"}]}),
        )
        .unwrap();
        let text = apply(&mut list, &json!({"id":"1","status":"completed"})).unwrap();
        assert_eq!(text, "- [completed] 1: read");
        apply(&mut list, &json!({"id":"2","description":"write"})).unwrap();
        assert_eq!(list.items[1].status, TaskItemStatus::Pending);
        let err = apply(&mut list, &json!({"id":"2","status":"done-ish"})).unwrap_err();
        assert!(err.contains("in_progress"), "{err}");
        assert!(apply(&mut list, &json!({})).is_err());
    }
}
