//! What can go wrong when talking to the daemon.

use std::io;
use std::path::PathBuf;

use batchd_protocol::{ErrorCode, FrameError};

/// How starting the daemon is suggested when nothing listens on the socket.
const START_HINT: &str = "start it with `batchd` (or `systemctl --user start batchd`)";

/// An error of the client library.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected to (see [`ClientError::is_not_running`]).
    #[error("{}", connect_message(path, source))]
    Connect {
        /// The socket that was tried.
        path: PathBuf,
        /// Why connecting failed.
        source: io::Error,
    },
    /// The daemon refused or failed a request (or, with a connection-level error, the
    /// whole connection).
    #[error("{}: {message}", code.as_str())]
    Server {
        /// Stable error code.
        code: ErrorCode,
        /// The daemon's explanation.
        message: String,
    },
    /// The connection ended before the answer came.
    #[error("connection to batchd lost: {0}")]
    Disconnected(String),
    /// The daemon said something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A frame could not be written or read during the handshake.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ClientError {
    /// True when connecting failed because nothing listens on the socket (it does not
    /// exist, or it is stale).
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::Connect { source, .. } if not_listening(source))
    }

    /// The server's error code, for [`ClientError::Server`].
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn not_listening(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

fn connect_message(path: &std::path::Path, source: &io::Error) -> String {
    if not_listening(source) {
        format!(
            "cannot reach batchd at {}: {source}; {START_HINT}",
            path.display()
        )
    } else {
        format!("cannot connect to batchd at {}: {source}", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_running_message_is_one_line_with_hint() {
        let e = ClientError::Connect {
            path: "/run/user/1000/batchd/batchd.sock".into(),
            source: io::Error::from_raw_os_error(2),
        };
        let s = e.to_string();
        assert!(e.is_not_running());
        assert!(!s.contains('\n'));
        assert!(s.starts_with("cannot reach batchd at /run/user/1000/batchd/batchd.sock: "));
        assert!(s.ends_with("; start it with `batchd` (or `systemctl --user start batchd`)"));
    }

    #[test]
    fn other_connect_errors_have_no_hint() {
        let e = ClientError::Connect {
            path: "/x.sock".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(!e.is_not_running());
        assert!(e
            .to_string()
            .starts_with("cannot connect to batchd at /x.sock: "));
    }

    #[test]
    fn server_error_names_code() {
        let e = ClientError::Server {
            code: ErrorCode::PromptTooLong,
            message: "too long".into(),
        };
        assert_eq!(e.to_string(), "prompt_too_long: too long");
        assert_eq!(e.code(), Some(ErrorCode::PromptTooLong));
    }
}
