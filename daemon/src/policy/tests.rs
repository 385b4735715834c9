//! Unit tests of the policy against the fake engine.
//!
//! One file past 400 lines: every test drives the same scheduler and fake engine through
//! the harness at the top, one policy rule per test.

use std::collections::HashMap;
use std::time::Instant;

use batchd_protocol::{FinishReason, Sampling};

use super::fake::FakeEngine;
use super::*;

pub(super) fn cfg(slots: usize, policy: Policy) -> SchedulerConfig {
    SchedulerConfig {
        slots,
        policy,
        step_budget: 64,
        prefill_chunk: PrefillChunk::Fixed(64),
        prefill_pace: super::DEFAULT_PACE,
        queue_capacity: 100,
        max_positions: 1024,
        kv_cells: 1024 * slots as u32,
        prefix_cache_bytes: 0,
    }
}

pub(super) fn sub(key: RequestKey, prompt_len: usize, max_tokens: u32) -> Submission {
    Submission {
        key,
        prompt: (0..prompt_len as u32)
            .map(|i| 1 + (key as u32 * 7 + i) % 26)
            .collect(),
        max_tokens,
        sampling: Sampling::default(),
        stop: Vec::new(),
        ignore_eos: false,
        logprobs: None,
        received: Instant::now(),
    }
}

/// Everything a run produced, by request.
#[derive(Default, Debug)]
pub(super) struct Outcome {
    pub tokens: HashMap<RequestKey, Vec<Token>>,
    pub logprobs: HashMap<RequestKey, Vec<Option<batchd_protocol::TokenLogprobs>>>,
    pub text: HashMap<RequestKey, String>,
    pub done: HashMap<RequestKey, batchd_protocol::Done>,
    pub failed: HashMap<RequestKey, String>,
}

pub(super) fn run(s: &mut Scheduler, e: &mut FakeEngine, out: &mut Outcome, max_steps: usize) {
    for _ in 0..max_steps {
        if !s.has_work() {
            break;
        }
        s.step(e);
        collect(s, out);
    }
    assert!(!s.has_work(), "work left after {max_steps} steps");
}

pub(super) fn collect(s: &mut Scheduler, out: &mut Outcome) {
    for ev in s.drain_events() {
        match ev {
            Event::Token {
                key,
                token,
                text,
                logprobs,
            } => {
                out.tokens.entry(key).or_default().push(token);
                out.logprobs.entry(key).or_default().push(logprobs);
                out.text.entry(key).or_default().push_str(&text);
            }
            Event::Done { key, done } => {
                assert!(out.done.insert(key, done).is_none(), "two Done for {key}");
            }
            Event::Failed { key, message } => {
                out.failed.insert(key, message);
            }
        }
    }
}

#[test]
fn more_requests_than_slots_all_complete_in_fifo_admission_order() {
    let mut s = Scheduler::new(cfg(2, Policy::Continuous));
    let mut e = FakeEngine::new(2);
    for k in 0..5 {
        s.submit(sub(k, 3, 4)).unwrap();
    }
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 100);
    for k in 0..5 {
        let d = &out.done[&k];
        assert_eq!(d.finish_reason, FinishReason::Length);
        assert_eq!(d.usage.completion_tokens, 4);
        assert_eq!(out.tokens[&k].len(), 4);
    }
    let admitted: Vec<u64> = (0..5).map(|k| out.done[&k].steps.admitted).collect();
    assert!(admitted.windows(2).all(|w| w[0] <= w[1]), "{admitted:?}");
}

#[test]
fn logprobs_come_only_when_asked_and_do_not_change_the_tokens() {
    let mut s = Scheduler::new(cfg(2, Policy::Continuous));
    let mut e = FakeEngine::new(2);
    s.submit(sub(1, 3, 5)).unwrap();
    s.submit(Submission {
        logprobs: Some(3),
        ..sub(2, 3, 5)
    })
    .unwrap();
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 100);
    assert!(out.logprobs[&1].iter().all(Option::is_none));
    let with = &out.logprobs[&2];
    assert_eq!(with.len(), 5);
    for (l, &token) in with.iter().zip(&out.tokens[&2]) {
        let l = l.as_ref().expect("asked for");
        assert_eq!(l.top.len(), 3);
        assert!(l.logprob <= 0.0 && l.top.iter().all(|t| t.logprob <= 0.0));
        // Greedy: the token is the most likely one, and its bytes are its text.
        assert_eq!((l.top[0].token, l.top[0].logprob), (token, l.logprob));
        assert_eq!(l.bytes, [b'a' + token as u8 - 1]);
    }
    // Same prompt as request 1 would have had under key 2: the pick is the engine's alone.
    let mut s = Scheduler::new(cfg(1, Policy::Continuous));
    let mut e = FakeEngine::new(1);
    s.submit(sub(2, 3, 5)).unwrap();
    let mut plain = Outcome::default();
    run(&mut s, &mut e, &mut plain, 100);
    assert_eq!(plain.tokens[&2], out.tokens[&2]);
}

#[test]
fn every_step_is_one_batch_with_prefill_fused_into_decodes() {
    let mut s = Scheduler::new(cfg(2, Policy::Continuous));
    let mut e = FakeEngine::new(2);
    s.submit(sub(1, 3, 10)).unwrap();
    s.step(&mut e); // prefill of 1
    s.submit(sub(2, 5, 10)).unwrap();
    s.step(&mut e); // decode of 1 + prefill of 2 in the same batch
    let b = &e.batches[1];
    assert_eq!(e.batches.len(), 2);
    let slots: Vec<(usize, u32, bool)> =
        b.tokens.iter().map(|t| (t.slot, t.pos, t.logits)).collect();
    assert_eq!(
        slots,
        vec![
            (0, 3, true),
            (1, 0, false),
            (1, 1, false),
            (1, 2, false),
            (1, 3, false),
            (1, 4, true)
        ]
    );
}

#[test]
fn a_finished_slot_is_refilled_on_the_very_next_step() {
    let mut s = Scheduler::new(cfg(1, Policy::Continuous));
    let mut e = FakeEngine::new(1);
    s.submit(sub(1, 2, 3)).unwrap();
    s.submit(sub(2, 2, 3)).unwrap();
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 100);
    assert_eq!(out.done[&2].steps.admitted, out.done[&1].steps.finished + 1);
    assert_eq!(e.released, vec![0, 0]);
}

#[test]
fn packing_does_not_change_results() {
    let alone: Vec<Vec<Token>> = (0..6)
        .map(|k| {
            let mut s = Scheduler::new(cfg(1, Policy::Continuous));
            let mut e = FakeEngine::new(1);
            s.submit(sub(k, 1 + k as usize * 5, 7 + k as u32)).unwrap();
            let mut out = Outcome::default();
            run(&mut s, &mut e, &mut out, 100);
            out.tokens.remove(&k).unwrap()
        })
        .collect();
    for policy in [Policy::Continuous, Policy::Static] {
        let mut s = Scheduler::new(SchedulerConfig {
            step_budget: 8, // force chunked prefill too
            ..cfg(3, policy)
        });
        let mut e = FakeEngine::new(3);
        for k in 0..6 {
            s.submit(sub(k, 1 + k as usize * 5, 7 + k as u32)).unwrap();
        }
        let mut out = Outcome::default();
        run(&mut s, &mut e, &mut out, 500);
        for k in 0..6 {
            assert_eq!(out.tokens[&k], alone[k as usize], "{policy:?} request {k}");
        }
    }
}

#[test]
fn budget_puts_decodes_first_and_chunks_long_prompts() {
    let mut s = Scheduler::new(SchedulerConfig {
        step_budget: 4,
        ..cfg(2, Policy::Continuous)
    });
    // (Fixed(64) is capped by the budget: 3 prompt tokens ride with the decode.)
    let mut e = FakeEngine::new(2);
    s.submit(sub(1, 2, 20)).unwrap();
    s.step(&mut e);
    s.submit(sub(2, 10, 2)).unwrap();
    for _ in 0..4 {
        s.step(&mut e);
    }
    // Step 2..: slot 0 decodes each step, slot 1 prefills 3 tokens at a time.
    for b in &e.batches[1..] {
        assert!(b.tokens.len() <= 4);
        assert_eq!(b.tokens[0].slot, 0, "the running decode comes first");
    }
    let prefill: Vec<usize> = e.batches[1..4]
        .iter()
        .map(|b| b.tokens.iter().filter(|t| t.slot == 1).count())
        .collect();
    assert_eq!(prefill, vec![3, 3, 3]);
    let last_chunk = &e.batches[4].tokens;
    assert_eq!(last_chunk.iter().filter(|t| t.slot == 1).count(), 1);
    assert!(
        last_chunk.last().unwrap().logits,
        "logits only once the prompt is complete"
    );
    assert_eq!(
        e.batches[1..4]
            .iter()
            .flat_map(|b| &b.tokens)
            .filter(|t| t.slot == 1 && t.logits)
            .count(),
        0
    );
}

#[test]
fn static_policy_waits_for_the_whole_wave() {
    let mut s = Scheduler::new(cfg(2, Policy::Static));
    let mut e = FakeEngine::new(2);
    s.submit(sub(1, 2, 2)).unwrap();
    s.submit(sub(2, 2, 8)).unwrap();
    s.submit(sub(3, 2, 2)).unwrap();
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 100);
    assert!(out.done[&1].steps.finished < out.done[&2].steps.finished);
    assert_eq!(out.done[&3].steps.admitted, out.done[&2].steps.finished + 1);

    let mut c = Scheduler::new(cfg(2, Policy::Continuous));
    let mut e = FakeEngine::new(2);
    for k in 1..=3 {
        c.submit(sub(k, 2, if k == 2 { 8 } else { 2 })).unwrap();
    }
    let mut out = Outcome::default();
    run(&mut c, &mut e, &mut out, 100);
    assert_eq!(out.done[&3].steps.admitted, out.done[&1].steps.finished + 1);
}

#[test]
fn cancel_frees_the_slot_for_the_next_request() {
    let mut s = Scheduler::new(cfg(1, Policy::Continuous));
    let mut e = FakeEngine::new(1);
    s.submit(sub(1, 2, 100)).unwrap();
    s.submit(sub(2, 2, 2)).unwrap();
    s.submit(sub(3, 2, 2)).unwrap();
    s.step(&mut e);
    s.step(&mut e);
    assert!(s.cancel(1));
    assert!(s.cancel(3), "a queued request can be cancelled");
    assert!(!s.cancel(42));
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 100);
    assert_eq!(out.done[&1].finish_reason, FinishReason::Cancelled);
    assert_eq!(out.done[&3].finish_reason, FinishReason::Cancelled);
    assert_eq!(out.done[&2].finish_reason, FinishReason::Length);
    assert_eq!(out.done[&2].steps.admitted, 3);
}

#[test]
fn eos_ends_unless_ignored() {
    for ignore in [false, true] {
        let mut s = Scheduler::new(cfg(1, Policy::Continuous));
        let mut e = FakeEngine::new(1);
        e.eos_after = Some(5);
        let mut r = sub(1, 2, 6);
        r.ignore_eos = ignore;
        s.submit(r).unwrap();
        let mut out = Outcome::default();
        run(&mut s, &mut e, &mut out, 100);
        let d = &out.done[&1];
        if ignore {
            assert_eq!(d.finish_reason, FinishReason::Length);
            assert_eq!(d.usage.completion_tokens, 6);
        } else {
            assert_eq!(d.finish_reason, FinishReason::Eos);
            assert_eq!(d.usage.completion_tokens, 3);
        }
    }
}

#[test]
fn stop_strings_cut_the_text() {
    let mut s = Scheduler::new(cfg(1, Policy::Continuous));
    let mut e = FakeEngine::new(1);
    let mut probe = Outcome::default();
    s.submit(sub(1, 3, 12)).unwrap();
    run(&mut s, &mut e, &mut probe, 100);
    let full = probe.text[&1].clone();
    let stop = full[4..6].to_string();
    let cut = &full[..full.find(&stop).unwrap()];

    let mut r = sub(2, 3, 12);
    r.prompt = sub(1, 3, 12).prompt;
    r.stop = vec![stop];
    s.submit(r).unwrap();
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 100);
    assert_eq!(out.done[&2].finish_reason, FinishReason::Stop);
    assert_eq!(out.text[&2], cut);
}

#[test]
fn a_sequence_stops_at_its_position_limit() {
    let mut s = Scheduler::new(SchedulerConfig {
        max_positions: 10,
        kv_cells: 20,
        ..cfg(2, Policy::Continuous)
    });
    let mut e = FakeEngine::new(2);
    s.submit(sub(1, 4, 100)).unwrap();
    assert_eq!(
        s.submit(sub(2, 11, 1)),
        Err(Rejection::PromptTooLong {
            tokens: 11,
            max: 10
        })
    );
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 100);
    let d = &out.done[&1];
    assert_eq!(d.finish_reason, FinishReason::Context);
    // Positions 0..=9 hold the prompt and 6 fed-back tokens; the 7th sample can't be fed.
    assert_eq!(d.usage.completion_tokens, 7);
    assert!(e.batches.iter().flat_map(|b| &b.tokens).all(|t| t.pos < 10));
}

#[test]
fn a_full_kv_cache_ends_the_newest_sequence_not_everyone() {
    let mut s = Scheduler::new(SchedulerConfig {
        max_positions: 64,
        kv_cells: 24,
        ..cfg(3, Policy::Continuous)
    });
    let mut e = FakeEngine::new(3);
    e.kv_cells = 24;
    for k in 1..=3 {
        s.submit(sub(k, 4, 30)).unwrap();
    }
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 200);
    let reasons: Vec<FinishReason> = (1..=3).map(|k| out.done[&k].finish_reason).collect();
    assert!(reasons.contains(&FinishReason::Context), "{reasons:?}");
    assert!(out.failed.is_empty());
    assert!(
        out.done[&1].usage.completion_tokens <= 30,
        "never past max_tokens"
    );
    assert!(
        out.done[&1].usage.completion_tokens >= 8,
        "the oldest keeps going"
    );
}

#[test]
fn engine_kv_refusal_is_a_scheduling_event() {
    // The scheduler believes there is room, the engine disagrees.
    let mut s = Scheduler::new(cfg(2, Policy::Continuous));
    let mut e = FakeEngine::new(2);
    e.kv_cells = 12;
    s.submit(sub(1, 4, 50)).unwrap();
    s.submit(sub(2, 4, 50)).unwrap();
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 200);
    assert_eq!(out.done.len(), 2);
    assert!(out.failed.is_empty());
    assert!(out
        .done
        .values()
        .all(|d| d.finish_reason == FinishReason::Context));
}

#[test]
fn queue_is_bounded_and_close_refuses_and_cancels() {
    let mut s = Scheduler::new(SchedulerConfig {
        queue_capacity: 2,
        ..cfg(1, Policy::Continuous)
    });
    s.submit(sub(1, 2, 5)).unwrap();
    s.submit(sub(2, 2, 5)).unwrap();
    assert_eq!(s.submit(sub(3, 2, 5)), Err(Rejection::Busy(2)));
    s.close();
    assert_eq!(s.submit(sub(4, 2, 5)), Err(Rejection::ShuttingDown));
    let mut out = Outcome::default();
    collect(&mut s, &mut out);
    assert_eq!(out.done.len(), 2);
    assert!(!s.has_work());
}

#[test]
fn trace_reports_prefill_and_decode() {
    let mut s = Scheduler::new(cfg(2, Policy::Continuous));
    s.set_trace(true);
    let mut e = FakeEngine::new(2);
    s.submit(sub(1, 3, 5)).unwrap();
    s.step(&mut e);
    s.submit(sub(2, 2, 5)).unwrap();
    s.step(&mut e);
    let r = s.last_report();
    assert_eq!(r.step, 2);
    assert_eq!(r.n_tokens, 3);
    assert_eq!(
        r.entries
            .iter()
            .map(|e| (e.slot, e.kind))
            .collect::<Vec<_>>(),
        vec![(0, SeqKind::Decode), (1, SeqKind::Prefill(2))]
    );
}

#[test]
fn prompt_chunks_shrink_while_others_decode() {
    let mut s = Scheduler::new(SchedulerConfig {
        prefill_chunk: PrefillChunk::Fixed(2),
        prefill_pace: super::DEFAULT_PACE,
        ..cfg(2, Policy::Continuous)
    });
    let mut e = FakeEngine::new(2);
    s.submit(sub(1, 10, 20)).unwrap();
    s.step(&mut e); // alone: the whole prompt at once
    assert_eq!(e.batches[0].tokens.len(), 10);
    s.submit(sub(2, 7, 2)).unwrap();
    for _ in 0..4 {
        s.step(&mut e);
    }
    let chunks: Vec<usize> = e.batches[1..5]
        .iter()
        .map(|b| b.tokens.iter().filter(|t| t.slot == 1).count())
        .collect();
    assert_eq!(chunks, vec![2, 2, 2, 1]);
}

#[test]
fn where_passes_cost_a_tail_and_a_head_share_one_chunk_length() {
    let chunks_of = |pass_tokens: usize| {
        let mut s = Scheduler::new(SchedulerConfig {
            prefill_chunk: PrefillChunk::Fixed(12),
            ..cfg(3, Policy::Continuous)
        });
        let mut e = FakeEngine::new(3);
        e.pass_tokens = pass_tokens;
        s.submit(sub(1, 2, 20)).unwrap();
        s.step(&mut e);
        s.submit(sub(2, 20, 2)).unwrap();
        s.submit(sub(3, 20, 2)).unwrap();
        for _ in 0..2 {
            s.step(&mut e);
        }
        let per_slot = |b: &StepBatch, slot| b.tokens.iter().filter(|t| t.slot == slot).count();
        (e.batches[1..3].iter())
            .map(|b| (per_slot(b, 1), per_slot(b, 2)))
            .collect::<Vec<_>>()
    };
    // First come, first served: 12, then the tail of 8 beside a head of 4.
    assert_eq!(chunks_of(0), vec![(12, 0), (8, 4)]);
    // Where each length costs a pass: 6 and 6, twice.
    assert_eq!(chunks_of(8), vec![(6, 6), (6, 6)]);
}

#[test]
fn static_waves_are_padded_to_their_longest_request() {
    let mut s = Scheduler::new(cfg(2, Policy::Static));
    let mut e = FakeEngine::new(2);
    s.submit(sub(1, 2, 2)).unwrap();
    s.submit(sub(2, 2, 6)).unwrap();
    s.submit(sub(3, 2, 2)).unwrap();
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 100);
    // Request 1 finishes early, but its slot keeps computing until request 2 is done.
    let wave: Vec<usize> = e.batches[..6].iter().map(|b| b.tokens.len()).collect();
    assert_eq!(wave[1..], [2, 2, 2, 2, 2], "{wave:?}");
    assert_eq!(out.tokens[&1].len(), 2, "padding produces no output");
    assert_eq!(out.done[&1].finish_reason, FinishReason::Length);
    assert_eq!(out.done[&3].steps.admitted, out.done[&2].steps.finished + 1);
    assert!(!s.has_work());
    assert!(
        e.kv.iter().all(Vec::is_empty),
        "pads are released with their wave"
    );
}
