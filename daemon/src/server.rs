//! The listening socket: claiming its path, accepting connections, and stopping.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::access::Access;
use crate::connection;
use crate::engine::Command;

/// The listening socket. One batchd bound itself is removed on drop; one inherited from
/// systemd belongs to systemd and is left alone.
pub struct Listener {
    pub listener: UnixListener,
    /// The socket file to remove on drop (`None` when inherited).
    owned_path: Option<PathBuf>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.owned_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The listener systemd passed in (`LISTEN_PID` is us and `LISTEN_FDS` ≥ 1), if any: the
/// one named `batchd.socket` when several are passed (`LISTEN_FDNAMES`), else the first.
/// The variables are cleared so children don't see them.
pub fn inherited() -> anyhow::Result<Option<Listener>> {
    let fds: Vec<(i32, String)> = sd_notify::listen_fds_with_names()
        .context("reading LISTEN_FDS/LISTEN_FDNAMES")?
        .collect();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let Some(&(fd, _)) = fds
        .iter()
        .find(|(_, name)| name == "batchd.socket")
        .or(fds.first())
    else {
        return Ok(None);
    };
    use std::os::fd::FromRawFd;
    // SAFETY: under the socket-activation protocol the passed fds are ours, open, and
    // listeners; this one is taken once.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    std_listener
        .set_nonblocking(true)
        .context("inherited socket")?;
    let listener = UnixListener::from_std(std_listener)
        .with_context(|| format!("the inherited fd {fd} is not a Unix stream listener"))?;
    Ok(Some(Listener {
        listener,
        owned_path: None,
    }))
}

/// Binds `path` with `mode` (0600 by default). A stale socket file (nothing answering) is
/// replaced; a live daemon on it is an error.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<Listener> {
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(Listener {
        listener,
        owned_path: Some(path.to_path_buf()),
    })
}

fn unsafe_umask(mask: u32) -> u32 {
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Accepts connections until `stop` turns true, then waits for open connections to end.
pub async fn accept_loop(
    listener: &Listener,
    engine: std_mpsc::Sender<Command>,
    access: Arc<Access>,
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
                    connections.spawn(connection::serve(
                        stream,
                        conn,
                        engine.clone(),
                        access.clone(),
                        max_frame,
                    ));
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
