//! A real HTTP/1.1 client (hyper) over batchd's HTTP Unix socket or TCP, for the e2e tests
//! of the OpenAI-compatible API.

use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where to connect.
#[derive(Clone, Debug)]
pub enum Target {
    Unix(std::path::PathBuf),
    Tcp(std::net::SocketAddr),
}

/// An answer read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data:` payloads of an SSE body, in order.
    pub fn sse_data(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

/// Sends one request on a fresh connection and returns the response head and the
/// still-streaming body; dropping them closes the connection.
pub async fn open(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Response<Incoming> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    match target {
        Target::Unix(p) => {
            send(
                tokio::net::UnixStream::connect(p).await.expect("connect"),
                request,
            )
            .await
        }
        Target::Tcp(a) => {
            send(
                tokio::net::TcpStream::connect(a).await.expect("connect"),
                request,
            )
            .await
        }
    }
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Response<Incoming>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    // The connection task ends when the response body is dropped or read to its end.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(request).await.expect("send request")
}

/// Sends one request and reads the whole answer.
pub async fn call(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Answer {
    let response = open(target, method, path, body, headers).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// `GET path` over the Unix socket.
pub async fn get(socket: &Path, path: &str) -> Answer {
    call(&Target::Unix(socket.to_path_buf()), "GET", path, None, &[]).await
}

/// `POST path` with a JSON body over the Unix socket.
pub async fn post(socket: &Path, path: &str, body: &Value) -> Answer {
    post_raw(socket, path, serde_json::to_vec(body).unwrap()).await
}

/// `POST path` with any bytes as the body.
pub async fn post_raw(socket: &Path, path: &str, body: Vec<u8>) -> Answer {
    call(
        &Target::Unix(socket.to_path_buf()),
        "POST",
        path,
        Some(body),
        &[],
    )
    .await
}
