//! End-to-end tests of the real batchd, client and batchctl.

mod access;
mod batching;
mod bench_trace;
mod cli;
mod device_sampling;
mod http;
mod kv;
mod lifecycle;
mod robustness;
mod service_files;
mod soak;
