//! `soak`: the soak harness from the command line. Starts the debug or release batchd of
//! this target directory with the tiny model, so run `cargo build --workspace --all-targets`
//! first. Exits 1 when the run found a defect.

use std::process::ExitCode;
use std::time::Duration;

use batchd_tests::soak::{self, SoakConfig};
use clap::Parser;

/// Soak batchd with normal, vanishing and malformed clients and report what came back.
#[derive(Parser)]
struct Args {
    /// Requests in all, of every kind.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seed of the plan [default: from the clock; printed either way].
    #[arg(long)]
    seed: Option<u64>,
    /// The daemon's --slots.
    #[arg(long, default_value_t = 8)]
    slots: u32,
    /// Seconds to wait for any one connect, write or frame.
    #[arg(long, default_value_t = 30)]
    op_timeout: u64,
    /// Minutes after which clients take no new work.
    #[arg(long, default_value_t = 30)]
    deadline: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "soak: seed {seed} ({} requests, {} clients, {} slots)",
        args.requests, args.clients, args.slots
    );
    let cfg = SoakConfig {
        requests: args.requests,
        clients: args.clients,
        seed,
        slots: args.slots,
        op_timeout: Duration::from_secs(args.op_timeout),
        deadline: Duration::from_secs(args.deadline * 60),
        ..SoakConfig::default()
    };
    let report = soak::run(&cfg);
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report as JSON")
        );
    } else {
        println!("{report}");
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
