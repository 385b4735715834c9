//! The llama.cpp side: loading the model, the adapter from the policy's `Engine` trait to
//! llama.cpp, and the engine thread that runs the [`crate::router::Router`] over them.

mod det;
mod greedy;
mod llama;
mod model;
mod seq_pool;
mod split;
mod worker;

pub use llama::{init_backend, LlamaEngine};
pub use model::{load_model, ComputeDevice, LoadedModel};
pub use worker::{spawn, EngineHandle};
