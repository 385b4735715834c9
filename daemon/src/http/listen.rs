//! Where the HTTP API listens, and serving it there until the daemon exits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use axum::middleware;
use batchd_protocol::ModelInfo;
use tokio::sync::watch;

use super::auth::{self, Peer};
use super::handlers::{self, AppState, Ready};
use crate::access::Access;
use crate::router::Command;
use crate::server::{self, Listener};

/// The HTTP API's listeners, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// The Unix socket (`None` when turned off with `none`).
    pub socket: Option<PathBuf>,
    /// The optional TCP address.
    pub tcp: Option<SocketAddr>,
    /// The key TCP clients must present.
    pub api_key: Option<ApiKey>,
}

/// A bearer key, kept out of debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

impl HttpConfig {
    /// The socket defaults to one beside the main socket ([`default_socket`]). TCP has no peer
    /// credentials, so it is refused without a key.
    pub fn resolve(
        main_socket: &Path,
        socket: Option<&str>,
        tcp: Option<SocketAddr>,
        api_key: Option<String>,
    ) -> anyhow::Result<Self> {
        let api_key = api_key.filter(|k| !k.is_empty()).map(ApiKey);
        if tcp.is_some() && api_key.is_none() {
            bail!("--http-listen needs --api-key (or BATCHD_API_KEY): TCP has no peer credentials to check");
        }
        let socket = match socket {
            Some("none") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => Some(default_socket(main_socket)),
        };
        Ok(Self {
            socket,
            tcp,
            api_key,
        })
    }
}

/// `http.sock` beside `batchd.sock`; beside a socket of another name, that name with
/// `.http` before `.sock`, so daemons sharing a directory do not claim the same file.
pub fn default_socket(main_socket: &Path) -> PathBuf {
    let name = main_socket
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let http = match name.as_deref() {
        Some("batchd.sock") | None => "http.sock".to_string(),
        Some(other) => format!("{}.http.sock", other.strip_suffix(".sock").unwrap_or(other)),
    };
    main_socket.with_file_name(http)
}

/// A Unix listener for axum (which takes its listener by value, while [`Listener`]
/// removes its socket file when dropped).
pub struct UdsListener(Listener);

impl axum::serve::Listener for UdsListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.listener.accept().await {
                Ok(accepted) => return accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.listener.local_addr()
    }
}

/// The bound listeners, claimed at startup beside the main socket.
pub struct Listeners {
    socket: Option<UdsListener>,
    tcp: Option<(tokio::net::TcpListener, ApiKey)>,
}

impl Listeners {
    /// Binds what `config` asks for; `inherited` is a socket systemd passed in for HTTP,
    /// used instead of binding the path. Call inside the runtime.
    pub fn bind(
        config: &HttpConfig,
        mode: u32,
        inherited: Option<Listener>,
    ) -> anyhow::Result<Self> {
        let socket = match (inherited, &config.socket) {
            (Some(l), _) => Some(l),
            (None, Some(path)) => Some(server::bind(path, mode)?),
            (None, None) => None,
        };
        let tcp = match (config.tcp, &config.api_key) {
            (Some(addr), Some(key)) => {
                let std = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("binding the HTTP listener on {addr}"))?;
                std.set_nonblocking(true)?;
                Some((tokio::net::TcpListener::from_std(std)?, key.clone()))
            }
            _ => None,
        };
        Ok(Self {
            socket: socket.map(UdsListener),
            tcp,
        })
    }

    /// Where they listen, for the startup message.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(s) = &self.socket {
            parts.push(
                match &s
                    .0
                    .listener
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                {
                    Some(p) => p.display().to_string(),
                    None => "the HTTP socket systemd passed in".into(),
                },
            );
        }
        if let Some((t, _)) = &self.tcp {
            parts.push(format!("http://{}", t.local_addr().ok()?));
        }
        (!parts.is_empty()).then(|| parts.join(" and "))
    }
}

/// The HTTP API, serving from [`start`] on; [`HttpApi::ready`] hands it the engine.
pub struct HttpApi {
    ready: watch::Sender<Option<Arc<Ready>>>,
    /// The task that runs the servers (aborting it stops them).
    servers: tokio::task::JoinHandle<()>,
}

/// Serves the API on `listeners` until the runtime stops, starting while the model loads:
/// `/health` answers 503 and API requests wait until [`HttpApi::ready`]. `draining` turns
/// true when the daemon starts shutting down (health then says 503 again). Call inside the
/// runtime.
pub fn start(
    listeners: Listeners,
    access: Arc<Access>,
    max_body: u32,
    draining: watch::Receiver<bool>,
) -> HttpApi {
    let (ready, ready_rx) = watch::channel(None);
    let state = Arc::new(AppState::new(ready_rx, max_body as usize, draining));
    let app = handlers::router(state);
    let mut servers = tokio::task::JoinSet::new();
    if let Some(socket) = listeners.socket {
        let app = app
            .clone()
            .layer(middleware::from_fn_with_state(access, auth::peer))
            .into_make_service_with_connect_info::<Peer>();
        servers.spawn(async move { axum::serve(socket, app).await });
    }
    if let Some((tcp, key)) = listeners.tcp {
        let key: Arc<str> = key.0.into();
        let app = app
            .layer(middleware::from_fn_with_state(key, auth::bearer))
            .into_make_service();
        servers.spawn(async move { axum::serve(tcp, app).await });
    }
    let servers = tokio::spawn(async move {
        while let Some(ended) = servers.join_next().await {
            if let Ok(Err(e)) = ended {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }
    });
    HttpApi { ready, servers }
}

impl HttpApi {
    /// The model has loaded: reads its chat template (a vocabulary-only load of the same
    /// file), then serves requests with `engine`. Returns once the API is ready, so the
    /// caller may announce readiness; if the template cannot be read the API stops.
    pub async fn ready(self, engine: std_mpsc::Sender<Command>, model: ModelInfo) {
        let path = PathBuf::from(&model.path);
        let chat = tokio::task::spawn_blocking(move || super::chat::ChatFormat::load(&path)).await;
        match chat {
            // The value stays when the sender goes: waiting requests still see it.
            Ok(Ok(chat)) => {
                let _ = self
                    .ready
                    .send(Some(Arc::new(Ready::new(engine, model, chat))));
            }
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "HTTP API stopped");
                self.servers.abort();
            }
            Err(_) => self.servers.abort(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_sits_beside_the_main_one_and_tcp_needs_a_key() {
        let c = HttpConfig::resolve(Path::new("/run/b/batchd.sock"), None, None, None).unwrap();
        assert_eq!(c.socket, Some(PathBuf::from("/run/b/http.sock")));
        let c = HttpConfig::resolve(Path::new("/tmp/x.sock"), None, None, None).unwrap();
        assert_eq!(c.socket, Some(PathBuf::from("/tmp/x.http.sock")));
        let c = HttpConfig::resolve(Path::new("/tmp/x"), Some("none"), None, None).unwrap();
        assert_eq!(c.socket, None);
        let tcp = Some("127.0.0.1:8080".parse().unwrap());
        assert!(HttpConfig::resolve(Path::new("/tmp/x"), None, tcp, None).is_err());
        assert!(HttpConfig::resolve(Path::new("/tmp/x"), None, tcp, Some(String::new())).is_err());
        let c = HttpConfig::resolve(Path::new("/tmp/x"), None, tcp, Some("k".into())).unwrap();
        assert_eq!(format!("{:?}", c.api_key), "Some(ApiKey(..))");
    }
}
