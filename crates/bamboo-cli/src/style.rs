//! Colours per child (off without a terminal or with `NO_COLOR`) and making
//! child text safe to show on a terminal.

/// Foreground colours (of the 256-colour palette) cycled through the
/// children: twenty hues that stay apart on dark and light backgrounds, so
/// twenty children running side by side each have their own.
const PALETTE: [u8; 20] = [
    39, 214, 170, 112, 203, 44, 220, 135, 75, 208, 161, 114, 33, 178, 99, 49, 209, 141, 190, 168,
];

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
            format!("\x1b[38;5;{c}m[{label}]\x1b[0m")
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
        if self.sanitize {
            defuse(text)
        } else {
            text.into()
        }
    }
}

/// `text` with control characters (escape sequences a child could use to
/// drive a terminal or pager) shown as `�`; tabs stay.
pub fn defuse(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
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

/// `line` cut to `width` columns on screen (with `…` when cut): escape
/// sequences take no column and are kept, and a cut line ends with a reset so
/// no colour leaks. One column per character (the status area's text).
pub fn fit(line: &str, width: usize) -> String {
    let mut out = String::with_capacity(line.len().min(width * 4));
    let mut columns = 0;
    let mut chars = line.chars().peekable();
    let mut escaped = false;
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // A CSI sequence: ESC [ parameters final-letter.
            out.push(c);
            escaped = true;
            if chars.peek() == Some(&'[') {
                for c in chars.by_ref() {
                    out.push(c);
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        // The last column takes `…` when more visible text would follow.
        if columns + 1 >= width && line_has_more(&chars) {
            out.push('…');
            if escaped {
                out.push_str("\x1b[0m");
            }
            return out;
        }
        out.push(c);
        columns += 1;
    }
    out
}

/// Whether visible text follows (not only escape sequences).
fn line_has_more(rest: &std::iter::Peekable<std::str::Chars<'_>>) -> bool {
    let mut rest = rest.clone();
    while let Some(c) = rest.next() {
        if c == '\x1b' {
            if rest.peek() == Some(&'[') {
                for c in rest.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        return true;
    }
    false
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
        assert!(s.tag(0, "c1").starts_with("\x1b[38;5;39m[c1]"));
        let hues: std::collections::HashSet<String> = (0..20).map(|i| s.tag(i, "x")).collect();
        assert_eq!(hues.len(), 20, "twenty children, twenty colours");
        assert_eq!(s.clean("a\x1b[2Jb\tc"), "a\u{fffd}[2Jb\tc");
    }

    #[test]
    fn first_line_is_cut_with_an_ellipsis() {
        assert_eq!(first_line("  one\ntwo", 10), "one");
        assert_eq!(first_line("abcdefghij", 5), "abcd…");
    }

    #[test]
    fn a_line_fits_its_width_on_screen_with_escapes_kept_and_reset() {
        assert_eq!(fit("abcdef", 10), "abcdef");
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdefg", 6), "abcde…");
        // Escapes take no column.
        assert_eq!(fit("\x1b[2mabc\x1b[0m", 3), "\x1b[2mabc\x1b[0m");
        let cut = fit("\x1b[2mabcdef\x1b[0m", 4);
        assert_eq!(cut, "\x1b[2mabc…\x1b[0m");
        assert_eq!(fit("── 12 queued · 8 running", 8).chars().count(), 8);
    }
}
