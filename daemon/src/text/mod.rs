//! Turning generated token bytes into the text a client sees.

mod stop;
mod utf8;

pub use stop::{StopMatcher, StopOutcome};
pub use utf8::Utf8Stream;
