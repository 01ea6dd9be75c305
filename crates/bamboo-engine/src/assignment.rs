//! The first user message of a child, rendered from its title,
//! responsibility, role and prompt. The one place that rendering lives, so
//! create and update can never disagree.
// Behaviours: C1, C4.

/// The assignment block a child reads as its user message. Blank labels are
/// left out. Without a responsibility (a bare typed create, e.g. the `run`
/// front door's, which names children by title only) the prompt stands
/// alone: the block frames a delegated task, and a name or role alone frames
/// nothing. Every SubAgent `create` has one (it is required there).
///
/// ```ignore
/// let text = render("Survey", "find prior art", "researcher", "list 3 papers");
/// assert!(text.starts_with("Title: Survey\n"));
/// ```
pub(crate) fn render(title: &str, responsibility: &str, role: &str, prompt: &str) -> String {
    let labels = [
        ("Title", title),
        ("Responsibility", responsibility),
        ("Subagent type", role),
    ];
    if responsibility.trim().is_empty() {
        return prompt.to_owned();
    }
    let mut out = String::new();
    for (label, value) in labels {
        let value = value.trim();
        if !value.is_empty() {
            out.push_str(&format!("{label}: {value}\n"));
        }
    }
    out.push_str("\nAssignment:\n");
    out.push_str(prompt);
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn c1_renders_a_labelled_block_with_the_prompt_last() {
        let text = render("Survey", "find prior art", "researcher", "list 3 papers");
        assert_eq!(
            text,
            "Title: Survey\nResponsibility: find prior art\nSubagent type: researcher\n\nAssignment:\nlist 3 papers"
        );
    }

    #[test]
    fn c1_without_a_responsibility_the_prompt_stands_alone() {
        assert_eq!(render("", " ", "", "say hi"), "say hi");
        assert_eq!(render("", "", "coder", "x"), "x");
        assert_eq!(render("named", "", "coder", "x"), "x");
        assert_eq!(
            render("", "tests", "coder", "x"),
            "Responsibility: tests\nSubagent type: coder\n\nAssignment:\nx"
        );
    }
}
