//! One request as the client saw it: when it was submitted, when each token arrived,
//! and the daemon's final record.

use std::time::Instant;

use batchd_protocol::Done;
use tokio::sync::oneshot;

use crate::{ClientError, Event, Generation};

/// The timeline of one finished streaming request.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Just before the request was handed to the connection.
    pub submitted: Instant,
    /// Arrival of each `Token` event, in order.
    pub tokens: Vec<Instant>,
    /// Arrival of the `Done` event.
    pub finished: Instant,
    /// The daemon's final record (usage, queue wait).
    pub done: Done,
}

impl Sample {
    /// Submit → first token, in milliseconds (`None` if no token came).
    pub fn ttft_ms(&self) -> Option<f64> {
        self.tokens.first().map(|t| ms(*t - self.submitted))
    }

    /// The gaps between consecutive tokens, in milliseconds.
    pub fn gaps_ms(&self) -> impl Iterator<Item = f64> + '_ {
        self.tokens.windows(2).map(|w| ms(w[1] - w[0]))
    }

    /// The gaps whose later token arrived within `(from, to]`, in milliseconds.
    pub fn gaps_within_ms(&self, from: Instant, to: Instant) -> impl Iterator<Item = f64> + '_ {
        self.tokens
            .windows(2)
            .filter(move |w| w[1] > from && w[1] <= to)
            .map(|w| ms(w[1] - w[0]))
    }
}

/// Milliseconds of a duration.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Follows `gen` (submitted at `submitted`) to its end, timestamping every event as it
/// arrives; `first_token` is told when the first token came. A request the daemon
/// refused or failed becomes [`ClientError::Server`].
pub async fn record(
    mut gen: Generation,
    submitted: Instant,
    mut first_token: Option<oneshot::Sender<()>>,
) -> Result<Sample, ClientError> {
    let mut tokens = Vec::new();
    while let Some(ev) = gen.next().await {
        let now = Instant::now();
        match ev {
            Event::Token { .. } => {
                tokens.push(now);
                if let Some(tx) = first_token.take() {
                    let _ = tx.send(());
                }
            }
            Event::Done(done) => {
                return Ok(Sample {
                    submitted,
                    tokens,
                    finished: now,
                    done,
                })
            }
            Event::Error { code, message } => return Err(ClientError::Server { code, message }),
        }
    }
    Err(ClientError::Protocol(
        "the request ended without done".into(),
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use batchd_protocol::{FinishReason, StepSpan, Timings, Usage};
    use std::time::Duration;

    /// A `Done` with these counts and queue wait.
    pub(crate) fn done(prompt_tokens: u32, completion_tokens: u32, queue_ms: f64) -> Done {
        Done {
            finish_reason: FinishReason::Length,
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                cached_tokens: 0,
            },
            timings: Timings {
                queue_ms,
                ..Timings::default()
            },
            steps: StepSpan::default(),
            final_text: String::new(),
            output: None,
        }
    }

    /// A sample submitted at `t0`, with tokens at the given milliseconds after it.
    pub(crate) fn sample(t0: Instant, token_ms: &[u64], done: Done) -> Sample {
        let at = |m: u64| t0 + Duration::from_millis(m);
        Sample {
            submitted: t0,
            tokens: token_ms.iter().map(|&m| at(m)).collect(),
            finished: at(token_ms.last().copied().unwrap_or(0) + 1),
            done,
        }
    }

    #[test]
    fn ttft_and_gaps() {
        let t0 = Instant::now();
        let s = sample(t0, &[10, 12, 15, 25], done(1, 4, 0.0));
        assert_eq!(s.ttft_ms(), Some(10.0));
        assert_eq!(s.gaps_ms().collect::<Vec<_>>(), [2.0, 3.0, 10.0]);
        let at = |m| t0 + Duration::from_millis(m);
        // Only the gaps ending after 12 ms and at most 25 ms.
        assert_eq!(
            s.gaps_within_ms(at(12), at(25)).collect::<Vec<_>>(),
            [3.0, 10.0]
        );
        let none = sample(t0, &[], done(1, 0, 0.0));
        assert_eq!(none.ttft_ms(), None);
        assert_eq!(none.gaps_ms().count(), 0);
    }
}
