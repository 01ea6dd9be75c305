//! Colours per child (off without a terminal or with `NO_COLOR`) and making
//! child text safe to show on a terminal.

/// Foreground colours cycled through the children.
const PALETTE: [u8; 6] = [36, 33, 35, 32, 34, 31];

/// How text is decorated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Use ANSI colours.
    pub colour: bool,
    /// Replace control characters (the output is a terminal).
    pub sanitize: bool,
}

impl Style {
    /// For output to a terminal (`tty`), honouring `NO_COLOR`.
    pub fn detect(tty: bool) -> Self {
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            colour: tty && !no_colour,
            sanitize: tty,
        }
    }

    /// `[label]` in child `index`'s colour.
    pub fn tag(&self, index: usize, label: &str) -> String {
        if self.colour {
            let c = PALETTE[index % PALETTE.len()];
            format!("\x1b[{c}m[{label}]\x1b[0m")
        } else {
            format!("[{label}]")
        }
    }

    /// `text` dimmed (tool lines, notes).
    pub fn dim(&self, text: &str) -> String {
        if self.colour {
            format!("\x1b[2m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// `text` in red (failures).
    pub fn bad(&self, text: &str) -> String {
        if self.colour {
            format!("\x1b[31m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Child text as shown: on a terminal, control characters (escape
    /// sequences a child could use to rewrite the screen) become `�`.
    pub fn clean<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        if self.sanitize && text.chars().any(|c| c.is_control() && c != '\t') {
            text.chars()
                .map(|c| {
                    if c.is_control() && c != '\t' {
                        '\u{fffd}'
                    } else {
                        c
                    }
                })
                .collect::<String>()
                .into()
        } else {
            text.into()
        }
    }
}

/// The first line of `text`, at most `max` characters (with `…` when cut).
pub fn first_line(text: &str, max: usize) -> String {
    let line = text.trim().lines().next().unwrap_or("");
    if line.chars().count() > max {
        let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_style_has_no_escapes_and_keeps_text() {
        let s = Style {
            colour: false,
            sanitize: false,
        };
        assert_eq!(s.tag(3, "c1"), "[c1]");
        assert_eq!(s.clean("a\x1b[2Jb"), "a\x1b[2Jb");
    }

    #[test]
    fn terminal_style_colours_tags_and_defuses_escapes() {
        let s = Style {
            colour: true,
            sanitize: true,
        };
        assert!(s.tag(0, "c1").starts_with("\x1b[36m[c1]"));
        assert_eq!(s.clean("a\x1b[2Jb\tc"), "a\u{fffd}[2Jb\tc");
    }

    #[test]
    fn first_line_is_cut_with_an_ellipsis() {
        assert_eq!(first_line("  one\ntwo", 10), "one");
        assert_eq!(first_line("abcdefghij", 5), "abcd…");
    }
}
