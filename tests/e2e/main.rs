//! End-to-end tests of the real batchd, client and batchctl.

mod batching;
mod cli;
mod lifecycle;
mod robustness;
