//! The scheduler: a queue, N slots, and the step loop that packs every active sequence's
//! pending tokens into one batch.
//!
//! One file past 400 lines: admit, build, decode, commit and end all mutate the same
//! queue and slots within one step; split apart they would hand the whole scheduler around.
//! Prefix reuse, the one part that reads the others' state without driving a step, is in
//! `scheduler/reuse.rs`.

mod reuse;

use std::collections::VecDeque;
use std::time::Instant;

use batchd_protocol::FinishReason;

use super::chunks::split_room;
use super::pacer::Pacer;
use super::prefix::PrefixCache;
use super::sequence::{Progress, Sampled, Sequence};
use super::slot::{Pad, Slot};
use super::{
    BatchToken, Engine, EngineError, Event, Policy, PrefillChunk, Rejection, RequestKey, SeqKind,
    StepBatch, StepEntry, StepReport, Submission, Token,
};

/// Fixed parameters of a scheduler.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Sequences that can run at once.
    pub slots: usize,
    pub policy: Policy,
    /// Most tokens in one step's batch (decodes first, prefill chunks fill the rest).
    pub step_budget: usize,
    /// Most prompt tokens per step while other sequences decode.
    pub prefill_chunk: PrefillChunk,
    /// With `PrefillChunk::Auto`: a step with prompt tokens may take this many times a
    /// decode-only step of every busy slot.
    pub prefill_pace: f64,
    /// Most requests waiting for a slot; more are refused as busy.
    pub queue_capacity: usize,
    /// Most positions one sequence may occupy (model context and its KV stream).
    pub max_positions: u32,
    /// KV cells shared by all sequences (with per-sequence streams this is
    /// `slots × max_positions` and never binds).
    pub kv_cells: u32,
    /// Bytes of saved prefixes the prefix cache may hold (0 turns it off).
    pub prefix_cache_bytes: usize,
}

/// Queue + slots + step loop.
pub struct Scheduler {
    cfg: SchedulerConfig,
    queue: VecDeque<Submission>,
    slots: Vec<Slot>,
    events: Vec<Event>,
    batch: StepBatch,
    step: u64,
    admitted: u64,
    tokens_generated: u64,
    trace: bool,
    last_report: StepReport,
    closed: bool,
    pacer: Pacer,
    /// Decode tokens at the front of the current batch.
    n_decode: usize,
    prefix: PrefixCache,
    /// Slots whose sequence ended in the last step and whose KV waits to be saved
    /// ([`Scheduler::save_ended`]), with the tokens it holds.
    ended: Vec<(usize, Vec<Token>)>,
}

impl Scheduler {
    /// A scheduler with every slot free.
    pub fn new(cfg: SchedulerConfig) -> Self {
        assert!(cfg.slots > 0, "at least one slot");
        assert!(
            cfg.step_budget >= cfg.slots,
            "the step budget must fit one decode per slot"
        );
        let n_slots = cfg.slots;
        let prefix = PrefixCache::new(cfg.prefix_cache_bytes);
        Self {
            slots: (0..n_slots).map(|_| Slot::Free).collect(),
            cfg,
            queue: VecDeque::new(),
            events: Vec::new(),
            batch: StepBatch::default(),
            step: 0,
            admitted: 0,
            tokens_generated: 0,
            trace: false,
            last_report: StepReport::default(),
            closed: false,
            pacer: Pacer::default(),
            n_decode: 0,
            prefix,
            ended: Vec::new(),
        }
    }

    /// Queues a request, or says why not.
    pub fn submit(&mut self, sub: Submission) -> Result<(), Rejection> {
        if self.closed {
            return Err(Rejection::ShuttingDown);
        }
        if sub.max_tokens == 0 {
            return Err(Rejection::Invalid("max_tokens must be at least 1".into()));
        }
        if sub.prompt.is_empty() {
            return Err(Rejection::Invalid("the prompt has no tokens".into()));
        }
        if sub.prompt.len() > self.cfg.max_positions as usize {
            return Err(Rejection::PromptTooLong {
                tokens: sub.prompt.len(),
                max: self.cfg.max_positions,
            });
        }
        if self.queue.len() >= self.cfg.queue_capacity {
            return Err(Rejection::Busy(self.queue.len()));
        }
        self.queue.push_back(sub);
        Ok(())
    }

    /// Cancels a request: a queued one ends now, a running one at the next step boundary.
    /// Returns false if the key is unknown (already finished, say).
    pub fn cancel(&mut self, key: RequestKey) -> bool {
        if let Some(i) = self.queue.iter().position(|s| s.key == key) {
            let sub = self.queue.remove(i).expect("index found");
            let seq = Sequence::admit(sub, usize::MAX, 0, 0);
            let done = seq.finish(FinishReason::Cancelled, self.step);
            self.events.push(Event::Done { key, done });
            return true;
        }
        match self.active_mut().find(|s| s.key == key) {
            Some(seq) => {
                seq.cancelled = true;
                true
            }
            None => false,
        }
    }

    /// Refuses new work from now on; queued requests are cancelled.
    pub fn close(&mut self) {
        self.closed = true;
        let keys: Vec<_> = self.queue.iter().map(|s| s.key).collect();
        for key in keys {
            self.cancel(key);
        }
    }

    /// Cancels everything still running (the drain deadline passed).
    pub fn cancel_all(&mut self) {
        self.close();
        for seq in self.active_mut() {
            seq.cancelled = true;
        }
    }

    /// True while anything is queued or running.
    pub fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.busy_slots() > 0
    }

    /// Slots holding a sequence (or, under the static policy, padding for its wave).
    pub fn busy_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.is_busy()).count()
    }

    /// Requests waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Tokens generated so far.
    pub fn tokens_generated(&self) -> u64 {
        self.tokens_generated
    }

    /// Keep a [`StepReport`] of every step (costs a little per step).
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on;
    }

    /// What the last step held, when tracing is on.
    pub fn last_report(&self) -> &StepReport {
        &self.last_report
    }

    /// Events produced since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Runs one step: ends cancelled sequences, admits queued requests into free slots,
    /// packs every active sequence's pending tokens into one batch, runs it, and samples.
    ///
    /// Each phase is a `tracing` span at TRACE level (`step` > `build`, `decode`, `sample`):
    /// `RUST_LOG=batchd=trace` with span-close events shows where a step's time goes.
    pub fn step<E: Engine>(&mut self, engine: &mut E) {
        self.step += 1;
        let _step = tracing::trace_span!("step", n = self.step).entered();
        self.save_ended(engine);
        self.end_cancelled(engine);
        self.admit(engine);
        self.resolve_waiting(engine);
        let started = Instant::now();
        loop {
            let pass_tokens = engine.pass_tokens();
            tracing::trace_span!("build").in_scope(|| self.build_batch(pass_tokens));
            if self.batch.tokens.is_empty() {
                if self.busy_slots() == 0 {
                    self.step -= 1; // nothing ran: don't count it
                    return;
                }
                // Nothing fits in the KV cache: someone has to make room.
                self.end_newest(engine, FinishReason::Context);
                continue;
            }
            let decoded = tracing::trace_span!("decode", tokens = self.batch.tokens.len())
                .in_scope(|| engine.decode(&self.batch));
            match decoded {
                Ok(()) => break,
                Err(EngineError::KvFull) => {
                    // Nothing was computed: end the newest sequence in the batch, retry.
                    self.end_newest(engine, FinishReason::Context);
                }
                Err(EngineError::Failed(message)) => {
                    self.fail_batch(engine, &message);
                    return;
                }
            }
        }
        if self.trace {
            self.last_report.passes = engine.passes();
        }
        tracing::trace_span!("sample").in_scope(|| self.commit(engine));
        self.pacer.observe(
            self.n_decode,
            self.batch.tokens.len() - self.n_decode,
            started.elapsed().as_secs_f64(),
        );
    }

    fn active_mut(&mut self) -> impl Iterator<Item = &mut Sequence> {
        self.slots.iter_mut().filter_map(Slot::sequence_mut)
    }

    fn active(&self) -> impl Iterator<Item = &Sequence> {
        self.slots.iter().filter_map(Slot::sequence)
    }

    fn end_cancelled<E: Engine>(&mut self, engine: &mut E) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].sequence().is_some_and(|s| s.cancelled) {
                self.end(slot, engine, FinishReason::Cancelled);
            }
        }
    }

    fn admit<E: Engine>(&mut self, engine: &mut E) {
        if self.cfg.policy == Policy::Static && self.busy_slots() > 0 {
            return; // the wave is still running: barrier
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_busy() {
                continue;
            }
            let Some(sub) = self.queue.pop_front() else {
                return;
            };
            engine.begin(slot, &sub.sampling, sub.logprobs.is_some());
            self.admitted += 1;
            let seq = Sequence::admit(sub, slot, self.step, self.admitted);
            self.slots[slot] = self.start(seq, engine);
        }
    }

    /// Fills `self.batch`: one decode token per running sequence (padding last), then
    /// prompt chunks in admission order up to the step budget and the free KV cells, cut
    /// to spare passes ([`split_room`], with the engine's `pass_tokens`).
    fn build_batch(&mut self, pass_tokens: usize) {
        self.batch.tokens.clear();
        self.n_decode = 0;
        let used: u32 = self.slots.iter().map(Slot::kv_used).sum();
        let room = (self.cfg.kv_cells.saturating_sub(used) as usize).min(self.cfg.step_budget);
        let decoding = |s: &Slot| matches!(s, Slot::Decoding { .. });
        let padding = |s: &Slot| matches!(s, Slot::Padding(_));
        let n_decode = self
            .slots
            .iter()
            .filter(|s| decoding(s) || padding(s))
            .count();
        let n_busy = self.busy_slots();
        if n_decode > room {
            // Not even the decodes fit in the KV cache: build nothing, someone must go.
            return;
        }
        let mut step = StepBuilder {
            batch: &mut self.batch,
            report: self.trace.then(|| StepReport {
                step: self.step,
                ..StepReport::default()
            }),
        };
        for slot in &self.slots {
            if let Slot::Decoding { seq, next } = slot {
                step.push(
                    seq.slot,
                    seq.key,
                    seq.n_past,
                    &[*next],
                    SeqKind::Decode,
                    true,
                );
            }
        }
        for (i, slot) in self.slots.iter().enumerate() {
            if let Slot::Padding(pad) = slot {
                step.push(i, pad.key, pad.n_past, &[pad.token], SeqKind::Decode, true);
            }
        }
        self.n_decode = n_decode;
        let room = self.pacer.allowance(
            self.cfg.prefill_chunk,
            self.cfg.prefill_pace,
            n_decode,
            n_busy,
            room - n_decode,
        );
        let mut prefilling: Vec<&Sequence> = self
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Prefilling(seq) => Some(seq),
                _ => None,
            })
            .collect();
        prefilling.sort_by_key(|s| s.admitted_seq);
        let left: Vec<usize> = (prefilling.iter())
            .map(|s| s.prompt_left() as usize)
            .collect();
        let started: Vec<bool> = prefilling.iter().map(|s| s.n_past > 0).collect();
        let chunks = split_room(&left, &started, room, pass_tokens, n_decode > 0);
        for (seq, n) in prefilling.into_iter().zip(chunks) {
            if n == 0 {
                continue;
            }
            let start = seq.n_past as usize;
            let completes = n == seq.prompt_left() as usize;
            let chunk = &seq.prompt[start..start + n];
            let kind = SeqKind::Prefill(n as u32);
            step.push(seq.slot, seq.key, seq.n_past, chunk, kind, completes);
            step.mark_reused(seq.cached);
        }
        if let Some(mut r) = step.report {
            r.n_tokens = self.batch.tokens.len();
            self.last_report = r;
        }
    }

    /// Advances every sequence past the tokens just computed and samples where asked.
    fn commit<E: Engine>(&mut self, engine: &mut E) {
        let mut bytes = Vec::new();
        for i in 0..self.batch.tokens.len() {
            let bt = self.batch.tokens[i];
            let slot = &mut self.slots[bt.slot];
            if let Slot::Padding(pad) = slot {
                pad.n_past = bt.pos + 1;
                continue; // its logits are computed, as a static batcher does, and dropped
            }
            let seq = slot.sequence_mut().expect("batched slot is active");
            seq.n_past = bt.pos + 1;
            if !bt.logits {
                continue;
            }
            let token = engine.sample(bt.slot, i);
            bytes.clear();
            let is_eog = engine.is_eog(token);
            if !is_eog {
                engine.token_bytes(token, &mut bytes);
            }
            let logprobs = seq
                .logprobs
                .map(|top| super::logprobs::for_client(engine, i, token, top));
            let sampled = Sampled {
                token,
                is_eog,
                bytes: &bytes,
                logprobs,
            };
            let progress =
                seq.on_sampled(sampled, self.step, self.cfg.max_positions, &mut self.events);
            if !is_eog || seq.ignore_eos {
                self.tokens_generated += 1;
            }
            match progress {
                Progress::Running => slot.decode_next(token),
                Progress::Finished(reason) => self.finish(bt.slot, engine, reason),
            }
        }
        self.release_pads(engine);
    }

    /// Frees padding slots once their wave is over, or once they reach the position limit.
    fn release_pads<E: Engine>(&mut self, engine: &mut E) {
        let wave_over = self.active().next().is_none();
        for slot in 0..self.slots.len() {
            let done = matches!(self.slots[slot], Slot::Padding(p)
                if wave_over || p.n_past >= self.cfg.max_positions);
            if done {
                self.slots[slot] = Slot::Free;
                engine.release(slot);
            }
        }
    }

    /// Ends the sequence in `slot` that just sampled its last token: as [`Self::end`],
    /// but a KV the prefix cache keeps is saved and freed only after this step's events
    /// are out ([`Scheduler::save_ended`]).
    fn finish<E: Engine>(&mut self, slot: usize, engine: &mut E, reason: FinishReason) {
        self.end_saving(slot, engine, reason, true);
    }

    /// Ends the sequence in `slot` and reports it done. Its KV and slot are freed at once
    /// (ended to make room, its cells are needed in this very step), except under the
    /// static policy while its wave runs on: then it pads the wave.
    fn end<E: Engine>(&mut self, slot: usize, engine: &mut E, reason: FinishReason) {
        self.end_saving(slot, engine, reason, false);
    }

    fn end_saving<E: Engine>(
        &mut self,
        slot: usize,
        engine: &mut E,
        reason: FinishReason,
        save_later: bool,
    ) {
        // A wave of unrelated prompts as wide as the slots before saves are thinned.
        let window = self.slots.len() as u32;
        let keep = self
            .worth_saving(slot)
            .filter(|tokens| self.prefix.admits_save(window, tokens));
        let seq = self.slots[slot].take_sequence().expect("slot is active");
        let wave_goes_on = self.active().next().is_some();
        let pads = self.cfg.policy == Policy::Static && wave_goes_on && !self.closed;
        let deferred = match keep {
            Some(tokens) if save_later && !pads => {
                self.ended.push((slot, tokens));
                true
            }
            Some(tokens) => {
                self.save(slot, &tokens, engine); // padding would extend this KV
                false
            }
            None => false,
        };
        if pads {
            self.slots[slot] = Slot::Padding(Pad {
                key: seq.key,
                token: *seq.prompt.last().expect("prompts are not empty"),
                n_past: seq.n_past,
            });
        } else if !deferred {
            engine.release(slot);
        }
        let key = seq.key;
        let done = seq.finish(reason, self.step);
        self.events.push(Event::Done { key, done });
    }

    /// Makes room in the KV cache: drops padding first, else ends the most recently
    /// admitted sequence.
    fn end_newest<E: Engine>(&mut self, engine: &mut E, reason: FinishReason) {
        let pad = self
            .slots
            .iter()
            .position(|s| matches!(s, Slot::Padding(_)));
        if let Some(slot) = pad {
            self.slots[slot] = Slot::Free;
            engine.release(slot);
            return;
        }
        let newest = self.active().max_by_key(|s| s.admitted_seq).map(|s| s.slot);
        if let Some(slot) = newest {
            self.end(slot, engine, reason);
        }
    }

    /// A forward pass failed for a reason other than space: its sequences cannot go on.
    fn fail_batch<E: Engine>(&mut self, engine: &mut E, message: &str) {
        let mut slots: Vec<usize> = self.batch.tokens.iter().map(|t| t.slot).collect();
        slots.dedup();
        for slot in slots {
            match std::mem::take(&mut self.slots[slot]) {
                Slot::Free => {}
                Slot::Padding(_) => engine.release(slot),
                Slot::Waiting { seq, .. } | Slot::Prefilling(seq) | Slot::Decoding { seq, .. } => {
                    engine.release(slot);
                    self.events.push(Event::Failed {
                        key: seq.key,
                        message: message.to_owned(),
                    });
                }
            }
        }
    }
}

/// The step being built: its batch and, when tracing, its report.
struct StepBuilder<'a> {
    batch: &'a mut StepBatch,
    report: Option<StepReport>,
}

impl StepBuilder<'_> {
    /// Appends one sequence's `tokens` from position `pos`; the last one asks for logits
    /// when `sample`.
    fn push(
        &mut self,
        slot: usize,
        key: RequestKey,
        pos: u32,
        tokens: &[Token],
        kind: SeqKind,
        sample: bool,
    ) {
        let last = tokens.len() - 1;
        for (i, &token) in tokens.iter().enumerate() {
            self.batch.tokens.push(BatchToken {
                token,
                pos: pos + i as u32,
                slot,
                logits: sample && i == last,
            });
        }
        if let Some(r) = self.report.as_mut() {
            r.entries.push(StepEntry {
                slot,
                key,
                kind,
                pos,
                reused: 0,
            });
        }
    }

    /// Notes that the sequence just pushed reused its first `n` positions.
    fn mark_reused(&mut self, n: u32) {
        if let Some(entry) = self.report.as_mut().and_then(|r| r.entries.last_mut()) {
            entry.reused = n;
        }
    }
}
