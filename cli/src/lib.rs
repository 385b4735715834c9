//! Client library for `batchd`, and the `batchctl` command built on it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), batchctl::ClientError> {
//! use batchctl::{Client, GenerateRequest};
//! let client = Client::connect(batchd_protocol::default_socket_path()).await?;
//! let done = client.generate(GenerateRequest::new("Once upon a time")).await?.collect().await?;
//! println!("{} ({})", done.text, done.done.finish_reason.as_str());
//! # Ok(())
//! # }
//! ```

pub mod app;
mod client;
mod connection;
mod error;
mod generation;
mod trace;

pub use batchd_protocol::{
    Done, ErrorCode, FinishReason, GenerateRequest, RequestId, Sampling, StatusReport,
    StepSequence, StepTrace,
};
pub use client::{Client, DEFAULT_CLIENT_NAME};
pub use error::ClientError;
pub use generation::{CancelHandle, Completion, Event, Generation};
pub use trace::TraceStream;
