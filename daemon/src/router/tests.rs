//! A request's whole life through the router, against the fake engine: no model needed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use batchd_protocol::{
    ErrorCode, FinishReason, GenerateRequest, RequestId, Sampling, StatusReport,
};

use super::*;
use crate::policy::fake::FakeEngine;
use crate::policy::{Policy, PrefillChunk, SchedulerConfig};

const SLOTS: usize = 2;

/// Two slots, a queue of three, at most 8 tokens a step and 64 positions a sequence.
fn router() -> Router<FakeEngine> {
    let scheduler = Scheduler::new(SchedulerConfig {
        slots: SLOTS,
        policy: Policy::Continuous,
        step_budget: 8,
        prefill_chunk: PrefillChunk::Fixed(8),
        prefill_pace: crate::policy::DEFAULT_PACE,
        queue_capacity: 3,
        max_positions: 64,
        kv_cells: 64 * SLOTS as u32,
        prefix_cache_bytes: 0,
    });
    Router::new(FakeEngine::new(SLOTS), scheduler, StatusReport::default())
}

/// What one client heard, in order.
#[derive(Clone, Default)]
struct Client {
    heard: Arc<Mutex<Vec<(RequestId, RequestEvent)>>>,
    /// Cleared to play a client whose connection is gone.
    listening: Arc<AtomicBool>,
}

impl Client {
    fn new() -> Self {
        let c = Self::default();
        c.listening.store(true, Ordering::SeqCst);
        c
    }

    fn sink(&self, id: RequestId) -> EventSink {
        let c = self.clone();
        Box::new(move |event| {
            if !c.listening.load(Ordering::SeqCst) {
                return false;
            }
            c.heard.lock().unwrap().push((id, event));
            true
        })
    }

    fn submit(&self, client: ClientId, id: RequestId, request: GenerateRequest) -> Command {
        Command::Submit(Box::new(Submit {
            client,
            id,
            request,
            received: Instant::now(),
            events: self.sink(id),
        }))
    }

    fn events(&self, id: RequestId) -> Vec<RequestEvent> {
        let heard = self.heard.lock().unwrap();
        heard
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn tokens(&self, id: RequestId) -> usize {
        let events = self.events(id);
        events
            .iter()
            .filter(|e| matches!(e, RequestEvent::Token { .. }))
            .count()
    }

    /// The request's last event, which must end it.
    fn done(&self, id: RequestId) -> Done {
        match self.events(id).pop() {
            Some(RequestEvent::Done(done)) => done,
            other => panic!("request {id} did not finish: {other:?}"),
        }
    }

    fn error(&self, id: RequestId) -> ErrorCode {
        match self.events(id).pop() {
            Some(RequestEvent::Error { code, .. }) => code,
            other => panic!("request {id} was not refused: {other:?}"),
        }
    }
}

fn request(prompt: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.into(),
        max_tokens,
        sampling: Sampling::default(),
        stop: Vec::new(),
        ignore_eos: false,
        stream: true,
        logprobs: None,
    }
}

fn run_to_end(r: &mut Router<FakeEngine>) {
    for _ in 0..1000 {
        if !r.has_work() {
            return;
        }
        r.step();
    }
    panic!("work left after 1000 steps");
}

#[test]
fn an_admitted_request_streams_its_tokens_then_done() {
    let (mut r, c) = (router(), Client::new());
    r.handle(c.submit(1, 7, request("hello", 5)));
    run_to_end(&mut r);
    assert_eq!(c.tokens(7), 5);
    let done = c.done(7);
    assert_eq!(done.finish_reason, FinishReason::Length);
    assert_eq!(
        done.usage.prompt_tokens, 5,
        "the engine tokenized the prompt"
    );
    assert_eq!(
        done.output, None,
        "a streaming request's tokens came as events"
    );
}

#[test]
fn a_non_streaming_request_gets_its_output_in_done() {
    let (mut r, c) = (router(), Client::new());
    let req = GenerateRequest {
        stream: false,
        ..request("hello", 5)
    };
    r.handle(c.submit(1, 1, req));
    run_to_end(&mut r);
    assert_eq!(c.tokens(1), 0);
    let output = c.done(1).output.expect("collected output");
    assert_eq!(output.tokens.len(), 5);
    assert_eq!(output.text.len(), 5, "one fake byte per token");
}

#[test]
fn logprobs_ride_on_the_tokens_or_in_the_output() {
    let (mut r, c) = (router(), Client::new());
    let asked = GenerateRequest {
        logprobs: Some(2),
        ..request("hello", 4)
    };
    r.handle(c.submit(1, 1, asked.clone()));
    let whole = GenerateRequest {
        stream: false,
        ..asked
    };
    r.handle(c.submit(1, 2, whole));
    run_to_end(&mut r);
    let streamed: Vec<TokenLogprobs> = c
        .events(1)
        .into_iter()
        .filter_map(|e| match e {
            RequestEvent::Token { logprobs, .. } => Some(logprobs.expect("asked for")),
            _ => None,
        })
        .collect();
    assert_eq!(streamed.len(), 4);
    assert!(streamed.iter().all(|l| l.top.len() == 2));
    let output = c.done(2).output.expect("collected output");
    assert_eq!(
        output.logprobs, streamed,
        "the same prompt, the same numbers"
    );
}

#[test]
fn an_invalid_request_is_refused_without_running() {
    let (mut r, c) = (router(), Client::new());
    r.handle(c.submit(1, 1, request("hello", 0)));
    assert_eq!(c.error(1), ErrorCode::InvalidRequest);
    assert!(!r.has_work());
}

#[test]
fn a_prompt_longer_than_a_sequence_is_refused() {
    let (mut r, c) = (router(), Client::new());
    r.handle(c.submit(1, 1, request(&"a".repeat(65), 1)));
    assert_eq!(c.error(1), ErrorCode::PromptTooLong);
}

#[test]
fn a_full_queue_answers_busy() {
    let (mut r, c) = (router(), Client::new());
    for id in 1..=4 {
        r.handle(c.submit(1, id, request("hi", 1)));
    }
    assert_eq!(c.error(4), ErrorCode::Busy);
    run_to_end(&mut r);
    for id in 1..=3 {
        assert_eq!(c.done(id).finish_reason, FinishReason::Length);
    }
}

#[test]
fn cancel_mid_prefill_ends_the_request_with_no_tokens() {
    let (mut r, c) = (router(), Client::new());
    r.handle(c.submit(1, 1, request(&"a".repeat(40), 4)));
    r.step(); // 8 of 40 prompt tokens in
    assert!(c.events(1).is_empty());
    r.handle(Command::Cancel { client: 1, id: 1 });
    run_to_end(&mut r);
    let done = c.done(1);
    assert_eq!(done.finish_reason, FinishReason::Cancelled);
    assert_eq!(done.usage.completion_tokens, 0);
    assert_eq!(c.events(1).len(), 1, "only the Done");
}

/// Client 1's request 1, for up to 50 tokens, once it has streamed `tokens`.
fn decoding(tokens: usize) -> (Router<FakeEngine>, Client) {
    let (mut r, c) = (router(), Client::new());
    r.handle(c.submit(1, 1, request("hello", 50)));
    while c.tokens(1) < tokens {
        r.step();
    }
    (r, c)
}

#[test]
fn cancel_mid_decode_stops_the_stream() {
    let (mut r, c) = decoding(3);
    r.handle(Command::Cancel { client: 1, id: 1 });
    run_to_end(&mut r);
    assert_eq!(c.done(1).finish_reason, FinishReason::Cancelled);
    assert!(c.tokens(1) < 50);
    assert_eq!(r.engine().released.len(), 1, "its KV was released");
}

#[test]
fn a_cancel_names_the_clients_own_id() {
    let (mut r, a, b) = (router(), Client::new(), Client::new());
    r.handle(a.submit(1, 5, request("hello", 4)));
    r.handle(b.submit(2, 5, request("hello", 4)));
    r.handle(Command::Cancel { client: 2, id: 5 });
    run_to_end(&mut r);
    assert_eq!(a.done(5).finish_reason, FinishReason::Length);
    assert_eq!(b.done(5).finish_reason, FinishReason::Cancelled);
}

#[test]
fn a_client_gone_cancels_all_its_requests_and_no_one_elses() {
    let (mut r, a, b) = (router(), Client::new(), Client::new());
    r.handle(a.submit(1, 1, request("hello", 20)));
    r.handle(a.submit(1, 2, request("world", 20)));
    r.handle(b.submit(2, 1, request("other", 20)));
    r.step();
    r.handle(Command::ClientGone { client: 1 });
    run_to_end(&mut r);
    assert_eq!(a.done(1).finish_reason, FinishReason::Cancelled);
    assert_eq!(a.done(2).finish_reason, FinishReason::Cancelled);
    assert_eq!(b.done(1).finish_reason, FinishReason::Length);
}

#[test]
fn a_sink_that_stops_listening_cancels_its_request() {
    let (mut r, c) = decoding(2);
    c.listening.store(false, Ordering::SeqCst);
    r.step(); // this token's send fails
    r.step(); // the cancel takes effect at the step boundary
    assert!(!r.has_work(), "the slot was freed");
    assert_eq!(r.engine().released.len(), 1);
}

#[test]
fn a_duplicate_id_is_refused_while_the_first_runs_then_reusable() {
    let (mut r, c) = (router(), Client::new());
    r.handle(c.submit(1, 1, request("hello", 3)));
    let (c2, other) = (Client::new(), Client::new());
    r.handle(c2.submit(1, 1, request("again", 3)));
    assert_eq!(c2.error(1), ErrorCode::DuplicateId);
    r.handle(other.submit(2, 1, request("other client", 3)));
    run_to_end(&mut r);
    assert_eq!(c.done(1).finish_reason, FinishReason::Length);
    assert_eq!(other.done(1).finish_reason, FinishReason::Length);
    let c3 = Client::new();
    r.handle(c3.submit(1, 1, request("after", 3)));
    run_to_end(&mut r);
    assert_eq!(c3.done(1).finish_reason, FinishReason::Length);
}

#[test]
fn close_drains_running_cancels_queued_and_refuses_new() {
    let (mut r, c) = (router(), Client::new());
    for id in 1..=3 {
        r.handle(c.submit(1, id, request("hello", 6)));
    }
    r.step(); // 1 and 2 hold the slots, 3 waits
    r.handle(Command::Close);
    r.handle(c.submit(1, 4, request("late", 6)));
    run_to_end(&mut r);
    assert_eq!(c.done(1).finish_reason, FinishReason::Length);
    assert_eq!(c.done(2).finish_reason, FinishReason::Length);
    assert_eq!(c.done(3).finish_reason, FinishReason::Cancelled);
    assert_eq!(c.error(4), ErrorCode::ShuttingDown);
}

/// Runs `serve`, as the engine thread does, with one request of `max_tokens` in; its
/// first event sends `then`, so `then` arrives while it runs.
fn serve_then(max_tokens: u32, then: Command) -> Client {
    let (mut r, c) = (router(), Client::new());
    let (tx, rx) = mpsc::channel();
    let mut then = Some((tx.clone(), then));
    let mut events = c.sink(1);
    let submit = Submit {
        client: 1,
        id: 1,
        request: request("hello", max_tokens),
        received: Instant::now(),
        events: Box::new(move |event| {
            if let Some((tx, cmd)) = then.take() {
                tx.send(cmd).unwrap();
            }
            events(event)
        }),
    };
    tx.send(Command::Submit(Box::new(submit))).unwrap();
    r.serve(&rx); // returns: closed and nothing left
    drop(tx);
    c
}

#[test]
fn serve_lets_running_requests_finish_after_close_then_returns() {
    let c = serve_then(30, Command::Close);
    assert_eq!(c.done(1).finish_reason, FinishReason::Length);
    assert_eq!(c.tokens(1), 30);
}

#[test]
fn cancel_all_ends_running_requests_at_once() {
    let c = serve_then(30, Command::CancelAll);
    assert_eq!(c.done(1).finish_reason, FinishReason::Cancelled);
    assert!(c.tokens(1) < 30);
}

#[test]
fn status_counts_slots_queue_and_tokens() {
    let (mut r, c) = (router(), Client::new());
    for id in 1..=3 {
        r.handle(c.submit(1, id, request("hi", 10)));
    }
    r.step();
    let report = Arc::new(Mutex::new(None));
    let slot = report.clone();
    r.handle(Command::Status(Box::new(move |s| {
        *slot.lock().unwrap() = Some(s);
    })));
    let s = report.lock().unwrap().take().expect("a report");
    assert_eq!((s.slots_busy, s.queued, s.steps), (2, 1, 1));
    assert_eq!(s.tokens_generated, 2);
}

#[test]
fn trace_sinks_get_every_step_until_they_stop_listening() {
    let (mut r, c) = (router(), Client::new());
    let steps = Arc::new(Mutex::new(Vec::new()));
    let seen = steps.clone();
    r.handle(Command::Trace(Box::new(move |t| {
        let mut seen = seen.lock().unwrap();
        seen.push(t.clone());
        seen.len() < 2
    })));
    r.handle(c.submit(1, 1, request("hello", 5)));
    run_to_end(&mut r);
    let steps = steps.lock().unwrap();
    assert_eq!(steps.len(), 2, "the sink said stop after two");
    assert_eq!(steps[0].sequences[0].prefill, Some(5));
    assert_eq!(steps[1].sequences[0].prefill, None);
}
