//! One module per command group; each takes parsed arguments and an [`Output`].

pub(crate) mod demo;
pub(crate) mod doc;
pub(crate) mod dossier;
pub(crate) mod init;
pub(crate) mod region;
pub(crate) mod up;
pub(crate) mod user;

use std::path::{Path, PathBuf};

use anyhow::Context;
use regiosync_core::identity::SecretString;
use regiosync_node::input_file::{InputKind, read_input_file};

use crate::cli::GlobalArgs;

/// The data dir: `--data-dir`, else `$REGIOSYNC_HOME` (both through clap), else the
/// platform data dir (e.g. `~/.local/share/regiosync`).
pub(crate) fn data_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &global.data_dir {
        return Ok(d.clone());
    }
    directories::ProjectDirs::from("nl", "regiosync", "regiosync")
        .map(|p| p.data_dir().to_owned())
        .context("cannot determine a data dir for this user: pass --data-dir DIR")
}

/// Reads the passphrase from the first line of `path` (a regular file of at most
/// 4 KiB).
pub(crate) fn read_passphrase(path: &Path) -> anyhow::Result<SecretString> {
    let bytes = zeroize::Zeroizing::new(read_input_file(path, InputKind::Passphrase)?);
    let text = std::str::from_utf8(&bytes).with_context(|| {
        format!(
            "the passphrase file {} is not UTF-8 text: save it as UTF-8",
            path.display()
        )
    })?;
    let line = text.lines().next().unwrap_or("");
    anyhow::ensure!(
        !line.is_empty(),
        "the passphrase file {} is empty: put the passphrase on its first line",
        path.display()
    );
    Ok(SecretString::from(line.to_owned()))
}

/// Opens the node in the data dir and unlocks its key with `--passphrase-file` if
/// one is given (keys without a passphrase unlock themselves when needed).
pub(crate) fn open_node(global: &GlobalArgs) -> anyhow::Result<regiosync_node::Node> {
    let mut node = regiosync_node::Node::open(&data_dir(global)?)?;
    if let Some(p) = &global.passphrase_file {
        let pass = read_passphrase(p)?;
        node.unlock(Some(&pass))?;
    }
    // Edits still work here, but nobody will take them: say so every time.
    if let Ok(Some(r)) = node.removal() {
        eprintln!(
            "warning: this device was removed from the region on {} by {}: changes made here will be refused by the region",
            r.day(),
            crate::output::one_line(&r.by)
        );
    }
    Ok(node)
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a Unix time.
pub(crate) fn human_time(secs: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .map(|s| format!("{s} UTC"))
        .unwrap_or_else(|| secs.to_string())
}

/// Writes a file via a temporary file and a rename, so a reader never sees half an
/// export, a failed write leaves the old file, and a symlink at `path` is replaced,
/// never followed into the file it points to.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
