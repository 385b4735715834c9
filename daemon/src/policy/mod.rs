//! The scheduling policy: which tokens of which sequences go into the next step.
//!
//! Plain Rust with no llama.cpp types: it drives any [`Engine`], and the unit tests drive
//! a fake one. The llama.cpp adapter lives in `crate::engine`.

mod chunks;
mod engine;
mod event;
pub mod logprobs;
mod pacer;
mod prefix;
mod request;
mod scheduler;
mod sequence;
mod slot;
mod thinning;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod prefix_tests;
#[cfg(test)]
mod tests;

pub use engine::{may_pad, BatchToken, Engine, EngineError, SnapshotId, StepBatch, Token};
pub use event::{Event, SeqKind, StepEntry, StepReport};
pub use logprobs::Logprobs;
pub use pacer::{median, PrefillChunk, DEFAULT_PACE, GPU_PACE};
pub use request::{Rejection, RequestKey, Submission};
pub use scheduler::{Scheduler, SchedulerConfig};

/// How requests are admitted into slots.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Iteration-level: a freed slot takes the next queued request before the next step.
    Continuous,
    /// Waves: admit up to N requests, run until the longest finishes, then the next wave.
    Static,
}

impl Policy {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Continuous => "continuous",
            Policy::Static => "static",
        }
    }
}
