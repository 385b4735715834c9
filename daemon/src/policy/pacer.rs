//! Prefill pacing: how many prompt tokens may ride in a step while other sequences are
//! decoding, so that prompts get in fast and the running streams' inter-token gaps stay
//! within a stated bound.
//!
//! The bound: a step that carries prompt tokens takes at most `pace` × a decode-only
//! step ([`DEFAULT_PACE`] unless configured). The pacer learns what prompt tokens cost *on top of* the decodes they ride with
//! (a fixed part, such as llama.cpp's extra micro-batch for a prompt chunk when each
//! sequence has its own KV stream, plus a part per token) by a least-squares fit over the
//! recent mixed steps, and allows the largest chunk that the fit says stays inside the
//! bound. A fit, not a ratio: a prompt's last chunk is often small, and dividing its
//! extra time by its few tokens charges them the whole fixed part, so a per-token average
//! swings with whatever chunk sizes happened to run. With no decodes running, prompts get
//! the whole step budget.

/// How much longer than a decode-only step a step with prompt tokens may take, unless
/// configured.
///
/// The running streams see at most this gap while a prompt is prefilled, and a prompt of
/// cost `C` alone reaches its first token after about `C × pace / (pace − 1)`. 3 keeps
/// that within 1.5× of prefilling it with everything else stalled (bench/README.md has
/// the measurements behind the choice).
pub const DEFAULT_PACE: f64 = 3.0;
/// Smallest chunk, so a long prompt always makes progress.
pub const MIN_CHUNK: usize = 8;
/// Chunk used before anything has been measured; the fit corrects it from the next step.
const FIRST_CHUNK: usize = 32;
/// Weight of the newest sample in the decode-step average.
const ALPHA: f64 = 0.2;
/// Mixed steps the fit looks back over.
const WINDOW: usize = 16;

/// How prompt chunks are sized while other sequences decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefillChunk {
    /// Sized from measured step times (see the module docs).
    Auto,
    /// At most this many prompt tokens per step.
    Fixed(usize),
}

/// What recent steps cost.
#[derive(Debug, Default)]
pub struct Pacer {
    /// Moving average of a decode-only step, in seconds.
    decode_step: Option<f64>,
    /// Recent mixed steps: (prompt tokens, seconds beyond a decode-only step).
    mixed: Vec<(f64, f64)>,
    /// Where the next mixed sample goes in `mixed` once it is full.
    next: usize,
    /// Seconds per prompt token when prompts ran alone (used until a mixed step is seen).
    alone_token: Option<f64>,
    /// The last line fitted through `mixed` while its chunk sizes differed enough to
    /// show a slope, as `(fixed, per_token)` seconds. Once the chunk settles, every
    /// sample has the same size: the line fitted before still holds.
    line: Option<(f64, f64)>,
}

fn ema(old: Option<f64>, sample: f64) -> Option<f64> {
    Some(match old {
        Some(v) => v + ALPHA * (sample - v),
        None => sample,
    })
}

impl Pacer {
    /// Records a step of `n_decode` decode tokens and `n_prefill` prompt tokens.
    pub fn observe(&mut self, n_decode: usize, n_prefill: usize, secs: f64) {
        match (n_decode, n_prefill) {
            (0, 0) => {}
            (_, 0) => self.decode_step = ema(self.decode_step, secs),
            (0, p) => self.alone_token = ema(self.alone_token, secs / p as f64),
            (_, p) => {
                if let Some(d) = self.decode_step {
                    let sample = (p as f64, (secs - d).max(0.0));
                    if self.mixed.len() < WINDOW {
                        self.mixed.push(sample);
                    } else {
                        self.mixed[self.next] = sample;
                        self.next = (self.next + 1) % WINDOW;
                    }
                    self.line = self.fit().or(self.line);
                }
            }
        }
    }

    /// A least-squares line `(fixed, per_token)` through the recent mixed steps, when
    /// their chunk sizes differ enough to show a slope.
    fn fit(&self) -> Option<(f64, f64)> {
        let n = self.mixed.len() as f64;
        let (sx, sy) = self
            .mixed
            .iter()
            .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let (sxx, sxy) = self.mixed.iter().fold((0.0, 0.0), |(a, b), &(x, y)| {
            (a + (x - mx) * (x - mx), b + (x - mx) * (y - my))
        });
        // Chunk sizes that barely differ say nothing about the slope.
        if n < 3.0 || sxx <= 0.05 * mx * mx * n {
            return None;
        }
        let slope = sxy / sxx;
        let fixed = my - slope * mx;
        (slope > 0.0).then_some((fixed.max(0.0), slope))
    }

    /// The extra cost of a chunk as `(fixed, per_token)` seconds: the fitted line, else
    /// the mean cost per token of the recent mixed steps, else of prompt-only steps.
    fn extra_cost(&self) -> Option<(f64, f64)> {
        if self.line.is_some() {
            return self.line;
        }
        if self.mixed.is_empty() {
            return self.alone_token.map(|t| (0.0, t));
        }
        let (x, y) = self
            .mixed
            .iter()
            .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
        Some((0.0, y / x))
    }

    /// Prompt tokens allowed in the next step, given the rule, the pace, and the tokens
    /// left in the budget after the decodes.
    pub fn allowance(&self, rule: PrefillChunk, pace: f64, n_decode: usize, room: usize) -> usize {
        if n_decode == 0 {
            return room;
        }
        let chunk = match rule {
            PrefillChunk::Fixed(n) => n,
            PrefillChunk::Auto => match (self.decode_step, self.extra_cost()) {
                (Some(d), Some((fixed, per_token))) if per_token > 0.0 => {
                    let allowed = (pace - 1.0) * d - fixed;
                    ((allowed / per_token).max(0.0) as usize).max(MIN_CHUNK)
                }
                _ => FIRST_CHUNK,
            },
        };
        chunk.min(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_decodes_means_the_whole_room() {
        let p = Pacer::default();
        assert_eq!(p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 0, 512), 512);
        assert_eq!(
            p.allowance(PrefillChunk::Fixed(4), DEFAULT_PACE, 0, 512),
            512
        );
    }

    #[test]
    fn fixed_chunks_are_capped_by_room() {
        let p = Pacer::default();
        assert_eq!(
            p.allowance(PrefillChunk::Fixed(64), DEFAULT_PACE, 3, 512),
            64
        );
        assert_eq!(
            p.allowance(PrefillChunk::Fixed(64), DEFAULT_PACE, 3, 10),
            10
        );
    }

    /// Runs `steps` mixed steps against a machine whose decode-only step takes `d` and
    /// whose prompt chunk adds `fixed + p × per_token`, each step taking the pacer's
    /// allowance (every third one only 10 tokens, a prompt's last chunk), and returns the
    /// allowance then.
    fn settle(d: f64, fixed: f64, per_token: f64, steps: usize) -> (Pacer, usize) {
        let mut p = Pacer::default();
        for i in 0..steps {
            p.observe(4, 0, d);
            let mut chunk = p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 512);
            if i % 3 == 2 {
                chunk = chunk.min(10);
            }
            p.observe(4, chunk, d + fixed + chunk as f64 * per_token);
        }
        let chunk = p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 512);
        (p, chunk)
    }

    #[test]
    fn auto_chunk_fills_the_step_up_to_the_pace() {
        // Decode-only steps take 20 ms; each prompt token adds 1 ms: the chunk that makes
        // the step 3 × 20 ms is 40 tokens.
        let (_, chunk) = settle(0.020, 0.0, 0.001, 40);
        assert!((38..=40).contains(&chunk), "{chunk}");
    }

    #[test]
    fn a_fixed_cost_per_chunk_is_learned_whatever_the_chunk_sizes() {
        // An extra pass costing 10 ms per prompt chunk, then 0.5 ms a token: the step
        // reaches 60 ms at (40 - 10) / 0.5 = 60 tokens, whatever size the last chunks had.
        let (p, chunk) = settle(0.020, 0.010, 0.0005, 60);
        assert!((55..=60).contains(&chunk), "{chunk}");
        let (fixed, per_token) = p.extra_cost().unwrap();
        assert!((fixed - 0.010).abs() < 0.002, "{fixed}");
        assert!((per_token - 0.0005).abs() < 0.0001, "{per_token}");
    }

    #[test]
    fn expensive_prompt_tokens_still_make_progress() {
        let (_, chunk) = settle(0.020, 0.0, 1.0, 20);
        assert_eq!(chunk, MIN_CHUNK);
    }

    #[test]
    fn cheap_prompt_tokens_take_the_whole_room() {
        // A GPU-like step: 2.5 ms decodes, 5 µs a prompt token.
        let (_, chunk) = settle(0.0025, 0.0002, 0.000005, 20);
        assert_eq!(chunk, 512);
    }

    #[test]
    fn before_any_measurement_the_first_chunk_is_modest() {
        let mut p = Pacer::default();
        assert_eq!(
            p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 512),
            FIRST_CHUNK
        );
        // Prompt-only steps give a first estimate once decodes are measured.
        p.observe(0, 100, 0.100);
        p.observe(4, 0, 0.020);
        assert_eq!(p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 512), 40);
    }
}
