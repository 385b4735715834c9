//! A submission streamed as server-sent events: one chunk per piece of text, each
//! choice's last chunk with its finish reason, optionally a usage chunk, then
//! `data: [DONE]`, as OpenAI's clients expect.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::logprobs::{self, TextOffset};
use super::metrics::Metrics;
use super::response::{Header, Usage};
use super::submit::{Event, Submission};

/// Where a stream is.
enum Phase {
    Choices,
    Usage,
    Done,
    Over,
}

struct State {
    submission: Submission,
    /// An event already taken from the submission (the first one, read before answering).
    pending: Option<Event>,
    header: Header,
    /// Choices still running.
    running: usize,
    /// Whether each choice has sent a chunk yet.
    started: Vec<bool>,
    /// Where each choice's next token starts in its text (for completions' logprobs).
    offsets: Vec<TextOffset>,
    usage: Usage,
    include_usage: bool,
    phase: Phase,
    metrics: Arc<Metrics>,
}

/// The SSE response for `submission`, whose first event was `first`.
pub fn respond(
    submission: Submission,
    first: Event,
    header: Header,
    choices: usize,
    include_usage: bool,
    metrics: Arc<Metrics>,
) -> Response {
    let state = State {
        submission,
        pending: Some(first),
        header,
        running: choices,
        started: vec![false; choices],
        offsets: (0..choices).map(|_| TextOffset::default()).collect(),
        usage: Usage::default(),
        include_usage,
        phase: Phase::Choices,
        metrics,
    };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        let event = next(&mut s).await?;
        Some((Ok::<_, Infallible>(event), s))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn next(s: &mut State) -> Option<SseEvent> {
    loop {
        match s.phase {
            Phase::Choices if s.running == 0 => {
                s.phase = if s.include_usage {
                    Phase::Usage
                } else {
                    Phase::Done
                };
            }
            Phase::Choices => {
                let event = match s.pending.take() {
                    Some(e) => Some(e),
                    None => s.submission.next().await,
                };
                match event {
                    Some(Event::Token {
                        index,
                        text,
                        logprobs,
                    }) => {
                        // Bytes held back (a partial character or stop string) make no chunk,
                        // unless the token's logprobs must be told.
                        if text.is_empty() && s.started[index] && logprobs.is_none() {
                            continue;
                        }
                        let logprobs = logprobs.map_or(serde_json::Value::Null, |l| {
                            logprobs::json(s.header.kind, &[l], &mut s.offsets[index])
                        });
                        let first = !std::mem::replace(&mut s.started[index], true);
                        return Some(json(s.header.chunk(index, &text, first, None, logprobs)));
                    }
                    Some(Event::Done { index, done }) => {
                        s.running -= 1;
                        s.usage.add(&done);
                        s.metrics.request_done(&done);
                        let first = !std::mem::replace(&mut s.started[index], true);
                        return Some(json(s.header.chunk(
                            index,
                            &done.final_text,
                            first,
                            Some(&done),
                            serde_json::Value::Null,
                        )));
                    }
                    Some(Event::Failed { error }) => {
                        s.running = 0;
                        s.include_usage = false;
                        return Some(json(error.body()));
                    }
                    None => {
                        // The engine let go of running choices: say so before [DONE].
                        s.running = 0;
                        s.include_usage = false;
                        return Some(json(ApiError::engine_gone().body()));
                    }
                }
            }
            Phase::Usage => {
                s.phase = Phase::Done;
                return Some(json(s.header.usage_chunk(s.usage.json())));
            }
            Phase::Done => {
                s.phase = Phase::Over;
                return Some(SseEvent::default().data("[DONE]"));
            }
            Phase::Over => return None,
        }
    }
}

fn json(value: serde_json::Value) -> SseEvent {
    SseEvent::default().data(value.to_string())
}
