//! Unit tests of prefix reuse against the fake engine, whose output depends on every
//! token in a slot's KV: a wrongly restored prefix changes what it samples.

use batchd_protocol::FinishReason;

use super::fake::{FakeEngine, FAKE_SNAPSHOT_BYTES_PER_TOKEN};
use super::tests::{cfg, collect, run, sub, Outcome};
use super::*;

/// A 40-token shared prefix, then `tail` tokens of its own.
fn shared(key: RequestKey, tail: usize, max_tokens: u32) -> Submission {
    let mut s = sub(key, tail, max_tokens);
    let prefix: Vec<Token> = (0..40).map(|i| 1 + (i * 11) % 26).collect();
    s.prompt = prefix.into_iter().chain(s.prompt).collect();
    s
}

fn scheduler(slots: usize, policy: Policy, cache_bytes: usize) -> Scheduler {
    Scheduler::new(SchedulerConfig {
        step_budget: 16, // prompts go in several chunks
        prefix_cache_bytes: cache_bytes,
        ..cfg(slots, policy)
    })
}

/// Runs `subs`, submitting each group only after the previous one finished.
fn serve(groups: &[Vec<Submission>], slots: usize, policy: Policy, cache: usize) -> Outcome {
    let mut s = scheduler(slots, policy, cache);
    let mut e = FakeEngine::new(slots);
    let mut out = Outcome::default();
    for group in groups {
        for sub in group {
            s.submit(sub.clone()).unwrap();
        }
        run(&mut s, &mut e, &mut out, 1000);
    }
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    out
}

/// Prompt positions computed rather than reused.
fn computed(out: &Outcome) -> u32 {
    out.done
        .values()
        .map(|d| d.usage.prompt_tokens - d.usage.cached_tokens)
        .sum()
}

#[test]
fn a_later_request_reuses_a_finished_ones_prefix_and_samples_the_same() {
    let groups = vec![vec![shared(1, 5, 6)], vec![shared(2, 7, 6)]];
    let on = serve(&groups, 2, Policy::Continuous, 1 << 20);
    let off = serve(&groups, 2, Policy::Continuous, 0);
    assert_eq!(on.tokens, off.tokens);
    assert_eq!(on.done[&1].usage.cached_tokens, 0);
    assert_eq!(on.done[&2].usage.cached_tokens, 40);
    assert_eq!(computed(&on) + 40, computed(&off));
}

#[test]
fn identical_prefixes_arriving_together_are_computed_once() {
    for policy in [Policy::Continuous, Policy::Static] {
        let groups = vec![(0..4).map(|k| shared(k, 3 + k as usize, 5)).collect()];
        let on = serve(&groups, 4, policy, 1 << 20);
        let off = serve(&groups, 4, policy, 0);
        assert_eq!(on.tokens, off.tokens, "{policy:?}");
        let cached: Vec<u32> = (0..4).map(|k| on.done[&k].usage.cached_tokens).collect();
        assert_eq!(cached, vec![0, 40, 40, 40], "{policy:?}");
    }
}

#[test]
fn the_last_prompt_token_is_always_computed() {
    let same = |k| shared(k, 0, 3);
    let on = serve(
        &[vec![same(1)], vec![same(2)]],
        1,
        Policy::Continuous,
        1 << 20,
    );
    let off = serve(&[vec![same(1)], vec![same(2)]], 1, Policy::Continuous, 0);
    assert_eq!(on.done[&2].usage.cached_tokens, 39);
    assert_eq!(on.tokens, off.tokens);
}

#[test]
fn a_short_shared_prefix_is_not_worth_a_restore() {
    let mut a = sub(1, 20, 3);
    let mut b = sub(2, 20, 3);
    b.prompt[..10].copy_from_slice(&a.prompt[..10]);
    a.max_tokens = 3;
    let on = serve(&[vec![a], vec![b]], 1, Policy::Continuous, 1 << 20);
    assert_eq!(on.done[&2].usage.cached_tokens, 0);
}

#[test]
fn a_tiny_budget_evicts_but_never_fails_or_overflows() {
    // Snapshots are 45+ positions; the budget holds two. Requests come in pairs that
    // share a prompt, each pair's distinct from the others'.
    let budget = 100 * FAKE_SNAPSHOT_BYTES_PER_TOKEN;
    let subs: Vec<Submission> = (0..64)
        .map(|k| Submission {
            key: k,
            ..sub(k / 2 * 1000, 45, 4)
        })
        .collect();
    let mut s = scheduler(3, Policy::Continuous, budget);
    let mut e = FakeEngine::new(3);
    let mut out = Outcome::default();
    for sub in &subs {
        s.submit(sub.clone()).unwrap();
    }
    while s.has_work() {
        s.step(&mut e);
        collect(&mut s, &mut out);
        let status = s.prefix_status();
        assert!(status.bytes <= budget as u64, "{status:?}");
        assert_eq!(e.snapshots.len(), status.entries as usize);
    }
    let status = s.prefix_status();
    assert!(status.evictions > 0 && status.entries <= 2, "{status:?}");
    assert!(status.hits > 0, "{status:?}");
    let off = serve(&[subs], 3, Policy::Continuous, 0);
    assert_eq!(out.tokens, off.tokens);
    assert!(out.failed.is_empty());
    assert!(out
        .done
        .values()
        .all(|d| d.finish_reason == FinishReason::Length));
}

#[test]
fn cancelling_a_source_lets_its_waiters_go_on() {
    let mut s = scheduler(3, Policy::Continuous, 1 << 20);
    let mut e = FakeEngine::new(3);
    s.submit(shared(1, 4, 5)).unwrap();
    s.submit(shared(2, 4, 5)).unwrap();
    s.step(&mut e); // 1 prefills its first chunk, 2 waits for it
    assert!(s.cancel(1));
    let mut out = Outcome::default();
    run(&mut s, &mut e, &mut out, 1000);
    assert_eq!(out.done[&1].finish_reason, FinishReason::Cancelled);
    assert_eq!(out.done[&2].finish_reason, FinishReason::Length);
    let off = serve(&[vec![shared(2, 4, 5)]], 1, Policy::Continuous, 0);
    assert_eq!(out.tokens[&2], off.tokens[&2]);
}

#[test]
fn an_ended_sequence_is_saved_after_its_end_is_reported() {
    let mut s = scheduler(2, Policy::Continuous, 1 << 20);
    let mut e = FakeEngine::new(2);
    s.submit(shared(1, 4, 1)).unwrap();
    while s.has_work() {
        s.step(&mut e);
    }
    // The step that ended it reported the end and kept its KV for the cache...
    let events: Vec<Event> = s.drain_events().collect();
    assert!(
        events
            .iter()
            .any(|ev| matches!(ev, Event::Done { key: 1, .. })),
        "{events:?}"
    );
    assert!(e.snapshots.is_empty() && !e.kv[0].is_empty());
    // ...which saves it, then frees it, once those events are out.
    s.save_ended(&mut e);
    assert_eq!(e.snapshots.len(), 1);
    assert!(e.kv[0].is_empty());
    assert_eq!(s.prefix_status().entries, 1);
    // A request that needs the slot before that (no caller in between) still finds the
    // prefix saved: the step saves first.
    s.submit(shared(2, 4, 1)).unwrap();
    s.step(&mut e);
    assert_eq!(s.prefix_status().hits, 1);
}

/// A 40-token prompt no other shares (its first token is its own).
fn unrelated(k: RequestKey) -> Submission {
    let mut s = sub(k, 40, 2);
    s.prompt[0] = 100 + k as Token;
    s
}

/// Runs the unrelated requests `keys` one after another, then saves what they left.
fn one_by_one(s: &mut Scheduler, e: &mut FakeEngine, keys: std::ops::Range<RequestKey>) {
    let mut out = Outcome::default();
    for k in keys {
        s.submit(unrelated(k)).unwrap();
        run(s, e, &mut out, 1000);
    }
    s.save_ended(e);
}

#[test]
fn unrelated_prompts_stop_being_saved_until_one_starts_like_one_passed_over() {
    // Two slots: after two saves nobody reused, ended sequences are passed over.
    let mut s = scheduler(2, Policy::Continuous, 1 << 20);
    let mut e = FakeEngine::new(2);
    let mut out = Outcome::default();
    one_by_one(&mut s, &mut e, 0..18);
    assert_eq!(s.prefix_status().entries, 2);
    // A prompt that starts like one passed over finds nothing to reuse, but saving
    // resumes: it is saved, and the next one like it reuses it.
    let like_17 = |k| {
        let mut r = unrelated(k);
        r.prompt = unrelated(17).prompt;
        r.prompt.push(7);
        r
    };
    for k in [18, 19] {
        s.submit(like_17(k)).unwrap();
        run(&mut s, &mut e, &mut out, 1000);
        s.save_ended(&mut e);
    }
    let status = s.prefix_status();
    assert_eq!((status.entries, status.hits), (3, 1));
}

#[test]
fn with_many_slots_thinning_starts_after_sixteen_unused_saves() {
    let mut s = Scheduler::new(SchedulerConfig {
        step_budget: 64,
        prefix_cache_bytes: 4 << 20, // room for every save: the count is thinning's alone
        ..cfg(32, Policy::Continuous)
    });
    let mut e = FakeEngine::new(32);
    one_by_one(&mut s, &mut e, 0..40);
    assert_eq!(s.prefix_status().entries, 16);
}
