//! The listening socket: claiming its path, accepting connections, and stopping.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;

use anyhow::{bail, Context as _};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::connection;
use crate::engine::Command;

/// A bound socket that removes its file when dropped.
pub struct Listener {
    pub listener: UnixListener,
    path: PathBuf,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` with mode 0600. A stale socket file (nothing answering) is replaced; a
/// live daemon on it is an error.
pub fn bind(path: &Path) -> anyhow::Result<Listener> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating socket directory {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => bail!(
                "another batchd is already running on {} (stop it first, or choose another --socket)",
                path.display()
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "replacing stale socket file");
                std::fs::remove_file(path)
                    .with_context(|| format!("removing stale socket {}", path.display()))?;
            }
            Err(e) => bail!("{} exists and is not a usable socket: {e}", path.display()),
        }
    }
    // Create the socket with no permissions for others from the very start.
    let old = unsafe_umask(0o177);
    let bound = UnixListener::bind(path);
    unsafe_umask(old);
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(Listener {
        listener,
        path: path.to_path_buf(),
    })
}

fn unsafe_umask(mask: u32) -> u32 {
    extern "C" {
        fn umask(mask: u32) -> u32;
    }
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe { umask(mask) }
}

/// Accepts connections until `stop` turns true, then waits for open connections to end.
pub async fn accept_loop(
    listener: &Listener,
    engine: std_mpsc::Sender<Command>,
    max_frame: u32,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut next_conn = 1u64;
    loop {
        tokio::select! {
            accepted = listener.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = next_conn;
                    next_conn += 1;
                    connections.spawn(connection::serve(stream, conn, engine.clone(), max_frame));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(engine);
    // Connections end once the engine has finished or cancelled their requests and the
    // clients hang up; the caller bounds this wait.
    while connections.join_next().await.is_some() {}
}
