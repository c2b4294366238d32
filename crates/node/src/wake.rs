//! The local wake-up channel: a `regiosync` process that commits to a data dir
//! while `regiosync up` runs on it (a CLI command) tells the running node at once,
//! so that the edit is pushed to the connected members at commit instead of at the
//! next poll of the store.
//!
//! The channel is a Unix datagram socket, [`WAKE_SOCKET`] in the data dir, bound by
//! the running node (mode 0600, inside the data dir, which is 0700). A wake-up is
//! one empty datagram; it carries nothing, so there is nothing in it to parse or to
//! trust: whoever may send one (a process of the data dir's owner) could run `up`
//! itself. The sender never waits: the socket is non-blocking, and a datagram that
//! finds the queue full or nobody listening is dropped (a wake-up is pending then,
//! or no node runs). The running node drains every pending datagram at once, so a
//! burst of edits is one push; its poll of the store stays, for writers that do not
//! wake it (an older CLI, a crash between commit and wake-up).
//!
//! Not on Windows: there the running node finds CLI edits by its poll alone.

use std::path::{Path, PathBuf};

/// The socket's file name in the data dir.
pub(crate) const WAKE_SOCKET: &str = "wake.sock";

/// Tells the node running on `dir`, if any, that this process committed something.
/// Never fails and never blocks: with no node running, nothing happens.
pub(crate) fn wake(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::net::UnixDatagram;
        let path = dir.join(WAKE_SOCKET);
        if !path.exists() {
            return;
        }
        let sent = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(|s| s.send_to(&[], &path));
        if let Err(e) = sent {
            // No node listening (a socket left by a node that was killed), or its
            // queue is full (a wake-up is pending): either way nothing to do.
            tracing::debug!(error = %e, "no running node took the wake-up");
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// The running node's end of the channel: bound at start, removed when dropped.
pub(crate) struct WakeListener {
    path: PathBuf,
    #[cfg(unix)]
    socket: tokio::net::UnixDatagram,
}

impl WakeListener {
    /// Binds the socket in `dir`. The caller holds the data dir's run lock, so a
    /// socket file there is one left by a node that did not stop cleanly: it is
    /// replaced. `None` (with a warning) if the socket cannot be made: the node
    /// then finds CLI edits by polling, as before.
    pub(crate) fn bind(dir: &Path) -> Option<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(WAKE_SOCKET);
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                use std::os::unix::fs::FileTypeExt;
                // Only a socket is ours to replace; anything else stays, untouched.
                if !meta.file_type().is_socket() {
                    tracing::warn!(path = %path.display(), "a file that is not a socket is in the way of the wake-up socket; CLI edits are pushed at the next poll");
                    return None;
                }
                let _ = std::fs::remove_file(&path);
            }
            let bound = tokio::net::UnixDatagram::bind(&path).and_then(|socket| {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                Ok(socket)
            });
            match bound {
                Ok(socket) => Some(Self { path, socket }),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open the wake-up socket; CLI edits are pushed at the next poll");
                    let _ = std::fs::remove_file(&path);
                    None
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            None
        }
    }

    /// Waits for a wake-up, then takes every other one pending with it.
    pub(crate) async fn woken(&self) {
        #[cfg(unix)]
        {
            let mut buf = [0u8; 1];
            // An error here (none is expected of a bound datagram socket) counts as
            // a wake-up: one push too many costs a round trip, one too few an edit.
            let _ = self.socket.recv(&mut buf).await;
            while self.socket.try_recv(&mut buf).is_ok() {}
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    }
}

impl Drop for WakeListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_up_reaches_the_listener_and_a_burst_is_one() {
        let dir = tempfile::tempdir().unwrap();
        // Nobody listening: nothing happens, nothing fails.
        wake(dir.path());
        let listener = WakeListener::bind(dir.path()).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(WAKE_SOCKET))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for _ in 0..5 {
            wake(dir.path());
        }
        tokio::time::timeout(std::time::Duration::from_secs(5), listener.woken())
            .await
            .expect("woken");
        // The burst was taken at once: no second wake-up is pending.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.woken())
                .await
                .is_err()
        );
        drop(listener);
        assert!(!dir.path().join(WAKE_SOCKET).exists());
        // A stale socket (a node killed) is replaced; a regular file is left alone.
        let stale = WakeListener::bind(dir.path()).unwrap();
        std::mem::forget(stale);
        assert!(WakeListener::bind(dir.path()).is_some());
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(WAKE_SOCKET), b"not a socket").unwrap();
        assert!(WakeListener::bind(other.path()).is_none());
        assert_eq!(
            std::fs::read(other.path().join(WAKE_SOCKET)).unwrap(),
            b"not a socket"
        );
    }
}
