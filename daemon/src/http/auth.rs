//! Who may use the HTTP API: on the Unix socket the same peer-credential rule as the main
//! socket; on TCP, where there are no peer credentials, a bearer key.

use std::sync::Arc;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use batchd_protocol::ErrorCode;

use super::error::ApiError;
use super::listen::UdsListener;
use crate::access::Access;

/// The connecting process's uid and gid, read once per connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer(Option<(u32, u32)>);

impl Connected<IncomingStream<'_, UdsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UdsListener>) -> Self {
        Peer(stream.io().peer_cred().ok().map(|c| (c.uid(), c.gid())))
    }
}

/// Refuses peers the access rule does not allow (403), before any handler runs.
pub async fn peer(
    State(access): State<Arc<Access>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = match peer {
        Some((uid, gid)) => {
            let ok = access.allows(uid, gid);
            if !ok && access.first_refusal(uid) {
                tracing::warn!(uid, gid, "refused an HTTP client that is not allowed");
            }
            ok
        }
        None => false,
    };
    if allowed {
        next.run(request).await
    } else {
        ApiError::from_engine(
            ErrorCode::Unauthorized,
            "this user may not use this batchd (see allow_uids / allow_group)".into(),
        )
        .into_response()
    }
}

/// Requires `Authorization: Bearer <key>` (401 otherwise).
pub async fn bearer(State(key): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| same(g.as_bytes(), key.as_bytes())) {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "a valid API key is required (Authorization: Bearer ...)".into(),
        )
        .into_response()
    }
}

/// Compares without stopping at the first difference, so timing tells nothing of the key.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
