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

/// First inherited fd under the systemd socket-activation protocol.
const SD_LISTEN_FDS_START: i32 = 3;

/// The fd name (`FileDescriptorName=`) of the HTTP API's socket unit.
pub const HTTP_FD_NAME: &str = "http";

/// The listeners systemd passed in: the main socket, and the HTTP API's if one is named
/// [`HTTP_FD_NAME`] in `LISTEN_FDNAMES`.
pub struct Inherited {
    pub main: Listener,
    pub http: Option<Listener>,
}

/// The listeners systemd passed in (`LISTEN_PID` is us and `LISTEN_FDS` ≥ 1), if any.
/// The main socket is the first fd not named for HTTP (fd 3 without names). The
/// variables are cleared so children don't see them.
pub fn inherited() -> anyhow::Result<Option<Inherited>> {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    if !pid_matches || fds < 1 {
        return Ok(None);
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let is_http = |i: i32| names.get(i as usize).is_some_and(|n| n == HTTP_FD_NAME);
    let Some(main) = (0..fds).find(|&i| !is_http(i)) else {
        bail!("systemd passed in only the HTTP socket; the main socket unit is missing");
    };
    let http = (0..fds).find(|&i| is_http(i));
    Ok(Some(Inherited {
        main: from_fd(SD_LISTEN_FDS_START + main)?,
        http: http.map(|i| from_fd(SD_LISTEN_FDS_START + i)).transpose()?,
    }))
}

fn from_fd(fd: i32) -> anyhow::Result<Listener> {
    use std::os::fd::FromRawFd;
    // SAFETY: under the socket-activation protocol fds from 3 on are ours, open, and
    // listeners.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    std_listener
        .set_nonblocking(true)
        .context("inherited socket")?;
    let listener = UnixListener::from_std(std_listener)
        .with_context(|| format!("the inherited fd {fd} is not a Unix stream listener"))?;
    Ok(Listener {
        listener,
        owned_path: None,
    })
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
