//! `--print-config`: the snippet that adds this server to a client, running
//! this program with the same `mcp` flags the command was given (minus
//! `--print-config` itself).

use anyhow::Context;
use serde_json::json;

use super::args::ClientKind;

/// The name the server is registered under in every snippet.
const NAME: &str = "bamboo";

/// The snippet for `client`, from this process's own path and argv.
pub fn snippet(client: ClientKind) -> anyhow::Result<String> {
    let program = std::env::current_exe()
        .context("cannot find this program's own path to print it")?
        .to_string_lossy()
        .into_owned();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    Ok(render(client, &program, &server_args(&argv)))
}

/// `mcp` and the flags after it, without `--print-config`.
fn server_args(argv: &[String]) -> Vec<String> {
    let after = argv
        .iter()
        .position(|a| a == "mcp")
        .map_or(&argv[..0], |i| &argv[i + 1..]);
    let mut out = vec!["mcp".to_owned()];
    let mut skip_value = false;
    for a in after {
        if skip_value {
            skip_value = false;
            continue;
        }
        if a == "--print-config" {
            skip_value = true;
            continue;
        }
        if a.starts_with("--print-config=") {
            continue;
        }
        out.push(a.clone());
    }
    out
}

fn render(client: ClientKind, program: &str, args: &[String]) -> String {
    match client {
        ClientKind::Claude => {
            let mut line = format!("claude mcp add {NAME} -- {}", shell_word(program));
            for a in args {
                line.push(' ');
                line.push_str(&shell_word(a));
            }
            line.push('\n');
            line
        }
        ClientKind::Codex => {
            // A JSON string is a valid TOML basic string.
            let quoted: Vec<String> = args.iter().map(|a| json!(a).to_string()).collect();
            format!(
                "[mcp_servers.{NAME}]\ncommand = {}\nargs = [{}]\n",
                json!(program),
                quoted.join(", ")
            )
        }
        ClientKind::Json => {
            let doc = json!({"mcpServers": {NAME: {"command": program, "args": args}}});
            format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
    }
}

/// `word` as one POSIX shell word.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_flags_given_are_kept_and_print_config_dropped() {
        let args = server_args(&argv(&[
            "mcp",
            "--print-config",
            "claude",
            "--executor",
            "cli",
            "--print-config=json",
            "--",
            "claude",
            "-p",
            "{assignment}",
        ]));
        assert_eq!(
            args,
            argv(&[
                "mcp",
                "--executor",
                "cli",
                "--",
                "claude",
                "-p",
                "{assignment}"
            ])
        );
    }

    #[test]
    fn each_client_gets_its_own_form() {
        let args = argv(&["mcp", "--data-dir", "/my dir"]);
        assert_eq!(
            render(ClientKind::Claude, "/bin/bamboo-worker", &args),
            "claude mcp add bamboo -- /bin/bamboo-worker mcp --data-dir '/my dir'\n"
        );
        assert_eq!(
            render(ClientKind::Codex, "/bin/bamboo-worker", &args),
            "[mcp_servers.bamboo]\ncommand = \"/bin/bamboo-worker\"\nargs = [\"mcp\", \"--data-dir\", \"/my dir\"]\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(ClientKind::Json, "/bin/bamboo-worker", &args))
                .unwrap_or_default();
        assert_eq!(json["mcpServers"]["bamboo"]["args"][2], "/my dir");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
