//! The node's data dir: its public description (`node.json`), its secret keys
//! (`node.key`) and its store (`store.sqlite`, with `-wal` and `-shm`), and the running
//! node's `status.json`. Formats in docs/PROTOCOL.md.
//!
//! On Unix the dir is mode 0700 and every file of the node in it 0600, whatever was
//! there before `init` (an existing 0755 folder included); opening a node puts
//! looser modes back, with a warning ([`secure_permissions`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use regiosync_core::id::{NodeId, PartyName, Role};
use regiosync_core::identity::{NodeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::NodeError;
use crate::input_file::{InputFileError, InputKind, read_input_file};

/// The public description of the node.
pub const NODE_FILE: &str = "node.json";
/// The node's secret keys.
pub const KEY_FILE: &str = "node.key";
/// The node's SQLite store.
pub const STORE_FILE: &str = "store.sqlite";
/// The `format` of `node.json` this build writes.
pub const NODE_FILE_FORMAT: u32 = 1;

/// How the secret key file is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyProtection {
    /// Only by file permissions (0600).
    None,
    /// Encrypted with a passphrase (age scrypt).
    Passphrase,
}

/// What `node.json` says: who this node is. Contains no secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    /// Version of this file's format.
    pub format: u32,
    /// The node id (Ed25519 public key, shown as a libp2p peer id).
    pub node_id: NodeId,
    /// The age recipient that dossier keys are wrapped to.
    pub age_recipient: String,
    /// The party this device belongs to.
    pub party: PartyName,
    /// That party's role.
    pub role: Role,
    /// When the node was created (RFC 3339, UTC).
    pub created: String,
    /// How `node.key` is protected.
    pub key_protection: KeyProtection,
}

/// Creates a new node in `dir`: keys, store, then `node.json`, which marks the node as
/// complete. Refuses if any of the three files exists. If a step fails, the files made
/// so far are removed again.
pub fn init(
    dir: &Path,
    party: PartyName,
    role: Role,
    passphrase: Option<&SecretString>,
) -> Result<NodeInfo, NodeError> {
    for file in [NODE_FILE, KEY_FILE, STORE_FILE] {
        if dir.join(file).exists() {
            return Err(NodeError::AlreadyInitialised {
                dir: dir.to_owned(),
                file,
            });
        }
    }
    create_private_dir(dir)?;
    // An existing folder keeps its mode on creation: make it private now, and any
    // leftover `-wal`, `-shm` or status file with it.
    secure_permissions(dir, false);
    let secret = NodeSecret::generate()?;
    let info = NodeInfo {
        format: NODE_FILE_FORMAT,
        node_id: secret.node_id(),
        age_recipient: secret.age_recipient().to_string(),
        party,
        role,
        created: now_rfc3339(),
        key_protection: if passphrase.is_some() {
            KeyProtection::Passphrase
        } else {
            KeyProtection::None
        },
    };
    let mut made: Vec<PathBuf> = Vec::new();
    let result = (|| {
        let key_bytes = secret.to_file_bytes(passphrase)?;
        let key_path = dir.join(KEY_FILE);
        write_new_private(&key_path, &key_bytes)?;
        made.push(key_path);

        let store_path = dir.join(STORE_FILE);
        let store = regiosync_store::Store::create(&store_path);
        made.push(store_path);
        drop(store?);

        let json = serde_json::to_vec_pretty(&info).map_err(|e| NodeError::BadNodeFile {
            path: dir.join(NODE_FILE),
            detail: e.to_string(),
        })?;
        write_atomic(&dir.join(NODE_FILE), &json)?;
        // SQLite made `-wal` and `-shm` with the store's mode; a leftover one keeps its
        // own.
        secure_permissions(dir, false);
        Ok(())
    })();
    if let Err(e) = result {
        for p in made {
            for suffix in ["", "-wal", "-shm"] {
                let mut name = p.clone().into_os_string();
                name.push(suffix);
                let _ = fs::remove_file(PathBuf::from(name));
            }
        }
        return Err(e);
    }
    Ok(info)
}

/// Reads and checks `node.json`.
pub fn read_info(dir: &Path) -> Result<NodeInfo, NodeError> {
    let path = dir.join(NODE_FILE);
    let bytes = match read_input_file(&path, InputKind::DataDirFile) {
        Ok(b) => b,
        Err(NodeError::InputFile(InputFileError::Unreadable { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Err(NodeError::NoNode {
                dir: dir.to_owned(),
            });
        }
        Err(e) => return Err(e),
    };
    #[derive(Deserialize)]
    struct Version {
        format: u32,
    }
    let version: Version = serde_json::from_slice(&bytes).map_err(|e| NodeError::BadNodeFile {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    if version.format == 0 {
        return Err(NodeError::BadNodeFile {
            path,
            detail: "format 0 does not exist".into(),
        });
    }
    if version.format > NODE_FILE_FORMAT {
        return Err(NodeError::NewerNodeFile {
            path,
            version: version.format,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| NodeError::BadNodeFile {
        path,
        detail: e.to_string(),
    })
}

/// Reads the secret keys and checks that they belong to the node in `info`.
pub fn read_secret(
    dir: &Path,
    info: &NodeInfo,
    passphrase: Option<&SecretString>,
) -> Result<NodeSecret, NodeError> {
    let path = dir.join(KEY_FILE);
    let bytes = zeroize::Zeroizing::new(read_input_file(&path, InputKind::DataDirFile)?);
    let secret = NodeSecret::from_file_bytes(&bytes, passphrase)?;
    if secret.node_id() != info.node_id {
        return Err(NodeError::KeyMismatch {
            path,
            node: info.node_id.to_string(),
        });
    }
    Ok(secret)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn create_private_dir(dir: &Path) -> Result<(), NodeError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(NodeError::io(dir))
}

/// The files of a node in its data dir that must be readable by the owner only.
const PRIVATE_FILES: [&str; 6] = [
    KEY_FILE,
    STORE_FILE,
    "store.sqlite-wal",
    "store.sqlite-shm",
    NODE_FILE,
    crate::service::STATUS_FILE,
];

/// Takes every group and other permission off the data dir and the node's files in
/// it (`node.key`, `node.json`, `store.sqlite` with `-wal` and `-shm`, `status.json`;
/// those that exist), so the dir is 0700 and the files 0600 as `init` makes them
/// (the owner's bits are kept: a read-only store stays read-only; Unix only).
/// With `warn`, each change is logged as a warning: a store or key file that others
/// could read is worth knowing about. A mode that cannot be changed (the file belongs
/// to another user) is logged and left; the command goes on.
pub fn secure_permissions(dir: &Path, warn: bool) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // `follow`: the data dir may be a link to where the data lives; a file in it
        // that is a symlink is left alone (its target's mode is not ours to set).
        let fix = |path: &Path, follow: bool| {
            let meta = if follow {
                fs::metadata(path)
            } else {
                fs::symlink_metadata(path)
            };
            let Ok(meta) = meta else {
                return;
            };
            let old = meta.permissions().mode() & 0o777;
            if meta.file_type().is_symlink() || old & 0o077 == 0 {
                return;
            }
            let mode = old & 0o700;
            match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
                Ok(()) if warn => tracing::warn!(
                    file = %path.display(),
                    "{} was readable by other users (mode {old:o}); set it to {mode:o}",
                    path.display()
                ),
                Ok(()) => {}
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    error = %e,
                    "{} is readable by other users (mode {old:o}) and its mode cannot be changed: run chmod {mode:o} {} as its owner",
                    path.display(),
                    path.display()
                ),
            }
        };
        fix(dir, true);
        for file in PRIVATE_FILES {
            fix(&dir.join(file), false);
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, warn);
}

/// Creates a file that must not exist yet, readable by the owner only, and fsyncs it.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).map_err(NodeError::io(path))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(NodeError::io(path))
}

/// Writes a file through a temporary file and a rename, so readers see the old or the
/// new content, never half of it.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_new_private(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(NodeError::io(path))?;
    if let Some(parent) = path.parent() {
        // Make the rename durable.
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Replaces a file of the data dir (the running node's status) through a temporary
/// file, mode 0600, and a rename; without fsync (it is rewritten every few seconds).
pub(crate) fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(&tmp)?.write_all(bytes)?;
    fs::rename(&tmp, path)
}
