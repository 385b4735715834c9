//! The OpenAI-compatible HTTP API: a second door onto the same engine, for every tool
//! that already speaks OpenAI's API (curl, the `openai` Python package, editors).
//!
//! It listens on a Unix socket guarded like the main one (file mode and peer
//! credentials), and optionally on TCP guarded by a bearer key. Requests reach the engine
//! through [`submit`], the one module coupled to the engine's command API.

mod api;
mod auth;
mod chat;
mod error;
mod handlers;
mod listen;
mod logprobs;
mod metrics;
mod response;
mod sse;
mod submit;

pub use listen::{default_socket, start, HttpApi, HttpConfig, Listeners};
