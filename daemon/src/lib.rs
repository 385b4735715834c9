//! batchd: a local LLM inference daemon that serves many clients at once by continuous
//! batching on llama.cpp.

pub mod access;
pub mod bench_engine;
pub mod bench_kv;
pub mod config;
pub mod connection;
pub mod demo;
pub mod engine;
pub mod env_args;
pub mod http;
pub mod modelgen;
pub mod notify;
pub mod policy;
pub mod progress;
pub mod router;
pub mod server;
pub mod settings;
pub mod signals;
pub mod text;
