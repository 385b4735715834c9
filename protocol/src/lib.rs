//! The wire protocol between `batchd` and its clients.
//!
//! A connection is a Unix stream socket carrying length-prefixed bincode frames
//! ([`frame`]). The client speaks first with [`ClientMessage::Hello`]; the daemon answers
//! with [`ServerMessage::Hello`] or an error frame and closes. After that the client may
//! send any number of requests, each tagged with an id of its own choosing, and the daemon
//! answers with events tagged with the same id, interleaved in whatever order they happen.

pub mod frame;
pub mod message;
pub mod paths;
pub mod robustness;
pub mod validate;

pub use frame::{read_frame, write_frame, FrameError, DEFAULT_MAX_FRAME_BYTES};
pub use message::*;
pub use paths::{client_socket_path, default_socket_path};

/// Version of this protocol; both sides must speak the same one.
pub const PROTOCOL_VERSION: u32 = 4;

/// Environment variable that overrides the socket path for both binaries.
pub const SOCKET_ENV: &str = "BATCHD_SOCKET";
