//! Human or JSON output: every command prints either text for people or exactly one
//! JSON value for scripts.

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
            write!(out, "{text}")?;
            if !text.ends_with('\n') && !text.is_empty() {
                writeln!(out)?;
            }
        }
        out.flush()?;
        Ok(())
    }

    /// Prints an error: a JSON object on stdout in `--json` mode, else one line on stderr.
    /// Write failures are ignored: there is nowhere left to report them.
    pub(crate) fn error(&self, kind: &str, message: &str) {
        if self.json {
            let v = serde_json::json!({ "error": { "kind": kind, "message": message } });
            let _ = writeln!(std::io::stdout().lock(), "{v}");
        } else {
            let _ = writeln!(std::io::stderr().lock(), "error: {message}");
        }
    }
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
