//! The engine thread: owns the model and the one llama.cpp context, runs the scheduler's
//! steps, and routes events back to connections through channels.

mod greedy;
mod llama;
mod model;
mod split;
mod stats;
mod worker;

pub use llama::{init_backend, LlamaEngine};
pub use model::{load_model, ComputeDevice, LoadedModel};
pub use worker::{spawn, Command, ConnId, EngineHandle, Outgoing};
