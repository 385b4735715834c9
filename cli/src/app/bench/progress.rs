//! A bar of finished requests while a workload runs, on stderr and only when that is a
//! terminal, so neither the report on stdout nor a redirected log gets it.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};

use super::plan::{self, Plan};

/// The bar for `plan`: hidden unless stderr is a terminal.
pub fn bar(plan: &Plan) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    // Cleared also when Ctrl-C drops the run.
    let bar = ProgressBar::new(requests(plan)).with_finish(ProgressFinish::AndClear);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} requests, {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("bench {}", name(plan)));
    bar
}

/// Requests the plan runs in all.
pub fn requests(plan: &Plan) -> u64 {
    match plan {
        Plan::Seed => plan::SEED.len() as u64,
        Plan::Uniform { requests, .. } => u64::from(*requests),
        Plan::LongPrompt { streams, .. } => u64::from(*streams) + 1,
    }
}

fn name(plan: &Plan) -> &'static str {
    match plan {
        Plan::Seed => "seed",
        Plan::Uniform { .. } => "uniform",
        Plan::LongPrompt { .. } => "long-prompt",
    }
}
