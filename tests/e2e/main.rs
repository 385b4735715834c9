//! End-to-end tests of the real batchd, client and batchctl.

mod access;
mod batching;
mod bench_trace;
mod cli;
mod completions;
mod device_sampling;
mod env_settings;
mod exit_codes;
mod http;
mod kv;
mod lifecycle;
mod notify;
mod prefix_cache;
mod robustness;
mod service_files;
mod soak;
mod warmup;
