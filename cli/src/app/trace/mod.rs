//! `batchctl trace`: what every engine step batches, as the daemon reports it.

pub mod mask;

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use batchd_protocol::{StepSequence, StepTrace};

use super::args::TraceArgs;
use super::{connect, Exit, Interrupt};

/// Subscribes to step traces and prints each step until `--steps` were printed or
/// Ctrl-C; both end with success.
pub async fn run(
    args: &TraceArgs,
    socket: &Path,
    out: &mut (dyn Write + Send),
    interrupt: &Interrupt,
) -> Result<Exit> {
    let subscribe = async { Ok::<_, anyhow::Error>(connect(socket).await?.trace().await?) };
    let mut steps = tokio::select! {
        s = subscribe => s?,
        _ = interrupt.wait() => return Ok(Exit::Success),
    };
    let mut printed = 0;
    while args.steps != Some(printed) {
        let step = tokio::select! {
            s = steps.next() => s?,
            _ = interrupt.wait() => break,
        };
        out.write_all(render(&step, args.mask).as_bytes())?;
        out.flush()?;
        printed += 1;
    }
    Ok(Exit::Success)
}

/// One step: a header line, a line per sequence, and the mask if `mask`.
pub fn render(step: &StepTrace, mask: bool) -> String {
    let mut s = format!(
        "step {}: {} tokens, {} {}, {:.3} ms\n",
        step.step,
        step.n_tokens,
        step.passes,
        if step.passes == 1 { "pass" } else { "passes" },
        step.micros as f64 / 1000.0
    );
    for seq in &step.sequences {
        let (kind, pos) = describe(seq);
        s.push_str(&format!(
            "  slot {:<3} request {:<6} {kind:<13} {pos}\n",
            seq.slot, seq.request
        ));
    }
    if mask {
        s.push_str(&mask::render(step));
    }
    s
}

/// A sequence's part of a step, `PREFILL(n)` or `decode(1)`, and its positions,
/// `pos a..b` (end exclusive) or `pos p`; a prefill that reused cached positions says
/// which, `(0..r cached)`.
pub fn describe(seq: &StepSequence) -> (String, String) {
    match seq.prefill {
        Some(n) if seq.reused > 0 => (
            format!("PREFILL({n})"),
            format!(
                "pos {}..{} (0..{} cached)",
                seq.pos,
                seq.pos + n,
                seq.reused
            ),
        ),
        Some(n) => (
            format!("PREFILL({n})"),
            format!("pos {}..{}", seq.pos, seq.pos + n),
        ),
        None => ("decode(1)".into(), format!("pos {}", seq.pos)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines() {
        let step = StepTrace {
            step: 42,
            n_tokens: 12,
            passes: 1,
            sequences: vec![
                StepSequence {
                    slot: 0,
                    request: 7,
                    prefill: Some(11),
                    pos: 0,
                    reused: 0,
                },
                StepSequence {
                    slot: 1,
                    request: 5,
                    prefill: None,
                    pos: 42,
                    reused: 0,
                },
            ],
            micros: 1234,
        };
        assert_eq!(
            render(&step, false),
            "step 42: 12 tokens, 1 pass, 1.234 ms
  slot 0   request 7      PREFILL(11)   pos 0..11
  slot 1   request 5      decode(1)     pos 42
"
        );
        let with_mask = render(&step, true);
        assert!(with_mask.starts_with(&render(&step, false)));
        assert!(with_mask.contains("  B 42 ...........#\n"), "{with_mask}");
    }

    #[test]
    fn a_prefill_after_cached_positions_says_so() {
        let seq = StepSequence {
            slot: 2,
            request: 8,
            prefill: Some(3),
            pos: 40,
            reused: 40,
        };
        assert_eq!(describe(&seq).1, "pos 40..43 (0..40 cached)");
    }
}
