//! Human or JSON output: every command prints either text for people or exactly one
//! JSON value for scripts.
//!
//! Human output is made terminal-safe by [`terminal_safe`]: text that came from a
//! document, the region log or a peer (titles, section text, comments, approval
//! comments, names, errors) may hold escape sequences that would otherwise recolour,
//! rewrite or hide what the terminal shows. [`Output::emit`] and [`Output::error`]
//! pass everything through it; a field that must stay on one line (a list row) is
//! passed through it with [`Lines::Escape`] where the line is built.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

/// Where a command's result goes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Output {
    pub(crate) json: bool,
}

impl Output {
    /// Prints `value` as JSON in `--json` mode, else the text `human` builds.
    pub(crate) fn emit<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, value)?;
            writeln!(out)?;
        } else {
            let text = human();
            let text = terminal_safe(&text, Lines::Keep);
            write!(out, "{text}")?;
            if !text.ends_with('\n') && !text.is_empty() {
                writeln!(out)?;
            }
        }
        out.flush()?;
        Ok(())
    }

    /// Prints a line for people while a long-running command runs (human mode only:
    /// in `--json` mode stdout carries just the one final value).
    /// In `--json` mode, prints `value` as one compact line at once (a long-running
    /// command's progress, e.g. `up` saying where it serves); nothing otherwise.
    pub(crate) fn json_line<T: Serialize>(&self, value: &T) {
        if self.json {
            let mut out = std::io::stdout().lock();
            if serde_json::to_writer(&mut out, value).is_ok() {
                let _ = writeln!(out);
                let _ = out.flush();
            }
        }
    }

    pub(crate) fn note(&self, text: &str) {
        if !self.json {
            let text = terminal_safe(text, Lines::Keep);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    /// Prints an error: a JSON object on stdout in `--json` mode, else one line on stderr.
    /// Write failures are ignored: there is nowhere left to report them.
    pub(crate) fn error(&self, kind: &str, message: &str) {
        if self.json {
            let v = serde_json::json!({ "error": { "kind": kind, "message": message } });
            let _ = writeln!(std::io::stdout().lock(), "{v}");
        } else {
            let message = terminal_safe(message, Lines::Escape);
            let _ = writeln!(std::io::stderr().lock(), "error: {message}");
        }
    }
}

/// Whether a text may keep its line breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lines {
    /// Multi-line text meant to be printed as such (section text, a whole listing):
    /// line feeds and tabs stay.
    Keep,
    /// One field of a line (a title in a list, an approval comment): a line feed
    /// becomes `\n`, so it cannot start a forged line.
    Escape,
}

/// Makes text safe to print on a terminal: every control character (C0 including
/// ESC and CR, DEL, C1 including the 8-bit CSI), the bidirectional overrides and
/// isolates (U+202A–U+202E, U+2066–U+2069) and the line and paragraph separators
/// (U+2028, U+2029) are written as visible escapes (`\u{1b}`, `\r`, …). Line feeds
/// and tabs stay with [`Lines::Keep`]. Text without such characters is returned as
/// it is.
pub(crate) fn terminal_safe(text: &str, lines: Lines) -> Cow<'_, str> {
    let unsafe_char = |c: char| match c {
        '\n' | '\t' => lines == Lines::Escape,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' => true,
        c => c.is_control(),
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !unsafe_char(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// [`terminal_safe`] with [`Lines::Escape`]: one field of a line.
pub(crate) fn one_line(text: &str) -> Cow<'_, str> {
    terminal_safe(text, Lines::Escape)
}

/// Whether `e` is a write to a closed pipe (`regiosync doc show X | head`), which is
/// not an error of the command.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                .is_some_and(|k| k == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_bidi_overrides_are_made_visible() {
        let hostile =
            "Plan\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\r\u{7f}\u{202e}cod.exe\u{2066}x\u{2069}";
        let safe = terminal_safe(hostile, Lines::Keep);
        assert_eq!(
            safe,
            "Plan\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{9b}31m\\r\\u{7f}\\u{202e}cod.exe\\u{2066}x\\u{2069}"
        );
        assert!(!safe.chars().any(|c| c.is_control()));
    }

    #[test]
    fn line_breaks_stay_only_where_multi_line_text_is_meant() {
        let text = "Inleiding\nTweede\tregel";
        assert!(matches!(terminal_safe(text, Lines::Keep), Cow::Borrowed(_)));
        assert_eq!(one_line(text), "Inleiding\\nTweede\\tregel");
        assert_eq!(
            one_line("Gewone tekst: één, twee"),
            "Gewone tekst: één, twee"
        );
        assert_eq!(one_line("a\u{2028}b"), "a\\u{2028}b");
    }
}
