//! The listening socket: claiming its path, accepting connections, and the drain when
//! the daemon stops.

use std::future::Future;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::access::Access;
use crate::connection::Handler;
use crate::engine::EngineHandle;
use crate::router::Command;

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

/// The fd name (`FileDescriptorName=`) of the HTTP API's socket unit.
pub const HTTP_FD_NAME: &str = "http";

/// The listeners systemd passed in: the main socket, and the HTTP API's if one is named
/// [`HTTP_FD_NAME`] in `LISTEN_FDNAMES`.
pub struct Inherited {
    pub main: Listener,
    pub http: Option<Listener>,
}

/// The listeners systemd passed in (`LISTEN_PID` is us and `LISTEN_FDS` ≥ 1), if any.
/// The main socket is the first fd not named for HTTP (the first fd without names). The
/// variables are cleared so children don't see them.
pub fn inherited() -> anyhow::Result<Option<Inherited>> {
    let fds: Vec<(i32, String)> = sd_notify::listen_fds_with_names()
        .context("reading LISTEN_FDS/LISTEN_FDNAMES")?
        .collect();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if fds.is_empty() {
        return Ok(None);
    }
    let is_http = |name: &str| name == HTTP_FD_NAME;
    let Some(&(main, _)) = fds.iter().find(|(_, name)| !is_http(name)) else {
        bail!("systemd passed in only the HTTP socket; the main socket unit is missing");
    };
    let http = fds
        .iter()
        .find(|(_, name)| is_http(name))
        .map(|&(fd, _)| fd);
    Ok(Some(Inherited {
        main: from_fd(main)?,
        http: http.map(from_fd).transpose()?,
    }))
}

fn from_fd(fd: i32) -> anyhow::Result<Listener> {
    use std::os::fd::FromRawFd;
    // SAFETY: under the socket-activation protocol the passed fds are ours, open, and
    // listeners; each is taken once.
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

/// What the front door needs besides its listener and the engine.
pub struct ServerConfig {
    pub access: Arc<Access>,
    pub max_frame: u32,
    /// How long running requests may take to finish once shutdown begins.
    pub drain_timeout: Duration,
}

/// How long connections get to flush their last frames once the engine has stopped.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Accepts connections until `shutdown` resolves, then drains: no new requests, running
/// ones finish (cancelled once `drain_timeout` passes), connections flush and close.
pub async fn run(
    listener: &Listener,
    engine: EngineHandle,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let commands = engine.sender();
    let (stopped_tx, stopped_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut next_client = 1;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let allowed = cfg.access.admits(&stream);
                    let handler = Handler::new(
                        stream,
                        next_client,
                        allowed,
                        commands.clone(),
                        cfg.max_frame,
                        stopped_rx.clone(),
                    );
                    next_client += 1;
                    connections.spawn(handler.run());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    tracing::info!("shutting down: no new requests; draining");
    eprintln!("batchd: shutting down");
    crate::notify::stopping();
    let _ = commands.send(Command::Close);
    let join = tokio::task::spawn_blocking(move || engine.join());
    tokio::pin!(join);
    if tokio::time::timeout(cfg.drain_timeout, &mut join)
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed: cancelling running requests");
        let _ = commands.send(Command::CancelAll);
        let _ = join.await;
    }
    let _ = stopped_tx.send(true);
    let flushed = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, flushed).await;
}
